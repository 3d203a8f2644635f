// Redirect URIs: which registered one a request names, and the authorization endpoint's answer,
// which (as Kong's) is a JSON body carrying the redirect URI with the response's parameters.
import type { SnapshotCredential } from './server.ts';
import { encodeArgs, parseUrlEncoded } from './params.ts';

/** A client's registered redirect URIs; null when it has none (Kong then treats it as unknown). */
export function registeredRedirects(client: SnapshotCredential | null | undefined): string[] | null {
  return client?.redirect_uris?.length ? client.redirect_uris : null;
}

/**
 * The redirect URI a request names: the first registered one when `redirect_uri` is omitted
 * (or empty, RFC 6749 §3.1), the given one when it is registered (exact string comparison, RFC
 * 9700 §4.1.3); null when it is not, or when it is not one string: a repeated parameter (an
 * array) is invalid (RFC 6749 §3.1), not omitted.
 */
export function namedRedirect(registered: string[], wanted: unknown): string | null {
  if (wanted === undefined || wanted === null || wanted === '') return registered[0];
  return typeof wanted === 'string' && registered.includes(wanted) ? wanted : null;
}

/** Adds Kong-encoded params to the query (or the fragment, for the implicit grant) of a redirect URI. */
export function buildRedirect(uri: string, params: Record<string, string>, inFragment: boolean): string {
  let base = uri;
  let fragment: string | null = null;
  const hash = base.indexOf('#');
  if (hash !== -1) {
    fragment = base.slice(hash + 1);
    base = base.slice(0, hash);
  }
  let query: string | null = null;
  const q = base.indexOf('?');
  if (q !== -1) {
    query = base.slice(q + 1);
    base = base.slice(0, q);
  }
  const existing = parseUrlEncoded((inFragment ? fragment : query) ?? '');
  const merged = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(existing)) merged[k] = Array.isArray(v) ? String(v[v.length - 1]) : v === true ? '' : String(v);
  Object.assign(merged, params);
  const encoded = encodeArgs(merged);
  if (inFragment) return `${base}${query !== null ? `?${query}` : ''}#${encoded}`;
  return `${base}?${encoded}${fragment !== null ? `#${fragment}` : ''}`;
}

/** The authorization endpoint's body: the redirect URI with the response's fields (as text). */
export function redirectBody(uri: string, fields: Record<string, unknown>, inFragment: boolean): { redirect_uri: string } {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) flat[k] = String(v);
  return { redirect_uri: buildRedirect(uri, flat, inFragment) };
}

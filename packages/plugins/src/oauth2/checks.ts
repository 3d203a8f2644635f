// Checks that more than one endpoint or grant makes, each throwing its OAuthError, and the way
// Kong orders an endpoint's checks: every check of its list runs, in order, and the last one that
// fails is answered (a bad redirect_uri, then a bad secret: the secret is reported).
import { OAuthError } from './errors.ts';
import type { Params } from './params.ts';
import { provisionKeyMatches } from './provision-key.ts';
import type { Oauth2Config } from './schema.ts';

export type Check<R> = (request: R) => void | Promise<void>;

/** Runs every check in order and throws the error of the last one that failed. */
export async function runChecks<R>(checks: readonly Check<R>[], request: R): Promise<void> {
  let failure: OAuthError | null = null;
  for (const check of checks) {
    try {
      await check(request);
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      failure = err;
    }
  }
  if (failure) throw failure;
}

export const INVALID_REDIRECT = new OAuthError(
  'invalid_request',
  'Invalid redirect_uri that does not match with any redirect_uri created with the application',
);

/** The provision_key, which proves a request comes from the application's own backend. */
export function requireProvisionKey(params: Params, config: Oauth2Config): void {
  const given = params.provision_key;
  if (typeof given !== 'string' || config.provision_key === null || !provisionKeyMatches(given, config.provision_key)) {
    throw new OAuthError('invalid_provision_key', 'Invalid provision_key');
  }
}

export function requireAuthenticatedUserid(params: Params): string {
  const userid = params.authenticated_userid;
  if (typeof userid !== 'string' || userid.trim() === '') {
    throw new OAuthError('invalid_authenticated_userid', 'Missing authenticated_userid parameter');
  }
  return userid;
}

/** Kong's retrieve_scope: the scope to record, null when none applies. */
export function retrieveScope(params: Params, config: Oauth2Config): string | null {
  const scope = params.scope;
  const scopes: string[] = [];
  if (config.scopes && scope !== undefined && scope !== null) {
    if (typeof scope !== 'string') throw new OAuthError('invalid_scope', 'scope must be a string');
    for (const s of scope.split(/\s+/).filter(Boolean)) {
      if (!config.scopes.includes(s)) throw new OAuthError('invalid_scope', `"${s}" is an invalid scope`);
      scopes.push(s);
    }
  }
  // RFC 6749 §3.1: an empty parameter counts as omitted (Kong lets `scope=` bypass mandatory_scope).
  const missing = scope === undefined || scope === null || (typeof scope === 'string' && scope.trim() === '');
  if (config.mandatory_scope && missing) throw new OAuthError('invalid_scope', 'You must specify a scope');
  return scopes.length ? scopes.join(' ') : null;
}

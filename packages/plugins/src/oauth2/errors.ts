// Every OAuth error the plugin answers is an OAuthError, thrown where a check fails (the resource
// check, on the proxy's hot path, returns shared ones instead) and turned into its response in
// one place, respondError:
// - the RFC 6749 §5.2 body, {"error", "error_description"} and the request's `state` where the
//   endpoint echoes it; at the authorization endpoint, once the client's redirect URI is known,
//   the same fields in that URI (§4.1.2.1);
// - its WWW-Authenticate challenge (RFC 7235 §4.1): Basic when a client's Basic header failed
//   (RFC 6749 §5.2), Bearer for a token (RFC 6750 §3) and for Kong's 405.
// Kong's check_https, the error every endpoint answers first, is here too.
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import { redirectBody } from './redirect.ts';
import type { Oauth2Config } from './schema.ts';

export const NO_STORE: Record<string, string> = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
export const STORE_DOWN = 'The token store is unreachable; try again shortly';
export const STORE_RESTORING = 'The token store is being restored; try again shortly';

/**
 * How a response names the scheme to use: `Basic`, `Bearer` with the error's code and
 * description, or `Bearer` alone (RFC 6750 §3.1: a request without a token gets no error code).
 */
export type Challenge = 'Basic' | 'Bearer' | 'Bearer alone';

export interface OAuthErrorOptions {
  /** 400 unless given. */
  status?: number;
  /** NO_STORE unless given. */
  headers?: Record<string, string>;
  challenge?: Challenge;
  /** The error_description of a Bearer challenge when it is not the body's (as Kong's). */
  challengeDescription?: string;
  /** The authorization endpoint sends the error to the client's redirect URI. */
  redirectUri?: string;
}

export class OAuthError extends Error {
  override name = 'OAuthError';
  constructor(
    readonly error: string,
    readonly description: string,
    readonly options: Readonly<OAuthErrorOptions> = {},
  ) {
    super(description);
  }

  /** The same error, answered in the redirect to `uri`. */
  redirectedTo(uri: string): OAuthError {
    return new OAuthError(this.error, this.description, { ...this.options, redirectUri: uri });
  }
}

/** An endpoint's answer while the token store cannot say whether a token or code exists. */
function retryShortly(description: string): OAuthError {
  return new OAuthError('temporarily_unavailable', description, { status: 503, headers: { ...NO_STORE, 'Retry-After': '1' } });
}
export const STORE_UNREACHABLE = retryShortly(STORE_DOWN);
export const STORE_BEING_RESTORED = retryShortly(STORE_RESTORING);

/** Kong's endpoints take POST only. */
export function invalidMethod(method: string, endpointName: string): OAuthError {
  const description = `The HTTP method ${method} is invalid for the ${endpointName} endpoint`;
  return new OAuthError('invalid_method', description, { status: 405, headers: {}, challenge: 'Bearer' });
}

/** Answers an OAuth error, with the request's `state` where the endpoint echoes it. */
export function respondError(ctx: RequestContext, config: Oauth2Config, err: OAuthError, state?: unknown): void {
  const { status = 400, headers = NO_STORE, challenge, redirectUri } = err.options;
  const body: Record<string, unknown> = { error: err.error, error_description: err.description };
  if (state !== undefined) body.state = state;
  const sent = challenge ? { ...headers, 'WWW-Authenticate': challengeHeader(err, challenge, config.realm) } : headers;
  if (redirectUri !== undefined) ctx.respond(status, redirectBody(redirectUri, body, false), sent);
  else ctx.respond(status, body, sent);
}

function challengeHeader(err: OAuthError, challenge: Challenge, realm: string | null): string {
  if (challenge === 'Basic') return 'Basic realm="OAuth2.0"';
  if (challenge === 'Bearer alone') return realm !== null ? `Bearer realm="${realm}"` : 'Bearer';
  const description = err.options.challengeDescription ?? err.description;
  return `Bearer ${realm !== null ? `realm="${realm}", ` : ''}error="${err.error}", error_description="${description}"`;
}

/** Kong's check_https as the error every endpoint answers (null: the request came over HTTPS). */
export function httpsError(ctx: RequestContext, config: Oauth2Config): OAuthError | null {
  const https = checkHttps(ctx, config);
  return https === true ? null : new OAuthError('access_denied', https || 'You must use HTTPS');
}

export function requireHttps(ctx: RequestContext, config: Oauth2Config): void {
  const insecure = httpsError(ctx, config);
  if (insecure) throw insecure;
}

/** Kong's check_https: true, or false / an error description. */
function checkHttps(ctx: RequestContext, config: Oauth2Config): true | string | false {
  // The connection's own scheme, as Kong's get_scheme(): ctx.scheme already believes a trusted
  // peer's X-Forwarded-Proto, which this plugin only does with accept_http_if_already_terminated.
  const socket = ctx.req.socket as { encrypted?: boolean } | undefined;
  if (socket ? socket.encrypted === true : ctx.scheme === 'https') return true;
  if (!config.accept_http_if_already_terminated) return false;
  const raw = ctx.req.headers['x-forwarded-proto'];
  if (raw === undefined) return false;
  const value = Array.isArray(raw) ? raw.join(',') : raw;
  if (value.includes(',')) return 'Only one X-Forwarded-Proto header allowed';
  return ctx.trustedPeer && value.trim().toLowerCase() === 'https';
}

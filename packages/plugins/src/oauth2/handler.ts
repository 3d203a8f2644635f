// The oauth2 plugin on a data plane: Kong's authorization server endpoints (/oauth2/authorize,
// /oauth2/token) plus RFC 7009 revocation, RFC 7662 introspection and RFC 8414 metadata, and the
// resource-server check on every other request. Consumers and credentials come from the config
// snapshot; tokens and codes from the shared store (see tokens.ts). No database, no round trip to
// the control plane.
import { safeEqual, sha256Base64Url, sha256Hex } from '@gatehouse/core/crypto.ts';
import type { ConsumerEntity, PluginEntity } from '@gatehouse/core/entities.ts';
import type { DataPlaneServices, PluginHandler, RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { isStoreUnavailable } from '@gatehouse/core/store/index.ts';
import { oversizedParameter } from './limits.ts';
import { provisionKeyMatches } from './provision-key.ts';
import { bodyKind, encodeArgs, parseUrlEncoded, readBodyParams, readParams, removeQueryParam, type Params } from './params.ts';
import type { Oauth2Config } from './schema.ts';
import { AuthorizationServer, type SnapshotCredential } from './server.ts';
import { TokenStoreRestoringError, type TokenRecord, type TokenStore } from './tokens.ts';

export type { SnapshotCredential } from './server.ts';

type OAuthError = { error: string; error_description: string };

const ENDPOINT_RE = /\/oauth2\/(token|authorize|revoke|introspect)\/?$/;
const WELL_KNOWN = '/.well-known/oauth-authorization-server';
const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
const STORE_DOWN = 'The token store is unreachable; try again shortly';
const STORE_RESTORING = 'The token store is being restored; try again shortly';
const INVALID_TOKEN = 'The access token is invalid or has expired';
const INVALID_CLIENT: OAuthError = { error: 'invalid_client', error_description: 'Invalid client authentication' };
const INVALID_REDIRECT: OAuthError = {
  error: 'invalid_request',
  error_description: 'Invalid redirect_uri that does not match with any redirect_uri created with the application',
};
const ENDPOINT_NAMES: Record<string, string> = {
  token: 'token',
  authorize: 'authorization',
  revoke: 'revocation',
  introspect: 'introspection',
};

const nowSeconds = () => Math.floor(Date.now() / 1000);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function realmPrefix(config: Oauth2Config) {
  return config.realm !== null ? `realm="${config.realm}", ` : '';
}

interface Failure {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

function invalidTokenFailure(config: Oauth2Config, description = INVALID_TOKEN): Failure {
  return {
    status: 401,
    body: { error: 'invalid_token', error_description: description },
    headers: { 'WWW-Authenticate': `Bearer ${realmPrefix(config)}error="invalid_token", error_description="${INVALID_TOKEN}"` },
  };
}

function restoringFailure(config: Oauth2Config): Failure {
  return {
    status: 503,
    body: { error: 'temporarily_unavailable', error_description: STORE_RESTORING },
    headers: {
      'WWW-Authenticate': `Bearer ${realmPrefix(config)}error="temporarily_unavailable", error_description="${STORE_RESTORING}"`,
      'Retry-After': '1',
      'Cache-Control': 'no-store',
    },
  };
}

/** Kong's retrieve_scope: null scope when none applies; an error body otherwise. */
export function retrieveScope(params: Params, config: Oauth2Config): { scope: string | null } | { error: OAuthError } {
  const scope = params.scope;
  const scopes: string[] = [];
  if (config.scopes && scope !== undefined && scope !== null) {
    if (typeof scope !== 'string') return { error: { error: 'invalid_scope', error_description: 'scope must be a string' } };
    for (const s of scope.split(/\s+/).filter(Boolean)) {
      if (!config.scopes.includes(s)) return { error: { error: 'invalid_scope', error_description: `"${s}" is an invalid scope` } };
      scopes.push(s);
    }
  }
  // RFC 6749 §3.1: an empty parameter counts as omitted (Kong lets `scope=` bypass mandatory_scope).
  const missing = scope === undefined || scope === null || (typeof scope === 'string' && scope.trim() === '');
  if (config.mandatory_scope && missing) return { error: { error: 'invalid_scope', error_description: 'You must specify a scope' } };
  return { scope: scopes.length ? scopes.join(' ') : null };
}

/** Kong's check_https as the error every endpoint answers (null: the request came over HTTPS). */
function httpsError(ctx: RequestContext, config: Oauth2Config): { error: 'access_denied'; error_description: string } | null {
  const https = checkHttps(ctx, config);
  return https === true ? null : { error: 'access_denied', error_description: https || 'You must use HTTPS' };
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

/**
 * An S256 code_challenge (RFC 7636 §4.2: BASE64URL-NOPAD(SHA256(verifier)), i.e. exactly 43
 * unreserved characters encoding 32 bytes), normalised to unpadded base64url; null when it is
 * anything else. Kong's tolerance of the standard base64 alphabet and `=` padding is kept, but
 * the value must still encode exactly 32 bytes: Node's lenient decoder would turn junk (`A`,
 * `~`, `!!!!`) into an empty challenge, and an empty challenge used to mean "no PKCE".
 */
function normaliseChallenge(challenge: string): string | null {
  if (!/^[A-Za-z0-9\-_+/]{43}=?$/.test(challenge)) return null;
  const unpadded = challenge.replace(/=$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  const bytes = Buffer.from(unpadded, 'base64url');
  // Round trip: rejects a last character carrying bits beyond the 256 (non-canonical encodings).
  return bytes.length === 32 && bytes.toString('base64url') === unpadded ? unpadded : null;
}

/**
 * The redirect URI a request names: the first registered one when `redirect_uri` is omitted
 * (or empty, RFC 6749 §3.1), the given one when it is registered (exact string comparison, RFC
 * 9700 §4.1.3); null when it is not, or when it is not one string: a repeated parameter (an
 * array) is invalid (RFC 6749 §3.1), not omitted.
 */
function namedRedirect(registered: string[], wanted: unknown): string | null {
  if (wanted === undefined || wanted === null || wanted === '') return registered[0];
  return typeof wanted === 'string' && registered.includes(wanted) ? wanted : null;
}

function requiresPkce(config: Oauth2Config, client: SnapshotCredential): boolean {
  if (config.pkce === 'strict') return true;
  return client.client_type === 'public' && config.pkce !== 'none';
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

interface ClientAuth {
  clientId: string | undefined;
  clientSecret: string | undefined;
  fromHeader: boolean;
}

/** The client credentials of a Basic `auth_header_name` header, if the request has one. */
function basicCredentials(ctx: RequestContext, config: Oauth2Config): ClientAuth | null {
  const raw = ctx.req.headers[config.auth_header_name.toLowerCase()];
  const header = Array.isArray(raw) ? raw[0] : raw;
  const m = header === undefined ? null : /^\s*[Bb]asic\s*(.+)$/.exec(header);
  if (!m) return null;
  const decoded = Buffer.from(m[1].trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1
    ? { clientId: decoded, clientSecret: undefined, fromHeader: true }
    : { clientId: decoded.slice(0, colon), clientSecret: decoded.slice(colon + 1), fromHeader: true };
}

/** Kong's retrieve_client_credentials: body/query pair, else Basic in auth_header_name, else client_id alone. */
function clientCredentials(ctx: RequestContext, config: Oauth2Config, params: Params): ClientAuth {
  const id = str(params.client_id);
  const secret = str(params.client_secret);
  if (id !== undefined && secret !== undefined) return { clientId: id, clientSecret: secret, fromHeader: false };
  return basicCredentials(ctx, config) ?? { clientId: id, clientSecret: undefined, fromHeader: false };
}

/** A parameter that was sent with a value (RFC 6749 §3.1: an empty one counts as omitted). */
const sent = (v: unknown) => v !== undefined && v !== null && v !== '' && v !== true;

/**
 * Client authentication that RFC 6749 forbids though Kong accepts it, at the endpoints where
 * clients authenticate (token, revocation, introspection): credentials in the request URI
 * (§2.3.1: client_id and client_secret "MUST NOT be included in the request URI") and more
 * than one method in one request (§2.3: a Basic header and a client_secret parameter).
 */
function clientAuthMisuse(ctx: RequestContext, config: Oauth2Config, params: Params): OAuthError | null {
  const query = parseUrlEncoded(ctx.rawQuery);
  if (sent(query.client_id) || sent(query.client_secret)) {
    return { error: 'invalid_request', error_description: 'Client credentials must not be sent in the request URI' };
  }
  if (sent(params.client_secret) && basicCredentials(ctx, config) !== null) {
    return { error: 'invalid_request', error_description: 'The client must use only one authentication method' };
  }
  return null;
}

/**
 * The first parameter over its size bound (limits.ts), the client credentials of a Basic header
 * included where the endpoint reads them (not at authorize).
 */
function oversized(ctx: RequestContext, config: Oauth2Config, params: Params, endpoint: string): OAuthError | null {
  const tooLarge = oversizedParameter(params);
  if (tooLarge || endpoint === 'authorize') return tooLarge;
  const basic = basicCredentials(ctx, config);
  return basic && oversizedParameter({ client_id: basic.clientId, client_secret: basic.clientSecret });
}

export interface Oauth2DataPlaneHandler extends PluginHandler<Oauth2Config> {
  tokens: TokenStore;
}

export default async function createOauth2DataPlane(services: DataPlaneServices): Promise<Oauth2DataPlaneHandler> {
  const server = new AuthorizationServer(services);
  const { logger, tokens, secrets } = server;
  const findClient = (clientId: string | undefined) => server.findClient(clientId);

  function serviceIdFor(ctx: RequestContext, config: Oauth2Config): string | null {
    return config.global_credentials ? null : (ctx.service?.id ?? null);
  }

  function provisionOk(params: Params, config: Oauth2Config): boolean {
    const given = params.provision_key;
    return typeof given === 'string' && config.provision_key !== null && provisionKeyMatches(given, config.provision_key);
  }

  // ------------------------------------------------------------------ /oauth2/authorize

  async function authorize(ctx: RequestContext, config: Oauth2Config, plugin: PluginEntity<Oauth2Config>, params: Params) {
    let response: Record<string, unknown> = {};
    let redirectUri: string | null = null;
    let implicit = false;
    const state = params.state;
    const insecure = httpsError(ctx, config);
    if (insecure) {
      response = insecure;
    } else if (!provisionOk(params, config)) {
      response = { error: 'invalid_provision_key', error_description: 'Invalid provision_key' };
    } else if (typeof params.authenticated_userid !== 'string' || params.authenticated_userid.trim() === '') {
      response = { error: 'invalid_authenticated_userid', error_description: 'Missing authenticated_userid parameter' };
    } else {
      const responseType = params.response_type;
      if (state !== undefined && state !== null && typeof state !== 'string') {
        // A repeated `state` or a JSON object/number: it goes back in the redirect URI as given,
        // so only one string is accepted.
        response = { error: 'invalid_request', error_description: 'state must be a string' };
      }
      if (!((responseType === 'code' && config.enable_authorization_code) || (responseType === 'token' && config.enable_implicit_grant))) {
        response = { error: 'unsupported_response_type', error_description: 'Invalid response_type' };
      }
      const scope = retrieveScope(params, config);
      if ('error' in scope) response = scope.error;
      const client = findClient(str(params.client_id));
      let challenge: string | null = null;
      let challengeMethod: string | null = null;
      if (!client || !client.redirect_uris?.length) {
        response = INVALID_CLIENT;
      } else {
        redirectUri = namedRedirect(client.redirect_uris, params.redirect_uri);
        if (redirectUri === null) {
          // As Kong: the error goes to the first registered URI.
          response = INVALID_REDIRECT;
          redirectUri = client.redirect_uris[0];
        }
        if (responseType === 'code') {
          const c = params.code_challenge;
          const m = params.code_challenge_method;
          if (c === undefined || c === null || c === '') {
            if (m !== undefined && m !== null && m !== '') {
              response = { error: 'invalid_request', error_description: 'code_challenge is required when code_method is present' };
            } else if (requiresPkce(config, client)) {
              response = { error: 'invalid_request', error_description: `code_challenge is required for ${client.client_type} clients` };
            }
          } else if (m !== undefined && m !== null && m !== 'S256' && m !== 's256') {
            response = { error: 'invalid_request', error_description: 'code_challenge_method is not supported, must be S256' };
          } else if (typeof c !== 'string') {
            response = { error: 'invalid_request', error_description: 'code_challenge must be a string' };
          } else {
            challenge = normaliseChallenge(c);
            if (challenge === null) {
              response = { error: 'invalid_request', error_description: 'code_challenge must be the base64url-encoded SHA-256 of the code_verifier (43 characters)' };
            }
            challengeMethod = 'S256';
          }
        }
      }
      if (!response.error && client && redirectUri) {
        const scopeValue = 'scope' in scope ? scope.scope : null;
        if (responseType === 'code') {
          const code = await tokens.createCode({
            credential_id: client.id,
            client_id: client.client_id,
            service_id: serviceIdFor(ctx, config),
            plugin_id: plugin.id,
            authenticated_userid: params.authenticated_userid as string,
            scope: scopeValue,
            redirect_uri: typeof params.redirect_uri === 'string' && params.redirect_uri !== '' ? params.redirect_uri : null,
            challenge,
            challenge_method: challengeMethod,
          });
          response = { code };
        } else {
          const issued = await tokens.issue({
            credentialId: client.id,
            clientId: client.client_id,
            serviceId: serviceIdFor(ctx, config),
            pluginId: plugin.id,
            expiresIn: config.token_expiration,
            refreshTokenTtl: config.refresh_token_ttl,
            withRefresh: false,
            scope: scopeValue,
            authenticatedUserid: params.authenticated_userid as string,
            trackGrant: false,
          });
          response = { access_token: issued.accessToken, token_type: 'bearer' };
          if (config.token_expiration > 0) response.expires_in = config.token_expiration;
          implicit = true;
        }
      }
    }
    if (typeof state === 'string') response.state = state;
    const status = response.error ? 400 : 200;
    if (redirectUri) {
      const flat: Record<string, string> = {};
      for (const [k, v] of Object.entries(response)) flat[k] = String(v);
      ctx.respond(status, { redirect_uri: buildRedirect(redirectUri, flat, implicit) }, NO_STORE);
    } else {
      ctx.respond(status, response, NO_STORE);
    }
  }

  // ------------------------------------------------------------------ /oauth2/token

  async function token(ctx: RequestContext, config: Oauth2Config, plugin: PluginEntity<Oauth2Config>, params: Params) {
    let error: OAuthError | null = null;
    let headerClientFailure = false;
    let success: Record<string, unknown> | null = null;
    const state = params.state;
    const insecure = httpsError(ctx, config);
    const misuse = insecure ? null : clientAuthMisuse(ctx, config, params);
    if (insecure) {
      error = insecure;
    } else if (misuse) {
      error = misuse;
    } else {
      const grantType = params.grant_type;
      if (
        !(
          grantType === 'authorization_code' ||
          grantType === 'refresh_token' ||
          (grantType === 'client_credentials' && config.enable_client_credentials) ||
          (grantType === 'password' && config.enable_password_grant)
        )
      ) {
        error = { error: 'unsupported_grant_type', error_description: 'Invalid grant_type' };
      }
      const auth = clientCredentials(ctx, config, params);
      const client = findClient(auth.clientId);
      if (grantType !== 'client_credentials') {
        if (!client || !client.redirect_uris?.length) {
          error = INVALID_CLIENT;
          headerClientFailure = auth.fromHeader;
        } else {
          if (namedRedirect(client.redirect_uris, params.redirect_uri) === null) error = INVALID_REDIRECT;
        }
      }
      if (client && client.client_type === 'confidential') {
        if (!(await secrets.verify(client.id, client.client_secret, auth.clientSecret))) {
          error = INVALID_CLIENT;
          headerClientFailure = auth.fromHeader;
        }
      } else if (client && client.client_type === 'public' && auth.clientSecret !== undefined && auth.clientSecret.trim() !== '') {
        error = { error: 'invalid_request', error_description: 'client_secret is disallowed for public clients' };
      }
      if (!error) {
        const result = await grant(ctx, config, plugin, params, grantType as string, client, state);
        if ('error' in result) error = result.error;
        else success = result.body;
      }
    }
    if (success) {
      ctx.respond(200, success, NO_STORE);
      return;
    }
    const body: Record<string, unknown> = { ...error! };
    if (state !== undefined && state !== null) body.state = state;
    if (error!.error === 'invalid_client' && headerClientFailure) {
      ctx.respond(401, body, { ...NO_STORE, 'WWW-Authenticate': 'Basic realm="OAuth2.0"' });
    } else {
      ctx.respond(400, body, NO_STORE);
    }
  }

  /** Key order as Kong serialises it (its tests match the raw body). */
  function tokenBody(accessToken: string, refreshToken: string | null, expiresIn: number, state: unknown) {
    const body: Record<string, unknown> = {};
    if (refreshToken) body.refresh_token = refreshToken;
    body.token_type = 'bearer';
    body.access_token = accessToken;
    if (expiresIn > 0) body.expires_in = expiresIn;
    if (state !== undefined && state !== null) body.state = state;
    return body;
  }

  async function grant(
    ctx: RequestContext,
    config: Oauth2Config,
    plugin: PluginEntity<Oauth2Config>,
    params: Params,
    grantType: string,
    client: SnapshotCredential | undefined,
    state: unknown,
  ): Promise<{ error: OAuthError } | { body: Record<string, unknown> }> {
    const serviceId = serviceIdFor(ctx, config);
    const invalidCode = { error: { error: 'invalid_request', error_description: 'Invalid code' } };
    const invalidRefresh = { error: { error: 'invalid_request', error_description: 'Invalid refresh_token' } };

    if (grantType === 'authorization_code') {
      const code = str(params.code);
      const hash = code ? sha256Hex(code) : null;
      const rec = hash ? await tokens.lookupCode(hash) : null;
      if (!rec) {
        if (hash) {
          await tokens.assertRestored();
          // RFC 6749 §4.1.2 / RFC 9700 §4.5: a replayed code revokes what it produced.
          await server.revokeReplayedGrant(await tokens.usedCodeGrant(hash), 'authorization code replayed');
        }
        return invalidCode;
      }
      if ((serviceId && serviceId !== rec.service_id) || rec.credential_id !== client!.id) return invalidCode;
      // Issued under a client_id the credential no longer has.
      if (rec.client_id !== undefined && rec.client_id !== client!.client_id) return invalidCode;
      if (config.global_credentials && rec.plugin_id && rec.plugin_id !== plugin.id) return invalidCode;
      const redirect = str(params.redirect_uri);
      if (rec.redirect_uri && redirect && redirect !== rec.redirect_uri) {
        // RFC 6749 §4.1.3: the redirect_uri must be the one of the authorization request.
        return { error: { error: 'invalid_grant', error_description: 'redirect_uri does not match the authorization request' } };
      }
      const verifier = params.code_verifier;
      // Any recorded challenge, even an empty or malformed one from before it was validated,
      // demands a verifier (an empty one can never match: the code is then unusable).
      if (rec.challenge !== null && rec.challenge !== undefined) {
        if (verifier === undefined || verifier === null) {
          return { error: { error: 'invalid_request', error_description: 'code_verifier is required for PKCE authorization requests' } };
        }
        if (typeof verifier !== 'string') return { error: { error: 'invalid_request', error_description: 'code_verifier is not a string' } };
        if (verifier.length < 43 || verifier.length > 128) {
          return { error: { error: 'invalid_request', error_description: 'code_verifier must be between 43 and 128 characters' } };
        }
        if (!safeEqual(sha256Base64Url(verifier), rec.challenge)) return { error: { error: 'invalid_grant', error_description: 'Invalid code' } };
      } else if (verifier !== undefined && verifier !== null && verifier !== '') {
        // RFC 9700 §4.8.2 (PKCE downgrade): a verifier for a code issued without a challenge.
        return { error: { error: 'invalid_grant', error_description: 'Invalid code' } };
      }
      if (!(await tokens.claimCode(rec))) {
        // Lost a concurrent redemption: that is a replay too.
        await tokens.revokeGrant(rec.grant_id);
        logger.warn('oauth2: authorization code redeemed twice; grant revoked', { grant_id: rec.grant_id });
        return invalidCode;
      }
      const issued = await tokens.issue({
        credentialId: client!.id,
        clientId: client!.client_id,
        serviceId,
        pluginId: plugin.id,
        expiresIn: config.token_expiration,
        refreshTokenTtl: config.refresh_token_ttl,
        withRefresh: true,
        scope: rec.scope,
        authenticatedUserid: rec.authenticated_userid,
        grantId: rec.grant_id,
        trackGrant: true,
      });
      return { body: tokenBody(issued.accessToken, issued.refreshToken, config.token_expiration, state) };
    }

    if (grantType === 'client_credentials') {
      if (params.authenticated_userid !== undefined && !provisionOk(params, config)) {
        return { error: { error: 'invalid_provision_key', error_description: 'Invalid provision_key' } };
      }
      if (!client) return { error: INVALID_CLIENT };
      if (client.client_type === 'public') {
        // RFC 6749 §4.4: confidential clients only (Kong hands tokens to anyone knowing a public client_id).
        return { error: { error: 'unauthorized_client', error_description: 'The client_credentials grant is for confidential clients only' } };
      }
      const scope = retrieveScope(params, config);
      if ('error' in scope) return scope;
      const userid = params.authenticated_userid;
      const issued = await tokens.issue({
        credentialId: client.id,
        clientId: client.client_id,
        serviceId,
        pluginId: plugin.id,
        expiresIn: config.token_expiration,
        refreshTokenTtl: config.refresh_token_ttl,
        withRefresh: false,
        scope: scope.scope,
        authenticatedUserid: typeof userid === 'string' ? userid : null,
        trackGrant: false,
      });
      return { body: tokenBody(issued.accessToken, null, config.token_expiration, state) };
    }

    if (grantType === 'password') {
      if (!provisionOk(params, config)) return { error: { error: 'invalid_provision_key', error_description: 'Invalid provision_key' } };
      const userid = params.authenticated_userid;
      if (typeof userid !== 'string' || userid.trim() === '') {
        return { error: { error: 'invalid_authenticated_userid', error_description: 'Missing authenticated_userid parameter' } };
      }
      const scope = retrieveScope(params, config);
      if ('error' in scope) return scope;
      const issued = await tokens.issue({
        credentialId: client!.id,
        clientId: client!.client_id,
        serviceId,
        pluginId: plugin.id,
        expiresIn: config.token_expiration,
        refreshTokenTtl: config.refresh_token_ttl,
        withRefresh: true,
        scope: scope.scope,
        authenticatedUserid: userid,
        trackGrant: true,
      });
      return { body: tokenBody(issued.accessToken, issued.refreshToken, config.token_expiration, state) };
    }

    // refresh_token
    const presented = str(params.refresh_token);
    const hash = presented ? sha256Hex(presented) : null;
    const rec = hash ? await tokens.lookupRefresh(hash) : null;
    if (!rec) {
      if (hash) {
        await tokens.assertRestored();
        // RFC 9700 §4.14.2: a rotated refresh token came back; revoke the grant's live tokens.
        await server.revokeReplayedGrant(await tokens.usedRefreshGrant(hash), 'rotated refresh token reused');
      }
      return invalidRefresh;
    }
    if (serviceId && serviceId !== rec.service_id) return invalidRefresh;
    if (rec.credential_id !== client!.id) return { error: INVALID_CLIENT };
    // Changing a credential's client_id ends the tokens issued under the old one, refresh tokens too.
    if (rec.client_id !== client!.client_id) return invalidRefresh;
    if (config.scopes && rec.scope) {
      for (const s of rec.scope.split(' ')) {
        if (!config.scopes.includes(s)) return { error: { error: 'invalid_scope', error_description: 'Scope mismatch' } };
      }
    }
    if (config.reuse_refresh_token) {
      const issued = await tokens.renewAccess(rec, config.token_expiration, config.refresh_token_ttl);
      return { body: tokenBody(issued.accessToken, presented!, config.token_expiration, state) };
    }
    if (!(await tokens.claimRefresh(rec, config.refresh_token_ttl))) {
      await tokens.revokeGrant(rec.grant_id);
      logger.warn('oauth2: refresh token redeemed twice; grant revoked', { grant_id: rec.grant_id });
      return invalidRefresh;
    }
    await tokens.revokeToken(rec);
    const issued = await tokens.issue({
      credentialId: client!.id,
      clientId: client!.client_id,
      serviceId: rec.service_id,
      pluginId: plugin.id,
      expiresIn: config.token_expiration,
      refreshTokenTtl: config.refresh_token_ttl,
      withRefresh: true,
      scope: rec.scope,
      authenticatedUserid: rec.authenticated_userid,
      grantId: rec.grant_id,
      trackGrant: true,
    });
    return { body: tokenBody(issued.accessToken, issued.refreshToken, config.token_expiration, state) };
  }

  // ------------------------------------------------------------------ RFC 7009 / RFC 7662

  /** Client authentication for revocation and introspection: Basic or body credentials. */
  async function authenticateClient(
    ctx: RequestContext,
    config: Oauth2Config,
    params: Params,
    allowPublic: boolean,
  ): Promise<SnapshotCredential | null> {
    const auth = clientCredentials(ctx, config, params);
    const client = findClient(auth.clientId);
    let ok = false;
    if (client?.client_type === 'confidential') ok = await secrets.verify(client.id, client.client_secret, auth.clientSecret);
    else if (client?.client_type === 'public') ok = allowPublic && (auth.clientSecret === undefined || auth.clientSecret.trim() === '');
    if (ok) return client!;
    const body = { ...INVALID_CLIENT };
    // RFC 7235 §3.1 / RFC 6749 §5.2: a 401 names the scheme to use. No credentials at all is 401
    // too; a failed client_secret_post stays 400 (no header was used).
    if (auth.fromHeader || auth.clientId === undefined) ctx.respond(401, body, { ...NO_STORE, 'WWW-Authenticate': 'Basic realm="OAuth2.0"' });
    else ctx.respond(400, body, NO_STORE);
    return null;
  }

  async function findToken(value: string, hint: unknown): Promise<{ kind: 'access' | 'refresh'; record: TokenRecord } | null> {
    const hash = sha256Hex(value);
    const order: ('access' | 'refresh')[] = hint === 'refresh_token' ? ['refresh', 'access'] : ['access', 'refresh'];
    for (const kind of order) {
      const record = kind === 'access' ? await tokens.lookupAccess(hash) : await tokens.lookupRefresh(hash);
      if (record) return { kind, record };
    }
    await tokens.assertRestored();
    return null;
  }

  /**
   * What revocation (RFC 7009 §2.1) and introspection (RFC 7662 §2.1) share: HTTPS, an
   * authenticated client (public ones only where allowed: they may revoke, not introspect),
   * a `token` parameter. Answers the error itself and returns null.
   */
  async function tokenEndpointRequest(ctx: RequestContext, config: Oauth2Config, params: Params, allowPublic: boolean) {
    const insecure = httpsError(ctx, config);
    if (insecure) {
      ctx.respond(400, insecure, NO_STORE);
      return null;
    }
    const misuse = clientAuthMisuse(ctx, config, params);
    if (misuse) {
      ctx.respond(400, misuse, NO_STORE);
      return null;
    }
    const client = await authenticateClient(ctx, config, params, allowPublic);
    if (!client) return null;
    const value = params.token;
    if (typeof value !== 'string' || value === '') {
      ctx.respond(400, { error: 'invalid_request', error_description: 'Missing token parameter' }, NO_STORE);
      return null;
    }
    return { client, found: await findToken(value, params.token_type_hint) };
  }

  async function revoke(ctx: RequestContext, config: Oauth2Config, params: Params) {
    const request = await tokenEndpointRequest(ctx, config, params, true);
    if (!request) return;
    const { client, found } = request;
    if (found) {
      if (found.record.credential_id !== client.id) {
        // RFC 7009 §2.1: the token must have been issued to the requesting client.
        ctx.respond(400, { error: 'unauthorized_client', error_description: 'The token was not issued to this client' }, NO_STORE);
        return;
      }
      // A refresh token takes its whole grant with it (RFC 7009 §2.1); an access token its row.
      if (found.kind === 'refresh') {
        await tokens.revokeToken(found.record);
        await tokens.revokeGrant(found.record.grant_id);
      } else {
        await tokens.revokeToken(found.record);
      }
    }
    // RFC 7009 §2.2: 200 also for unknown or already invalid tokens.
    ctx.respond(200, {}, NO_STORE);
  }

  async function introspect(ctx: RequestContext, config: Oauth2Config, params: Params) {
    const request = await tokenEndpointRequest(ctx, config, params, false);
    if (!request) return;
    const { client, found } = request;
    const inactive = () => ctx.respond(200, { active: false }, NO_STORE);
    if (!found || found.record.credential_id !== client.id) return inactive();
    const rec = found.record;
    // Issued under a client_id the credential no longer has: dead, as on resource requests
    // (RFC 7662 §2.2: active only while the token may be used).
    if (rec.client_id !== client.client_id) return inactive();
    const consumer = server.credentialsById.get(rec.credential_id) && server.consumersById.get(server.credentialsById.get(rec.credential_id)!.consumer.id);
    if (!consumer || tokens.isCredentialRevoked(rec.credential_id) || tokens.isConsumerRevoked(consumer.id)) return inactive();
    let exp: number | null = null;
    if (found.kind === 'access') {
      if (rec.expires_in > 0) {
        exp = rec.created_at + rec.expires_in;
        if (nowSeconds() > exp) return inactive();
      }
    } else exp = rec.purge_at;
    const body: Record<string, unknown> = {
      active: true,
      client_id: rec.client_id,
      token_type: found.kind === 'access' ? 'bearer' : 'refresh_token',
      iat: rec.created_at,
    };
    if (rec.scope) body.scope = rec.scope;
    if (exp) body.exp = exp;
    if (rec.authenticated_userid) {
      body.sub = rec.authenticated_userid;
      body.username = rec.authenticated_userid;
    }
    if (rec.service_id) body.aud = rec.service_id;
    ctx.respond(200, body, NO_STORE);
  }

  // ------------------------------------------------------------------ RFC 8414

  function metadata(ctx: RequestContext, config: Oauth2Config) {
    // Over HTTPS only, as the endpoints it lists: asked over plain HTTP, its https:// addresses
    // would carry the plain listener's port from the Host header.
    const insecure = httpsError(ctx, config);
    if (insecure) return ctx.respond(400, insecure, NO_STORE);
    const prefix = ctx.path.replace(/\/?\.well-known\/oauth-authorization-server\/?$/, '');
    const host = String(ctx.req.headers.host ?? '127.0.0.1');
    const issuer = `https://${host}${prefix}`;
    const grants: string[] = [];
    if (config.enable_authorization_code) grants.push('authorization_code');
    if (config.enable_implicit_grant) grants.push('implicit');
    if (config.enable_client_credentials) grants.push('client_credentials');
    if (config.enable_password_grant) grants.push('password');
    if ((config.enable_authorization_code || config.enable_password_grant) && config.token_expiration > 0) grants.push('refresh_token');
    const responseTypes: string[] = [];
    if (config.enable_authorization_code) responseTypes.push('code');
    if (config.enable_implicit_grant) responseTypes.push('token');
    const body: Record<string, unknown> = { issuer };
    if (responseTypes.length) body.authorization_endpoint = `${issuer}/oauth2/authorize`;
    body.token_endpoint = `${issuer}/oauth2/token`;
    body.revocation_endpoint = `${issuer}/oauth2/revoke`;
    body.introspection_endpoint = `${issuer}/oauth2/introspect`;
    if (responseTypes.length) body.response_types_supported = responseTypes;
    body.grant_types_supported = grants;
    body.token_endpoint_auth_methods_supported = ['client_secret_basic', 'client_secret_post', 'none'];
    body.revocation_endpoint_auth_methods_supported = ['client_secret_basic', 'client_secret_post', 'none'];
    body.introspection_endpoint_auth_methods_supported = ['client_secret_basic', 'client_secret_post'];
    if (config.enable_authorization_code) body.code_challenge_methods_supported = ['S256'];
    if (config.scopes?.length) body.scopes_supported = config.scopes;
    ctx.respond(200, body, { 'Cache-Control': 'public, max-age=60' });
  }

  // ------------------------------------------------------------------ resource requests

  function setConsumerHeaders(ctx: RequestContext, consumer: ConsumerEntity) {
    ctx.setUpstreamHeader('X-Consumer-ID', consumer.id);
    ctx.setUpstreamHeader('X-Consumer-Custom-ID', consumer.custom_id ?? null);
    ctx.setUpstreamHeader('X-Consumer-Username', consumer.username ?? null);
  }

  async function findAccessToken(ctx: RequestContext, config: Oauth2Config): Promise<string | null> {
    const name = config.auth_header_name.toLowerCase();
    const raw = ctx.req.headers[name];
    if (raw !== undefined) {
      const value = Array.isArray(raw) ? raw[0] : raw;
      const parts = value.split(/\s+/).filter(Boolean);
      if (parts.length === 2 && /^(bearer|token)$/i.test(parts[0])) {
        if (config.hide_credentials) ctx.setUpstreamHeader(config.auth_header_name, null);
        return parts[1];
      }
      if (config.hide_credentials) await hideParam(ctx);
      return value;
    }
    const query = parseUrlEncoded(ctx.rawQuery);
    let token: unknown = query.access_token;
    if (ctx.method === 'POST' || ctx.method === 'PUT' || ctx.method === 'PATCH') {
      const body = await readBodyParams(ctx);
      if (body.access_token !== undefined) token = body.access_token;
    }
    if (typeof token !== 'string') return null;
    if (config.hide_credentials) await hideParam(ctx);
    return token;
  }

  async function hideParam(ctx: RequestContext) {
    if (ctx.rawQuery) ctx.setUpstreamQuery(removeQueryParam(ctx.rawQuery, 'access_token'));
    if (ctx.method !== 'GET' && bodyKind(ctx) === 'form') {
      const body = (await ctx.readBody()).toString('utf8');
      ctx.setUpstreamBody(Buffer.from(removeQueryParam(body, 'access_token')));
    }
  }

  async function resource(ctx: RequestContext, config: Oauth2Config) {
    const token = await findAccessToken(ctx, config);
    let failure: Failure | null = null;
    let authenticated: { record: TokenRecord; credential: SnapshotCredential; consumer: ConsumerEntity } | null = null;
    if (!token) {
      failure = {
        status: 401,
        body: { error: 'invalid_request', error_description: 'The access token is missing' },
        headers: { 'WWW-Authenticate': config.realm !== null ? `Bearer realm="${config.realm}"` : 'Bearer' },
      };
    } else {
      const record = await tokens.lookupAccess(sha256Hex(token));
      const credential = record ? server.credentialsById.get(record.credential_id) : undefined;
      const consumer = credential ? server.consumersById.get(credential.consumer.id) : undefined;
      const serviceId = ctx.service?.id ?? null;
      if (!record) {
        await tokens.assertRestored();
        failure = invalidTokenFailure(config);
      } else if (!config.global_credentials && !record.service_id) {
        failure = invalidTokenFailure(config, "The access token is global, but the current plugin is configured without 'global_credentials'");
      } else if (record.service_id && record.service_id !== serviceId) failure = invalidTokenFailure(config);
      else if (record.expires_in > 0 && nowSeconds() - record.created_at > record.expires_in) failure = invalidTokenFailure(config);
      else if (record.purge_at !== null && nowSeconds() >= record.purge_at) failure = invalidTokenFailure(config);
      else if (
        !credential ||
        credential.client_id !== record.client_id ||
        tokens.isCredentialRevoked(credential.id) ||
        !consumer ||
        tokens.isConsumerRevoked(consumer.id)
      ) {
        // Deleting a consumer or credential revokes its tokens everywhere.
        failure = invalidTokenFailure(config);
      } else authenticated = { record, credential, consumer };
    }

    if (authenticated) {
      const { record, credential, consumer } = authenticated;
      setConsumerHeaders(ctx, consumer);
      ctx.setUpstreamHeader('X-Credential-Identifier', credential.client_id);
      ctx.setUpstreamHeader('X-Authenticated-Scope', record.scope ?? null);
      ctx.setUpstreamHeader('X-Authenticated-Userid', record.authenticated_userid ?? null);
      ctx.setUpstreamHeader('X-Anonymous-Consumer', null);
      ctx.consumer = consumer;
      ctx.credential = { id: credential.id, identifier: credential.client_id };
      ctx.shared.authenticated = true;
      return;
    }
    if (config.anonymous) {
      const anonymous = server.consumersById.get(config.anonymous) ?? server.consumersByUsername.get(config.anonymous);
      if (!anonymous) {
        ctx.respond(500, { message: `anonymous consumer ${config.anonymous} is configured but doesn't exist` });
        return;
      }
      setConsumerHeaders(ctx, anonymous);
      ctx.setUpstreamHeader('X-Anonymous-Consumer', 'true');
      ctx.setUpstreamHeader('X-Credential-Identifier', null);
      ctx.setUpstreamHeader('X-Authenticated-Scope', null);
      ctx.setUpstreamHeader('X-Authenticated-Userid', null);
      ctx.consumer = anonymous;
      ctx.credential = null;
      return;
    }
    ctx.respond(failure!.status, failure!.body, failure!.headers);
  }

  return {
    tokens,

    onSnapshot(snapshot: Snapshot) {
      server.onSnapshot(snapshot);
    },

    async access(ctx, config, plugin) {
      if (config.anonymous && (ctx.credential || ctx.shared.authenticated)) {
        // Logical OR with another authentication plugin that already succeeded.
        ctx.setUpstreamHeader('X-Authenticated-Scope', null);
        ctx.setUpstreamHeader('X-Authenticated-Userid', null);
        return;
      }
      const m = ENDPOINT_RE.exec(ctx.path);
      if (m) {
        const endpoint = m[1];
        if (ctx.method !== 'POST') {
          const description = `The HTTP method ${ctx.method} is invalid for the ${ENDPOINT_NAMES[endpoint]} endpoint`;
          ctx.respond(
            405,
            { error: 'invalid_method', error_description: description },
            { 'WWW-Authenticate': `Bearer ${realmPrefix(config)}error="invalid_method", error_description="${description}"` },
          );
          return;
        }
        const params = await readParams(ctx);
        const tooLarge = oversized(ctx, config, params, endpoint);
        if (tooLarge) {
          // Before anything else reads them; nothing of the request is echoed.
          ctx.respond(400, tooLarge, NO_STORE);
          return;
        }
        try {
          if (endpoint === 'token') return await token(ctx, config, plugin, params);
          if (endpoint === 'authorize') return await authorize(ctx, config, plugin, params);
          if (endpoint === 'revoke') return await revoke(ctx, config, params);
          return await introspect(ctx, config, params);
        } catch (err) {
          if (ctx.responded) throw err;
          // RFC 6749 §4.1.2.1 / RFC 7009 §2.2.1: a passing outage is 503, and the client retries.
          if (err instanceof TokenStoreRestoringError) {
            ctx.log.debug('oauth2 endpoint: not found while the token store is being restored', { endpoint });
            ctx.respond(503, { error: 'temporarily_unavailable', error_description: STORE_RESTORING }, { ...NO_STORE, 'Retry-After': '1' });
            return;
          }
          if (!isStoreUnavailable(err)) throw err;
          ctx.log.warn('oauth2 endpoint: token store unreachable', { endpoint, error: (err as Error).message });
          ctx.respond(503, { error: 'temporarily_unavailable', error_description: STORE_DOWN }, { ...NO_STORE, 'Retry-After': '1' });
          return;
        }
      }
      if ((ctx.method === 'GET' || ctx.method === 'HEAD') && ctx.path.replace(/\/$/, '').endsWith(WELL_KNOWN)) {
        return metadata(ctx, config);
      }
      try {
        return await resource(ctx, config);
      } catch (err) {
        if (err instanceof TokenStoreRestoringError && !ctx.responded) {
          // Not 401: a client told its token is invalid throws it away (RFC 6750 §3 style, with
          // RFC 6749's temporarily_unavailable).
          ctx.log.debug('oauth2: unknown token while the token store is being restored');
          const failure = restoringFailure(config);
          return ctx.respond(failure.status, failure.body, failure.headers);
        }
        if (!isStoreUnavailable(err) || ctx.responded) throw err;
        // A token this data plane has not seen recently cannot be checked: say so, never 500.
        ctx.log.warn('oauth2: token store unreachable for an uncached token', { error: (err as Error).message });
        ctx.respond(503, { message: STORE_DOWN }, { 'Retry-After': '1' });
      }
    },

    async close() {
      await tokens.close();
    },
  };
}

// The oauth2 plugin on a data plane: Kong's authorization server endpoints (/oauth2/authorize,
// /oauth2/token) plus RFC 7009 revocation, RFC 7662 introspection and RFC 8414 metadata, and the
// resource-server check on every other request. Consumers and credentials come from the config
// snapshot; tokens and codes from the shared store (see tokens.ts). No database, no round trip to
// the control plane.
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import type { ConsumerEntity } from '@gatehouse/core/entities.ts';
import type { DataPlaneServices, PluginHandler, RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { isStoreUnavailable } from '@gatehouse/core/store/index.ts';
import { INVALID_REDIRECT, requireAuthenticatedUserid, requireProvisionKey, retrieveScope, runChecks, type Check } from './checks.ts';
import {
  authenticateClient,
  checkClientSecret,
  CLIENT_AUTH_METHODS,
  clientCredentials,
  CONFIDENTIAL_CLIENT_AUTH_METHODS,
  invalidClient,
  oversizedBasicCredentials,
  rejectClientAuthMisuse,
} from './client-auth.ts';
import type { EndpointRequest } from './endpoints/endpoint.ts';
import type { GrantRequest } from './grants/grant.ts';
import { grantEnabled, grantForResponseType, grantForType, GRANTS, type AuthorizationEndpointGrant, type TokenEndpointGrant } from './grants/index.ts';
import {
  httpsError,
  invalidMethod,
  NO_STORE,
  OAuthError,
  requireHttps,
  respondError,
  STORE_BEING_RESTORED,
  STORE_DOWN,
  STORE_RESTORING,
  STORE_UNREACHABLE,
} from './errors.ts';
import { tokenResponse } from './issue.ts';
import { oversizedParameter } from './limits.ts';
import { bodyKind, parseUrlEncoded, readBodyParams, readParams, removeQueryParam, stringParam, type Params } from './params.ts';
import { namedRedirect, redirectBody, registeredRedirects } from './redirect.ts';
import type { Oauth2Config } from './schema.ts';
import { AuthorizationServer, type SnapshotCredential } from './server.ts';
import { TokenStoreRestoringError, type TokenRecord, type TokenStore } from './tokens.ts';

export type { SnapshotCredential } from './server.ts';

const ENDPOINT_RE = /\/oauth2\/(token|authorize|revoke|introspect)\/?$/;
const WELL_KNOWN = '/.well-known/oauth-authorization-server';
const INVALID_TOKEN = 'The access token is invalid or has expired';
const ENDPOINT_NAMES: Record<string, string> = {
  token: 'token',
  authorize: 'authorization',
  revoke: 'revocation',
  introspect: 'introspection',
};

// The resource check's failures: shared, so that it allocates nothing before it answers.
const MISSING_TOKEN = new OAuthError('invalid_request', 'The access token is missing', { status: 401, headers: {}, challenge: 'Bearer alone' });
const INVALID_ACCESS_TOKEN = new OAuthError('invalid_token', INVALID_TOKEN, { status: 401, headers: {}, challenge: 'Bearer' });
const GLOBAL_ACCESS_TOKEN = new OAuthError('invalid_token', "The access token is global, but the current plugin is configured without 'global_credentials'", {
  status: 401,
  headers: {},
  challenge: 'Bearer',
  challengeDescription: INVALID_TOKEN,
});
const RESTORING_ACCESS_TOKEN = new OAuthError('temporarily_unavailable', STORE_RESTORING, {
  status: 503,
  headers: { 'Retry-After': '1', 'Cache-Control': 'no-store' },
  challenge: 'Bearer',
});

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * The first parameter over its size bound (limits.ts), the client credentials of a Basic header
 * included where the endpoint reads them (not at authorize).
 */
function oversized(ctx: RequestContext, config: Oauth2Config, params: Params, endpoint: string): OAuthError | null {
  const tooLarge = oversizedParameter(params) ?? (endpoint === 'authorize' ? null : oversizedBasicCredentials(ctx, config));
  return tooLarge && new OAuthError(tooLarge.error, tooLarge.error_description);
}

export interface Oauth2DataPlaneHandler extends PluginHandler<Oauth2Config> {
  tokens: TokenStore;
}

interface AuthorizationRequest extends EndpointRequest {
  /** The grant its response_type starts, enabled or not. */
  grant: AuthorizationEndpointGrant | undefined;
  /** The client, when it has redirect URIs (Kong answers one without as an unknown client). */
  client: SnapshotCredential | null;
  /** The redirect URI the request names, when it is registered. */
  redirectUri: string | null;
}

/** Kong's checks at /oauth2/authorize once the request passed HTTPS, provision_key and authenticated_userid. */
const AUTHORIZATION_CHECKS: readonly Check<AuthorizationRequest>[] = [
  function stateIsOneString({ params }) {
    const state = params.state;
    if (state !== undefined && state !== null && typeof state !== 'string') {
      // A repeated `state` or a JSON object/number: it goes back in the redirect URI as given,
      // so only one string is accepted.
      throw new OAuthError('invalid_request', 'state must be a string');
    }
  },
  function responseTypeEnabled({ grant, config }) {
    if (!grant || !grantEnabled(grant, config)) throw new OAuthError('unsupported_response_type', 'Invalid response_type');
  },
  function scopeValid({ params, config }) {
    retrieveScope(params, config);
  },
  function clientKnown({ client }) {
    if (!client) throw invalidClient(false);
  },
  function redirectUriRegistered({ client, redirectUri }) {
    if (client && redirectUri === null) throw INVALID_REDIRECT;
  },
  function grantAccepts(request) {
    if (request.client) request.grant?.authorization.check?.(request, request.client);
  },
];

interface TokenRequest extends GrantRequest {
  /** The grant its grant_type names, enabled or not. */
  grant: TokenEndpointGrant | undefined;
}

/** Kong's checks at /oauth2/token once the request passed HTTPS and the client authentication rules. */
const TOKEN_CHECKS: readonly Check<TokenRequest>[] = [
  function grantTypeEnabled({ grant, config }) {
    if (!grant || !(grant.alwaysRedeemable || grantEnabled(grant, config))) throw new OAuthError('unsupported_grant_type', 'Invalid grant_type');
  },
  // An unknown grant_type is held to the redirect URI rules too (Kong's order).
  function clientHasRedirectUris({ grant, client, auth }) {
    if ((grant?.requiresRedirectUri ?? true) && !registeredRedirects(client)) throw invalidClient(auth.fromHeader);
  },
  function redirectUriRegistered({ grant, client, params }) {
    const registered = registeredRedirects(client);
    if ((grant?.requiresRedirectUri ?? true) && registered && namedRedirect(registered, params.redirect_uri) === null) throw INVALID_REDIRECT;
  },
  async function clientSecretValid({ server, client, auth }) {
    await checkClientSecret(server, client, auth);
  },
];

export default async function createOauth2DataPlane(services: DataPlaneServices): Promise<Oauth2DataPlaneHandler> {
  const server = new AuthorizationServer(services);
  const { tokens } = server;

  // ------------------------------------------------------------------ /oauth2/authorize

  async function authorize(request: EndpointRequest) {
    const { ctx, config, params } = request;
    requireHttps(ctx, config);
    requireProvisionKey(params, config);
    const authenticatedUserid = requireAuthenticatedUserid(params);
    const grant = grantForResponseType(params.response_type);
    const found = server.findClient(stringParam(params.client_id));
    const registered = registeredRedirects(found);
    const client = registered ? found! : null;
    const redirectUri = registered && namedRedirect(registered, params.redirect_uri);
    try {
      await runChecks(AUTHORIZATION_CHECKS, { ...request, grant, client, redirectUri });
    } catch (err) {
      // As Kong: once the client is known, the error goes to its redirect URI, the first
      // registered one when the request named another.
      throw registered && err instanceof OAuthError ? err.redirectedTo(redirectUri ?? registered[0]) : err;
    }
    // The checks passed: the grant is enabled, the client and its redirect URI known.
    const scope = retrieveScope(params, config);
    const response = await grant!.authorization.respond({ ...request, client: client!, authenticatedUserid, scope });
    if (typeof params.state === 'string') response.fields.state = params.state;
    ctx.respond(200, redirectBody(redirectUri!, response.fields, response.inFragment), NO_STORE);
  }

  // ------------------------------------------------------------------ /oauth2/token

  async function token(request: EndpointRequest) {
    const { ctx, config, params } = request;
    requireHttps(ctx, config);
    rejectClientAuthMisuse(request);
    const auth = clientCredentials(ctx, config, params);
    const client = server.findClient(auth.clientId);
    const grant = grantForType(params.grant_type);
    const tokenRequest: TokenRequest = { ...request, grant, auth, client };
    await runChecks(TOKEN_CHECKS, tokenRequest);
    // The checks passed: the grant is one the token endpoint takes.
    const issued = await grant!.exchange(tokenRequest);
    ctx.respond(200, tokenResponse(issued, config.token_expiration, params.state), NO_STORE);
  }

  // ------------------------------------------------------------------ RFC 7009 / RFC 7662

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
   * a `token` parameter.
   */
  async function presentedToken(request: EndpointRequest, allowPublic: boolean) {
    const { ctx, config, params } = request;
    requireHttps(ctx, config);
    rejectClientAuthMisuse(request);
    const client = await authenticateClient(request, allowPublic);
    const value = params.token;
    if (typeof value !== 'string' || value === '') throw new OAuthError('invalid_request', 'Missing token parameter');
    return { client, found: await findToken(value, params.token_type_hint) };
  }

  async function revoke(request: EndpointRequest) {
    const { client, found } = await presentedToken(request, true);
    if (found) {
      if (found.record.credential_id !== client.id) {
        // RFC 7009 §2.1: the token must have been issued to the requesting client.
        throw new OAuthError('unauthorized_client', 'The token was not issued to this client');
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
    request.ctx.respond(200, {}, NO_STORE);
  }

  async function introspect(request: EndpointRequest) {
    const { ctx } = request;
    const { client, found } = await presentedToken(request, false);
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
    if (insecure) return respondError(ctx, config, insecure);
    const prefix = ctx.path.replace(/\/?\.well-known\/oauth-authorization-server\/?$/, '');
    const host = String(ctx.req.headers.host ?? '127.0.0.1');
    const issuer = `https://${host}${prefix}`;
    const grants = GRANTS.filter((grant) => grantEnabled(grant, config));
    const responseTypes = grants.flatMap((grant) => (grant.authorization ? [grant.authorization.responseType] : []));
    const body: Record<string, unknown> = { issuer };
    if (responseTypes.length) body.authorization_endpoint = `${issuer}/oauth2/authorize`;
    body.token_endpoint = `${issuer}/oauth2/token`;
    body.revocation_endpoint = `${issuer}/oauth2/revoke`;
    body.introspection_endpoint = `${issuer}/oauth2/introspect`;
    if (responseTypes.length) body.response_types_supported = responseTypes;
    body.grant_types_supported = grants.map((grant) => grant.type);
    body.token_endpoint_auth_methods_supported = CLIENT_AUTH_METHODS;
    body.revocation_endpoint_auth_methods_supported = CLIENT_AUTH_METHODS;
    body.introspection_endpoint_auth_methods_supported = CONFIDENTIAL_CLIENT_AUTH_METHODS;
    for (const grant of grants) Object.assign(body, grant.metadata);
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
    let failure: OAuthError | null = null;
    let authenticated: { record: TokenRecord; credential: SnapshotCredential; consumer: ConsumerEntity } | null = null;
    if (!token) {
      failure = MISSING_TOKEN;
    } else {
      const record = await tokens.lookupAccess(sha256Hex(token));
      const credential = record ? server.credentialsById.get(record.credential_id) : undefined;
      const consumer = credential ? server.consumersById.get(credential.consumer.id) : undefined;
      const serviceId = ctx.service?.id ?? null;
      if (!record) {
        await tokens.assertRestored();
        failure = INVALID_ACCESS_TOKEN;
      } else if (!config.global_credentials && !record.service_id) {
        failure = GLOBAL_ACCESS_TOKEN;
      } else if (record.service_id && record.service_id !== serviceId) failure = INVALID_ACCESS_TOKEN;
      else if (record.expires_in > 0 && nowSeconds() - record.created_at > record.expires_in) failure = INVALID_ACCESS_TOKEN;
      else if (record.purge_at !== null && nowSeconds() >= record.purge_at) failure = INVALID_ACCESS_TOKEN;
      else if (
        !credential ||
        credential.client_id !== record.client_id ||
        tokens.isCredentialRevoked(credential.id) ||
        !consumer ||
        tokens.isConsumerRevoked(consumer.id)
      ) {
        // Deleting a consumer or credential revokes its tokens everywhere.
        failure = INVALID_ACCESS_TOKEN;
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
    respondError(ctx, config, failure!);
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
        if (ctx.method !== 'POST') return respondError(ctx, config, invalidMethod(ctx.method, ENDPOINT_NAMES[endpoint]));
        const params = await readParams(ctx);
        const tooLarge = oversized(ctx, config, params, endpoint);
        // Before anything else reads them; nothing of the request is echoed.
        if (tooLarge) return respondError(ctx, config, tooLarge);
        const request: EndpointRequest = { ctx, config, plugin, params, server };
        try {
          if (endpoint === 'token') return await token(request);
          if (endpoint === 'authorize') return await authorize(request);
          if (endpoint === 'revoke') return await revoke(request);
          return await introspect(request);
        } catch (err) {
          if (ctx.responded) throw err;
          if (err instanceof OAuthError) {
            const state = params.state;
            if (endpoint === 'token') return respondError(ctx, config, err, state ?? undefined);
            return respondError(ctx, config, err, endpoint === 'authorize' && typeof state === 'string' ? state : undefined);
          }
          // RFC 6749 §4.1.2.1 / RFC 7009 §2.2.1: a passing outage is 503, and the client retries.
          if (err instanceof TokenStoreRestoringError) {
            ctx.log.debug('oauth2 endpoint: not found while the token store is being restored', { endpoint });
            return respondError(ctx, config, STORE_BEING_RESTORED);
          }
          if (!isStoreUnavailable(err)) throw err;
          ctx.log.warn('oauth2 endpoint: token store unreachable', { endpoint, error: (err as Error).message });
          return respondError(ctx, config, STORE_UNREACHABLE);
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
          return respondError(ctx, config, RESTORING_ACCESS_TOKEN);
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

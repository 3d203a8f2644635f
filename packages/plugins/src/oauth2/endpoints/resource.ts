// The resource-server check on every request that is not for an endpoint: the access token
// (Bearer header, or access_token in the query or body, as Kong), its record in the token store,
// and the upstream headers of its consumer, or of the anonymous consumer. On the proxy's hot
// path: no allocation, closure or await beyond what the check itself needs.
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import type { ConsumerEntity } from '@gatehouse/core/entities.ts';
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import { isStoreUnavailable } from '@gatehouse/core/store/index.ts';
import { OAuthError, respondError, STORE_DOWN, STORE_RESTORING } from '../errors.ts';
import { bodyKind, parseUrlEncoded, readBodyParams, removeQueryParam } from '../params.ts';
import type { Oauth2Config } from '../schema.ts';
import type { AuthorizationServer, SnapshotCredential } from '../server.ts';
import { nowSeconds, TokenStoreRestoringError, type TokenRecord } from '../tokens.ts';

const INVALID_TOKEN = 'The access token is invalid or has expired';

// The check's failures: shared, so that refusing a request allocates nothing until it answers.
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

export async function checkAccessToken(ctx: RequestContext, config: Oauth2Config, server: AuthorizationServer) {
  const { tokens } = server;
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

/** The check's answer when the token store failed it; anything else is thrown on. */
export function answerStoreFailure(ctx: RequestContext, config: Oauth2Config, err: unknown): void {
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

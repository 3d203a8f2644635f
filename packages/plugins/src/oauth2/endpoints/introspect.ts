// /oauth2/introspect: RFC 7662 token introspection, of a confidential client's own tokens.
import { CONFIDENTIAL_CLIENT_AUTH_METHODS } from '../client-auth.ts';
import { NO_STORE } from '../errors.ts';
import { nowSeconds } from '../tokens.ts';
import type { Endpoint, EndpointRequest } from './endpoint.ts';
import { presentedToken } from './presented-token.ts';

async function introspect(request: EndpointRequest) {
  const { ctx, server } = request;
  const { tokens } = server;
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

export const introspectEndpoint: Endpoint = {
  path: 'introspect',
  name: 'introspection',
  clientAuthMethods: CONFIDENTIAL_CLIENT_AUTH_METHODS,
  handle: introspect,
};

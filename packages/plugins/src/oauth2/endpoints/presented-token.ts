// What revocation (RFC 7009 §2.1) and introspection (RFC 7662 §2.1) share: HTTPS, an
// authenticated client (public ones only where allowed: they may revoke, not introspect), a
// `token` parameter, and the token it names, access or refresh.
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import { authenticateClient, rejectClientAuthMisuse } from '../client-auth.ts';
import { OAuthError, requireHttps } from '../errors.ts';
import type { SnapshotCredential } from '../server.ts';
import type { TokenRecord, TokenStore } from '../tokens.ts';
import type { EndpointRequest } from './endpoint.ts';

export interface PresentedToken {
  client: SnapshotCredential;
  found: { kind: 'access' | 'refresh'; record: TokenRecord } | null;
}

async function findToken(tokens: TokenStore, value: string, hint: unknown): Promise<PresentedToken['found']> {
  const hash = sha256Hex(value);
  const order: ('access' | 'refresh')[] = hint === 'refresh_token' ? ['refresh', 'access'] : ['access', 'refresh'];
  for (const kind of order) {
    const record = kind === 'access' ? await tokens.lookupAccess(hash) : await tokens.lookupRefresh(hash);
    if (record) return { kind, record };
  }
  await tokens.assertRestored();
  return null;
}

export async function presentedToken(request: EndpointRequest, allowPublic: boolean): Promise<PresentedToken> {
  const { ctx, config, params } = request;
  requireHttps(ctx, config);
  rejectClientAuthMisuse(request);
  const client = await authenticateClient(request, allowPublic);
  const value = params.token;
  if (typeof value !== 'string' || value === '') throw new OAuthError('invalid_request', 'Missing token parameter');
  return { client, found: await findToken(request.server.tokens, value, params.token_type_hint) };
}

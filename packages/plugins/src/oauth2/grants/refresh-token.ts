// The refresh token grant (RFC 6749 §6): rotation by default, with reuse detection (RFC 9700
// §4.14.2); reuse_refresh_token keeps the refresh token and replaces the access token.
import { invalidClient } from '../client-auth.ts';
import { OAuthError } from '../errors.ts';
import { issueTokens, serviceIdFor } from '../issue.ts';
import { stringParam } from '../params.ts';
import type { Grant, GrantRequest } from './grant.ts';

const INVALID_REFRESH_TOKEN = new OAuthError('invalid_request', 'Invalid refresh_token');

async function refresh(request: GrantRequest) {
  const { ctx, config, params, server } = request;
  const { tokens } = server;
  const client = request.client!;
  const serviceId = serviceIdFor(ctx, config);
  const presented = stringParam(params.refresh_token);
  // RFC 9700 §4.14.2: a rotated refresh token came back; revoke the grant's live tokens.
  const rec = await server.lookupSingleUse(
    presented,
    (hash) => tokens.lookupRefresh(hash),
    (hash) => tokens.usedRefreshGrant(hash),
    'rotated refresh token reused',
  );
  if (!rec) throw INVALID_REFRESH_TOKEN;
  if (serviceId && serviceId !== rec.service_id) throw INVALID_REFRESH_TOKEN;
  if (rec.credential_id !== client.id) throw invalidClient(false);
  // Changing a credential's client_id ends the tokens issued under the old one, refresh tokens too.
  if (rec.client_id !== client.client_id) throw INVALID_REFRESH_TOKEN;
  if (config.scopes && rec.scope) {
    for (const s of rec.scope.split(' ')) {
      if (!config.scopes.includes(s)) throw new OAuthError('invalid_scope', 'Scope mismatch');
    }
  }
  if (config.reuse_refresh_token) {
    const issued = await tokens.renewAccess(rec, config.token_expiration, config.refresh_token_ttl);
    return { accessToken: issued.accessToken, refreshToken: presented! };
  }
  if (!(await tokens.claimRefresh(rec, config.refresh_token_ttl))) {
    await tokens.revokeGrant(rec.grant_id);
    server.logger.warn('oauth2: refresh token redeemed twice; grant revoked', { grant_id: rec.grant_id });
    throw INVALID_REFRESH_TOKEN;
  }
  await tokens.revokeToken(rec);
  return issueTokens(request, {
    client,
    serviceId: rec.service_id,
    scope: rec.scope,
    authenticatedUserid: rec.authenticated_userid,
    refreshable: true,
    grantId: rec.grant_id,
  });
}

export const refreshToken: Grant = {
  type: 'refresh_token',
  // Advertised while a grant that issues refresh tokens is enabled and tokens expire (with
  // token_expiration 0 none are issued).
  enabledBy: (config) => (config.enable_authorization_code || config.enable_password_grant) && config.token_expiration > 0,
  parameters: ['refresh_token'],
  requiresRedirectUri: true,
  // As Kong: a refresh token is redeemed whatever the flags.
  alwaysRedeemable: true,
  exchange: refresh,
};

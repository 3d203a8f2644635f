// The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636, pkce.ts): the authorization
// endpoint issues a code (response_type=code), the token endpoint redeems it once.
import { OAuthError } from '../errors.ts';
import { issueTokens, serviceIdFor } from '../issue.ts';
import { stringParam } from '../params.ts';
import { checkVerifier, requestedChallenge } from '../pkce.ts';
import type { AuthorizedRequest, Grant, GrantRequest } from './grant.ts';

const INVALID_CODE = new OAuthError('invalid_request', 'Invalid code');

async function issueCode({ ctx, config, plugin, params, server, client, authenticatedUserid, scope }: AuthorizedRequest) {
  const challenge = requestedChallenge(params, config, client);
  const code = await server.tokens.createCode({
    credential_id: client.id,
    client_id: client.client_id,
    service_id: serviceIdFor(ctx, config),
    plugin_id: plugin.id,
    authenticated_userid: authenticatedUserid,
    scope,
    redirect_uri: typeof params.redirect_uri === 'string' && params.redirect_uri !== '' ? params.redirect_uri : null,
    challenge,
    challenge_method: challenge === null ? null : 'S256',
  });
  return { fields: { code }, inFragment: false };
}

async function redeemCode(request: GrantRequest) {
  const { ctx, config, plugin, params, server } = request;
  const { tokens } = server;
  const client = request.client!;
  const serviceId = serviceIdFor(ctx, config);
  // RFC 6749 §4.1.2 / RFC 9700 §4.5: a replayed code revokes what it produced.
  const rec = await server.lookupSingleUse(
    stringParam(params.code),
    (hash) => tokens.lookupCode(hash),
    (hash) => tokens.usedCodeGrant(hash),
    'authorization code replayed',
  );
  if (!rec) throw INVALID_CODE;
  if ((serviceId && serviceId !== rec.service_id) || rec.credential_id !== client.id) throw INVALID_CODE;
  // Issued under a client_id the credential no longer has.
  if (rec.client_id !== undefined && rec.client_id !== client.client_id) throw INVALID_CODE;
  if (config.global_credentials && rec.plugin_id && rec.plugin_id !== plugin.id) throw INVALID_CODE;
  const redirect = stringParam(params.redirect_uri);
  if (rec.redirect_uri && redirect && redirect !== rec.redirect_uri) {
    // RFC 6749 §4.1.3: the redirect_uri must be the one of the authorization request.
    throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request');
  }
  checkVerifier(params, rec.challenge);
  if (!(await tokens.claimCode(rec))) {
    // Lost a concurrent redemption: that is a replay too.
    await tokens.revokeGrant(rec.grant_id);
    server.logger.warn('oauth2: authorization code redeemed twice; grant revoked', { grant_id: rec.grant_id });
    throw INVALID_CODE;
  }
  return issueTokens(request, {
    client,
    serviceId,
    scope: rec.scope,
    authenticatedUserid: rec.authenticated_userid,
    refreshable: true,
    grantId: rec.grant_id,
  });
}

export const authorizationCode: Grant = {
  type: 'authorization_code',
  enabledBy: 'enable_authorization_code',
  parameters: ['code', 'redirect_uri', 'code_verifier', 'code_challenge', 'code_challenge_method'],
  requiresRedirectUri: true,
  // As Kong: a code issued while the flow was enabled (or by another plugin with
  // global_credentials) is redeemed whatever this config says.
  alwaysRedeemable: true,
  metadata: { code_challenge_methods_supported: ['S256'] },
  exchange: redeemCode,
  authorization: {
    responseType: 'code',
    check: ({ params, config }, client) => void requestedChallenge(params, config, client),
    respond: issueCode,
  },
};

// /oauth2/revoke: RFC 7009 token revocation, of a client's own tokens.
import { CLIENT_AUTH_METHODS } from '../client-auth.ts';
import { NO_STORE, OAuthError } from '../errors.ts';
import type { Endpoint, EndpointRequest } from './endpoint.ts';
import { presentedToken } from './presented-token.ts';

async function revoke(request: EndpointRequest) {
  const { tokens } = request.server;
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

export const revokeEndpoint: Endpoint = {
  path: 'revoke',
  name: 'revocation',
  clientAuthMethods: CLIENT_AUTH_METHODS,
  handle: revoke,
};

// The implicit grant (RFC 6749 §4.2): the authorization endpoint (response_type=token) issues
// the access token itself, in the redirect URI's fragment and without a refresh token. The
// token endpoint never sees it.
import { issueTokens, tokenResponse } from '../issue.ts';
import type { AuthorizedRequest, Grant } from './grant.ts';

async function issueInFragment(request: AuthorizedRequest) {
  const { config, client, scope, authenticatedUserid } = request;
  const issued = await issueTokens(request, { client, scope, authenticatedUserid, refreshable: false });
  return { fields: tokenResponse(issued, config.token_expiration, undefined), inFragment: true };
}

export const implicit: Grant = {
  type: 'implicit',
  enabledBy: 'enable_implicit_grant',
  parameters: [],
  requiresRedirectUri: true,
  authorization: { responseType: 'token', respond: issueInFragment },
};

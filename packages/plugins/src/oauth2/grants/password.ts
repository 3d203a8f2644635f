// Kong's password grant (RFC 6749 §4.3 in name): the application's backend, proven by the
// provision_key, asks for a token for the user it authenticated itself (authenticated_userid).
import { requireAuthenticatedUserid, requireProvisionKey, retrieveScope } from '../checks.ts';
import { issueTokens } from '../issue.ts';
import type { Grant, GrantRequest } from './grant.ts';

async function issueToUser(request: GrantRequest) {
  const { config, params } = request;
  requireProvisionKey(params, config);
  const authenticatedUserid = requireAuthenticatedUserid(params);
  const scope = retrieveScope(params, config);
  return issueTokens(request, { client: request.client!, scope, authenticatedUserid, refreshable: true });
}

export const password: Grant = {
  type: 'password',
  enabledBy: 'enable_password_grant',
  parameters: ['provision_key', 'authenticated_userid', 'scope'],
  requiresRedirectUri: true,
  exchange: issueToUser,
};

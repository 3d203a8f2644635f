// The client credentials grant (RFC 6749 §4.4): a confidential client gets a token for itself,
// or, with the provision_key, for an authenticated_userid.
import { invalidClient } from '../client-auth.ts';
import { requireProvisionKey, retrieveScope } from '../checks.ts';
import { OAuthError } from '../errors.ts';
import { issueTokens } from '../issue.ts';
import { stringParam } from '../params.ts';
import type { Grant, GrantRequest } from './grant.ts';

async function issueToClient(request: GrantRequest) {
  const { config, params, client } = request;
  if (params.authenticated_userid !== undefined) requireProvisionKey(params, config);
  if (!client) throw invalidClient(false);
  if (client.client_type === 'public') {
    // RFC 6749 §4.4: confidential clients only (Kong hands tokens to anyone knowing a public client_id).
    throw new OAuthError('unauthorized_client', 'The client_credentials grant is for confidential clients only');
  }
  const scope = retrieveScope(params, config);
  const authenticatedUserid = stringParam(params.authenticated_userid) ?? null;
  return issueTokens(request, { client, scope, authenticatedUserid, refreshable: false });
}

export const clientCredentials: Grant = {
  type: 'client_credentials',
  enabledBy: 'enable_client_credentials',
  parameters: ['scope', 'authenticated_userid', 'provision_key'],
  // As Kong, the token endpoint does not check the client for this grant: an unknown one is
  // refused here, after the provision_key, and with a 400 even when it came in a Basic header.
  requiresRedirectUri: false,
  exchange: issueToClient,
};

// /oauth2/token (Kong's): the client authenticates and names a grant_type; the grant (grants/)
// issues the tokens once the checks every grant shares have passed.
import { INVALID_REDIRECT, runChecks, type Check } from '../checks.ts';
import { checkClientSecret, CLIENT_AUTH_METHODS, clientCredentials, invalidClient, rejectClientAuthMisuse } from '../client-auth.ts';
import { NO_STORE, OAuthError, requireHttps } from '../errors.ts';
import type { GrantRequest } from '../grants/grant.ts';
import { grantEnabled, grantForType, type TokenEndpointGrant } from '../grants/index.ts';
import { tokenResponse } from '../issue.ts';
import { namedRedirect, registeredRedirects } from '../redirect.ts';
import type { Endpoint, EndpointRequest } from './endpoint.ts';

interface TokenRequest extends GrantRequest {
  /** The grant its grant_type names, enabled or not. */
  grant: TokenEndpointGrant | undefined;
}

/** An unknown grant_type is held to the redirect URI rules too. */
const requiresRedirectUri = ({ grant }: TokenRequest) => grant?.requiresRedirectUri ?? true;

/**
 * Kong's checks, in its order, once the request passed HTTPS and the client authentication
 * rules: each runs, and the last one that fails is answered (runChecks).
 */
const CHECKS: readonly Check<TokenRequest>[] = [
  function grantTypeEnabled({ grant, config }) {
    if (!grant || !(grant.alwaysRedeemable || grantEnabled(grant, config))) throw new OAuthError('unsupported_grant_type', 'Invalid grant_type');
  },
  function clientHasRedirectUris(request) {
    if (requiresRedirectUri(request) && !registeredRedirects(request.client)) throw invalidClient(request.auth.fromHeader);
  },
  function redirectUriRegistered(request) {
    const registered = registeredRedirects(request.client);
    if (requiresRedirectUri(request) && registered && namedRedirect(registered, request.params.redirect_uri) === null) throw INVALID_REDIRECT;
  },
  async function clientSecretValid({ server, client, auth }) {
    await checkClientSecret(server, client, auth);
  },
];

async function token(request: EndpointRequest) {
  const { ctx, config, params, server } = request;
  requireHttps(ctx, config);
  rejectClientAuthMisuse(request);
  const auth = clientCredentials(ctx, config, params);
  const client = server.findClient(auth.clientId);
  const grant = grantForType(params.grant_type);
  const tokenRequest: TokenRequest = { ...request, grant, auth, client };
  await runChecks(CHECKS, tokenRequest);
  // The checks passed: the grant is one the token endpoint takes.
  const issued = await grant!.exchange(tokenRequest);
  ctx.respond(200, tokenResponse(issued, config.token_expiration, params.state), NO_STORE);
}

export const tokenEndpoint: Endpoint = {
  path: 'token',
  name: 'token',
  clientAuthMethods: CLIENT_AUTH_METHODS,
  errorState: (params) => params.state ?? undefined,
  handle: token,
};

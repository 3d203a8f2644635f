// /oauth2/authorize (Kong's): the application's backend, proven by its provision_key, asks for
// a code (response_type=code) or, with the implicit grant, a token (response_type=token) for a
// user it authenticated itself. The answer is JSON carrying the client's redirect URI with the
// response (or, once the client is known, the error) in it.
import { INVALID_REDIRECT, requireAuthenticatedUserid, requireProvisionKey, retrieveScope, runChecks, type Check } from '../checks.ts';
import { invalidClient } from '../client-auth.ts';
import { NO_STORE, OAuthError, requireHttps } from '../errors.ts';
import { grantEnabled, grantForResponseType, responseTypesSupported, type AuthorizationEndpointGrant } from '../grants/index.ts';
import { stringParam } from '../params.ts';
import { namedRedirect, redirectBody, registeredRedirects } from '../redirect.ts';
import type { SnapshotCredential } from '../server.ts';
import type { Endpoint, EndpointRequest } from './endpoint.ts';

interface AuthorizationRequest extends EndpointRequest {
  /** The grant its response_type starts, enabled or not. */
  grant: AuthorizationEndpointGrant | undefined;
  /** The client, when it has redirect URIs (Kong answers one without as an unknown client). */
  client: SnapshotCredential | null;
  /** The redirect URI the request names, when it is registered. */
  redirectUri: string | null;
}

/**
 * Kong's checks, in its order, once the request passed HTTPS, provision_key and
 * authenticated_userid: each runs, and the last one that fails is answered (runChecks).
 */
const CHECKS: readonly Check<AuthorizationRequest>[] = [
  function stateIsOneString({ params }) {
    const state = params.state;
    if (state !== undefined && state !== null && typeof state !== 'string') {
      // A repeated `state` or a JSON object/number: it goes back in the redirect URI as given,
      // so only one string is accepted.
      throw new OAuthError('invalid_request', 'state must be a string');
    }
  },
  function responseTypeEnabled({ grant, config }) {
    if (!grant || !grantEnabled(grant, config)) throw new OAuthError('unsupported_response_type', 'Invalid response_type');
  },
  function scopeValid({ params, config }) {
    retrieveScope(params, config);
  },
  function clientKnown({ client }) {
    if (!client) throw invalidClient(false);
  },
  function redirectUriRegistered({ client, redirectUri }) {
    if (client && redirectUri === null) throw INVALID_REDIRECT;
  },
  function grantAccepts(request) {
    if (request.client) request.grant?.authorization.check?.(request, request.client);
  },
];

/** Only a `state` that is one string goes back. */
const stateEchoed = (state: unknown) => (typeof state === 'string' ? state : undefined);

async function authorize(request: EndpointRequest) {
  const { ctx, config, params, server } = request;
  requireHttps(ctx, config);
  requireProvisionKey(params, config);
  const authenticatedUserid = requireAuthenticatedUserid(params);
  const grant = grantForResponseType(params.response_type);
  const found = server.findClient(stringParam(params.client_id));
  const registered = registeredRedirects(found);
  const client = registered ? found! : null;
  const redirectUri = registered && namedRedirect(registered, params.redirect_uri);
  try {
    await runChecks(CHECKS, { ...request, grant, client, redirectUri });
  } catch (err) {
    // As Kong: once the client is known, the error goes to its redirect URI, the first
    // registered one when the request named another.
    throw registered && err instanceof OAuthError ? err.redirectedTo(redirectUri ?? registered[0]) : err;
  }
  // The checks passed: the grant is enabled, the client and its redirect URI known.
  const scope = retrieveScope(params, config);
  const response = await grant!.authorization.respond({ ...request, client: client!, authenticatedUserid, scope });
  const state = stateEchoed(params.state);
  if (state !== undefined) response.fields.state = state;
  ctx.respond(200, redirectBody(redirectUri!, response.fields, response.inFragment), NO_STORE);
}

export const authorizeEndpoint: Endpoint = {
  path: 'authorize',
  name: 'authorization',
  listed: (config) => responseTypesSupported(config).length > 0,
  errorState: (params) => stateEchoed(params.state),
  handle: authorize,
};

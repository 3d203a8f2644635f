// Client authentication at the endpoints where clients authenticate (token, revocation,
// introspection): where the credentials are read from (Kong's retrieve_client_credentials), the
// ways RFC 6749 forbids though Kong accepts them, the secret check, and invalid_client.
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { EndpointRequest } from './endpoints/endpoint.ts';
import { NO_STORE, OAuthError } from './errors.ts';
import { oversizedParameter } from './limits.ts';
import { parseUrlEncoded, stringParam, type Params } from './params.ts';
import type { Oauth2Config } from './schema.ts';
import type { AuthorizationServer, SnapshotCredential } from './server.ts';

/**
 * How clients authenticate, in RFC 8414's names: a Basic header, the parameters, or (a public
 * client) its client_id alone.
 */
export const CLIENT_AUTH_METHODS: readonly string[] = ['client_secret_basic', 'client_secret_post', 'none'];
export const CONFIDENTIAL_CLIENT_AUTH_METHODS: readonly string[] = ['client_secret_basic', 'client_secret_post'];

export interface ClientAuth {
  clientId: string | undefined;
  clientSecret: string | undefined;
  fromHeader: boolean;
}

/** The client credentials of a Basic `auth_header_name` header, if the request has one. */
function basicCredentials(ctx: RequestContext, config: Oauth2Config): ClientAuth | null {
  const raw = ctx.req.headers[config.auth_header_name.toLowerCase()];
  const header = Array.isArray(raw) ? raw[0] : raw;
  const m = header === undefined ? null : /^\s*[Bb]asic\s*(.+)$/.exec(header);
  if (!m) return null;
  const decoded = Buffer.from(m[1].trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1
    ? { clientId: decoded, clientSecret: undefined, fromHeader: true }
    : { clientId: decoded.slice(0, colon), clientSecret: decoded.slice(colon + 1), fromHeader: true };
}

/** Kong's retrieve_client_credentials: body/query pair, else Basic in auth_header_name, else client_id alone. */
export function clientCredentials(ctx: RequestContext, config: Oauth2Config, params: Params): ClientAuth {
  const id = stringParam(params.client_id);
  const secret = stringParam(params.client_secret);
  if (id !== undefined && secret !== undefined) return { clientId: id, clientSecret: secret, fromHeader: false };
  return basicCredentials(ctx, config) ?? { clientId: id, clientSecret: undefined, fromHeader: false };
}

/** The client credentials of a Basic header over their size bounds (those of the parameters). */
export function oversizedBasicCredentials(ctx: RequestContext, config: Oauth2Config) {
  const basic = basicCredentials(ctx, config);
  return basic && oversizedParameter({ client_id: basic.clientId, client_secret: basic.clientSecret });
}

/** A parameter that was sent with a value (RFC 6749 §3.1: an empty one counts as omitted). */
const sent = (v: unknown) => v !== undefined && v !== null && v !== '' && v !== true;

/**
 * Client authentication that RFC 6749 forbids though Kong accepts it, at the endpoints where
 * clients authenticate (token, revocation, introspection): credentials in the request URI
 * (§2.3.1: client_id and client_secret "MUST NOT be included in the request URI") and more
 * than one method in one request (§2.3: a Basic header and a client_secret parameter).
 */
export function rejectClientAuthMisuse({ ctx, config, params }: EndpointRequest): void {
  const query = parseUrlEncoded(ctx.rawQuery);
  if (sent(query.client_id) || sent(query.client_secret)) {
    throw new OAuthError('invalid_request', 'Client credentials must not be sent in the request URI');
  }
  if (sent(params.client_secret) && basicCredentials(ctx, config) !== null) {
    throw new OAuthError('invalid_request', 'The client must use only one authentication method');
  }
}

/**
 * invalid_client: with `challenge`, a 401 naming the scheme to use (RFC 7235 §3.1 / RFC 6749
 * §5.2), for a client that tried a Basic header.
 */
export function invalidClient(challenge: boolean): OAuthError {
  const description = 'Invalid client authentication';
  return challenge
    ? new OAuthError('invalid_client', description, { status: 401, headers: NO_STORE, challenge: 'Basic' })
    : new OAuthError('invalid_client', description);
}

/** A client_secret sent with a value (only spaces count as none). */
const sentSecret = (auth: ClientAuth) => auth.clientSecret !== undefined && auth.clientSecret.trim() !== '';

function verifySecret(server: AuthorizationServer, client: SnapshotCredential, auth: ClientAuth): Promise<boolean> {
  return server.secrets.verify(client.id, client.client_secret, auth.clientSecret);
}

/** The token endpoint's secret check: a confidential client's must verify, a public client sends none. */
export async function checkClientSecret(server: AuthorizationServer, client: SnapshotCredential | undefined, auth: ClientAuth): Promise<void> {
  if (client?.client_type === 'confidential') {
    if (!(await verifySecret(server, client, auth))) throw invalidClient(auth.fromHeader);
  } else if (client?.client_type === 'public' && sentSecret(auth)) {
    throw new OAuthError('invalid_request', 'client_secret is disallowed for public clients');
  }
}

/** Client authentication for revocation and introspection: Basic or body credentials. */
export async function authenticateClient({ ctx, config, params, server }: EndpointRequest, allowPublic: boolean): Promise<SnapshotCredential> {
  const auth = clientCredentials(ctx, config, params);
  const client = server.findClient(auth.clientId);
  let ok = false;
  if (client?.client_type === 'confidential') ok = await verifySecret(server, client, auth);
  else if (client?.client_type === 'public') ok = allowPublic && !sentSecret(auth);
  if (ok) return client!;
  // RFC 7235 §3.1 / RFC 6749 §5.2: a 401 names the scheme to use. No credentials at all is 401
  // too; a failed client_secret_post stays 400 (no header was used).
  throw invalidClient(auth.fromHeader || auth.clientId === undefined);
}

// The one place tokens are issued: what the grant decides (the client, scope, user, whether the
// grant is refreshable, the grant it continues) joined with what the plugin config decides
// (lifetime, refresh token TTL), and the token response.
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { EndpointRequest } from './endpoints/endpoint.ts';
import type { Oauth2Config } from './schema.ts';
import type { SnapshotCredential } from './server.ts';
import type { Issued } from './tokens.ts';

/** The service a token or code is bound to: none with global_credentials. */
export function serviceIdFor(ctx: RequestContext, config: Oauth2Config): string | null {
  return config.global_credentials ? null : (ctx.service?.id ?? null);
}

export interface Issuance {
  client: SnapshotCredential;
  /** The service the tokens are bound to; the request's (serviceIdFor) when omitted. */
  serviceId?: string | null;
  scope: string | null;
  authenticatedUserid: string | null;
  /**
   * The code, password and refresh grants: a refresh token comes with the access token (unless
   * token_expiration is 0), and the grant's tokens are tracked so that a replayed code or
   * refresh token revokes them.
   */
  refreshable: boolean;
  /** The grant it continues (a code's, a refresh token's); a new one when omitted. */
  grantId?: string;
}

export function issueTokens({ ctx, server, config, plugin }: EndpointRequest, issuance: Issuance): Promise<Issued> {
  const { client } = issuance;
  return server.tokens.issue({
    credentialId: client.id,
    clientId: client.client_id,
    serviceId: issuance.serviceId !== undefined ? issuance.serviceId : serviceIdFor(ctx, config),
    pluginId: plugin.id,
    expiresIn: config.token_expiration,
    refreshTokenTtl: config.refresh_token_ttl,
    withRefresh: issuance.refreshable,
    scope: issuance.scope,
    authenticatedUserid: issuance.authenticatedUserid,
    grantId: issuance.grantId,
    trackGrant: issuance.refreshable,
  });
}

export interface IssuedTokens {
  accessToken: string;
  refreshToken: string | null;
}

/** The token response, keys in the order Kong serialises them (its tests match the raw body). */
export function tokenResponse(tokens: IssuedTokens, expiresIn: number, state: unknown): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (tokens.refreshToken) body.refresh_token = tokens.refreshToken;
  body.token_type = 'bearer';
  body.access_token = tokens.accessToken;
  if (expiresIn > 0) body.expires_in = expiresIn;
  if (state !== undefined && state !== null) body.state = state;
  return body;
}

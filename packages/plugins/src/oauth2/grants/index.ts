// Every grant the authorization server knows, in Kong's order: its config schema's "at least one
// of these fields must be true" names their flags in it (schema.ts), and the RFC 8414 metadata
// lists them in it. The token endpoint dispatches on grant_type and the authorization endpoint
// on response_type through this list. A new grant is one file exporting a Grant, and one line here.
import type { Oauth2Config } from '../schema.ts';
import { authorizationCode } from './authorization-code.ts';
import { clientCredentials } from './client-credentials.ts';
import type { Grant, GrantFlag } from './grant.ts';
import { implicit } from './implicit.ts';
import { password } from './password.ts';
import { refreshToken } from './refresh-token.ts';

export const GRANTS: readonly Grant[] = [authorizationCode, implicit, clientCredentials, password, refreshToken];

/** The flags of the grants that have one. */
export const GRANT_FLAGS: readonly GrantFlag[] = GRANTS.flatMap((g) => (typeof g.enabledBy === 'string' ? [g.enabledBy] : []));

export function grantEnabled(grant: Grant, config: Oauth2Config): boolean {
  return typeof grant.enabledBy === 'string' ? config[grant.enabledBy] : grant.enabledBy(config);
}

/** RFC 8414's response_types_supported: those of the enabled grants that start at the authorization endpoint. */
export function responseTypesSupported(config: Oauth2Config): string[] {
  return GRANTS.flatMap((grant) => (grant.authorization && grantEnabled(grant, config) ? [grant.authorization.responseType] : []));
}

export type TokenEndpointGrant = Grant & Required<Pick<Grant, 'exchange'>>;
export type AuthorizationEndpointGrant = Grant & Required<Pick<Grant, 'authorization'>>;

const byGrantType = new Map<string, TokenEndpointGrant>();
const byResponseType = new Map<string, AuthorizationEndpointGrant>();
for (const grant of GRANTS) {
  if (grant.exchange) byGrantType.set(grant.type, grant as TokenEndpointGrant);
  if (grant.authorization) byResponseType.set(grant.authorization.responseType, grant as AuthorizationEndpointGrant);
}

/** The grant a token request's grant_type names, enabled or not. */
export function grantForType(grantType: unknown): TokenEndpointGrant | undefined {
  return typeof grantType === 'string' ? byGrantType.get(grantType) : undefined;
}

/** The grant an authorization request's response_type starts, enabled or not. */
export function grantForResponseType(responseType: unknown): AuthorizationEndpointGrant | undefined {
  return typeof responseType === 'string' ? byResponseType.get(responseType) : undefined;
}

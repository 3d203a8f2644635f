// RFC 8414 authorization server metadata, GET <route path>/.well-known/oauth-authorization-server:
// the endpoints and the grants enabled under this plugin's config. (RFC 8414 §3 would put the
// well-known segment before the path; the route prefix is where the gateway can answer.)
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import { httpsError, respondError } from '../errors.ts';
import { grantEnabled, GRANTS, responseTypesSupported } from '../grants/index.ts';
import type { Oauth2Config } from '../schema.ts';
import { ENDPOINTS } from './index.ts';

export const WELL_KNOWN = '/.well-known/oauth-authorization-server';

export function metadata(ctx: RequestContext, config: Oauth2Config) {
  // Over HTTPS only, as the endpoints it lists: asked over plain HTTP, its https:// addresses
  // would carry the plain listener's port from the Host header.
  const insecure = httpsError(ctx, config);
  if (insecure) return respondError(ctx, config, insecure);
  const prefix = ctx.path.replace(/\/?\.well-known\/oauth-authorization-server\/?$/, '');
  const host = String(ctx.req.headers.host ?? '127.0.0.1');
  const issuer = `https://${host}${prefix}`;
  const endpoints = ENDPOINTS.filter((endpoint) => endpoint.listed?.(config) ?? true);
  const grants = GRANTS.filter((grant) => grantEnabled(grant, config));
  const responseTypes = responseTypesSupported(config);
  const body: Record<string, unknown> = { issuer };
  for (const endpoint of endpoints) body[`${endpoint.name}_endpoint`] = `${issuer}/oauth2/${endpoint.path}`;
  if (responseTypes.length) body.response_types_supported = responseTypes;
  body.grant_types_supported = grants.map((grant) => grant.type);
  for (const endpoint of endpoints) {
    if (endpoint.clientAuthMethods) body[`${endpoint.name}_endpoint_auth_methods_supported`] = endpoint.clientAuthMethods;
  }
  for (const grant of grants) Object.assign(body, grant.metadata);
  if (config.scopes?.length) body.scopes_supported = config.scopes;
  ctx.respond(200, body, { 'Cache-Control': 'public, max-age=60' });
}

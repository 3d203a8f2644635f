// The oauth2 plugin on a data plane: Kong's authorization server endpoints (/oauth2/authorize,
// /oauth2/token) plus RFC 7009 revocation, RFC 7662 introspection and RFC 8414 metadata
// (endpoints/), and the resource-server check on every other request (endpoints/resource.ts).
// Consumers and credentials come from the config snapshot; tokens and codes from the shared
// store (server.ts). No database, no round trip to the control plane.
import type { PluginEntity } from '@gatehouse/core/entities.ts';
import type { DataPlaneServices, PluginHandler, RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { isStoreUnavailable } from '@gatehouse/core/store/index.ts';
import { oversizedBasicCredentials } from './client-auth.ts';
import type { Endpoint } from './endpoints/endpoint.ts';
import { endpointFor } from './endpoints/index.ts';
import { metadata, WELL_KNOWN } from './endpoints/metadata.ts';
import { answerStoreFailure, checkAccessToken } from './endpoints/resource.ts';
import { invalidMethod, OAuthError, respondError, STORE_BEING_RESTORED, STORE_UNREACHABLE } from './errors.ts';
import { oversizedParameter } from './limits.ts';
import { readParams } from './params.ts';
import type { Oauth2Config } from './schema.ts';
import { AuthorizationServer } from './server.ts';
import { TokenStoreRestoringError, type TokenStore } from './tokens.ts';

export type { SnapshotCredential } from './server.ts';

export interface Oauth2DataPlaneHandler extends PluginHandler<Oauth2Config> {
  tokens: TokenStore;
}

/**
 * The first parameter over its size bound (limits.ts), the client credentials of a Basic header
 * included where the endpoint reads them (not at authorize).
 */
function oversized(ctx: RequestContext, config: Oauth2Config, endpoint: Endpoint, params: Record<string, unknown>): OAuthError | null {
  const tooLarge = oversizedParameter(params) ?? (endpoint.clientAuthMethods ? oversizedBasicCredentials(ctx, config) : null);
  return tooLarge && new OAuthError(tooLarge.error, tooLarge.error_description);
}

async function serveEndpoint(ctx: RequestContext, config: Oauth2Config, plugin: PluginEntity<Oauth2Config>, endpoint: Endpoint, server: AuthorizationServer) {
  if (ctx.method !== 'POST') return respondError(ctx, config, invalidMethod(ctx.method, endpoint.name));
  const params = await readParams(ctx);
  const tooLarge = oversized(ctx, config, endpoint, params);
  // Before anything else reads them; nothing of the request is echoed.
  if (tooLarge) return respondError(ctx, config, tooLarge);
  try {
    return await endpoint.handle({ ctx, config, plugin, params, server });
  } catch (err) {
    if (ctx.responded) throw err;
    if (err instanceof OAuthError) return respondError(ctx, config, err, endpoint.errorState?.(params));
    // RFC 6749 §4.1.2.1 / RFC 7009 §2.2.1: a passing outage is 503, and the client retries.
    if (err instanceof TokenStoreRestoringError) {
      ctx.log.debug('oauth2 endpoint: not found while the token store is being restored', { endpoint: endpoint.path });
      return respondError(ctx, config, STORE_BEING_RESTORED);
    }
    if (!isStoreUnavailable(err)) throw err;
    ctx.log.warn('oauth2 endpoint: token store unreachable', { endpoint: endpoint.path, error: (err as Error).message });
    return respondError(ctx, config, STORE_UNREACHABLE);
  }
}

export default async function createOauth2DataPlane(services: DataPlaneServices): Promise<Oauth2DataPlaneHandler> {
  const server = new AuthorizationServer(services);
  return {
    tokens: server.tokens,

    onSnapshot(snapshot: Snapshot) {
      server.onSnapshot(snapshot);
    },

    async access(ctx, config, plugin) {
      if (config.anonymous && (ctx.credential || ctx.shared.authenticated)) {
        // Logical OR with another authentication plugin that already succeeded.
        ctx.setUpstreamHeader('X-Authenticated-Scope', null);
        ctx.setUpstreamHeader('X-Authenticated-Userid', null);
        return;
      }
      const endpoint = endpointFor(ctx.path);
      if (endpoint) return serveEndpoint(ctx, config, plugin, endpoint, server);
      if ((ctx.method === 'GET' || ctx.method === 'HEAD') && ctx.path.replace(/\/$/, '').endsWith(WELL_KNOWN)) {
        return metadata(ctx, config);
      }
      try {
        return await checkAccessToken(ctx, config, server);
      } catch (err) {
        answerStoreFailure(ctx, config, err);
      }
    },

    async close() {
      await server.tokens.close();
    },
  };
}

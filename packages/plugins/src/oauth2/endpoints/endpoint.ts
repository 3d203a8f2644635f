// What the authorization server's endpoints are handed: one request, with its parameters read
// (query and body merged, params.ts) and already within their size bounds (limits.ts).
import type { PluginEntity } from '@gatehouse/core/entities.ts';
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { Params } from '../params.ts';
import type { Oauth2Config } from '../schema.ts';
import type { AuthorizationServer } from '../server.ts';

export interface EndpointRequest {
  ctx: RequestContext;
  config: Oauth2Config;
  plugin: PluginEntity<Oauth2Config>;
  params: Params;
  server: AuthorizationServer;
}

// An endpoint of the authorization server, POST <any path>/oauth2/<path>, as the handler
// dispatches to it: after Kong's POST rule and the parameter size bounds (limits.ts), with the
// request's parameters read (query and body merged, params.ts). It throws an OAuthError to
// answer an error; the handler renders it (errors.ts).
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

export interface Endpoint {
  /** The last segment of its path. */
  readonly path: string;
  /** Its name in Kong's 405 message and in RFC 8414's `<name>_endpoint`. */
  readonly name: string;
  /**
   * How clients authenticate there, in RFC 8414's names; absent where they do not (a Basic
   * header's credentials are then not read, nor bounded).
   */
  readonly clientAuthMethods?: readonly string[];
  /** Whether the RFC 8414 metadata lists it under this config (always when absent). */
  listed?(config: Oauth2Config): boolean;
  /** The `state` its error responses carry (none when absent). */
  errorState?(params: Params): unknown;
  handle(request: EndpointRequest): Promise<void>;
}

// A grant behind one small interface, as node-oidc-provider's lib/actions/grants/* and
// node-oauth2-server's lib/grant-types/*: its grant_type, the parameters it reads, the config
// that enables it, whether it needs registered redirect URIs, and its handlers: at the token
// endpoint, and at the authorization endpoint for a flow that starts there (response_type).
// The endpoints make the checks common to every grant first, in Kong's order (endpoints/).
import type { ClientAuth } from '../client-auth.ts';
import type { EndpointRequest } from '../endpoints/endpoint.ts';
import type { IssuedTokens } from '../issue.ts';
import type { BoundedParameter } from '../limits.ts';
import type { Oauth2Config } from '../schema.ts';
import type { SnapshotCredential } from '../server.ts';

/** Kong's enable_* flags (its schema wants at least one set). */
export type GrantFlag = Extract<keyof Oauth2Config, `enable_${string}`>;

/** A token request that passed the token endpoint's checks. */
export interface GrantRequest extends EndpointRequest {
  auth: ClientAuth;
  /** Authenticated; undefined only for a grant that does not require redirect URIs. */
  client: SnapshotCredential | undefined;
}

/** An authorization request that passed the authorization endpoint's checks. */
export interface AuthorizedRequest extends EndpointRequest {
  client: SnapshotCredential;
  authenticatedUserid: string;
  scope: string | null;
}

export interface AuthorizationResponse {
  /** The fields the client's redirect URI carries. */
  fields: Record<string, unknown>;
  /** In the fragment rather than the query (RFC 6749 §4.2.2). */
  inFragment: boolean;
}

export interface Grant {
  /** Its grant_type at the token endpoint, and its name in RFC 8414's grant_types_supported. */
  readonly type: string;
  /** The config that enables it: one of Kong's flags, or a rule. */
  readonly enabledBy: GrantFlag | ((config: Oauth2Config) => boolean);
  /** The parameters its handlers read; each has a size bound in limits.ts. */
  readonly parameters: readonly BoundedParameter[];
  /**
   * Whether the client must have registered redirect URIs, and a redirect_uri it names must be
   * one of them (Kong: every grant but client_credentials).
   */
  readonly requiresRedirectUri: boolean;
  /** The token endpoint takes it even while the config does not enable it. */
  readonly alwaysRedeemable?: boolean;
  /** What the RFC 8414 metadata adds while it is enabled. */
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** Its token request; absent for a grant the authorization endpoint completes. */
  exchange?(request: GrantRequest): Promise<IssuedTokens>;
  readonly authorization?: {
    readonly responseType: string;
    /** Its own check of the request, the last of the endpoint's. */
    check?(request: EndpointRequest, client: SnapshotCredential): void;
    respond(request: AuthorizedRequest): Promise<AuthorizationResponse>;
  };
}

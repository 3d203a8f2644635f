// The authorization server's endpoints, POST <any path>/oauth2/<path>; the RFC 8414 metadata
// lists them in this order. A new endpoint is one file exporting an Endpoint, and one line here.
import { authorizeEndpoint } from './authorize.ts';
import type { Endpoint } from './endpoint.ts';
import { introspectEndpoint } from './introspect.ts';
import { revokeEndpoint } from './revoke.ts';
import { tokenEndpoint } from './token.ts';

export const ENDPOINTS: readonly Endpoint[] = [authorizeEndpoint, tokenEndpoint, revokeEndpoint, introspectEndpoint];

const byPath = new Map(ENDPOINTS.map((endpoint) => [endpoint.path, endpoint]));
const ENDPOINT_RE = new RegExp(`/oauth2/(${ENDPOINTS.map((endpoint) => endpoint.path).join('|')})/?$`);

/** The endpoint a request path ends with, if any. */
export function endpointFor(path: string): Endpoint | undefined {
  const m = ENDPOINT_RE.exec(path);
  return m ? byPath.get(m[1]) : undefined;
}

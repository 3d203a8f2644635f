// Request paths as Kong normalises them (kong.tools.uri.normalize), for the router on the data
// plane and for route validation on the control plane.

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * `path` (starting with '/') as routes are matched against it and as it goes upstream:
 * percent-encoded unreserved characters decoded (RFC 3986 6.2.2; Kong decodes every character
 * outside its reserved set, then re-escapes for the upstream), other triplets upper-cased, dot
 * segments removed (RFC 3986 5.2.4) and repeated slashes merged. Without it `/public/../admin`
 * or `/%61dmin` would be routed by one route and served by the upstream as another's path, past
 * that route's plugins. Returns `path` itself when there is nothing to do.
 */
export function normalizePath(path: string): string {
  if (path.indexOf('%') === -1 && path.indexOf('/.') === -1 && path.indexOf('//') === -1) return path;
  if (path.indexOf('%') !== -1) {
    path = path.replace(/%([0-9A-Fa-f]{2})/g, (triplet, hex: string) => {
      const c = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(c) ? c : triplet.toUpperCase();
    });
  }
  const out: string[] = [];
  const segments = path.split('/');
  // segments[0] is '' (the path starts with '/'); the last one decides a trailing slash.
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    if (seg === '..') {
      out.pop();
      if (last) out.push('');
    } else if (seg === '.' || (seg === '' && !last)) {
      if (last) out.push('');
    } else out.push(seg);
  }
  return `/${out.join('/')}`;
}

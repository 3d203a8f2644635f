// Checks a snapshot before a data plane applies it: shape, hash, references, regexes, plugins
// known to this data plane and configs valid per their schema. An invalid snapshot is refused
// and the data plane keeps serving the previous one.
import { hashContent, type Snapshot, type SnapshotContent } from '@gatehouse/core/snapshot.ts';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';

export class SnapshotError extends Error {
  override name = 'SnapshotError';
}

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrArrOrNull = (v: unknown) => v === null || v === undefined || (Array.isArray(v) && v.every((x) => typeof x === 'string'));

function fail(message: string): never {
  throw new SnapshotError(message);
}

/** Same content the control plane hashed: the snapshot minus version, hash and created_at. */
function contentHashes(s: Record<string, any>): string[] {
  const canonical: SnapshotContent = {
    services: s.services,
    routes: s.routes,
    consumers: s.consumers,
    plugins: s.plugins,
    credentials: s.credentials,
  };
  const hashes = [hashContent(canonical)];
  // Tolerate a control plane that built the object with another key order.
  const { version: _v, hash: _h, created_at: _c, ...rest } = s;
  const keys = Object.keys(rest);
  if (keys.join() !== 'services,routes,consumers,plugins,credentials') hashes.push(hashContent(rest as SnapshotContent));
  return hashes;
}

/**
 * Validates `raw` (a parsed snapshot) and returns it with plugin configs as parsed by their
 * schema (defaults filled). Throws SnapshotError naming the first problem.
 */
export function validateSnapshot(raw: unknown, plugins: ReadonlyMap<string, PluginDefinition>): Snapshot {
  if (!isObj(raw)) fail('snapshot is not an object');
  const s = raw;
  if (!Number.isInteger(s.version) || s.version < 0) fail('snapshot.version must be a non-negative integer');
  if (typeof s.hash !== 'string' || !/^[0-9a-f]{64}$/.test(s.hash)) fail('snapshot.hash must be a SHA-256 hex digest');
  for (const key of ['services', 'routes', 'consumers', 'plugins'] as const) {
    if (!Array.isArray(s[key])) fail(`snapshot.${key} must be an array`);
  }
  if (!isObj(s.credentials)) fail('snapshot.credentials must be an object');
  for (const [name, list] of Object.entries(s.credentials)) {
    if (!Array.isArray(list)) fail(`snapshot.credentials.${name} must be an array`);
    for (const [i, c] of list.entries()) if (!isObj(c) || typeof c.id !== 'string') fail(`snapshot.credentials.${name}[${i}] must be an object with an id`);
  }
  if (!contentHashes(s).includes(s.hash)) fail(`snapshot ${s.version}: hash does not match its content`);

  const serviceIds = new Set<string>();
  for (const [i, svc] of (s.services as unknown[]).entries()) {
    if (!isObj(svc)) fail(`services[${i}] is not an object`);
    if (typeof svc.id !== 'string') fail(`services[${i}].id must be a string`);
    if (typeof svc.protocol !== 'string') fail(`service ${svc.id}: protocol must be a string`);
    if (typeof svc.host !== 'string' || !svc.host) fail(`service ${svc.id}: host must be a non-empty string`);
    if (!Number.isInteger(svc.port) || svc.port < 0 || svc.port > 65535) fail(`service ${svc.id}: port out of range`);
    if (svc.path !== null && svc.path !== undefined && (typeof svc.path !== 'string' || !svc.path.startsWith('/'))) {
      fail(`service ${svc.id}: path must start with /`);
    }
    for (const t of ['connect_timeout', 'read_timeout', 'write_timeout', 'retries'] as const) {
      if (typeof svc[t] !== 'number' || svc[t] < 0) fail(`service ${svc.id}: ${t} must be a non-negative number`);
    }
    serviceIds.add(svc.id);
  }
  const routeIds = new Set<string>();
  for (const [i, r] of (s.routes as unknown[]).entries()) {
    if (!isObj(r)) fail(`routes[${i}] is not an object`);
    if (typeof r.id !== 'string') fail(`routes[${i}].id must be a string`);
    if (!Array.isArray(r.protocols) || !r.protocols.every((p: unknown) => typeof p === 'string')) {
      fail(`route ${r.id}: protocols must be an array of strings`);
    }
    for (const f of ['methods', 'hosts', 'paths', 'snis'] as const) {
      if (!isStrArrOrNull(r[f])) fail(`route ${r.id}: ${f} must be an array of strings or null`);
    }
    for (const p of (r.paths as string[] | null) ?? []) {
      if (p.startsWith('~')) {
        try {
          new RegExp(p.slice(1));
        } catch (err) {
          fail(`route ${r.id}: invalid regex path '${p}': ${(err as Error).message}`);
        }
      } else if (!p.startsWith('/')) fail(`route ${r.id}: path '${p}' must start with / or ~`);
    }
    if (r.headers !== null && r.headers !== undefined) {
      if (!isObj(r.headers)) fail(`route ${r.id}: headers must be an object`);
      for (const [name, values] of Object.entries(r.headers)) {
        if (!isStrArrOrNull(values)) fail(`route ${r.id}: headers.${name} must be an array of strings`);
        for (const v of (values as string[] | null) ?? []) {
          if (v.startsWith('~*')) {
            try {
              new RegExp(v.slice(2));
            } catch (err) {
              fail(`route ${r.id}: invalid header regex '${v}': ${(err as Error).message}`);
            }
          }
        }
      }
    }
    if (r.service !== null && r.service !== undefined) {
      if (!isObj(r.service) || !serviceIds.has(r.service.id)) fail(`route ${r.id}: service ${JSON.stringify(r.service)} is not in the snapshot`);
    }
    routeIds.add(r.id);
  }
  const consumerIds = new Set<string>();
  for (const [i, c] of (s.consumers as unknown[]).entries()) {
    if (!isObj(c) || typeof c.id !== 'string') fail(`consumers[${i}] must be an object with an id`);
    consumerIds.add(c.id);
  }
  const parsedPlugins = (s.plugins as unknown[]).map((p, i) => {
    if (!isObj(p)) fail(`plugins[${i}] is not an object`);
    if (typeof p.id !== 'string' || typeof p.name !== 'string') fail(`plugins[${i}] must have a string id and name`);
    const def = plugins.get(p.name);
    if (!def) fail(`plugin ${p.id}: '${p.name}' is not installed on this data plane`);
    if (p.route && !routeIds.has(p.route.id)) fail(`plugin ${p.id}: route ${p.route.id} is not in the snapshot`);
    if (p.service && !serviceIds.has(p.service.id)) fail(`plugin ${p.id}: service ${p.service.id} is not in the snapshot`);
    if (p.consumer && !consumerIds.has(p.consumer.id)) fail(`plugin ${p.id}: consumer ${p.consumer.id} is not in the snapshot`);
    if (!Array.isArray(p.protocols)) fail(`plugin ${p.id}: protocols must be an array`);
    const parsed = def.configSchema.safeParse(p.config);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      fail(`plugin ${p.id} (${p.name}): invalid config at '${issue?.path.join('.')}': ${issue?.message}`);
    }
    return { ...p, config: parsed.data };
  });
  return { ...(s as Snapshot), plugins: parsedPlugins as Snapshot['plugins'] };
}

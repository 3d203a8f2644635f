// A snapshot compiled into the immutable object requests run against: router, upstreams with
// their keep-alive agents, and each route's plugin chain. Applying a snapshot swaps one
// reference, so requests in flight finish on the object they started with.
import type { Agent } from 'node:http';
import type { RouteEntity, ServiceEntity } from '@gatehouse/core/entities.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { closeExpiredIdleSockets, createAgent, type Upstream } from './forward.ts';
import type { PluginChain, PluginRuntime } from './plugins.ts';
import { Router } from './router.ts';

export interface RoutePayload {
  route: RouteEntity;
  service: ServiceEntity | null;
  upstream: Upstream | null;
  chain: PluginChain;
  /** Route accepts https but not http: plain http gets the https redirect / 426. */
  httpsOnly: boolean;
  pathV1: boolean;
  redirectStatus: number;
}

export interface CompiledConfig {
  version: number;
  hash: string;
  snapshot: Snapshot;
  router: Router<RoutePayload>;
  upstreams: Map<string, Upstream>;
  consumers: Map<string, Snapshot['consumers'][number]>;
}

/**
 * Keep-alive agents outlive snapshots while their upstream stays the same. One per read
 * timeout too: a pooled socket keeps its upstream's read timeout (see forward.ts).
 */
export class AgentPool {
  private readonly agents = new Map<string, Agent>();
  private readonly sweep = setInterval(() => {
    const now = Date.now();
    for (const agent of this.agents.values()) closeExpiredIdleSockets(agent, now);
  }, 250).unref();

  get(protocol: 'http' | 'https', host: string, port: number, tlsVerify: boolean, readTimeout: number): { key: string; agent: Agent } {
    const key = `${protocol}://${host}:${port}|${tlsVerify ? 'verify' : 'noverify'}|${readTimeout}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = createAgent(protocol, tlsVerify);
      this.agents.set(key, agent);
    }
    return { key, agent };
  }

  /** Drops agents no upstream uses any more, after in-flight requests had time to finish. */
  retain(keys: Set<string>, graceMs: number): void {
    for (const [key, agent] of this.agents) {
      if (keys.has(key)) continue;
      this.agents.delete(key);
      setTimeout(() => agent.destroy(), graceMs).unref();
    }
  }

  destroy(): void {
    clearInterval(this.sweep);
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}

const HTTP_PROTOCOLS = new Set(['http', 'https']);

export function compileSnapshot(snapshot: Snapshot, plugins: PluginRuntime, agents: AgentPool): CompiledConfig {
  const services = new Map<string, ServiceEntity>();
  for (const s of snapshot.services) services.set(s.id, s);
  const upstreams = new Map<string, Upstream>();
  const upstreamOf = (svc: ServiceEntity): Upstream | null => {
    let u = upstreams.get(svc.id);
    if (u) return u;
    if (svc.protocol !== 'http' && svc.protocol !== 'https') return null;
    const protocol = svc.protocol;
    const tlsVerify = svc.tls_verify === true;
    const { key, agent } = agents.get(protocol, svc.host, svc.port, tlsVerify, svc.read_timeout);
    const defaultPort = protocol === 'https' ? 443 : 80;
    const bracketed = svc.host.includes(':') && !svc.host.startsWith('[') ? `[${svc.host}]` : svc.host;
    u = {
      key,
      protocol,
      host: svc.host,
      port: svc.port,
      hostHeader: svc.port === defaultPort ? bracketed : `${bracketed}:${svc.port}`,
      path: svc.path,
      connectTimeout: svc.connect_timeout,
      readTimeout: svc.read_timeout,
      writeTimeout: svc.write_timeout,
      retries: svc.retries,
      tlsVerify,
      agent,
      target: { protocol: `${protocol}:`, host: svc.host.replace(/^\[|\]$/g, ''), port: svc.port },
    };
    upstreams.set(svc.id, u);
    return u;
  };

  const chainFor = plugins.chainBuilder(snapshot);
  const inputs: { route: RouteEntity; payload: RoutePayload }[] = [];
  for (const route of snapshot.routes) {
    if (!route.protocols.some((p) => HTTP_PROTOCOLS.has(p))) continue;
    let service: ServiceEntity | null = null;
    if (route.service) {
      service = services.get(route.service.id) ?? null;
      // Kong's control plane leaves disabled services and their routes out of the config.
      if (!service || service.enabled === false) continue;
    }
    const protocols = new Set(route.protocols);
    inputs.push({
      route,
      payload: {
        route,
        service,
        upstream: service ? upstreamOf(service) : null,
        chain: chainFor(route.id, service?.id ?? null),
        httpsOnly: protocols.has('https') && !protocols.has('http'),
        pathV1: route.path_handling === 'v1',
        redirectStatus: route.https_redirect_status_code ?? 426,
      },
    });
  }
  const consumers = new Map(snapshot.consumers.map((c) => [c.id, c]));
  return {
    version: snapshot.version,
    hash: snapshot.hash,
    snapshot,
    router: new Router(inputs),
    upstreams,
    consumers,
  };
}

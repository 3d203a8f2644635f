// A snapshot compiled into the immutable object requests run against: router, upstreams with
// their balancers (each target with its keep-alive agent), and each route's plugin chain.
// Applying a snapshot swaps one reference, so requests in flight finish on the object they
// started with.
import type { RouteEntity, ServiceEntity } from '@gatehouse/core/entities.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import type { AgentPool } from './agent-pool.ts';
import { serverTarget, SingleTarget } from './balancer.ts';
import type { Upstream } from './forward.ts';
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
  /** The pooled agents its targets use, by AgentPool key. */
  agentKeys: Set<string>;
  consumers: Map<string, Snapshot['consumers'][number]>;
}

const HTTP_PROTOCOLS = new Set(['http', 'https']);

export function compileSnapshot(snapshot: Snapshot, plugins: PluginRuntime, agents: AgentPool): CompiledConfig {
  const services = new Map<string, ServiceEntity>();
  for (const s of snapshot.services) services.set(s.id, s);
  const upstreams = new Map<string, Upstream>();
  const agentKeys = new Set<string>();
  const upstreamOf = (svc: ServiceEntity): Upstream | null => {
    let u = upstreams.get(svc.id);
    if (u) return u;
    if (svc.protocol !== 'http' && svc.protocol !== 'https') return null;
    const protocol = svc.protocol;
    const tlsVerify = svc.tls_verify === true;
    const { key, agent } = agents.get(protocol, svc.host, svc.port, tlsVerify, svc.read_timeout);
    agentKeys.add(key);
    u = {
      protocol,
      path: svc.path,
      connectTimeout: svc.connect_timeout,
      readTimeout: svc.read_timeout,
      writeTimeout: svc.write_timeout,
      retries: svc.retries,
      tlsVerify,
      balancer: new SingleTarget(serverTarget(protocol, svc.host, svc.port, agent)),
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
    agentKeys,
    consumers,
  };
}

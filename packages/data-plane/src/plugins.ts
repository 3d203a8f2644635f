// Plugin handlers and per-route plugin chains. Handlers are created once per process, lazily
// (definition.dataPlane(), the plugin's data-plane module), with the DataPlaneServices. At
// snapshot-apply time every route gets its chain: for each plugin name the applicable
// configuration by Kong's precedence (the more specific scope wins), consumer-scoped ones
// kept aside and resolved once an authentication plugin has named the consumer, ordered by
// priority (highest first).
import type { DataPlaneServices, PluginDefinition, PluginHandler } from '@gatehouse/core/plugin-sdk.ts';
import type { PluginEntity } from '@gatehouse/core/entities.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { settleWithin } from '@gatehouse/core/wait.ts';

export interface AppliedPlugin {
  entity: PluginEntity;
  config: unknown;
  http: boolean;
  https: boolean;
  /** Kong's precedence: 0 consumer+route+service … 7 global; lower wins. */
  scopeRank: number;
}

export interface ChainEntry {
  name: string;
  handler: PluginHandler;
  /** The configuration that applies without a consumer (null: only consumer-scoped ones exist). */
  base: AppliedPlugin | null;
  /** consumer id → the configuration that applies for that consumer, when it differs from base. */
  byConsumer: Map<string, AppliedPlugin> | null;
}

export interface PluginChain {
  access: ChainEntry[];
  response: ChainEntry[];
  log: ChainEntry[];
}

/** How long shutdown waits for one plugin's close (which may be waiting for Redis). */
const PLUGIN_CLOSE_WAIT_MS = 2000;

export const EMPTY_CHAIN: PluginChain = Object.freeze({ access: [], response: [], log: [] }) as PluginChain;

function scopeRank(p: PluginEntity): number {
  const c = !!p.consumer;
  const r = !!p.route;
  const s = !!p.service;
  if (c && r && s) return 0;
  if (c && r) return 1;
  if (c && s) return 2;
  if (r && s) return 3;
  if (c) return 4;
  if (r) return 5;
  if (s) return 6;
  return 7;
}

export class PluginRuntime {
  private readonly handlers = new Map<string, Promise<PluginHandler | null>>();
  private readonly loaded = new Map<string, PluginHandler>();

  constructor(
    readonly definitions: ReadonlyMap<string, PluginDefinition>,
    private readonly services: DataPlaneServices,
  ) {}

  /** Creates (once) the handlers for these plugin names. */
  async ensure(names: Iterable<string>): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (const name of names) {
      let p = this.handlers.get(name);
      if (!p) {
        const def = this.definitions.get(name);
        p = (async () => {
          if (!def?.dataPlane) return null;
          const mod = await def.dataPlane();
          const handler = await mod.default(this.services);
          this.loaded.set(name, handler);
          return handler;
        })();
        // A failed load is retried with the next snapshot.
        p.catch(() => this.handlers.delete(name));
        this.handlers.set(name, p);
      }
      waits.push(p);
    }
    await Promise.all(waits);
  }

  handler(name: string): PluginHandler | undefined {
    return this.loaded.get(name);
  }

  /** Lets every created handler precompute for the snapshot about to be applied. */
  notifySnapshot(snapshot: Snapshot): void {
    for (const h of this.loaded.values()) h.onSnapshot?.(snapshot);
  }

  async close(): Promise<void> {
    await Promise.all([...this.loaded.values()].map((h) => settleWithin(h.close?.(), PLUGIN_CLOSE_WAIT_MS)));
  }

  /** Builds a function giving each route's chain, sharing chains between routes with equal inputs. */
  chainBuilder(snapshot: Snapshot): (routeId: string, serviceId: string | null) => PluginChain {
    const applied: AppliedPlugin[] = [];
    for (const p of snapshot.plugins) {
      if (!p.enabled) continue;
      if (!this.loaded.has(p.name)) continue;
      applied.push({
        entity: p,
        config: p.config,
        http: p.protocols.includes('http'),
        https: p.protocols.includes('https'),
        scopeRank: scopeRank(p),
      });
    }
    if (applied.length === 0) return () => EMPTY_CHAIN;
    const globals: AppliedPlugin[] = [];
    const byRoute = new Map<string, AppliedPlugin[]>();
    const byService = new Map<string, AppliedPlugin[]>();
    for (const a of applied) {
      const { route, service } = a.entity;
      if (route) {
        let l = byRoute.get(route.id);
        if (!l) byRoute.set(route.id, (l = []));
        l.push(a);
      } else if (service) {
        let l = byService.get(service.id);
        if (!l) byService.set(service.id, (l = []));
        l.push(a);
      } else globals.push(a);
    }
    const cache = new Map<string, PluginChain>();
    return (routeId, serviceId) => {
      // A route without plugins of its own shares its service's chain.
      const key = byRoute.has(routeId) ? `r:${routeId}` : `s:${serviceId}`;
      let chain = cache.get(key);
      if (!chain) {
        const candidates = [...globals, ...(serviceId ? byService.get(serviceId) ?? [] : []), ...(byRoute.get(routeId) ?? [])].filter(
          (a) => !a.entity.service || a.entity.service.id === serviceId,
        );
        chain = this.buildChain(candidates);
        cache.set(key, chain);
      }
      return chain;
    };
  }

  private buildChain(candidates: AppliedPlugin[]): PluginChain {
    const byName = new Map<string, AppliedPlugin[]>();
    for (const a of candidates) {
      let l = byName.get(a.entity.name);
      if (!l) byName.set(a.entity.name, (l = []));
      l.push(a);
    }
    const entries: { entry: ChainEntry; priority: number }[] = [];
    for (const [name, list] of byName) {
      let base: AppliedPlugin | null = null;
      const perConsumer = new Map<string, AppliedPlugin>();
      for (const a of list) {
        if (a.entity.consumer) {
          const cur = perConsumer.get(a.entity.consumer.id);
          if (!cur || a.scopeRank < cur.scopeRank) perConsumer.set(a.entity.consumer.id, a);
        } else if (!base || a.scopeRank < base.scopeRank) base = a;
      }
      let byConsumer: Map<string, AppliedPlugin> | null = null;
      for (const [consumerId, a] of perConsumer) {
        if (base && base.scopeRank < a.scopeRank) continue;
        (byConsumer ??= new Map()).set(consumerId, a);
      }
      entries.push({
        entry: { name, handler: this.loaded.get(name)!, base, byConsumer },
        priority: this.definitions.get(name)?.priority ?? 0,
      });
    }
    entries.sort((a, b) => b.priority - a.priority || (a.entry.name < b.entry.name ? -1 : 1));
    const all = entries.map((e) => e.entry);
    return {
      access: all.filter((e) => e.handler.access),
      response: all.filter((e) => e.handler.response),
      log: all.filter((e) => e.handler.log),
    };
  }
}

/** The configuration of `entry` for this request (consumer and scheme), or null when it does not apply. */
export function resolveEntry(entry: ChainEntry, consumerId: string | null, https: boolean): AppliedPlugin | null {
  let a = entry.base;
  if (consumerId !== null && entry.byConsumer !== null) a = entry.byConsumer.get(consumerId) ?? a;
  if (a === null) return null;
  return (https ? a.https : a.http) ? a : null;
}

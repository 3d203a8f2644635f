// The data plane's library entry: `startDataPlane` runs one in-process data plane (all-in-one
// mode, tests); `runDataPlane` is what `gatehouse data-plane` runs (node:cluster workers when
// GATEHOUSE_WORKERS > 1). Imports stay on core's submodules so the data-plane process never
// loads Prisma, pg or express.
import { ConfigError, type GatehouseConfig } from '@gatehouse/core/config.ts';
import { createLogger, type Logger } from '@gatehouse/core/logger.ts';
import type { DataPlaneServices, PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import type { SharedStore } from '@gatehouse/core/store/types.ts';
import { loadTlsCredentials } from '@gatehouse/core/tls.ts';
import type { ForwardingEngine } from './forward.ts';
import { PluginRuntime } from './plugins.ts';
import { ProxyRuntime } from './proxy.ts';
import { resolveNodeId, SnapshotSync } from './sync.ts';

export { ProxyRuntime } from './proxy.ts';
export { SnapshotSync, resolveNodeId, cacheFile, GATEHOUSE_VERSION } from './sync.ts';
export { validateSnapshot, SnapshotError } from './validate.ts';
export { Router, upstreamPathV0 } from './router.ts';
export type { ForwardingEngine, ForwardRequest, Upstream } from './forward.ts';
export type { Balancer, Target } from './balancer.ts';

export interface StartDataPlaneOptions {
  config: GatehouseConfig;
  /** Shared with the control plane in the all-in-one mode; otherwise a RedisStore on REDIS_URL. */
  store?: SharedStore;
  logger?: Logger;
  /** Plugin definitions by name; defaults to the registry (@gatehouse/plugins). */
  plugins?: ReadonlyMap<string, PluginDefinition>;
  engine?: ForwardingEngine;
  /** Poll interval of the latest-snapshot pointer (default 1.5 s). */
  pollIntervalMs?: number;
}

export interface DataPlane {
  nodeId: string;
  /** Where the proxy listens (actual ports when 0 was asked). */
  addresses: { host: string; port: number; ssl: boolean }[];
  store: SharedStore;
  /** Version and hash of the snapshot being served, null before the first one. */
  readonly configVersion: { version: number; hash: string } | null;
  proxy: ProxyRuntime;
  sync: SnapshotSync;
  close(): Promise<void>;
}

export async function defaultPlugins(): Promise<ReadonlyMap<string, PluginDefinition>> {
  const mod = await import('@gatehouse/plugins');
  return mod.plugins;
}

/** REDIS_URL is the data plane's only link to the control plane. */
export function requireRedis(config: GatehouseConfig): string {
  if (!config.redisUrl) {
    throw new ConfigError(
      'REDIS_URL is not set: a data plane receives its configuration from the control plane through Redis ' +
        '(set REDIS_URL, e.g. redis://127.0.0.1:6379; a data plane never uses DATABASE_URL). ' +
        'To run everything in one process without Redis, use `gatehouse start`.',
    );
  }
  return config.redisUrl;
}

export async function startDataPlane(options: StartDataPlaneOptions): Promise<DataPlane> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ role: 'data-plane', level: config.logLevel });
  let store = options.store;
  const ownsStore = !store;
  if (!store) {
    const url = requireRedis(config);
    store = new RedisStore({ url, prefix: config.redisPrefix, onError: () => {} });
  }
  const nodeId = resolveNodeId(config);
  const plugins = options.plugins ?? (await defaultPlugins());
  const services: DataPlaneServices = { config, store, logger, nodeId };
  const runtime = new PluginRuntime(plugins, services);
  const sync: SnapshotSync = new SnapshotSync({
    config,
    store,
    logger,
    plugins,
    nodeId,
    workers: 1,
    pollIntervalMs: options.pollIntervalMs,
    apply: async (snapshot: Snapshot) => {
      await proxy.apply(snapshot);
    },
  });
  const proxy = new ProxyRuntime({ logger, plugins: runtime, trustedIps: config.trustedIps, sendTimeout: config.sendTimeout, clientHeaderTimeout: config.clientHeaderTimeout, clientRequestTimeout: config.clientRequestTimeout, waitingFor: sync.waitingFor, engine: options.engine });
  let addresses: DataPlane['addresses'] = [];
  try {
    await sync.loadDiskCache();
    const tls = config.proxyListen.some((a) => a.ssl) ? await loadTlsCredentials(config) : null;
    addresses = await proxy.listen(config.proxyListen, tls);
    await sync.start();
  } catch (err) {
    await sync.close();
    await proxy.close();
    if (ownsStore) await store.close();
    throw err;
  }
  logger.info('data plane started', { node_id: nodeId, proxy: addresses, config_version: sync.pointer?.version ?? null });
  let closed = false;
  return {
    nodeId,
    addresses,
    store,
    proxy,
    sync,
    get configVersion() {
      return sync.pointer;
    },
    async close() {
      if (closed) return;
      closed = true;
      await sync.close();
      await proxy.close();
      if (ownsStore) await store.close();
    },
  };
}

export { runDataPlane } from './cluster.ts';

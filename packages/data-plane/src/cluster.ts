// `gatehouse data-plane`: one process per GATEHOUSE_WORKERS with node:cluster. The primary
// owns the sync (one Redis subscription, one poll, one disk cache, one heartbeat per node),
// validates each snapshot once and hands it to every worker over IPC; each worker compiles it
// and swaps it in. A worker that dies is replaced, and a new worker gets the current snapshot
// as soon as it is up. With one worker everything runs in this process (no cluster).
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { GatehouseConfig } from '@gatehouse/core/config.ts';
import { createLogger, type Logger } from '@gatehouse/core/logger.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { loadTlsCredentials } from '@gatehouse/core/tls.ts';
import { defaultPlugins, requireRedis, startDataPlane } from './index.ts';
import { resolveNodeId, SnapshotSync } from './sync.ts';

export interface RunningDataPlane {
  /** Proxy listeners (known once the first worker listens). */
  addresses: { host: string; port: number; ssl: boolean }[];
  workers: number;
  nodeId: string;
  close(): Promise<void>;
}

export type PrimaryMessage = { type: 'snapshot'; snapshot: Snapshot } | { type: 'no-snapshot' };
export type WorkerMessage =
  /** Sent before listening: the primary answers with the current snapshot, so a new worker never serves without it. */
  | { type: 'hello' }
  | { type: 'ready'; addresses: { host: string; port: number; ssl: boolean }[] }
  | { type: 'applied'; version: number; hash: string }
  | { type: 'refused'; version: number; error: string };

export async function runDataPlane(options: { config: GatehouseConfig; logger?: Logger }): Promise<RunningDataPlane> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ role: 'data-plane', level: config.logLevel });
  requireRedis(config);
  if (config.workers <= 1) {
    const dp = await startDataPlane({ config, logger });
    return { addresses: dp.addresses, workers: 1, nodeId: dp.nodeId, close: () => dp.close() };
  }
  return runPrimary(config, logger);
}

async function runPrimary(config: GatehouseConfig, logger: Logger): Promise<RunningDataPlane> {
  const store = new RedisStore({ url: config.redisUrl!, prefix: config.redisPrefix, onError: () => {} });
  const nodeId = resolveNodeId(config);
  const plugins = await defaultPlugins();
  // Generated once here, so workers never race to create it.
  if (config.proxyListen.some((a) => a.ssl)) await loadTlsCredentials(config);

  let latest: Snapshot | null = null;
  const live = new Set<Worker>();
  const send = (w: Worker, msg: PrimaryMessage) => {
    if (w.isConnected()) w.send(msg, (err: Error | null) => err && logger.warn('cannot reach worker', { worker: w.id, error: err.message }));
  };
  const sync = new SnapshotSync({
    config,
    store,
    logger,
    plugins,
    nodeId,
    workers: config.workers,
    apply: async (snapshot) => {
      latest = snapshot;
      for (const w of live) send(w, { type: 'snapshot', snapshot });
    },
  });
  await sync.loadDiskCache();

  const tsx = import.meta.resolve('tsx');
  const execArgv = process.execArgv.some((a) => a.includes('tsx')) ? process.execArgv : [...process.execArgv, '--import', tsx];
  cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker.ts', import.meta.url)), execArgv, silent: false });

  let closing = false;
  let addresses: RunningDataPlane['addresses'] = [];
  let firstReady: () => void;
  const readyOnce = new Promise<void>((r) => (firstReady = r));
  let firstFailure: (err: Error) => void;
  const failed = new Promise<never>((_, reject) => (firstFailure = reject));
  const recentDeaths: number[] = [];

  const fork = () => {
    const w = cluster.fork({ GATEHOUSE_WORKER: '1' });
    const started = Date.now();
    w.on('message', (msg: WorkerMessage) => {
      if (msg?.type === 'hello') {
        live.add(w);
        send(w, latest ? { type: 'snapshot', snapshot: latest } : { type: 'no-snapshot' });
      } else if (msg?.type === 'ready') {
        live.add(w);
        if (!addresses.length) addresses = msg.addresses;
        firstReady();
      } else if (msg?.type === 'refused') {
        logger.error('worker refused a config snapshot', { worker: w.id, version: msg.version, error: msg.error });
      }
    });
    w.on('exit', (code, signal) => {
      live.delete(w);
      if (closing) return;
      const now = Date.now();
      recentDeaths.push(now);
      while (recentDeaths.length && now - recentDeaths[0] > 60_000) recentDeaths.shift();
      logger.error('data-plane worker died; starting a new one', { worker: w.id, code, signal, lived_ms: now - started });
      if (!addresses.length && recentDeaths.length >= config.workers) {
        firstFailure(new Error(`data-plane workers exit at start (code ${code}); see the log above`));
        return;
      }
      // Back off when workers keep dying, so a crash loop does not spin the CPU.
      const delay = recentDeaths.length > 5 ? Math.min(1000 * recentDeaths.length, 10_000) : 0;
      setTimeout(() => !closing && fork(), delay).unref();
    });
  };
  for (let i = 0; i < config.workers; i++) fork();
  try {
    await Promise.race([readyOnce, failed]);
  } catch (err) {
    closing = true;
    for (const id in cluster.workers) cluster.workers[id]?.process.kill('SIGKILL');
    await sync.close();
    await store.close();
    throw err;
  }
  await sync.start();
  logger.info('data plane started', { node_id: nodeId, workers: config.workers, proxy: addresses, config_version: sync.pointer?.version ?? null });

  return {
    get addresses() {
      return addresses;
    },
    workers: config.workers,
    nodeId,
    async close() {
      if (closing) return;
      closing = true;
      await sync.close();
      const exits = Object.values(cluster.workers ?? {}).map(
        (w) =>
          new Promise<void>((resolve) => {
            if (!w || w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.process.kill('SIGTERM');
            setTimeout(() => {
              if (!w.isDead()) w.process.kill('SIGKILL');
            }, 5000).unref();
          }),
      );
      await Promise.all(exits);
      await store.close();
    },
  };
}

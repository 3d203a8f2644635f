// A data-plane worker under node:cluster (see cluster.ts): serves the proxy, applies the
// snapshots its primary sends. Its own Redis connection is only for the plugins' live state,
// opened when a plugin first uses it: workers whose routes need no Redis add no connections.
import { loadConfig } from '@gatehouse/core/config.ts';
import { createLogger, surviveUncaughtExceptions, surviveUnhandledRejections } from '@gatehouse/core/logger.ts';
import type { DataPlaneServices } from '@gatehouse/core/plugin-sdk.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { loadTlsCredentials } from '@gatehouse/core/tls.ts';
import type { PrimaryMessage, WorkerMessage } from './cluster.ts';
import { defaultPlugins } from './index.ts';
import { PluginRuntime } from './plugins.ts';
import { ProxyRuntime } from './proxy.ts';
import { describeStore, resolveNodeId } from './sync.ts';

const config = loadConfig();
const logger = createLogger({ role: 'data-plane-worker', level: config.logLevel });
surviveUnhandledRejections(logger);
const store = new RedisStore({ url: config.redisUrl!, prefix: config.redisPrefix, onError: () => {}, lazy: true });
const nodeId = resolveNodeId(config);
const services: DataPlaneServices = { config, store, logger, nodeId };
const runtime = new PluginRuntime(await defaultPlugins(), services);
const proxy = new ProxyRuntime({ logger, plugins: runtime, trustedIps: config.trustedIps, sendTimeout: config.sendTimeout, clientHeaderTimeout: config.clientHeaderTimeout, clientRequestTimeout: config.clientRequestTimeout, waitingFor: describeStore(config, store) });
const send = (msg: WorkerMessage) => process.send?.(msg);

let firstAnswer: () => void;
const answered = new Promise<void>((resolve) => (firstAnswer = resolve));
process.on('message', (msg: PrimaryMessage) => {
  if (msg?.type === 'no-snapshot') return firstAnswer();
  if (msg?.type !== 'snapshot') return;
  const { snapshot } = msg;
  proxy.apply(snapshot).then(
    () => {
      firstAnswer();
      send({ type: 'applied', version: snapshot.version, hash: snapshot.hash });
    },
    (err: Error) => {
      firstAnswer();
      send({ type: 'refused', version: snapshot.version, error: err.message });
    },
  );
});

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await proxy.close().catch(() => {});
  await store.close().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', () => {}); // the primary decides when workers stop
process.on('disconnect', stop);

// Take the current snapshot before listening, so a replacement worker never answers 503.
send({ type: 'hello' });
await Promise.race([answered, new Promise((r) => setTimeout(r, 10_000).unref())]);
const tls = config.proxyListen.some((a) => a.ssl) ? await loadTlsCredentials(config) : null;
const addresses = await proxy.listen(config.proxyListen, tls);
send({ type: 'ready', addresses });
// Once serving: a worker that cannot start still exits, and the primary sees it.
surviveUncaughtExceptions(logger);

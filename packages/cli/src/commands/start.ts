// `gatehouse start` (and `npm start`): control plane and data plane together.
// - No REDIS_URL: one process, one in-process MemoryStore shared by both, the database from
//   DATABASE_URL or an embedded PGlite under GATEHOUSE_DATA_DIR (the control plane's choice).
// - REDIS_URL set: the split deployment in one command: the control plane here, the data
//   plane through Redis (node:cluster workers when GATEHOUSE_WORKERS > 1).
import type { Command } from 'commander';
import { configFromEnv, failWith } from '../util.ts';
import { describeListeners } from './data-plane.ts';

async function run(): Promise<void> {
  const config = configFromEnv();
  const { createLogger, surviveUncaughtExceptions, surviveUnhandledRejections } = await import('@gatehouse/core/logger.ts');
  const processLogger = createLogger({ role: 'gatehouse', level: config.logLevel });
  surviveUnhandledRejections(processLogger);
  const { startControlPlane } = await import('@gatehouse/control-plane');
  const { MemoryStore } = await import('@gatehouse/core/store/memory.ts');
  const { startDataPlane, runDataPlane } = await import('@gatehouse/data-plane');
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
  };
  try {
    let proxy: { host: string; port: number; ssl: boolean }[];
    let mode: string;
    if (config.redisUrl) {
      const cp = await startControlPlane({ config });
      closers.push(() => cp.close());
      const dp = await runDataPlane({ config });
      closers.push(() => dp.close());
      proxy = dp.addresses;
      mode = `control plane on ${cp.db.kind === 'pglite' ? 'embedded PGlite' : 'Postgres'}, data plane through Redis (${dp.workers} worker${dp.workers > 1 ? 's' : ''})`;
      printListening(cp.adminAddresses.map((a) => a.url), proxy, mode);
    } else {
      const store = new MemoryStore();
      const cp = await startControlPlane({ config, store });
      closers.push(() => cp.close());
      if (config.workers > 1 && process.env.GATEHOUSE_WORKERS) {
        process.stderr.write('gatehouse: GATEHOUSE_WORKERS is ignored without REDIS_URL: the in-process store cannot be shared between processes\n');
      }
      const dp = await startDataPlane({ config, store });
      closers.push(() => dp.close());
      proxy = dp.addresses;
      mode = `all-in-one: ${cp.db.kind === 'pglite' ? `embedded PGlite (${cp.db.location})` : 'Postgres'}, in-process store`;
      printListening(cp.adminAddresses.map((a) => a.url), proxy, mode);
    }
  } catch (err) {
    await closeAll();
    failWith(err);
  }
  // Once serving: a failure while starting still ends the process with its message.
  surviveUncaughtExceptions(processLogger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`gatehouse: ${signal} received, stopping\n`);
    closeAll().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

function printListening(admin: string[], proxy: { host: string; port: number; ssl: boolean }[], mode: string) {
  process.stdout.write(`gatehouse: ${mode}\n`);
  process.stdout.write(`gatehouse: admin API listening on ${admin.join(', ')}\n`);
  process.stdout.write(`gatehouse: proxy listening on ${describeListeners(proxy)}\n`);
}

export function register(program: Command): void {
  program
    .command('start')
    .description('run the control plane and the proxy together (no REDIS_URL: one process with an in-process store)')
    .action(run);
}

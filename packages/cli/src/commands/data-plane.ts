// `gatehouse data-plane`: the proxy, fed by the control plane through Redis (REDIS_URL); never
// touches the database. Like every command module, it imports nothing heavy at load time, so
// the data-plane process never loads the control plane's modules (express, Prisma, pg).
import type { Command } from 'commander';
import { configFromEnv, fail, failWith } from '../util.ts';

/** Where the proxy listens, one line per listener (what operators and the e2e tests read). */
export function describeListeners(addresses: { host: string; port: number; ssl: boolean }[]): string {
  return addresses.map((a) => `${a.ssl ? 'https' : 'http'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`).join(', ');
}

async function run(): Promise<void> {
  const config = configFromEnv();
  if (!config.redisUrl) {
    fail(
      'REDIS_URL is not set: a data plane receives its configuration from the control plane through Redis ' +
        '(e.g. REDIS_URL=redis://127.0.0.1:6379); it never uses DATABASE_URL. ' +
        'To run the control plane and the proxy together without Redis, use `gatehouse start`.',
    );
  }
  const { createLogger, surviveUncaughtExceptions, surviveUnhandledRejections } = await import('@gatehouse/core/logger.ts');
  const processLogger = createLogger({ role: 'data-plane', level: config.logLevel });
  surviveUnhandledRejections(processLogger);
  const { runDataPlane } = await import('@gatehouse/data-plane/cluster.ts');
  let dp: Awaited<ReturnType<typeof runDataPlane>>;
  try {
    dp = await runDataPlane({ config });
  } catch (err) {
    failWith(err);
  }
  process.stdout.write(`gatehouse: data plane ${dp.nodeId} (${dp.workers} worker${dp.workers > 1 ? 's' : ''}) proxy listening on ${describeListeners(dp.addresses)}\n`);
  // Once serving: a failure while starting still ends the process with its message.
  surviveUncaughtExceptions(processLogger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`gatehouse: ${signal} received, stopping the data plane\n`);
    dp.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

export function register(program: Command): void {
  program
    .command('data-plane')
    .description('run the proxy; its configuration comes from the control plane through Redis (REDIS_URL)')
    .action(run);
}

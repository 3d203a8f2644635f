// `gatehouse control-plane`: the admin API and snapshot publisher, until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { action, configFromEnv } from '../util.ts';

export function register(program: Command): void {
  program
    .command('control-plane')
    .description('run the admin API (applies pending migrations first unless GATEHOUSE_AUTO_MIGRATE=off)')
    .action(
      action(async () => {
        const config = configFromEnv();
        // Loaded here, not at the top: other commands (the data plane above all) never load express or Prisma.
        const { startControlPlane } = await import('@gatehouse/control-plane');
        const cp = await startControlPlane({ config });
        // A stray rejection in a background job is reported, not fatal: the admin API stays up.
        const { createLogger, surviveUncaughtExceptions, surviveUnhandledRejections } = await import('@gatehouse/core/logger.ts');
        const processLogger = createLogger({ role: 'control-plane', level: config.logLevel });
        surviveUnhandledRejections(processLogger);
        surviveUncaughtExceptions(processLogger);
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          process.stderr.write(`gatehouse: ${signal} received, stopping the control plane\n`);
          cp.close().then(
            () => process.exit(0),
            () => process.exit(1),
          );
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
      }),
    );
}

// `gatehouse control-plane`: the admin API and snapshot publisher, until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { startControlPlane } from '@gatehouse/control-plane';
import { action, configFromEnv } from '../util.ts';

export function register(program: Command): void {
  program
    .command('control-plane')
    .description('run the admin API (applies pending migrations first unless GATEHOUSE_AUTO_MIGRATE=off)')
    .action(
      action(async () => {
        const config = configFromEnv();
        const cp = await startControlPlane({ config });
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

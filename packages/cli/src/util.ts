// Helpers shared by the commands: configuration errors and other expected failures print one
// clear line and exit 1; unexpected ones print their message (the stack only with GATEHOUSE_DEBUG).
// Subpath imports: the core index would load Prisma, which the data-plane process must never do.
import { ConfigError, loadConfig, type GatehouseConfig } from '@gatehouse/core/config.ts';

export { GATEHOUSE_VERSION } from '@gatehouse/core/version.ts';

export function fail(message: string): never {
  process.stderr.write(`gatehouse: ${message}\n`);
  process.exit(1);
}

/** Reads the environment, or exits with the configuration error on one line. */
export function configFromEnv(): GatehouseConfig {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

/** Runs a command body, turning expected errors into one line on stderr and exit code 1. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      failWith(err);
    }
  };
}

/** Exits with `err` on one line (its stack too with GATEHOUSE_DEBUG, unless it is a configuration error). */
export function failWith(err: unknown): never {
  // By name: importing MigrationError would load core/db in every command.
  if (err instanceof ConfigError || (err as Error)?.name === 'MigrationError') fail((err as Error).message);
  const e = err as NodeJS.ErrnoException;
  if (process.env.GATEHOUSE_DEBUG) process.stderr.write(`${e?.stack ?? e}\n`);
  fail(describe(e));
}

/** Errors of reaching or logging in to Postgres (network, DNS, and its own codes for a role or database missing or a bad password). */
const DATABASE_CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', '28000', '28P01', '3D000']);

function describe(err: NodeJS.ErrnoException): string {
  const text = String(err?.message ?? err).split('\n').find((l) => l.trim()) ?? 'failed';
  if (DATABASE_CONNECT_CODES.has(String(err?.code)) || /Can't reach database|DatabaseNotReachable/.test(String(err?.message))) {
    return `cannot connect to the database (DATABASE_URL): ${text.trim()}`;
  }
  return text.trim();
}

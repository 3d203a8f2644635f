import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { SharedStore } from './types.ts';

export * from './types.ts';
export { MemoryStore, RedisStore };

/** Redis when a URL is given; otherwise the in-process store (all-in-one embedded mode only). */
export function openStore(options: { redisUrl: string | null; prefix: string; onError?: (err: Error) => void }): SharedStore {
  return options.redisUrl
    ? new RedisStore({ url: options.redisUrl, prefix: options.prefix, onError: options.onError })
    : new MemoryStore();
}

/**
 * True when an error means the shared store could not be reached (connection refused or lost,
 * command timed out) rather than a bug: callers answer 503 and let the client retry.
 */
export function isStoreUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError') return true;
  const code = (err as NodeJS.ErrnoException).code;
  if (code && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTCONN'].includes(code)) return true;
  return /Connection is closed|Command timed out|Stream isn't writeable|Reached the max retries|connect ECONNREFUSED/.test(err.message);
}

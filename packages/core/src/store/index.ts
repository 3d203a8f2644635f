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

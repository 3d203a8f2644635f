// SharedStore on Redis (ioredis). Three connections: commands (fail fast while Redis is down:
// a queued command fails after one reconnect attempt or commandTimeout, so a data plane answers
// from its caches instead of hanging), a subscriber, and one for blocking stream reads.
import { Redis, type RedisOptions } from 'ioredis';
import { settleWithin } from '../wait.ts';
import type { SetOptions, SharedStore, StreamEntry } from './types.ts';

export interface RedisStoreOptions {
  url: string;
  prefix: string;
  /** Called with connection errors (already rate-limited by reconnect backoff). */
  onError?: (err: Error) => void;
  /** Connect on the first command instead of at once (a process that may never need Redis). */
  lazy?: boolean;
}

/** How long an unsubscribe or a QUIT may wait for Redis to answer before the connection is dropped. */
const CLOSE_WAIT_MS = 1000;

const toEntries = (raw: [string, string[]][] | null | undefined): StreamEntry[] =>
  (raw ?? []).map(([id, flat]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
    return { id, fields };
  });

export class RedisStore implements SharedStore {
  readonly kind = 'redis' as const;
  private readonly cmd: Redis;
  private sub: Redis | null = null;
  private blocking: Redis | null = null;
  private readonly prefix: string;
  private readonly handlers = new Map<string, Set<(message: string) => void>>();
  private readonly resubscribeHandlers = new Set<() => void>();

  constructor(private readonly options: RedisStoreOptions) {
    this.prefix = options.prefix;
    this.cmd = this.connect({ maxRetriesPerRequest: 1, commandTimeout: 2000, lazyConnect: options.lazy === true });
  }

  private connect(extra: RedisOptions): Redis {
    const client = new Redis(this.options.url, {
      lazyConnect: false,
      retryStrategy: (times) => Math.min(100 * times, 2000),
      ...extra,
    });
    client.on('error', (err) => this.options.onError?.(err));
    return client;
  }

  /** Waits (up to timeoutMs) for the command connection, so start-up can tell "down" from "slow". */
  async ready(timeoutMs = 3000): Promise<boolean> {
    if (this.cmd.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.cmd.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.cmd.once('ready', onReady);
    });
  }

  private k(key: string) {
    return this.prefix + key;
  }

  async keysWithPrefix(prefix: string) {
    // SCAN's MATCH is a glob: the prefixes are matched literally.
    const match = `${this.k(prefix).replace(/[*?[\]\\]/g, '\\$&')}*`;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.cmd.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      for (const key of batch) keys.push(key.slice(this.prefix.length));
    } while (cursor !== '0');
    return keys;
  }

  async get(key: string) {
    return this.cmd.get(this.k(key));
  }
  async mget(keys: string[]) {
    return keys.length ? this.cmd.mget(keys.map((k) => this.k(k))) : [];
  }
  async set(key: string, value: string, options: SetOptions = {}) {
    const args: (string | number)[] = [];
    if (options.ttlMs) args.push('PX', options.ttlMs);
    if (options.nx) args.push('NX');
    const res = await (this.cmd.set as (...a: unknown[]) => Promise<string | null>)(this.k(key), value, ...args);
    return res === 'OK';
  }
  async getdel(key: string) {
    return this.cmd.getdel(this.k(key));
  }
  async del(...keys: string[]) {
    return keys.length ? this.cmd.del(...keys.map((k) => this.k(k))) : 0;
  }
  async exists(key: string) {
    return (await this.cmd.exists(this.k(key))) === 1;
  }
  async pexpire(key: string, ttlMs: number) {
    await this.cmd.pexpire(this.k(key), ttlMs);
  }
  async sadd(key: string, ...members: string[]) {
    if (members.length) await this.cmd.sadd(this.k(key), ...members);
  }
  async smembers(key: string) {
    return this.cmd.smembers(this.k(key));
  }
  async srem(key: string, ...members: string[]) {
    if (members.length) await this.cmd.srem(this.k(key), ...members);
  }
  async hset(key: string, field: string, value: string) {
    await this.cmd.hset(this.k(key), field, value);
  }
  async hgetall(key: string) {
    return this.cmd.hgetall(this.k(key));
  }
  async hdel(key: string, ...fields: string[]) {
    if (fields.length) await this.cmd.hdel(this.k(key), ...fields);
  }

  async publish(channel: string, message: string) {
    await this.cmd.publish(this.k(channel), message);
  }

  private subscriber(): Redis {
    if (this.sub) return this.sub;
    // No ready check (an INFO): a SUBSCRIBE issued between connect and ready went out ahead of
    // it, the INFO then failed in subscriber mode, and the connection never became ready, so no
    // revocation reached this process again.
    const sub = this.connect({ maxRetriesPerRequest: null, enableOfflineQueue: true, enableReadyCheck: false });
    let connectedBefore = false;
    sub.on('ready', () => {
      // ioredis re-subscribes by itself; what was published while we were away is gone.
      if (connectedBefore) for (const h of this.resubscribeHandlers) h();
      connectedBefore = true;
    });
    sub.on('message', (channel: string, message: string) => {
      const set = this.handlers.get(channel);
      if (set) for (const h of set) h(message);
    });
    this.sub = sub;
    return sub;
  }

  async subscribe(channel: string, handler: (message: string) => void) {
    const full = this.k(channel);
    const sub = this.subscriber();
    let set = this.handlers.get(full);
    if (!set) {
      set = new Set();
      this.handlers.set(full, set);
      await sub.subscribe(full);
    }
    set.add(handler);
    return async () => {
      set!.delete(handler);
      if (set!.size === 0) {
        this.handlers.delete(full);
        // Queued until Redis is back if the subscriber is reconnecting; sent then, or dropped by close().
        await settleWithin(sub.unsubscribe(full), CLOSE_WAIT_MS);
      }
    };
  }

  onResubscribe(handler: () => void) {
    this.resubscribeHandlers.add(handler);
    return () => this.resubscribeHandlers.delete(handler);
  }

  async xadd(stream: string, fields: Record<string, string>) {
    const flat = Object.entries(fields).flat();
    // Approximate trimming keeps the stream bounded even if no control plane reads it for a while.
    return (await this.cmd.xadd(this.k(stream), 'MAXLEN', '~', '1000000', '*', ...flat)) as string;
  }
  async xgroupEnsure(stream: string, group: string) {
    try {
      await this.cmd.xgroup('CREATE', this.k(stream), group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }
  async xreadgroup(stream: string, group: string, consumer: string, count: number, blockMs: number) {
    this.blocking ??= this.connect({ maxRetriesPerRequest: 1 });
    const res = (await this.blocking.xreadgroup(
      'GROUP', group, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', this.k(stream), '>',
    )) as [string, [string, string[]][]][] | null;
    return toEntries(res?.[0]?.[1]);
  }
  async xpending(stream: string, group: string, consumer: string, count: number) {
    const res = (await this.cmd.xreadgroup(
      'GROUP', group, consumer, 'COUNT', count, 'STREAMS', this.k(stream), '0',
    )) as [string, [string, string[]][]][] | null;
    return toEntries(res?.[0]?.[1]);
  }
  async xack(stream: string, group: string, ...ids: string[]) {
    if (ids.length) await this.cmd.xack(this.k(stream), group, ...ids);
  }

  async ping() {
    try {
      return (await this.cmd.ping()) === 'PONG';
    } catch {
      return false;
    }
  }
  async close() {
    await Promise.all(
      [this.cmd, this.sub, this.blocking]
        .filter((c): c is Redis => c !== null)
        // QUIT on a connection that is not up would be queued until Redis comes back (forever
        // on the subscriber, which retries without limit): just drop those. One that looks up
        // may be half-dead (no answer ever comes): its QUIT gets CLOSE_WAIT_MS.
        .map(async (c) => {
          if (c.status === 'ready') await settleWithin(c.quit(), CLOSE_WAIT_MS);
          c.disconnect();
        }),
    );
  }
}

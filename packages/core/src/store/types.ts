// What the control plane, the data planes and the oauth2 plugin share at run time: config
// snapshots, heartbeats, live tokens and codes, events. Redis in a split deployment; an
// in-process implementation for the all-in-one embedded mode. Keys and channels are logical:
// implementations add the configured prefix.

export interface StreamEntry {
  id: string;
  fields: Record<string, string>;
}

export interface SetOptions {
  /** Expiry in milliseconds; omitted: no expiry. */
  ttlMs?: number;
  /** Only set when the key does not exist (returns false when it did). */
  nx?: boolean;
}

export interface SharedStore {
  readonly kind: 'redis' | 'memory';
  get(key: string): Promise<string | null>;
  mget(keys: string[]): Promise<(string | null)[]>;
  set(key: string, value: string, options?: SetOptions): Promise<boolean>;
  /** Atomic read-and-delete: the one primitive that makes codes and refresh tokens single-use. */
  getdel(key: string): Promise<string | null>;
  del(...keys: string[]): Promise<number>;
  exists(key: string): Promise<boolean>;
  pexpire(key: string, ttlMs: number): Promise<void>;
  sadd(key: string, ...members: string[]): Promise<void>;
  smembers(key: string): Promise<string[]>;
  srem(key: string, ...members: string[]): Promise<void>;
  /** Every key starting with `prefix` (a SCAN of the whole keyspace: for rare upkeep only). */
  keysWithPrefix(prefix: string): Promise<string[]>;
  hset(key: string, field: string, value: string): Promise<void>;
  hgetall(key: string): Promise<Record<string, string>>;
  hdel(key: string, ...fields: string[]): Promise<void>;

  publish(channel: string, message: string): Promise<void>;
  /** Resolves once subscribed. The returned function unsubscribes. */
  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>>;
  /**
   * Called after the subscription connection comes back: messages published meanwhile were
   * lost, so subscribers must resynchronise (reload the latest snapshot, drop caches).
   */
  onResubscribe(handler: () => void): () => void;

  xadd(stream: string, fields: Record<string, string>): Promise<string>;
  /** Creates the consumer group (from the stream's start) if missing. */
  xgroupEnsure(stream: string, group: string): Promise<void>;
  /** New entries for this consumer, waiting up to blockMs; then pending (unacked) ones are redelivered by `pending`. */
  xreadgroup(stream: string, group: string, consumer: string, count: number, blockMs: number): Promise<StreamEntry[]>;
  /** Entries delivered to this consumer but never acknowledged (after a crash). */
  xpending(stream: string, group: string, consumer: string, count: number): Promise<StreamEntry[]>;
  xack(stream: string, group: string, ...ids: string[]): Promise<void>;

  ping(): Promise<boolean>;
  close(): Promise<void>;
}

// In-process SharedStore for the all-in-one embedded mode and for nothing else: it lives and
// dies with the process (the control plane restores live tokens from the database at start).
import { EventEmitter } from 'node:events';
import type { SetOptions, SharedStore, StreamEntry } from './types.ts';

interface Entry {
  value: string | Set<string> | Map<string, string>;
  expiresAt: number;
}

interface Stream {
  entries: StreamEntry[];
  seq: number;
  groups: Map<string, { delivered: number; pending: Map<string, StreamEntry> }>;
  waiters: Set<() => void>;
}

export class MemoryStore implements SharedStore {
  readonly kind = 'memory' as const;
  private data = new Map<string, Entry>();
  private bus = new EventEmitter();
  private streams = new Map<string, Stream>();

  private sweeper: NodeJS.Timeout;

  /** `sweepIntervalMs`: how often expired keys nobody reads again (old snapshots, tokens) are freed. */
  constructor(options: { sweepIntervalMs?: number } = {}) {
    this.bus.setMaxListeners(0);
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 30_000);
    this.sweeper.unref();
  }

  /** Frees every expired entry (reads already skip them; this gives their memory back). */
  sweep(): void {
    const now = Date.now();
    for (const [key, e] of this.data) if (e.expiresAt && e.expiresAt <= now) this.data.delete(key);
  }

  /** Number of entries held, expired ones not yet freed included (tests). */
  get size(): number {
    return this.data.size;
  }

  private live(key: string): Entry | undefined {
    const e = this.data.get(key);
    if (e && e.expiresAt && e.expiresAt <= Date.now()) {
      this.data.delete(key);
      return undefined;
    }
    return e;
  }

  private str(key: string): string | null {
    const e = this.live(key);
    return typeof e?.value === 'string' ? e.value : null;
  }

  private coll<T extends Set<string> | Map<string, string>>(key: string, make: () => T): T {
    const e = this.live(key);
    if (e && typeof e.value !== 'string') return e.value as T;
    const value = make();
    this.data.set(key, { value, expiresAt: 0 });
    return value;
  }

  async get(key: string) {
    return this.str(key);
  }
  async mget(keys: string[]) {
    return keys.map((k) => this.str(k));
  }
  async set(key: string, value: string, options: SetOptions = {}) {
    if (options.nx && this.live(key)) return false;
    this.data.set(key, { value, expiresAt: options.ttlMs ? Date.now() + options.ttlMs : 0 });
    return true;
  }
  async getdel(key: string) {
    const v = this.str(key);
    this.data.delete(key);
    return v;
  }
  async del(...keys: string[]) {
    let n = 0;
    for (const k of keys) if (this.live(k) && this.data.delete(k)) n++;
    return n;
  }
  async exists(key: string) {
    return this.live(key) !== undefined;
  }
  async pexpire(key: string, ttlMs: number) {
    const e = this.live(key);
    if (e) e.expiresAt = Date.now() + ttlMs;
  }
  async sadd(key: string, ...members: string[]) {
    const s = this.coll(key, () => new Set<string>());
    for (const m of members) s.add(m);
  }
  async keysWithPrefix(prefix: string) {
    return [...this.data.keys()].filter((key) => key.startsWith(prefix) && this.live(key) !== undefined);
  }
  async smembers(key: string) {
    const e = this.live(key);
    return e?.value instanceof Set ? [...e.value] : [];
  }
  async srem(key: string, ...members: string[]) {
    const e = this.live(key);
    if (e?.value instanceof Set) for (const m of members) e.value.delete(m);
  }
  async hset(key: string, field: string, value: string) {
    this.coll(key, () => new Map<string, string>()).set(field, value);
  }
  async hgetall(key: string) {
    const e = this.live(key);
    return e?.value instanceof Map ? Object.fromEntries(e.value) : {};
  }
  async hdel(key: string, ...fields: string[]) {
    const e = this.live(key);
    if (e?.value instanceof Map) for (const f of fields) e.value.delete(f);
  }

  async publish(channel: string, message: string) {
    // Asynchronous like a real bus: publishers never run subscriber code on their own stack.
    setImmediate(() => this.bus.emit(channel, message));
  }
  async subscribe(channel: string, handler: (message: string) => void) {
    this.bus.on(channel, handler);
    return async () => {
      this.bus.off(channel, handler);
    };
  }
  onResubscribe(): () => void {
    return () => {};
  }

  private stream(name: string): Stream {
    let s = this.streams.get(name);
    if (!s) {
      s = { entries: [], seq: 0, groups: new Map(), waiters: new Set() };
      this.streams.set(name, s);
    }
    return s;
  }
  async xadd(name: string, fields: Record<string, string>) {
    const s = this.stream(name);
    const id = `${Date.now()}-${s.seq++}`;
    s.entries.push({ id, fields });
    for (const wake of s.waiters) wake();
    return id;
  }
  async xgroupEnsure(name: string, group: string) {
    const s = this.stream(name);
    if (!s.groups.has(group)) s.groups.set(group, { delivered: 0, pending: new Map() });
  }
  async xreadgroup(name: string, group: string, _consumer: string, count: number, blockMs: number) {
    const s = this.stream(name);
    const g = s.groups.get(group);
    if (!g) throw new Error(`NOGROUP no such consumer group '${group}' for stream '${name}'`);
    if (g.delivered >= s.entries.length && blockMs > 0) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          s.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, blockMs);
        s.waiters.add(wake);
      });
    }
    const batch = s.entries.slice(g.delivered, g.delivered + count);
    g.delivered += batch.length;
    for (const e of batch) g.pending.set(e.id, e);
    return batch;
  }
  async xpending(name: string, group: string, _consumer: string, count: number) {
    const g = this.stream(name).groups.get(group);
    return g ? [...g.pending.values()].slice(0, count) : [];
  }
  async xack(name: string, group: string, ...ids: string[]) {
    const s = this.stream(name);
    const g = s.groups.get(group);
    if (!g) return;
    for (const id of ids) g.pending.delete(id);
    // Trim entries every group has been handed (pending ones stay referenced by their group's
    // map), so the stream stays bounded.
    const floor = Math.min(...[...s.groups.values()].map((x) => x.delivered));
    if (floor > 1000) {
      s.entries.splice(0, floor);
      for (const x of s.groups.values()) x.delivered -= floor;
    }
  }

  async ping() {
    return true;
  }
  async close() {
    clearInterval(this.sweeper);
    for (const s of this.streams.values()) for (const wake of s.waiters) wake();
    this.bus.removeAllListeners();
  }
}

// Keeps a data plane on the latest config snapshot: the last known good one from disk at
// start, then the store's `config:latest` pointer, announcements on `config:updates`, a poll
// of the pointer every POLL_INTERVAL_MS (pub/sub drops what is published while disconnected),
// and a resync when the subscription reconnects. Each new snapshot is validated, rid of routes
// whose regexes could stall the proxy, handed to `apply` (which compiles and swaps it), then
// written to disk (temp file + rename). Also writes this node's heartbeat into
// SNAPSHOT_KEYS.dataPlanes.
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import type { GatehouseConfig } from '@gatehouse/core/config.ts';
import type { Logger } from '@gatehouse/core/logger.ts';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import { HEARTBEAT_INTERVAL_MS, SNAPSHOT_KEYS, type DataPlaneHeartbeat, type Snapshot, type SnapshotPointer } from '@gatehouse/core/snapshot.ts';
import type { SharedStore } from '@gatehouse/core/store/types.ts';
import { withoutBacktrackingRoutes } from './regex-routes.ts';
import { validateSnapshot } from './validate.ts';

export const POLL_INTERVAL_MS = 1500;
/** A snapshot refused once is fetched again only after this long (unless a new one is announced). */
const REFUSED_RETRY_MS = 30_000;

import { GATEHOUSE_VERSION } from '@gatehouse/core/version.ts';

export { GATEHOUSE_VERSION };

export function cacheFile(dataDir: string): string {
  return join(dataDir, 'data-plane', 'config.json');
}

/** Atomic write: readers see the old file or the new one, never half of one. */
export function writeFileAtomic(file: string, contents: string, mode = 0o600): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, contents, { mode });
  renameSync(tmp, file);
}

/** GATEHOUSE_NODE_ID, or a UUID generated once and kept in the data directory. */
export function resolveNodeId(config: Pick<GatehouseConfig, 'nodeId' | 'dataDir'>): string {
  if (config.nodeId) return config.nodeId;
  const file = join(config.dataDir, 'data-plane', 'node-id');
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim();
    if (id) return id;
  }
  const id = randomUUID();
  writeFileAtomic(file, `${id}\n`, 0o644);
  // Two processes racing on a fresh directory agree on whichever rename landed last.
  return readFileSync(file, 'utf8').trim();
}

/** `Redis at redis://host:6379` (credentials removed), for the 503 shown while waiting. */
export function describeStore(config: Pick<GatehouseConfig, 'redisUrl'>, store: SharedStore): string {
  if (store.kind === 'memory' || !config.redisUrl) return 'in-process store';
  try {
    const u = new URL(config.redisUrl);
    u.username = '';
    u.password = '';
    return `Redis at ${u.toString().replace(/\/$/, '')}`;
  } catch {
    return 'Redis';
  }
}

function parsePointer(message: string): SnapshotPointer | null {
  try {
    const p = JSON.parse(message);
    return Number.isInteger(p?.version) && typeof p?.hash === 'string' ? { version: p.version, hash: p.hash } : null;
  } catch {
    return null;
  }
}

function primaryIp(): string | null {
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if (!i.internal && i.family === 'IPv4') return i.address;
  }
  return null;
}

export interface SnapshotSyncOptions {
  config: GatehouseConfig;
  store: SharedStore;
  logger: Logger;
  plugins: ReadonlyMap<string, PluginDefinition>;
  nodeId: string;
  /** Compiles and swaps in a validated snapshot; throwing refuses it. */
  apply(snapshot: Snapshot): Promise<void>;
  workers?: number;
  pollIntervalMs?: number;
  heartbeatIntervalMs?: number;
}

export class SnapshotSync {
  private current: SnapshotPointer | null = null;
  private running: Promise<void> | null = null;
  private rerun = false;
  private hint: SnapshotPointer | null = null;
  private refused = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => Promise<void>) | null = null;
  private offResubscribe: (() => void) | null = null;
  private closed = false;
  private lastErrorLog = 0;
  readonly waitingFor: string;

  constructor(private readonly o: SnapshotSyncOptions) {
    this.waitingFor = describeStore(o.config, o.store);
  }

  get pointer(): SnapshotPointer | null {
    return this.current;
  }

  /** Applies the last known good snapshot from disk, if there is a valid one. */
  async loadDiskCache(): Promise<boolean> {
    const file = cacheFile(this.o.config.dataDir);
    if (!existsSync(file)) return false;
    try {
      const snapshot = await this.prepare(readFileSync(file, 'utf8'));
      await this.o.apply(snapshot);
      this.current = { version: snapshot.version, hash: snapshot.hash };
      this.o.logger.info('serving the cached configuration until the control plane is reachable', {
        version: snapshot.version,
        file,
      });
      return true;
    } catch (err) {
      this.o.logger.warn('ignoring the cached configuration', { file, error: (err as Error).message });
      return false;
    }
  }

  /**
   * Subscribes, starts the poll and the heartbeat, and makes a first attempt at the latest
   * snapshot (bounded by `initialWaitMs`: a data plane whose store is down still starts).
   */
  async start(initialWaitMs = 3000): Promise<void> {
    const { store } = this.o;
    this.offResubscribe = store.onResubscribe(() => void this.check('resubscribed'));
    store
      .subscribe(SNAPSHOT_KEYS.channel, (message) => void this.check('announced', parsePointer(message)))
      .then((off) => {
        if (this.closed) void off();
        else this.unsubscribe = off;
        // Anything published before the subscription took effect.
        void this.check('subscribed');
      })
      .catch((err) => this.logError('subscribing to config updates failed', err));
    const poll = setInterval(() => void this.check('poll'), this.o.pollIntervalMs ?? POLL_INTERVAL_MS);
    const beat = setInterval(() => void this.heartbeat(), this.o.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS);
    poll.unref();
    beat.unref();
    this.timers.push(poll, beat);
    const ready = (store as { ready?: (ms: number) => Promise<boolean> }).ready;
    // Redis down at start: serve what we have (disk cache or the 503) at once; the poll and the
    // resubscribe handler pick the config up when it comes back.
    const up = ready ? await ready.call(store, initialWaitMs) : true;
    if (up) await Promise.race([this.check('start'), new Promise((r) => setTimeout(r, initialWaitMs).unref())]);
    void this.heartbeat();
  }

  /**
   * Fetches the latest snapshot if it differs from the current one. Calls coalesce. `hint` is
   * an announced pointer: newer than the current one, it is fetched directly (one round trip
   * less); otherwise `config:latest` decides.
   */
  check(reason: string, hint: SnapshotPointer | null = null): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (hint && (!this.hint || hint.version > this.hint.version)) this.hint = hint;
    if (this.running) {
      this.rerun = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.rerun = false;
          const h = this.hint;
          this.hint = null;
          await this.checkOnce(reason, h && (!this.current || h.version > this.current.version) ? h : null);
        } while (this.rerun && !this.closed);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private async checkOnce(reason: string, hint: SnapshotPointer | null): Promise<void> {
    const { store, logger } = this.o;
    let pointer: SnapshotPointer;
    if (hint) pointer = hint;
    else {
      try {
        const raw = await store.get(SNAPSHOT_KEYS.latest);
        if (!raw) return;
        pointer = JSON.parse(raw);
      } catch (err) {
        this.logError('cannot read the latest config pointer', err);
        return;
      }
    }
    if (!pointer || typeof pointer.hash !== 'string' || !Number.isInteger(pointer.version)) {
      this.logError('malformed config pointer', new Error(JSON.stringify(pointer)));
      return;
    }
    if (this.current && this.current.hash === pointer.hash) return;
    const refusedAt = this.refused.get(pointer.hash);
    if (refusedAt !== undefined && Date.now() - refusedAt < REFUSED_RETRY_MS && reason !== 'announced') return;
    let raw: string | null;
    try {
      raw = await store.get(SNAPSHOT_KEYS.version(pointer.version));
    } catch (err) {
      this.logError(`cannot read config snapshot ${pointer.version}`, err);
      return;
    }
    if (raw === null) {
      this.logError(`config snapshot ${pointer.version} is announced but missing`, new Error('missing'));
      return;
    }
    let snapshot: Snapshot;
    try {
      snapshot = await this.prepare(raw);
      if (snapshot.hash !== pointer.hash) throw new Error(`hash ${snapshot.hash} differs from the announced ${pointer.hash}`);
      await this.o.apply(snapshot);
    } catch (err) {
      this.refused.set(pointer.hash, Date.now());
      logger.error('refused config snapshot; keeping the current one', {
        version: pointer.version,
        current_version: this.current?.version ?? null,
        error: (err as Error).message,
      });
      return;
    }
    this.refused.delete(pointer.hash);
    const previous = this.current;
    this.current = { version: snapshot.version, hash: snapshot.hash };
    logger.info('applied config snapshot', { version: snapshot.version, previous_version: previous?.version ?? null, reason });
    try {
      writeFileAtomic(cacheFile(this.o.config.dataDir), raw);
    } catch (err) {
      logger.warn('cannot write the config cache', { error: (err as Error).message });
    }
    void this.heartbeat();
  }

  private async prepare(raw: string): Promise<Snapshot> {
    return withoutBacktrackingRoutes(validateSnapshot(JSON.parse(raw), this.o.plugins), this.o.logger);
  }

  async heartbeat(): Promise<void> {
    if (this.closed) return;
    const beat: DataPlaneHeartbeat = {
      id: this.o.nodeId,
      hostname: hostname(),
      ip: primaryIp(),
      version: GATEHOUSE_VERSION,
      config_version: this.current?.version ?? null,
      config_hash: this.current?.hash ?? null,
      last_seen: Math.floor(Date.now() / 1000),
      workers: this.o.workers ?? 1,
    };
    try {
      await this.o.store.hset(SNAPSHOT_KEYS.dataPlanes, this.o.nodeId, JSON.stringify(beat));
    } catch (err) {
      this.logError('heartbeat failed', err);
    }
  }

  private logError(message: string, err: unknown) {
    // Once per 10 s at warn while the store is down; the rest at debug.
    const now = Date.now();
    const level = now - this.lastErrorLog > 10_000 ? 'warn' : 'debug';
    if (level === 'warn') this.lastErrorLog = now;
    this.o.logger.log(level, message, { error: (err as Error)?.message ?? String(err), store: this.waitingFor });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.offResubscribe?.();
    // Neither may wait for a Redis that is away (the subscriber queues commands until it is back).
    const bounded = (p: Promise<unknown> | undefined) =>
      Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
    await bounded(this.unsubscribe?.());
    await bounded(this.running ?? undefined);
  }
}

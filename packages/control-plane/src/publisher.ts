// Turns committed config versions into snapshots for the data planes: after each admin write
// (coalescing bursts, never dropping the last one) it reads everything at one consistent version
// (a REPEATABLE READ transaction), stores the snapshot in the shared store, moves the `latest`
// pointer and announces it. Every few seconds it checks the store still holds the latest
// snapshot (Redis flushed, restarted empty, or a publish that failed while the database or Redis
// was down) and publishes again if not.
import {
  SNAPSHOT_KEYS,
  hashContent,
  nowSeconds,
  type ControlPlanePart,
  type Database,
  type EntityDefinition,
  type Logger,
  type PrismaClient,
  type SharedStore,
  type Snapshot,
  type SnapshotContent,
  type SnapshotPointer,
} from '@gatehouse/core';

export interface PublisherOptions {
  db: Database;
  store: SharedStore;
  logger: Logger;
  /** toEntity of the core entities, so snapshots carry exactly what the admin API shows. */
  entities: { services: EntityDefinition; routes: EntityDefinition; consumers: EntityDefinition; plugins: EntityDefinition };
  /** Plugins' control-plane parts contributing `credentials`. */
  parts: ControlPlanePart[];
  /** Delay gathering a burst of writes into one snapshot. */
  debounceMs?: number;
  verifyIntervalMs?: number;
  /** Snapshots kept besides the latest; older ones expire after EXPIRE_OLD_MS. */
  keep?: number;
}

const EXPIRE_OLD_MS = 60_000;

export function parsePointer(raw: string | null): SnapshotPointer | null {
  if (!raw) return null;
  try {
    const p = JSON.parse(raw);
    return typeof p?.version === 'number' && typeof p?.hash === 'string' ? { version: p.version, hash: p.hash } : null;
  } catch {
    return null;
  }
}

export class SnapshotPublisher {
  private dirty = false;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private interval: NodeJS.Timeout | null = null;
  private closed = false;
  private written: number[] = [];
  /** The last snapshot this publisher stored. */
  last: SnapshotPointer | null = null;
  /** Number of snapshots built and stored (tests and /status). */
  published = 0;
  lastError: string | null = null;

  constructor(private readonly options: PublisherOptions) {}

  /** Publishes the current version (if the store lacks it) and starts the periodic check. */
  async start(): Promise<void> {
    await this.verify();
    const every = this.options.verifyIntervalMs ?? 2000;
    this.interval = setInterval(() => void this.verify(), every);
    this.interval.unref();
  }

  /** A config write committed: publish soon. */
  notify(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, this.options.debounceMs ?? 5);
  }

  /** Resolves once every write notified so far is published (or failed). */
  async flush(): Promise<void> {
    for (let i = 0; i < 20; i++) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      if (this.dirty && !this.running) void this.run();
      if (!this.running) return;
      await this.running;
    }
  }

  private run(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      try {
        while (this.dirty && !this.closed) {
          this.dirty = false;
          try {
            await this.publishOnce();
            this.lastError = null;
          } catch (err) {
            // The periodic check publishes again once the database and the store are back.
            this.lastError = (err as Error).message;
            this.options.logger.warn('snapshot publish failed; will retry', { error: (err as Error).message });
            break;
          }
        }
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** Checks the store against the database and republishes when it is missing or behind. */
  async verify(): Promise<void> {
    if (this.closed) return;
    try {
      const { db, store } = this.options;
      const row = await db.prisma.configVersion.findUnique({ where: { id: 1 } });
      const version = Number(row?.version ?? 0);
      const pointer = parsePointer(await store.get(SNAPSHOT_KEYS.latest));
      const stale =
        !pointer || pointer.version < version || !(await store.exists(SNAPSHOT_KEYS.version(pointer.version)));
      if (stale) {
        if (pointer === null && this.last) this.options.logger.warn('snapshot missing from the store; republishing', { version });
        this.dirty = true;
        await this.run();
      }
    } catch (err) {
      this.lastError = (err as Error).message;
      this.options.logger.debug?.('snapshot check failed', { error: (err as Error).message });
    }
  }

  /** Reads every entity at one version. */
  async build(): Promise<Snapshot> {
    const { db, entities, parts } = this.options;
    const read = async (tx: any) => {
      const row = await tx.configVersion.findUnique({ where: { id: 1 } });
      const order = { orderBy: { id: 'asc' as const } };
      const [services, routes, consumers, plugins] = await Promise.all([
        tx.service.findMany(order),
        tx.route.findMany(order),
        tx.consumer.findMany(order),
        tx.plugin.findMany(order),
      ]);
      const credentials: Record<string, unknown[]> = {};
      const txDb: Database = { ...db, prisma: tx as PrismaClient };
      for (const part of parts) if (part.snapshot) Object.assign(credentials, await part.snapshot(txDb));
      const content: SnapshotContent = {
        services: services.map(entities.services.toEntity),
        routes: routes.map(entities.routes.toEntity),
        consumers: consumers.map(entities.consumers.toEntity),
        plugins: plugins.map(entities.plugins.toEntity),
        credentials,
      } as SnapshotContent;
      return { version: Number(row?.version ?? 0), content };
    };
    // Sequential reads inside one REPEATABLE READ transaction see a single committed state.
    const { version, content } =
      db.kind === 'postgres'
        ? await db.prisma.$transaction(read, { isolationLevel: 'RepeatableRead', timeout: 60_000, maxWait: 10_000 })
        : await db.prisma.$transaction(read, { timeout: 60_000, maxWait: 10_000 });
    return { version, hash: hashContent(content), created_at: nowSeconds(), ...content };
  }

  private async publishOnce(): Promise<void> {
    const { store } = this.options;
    const snapshot = await this.build();
    const pointer: SnapshotPointer = { version: snapshot.version, hash: snapshot.hash };
    await store.set(SNAPSHOT_KEYS.version(snapshot.version), JSON.stringify(snapshot));
    // Never move `latest` backwards (another control plane may have published a newer one).
    const current = parsePointer(await store.get(SNAPSHOT_KEYS.latest));
    if (!current || current.version <= snapshot.version || !(await store.exists(SNAPSHOT_KEYS.version(current.version)))) {
      await store.set(SNAPSHOT_KEYS.latest, JSON.stringify(pointer));
      await store.publish(SNAPSHOT_KEYS.channel, JSON.stringify(pointer));
    }
    this.last = pointer;
    this.published++;
    if (!this.written.includes(snapshot.version)) this.written.push(snapshot.version);
    const keep = (this.options.keep ?? 5) + 1;
    while (this.written.length > keep) {
      const old = this.written.shift()!;
      await store.pexpire(SNAPSHOT_KEYS.version(old), EXPIRE_OLD_MS);
    }
    this.options.logger.info('config snapshot published', { version: snapshot.version, hash: snapshot.hash });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.interval) clearInterval(this.interval);
    await (this.running ?? Promise.resolve());
  }
}

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
  /** The core entities: snapshots carry what the admin API shows (toEntity), secrets hashed (toSnapshot). */
  entities: { services: EntityDefinition; routes: EntityDefinition; consumers: EntityDefinition; plugins: EntityDefinition };
  /** Plugins' control-plane parts contributing `credentials`. */
  parts: ControlPlanePart[];
  /**
   * Delay before publishing after an idle period (default 0: at once, on the next turn of the
   * event loop). Writes committed while a snapshot is being built are gathered into the next one
   * whatever this is.
   */
  debounceMs?: number;
  verifyIntervalMs?: number;
  /** Snapshots kept besides the latest; older ones expire after EXPIRE_OLD_MS. */
  keep?: number;
}

const EXPIRE_OLD_MS = 60_000;

const forSnapshot = (entity: EntityDefinition) => entity.toSnapshot ?? entity.toEntity;

export function parsePointer(raw: string | null): SnapshotPointer | null {
  if (!raw) return null;
  try {
    const p = JSON.parse(raw);
    return typeof p?.version === 'number' && typeof p?.hash === 'string' ? { version: p.version, hash: p.hash } : null;
  } catch {
    return null;
  }
}

interface CoreRows {
  version: number;
  services: Record<string, any>[];
  routes: Record<string, any>[];
  consumers: Record<string, any>[];
  plugins: Record<string, any>[];
}

async function readCorePrisma(tx: any): Promise<CoreRows> {
  const order = { orderBy: { id: 'asc' as const } };
  const [row, services, routes, consumers, plugins] = await Promise.all([
    tx.configVersion.findUnique({ where: { id: 1 } }),
    tx.service.findMany(order),
    tx.route.findMany(order),
    tx.consumer.findMany(order),
    tx.plugin.findMany(order),
  ]);
  return { version: Number(row?.version ?? 0), services, routes, consumers, plugins };
}

const camel = (column: string) => column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const camelRows = (rows: Record<string, unknown>[]) =>
  rows.map((r) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) out[camel(k)] = v;
    return out;
  });
const aggregate = (table: string) => `(SELECT coalesce(json_agg(t ORDER BY t.id), '[]'::json) FROM ${table} t)`;
/**
 * The four core tables and the version in one statement (one round trip, one query through
 * Prisma instead of five): rows as JSON, columns renamed to the Prisma field names (every field
 * of these models is its column in camel case; a test compares this with findMany). No column of
 * these tables is a BigInt or a DateTime, so JSON carries every value exactly.
 */
const CORE_SQL = `SELECT json_build_object('version', (SELECT version::text FROM config_version WHERE id = 1), 'services', ${aggregate('services')}, 'routes', ${aggregate('routes')}, 'consumers', ${aggregate('consumers')}, 'plugins', ${aggregate('plugins')})::text AS doc`;

async function readCoreRaw(tx: any): Promise<CoreRows> {
  const [{ doc }] = (await tx.$queryRawUnsafe(CORE_SQL)) as { doc: string }[];
  const d = JSON.parse(doc);
  return { version: Number(d.version ?? 0), services: camelRows(d.services), routes: camelRows(d.routes), consumers: camelRows(d.consumers), plugins: camelRows(d.plugins) };
}

/** For tests: the core rows as Prisma's findMany returns them. */
export const _readCorePrisma = readCorePrisma;
export const _readCoreRaw = readCoreRaw;

export class SnapshotPublisher {
  private dirty = false;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private interval: NodeJS.Timeout | null = null;
  private closed = false;
  /** The last snapshot this publisher stored and pointed `latest` to. */
  last: SnapshotPointer | null = null;
  /** Number of snapshots built, stored and pointed to (tests and /status). */
  published = 0;
  lastError: string | null = null;
  private failures = 0;
  /** When the oldest write not yet taken into a build was notified (for the timing log). */
  private notifiedAt: number | null = null;

  constructor(private readonly options: PublisherOptions) {}

  /** Publishes the current version (if the store lacks it) and starts the periodic check. */
  async start(): Promise<void> {
    await this.adoptUnlisted();
    await this.verify();
    const every = this.options.verifyIntervalMs ?? 2000;
    this.interval = setInterval(() => void this.verify(), every);
    this.interval.unref();
  }

  /** A config write committed: publish soon. */
  notify(): void {
    if (this.closed) return;
    this.dirty = true;
    this.notifiedAt ??= performance.now();
    // A build running: the loop builds once more after it, taking in this write.
    if (this.timer || this.running) return;
    const debounce = this.options.debounceMs ?? 0;
    const go = () => {
      this.timer = null;
      void this.run();
    };
    this.timer = debounce > 0 ? setTimeout(go, debounce) : (setImmediate(go) as unknown as NodeJS.Timeout);
  }

  /**
   * Resolves once every write notified so far is published, retrying failed publishes (the
   * database or the store briefly away) until `timeoutMs`.
   */
  async flush(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !this.closed) {
      if (this.running) {
        await this.running;
        continue;
      }
      if (!this.dirty) return;
      if (this.timer) {
        clearTimeout(this.timer);
        clearImmediate(this.timer as unknown as NodeJS.Immediate);
        this.timer = null;
      }
      await this.run();
      if (this.dirty) await new Promise((r) => setTimeout(r, 100));
    }
  }

  private run(): Promise<void> {
    if (this.running) return this.running;
    const loop = this.loop();
    this.running = loop;
    // Cleared only once the loop settled (an async function that finds nothing to do settles
    // after this assignment, never before it), and only if no newer loop replaced it.
    const clear = () => {
      if (this.running === loop) this.running = null;
    };
    loop.then(clear, clear);
    return loop;
  }

  private async loop(): Promise<void> {
    while (this.dirty && !this.closed) {
      this.dirty = false;
      try {
        await this.publishOnce();
        this.lastError = null;
        this.failures = 0;
      } catch (err) {
        // Retry with a backoff; the periodic check is the safety net behind it.
        this.lastError = (err as Error).message;
        this.dirty = true;
        this.failures++;
        this.options.logger.warn('snapshot publish failed; will retry', { error: (err as Error).message, attempt: this.failures });
        if (!this.timer && !this.closed) {
          this.timer = setTimeout(() => {
            this.timer = null;
            void this.run();
          }, Math.min(100 * 2 ** Math.min(this.failures, 6), 5000));
          this.timer.unref();
        }
        return;
      }
    }
  }

  /** Checks the store against the database and republishes when it is missing or behind. */
  async verify(): Promise<void> {
    if (this.closed) return;
    try {
      const { db, store } = this.options;
      const dbVersion = async () => Number((await db.prisma.configVersion.findUnique({ where: { id: 1 } }))?.version ?? 0);
      let version = await dbVersion();
      const pointer = parsePointer(await store.get(SNAPSHOT_KEYS.latest));
      // Read again: a write published between the two reads is not a sign of anything.
      if (pointer && pointer.version > version) version = await dbVersion();
      if (pointer && pointer.version > version) {
        // The store holds a later history than this database (recreated, or restored from a
        // backup, with Redis kept). Data planes only take a version above the one they have, so
        // the counter moves past the store's; left alone, no write would reach them until it did.
        await db.prisma.$executeRaw`INSERT INTO config_version (id, version, updated_at) VALUES (1, ${pointer.version + 1}, ${nowSeconds()})
          ON CONFLICT (id) DO UPDATE SET version = GREATEST(config_version.version, EXCLUDED.version), updated_at = EXCLUDED.updated_at`;
        this.options.logger.warn('the published config version is ahead of the database (recreated or restored?); moving the database version past it', {
          published_version: pointer.version,
          database_version: version,
        });
      }
      const stale = !pointer || pointer.version !== version || !(await store.exists(SNAPSHOT_KEYS.version(pointer.version)));
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
      const txDb: Database = { ...db, prisma: tx as PrismaClient };
      // Under REPEATABLE READ every statement of the transaction sees the state the first one
      // saw, so the reads can be issued together: they queue on the transaction's one connection
      // (PGlite has only one anyway), each sent as soon as the previous one answered.
      const [core, ...contributions] = await Promise.all([
        db.kind === 'postgres' ? readCoreRaw(tx) : readCorePrisma(tx),
        ...parts.map((part) => (part.snapshot ? part.snapshot(txDb) : Promise.resolve({}))),
      ]);
      const { services, routes, consumers, plugins } = core;
      const credentials: Record<string, unknown[]> = {};
      for (const c of contributions) Object.assign(credentials, c);
      const content: SnapshotContent = {
        services: services.map(forSnapshot(entities.services)),
        routes: routes.map(forSnapshot(entities.routes)),
        consumers: consumers.map(forSnapshot(entities.consumers)),
        plugins: plugins.map(forSnapshot(entities.plugins)),
        credentials,
      } as SnapshotContent;
      return { version: core.version, content };
    };
    // Reads inside one REPEATABLE READ transaction see a single committed state.
    const { version, content } =
      db.kind === 'postgres'
        ? await db.prisma.$transaction(read, { isolationLevel: 'RepeatableRead', timeout: 60_000, maxWait: 10_000 })
        : await db.prisma.$transaction(read, { timeout: 60_000, maxWait: 10_000 });
    return { version, hash: hashContent(content), created_at: nowSeconds(), ...content };
  }

  private async publishOnce(): Promise<void> {
    const { store } = this.options;
    const t0 = performance.now();
    const waited = this.notifiedAt === null ? null : t0 - this.notifiedAt;
    this.notifiedAt = null;
    const snapshot = await this.build();
    const t1 = performance.now();
    const pointer: SnapshotPointer = { version: snapshot.version, hash: snapshot.hash };
    // Commands on one connection run in the order sent: issuing them together saves round trips
    // without changing what each one sees.
    const [, , latest] = await Promise.all([
      store.set(SNAPSHOT_KEYS.version(snapshot.version), JSON.stringify(snapshot)),
      store.sadd(SNAPSHOT_KEYS.stored, String(snapshot.version)),
      store.get(SNAPSHOT_KEYS.latest),
    ]);
    // Never move `latest` backwards (another control plane may have published a newer one).
    const current = parsePointer(latest);
    if (current && current.version > snapshot.version && (await store.exists(SNAPSHOT_KEYS.version(current.version)))) {
      this.options.logger.info('config snapshot superseded by a later one in the store; not published', { version: snapshot.version, latest: current.version });
      await this.expireOld();
      return;
    }
    // The pointer is set before the announcement goes out (same connection, in order).
    await Promise.all([store.set(SNAPSHOT_KEYS.latest, JSON.stringify(pointer)), store.publish(SNAPSHOT_KEYS.channel, JSON.stringify(pointer))]);
    const t2 = performance.now();
    this.last = pointer;
    this.published++;
    await this.expireOld();
    const ms = (x: number) => Math.round(x * 10) / 10;
    this.options.logger.info('config snapshot published', {
      version: snapshot.version,
      hash: snapshot.hash,
      waited_ms: waited === null ? null : ms(waited),
      build_ms: ms(t1 - t0),
      store_ms: ms(t2 - t1),
    });
  }

  /**
   * Lists the snapshots stored without being listed (written by a version before the list
   * existed, or by a process that stopped between the two writes), so that they expire too.
   */
  private async adoptUnlisted(): Promise<void> {
    const { store, logger } = this.options;
    try {
      const versions = (await store.keysWithPrefix(SNAPSHOT_KEYS.versionPrefix)).map((k) => k.slice(SNAPSHOT_KEYS.versionPrefix.length)).filter((v) => /^\d+$/.test(v));
      if (versions.length) await store.sadd(SNAPSHOT_KEYS.stored, ...versions);
    } catch (err) {
      // The store is away: the next start lists them.
      logger.debug?.('cannot list stored snapshots', { error: (err as Error).message });
    }
  }

  /**
   * Gives every stored snapshot but the newest `keep` + 1 an expiry. The versions are listed in
   * the store, not in memory, so those a previous control-plane process wrote expire too.
   */
  private async expireOld(): Promise<void> {
    const { store } = this.options;
    const versions = (await store.smembers(SNAPSHOT_KEYS.stored)).map(Number).sort((a, b) => b - a);
    const old = versions.slice((this.options.keep ?? 5) + 1);
    if (!old.length) return;
    await Promise.all(old.map((v) => store.pexpire(SNAPSHOT_KEYS.version(v), EXPIRE_OLD_MS)));
    await store.srem(SNAPSHOT_KEYS.stored, ...old.map(String));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.interval) clearInterval(this.interval);
    await (this.running ?? Promise.resolve());
  }
}

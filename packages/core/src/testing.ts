// Helpers for tests: each test file gets its own Postgres database and Redis key prefix, so
// files run in parallel against the same servers without seeing each other.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import winston from 'winston';
import { openDatabase, type Database } from './db/client.ts';
import { migrateUp } from './db/migrations.ts';
import { createLogger, type Logger } from './logger.ts';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** Creates an empty database `gh_test_<random>` (migrated unless told otherwise). */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `gh_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  if (options.migrate !== false) {
    const db = await openDatabase({ databaseUrl: url.toString(), dataDir: tmpdir() });
    await migrateUp(db.sql);
    await db.close();
  }
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

export function testRedisPrefix(): string {
  return `gh_test_${randomBytes(6).toString('hex')}:`;
}

export function tempDir(prefix = 'gatehouse-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function openTestDatabase(): Promise<{ db: Database; testDb: TestDatabase; close(): Promise<void> }> {
  const testDb = await createTestDatabase();
  const db = await openDatabase({ databaseUrl: testDb.url, dataDir: tmpdir() });
  return {
    db,
    testDb,
    async close() {
      await db.close();
      await testDb.drop();
    },
  };
}

/** A TCP port free on 127.0.0.1 right now (for tests that start separate processes). */
export async function getFreePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A TCP relay on 127.0.0.1 to a real server (Redis, Postgres) that a test can cut and restore:
 * an outage as the client sees it, without stopping a server other tests share.
 * `url` is the target URL pointed at the relay; the relay keeps its port across cut/open.
 */
export class TcpRelay {
  private server: import('node:net').Server | null = null;
  private readonly sockets = new Set<import('node:net').Socket>();
  private readonly target: URL;

  constructor(
    targetUrl: string,
    public port = 0,
  ) {
    this.target = new URL(targetUrl);
  }

  get url(): string {
    const u = new URL(this.target.toString());
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Starts (or restarts) accepting connections. */
  async open(): Promise<void> {
    const { createServer, connect } = await import('node:net');
    const targetPort = Number(this.target.port || (this.target.protocol.startsWith('redis') ? 6379 : 5432));
    const server = createServer((client) => {
      const upstream = connect(targetPort, this.target.hostname);
      this.sockets.add(client);
      this.sockets.add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as import('node:net').AddressInfo).port;
    this.server = server;
  }

  restore(): Promise<void> {
    return this.open();
  }

  /** Refuses new connections and cuts the open ones, as the server going down. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  close(): Promise<void> {
    return this.cut();
  }
}

/** A logger whose JSON lines are kept, parsed, in `lines` (for tests of what gets logged). */
export function capturingLogger(role: string, level: string): { logger: Logger; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const logger = createLogger({ role, level });
  logger.clear();
  logger.add(
    new winston.transports.Stream({
      stream: new Writable({
        write(chunk, _enc, cb) {
          for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
          cb();
        },
      }),
    }),
  );
  return { logger, lines };
}

// Opens the configuration database: Postgres through @prisma/adapter-pg when DATABASE_URL is
// set, otherwise an embedded PGlite under <data dir>/pglite through pglite-prisma-adapter.
// Both expose the same Prisma client plus a raw SQL runner for migrations.
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { PrismaClient } from './generated/client.ts';

export { PrismaClient };
export type { Prisma } from './generated/client.ts';

/** Multi-statement SQL and simple queries, outside Prisma (migrations, advisory locks, probes). */
export interface SqlRunner {
  exec(sql: string): Promise<void>;
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs `fn` with exclusive use of one connection (for locks and transactions). */
  withConnection<T>(fn: (conn: Omit<SqlRunner, 'withConnection' | 'close'>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface Database {
  kind: 'postgres' | 'pglite';
  /** Where it lives, without credentials, for status output. */
  location: string;
  prisma: PrismaClient;
  sql: SqlRunner;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl: string | null;
  dataDir: string;
}

/** The database URL for logs and GET /: its password, in the user part or as a parameter, masked. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...u.searchParams.keys()]) if (/pass/i.test(key)) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return 'postgres';
  }
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 10, connectionTimeoutMillis: 5000 });
    // An idle client losing its connection (database restart) must not crash the process.
    pool.on('error', () => {});
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
    const runner = (client: pg.Pool | pg.PoolClient) => ({
      async exec(sql: string) {
        await client.query(sql);
      },
      async query<T>(sql: string, params: unknown[] = []) {
        return (await client.query(sql, params)).rows as T[];
      },
    });
    const sql: SqlRunner = {
      ...runner(pool),
      async withConnection(fn) {
        const client = await pool.connect();
        try {
          return await fn(runner(client));
        } finally {
          client.release();
        }
      },
      close: () => pool.end(),
    };
    return {
      kind: 'postgres',
      location: redactUrl(options.databaseUrl),
      prisma,
      sql,
      async close() {
        await prisma.$disconnect();
        await pool.end().catch(() => {});
      },
    };
  }

  const dir = join(options.dataDir, 'pglite');
  mkdirSync(dir, { recursive: true });
  const lock = lockEmbedded(join(options.dataDir, 'pglite.lock'), dir);
  let lite: PGlite;
  try {
    lite = new PGlite(dir);
    await lite.waitReady;
  } catch (err) {
    lock.release();
    throw err;
  }
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(lite) });
  const runner = {
    async exec(sql: string) {
      await lite.exec(sql);
    },
    async query<T>(sql: string, params: unknown[] = []) {
      return (await lite.query<T>(sql, params)).rows;
    },
  };
  const sql: SqlRunner = {
    ...runner,
    // PGlite has a single connection; its own queue serialises callers.
    withConnection: (fn) => fn(runner),
    close: () => lite.close(),
  };
  return {
    kind: 'pglite',
    location: dir,
    prisma,
    sql,
    async close() {
      await prisma.$disconnect();
      if (!lite.closed) await lite.close();
      lock.release();
    },
  };
}

/** Whether process `pid` is a running node process (a PID reused by something else is not). */
function nodeProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch {
    return true; // no /proc to tell: assume it is
  }
}

/**
 * PGlite is one process's database: a second one opening the same directory (a second
 * `gatehouse start`, `gatehouse migrations` while it runs) can abort or corrupt it. The lock file
 * holds the owner's PID; one left by a process that died is taken over.
 */
function lockEmbedded(file: string, dir: string): { release(): void } {
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const owner = Number(readFileSync(file, 'utf8'));
      if (owner && owner !== process.pid && nodeProcessAlive(owner)) {
        throw new Error(`the embedded database in ${dir} is in use by process ${owner}: stop that one first, or set DATABASE_URL`);
      }
      unlinkSync(file);
    }
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      try {
        if (readFileSync(file, 'utf8') === String(process.pid)) unlinkSync(file);
      } catch {}
    },
  };
}

// Shared set-up for the control-plane tests: a migrated database of its own, a Redis prefix of
// its own, and the real admin app (supertest drives it in-process, no listener needed).
import { tmpdir } from 'node:os';
import {
  RedisStore,
  createLogger,
  loadConfig,
  type ControlPlanePart,
  type Database,
  type EntityDefinition,
  type GatehouseConfig,
  type SharedStore,
} from '@gatehouse/core';
import { openTestDatabase, testRedisPrefix, TEST_REDIS_URL, type TestDatabase } from '@gatehouse/core/testing.ts';
import { createAdminApp, SnapshotPublisher, servicesEntity, routesEntity, consumersEntity, pluginsEntity } from '../src/index.ts';
import { plugins } from '@gatehouse/plugins';
import type express from 'express';

export const silentLogger = createLogger({ role: 'test', silent: true });

export interface TestApp {
  prefix: string;
  app: express.Express;
  db: Database;
  testDb: TestDatabase;
  store: SharedStore;
  publisher: SnapshotPublisher;
  config: GatehouseConfig;
  close(): Promise<void>;
}

export async function openTestApp(
  options: {
    entities?: EntityDefinition[];
    env?: Record<string, string>;
    pluginParts?: boolean;
    /** Control-plane parts declared by the test itself. */
    parts?: ControlPlanePart[];
    verifyIntervalMs?: number;
  } = {},
): Promise<TestApp> {
  const { db, testDb, close } = await openTestDatabase();
  const prefix = testRedisPrefix();
  const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  const config = loadConfig({ GATEHOUSE_DATA_DIR: tmpdir(), REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix, ...options.env });
  // The plugins' real control-plane parts (their admin entities and snapshot contributions).
  const parts: ControlPlanePart[] = [...(options.parts ?? [])];
  if (options.pluginParts) {
    for (const plugin of plugins.values()) {
      if (plugin.controlPlane) parts.push(await (await plugin.controlPlane()).default({ config, db, store, logger: silentLogger }));
    }
  }
  const entities = [...(options.entities ?? []), ...parts.flatMap((p) => p.entities ?? [])];
  const publisher = new SnapshotPublisher({
    db,
    store,
    logger: silentLogger,
    parts,
    verifyIntervalMs: options.verifyIntervalMs,
    entities: { services: servicesEntity, routes: routesEntity, consumers: consumersEntity, plugins: pluginsEntity((n) => plugins.get(n)) },
  });
  const app = createAdminApp({ config, db, store, logger: silentLogger, entities, parts, publisher });
  return {
    prefix,
    app,
    db,
    testDb,
    store,
    publisher,
    config,
    async close() {
      await publisher.close();
      await store.close();
      await close();
    },
  };
}

/** Every table's rows, to prove a request changed nothing. */
export async function dumpDatabase(db: Database): Promise<Record<string, unknown[]>> {
  const tables = ['services', 'routes', 'consumers', 'plugins', 'config_version', 'oauth2_credentials', 'oauth2_tokens', 'oauth2_authorization_codes'];
  const out: Record<string, unknown[]> = {};
  for (const t of tables) out[t] = await db.sql.query(`SELECT * FROM "${t}" ORDER BY 1`);
  return out;
}

/**
 * A TCP relay to a real server (Postgres, Redis) that a test can close and reopen, to take a
 * dependency away without touching the shared server.
 */
/** The database or Redis through a relay the test can cut (core's TcpRelay). */
export { TcpRelay as TcpProxy } from '@gatehouse/core/testing.ts';


// startControlPlane: database (migrated unless told not to), shared store, plugin control-plane
// parts and their jobs, the snapshot publisher and the admin listeners. Used by
// `gatehouse control-plane` and by the all-in-one `gatehouse start`.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  ConfigError,
  createLogger,
  isLoopback,
  MigrationError,
  migrateUp,
  migrationStatus,
  openDatabase,
  openStore,
  type ControlPlanePart,
  type Database,
  type GatehouseConfig,
  type ListenAddress,
  type Logger,
  type PluginDefinition,
  type SharedStore,
} from '@gatehouse/core';
import { loadTlsCredentials } from '@gatehouse/core/tls.ts';
import { plugins as registeredPlugins } from '@gatehouse/plugins';
import { createAdminApp } from './app.ts';
import { consumersEntity, pluginsEntity, routesEntity, servicesEntity } from './core-entities.ts';
import { SnapshotPublisher } from './publisher.ts';

export interface StartControlPlaneOptions {
  config: GatehouseConfig;
  /** A store shared with an in-process data plane (all-in-one); default: openStore(config). */
  store?: SharedStore;
  logger?: Logger;
  /** Plugins available (default: the registry in packages/plugins). */
  plugins?: ReadonlyMap<string, PluginDefinition>;
  /** Periodic snapshot check interval (default 2000 ms). */
  verifyIntervalMs?: number;
}

export interface AdminAddress extends ListenAddress {
  /** e.g. http://127.0.0.1:8001 (the actual port when 0 was asked). */
  url: string;
}

export interface ControlPlane {
  close(): Promise<void>;
  adminAddresses: AdminAddress[];
  db: Database;
  store: SharedStore;
  publisher: SnapshotPublisher;
  nodeId: string;
}

/** Refuses an admin API reachable from other machines without GATEHOUSE_ADMIN_TOKEN. */
export function checkAdminExposure(config: GatehouseConfig): void {
  if (config.adminToken) return;
  const exposed = config.adminListen.filter((l) => !isLoopback(l.host));
  if (exposed.length) {
    const where = exposed.map((l) => `${l.host}:${l.port}`).join(', ');
    throw new ConfigError(
      `GATEHOUSE_ADMIN_TOKEN must be set when GATEHOUSE_ADMIN_LISTEN has a non-loopback address (${where}); set a token or listen on 127.0.0.1`,
    );
  }
}

function listen(server: http.Server | https.Server, address: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new ConfigError(`GATEHOUSE_ADMIN_LISTEN: cannot listen on ${address.host}:${address.port}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export async function startControlPlane(options: StartControlPlaneOptions): Promise<ControlPlane> {
  const { config } = options;
  checkAdminExposure(config);
  const logger = options.logger ?? createLogger({ role: 'control-plane', level: config.logLevel });
  const plugins = options.plugins ?? registeredPlugins;
  const nodeId = config.nodeId ?? randomUUID();
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  };

  try {
    const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    cleanups.push(() => db.close());
    if (config.autoMigrate) {
      const applied = await migrateUp(db.sql);
      if (applied.length) logger.info('migrations applied', { migrations: applied });
    } else {
      const states = await migrationStatus(db.sql);
      const notApplied = states.filter((m) => m.status !== 'applied');
      if (notApplied.length) {
        throw new MigrationError(
          `the database is not up to date (${notApplied.map((m) => `${m.name}: ${m.status}`).join(', ')}); run \`gatehouse migrations up\` or unset GATEHOUSE_AUTO_MIGRATE=off`,
        );
      }
    }
    logger.info('database ready', { kind: db.kind, location: db.location });

    let store = options.store;
    if (!store) {
      store = openStore({
        redisUrl: config.redisUrl,
        prefix: config.redisPrefix,
        onError: (err) => logger.warn('redis connection error', { error: err.message }),
      });
      const own = store;
      cleanups.push(() => own.close());
      if (store.kind === 'memory') {
        logger.warn('REDIS_URL is not set: using an in-process store; data planes in other processes cannot see this control plane');
      }
    }

    const parts: ControlPlanePart[] = [];
    for (const plugin of plugins.values()) {
      if (!plugin.controlPlane) continue;
      const factory = (await plugin.controlPlane()).default;
      parts.push(await factory({ config, db, store, logger: logger.child({ plugin: plugin.name }) }));
    }
    const entities = parts.flatMap((p) => p.entities ?? []);

    const publisher = new SnapshotPublisher({
      db,
      store,
      logger,
      parts,
      verifyIntervalMs: options.verifyIntervalMs,
      entities: {
        services: servicesEntity,
        routes: routesEntity,
        consumers: consumersEntity,
        plugins: pluginsEntity((name) => plugins.get(name)),
      },
    });
    const app = createAdminApp({ config, db, store, logger, plugins, entities, parts, nodeId, publisher });
    const pub = publisher;
    cleanups.push(() => pub.close());
    await publisher.start();

    for (const part of parts) {
      if (!part.start) continue;
      const stop = await part.start();
      cleanups.push(stop);
    }

    const servers: (http.Server | https.Server)[] = [];
    const adminAddresses: AdminAddress[] = [];
    let tls: { cert: string; key: string } | null = null;
    for (const address of config.adminListen) {
      if (address.ssl) tls ??= await loadTlsCredentials(config);
      const server = address.ssl ? https.createServer({ cert: tls!.cert, key: tls!.key }, app) : http.createServer(app);
      server.keepAliveTimeout = 5000;
      await listen(server, address);
      servers.push(server);
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections?.();
          }),
      );
      const port = (server.address() as AddressInfo).port;
      const hostPart = address.host.includes(':') ? `[${address.host}]` : address.host;
      adminAddresses.push({ ...address, port, url: `${address.ssl ? 'https' : 'http'}://${hostPart}:${port}` });
    }
    logger.info('admin API listening', { addresses: adminAddresses.map((a) => a.url), node_id: nodeId });

    let closing: Promise<void> | null = null;
    return {
      adminAddresses,
      db,
      store,
      publisher,
      nodeId,
      close() {
        closing ??= cleanup();
        return closing;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

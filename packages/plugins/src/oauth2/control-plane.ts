// The oauth2 plugin on the control plane: admin entities, the snapshot contribution (credentials
// with hashed secrets), and the background job that
//   - persists the data planes' token events (Redis stream, consumer group) to Postgres,
//     redelivering what a crashed control plane left unacknowledged;
//   - restores live tokens and codes from Postgres into Redis when Redis lost its data;
//   - purges expired rows (Kong's TTL cleanup).
import type { ControlPlaneFactory, ControlPlanePart, ControlPlaneServices, Database, Row, SharedStore, StreamEntry } from '@gatehouse/core';
import { createEntities, credentialToSnapshot, rowToRecord } from './entities.ts';
import { KEYS, TokenStore, accessKeyTtlMs, refreshKeyTtlMs, type CodeRecord, type Oauth2Event, type TokenRecord } from './tokens.ts';

export const CONSUMER_GROUP = 'gatehouse-control-plane';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => Math.floor(Date.now() / 1000);

function isForeignKeyError(err: unknown): boolean {
  const e = err as { code?: string; message?: string; meta?: unknown };
  return e?.code === 'P2003' || /foreign key/i.test(String(e?.message ?? '')) || /23503/.test(JSON.stringify(e?.meta ?? ''));
}

function tokenRow(t: TokenRecord) {
  return {
    id: t.id,
    credentialId: t.credential_id,
    serviceId: t.service_id,
    pluginId: t.plugin_id,
    tokenType: 'bearer',
    expiresIn: t.expires_in,
    accessTokenHash: t.access_hash,
    refreshTokenHash: t.refresh_hash,
    authenticatedUserid: t.authenticated_userid,
    scope: t.scope,
    grantId: t.grant_id,
    createdAt: t.created_at,
    purgeAt: t.purge_at,
  };
}

/** Inserts issued tokens in one statement; on a foreign-key failure (credential or service deleted meanwhile), row by row. */
async function insertTokens(db: Database, tokens: TokenRecord[]): Promise<void> {
  if (tokens.length === 0) return;
  try {
    await db.prisma.oauth2Token.createMany({ data: tokens.map(tokenRow), skipDuplicates: true });
  } catch (err) {
    if (!isForeignKeyError(err) || tokens.length === 1) {
      if (isForeignKeyError(err)) return; // the token died with its credential or service
      throw err;
    }
    for (const t of tokens) await insertTokens(db, [t]);
  }
}

/**
 * The records still issued under their credential's current client_id. A token or code issued
 * under an old one (its event still in the stream when the client_id changed) is dead: its row
 * must not be written, or a restore would rebuild it with the new client_id and revive it.
 * Records without a client_id (codes written by earlier versions) are kept.
 */
async function currentClient<T extends { credential_id: string; client_id?: string }>(db: Database, records: T[]): Promise<T[]> {
  if (records.length === 0) return records;
  const ids = [...new Set(records.map((r) => r.credential_id))];
  const rows: Row[] = await db.prisma.oauth2Credential.findMany({ where: { id: { in: ids } }, select: { id: true, clientId: true } });
  const clientIds = new Map(rows.map((r) => [r.id as string, r.clientId as string]));
  // A credential that is gone is left to the foreign key (insertTokens drops those rows).
  return records.filter((r) => r.client_id === undefined || !clientIds.has(r.credential_id) || clientIds.get(r.credential_id) === r.client_id);
}

/** Applies events to Postgres in order, issued tokens batched; idempotent, so redelivery is harmless. */
export async function applyEvents(db: Database, events: Oauth2Event[]): Promise<void> {
  let run: TokenRecord[] = [];
  for (const event of events) {
    if (event.t === 'token') {
      run.push(event.token);
      continue;
    }
    await insertTokens(db, await currentClient(db, run));
    run = [];
    await applyEvent(db, event);
  }
  await insertTokens(db, await currentClient(db, run));
}

/** Applies one event to Postgres; idempotent, so a redelivered event is harmless. */
export async function applyEvent(db: Database, event: Oauth2Event): Promise<void> {
  const p = db.prisma;
  switch (event.t) {
    case 'token':
      await insertTokens(db, await currentClient(db, [event.token]));
      return;
    case 'token_update':
      await p.oauth2Token.updateMany({
        where: { id: event.id },
        data: { accessTokenHash: event.access_hash, createdAt: event.created_at, expiresIn: event.expires_in, purgeAt: event.purge_at },
      });
      return;
    case 'token_delete':
      await p.oauth2Token.deleteMany({ where: { id: { in: event.ids } } });
      return;
    case 'grant_revoke':
      await p.oauth2Token.deleteMany({ where: { grantId: event.grant_id } });
      return;
    case 'code': {
      const c = event.code;
      if ((await currentClient(db, [c])).length === 0) return;
      try {
        await p.oauth2AuthorizationCode.createMany({
          data: [
            {
              id: c.id,
              codeHash: c.code_hash,
              serviceId: c.service_id,
              credentialId: c.credential_id,
              pluginId: c.plugin_id,
              authenticatedUserid: c.authenticated_userid,
              scope: c.scope,
              redirectUri: c.redirect_uri,
              challenge: c.challenge,
              challengeMethod: c.challenge_method,
              grantId: c.grant_id,
              createdAt: c.created_at,
              expiresAt: c.expires_at,
            },
          ],
          skipDuplicates: true,
        });
      } catch (err) {
        if (!isForeignKeyError(err)) throw err;
      }
      return;
    }
    case 'code_used':
      await p.oauth2AuthorizationCode.deleteMany({ where: { codeHash: event.code_hash } });
      return;
  }
}

/** Writes every live token and unused code from Postgres into the store, then the sentinel. */
export async function restoreStore(db: Database, store: SharedStore, tokens: TokenStore): Promise<{ tokens: number; codes: number }> {
  const t = now();
  let restoredTokens = 0;
  let cursor: string | undefined;
  const clientIds = new Map<string, string>();
  for (;;) {
    const rows: Row[] = await db.prisma.oauth2Token.findMany({
      where: { OR: [{ purgeAt: null }, { purgeAt: { gt: t } }] },
      orderBy: { id: 'asc' },
      take: 1000,
      ...(cursor ? { cursor: { id: cursor }, skip: 1 } : {}),
    });
    if (rows.length === 0) break;
    cursor = rows[rows.length - 1].id;
    const missing = [...new Set(rows.map((r) => r.credentialId))].filter((id) => !clientIds.has(id));
    if (missing.length) {
      for (const c of await db.prisma.oauth2Credential.findMany({ where: { id: { in: missing } }, select: { id: true, clientId: true } })) {
        clientIds.set(c.id, c.clientId);
      }
    }
    await Promise.all(
      rows.map(async (row) => {
        const clientId = clientIds.get(row.credentialId);
        if (!clientId) return;
        const record = rowToRecord(row, clientId);
        const accessLive = record.expires_in === 0 || record.created_at + record.expires_in >= t;
        const json = JSON.stringify(record);
        if (accessLive) await store.set(KEYS.access(record.access_hash), json, { ttlMs: accessKeyTtlMs(record) });
        if (record.refresh_hash) {
          await store.set(KEYS.refresh(record.refresh_hash), json, { ttlMs: refreshKeyTtlMs(record) });
          await store.sadd(KEYS.grant(record.grant_id), `a:${record.access_hash}`, `r:${record.refresh_hash}`);
          const ttl = refreshKeyTtlMs(record);
          if (ttl) await store.pexpire(KEYS.grant(record.grant_id), ttl);
        }
        restoredTokens++;
      }),
    );
  }
  const codes = await db.prisma.oauth2AuthorizationCode.findMany({ where: { expiresAt: { gt: t } } });
  for (const c of codes) {
    const record: CodeRecord = {
      id: c.id,
      credential_id: c.credentialId,
      service_id: c.serviceId,
      plugin_id: c.pluginId,
      authenticated_userid: c.authenticatedUserid,
      scope: c.scope,
      redirect_uri: c.redirectUri,
      challenge: c.challenge,
      challenge_method: c.challengeMethod,
      grant_id: c.grantId,
      created_at: c.createdAt,
      expires_at: c.expiresAt,
      code_hash: c.codeHash,
    };
    await tokens.putCode(record);
  }
  await store.set(KEYS.sentinel, String(Date.now()));
  return { tokens: restoredTokens, codes: codes.length };
}

export interface Oauth2ControlPlaneOptions {
  /** How often the sentinel is checked (ms). */
  sentinelIntervalMs?: number;
  /** How often expired rows are purged (ms). */
  purgeIntervalMs?: number;
  /** Consumer name in the group (default `control-plane`; stable across restarts so pending entries come back). */
  consumerName?: string;
}

export function createOauth2ControlPlane(services: ControlPlaneServices, options: Oauth2ControlPlaneOptions = {}): ControlPlanePart {
  const { db, store, logger } = services;
  const tokens = new TokenStore(store, { logger });
  // One stable name: a control plane restarted elsewhere (new host name, new node id) still
  // finds what its predecessor read and never acknowledged, and drains it before new entries.
  const consumer = options.consumerName ?? 'control-plane';

  async function processEntries(entries: StreamEntry[]) {
    const events: Oauth2Event[] = [];
    for (const entry of entries) {
      try {
        const event = JSON.parse(entry.fields.e ?? 'null') as Oauth2Event | null;
        if (event && typeof event === 'object' && typeof event.t === 'string') events.push(event);
      } catch {
        logger.warn('oauth2: dropping a malformed event', { id: entry.id });
      }
    }
    await applyEvents(db, events);
    // Acknowledged only once written: a crash before this line redelivers the batch.
    await store.xack(KEYS.stream, CONSUMER_GROUP, ...entries.map((e) => e.id));
  }

  return {
    entities: createEntities(db, tokens),

    async afterEntityCommit(entity, op, before) {
      // A deleted consumer takes its credentials and tokens with it: tell the data planes now
      // rather than through the next snapshot.
      if (entity === 'consumers' && op === 'delete' && before?.id) await tokens.publish({ u: [before.id] });
    },

    async snapshot(database) {
      const rows = await database.prisma.oauth2Credential.findMany({ orderBy: { id: 'asc' } });
      return { oauth2_credentials: rows.map(credentialToSnapshot) };
    },

    async start() {
      let stopped = false;
      const loops: Promise<void>[] = [];

      // Restore first, so the data planes find tokens issued before Redis lost them.
      const ensureRestored = async () => {
        if (await store.exists(KEYS.sentinel)) return;
        const started = Date.now();
        const result = await restoreStore(db, store, tokens);
        logger.info('oauth2: restored live tokens into the shared store', { ...result, ms: Date.now() - started });
      };
      try {
        await ensureRestored();
      } catch (err) {
        logger.error('oauth2: restore failed; will retry', { error: String(err) });
      }

      loops.push(
        (async () => {
          let groupReady = false;
          let backoff = 250;
          while (!stopped) {
            try {
              if (!groupReady) {
                await store.xgroupEnsure(KEYS.stream, CONSUMER_GROUP);
                // Entries delivered to this consumer before a crash, never acknowledged.
                for (;;) {
                  const pending = await store.xpending(KEYS.stream, CONSUMER_GROUP, consumer, 100);
                  if (pending.length === 0) break;
                  await processEntries(pending);
                }
                groupReady = true;
              }
              const entries = await store.xreadgroup(KEYS.stream, CONSUMER_GROUP, consumer, 200, 500);
              if (entries.length) await processEntries(entries);
              backoff = 250;
            } catch (err) {
              if (stopped) break;
              // NOGROUP after Redis lost the stream, Postgres or Redis unreachable: back off and
              // retry (unacknowledged entries stay pending and come back through xpending).
              groupReady = false;
              logger.warn('oauth2: event consumer error', { error: String((err as Error).message ?? err), retry_ms: backoff });
              await sleep(backoff);
              backoff = Math.min(backoff * 2, 5000);
            }
          }
        })(),
      );

      loops.push(
        (async () => {
          let lastPurge = 0;
          const interval = options.sentinelIntervalMs ?? 1000;
          while (!stopped) {
            await sleep(interval);
            if (stopped) break;
            try {
              await ensureRestored();
              if (Date.now() - lastPurge >= (options.purgeIntervalMs ?? 60_000)) {
                lastPurge = Date.now();
                const t = now();
                await db.prisma.oauth2Token.deleteMany({ where: { purgeAt: { lt: t } } });
                await db.prisma.oauth2AuthorizationCode.deleteMany({ where: { expiresAt: { lt: t } } });
              }
            } catch (err) {
              if (!stopped) logger.warn('oauth2: maintenance error', { error: String(err) });
            }
          }
        })(),
      );

      return async () => {
        stopped = true;
        await Promise.allSettled(loops);
      };
    },
  };
}

const factory: ControlPlaneFactory = (services) => createOauth2ControlPlane(services);
export default factory;

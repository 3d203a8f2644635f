// Admin entities of the oauth2 plugin (Kong's daos.lua): `oauth2_credentials` at /oauth2 (and
// /consumers/{c}/oauth2) and `oauth2_tokens` at /oauth2_tokens, mounted by the control plane's
// generic engine. Secrets and tokens are stored hashed; a plaintext is returned only by the write
// that set it.
import { z } from 'zod';
import { newId, randomAlnum, sha256Hex, type Database, type EntityDefinition, type FieldErrors, type Row } from '@gatehouse/core';
import type { SnapshotCredential } from './server.ts';
import { ID_MAX, TOKEN_MAX, URI_MAX } from './limits.ts';
import { hashSecret, isHashedSecret } from './secrets.ts';
import { KEYS, TokenStore, type TokenRecord } from './tokens.ts';

/** What the engine passes besides the input (structurally the core's WriteContext). */
interface WriteContextLike {
  op: string;
  body: Row;
}

const PLAINTEXT = Symbol('plaintext');

const nullIfEmpty = <T>(list: T[] | null | undefined): T[] | null => (list && list.length ? list : null);

const tags = z.array(z.string().min(1).max(255)).nullable().default(null);

function redirectUriError(uri: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    return `cannot parse '${uri}'`;
  }
  if (!parsed.protocol || !parsed.host) return `cannot parse '${uri}'`;
  if (uri.includes('#')) return `fragment not allowed in '${uri}'`;
  return null;
}

export const credentialSchema = z
  .strictObject({
    name: z.string().min(1),
    // Bounded as the endpoints bound what clients send (limits.ts).
    client_id: z.string().min(1).max(ID_MAX).nullable().optional(),
    client_secret: z.string().min(1).max(ID_MAX).nullable().optional(),
    hash_secret: z.boolean().default(false),
    redirect_uris: z.array(z.string().max(URI_MAX)).nullable().default(null),
    client_type: z.enum(['confidential', 'public']).default('confidential'),
    tags,
  })
  .superRefine((value, ctx) => {
    value.redirect_uris?.forEach((uri, i) => {
      const message = redirectUriError(uri);
      if (message) ctx.addIssue({ code: 'custom', path: ['redirect_uris', i], message });
    });
  });

export const tokenSchema = z.strictObject({
  access_token: z.string().min(1).max(TOKEN_MAX).nullable().optional(),
  refresh_token: z.string().min(1).max(TOKEN_MAX).nullable().optional(),
  token_type: z.enum(['bearer']).default('bearer'),
  expires_in: z.number().int(),
  authenticated_userid: z.string().nullable().default(null),
  scope: z.string().nullable().default(null),
  // Kong's `ttl` option: the row (access and refresh token) is deleted after this many seconds.
  ttl: z.number().int().min(0).nullable().optional(),
});

export function credentialToEntity(r: Row): Row {
  return {
    id: r.id,
    created_at: r.createdAt,
    consumer: { id: r.consumerId },
    name: r.name,
    client_id: r.clientId,
    client_secret: r.clientSecret,
    hash_secret: r.hashSecret,
    redirect_uris: nullIfEmpty(r.redirectUris),
    tags: nullIfEmpty(r.tags),
    client_type: r.clientType,
  };
}

export function credentialToSnapshot(r: Row): SnapshotCredential {
  return credentialToEntity(r) as SnapshotCredential;
}

export function tokenToEntity(r: Row): Row {
  return {
    id: r.id,
    created_at: r.createdAt,
    credential: { id: r.credentialId },
    service: r.serviceId ? { id: r.serviceId } : null,
    token_type: r.tokenType,
    expires_in: r.expiresIn,
    // Only the SHA-256 is stored: the plaintext is shown by the write that set it, never again.
    access_token: null,
    refresh_token: null,
    authenticated_userid: r.authenticatedUserid,
    scope: r.scope,
  };
}

/** A Postgres token row → the record the data planes read from the store. */
export function rowToRecord(r: Row, clientId: string): TokenRecord {
  return {
    id: r.id,
    credential_id: r.credentialId,
    client_id: clientId,
    service_id: r.serviceId ?? null,
    plugin_id: r.pluginId ?? null,
    expires_in: r.expiresIn,
    created_at: r.createdAt,
    scope: r.scope ?? null,
    authenticated_userid: r.authenticatedUserid ?? null,
    grant_id: r.grantId,
    access_hash: r.accessTokenHash,
    refresh_hash: r.refreshTokenHash ?? null,
    purge_at: r.purgeAt ?? null,
  };
}

/**
 * Deletes every token and authorization code of a credential: the Postgres rows first (so a
 * crash in between leaves only Redis records, which the data planes refuse anyway), then their
 * Redis keys, and tells the data planes to evict them from their caches.
 */
export async function dropCredentialTokens(db: Database, tokens: TokenStore, credentialId: string): Promise<number> {
  const p = db.prisma;
  const rows: Row[] = await p.oauth2Token.findMany({
    where: { credentialId },
    select: { id: true, accessTokenHash: true, refreshTokenHash: true, grantId: true },
  });
  const codes: Row[] = await p.oauth2AuthorizationCode.findMany({ where: { credentialId }, select: { codeHash: true } });
  const CHUNK = 500;
  // By what was read, not by credential: rows written meanwhile are under the new client_id.
  for (let i = 0; i < rows.length; i += CHUNK) await p.oauth2Token.deleteMany({ where: { id: { in: rows.slice(i, i + CHUNK).map((r) => r.id) } } });
  for (let i = 0; i < codes.length; i += CHUNK) {
    await p.oauth2AuthorizationCode.deleteMany({ where: { codeHash: { in: codes.slice(i, i + CHUNK).map((c) => c.codeHash) } } });
  }
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = rows.slice(i, i + CHUNK);
    const keys = chunk.flatMap((r) => [KEYS.access(r.accessTokenHash), ...(r.refreshTokenHash ? [KEYS.refresh(r.refreshTokenHash)] : [])]);
    await tokens.store.del(...keys);
    for (const r of chunk) {
      await tokens.store.srem(KEYS.grant(r.grantId), `a:${r.accessTokenHash}`, ...(r.refreshTokenHash ? [`r:${r.refreshTokenHash}`] : []));
    }
    await tokens.publish({ a: chunk.map((r) => r.accessTokenHash) });
  }
  for (let i = 0; i < codes.length; i += CHUNK) await tokens.store.del(...codes.slice(i, i + CHUNK).map((c) => KEYS.code(c.codeHash)));
  return rows.length;
}

export function createEntities(db: Database, tokens: TokenStore): EntityDefinition[] {
  const credentials = {
    name: 'oauth2_credentials',
    path: 'oauth2',
    model: 'oauth2Credential',
    endpointKey: 'client_id',
    schema: credentialSchema as unknown as z.ZodType<Row>,
    foreignKeys: [{ field: 'consumer', entity: 'consumers', column: 'consumerId', required: true, nested: true, onDelete: 'cascade' as const }],
    uniqueFields: ['client_id'],
    hasUpdatedAt: false,
    isConfig: true,

    check(input: Row, existing: Row | null, context?: WriteContextLike): FieldErrors | null {
      if (!existing) return null;
      let secretSet: boolean;
      let hashSet: boolean;
      if (context && context.op === 'update') {
        secretSet = 'client_secret' in context.body;
        hashSet = 'hash_secret' in context.body;
      } else if (context) {
        return null;
      } else {
        secretSet = input.client_secret !== existing.clientSecret;
        hashSet = input.hash_secret !== existing.hashSecret;
      }
      if (secretSet !== hashSet) return { '@entity': ["all or none of these fields must be set: 'hash_secret', 'client_secret'"] };
      return null;
    },

    async toRow(input: Row, existing: Row | null, context?: WriteContextLike): Promise<Row> {
      let clientSecret: string;
      let keepSecret = false;
      if (existing) {
        keepSecret = context
          ? context.op === 'update' && !('client_secret' in context.body) && !('hash_secret' in context.body)
          : input.client_secret === existing.clientSecret && input.hash_secret === existing.hashSecret;
      }
      if (keepSecret && existing) {
        clientSecret = existing.clientSecret;
      } else if (typeof input.client_secret === 'string' && isHashedSecret(input.client_secret)) {
        // Already a hash (e.g. imported from Kong with hash_secret): stored as given.
        clientSecret = input.client_secret;
      } else {
        const plain = typeof input.client_secret === 'string' ? input.client_secret : randomAlnum(32);
        clientSecret = await hashSecret(plain, input.hash_secret === true);
        input[PLAINTEXT as any] = plain;
      }
      return {
        consumerId: input.consumerId,
        name: input.name,
        clientId: input.client_id ?? randomAlnum(32),
        clientSecret,
        hashSecret: input.hash_secret,
        redirectUris: input.redirect_uris ?? [],
        clientType: input.client_type,
        tags: input.tags ?? [],
      };
    },

    toEntity: credentialToEntity,

    toWriteResponse(row: Row, input: Row): Row {
      const entity = credentialToEntity(row);
      const plain = input[PLAINTEXT as any];
      if (typeof plain === 'string') entity.client_secret = plain;
      return entity;
    },

    async afterCommit(op: 'create' | 'update' | 'delete', before: Row | null, after: Row | null) {
      // Deleting a credential revokes its tokens on every data plane at once, before the next
      // snapshot arrives.
      if (op === 'delete' && before) await tokens.publish({ c: [before.id] });
      // A changed client_id ends the tokens and codes issued under the old one. The data planes
      // refuse them as soon as the snapshot arrives (records carry the client_id they were
      // issued to); deleting them here also keeps a restore from Postgres, which can only
      // rebuild records with the credential's current client_id, from bringing them back.
      if (op === 'update' && before && after && before.clientId !== after.clientId) await dropCredentialTokens(db, tokens, before.id);
    },
  };

  const tokenEntity = {
    name: 'oauth2_tokens',
    path: 'oauth2_tokens',
    model: 'oauth2Token',
    endpointKey: 'access_token',
    whereEndpointKey: (value: string) => ({ accessTokenHash: sha256Hex(value) }),
    schema: tokenSchema as unknown as z.ZodType<Row>,
    foreignKeys: [
      { field: 'credential', entity: 'oauth2_credentials', column: 'credentialId', required: true, onDelete: 'cascade' as const },
      { field: 'service', entity: 'services', column: 'serviceId', required: false, onDelete: 'cascade' as const },
    ],
    hasUpdatedAt: false,
    isConfig: false,

    uniqueChecks(row: Row, input: Row) {
      const checks: { where: Row; fields: Row }[] = [];
      if (typeof input.access_token === 'string') checks.push({ where: { accessTokenHash: row.accessTokenHash }, fields: { access_token: input.access_token } });
      if (typeof input.refresh_token === 'string') checks.push({ where: { refreshTokenHash: row.refreshTokenHash }, fields: { refresh_token: input.refresh_token } });
      return checks;
    },

    toRow(input: Row, existing: Row | null, context?: WriteContextLike): Row {
      const isPatch = context ? context.op === 'update' : false;
      const plain: { access?: string; refresh?: string } = {};
      let accessTokenHash: string;
      if (typeof input.access_token === 'string') {
        accessTokenHash = sha256Hex(input.access_token);
        plain.access = input.access_token;
      } else if (existing && (isPatch || (!context && input.access_token === null))) {
        accessTokenHash = existing.accessTokenHash;
      } else {
        plain.access = randomAlnum(32);
        accessTokenHash = sha256Hex(plain.access);
      }
      let refreshTokenHash: string | null = null;
      if (typeof input.refresh_token === 'string') {
        refreshTokenHash = sha256Hex(input.refresh_token);
        plain.refresh = input.refresh_token;
      } else if (existing && (isPatch ? !(context!.body && 'refresh_token' in context!.body) : !context)) {
        refreshTokenHash = existing.refreshTokenHash;
      }
      input[PLAINTEXT as any] = plain;
      return {
        id: existing?.id ?? newId(),
        credentialId: input.credentialId,
        serviceId: input.serviceId ?? null,
        pluginId: existing?.pluginId ?? null,
        tokenType: 'bearer',
        expiresIn: input.expires_in,
        accessTokenHash,
        refreshTokenHash,
        authenticatedUserid: input.authenticated_userid ?? null,
        scope: input.scope ?? null,
        grantId: existing?.grantId ?? newId(),
        purgeAt: typeof input.ttl === 'number' && input.ttl > 0 ? Math.floor(Date.now() / 1000) + input.ttl : (existing?.purgeAt ?? null),
      };
    },

    toEntity: tokenToEntity,

    toWriteResponse(row: Row, input: Row): Row {
      const entity = tokenToEntity(row);
      const plain = (input[PLAINTEXT as any] ?? {}) as { access?: string; refresh?: string };
      entity.access_token = plain.access ?? null;
      entity.refresh_token = plain.refresh ?? null;
      return entity;
    },

    async afterCommit(op: 'create' | 'update' | 'delete', before: Row | null, after: Row | null) {
      if (before) {
        const gone = !after || before.accessTokenHash !== after.accessTokenHash || before.refreshTokenHash !== after.refreshTokenHash;
        if (gone) {
          const keys = [KEYS.access(before.accessTokenHash)];
          if (before.refreshTokenHash && before.refreshTokenHash !== after?.refreshTokenHash) keys.push(KEYS.refresh(before.refreshTokenHash));
          await tokens.store.del(...keys);
          await tokens.store.srem(KEYS.grant(before.grantId), `a:${before.accessTokenHash}`, ...(before.refreshTokenHash ? [`r:${before.refreshTokenHash}`] : []));
          await tokens.publish({ a: [before.accessTokenHash] });
        }
      }
      if (after) {
        const credential = await db.prisma.oauth2Credential.findUnique({ where: { id: after.credentialId } });
        if (credential) {
          await tokens.put(rowToRecord(after, credential.clientId), true);
          // Other fields (scope, expiry) may have changed under the same hash: evict everywhere.
          if (op === 'update') await tokens.publish({ a: [after.accessTokenHash] });
        }
      }
    },
  };

  return [credentials as EntityDefinition, tokenEntity as EntityDefinition];
}

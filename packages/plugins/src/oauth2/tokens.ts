// The oauth2 plugin's live state in the shared store (Redis, or the in-process store in the
// all-in-one mode). Tokens, refresh tokens and codes are keyed by the SHA-256 of their value and
// never stored in plaintext. Every change is appended to a stream that the control plane
// persists to Postgres, and every revocation is published so that each data plane evicts its
// in-process cache at once.
//
// Keys (logical; the store adds its prefix):
//   oauth2:at:<sha256>        access token → TokenRecord            (TTL: expires_in, none if 0)
//   oauth2:rt:<sha256>        refresh token → TokenRecord            (TTL: refresh_token_ttl)
//   oauth2:code:<sha256>      authorization code → CodeRecord        (TTL: 300 s, as Kong)
//   oauth2:usedcode:<sha256>  grant id of a redeemed code            (TTL: code lifetime + margin)
//   oauth2:usedrt:<sha256>    grant id of a rotated refresh token    (TTL: refresh_token_ttl)
//   oauth2:grant:<grant id>   set of "a:<hash>" / "r:<hash>" of the grant's live tokens
//   oauth2:revokedgrant:<id>  marker: the grant was revoked (reuse detected)
//   oauth2:sentinel           present while Redis holds the restored state
//   stream  oauth2:events     issue / update / delete / grant revoke / code / code used
//   channel oauth2:revocations  {"a":[access hashes]}, {"c":[credential ids]} or {"u":[consumer ids]}
import { LRUCache } from 'lru-cache';
import { newId, randomAlnum, sha256Hex } from '@gatehouse/core/crypto.ts';
import type { Logger } from '@gatehouse/core/logger.ts';
import type { SharedStore } from '@gatehouse/core/store/types.ts';
import { settleWithin } from '@gatehouse/core/wait.ts';

export const KEYS = {
  access: (h: string) => `oauth2:at:${h}`,
  refresh: (h: string) => `oauth2:rt:${h}`,
  code: (h: string) => `oauth2:code:${h}`,
  usedCode: (h: string) => `oauth2:usedcode:${h}`,
  usedRefresh: (h: string) => `oauth2:usedrt:${h}`,
  grant: (id: string) => `oauth2:grant:${id}`,
  revokedGrant: (id: string) => `oauth2:revokedgrant:${id}`,
  sentinel: 'oauth2:sentinel',
  stream: 'oauth2:events',
  channel: 'oauth2:revocations',
} as const;

/** Kong hard-codes 300 s for authorization codes. */
export const CODE_TTL_S = 300;
/** Used-code markers outlive the code so a replay within the window is recognised. */
export const USED_CODE_TTL_S = CODE_TTL_S + 600;
/** How long close() waits for the revocation unsubscribe (a reconnecting subscriber queues it). */
const UNSUBSCRIBE_WAIT_MS = 1000;
/** Bound for markers whose natural lifetime is "forever" (refresh_token_ttl = 0). */
const MAX_MARKER_TTL_S = 30 * 86400;

/**
 * A token, refresh token or code was not found while the store is being restored (no sentinel:
 * Redis restarted empty, was flushed or failed over, and the control plane has not written the
 * live tokens back yet). Not found then proves nothing: the client must retry, not give up.
 */
export class TokenStoreRestoringError extends Error {
  override name = 'TokenStoreRestoringError';
  constructor() {
    super('the token store is being restored');
  }
}

export interface TokenRecord {
  /** Row id in oauth2_tokens. */
  id: string;
  credential_id: string;
  client_id: string;
  service_id: string | null;
  plugin_id: string | null;
  /** 0: never expires. */
  expires_in: number;
  /** Seconds since the epoch. */
  created_at: number;
  scope: string | null;
  authenticated_userid: string | null;
  grant_id: string;
  access_hash: string;
  refresh_hash: string | null;
  /** When the row may be purged (refresh_token_ttl), seconds; null: never. */
  purge_at: number | null;
}

export interface CodeRecord {
  id: string;
  credential_id: string;
  /** The client_id the code was issued to (absent in codes written by earlier versions and in restored ones). */
  client_id?: string;
  service_id: string | null;
  plugin_id: string | null;
  authenticated_userid: string | null;
  scope: string | null;
  /** The redirect_uri the authorize request named explicitly (null when it relied on the default). */
  redirect_uri: string | null;
  challenge: string | null;
  challenge_method: string | null;
  grant_id: string;
  created_at: number;
  expires_at: number;
  code_hash: string;
}

export type Oauth2Event =
  | { t: 'token'; token: TokenRecord }
  | { t: 'token_update'; id: string; access_hash: string; created_at: number; expires_in: number; purge_at: number | null }
  | { t: 'token_delete'; ids: string[] }
  | { t: 'grant_revoke'; grant_id: string }
  | { t: 'code'; code: CodeRecord }
  | { t: 'code_used'; code_hash: string };

export interface RevocationMessage {
  /** Access-token hashes to evict. */
  a?: string[];
  /** Credential ids deleted (their tokens die with them). */
  c?: string[];
  /** Consumer ids deleted (their credentials and tokens die with them). */
  u?: string[];
}

export interface IssueOptions {
  credentialId: string;
  clientId: string;
  serviceId: string | null;
  pluginId: string | null;
  expiresIn: number;
  refreshTokenTtl: number;
  withRefresh: boolean;
  scope: string | null;
  authenticatedUserid: string | null;
  /** Continue a grant (code, refresh); a new one is started when omitted. */
  grantId?: string;
  /** Track the grant's tokens so a replayed code or refresh token can revoke them. */
  trackGrant: boolean;
}

export interface Issued {
  accessToken: string;
  refreshToken: string | null;
  record: TokenRecord;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

export function purgeAtFor(createdAt: number, expiresIn: number, refreshTokenTtl: number): number | null {
  // Kong: rows get a TTL of refresh_token_ttl, only when token_expiration > 0 and the TTL > 0.
  return expiresIn > 0 && refreshTokenTtl > 0 ? createdAt + refreshTokenTtl : null;
}

/** Remaining lifetime (ms) of the Redis key for an access token; undefined: no expiry. */
export function accessKeyTtlMs(record: Pick<TokenRecord, 'expires_in' | 'created_at' | 'purge_at'>): number | undefined {
  const ends: number[] = [];
  if (record.expires_in > 0) ends.push((record.created_at + record.expires_in + 1) * 1000);
  if (record.purge_at) ends.push(record.purge_at * 1000);
  return ends.length ? Math.max(1, Math.min(...ends) - Date.now()) : undefined;
}

export function refreshKeyTtlMs(record: Pick<TokenRecord, 'purge_at'>): number | undefined {
  return record.purge_at ? Math.max(1, record.purge_at * 1000 - Date.now()) : undefined;
}

export interface TokenStoreOptions {
  logger?: Logger;
  /** In-process cache of validated access tokens (evicted by revocation messages). */
  cacheMax?: number;
  cacheTtlMs?: number;
  /** How long a cached token may still be used while the store is unreachable. */
  staleLimitMs?: number;
}

/** Shared by the data-plane handler (all of it) and the control-plane part (writes, revocations). */
export class TokenStore {
  /** Validated access tokens by hash, with when they were read from the store. */
  private readonly cache: LRUCache<string, { record: TokenRecord; at: number }>;
  private readonly freshMs: number;
  private readonly revokedCredentials = new Map<string, number>();
  private readonly revokedConsumers = new Map<string, number>();
  private unsubscribe: (() => Promise<void>) | null = null;
  private offResubscribe: (() => void) | null = null;
  /** A data plane's store (listen() called): it applies its own revocations at once. */
  private listening = false;
  private closed = false;
  /** Called after each revocation message is applied (tests measure propagation with it). */
  onRevocation: ((message: RevocationMessage) => void) | null = null;

  constructor(
    readonly store: SharedStore,
    private readonly options: TokenStoreOptions = {},
  ) {
    // An entry is trusted for cacheTtlMs (revocations evict it sooner); after that it is
    // re-read from the store, and kept up to staleLimitMs only as a fallback while the store
    // cannot be reached (no revocation can be recorded then either).
    this.freshMs = options.cacheTtlMs ?? 10_000;
    this.cache = new LRUCache({ max: options.cacheMax ?? 50_000, ttl: Math.max(this.freshMs, options.staleLimitMs ?? 300_000) });
  }

  /**
   * Data planes: listen for revocations; distrust the whole cache when messages may have been
   * lost (every entry is read from the store again before it is used). Returns at once, the
   * subscription completing whenever Redis answers: a data plane restarted while Redis is down
   * must serve its disk cache meanwhile, not wait here (it holds no token to evict until Redis
   * is back; the cache is dropped once the subscription is in place).
   */
  listen(): void {
    this.listening = true;
    // Not cleared: Redis may have come back empty, and then a token missing from it is kept
    // until the store is restored (lookupAccess).
    this.offResubscribe = this.store.onResubscribe(() => {
      for (const entry of this.cache.values()) entry.at = 0;
    });
    this.store
      .subscribe(KEYS.channel, (raw) => {
        let message: RevocationMessage;
        try {
          message = JSON.parse(raw);
        } catch {
          return;
        }
        this.applyRevocation(message);
      })
      .then(
        (unsubscribe) => {
          if (this.closed) return void unsubscribe().catch(() => {});
          this.unsubscribe = unsubscribe;
          // Tokens read before now may have been revoked without our hearing it.
          this.cache.clear();
        },
        (err) => this.options.logger?.warn('oauth2: cannot subscribe to revocations', { error: String(err) }),
      );
  }

  private applyRevocation(message: RevocationMessage) {
    for (const h of message.a ?? []) this.cache.delete(h);
    if (message.c?.length) {
      const at = Date.now();
      for (const c of message.c) this.revokedCredentials.set(c, at);
      for (const [h, entry] of this.cache.entries()) if (message.c.includes(entry.record.credential_id)) this.cache.delete(h);
    }
    if (message.u?.length) {
      const at = Date.now();
      for (const u of message.u) this.revokedConsumers.set(u, at);
    }
    this.onRevocation?.(message);
  }

  /** Credentials deleted on the control plane, until a snapshot without them arrives. */
  isCredentialRevoked(id: string): boolean {
    return this.revokedCredentials.has(id);
  }

  isConsumerRevoked(id: string): boolean {
    return this.revokedConsumers.has(id);
  }

  /**
   * After a snapshot: forget revocation marks the snapshot itself now reflects (the entity is
   * gone from it), or old ones a newer snapshot contradicts (the entity was re-created).
   */
  pruneRevoked(credentialPresent: (id: string) => boolean, consumerPresent: (id: string) => boolean, snapshotCreatedMs: number) {
    const prune = (marks: Map<string, number>, present: (id: string) => boolean) => {
      for (const [id, at] of marks) {
        if (!present(id) || (snapshotCreatedMs > at + 1000 && Date.now() - at > 60_000)) marks.delete(id);
      }
    };
    prune(this.revokedCredentials, credentialPresent);
    prune(this.revokedConsumers, consumerPresent);
  }

  clearCache() {
    this.cache.clear();
  }

  /** True while the store lacks the sentinel the control plane sets once it has restored it. */
  async isRestoring(): Promise<boolean> {
    return !(await this.store.exists(KEYS.sentinel));
  }

  /** For a value that was not found: throws TokenStoreRestoringError if that proves nothing yet. */
  async assertRestored(): Promise<void> {
    if (await this.isRestoring()) throw new TokenStoreRestoringError();
  }

  async close() {
    this.closed = true;
    this.offResubscribe?.();
    await settleWithin(this.unsubscribe?.(), UNSUBSCRIBE_WAIT_MS);
  }

  // ------------------------------------------------------------------ events

  async emit(event: Oauth2Event): Promise<void> {
    try {
      await this.store.xadd(KEYS.stream, { e: JSON.stringify(event) });
    } catch (err) {
      // The token is live in Redis already; the control plane will restore or miss only the
      // Postgres copy. Never fail a request for the audit trail.
      this.options.logger?.warn('oauth2: could not append to the event stream', { error: String(err) });
    }
  }

  async publish(message: RevocationMessage): Promise<void> {
    // A data plane applies its own revocations at once; the control plane only publishes.
    if (this.listening) this.applyRevocation(message);
    await this.store.publish(KEYS.channel, JSON.stringify(message));
  }

  // ------------------------------------------------------------------ access tokens

  /**
   * Looks an access token up by its hash: in-process cache, then the store. A cached token the
   * store lacks is kept while the store is being restored (its absence says nothing then).
   */
  async lookupAccess(hash: string): Promise<TokenRecord | null> {
    const hit = this.cache.get(hash);
    if (hit && Date.now() - hit.at < this.freshMs) return hit.record;
    let raw: string | null;
    try {
      raw = await this.store.get(KEYS.access(hash));
    } catch (err) {
      if (hit) return hit.record;
      throw err;
    }
    if (!raw) {
      if (hit) {
        if (await this.isRestoring()) return hit.record;
        this.cache.delete(hash);
      }
      return null;
    }
    const record = JSON.parse(raw) as TokenRecord;
    this.cache.set(hash, { record, at: Date.now() });
    return record;
  }

  async lookupRefresh(hash: string): Promise<TokenRecord | null> {
    const raw = await this.store.get(KEYS.refresh(hash));
    return raw ? (JSON.parse(raw) as TokenRecord) : null;
  }

  /** Writes a token's keys (and grant membership). Used for issuance, admin writes and restore. */
  async put(record: TokenRecord, trackGrant: boolean): Promise<void> {
    const json = JSON.stringify(record);
    const writes: Promise<unknown>[] = [this.store.set(KEYS.access(record.access_hash), json, { ttlMs: accessKeyTtlMs(record) })];
    if (record.refresh_hash) {
      writes.push(this.store.set(KEYS.refresh(record.refresh_hash), json, { ttlMs: refreshKeyTtlMs(record) }));
    }
    if (trackGrant) {
      const members = [`a:${record.access_hash}`];
      if (record.refresh_hash) members.push(`r:${record.refresh_hash}`);
      writes.push(
        this.store.sadd(KEYS.grant(record.grant_id), ...members).then(() => {
          const ttl = refreshKeyTtlMs(record) ?? accessKeyTtlMs(record);
          return ttl ? this.store.pexpire(KEYS.grant(record.grant_id), ttl) : undefined;
        }),
      );
    }
    await Promise.all(writes);
  }

  async issue(o: IssueOptions): Promise<Issued> {
    const accessToken = randomAlnum(32);
    const refreshToken = o.withRefresh && o.expiresIn > 0 ? randomAlnum(32) : null;
    const createdAt = nowSeconds();
    const record: TokenRecord = {
      id: newId(),
      credential_id: o.credentialId,
      client_id: o.clientId,
      service_id: o.serviceId,
      plugin_id: o.pluginId,
      expires_in: o.expiresIn,
      created_at: createdAt,
      scope: o.scope,
      authenticated_userid: o.authenticatedUserid,
      grant_id: o.grantId ?? newId(),
      access_hash: sha256Hex(accessToken),
      refresh_hash: refreshToken ? sha256Hex(refreshToken) : null,
      purge_at: purgeAtFor(createdAt, o.expiresIn, o.refreshTokenTtl),
    };
    await this.put(record, o.trackGrant);
    await this.emit({ t: 'token', token: record });
    if (o.trackGrant && o.grantId && (await this.store.exists(KEYS.revokedGrant(o.grantId)))) {
      // The grant was revoked (replay detected) while this token was being issued: the revoker
      // may not have seen it in the grant set, so this side removes it (either side sees the other).
      await this.revokeGrant(o.grantId);
    }
    return { accessToken, refreshToken, record };
  }

  /** Deletes one token (both its keys) and tells every data plane. */
  async revokeToken(record: TokenRecord, options: { emit: boolean } = { emit: true }): Promise<void> {
    const keys = [KEYS.access(record.access_hash)];
    if (record.refresh_hash) keys.push(KEYS.refresh(record.refresh_hash));
    await this.store.del(...keys);
    const members = [`a:${record.access_hash}`];
    if (record.refresh_hash) members.push(`r:${record.refresh_hash}`);
    await this.store.srem(KEYS.grant(record.grant_id), ...members);
    await this.publish({ a: [record.access_hash] });
    if (options.emit) await this.emit({ t: 'token_delete', ids: [record.id] });
  }

  /** Revokes every live token of a grant (RFC 9700: replayed code or rotated refresh token). */
  async revokeGrant(grantId: string, options: { emit: boolean } = { emit: true }): Promise<number> {
    await this.store.set(KEYS.revokedGrant(grantId), '1', { ttlMs: MAX_MARKER_TTL_S * 1000 });
    const members = await this.store.smembers(KEYS.grant(grantId));
    const access = members.filter((m) => m.startsWith('a:')).map((m) => m.slice(2));
    const refresh = members.filter((m) => m.startsWith('r:')).map((m) => m.slice(2));
    // Only the members seen are removed: a token added meanwhile stays in the set for its issuer,
    // which sees the marker and revokes it (deleting the whole set here would hide it).
    await this.store.del(...access.map(KEYS.access), ...refresh.map(KEYS.refresh));
    if (members.length) await this.store.srem(KEYS.grant(grantId), ...members);
    if (access.length) await this.publish({ a: access });
    if (options.emit) await this.emit({ t: 'grant_revoke', grant_id: grantId });
    return access.length;
  }

  // ------------------------------------------------------------------ refresh tokens

  /**
   * Claims a refresh token for rotation: exactly one caller wins (SET NX on the used marker,
   * written before the token key disappears, so a replay always finds one or the other).
   */
  async claimRefresh(record: TokenRecord, refreshTtl: number): Promise<boolean> {
    const ttl = refreshTtl > 0 ? Math.min(refreshTtl, MAX_MARKER_TTL_S) : MAX_MARKER_TTL_S;
    const won = await this.store.set(KEYS.usedRefresh(record.refresh_hash!), record.grant_id, { nx: true, ttlMs: ttl * 1000 });
    if (won) await this.store.del(KEYS.refresh(record.refresh_hash!));
    return won;
  }

  async usedRefreshGrant(hash: string): Promise<string | null> {
    return this.store.get(KEYS.usedRefresh(hash));
  }

  /** reuse_refresh_token: the same row gets a new access token and a fresh lifetime. */
  async renewAccess(old: TokenRecord, expiresIn: number, refreshTokenTtl: number): Promise<Issued> {
    const accessToken = randomAlnum(32);
    const createdAt = nowSeconds();
    const record: TokenRecord = {
      ...old,
      access_hash: sha256Hex(accessToken),
      created_at: createdAt,
      expires_in: expiresIn,
      purge_at: purgeAtFor(createdAt, expiresIn, refreshTokenTtl),
    };
    await this.store.del(KEYS.access(old.access_hash));
    await this.store.srem(KEYS.grant(old.grant_id), `a:${old.access_hash}`);
    await this.put(record, true);
    await this.publish({ a: [old.access_hash] });
    await this.emit({
      t: 'token_update',
      id: record.id,
      access_hash: record.access_hash,
      created_at: createdAt,
      expires_in: expiresIn,
      purge_at: record.purge_at,
    });
    return { accessToken, refreshToken: null, record };
  }

  // ------------------------------------------------------------------ codes

  async putCode(record: CodeRecord): Promise<void> {
    await this.store.set(KEYS.code(record.code_hash), JSON.stringify(record), {
      ttlMs: Math.max(1, record.expires_at * 1000 - Date.now()),
    });
  }

  async createCode(fields: Omit<CodeRecord, 'id' | 'grant_id' | 'created_at' | 'expires_at' | 'code_hash'>): Promise<string> {
    const code = randomAlnum(32);
    const createdAt = nowSeconds();
    const record: CodeRecord = {
      ...fields,
      id: newId(),
      grant_id: newId(),
      created_at: createdAt,
      expires_at: createdAt + CODE_TTL_S,
      code_hash: sha256Hex(code),
    };
    await this.putCode(record);
    await this.emit({ t: 'code', code: record });
    return code;
  }

  async lookupCode(hash: string): Promise<CodeRecord | null> {
    const raw = await this.store.get(KEYS.code(hash));
    if (!raw) return null;
    const record = JSON.parse(raw) as CodeRecord;
    return record.expires_at > nowSeconds() ? record : null;
  }

  /** Single use: exactly one concurrent caller wins; the used marker is written before the code disappears. */
  async claimCode(record: CodeRecord): Promise<boolean> {
    const won = await this.store.set(KEYS.usedCode(record.code_hash), record.grant_id, { nx: true, ttlMs: USED_CODE_TTL_S * 1000 });
    if (won) {
      await this.store.del(KEYS.code(record.code_hash));
      await this.emit({ t: 'code_used', code_hash: record.code_hash });
    }
    return won;
  }

  async usedCodeGrant(hash: string): Promise<string | null> {
    return this.store.get(KEYS.usedCode(hash));
  }
}

// The authorization server's state on one data plane, shared by its endpoints and the resource
// check: the token store (tokens.ts), the client secret verifier (secrets.ts), and the clients
// and consumers of the config snapshot, indexed. Consumers and credentials come from the
// snapshot; tokens and codes from the shared store. No database, no round trip to the control
// plane.
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import type { ConsumerEntity } from '@gatehouse/core/entities.ts';
import type { DataPlaneServices } from '@gatehouse/core/plugin-sdk.ts';
import type { Logger } from '@gatehouse/core/logger.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { SecretVerifier } from './secrets.ts';
import { TokenStore } from './tokens.ts';

/** What the control plane puts in `snapshot.credentials.oauth2_credentials` (secrets hashed). */
export interface SnapshotCredential {
  id: string;
  consumer: { id: string };
  name: string;
  client_id: string;
  /** Hash form only (bcrypt, salted SHA-256 or Kong's PBKDF2). */
  client_secret: string;
  hash_secret: boolean;
  redirect_uris: string[] | null;
  client_type: 'confidential' | 'public';
  tags: string[] | null;
  created_at: number;
}

export class AuthorizationServer {
  readonly logger: Logger;
  readonly tokens: TokenStore;
  readonly secrets = new SecretVerifier();
  /** Replaced as a whole by each snapshot. */
  credentialsById = new Map<string, SnapshotCredential>();
  credentialsByClientId = new Map<string, SnapshotCredential>();
  consumersById = new Map<string, ConsumerEntity>();
  consumersByUsername = new Map<string, ConsumerEntity>();

  constructor(services: DataPlaneServices) {
    this.logger = services.logger;
    this.tokens = new TokenStore(services.store, { logger: services.logger });
    this.tokens.listen();
  }

  /** The snapshot's client with this client_id, unless it or its consumer was deleted meanwhile. */
  findClient(clientId: string | undefined): SnapshotCredential | undefined {
    if (clientId === undefined) return undefined;
    const c = this.credentialsByClientId.get(clientId);
    const tokens = this.tokens;
    return c && !tokens.isCredentialRevoked(c.id) && !tokens.isConsumerRevoked(c.consumer.id) && this.consumersById.has(c.consumer.id) ? c : undefined;
  }

  onSnapshot(snapshot: Snapshot) {
    const creds = (snapshot.credentials?.oauth2_credentials ?? []) as SnapshotCredential[];
    const byId = new Map<string, SnapshotCredential>();
    const byClient = new Map<string, SnapshotCredential>();
    for (const c of creds) {
      byId.set(c.id, c);
      byClient.set(c.client_id, c);
    }
    const cById = new Map<string, ConsumerEntity>();
    const cByName = new Map<string, ConsumerEntity>();
    for (const c of snapshot.consumers ?? []) {
      cById.set(c.id, c);
      if (c.username !== null) cByName.set(c.username, c);
    }
    this.credentialsById = byId;
    this.credentialsByClientId = byClient;
    this.consumersById = cById;
    this.consumersByUsername = cByName;
    const created = snapshot.created_at < 1e12 ? snapshot.created_at * 1000 : snapshot.created_at;
    this.tokens.pruneRevoked((id) => byId.has(id), (id) => cById.has(id), created);
  }

  /**
   * The record of a presented single-use value (an authorization code, a refresh token), looked
   * up by its hash. Not found: while the store is being restored that proves nothing (throws
   * TokenStoreRestoringError); if it was redeemed before, it is a replay and its grant is revoked.
   */
  async lookupSingleUse<T>(
    value: string | undefined,
    lookup: (hash: string) => Promise<T | null>,
    redeemedGrant: (hash: string) => Promise<string | null>,
    replay: string,
  ): Promise<T | null> {
    const hash = value ? sha256Hex(value) : null;
    const record = hash ? await lookup(hash) : null;
    if (record || !hash) return record;
    await this.tokens.assertRestored();
    const grantId = await redeemedGrant(hash);
    if (grantId) {
      const n = await this.tokens.revokeGrant(grantId);
      this.logger.warn(`oauth2: ${replay}; grant revoked`, { grant_id: grantId, tokens_revoked: n });
    }
    return null;
  }
}

// The contract between a plugin's folder and the two planes. A plugin folder
// (packages/plugins/src/<name>/) exports a PluginDefinition from its index.ts:
// - the config schema, which the control plane validates with and the data plane trusts;
// - `dataPlane`: the request handler, loaded lazily so the control plane never imports it;
// - `controlPlane`: its admin entities, background jobs and snapshot contribution, loaded lazily
//   so the data plane never imports express or Prisma.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import type { GatehouseConfig } from './config.ts';
import type { Database } from './db/client.ts';
import type { ConsumerEntity, PluginEntity, RouteEntity, ServiceEntity } from './entities.ts';
import type { FieldErrors } from './kong-errors.ts';
import type { Logger } from './logger.ts';
import type { Snapshot } from './snapshot.ts';
import type { SharedStore } from './store/types.ts';

export interface PluginDefinition<Config = any> {
  name: string;
  version: string;
  /** Kong's PRIORITY: higher runs first. */
  priority: number;
  /** Validates `config` and fills its defaults. Unknown keys must be rejected (z.strictObject). */
  configSchema: z.ZodType<Config>;
  /** Protocols the plugin may be configured for (default Kong's grpc, grpcs, http, https). */
  protocols?: string[];
  /** Plugin-entity rules beyond the config (e.g. "cannot be scoped to a consumer"). */
  checkEntity?(plugin: Pick<PluginEntity, 'consumer' | 'route' | 'service' | 'protocols'>): FieldErrors | null;
  /**
   * Fills values the schema cannot (e.g. a generated provision_key) on create, keeping any
   * already stored on update. Runs on the control plane only.
   */
  completeConfig?(config: Config, previous: Config | null): Config;
  /**
   * The config as the data planes receive it in snapshots, when it differs from what the admin
   * API shows (e.g. a secret replaced by its hash). The result must still pass `configSchema`:
   * data planes validate with it. Runs on the control plane only.
   */
  snapshotConfig?(config: Config): Config;
  dataPlane?: () => Promise<{ default: DataPlaneFactory<Config> }>;
  controlPlane?: () => Promise<{ default: ControlPlaneFactory }>;
}

// ---------------------------------------------------------------- data plane

export interface DataPlaneServices {
  config: GatehouseConfig;
  store: SharedStore;
  logger: Logger;
  nodeId: string;
}

/** One request on its way through the proxy. Built once per request; keep it cheap. */
export interface RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly requestId: string;
  readonly method: string;
  /** Scheme the client used to reach this data plane. */
  readonly scheme: 'http' | 'https';
  /** Client address, after GATEHOUSE_TRUSTED_IPS processing of X-Forwarded-For. */
  readonly clientIp: string;
  /** True when the direct peer is in GATEHOUSE_TRUSTED_IPS (its X-Forwarded-* may be believed). */
  readonly trustedPeer: boolean;
  /** Request path as received, without the query. */
  readonly path: string;
  /** Raw query string without '?', '' when none. */
  readonly rawQuery: string;
  readonly route: RouteEntity;
  readonly service: ServiceEntity | null;
  /** Set by an authentication plugin. */
  consumer: ConsumerEntity | null;
  /** Set by an authentication plugin: which credential authenticated (id, and its public identifier). */
  credential: { id: string; identifier: string } | null;
  /**
   * Headers to set on (string) or remove from (null) the upstream request. A value is text: what
   * is beyond ASCII is sent as UTF-8. A value Node refuses (a newline) fails the plugin (500).
   */
  setUpstreamHeader(name: string, value: string | null): void;
  /** Replaces the query string sent upstream ('' removes it). */
  setUpstreamQuery(rawQuery: string): void;
  /**
   * Buffers the request body (bounded). Once read, the proxy forwards the buffered body, or the
   * one given to setUpstreamBody, with Content-Length fixed up.
   */
  readBody(): Promise<Buffer>;
  setUpstreamBody(body: Buffer): void;
  /** Answers the client directly; the request is not proxied. Objects are sent as JSON. */
  respond(status: number, body: unknown, headers?: Record<string, string>): void;
  readonly responded: boolean;
  readonly log: Logger;
  /** Per-request scratch space shared between plugins (e.g. `authenticated` for logical OR). */
  readonly shared: Record<string, unknown>;
}

export interface PluginHandler<Config = any> {
  /** Called on every snapshot applied (before requests use it): build indexes, precompute. */
  onSnapshot?(snapshot: Snapshot): void;
  /** Before proxying, in priority order. May respond() to short-circuit. */
  access?(ctx: RequestContext, config: Config, plugin: PluginEntity<Config>): void | Promise<void>;
  /** When the upstream's response headers arrive, before they are sent to the client. */
  response?(ctx: RequestContext, config: Config, upstream: IncomingMessage): void;
  /** After the response was sent (logging, metrics). Errors here are logged and ignored. */
  log?(ctx: RequestContext, config: Config): void;
  close?(): Promise<void>;
}

export type DataPlaneFactory<Config = any> = (services: DataPlaneServices) => PluginHandler<Config> | Promise<PluginHandler<Config>>;

// ---------------------------------------------------------------- control plane

export interface ControlPlaneServices {
  config: GatehouseConfig;
  db: Database;
  store: SharedStore;
  logger: Logger;
}

export type Row = Record<string, any>;

/**
 * An admin-managed entity owned by a plugin (credentials, tokens), declared like Kong's
 * daos.lua; the control plane's generic engine mounts it with Kong's verbs, pagination,
 * errors and `{id or endpoint key}` lookup.
 */
export interface EntityDefinition {
  /** Kong entity name, e.g. `oauth2_credentials`. */
  name: string;
  /** Admin collection path, e.g. `oauth2` (→ /oauth2 and /consumers/{c}/oauth2). */
  path: string;
  /** Prisma client delegate, e.g. `oauth2Credential`. */
  model: string;
  /** Field used when the URL segment is not a UUID, e.g. `client_id`. */
  endpointKey?: string;
  /** Maps an endpoint-key segment to a Prisma `where` (e.g. hash a token before lookup). */
  whereEndpointKey?(value: string): Row;
  /**
   * Validates the user-settable fields (foreign keys excluded) and fills defaults; strict, so
   * unknown fields fail. Used for POST and PUT (full input) and PATCH (merged input: the keys
   * of this schema taken from `toEntity(stored row)`, overlaid with the body; `mergeRecords`
   * fields merged key by key). `id`, `created_at` and `updated_at` never reach it: the engine
   * handles them (an `id` on POST is validated and used).
   */
  schema: z.ZodType<Row>;
  /**
   * Foreign keys: `{consumer: {id}}` on the wire, `consumerId` in Prisma. On input the engine
   * accepts `{id}` or `{<endpoint key of the parent>}` (or the parent from a nested URL), checks
   * the parent exists, and hands `check`/`toRow` the validated input with both
   * `input.consumer = {id}` (or null) and `input.consumerId` set.
   */
  foreignKeys: {
    field: string;
    entity: 'services' | 'routes' | 'consumers' | string;
    column: string;
    required: boolean;
    /** Also mount under the parent: /consumers/{c}/oauth2. */
    nested?: boolean;
    /**
     * What deleting the parent does (must agree with the migration's ON DELETE): 'cascade'
     * (default) deletes this entity with it; 'restrict' refuses with Kong's 400 code 4
     * `an existing '<name>' entity references this '<parent>' entity`.
     */
    onDelete?: 'cascade' | 'restrict';
  }[];
  /** Fields with a unique constraint, for Kong's 409 message. */
  uniqueFields?: string[];
  hasUpdatedAt: boolean;
  /** False for data that is not config (tokens): writes do not bump the config version. */
  isConfig: boolean;
  /** Entity-level checks after validation (`@entity` errors), with the stored row on updates. */
  check?(input: Row, existing: Row | null, context?: WriteContext): FieldErrors | null;
  /** Validated input (+ foreign key columns) → Prisma data: generate ids/secrets, hash. */
  toRow(input: Row, existing: Row | null, context?: WriteContext): Promise<Row> | Row;
  /** Prisma row → admin API JSON, every field present (null when unset). */
  toEntity(row: Row): Row;
  /** The entity as config snapshots carry it, when it differs from toEntity (secrets hashed). */
  toSnapshot?(row: Row): Row;
  /**
   * The JSON returned by the write that created or changed the row; may reveal generated
   * plaintext once (e.g. a token). Defaults to toEntity.
   */
  toWriteResponse?(row: Row, input: Row): Row;
  /** After the transaction committed (e.g. push a token to the data planes, revoke). */
  afterCommit?(op: 'create' | 'update' | 'delete', before: Row | null, after: Row | null): Promise<void>;

  // Optional hooks (added for the core entities; plugin entities rarely need them).

  /**
   * Rewrites the request body before anything else (shorthands such as a service's `url`).
   * May throw a KongError (e.g. schemaViolation).
   */
  prepare?(body: Row, existing: Row | null): Row;
  /** A schema chosen from the input (e.g. a plugin's config schema by `name`); default `schema`. */
  schemaFor?(input: Row, existing: Row | null): z.ZodType<Row>;
  /** Nested records merged key by key on PATCH (Kong merges `record` fields, e.g. `config`). */
  mergeRecords?: string[];
  /**
   * Uniqueness rules beyond `uniqueFields` (e.g. one plugin per name/route/service/consumer):
   * a Prisma `where` to look for another row, and the Kong `fields` to report on a 409.
   */
  uniqueChecks?(row: Row, input: Row): { where: Row; fields: Row }[];
  /** Extra collection filters from the query string (e.g. consumers' `?custom_id=`); may throw a KongError. */
  listFilter?(query: URLSearchParams): Row | null;
}

/** What the engine passes to `check` and `toRow` besides the validated input. */
export interface WriteContext {
  /** create: POST, or PUT of a missing entity; replace: PUT of an existing one; update: PATCH. */
  op: 'create' | 'replace' | 'update';
  /** The request body as received (after `prepare`), before merging and defaults. */
  body: Row;
}

export interface ControlPlanePart {
  entities?: EntityDefinition[];
  /** Contributes `snapshot.credentials[name]`; only hashes of secrets. */
  snapshot?(db: Database): Promise<Record<string, unknown[]>>;
  /** Background work (e.g. consuming the data planes' token events); returns a stop function. */
  start?(): Promise<() => Promise<void>>;
  /**
   * Called after every committed admin write of any entity (core ones included), e.g. so the
   * oauth2 part revokes a deleted consumer's tokens on the data planes at once instead of
   * waiting for the next snapshot. Errors are logged and ignored.
   */
  afterEntityCommit?(entity: string, op: 'create' | 'update' | 'delete', before: Row | null, after: Row | null): Promise<void>;
}

export type ControlPlaneFactory = (services: ControlPlaneServices) => ControlPlanePart | Promise<ControlPlanePart>;

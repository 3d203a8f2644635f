// A config snapshot: everything a data plane needs, self-contained, with secrets only as hashes.
import { createHash } from 'node:crypto';
import type { ConsumerEntity, PluginEntity, RouteEntity, ServiceEntity } from './entities.ts';

export interface SnapshotContent {
  services: ServiceEntity[];
  routes: RouteEntity[];
  consumers: ConsumerEntity[];
  plugins: PluginEntity[];
  /**
   * Credentials by entity name (e.g. `oauth2_credentials`), in the shape the owning plugin's
   * control-plane part exports (ControlPlanePart.snapshot); only hashes of secrets.
   */
  credentials: Record<string, unknown[]>;
}

export interface Snapshot extends SnapshotContent {
  version: number;
  /** SHA-256 of the canonical JSON of the content; equal content, equal hash. */
  hash: string;
  created_at: number;
}

/** Announced on the `config:updates` channel and stored at `config:latest`. */
export interface SnapshotPointer {
  version: number;
  hash: string;
}

export const SNAPSHOT_KEYS = {
  latest: 'config:latest',
  versionPrefix: 'config:snapshot:',
  version: (v: number) => `config:snapshot:${v}`,
  /** Set of the versions stored and not yet given an expiry (kept across control-plane restarts). */
  stored: 'config:snapshots',
  channel: 'config:updates',
  dataPlanes: 'clustering:data-planes',
} as const;

export function hashContent(content: SnapshotContent): string {
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}

/**
 * What each data plane writes every few seconds into the hash SNAPSHOT_KEYS.dataPlanes (field =
 * its id); the control plane lists them at GET /clustering/data-planes, as Kong's hybrid mode.
 */
export interface DataPlaneHeartbeat {
  id: string;
  hostname: string;
  ip: string | null;
  /** Gatehouse version of the data plane. */
  version: string;
  config_version: number | null;
  config_hash: string | null;
  /** Seconds since the epoch. */
  last_seen: number;
  workers: number;
}

/** Data planes beat every HEARTBEAT_INTERVAL_MS; the control plane forgets one silent for DATA_PLANE_TTL_S. */
export const HEARTBEAT_INTERVAL_MS = 2000;
export const DATA_PLANE_TTL_S = 1209600;

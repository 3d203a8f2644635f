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
  version: (v: number) => `config:snapshot:${v}`,
  channel: 'config:updates',
  dataPlanes: 'clustering:data-planes',
} as const;

export function hashContent(content: SnapshotContent): string {
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}

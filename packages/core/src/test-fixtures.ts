// Test fixtures shared by every room: Kong-shaped entities with Kong's defaults, and config
// snapshots written to the store exactly as the control plane writes them (the wire contract
// the data planes read).
import { randomUUID } from 'node:crypto';
import type { ConsumerEntity, PluginEntity, RouteEntity, ServiceEntity } from './entities.ts';
import { hashContent, SNAPSHOT_KEYS, type Snapshot, type SnapshotContent } from './snapshot.ts';
import type { SharedStore } from './store/types.ts';

const now = () => Math.floor(Date.now() / 1000);

export function serviceEntity(fields: Partial<ServiceEntity> & { host: string; port: number }): ServiceEntity {
  return {
    id: randomUUID(),
    name: null,
    protocol: 'http',
    path: null,
    retries: 5,
    connect_timeout: 60000,
    write_timeout: 60000,
    read_timeout: 60000,
    tags: null,
    client_certificate: null,
    tls_verify: null,
    tls_verify_depth: null,
    ca_certificates: null,
    enabled: true,
    created_at: now(),
    updated_at: now(),
    ...fields,
  };
}

export function routeEntity(fields: Partial<RouteEntity>, svc?: ServiceEntity | null): RouteEntity {
  return {
    id: randomUUID(),
    name: null,
    protocols: ['http', 'https'],
    methods: null,
    hosts: null,
    paths: null,
    headers: null,
    snis: null,
    sources: null,
    destinations: null,
    https_redirect_status_code: 426,
    regex_priority: 0,
    strip_path: true,
    preserve_host: false,
    request_buffering: true,
    response_buffering: true,
    path_handling: 'v0',
    tags: null,
    service: svc ? { id: svc.id } : null,
    created_at: now(),
    updated_at: now(),
    ...fields,
  };
}

export function consumerEntity(username: string | null, customId: string | null = null): ConsumerEntity {
  return { id: randomUUID(), username, custom_id: customId, tags: null, created_at: now(), updated_at: now() };
}

export function pluginEntity<C = Record<string, unknown>>(
  name: string,
  config: C,
  scope: Partial<Pick<PluginEntity, 'route' | 'service' | 'consumer' | 'protocols' | 'enabled'>> = {},
): PluginEntity<C> {
  return {
    id: randomUUID(),
    name,
    instance_name: null,
    config,
    protocols: ['grpc', 'grpcs', 'http', 'https'],
    enabled: true,
    tags: null,
    service: null,
    route: null,
    consumer: null,
    created_at: now(),
    updated_at: now(),
    ...scope,
  };
}

export function buildSnapshot(version: number, content: Partial<SnapshotContent>): Snapshot {
  const c: SnapshotContent = {
    services: content.services ?? [],
    routes: content.routes ?? [],
    consumers: content.consumers ?? [],
    plugins: content.plugins ?? [],
    credentials: content.credentials ?? {},
  };
  return { version, hash: hashContent(c), created_at: now(), ...c };
}

/** What the control plane does on each config version: store, point, announce. */
export async function publishSnapshot(store: SharedStore, snap: Snapshot, options: { announce?: boolean } = {}): Promise<void> {
  await store.set(SNAPSHOT_KEYS.version(snap.version), JSON.stringify(snap));
  const pointer = JSON.stringify({ version: snap.version, hash: snap.hash });
  await store.set(SNAPSHOT_KEYS.latest, pointer);
  if (options.announce !== false) await store.publish(SNAPSHOT_KEYS.channel, pointer);
}

// Kong admin API entity shapes. The admin API returns these, and config snapshots carry them
// unchanged, so the data plane reads exactly what an operator sees on :8001.

export interface ForeignRef {
  id: string;
}

export interface ServiceEntity {
  id: string;
  name: string | null;
  protocol: string;
  host: string;
  port: number;
  path: string | null;
  retries: number;
  connect_timeout: number;
  write_timeout: number;
  read_timeout: number;
  tags: string[] | null;
  client_certificate: ForeignRef | null;
  tls_verify: boolean | null;
  tls_verify_depth: number | null;
  ca_certificates: string[] | null;
  enabled: boolean;
  created_at: number;
  updated_at: number;
}

export interface RouteEntity {
  id: string;
  name: string | null;
  protocols: string[];
  methods: string[] | null;
  hosts: string[] | null;
  paths: string[] | null;
  headers: Record<string, string[]> | null;
  snis: string[] | null;
  sources: { ip?: string; port?: number }[] | null;
  destinations: { ip?: string; port?: number }[] | null;
  https_redirect_status_code: number;
  regex_priority: number;
  strip_path: boolean;
  preserve_host: boolean;
  request_buffering: boolean;
  response_buffering: boolean;
  path_handling: string;
  tags: string[] | null;
  service: ForeignRef | null;
  created_at: number;
  updated_at: number;
}

export interface ConsumerEntity {
  id: string;
  username: string | null;
  custom_id: string | null;
  tags: string[] | null;
  created_at: number;
  updated_at: number;
}

export interface PluginEntity<Config = Record<string, unknown>> {
  id: string;
  name: string;
  instance_name: string | null;
  config: Config;
  protocols: string[];
  enabled: boolean;
  tags: string[] | null;
  service: ForeignRef | null;
  route: ForeignRef | null;
  consumer: ForeignRef | null;
  created_at: number;
  updated_at: number;
}

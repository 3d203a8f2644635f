// Environment configuration. Variable names are part of the public contract (README).
import { cpus } from 'node:os';
import { resolve } from 'node:path';

export interface ListenAddress {
  host: string;
  port: number;
  ssl: boolean;
}

export interface GatehouseConfig {
  databaseUrl: string | null;
  redisUrl: string | null;
  /** Prefix for every Redis key and channel, so several clusters (or test runs) can share a Redis. */
  redisPrefix: string;
  dataDir: string;
  adminListen: ListenAddress[];
  adminToken: string | null;
  proxyListen: ListenAddress[];
  sslCert: string | null;
  sslCertKey: string | null;
  trustedIps: string[];
  /** nginx's send_timeout (ms): how long a client may read nothing of a response the upstream is waiting to send. */
  sendTimeout: number;
  /** nginx's client_header_timeout (ms): how long a client may take to send a request's head. */
  clientHeaderTimeout: number;
  /** How long a client may take to send a whole request, head and body (ms; 0: no limit). */
  clientRequestTimeout: number;
  workers: number;
  logLevel: string;
  autoMigrate: boolean;
  nodeId: string | null;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses Kong's listen syntax: `addr:port [ssl] [other flags], addr:port ...`; IPv6 as `[::1]:8001`. */
export function parseListen(value: string, variable: string): ListenAddress[] {
  const entries = value.split(',').map((part) => part.trim()).filter(Boolean);
  if (entries.length === 0) throw new ConfigError(`${variable}: no address given`);
  return entries.map((entry) => {
    const [address, ...flags] = entry.split(/\s+/);
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(address);
    if (!match) throw new ConfigError(`${variable}: '${entry}' is not of the form addr:port [ssl]`);
    const port = Number(match[3]);
    if (port > 65535) throw new ConfigError(`${variable}: port ${port} is out of range`);
    for (const flag of flags) {
      // Kong's listen flags: `http2`, `reuseport` and `deferred` only tune the listener and are
      // accepted as no-ops; `proxy_protocol` changes what the peer sends, so pretending would
      // turn every request into a 400.
      if (flag === 'proxy_protocol') {
        throw new ConfigError(`${variable}: 'proxy_protocol' in '${entry}' is not supported by Gatehouse; have the load balancer send X-Forwarded-For and list it in GATEHOUSE_TRUSTED_IPS`);
      }
      if (!['ssl', 'http2', 'reuseport', 'deferred'].includes(flag)) {
        throw new ConfigError(`${variable}: unknown flag '${flag}' in '${entry}'`);
      }
    }
    return { host: match[1] ?? match[2], port, ssl: flags.includes('ssl') };
  });
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function bool(value: string | undefined, fallback: boolean, variable: string): boolean {
  if (value === undefined || value === '') return fallback;
  const v = value.toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(v)) return true;
  if (['0', 'false', 'off', 'no'].includes(v)) return false;
  throw new ConfigError(`${variable}: expected on or off, got '${value}'`);
}

/** winston's levels, and Kong's `log_level` names mapped onto them. */
const LOG_LEVELS: Record<string, string> = {
  error: 'error',
  warn: 'warn',
  info: 'info',
  http: 'http',
  verbose: 'verbose',
  debug: 'debug',
  silly: 'silly',
  notice: 'info',
  crit: 'error',
  alert: 'error',
  emerg: 'error',
};

function logLevel(raw: string | undefined): string {
  if (raw === undefined || raw === '') return 'info';
  const level = LOG_LEVELS[raw.trim().toLowerCase()];
  // An unknown level would make winston drop every line, errors included.
  if (!level) throw new ConfigError(`GATEHOUSE_LOG_LEVEL: expected one of ${Object.keys(LOG_LEVELS).join(', ')}, got '${raw}'`);
  return level;
}

function wholeNumber(env: NodeJS.ProcessEnv, variable: string, fallback: number, min: number, max: number, unit: string): number {
  const raw = env[variable];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${variable}: expected ${unit}a whole number from ${min} to ${max}, got '${raw}'`);
  }
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): GatehouseConfig {
  const workers = wholeNumber(env, 'GATEHOUSE_WORKERS', cpus().length || 1, 1, 256, '');
  const sendTimeout = wholeNumber(env, 'GATEHOUSE_SEND_TIMEOUT', 60_000, 1, 2 ** 31 - 2, 'milliseconds, ');
  const clientHeaderTimeout = wholeNumber(env, 'GATEHOUSE_CLIENT_HEADER_TIMEOUT', 60_000, 1, 2 ** 31 - 2, 'milliseconds, ');
  const clientRequestTimeout = wholeNumber(env, 'GATEHOUSE_CLIENT_REQUEST_TIMEOUT', 300_000, 0, 2 ** 31 - 2, 'milliseconds, ');
  if (clientRequestTimeout !== 0 && clientRequestTimeout < clientHeaderTimeout) {
    throw new ConfigError(`GATEHOUSE_CLIENT_REQUEST_TIMEOUT (${clientRequestTimeout}) must be 0 or at least GATEHOUSE_CLIENT_HEADER_TIMEOUT (${clientHeaderTimeout}): the head is part of the request`);
  }
  return {
    databaseUrl: env.DATABASE_URL || null,
    redisUrl: env.REDIS_URL || null,
    redisPrefix: env.GATEHOUSE_REDIS_PREFIX ?? 'gatehouse:',
    dataDir: resolve(env.GATEHOUSE_DATA_DIR || './data'),
    adminListen: parseListen(env.GATEHOUSE_ADMIN_LISTEN || '127.0.0.1:8001', 'GATEHOUSE_ADMIN_LISTEN'),
    adminToken: env.GATEHOUSE_ADMIN_TOKEN || null,
    proxyListen: parseListen(env.GATEHOUSE_PROXY_LISTEN || '0.0.0.0:8000, 0.0.0.0:8443 ssl', 'GATEHOUSE_PROXY_LISTEN'),
    sslCert: env.GATEHOUSE_SSL_CERT || null,
    sslCertKey: env.GATEHOUSE_SSL_CERT_KEY || null,
    trustedIps: (env.GATEHOUSE_TRUSTED_IPS || '').split(',').map((s) => s.trim()).filter(Boolean),
    sendTimeout,
    clientHeaderTimeout,
    clientRequestTimeout,
    workers,
    logLevel: logLevel(env.GATEHOUSE_LOG_LEVEL),
    autoMigrate: bool(env.GATEHOUSE_AUTO_MIGRATE, true, 'GATEHOUSE_AUTO_MIGRATE'),
    nodeId: env.GATEHOUSE_NODE_ID || null,
  };
}

// TLS material for the listeners marked `ssl`: the operator's certificate (GATEHOUSE_SSL_CERT /
// GATEHOUSE_SSL_CERT_KEY, file paths or inline PEM), or a self-signed one generated once into
// the data directory and reused on every later start (as Kong does under its prefix).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './config.ts';

export interface TlsCredentials {
  cert: string;
  key: string;
  /** 'configured' (GATEHOUSE_SSL_CERT) or the path of the generated file. */
  source: string;
}

/** Key and certificate live in one file so that a concurrent generator can never pair them wrongly. */
export const SELF_SIGNED_FILE = join('tls', 'gatehouse-selfsigned.pem');

function readPem(value: string, variable: string): string {
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read '${value}': ${(err as Error).message}`);
  }
}

function splitPem(pem: string): { cert: string; key: string } | null {
  const key = /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )?PRIVATE KEY-----/.exec(pem)?.[0];
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!key || !certs) return null;
  return { key: `${key}\n`, cert: `${certs.join('\n')}\n` };
}

/** Generates a self-signed certificate for `localhost` (+ the host name, 127.0.0.1, ::1), valid 10 years. */
export async function generateSelfSigned(commonName = 'localhost'): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned');
  const now = new Date();
  const notAfter = new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000);
  const names = [...new Set([commonName, 'localhost', hostname()])];
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 60_000),
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [...names.map((value) => ({ type: 2 as const, value })), { type: 7 as const, ip: '127.0.0.1' }, { type: 7 as const, ip: '::1' }],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/**
 * The configured certificate, or the self-signed one under `<dataDir>/tls/`, generating it the
 * first time (temp file + rename, so readers never see half a file).
 */
export async function loadTlsCredentials(options: {
  sslCert: string | null;
  sslCertKey: string | null;
  dataDir: string;
}): Promise<TlsCredentials> {
  if (options.sslCert || options.sslCertKey) {
    if (!options.sslCert || !options.sslCertKey) {
      throw new ConfigError('GATEHOUSE_SSL_CERT and GATEHOUSE_SSL_CERT_KEY must be set together');
    }
    return {
      cert: readPem(options.sslCert, 'GATEHOUSE_SSL_CERT'),
      key: readPem(options.sslCertKey, 'GATEHOUSE_SSL_CERT_KEY'),
      source: 'configured',
    };
  }
  const file = join(options.dataDir, SELF_SIGNED_FILE);
  if (existsSync(file)) {
    const parsed = splitPem(readFileSync(file, 'utf8'));
    if (parsed) return { ...parsed, source: file };
  }
  const generated = await generateSelfSigned();
  mkdirSync(join(options.dataDir, 'tls'), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, `${generated.key.trim()}\n${generated.cert.trim()}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  // Another process may have renamed its own file over ours meanwhile: use what is on disk.
  const parsed = splitPem(readFileSync(file, 'utf8'));
  if (!parsed) throw new Error(`${file}: generated TLS file is unreadable`);
  return { ...parsed, source: file };
}

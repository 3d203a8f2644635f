// TLS material for the ssl listeners: the operator's certificate (paths or inline PEM, both
// variables or neither) or a self-signed one generated once into the data dir and reused.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../src/config.ts';
import { tempDir } from '../src/testing.ts';
import { generateSelfSigned, loadTlsCredentials, SELF_SIGNED_FILE } from '../src/tls.ts';

describe('TLS credentials', () => {
  const dir = tempDir('gatehouse-tls-');
  after(() => dir.remove());

  test('self-signed: generated once under <data dir>/tls, owner-only, and the same certificate on every later start', async () => {
    const first = await loadTlsCredentials({ sslCert: null, sslCertKey: null, dataDir: dir.path });
    const file = join(dir.path, SELF_SIGNED_FILE);
    assert.equal(first.source, file);
    assert.ok(existsSync(file));
    assert.equal(statSync(file).mode & 0o077, 0, 'no access for group or others');
    const cert = new X509Certificate(first.cert);
    assert.match(cert.subjectAltName ?? '', /DNS:localhost/);
    assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    const again = await loadTlsCredentials({ sslCert: null, sslCertKey: null, dataDir: dir.path });
    assert.equal(again.cert, first.cert);
    assert.equal(again.key, first.key);
  });

  test('configured: file paths or inline PEM', async () => {
    const own = await generateSelfSigned('gw.example.test');
    const certPath = join(dir.path, 'own.crt');
    const keyPath = join(dir.path, 'own.key');
    writeFileSync(certPath, own.cert);
    writeFileSync(keyPath, own.key);
    const fromFiles = await loadTlsCredentials({ sslCert: certPath, sslCertKey: keyPath, dataDir: dir.path });
    assert.deepEqual(fromFiles, { cert: own.cert, key: own.key, source: 'configured' });
    const inline = await loadTlsCredentials({ sslCert: own.cert, sslCertKey: own.key, dataDir: dir.path });
    assert.deepEqual(inline, { cert: own.cert, key: own.key, source: 'configured' });
  });

  test('configured wrongly: a clear error naming the variable', async () => {
    const own = await generateSelfSigned();
    await assert.rejects(loadTlsCredentials({ sslCert: own.cert, sslCertKey: null, dataDir: dir.path }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /GATEHOUSE_SSL_CERT and GATEHOUSE_SSL_CERT_KEY must be set together/);
      return true;
    });
    await assert.rejects(loadTlsCredentials({ sslCert: join(dir.path, 'missing.crt'), sslCertKey: own.key, dataDir: dir.path }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^GATEHOUSE_SSL_CERT: cannot read '.*missing\.crt'/);
      return true;
    });
  });
});

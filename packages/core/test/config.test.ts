// Configuration from the environment: the listen syntax of GATEHOUSE_PROXY_LISTEN / GATEHOUSE_ADMIN_LISTEN (Kong's
// `addr:port [flags]`, comma-separated), log levels, numbers, and the database location shown; errors name the variable.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig, parseListen } from '../src/config.ts';
import { redactUrl } from '../src/db/client.ts';

describe('listen addresses', () => {
  test('IPv4, bracketed IPv6 and host names, with the ssl flag; Kong defaults for the proxy', () => {
    assert.deepEqual(parseListen('0.0.0.0:8000, [::1]:8443 ssl http2,  localhost:80 reuseport deferred', 'V'), [
      { host: '0.0.0.0', port: 8000, ssl: false },
      { host: '::1', port: 8443, ssl: true },
      { host: 'localhost', port: 80, ssl: false },
    ]);
    assert.deepEqual(loadConfig({}).proxyListen, [
      { host: '0.0.0.0', port: 8000, ssl: false },
      { host: '0.0.0.0', port: 8443, ssl: true },
    ]);
  });

  test('bad entries: a ConfigError naming the variable and what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['', /^V: no address given$/],
      [' , ', /^V: no address given$/],
      ['8000', /^V: '8000' is not of the form addr:port \[ssl\]$/],
      ['::1:8000', /^V: '::1:8000' is not of the form addr:port \[ssl\]$/],
      ['127.0.0.1:70000', /^V: port 70000 is out of range$/],
      ['127.0.0.1:8000 tls', /^V: unknown flag 'tls' in '127.0.0.1:8000 tls'$/],
      ['127.0.0.1:8000 proxy_protocol', /^V: 'proxy_protocol' in '127.0.0.1:8000 proxy_protocol' is not supported by Gatehouse; have the load balancer send X-Forwarded-For/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => parseListen(value, 'V'), (err: Error) => err instanceof ConfigError && message.test(err.message), `for '${value}'`);
    }
    assert.throws(() => loadConfig({ GATEHOUSE_PROXY_LISTEN: '127.0.0.1:8000 proxy_protocol' }), /GATEHOUSE_PROXY_LISTEN: 'proxy_protocol'/);
  });
});

describe('GATEHOUSE_LOG_LEVEL', () => {
  test("winston's levels in any case, Kong's names mapped onto them; anything else names the variable (it would silence every log)", () => {
    assert.equal(loadConfig({}).logLevel, 'info');
    assert.equal(loadConfig({ GATEHOUSE_LOG_LEVEL: 'DEBUG' }).logLevel, 'debug');
    assert.equal(loadConfig({ GATEHOUSE_LOG_LEVEL: 'notice' }).logLevel, 'info');
    assert.equal(loadConfig({ GATEHOUSE_LOG_LEVEL: 'crit' }).logLevel, 'error');
    assert.throws(() => loadConfig({ GATEHOUSE_LOG_LEVEL: 'warning' }), /^ConfigError: GATEHOUSE_LOG_LEVEL: expected one of error, warn, info, .* got 'warning'$/);
  });
});

describe('numbers', () => {
  test('GATEHOUSE_WORKERS and GATEHOUSE_SEND_TIMEOUT: defaults, accepted values, and errors naming the variable', () => {
    assert.equal(loadConfig({}).sendTimeout, 60_000);
    assert.equal(loadConfig({ GATEHOUSE_SEND_TIMEOUT: '2500' }).sendTimeout, 2500);
    assert.equal(loadConfig({ GATEHOUSE_WORKERS: '3' }).workers, 3);
    assert.throws(() => loadConfig({ GATEHOUSE_SEND_TIMEOUT: '1.5s' }), /^ConfigError: GATEHOUSE_SEND_TIMEOUT: expected milliseconds, a whole number from 1 to 2147483646, got '1.5s'$/);
    assert.throws(() => loadConfig({ GATEHOUSE_SEND_TIMEOUT: '0' }), /GATEHOUSE_SEND_TIMEOUT: .* got '0'$/);
    assert.throws(() => loadConfig({ GATEHOUSE_WORKERS: '0' }), /^ConfigError: GATEHOUSE_WORKERS: expected a whole number from 1 to 256, got '0'$/);
  });
});

describe('client timeouts', () => {
  test('GATEHOUSE_CLIENT_HEADER_TIMEOUT and GATEHOUSE_CLIENT_REQUEST_TIMEOUT: defaults, 0 for no request limit, and a request limit shorter than the head’s refused', () => {
    assert.equal(loadConfig({}).clientHeaderTimeout, 60_000);
    assert.equal(loadConfig({}).clientRequestTimeout, 300_000);
    assert.equal(loadConfig({ GATEHOUSE_CLIENT_REQUEST_TIMEOUT: '0' }).clientRequestTimeout, 0);
    assert.deepEqual(
      (({ clientHeaderTimeout, clientRequestTimeout }) => ({ clientHeaderTimeout, clientRequestTimeout }))(loadConfig({ GATEHOUSE_CLIENT_HEADER_TIMEOUT: '1000', GATEHOUSE_CLIENT_REQUEST_TIMEOUT: '2000' })),
      { clientHeaderTimeout: 1000, clientRequestTimeout: 2000 },
    );
    assert.throws(() => loadConfig({ GATEHOUSE_CLIENT_HEADER_TIMEOUT: '0' }), /^ConfigError: GATEHOUSE_CLIENT_HEADER_TIMEOUT: expected milliseconds, a whole number from 1 to 2147483646, got '0'$/);
    assert.throws(
      () => loadConfig({ GATEHOUSE_CLIENT_HEADER_TIMEOUT: '5000', GATEHOUSE_CLIENT_REQUEST_TIMEOUT: '1000' }),
      /^ConfigError: GATEHOUSE_CLIENT_REQUEST_TIMEOUT \(1000\) must be 0 or at least GATEHOUSE_CLIENT_HEADER_TIMEOUT \(5000\)/,
    );
  });
});

describe('database location in logs and GET /', () => {
  test('the password is masked, in the user part and as a URL parameter', () => {
    assert.equal(
      redactUrl('postgresql://postgres:pg-Secr3t@127.0.0.1:5432/db?password=qsecret&sslpassword=k&application_name=gh'),
      'postgresql://postgres:***@127.0.0.1:5432/db?password=***&sslpassword=***&application_name=gh',
    );
    assert.equal(redactUrl('not a url'), 'postgres');
  });
});

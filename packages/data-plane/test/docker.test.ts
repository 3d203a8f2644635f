// Docker cannot run here, so the packaging is checked against the code instead: the compose
// file and the Dockerfile may only name CLI commands that `gatehouse --help` lists and
// environment variables that loadConfig reads, with values it accepts; the data plane gets
// Redis and never the database; published ports are the ones the services listen on.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { loadConfig, parseListen } from '@gatehouse/core/config.ts';

const root = join(import.meta.dirname, '../../..');
const compose = parse(readFileSync(join(root, 'docker/compose.yaml'), 'utf8'), { merge: true });
const dockerfile = readFileSync(join(root, 'docker/Dockerfile'), 'utf8');

/** Every variable loadConfig reads, found by giving it an environment that records reads. */
function configVariables(): Set<string> {
  const seen = new Set<string>();
  loadConfig(new Proxy({} as NodeJS.ProcessEnv, { get: (_t, key) => (typeof key === 'string' && seen.add(key), undefined) }));
  return seen;
}

function cliCommands(): Set<string> {
  const res = spawnSync(process.execPath, [join(root, 'bin/gatehouse.js'), '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(res.status, 0, res.stderr);
  const section = res.stdout.split(/^Commands:$/m)[1] ?? '';
  return new Set([...section.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]).filter((c) => c !== 'help'));
}

/** `${NAME:?message}` / `${NAME:-default}` → a placeholder value, as compose would need one set. */
function substitute(value: string): string {
  return value.replace(/\$\{(\w+)(?::[?-][^}]*)?\}/g, (_m, name) => `test-${name.toLowerCase()}`);
}

const gatehouseServices = Object.entries(compose.services as Record<string, any>).filter(([, s]) => s.image === 'gatehouse:local');

describe('docker packaging', () => {
  const variables = configVariables();
  const commands = cliCommands();

  test('the CLI lists the three roles the image runs', () => {
    for (const role of ['control-plane', 'data-plane', 'start']) assert.ok(commands.has(role), `gatehouse ${role} exists`);
  });

  test('compose: one control plane, a scalable data plane, postgres and redis, each with a health check', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['control-plane', 'data-plane', 'postgres', 'redis']);
    for (const [name, svc] of Object.entries(compose.services as Record<string, any>)) {
      assert.ok(Array.isArray(svc.healthcheck?.test) && svc.healthcheck.test.length > 0, `${name} has a health check`);
    }
    // Scaling needs no fixed host port and no container name.
    const dp = compose.services['data-plane'];
    assert.equal(dp.container_name, undefined);
    for (const p of dp.ports) assert.match(String(p), /^\d+$/, 'data-plane publishes container ports only');
  });

  test('compose: gatehouse services run real commands with variables loadConfig reads and accepts', () => {
    assert.equal(gatehouseServices.length, 2);
    for (const [name, svc] of gatehouseServices) {
      assert.equal(svc.command.length, 1);
      assert.ok(commands.has(svc.command[0]), `${name}: '${svc.command[0]}' is a gatehouse command`);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(svc.environment as Record<string, string>)) {
        assert.ok(variables.has(k), `${name}: ${k} is read by loadConfig`);
        env[k] = substitute(String(v));
      }
      const config = loadConfig(env);
      const listens = name === 'data-plane' ? config.proxyListen : config.adminListen;
      for (const p of svc.ports) {
        const containerPort = Number(String(p).split(':').pop());
        assert.ok(listens.some((l) => l.port === containerPort), `${name}: published port ${containerPort} is one it listens on`);
      }
    }
  });

  test('compose: the data plane has Redis and never the database; the control plane has both', () => {
    const dp = compose.services['data-plane'].environment;
    const cp = compose.services['control-plane'].environment;
    assert.ok(dp.REDIS_URL);
    assert.equal(dp.DATABASE_URL, undefined);
    assert.ok(cp.DATABASE_URL && cp.REDIS_URL);
    assert.equal(new URL(cp.REDIS_URL).hostname, 'redis');
    assert.equal(new URL(cp.DATABASE_URL).hostname, 'postgres');
    // The admin API is exposed beyond loopback only with a token (the control plane refuses otherwise).
    assert.ok(parseListen(cp.GATEHOUSE_ADMIN_LISTEN, 'x').some((l) => l.host === '0.0.0.0'));
    assert.match(cp.GATEHOUSE_ADMIN_TOKEN, /\$\{GATEHOUSE_ADMIN_TOKEN:\?/);
  });

  test('Dockerfile: runs bin/gatehouse.js with a real command, copies files that exist, sets only known variables', () => {
    assert.match(dockerfile, /ENTRYPOINT \["node", "bin\/gatehouse\.js"\]/);
    const cmd = /^CMD \["([^"]+)"\]/m.exec(dockerfile)?.[1];
    assert.ok(cmd && commands.has(cmd), `CMD ${cmd} is a gatehouse command`);
    for (const m of dockerfile.matchAll(/^COPY ((?:\S+ )+)\S+$/gm)) {
      for (const src of m[1].trim().split(' ')) assert.ok(existsSync(join(root, src)), `COPY source ${src} exists`);
    }
    const envBlock = /^ENV ([\s\S]+?)\n\n/m.exec(dockerfile)![1];
    for (const m of envBlock.matchAll(/(\w+)=/g)) {
      if (m[1].startsWith('GATEHOUSE_')) assert.ok(variables.has(m[1]), `${m[1]} is read by loadConfig`);
    }
    for (const pkg of ['core', 'plugins', 'control-plane', 'data-plane', 'cli']) {
      assert.ok(dockerfile.includes(`COPY packages/${pkg}/package.json packages/${pkg}/`), `workspace ${pkg} manifest copied before npm ci`);
    }
  });
});

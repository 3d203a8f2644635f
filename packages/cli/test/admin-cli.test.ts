// The admin commands as a user runs them: the real bin/gatehouse.js in a child process against
// a real control plane (its own process, a test database and Redis prefix, an admin token).
// Without a terminal (pipes), and under a pseudo-terminal (util-linux `script`) where a missing
// required field is asked for.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, getFreePort, tempDir, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';

const root = join(import.meta.dirname, '../../..');
const bin = join(root, 'bin/gatehouse.js');
const TOKEN = 'admin-cli-test-token';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let adminUrl = '';
const cleanups: (() => Promise<void> | void)[] = [];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of a CLI run: the test's admin API and token unless `env` says otherwise. */
function cliEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env, GATEHOUSE_ADMIN_URL: adminUrl, GATEHOUSE_ADMIN_TOKEN: TOKEN, ...env };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

function finish(child: ChildProcess, onData?: (text: string) => void): Promise<Result> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => {
      stdout += c;
      onData?.(stdout);
    });
    child.stderr!.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

interface RunOptions {
  stdin?: string;
  env?: Record<string, string | undefined>;
  nodeArgs?: string[];
}

/** `gatehouse <args>` with pipes for stdin and stdout: no terminal. */
function gatehouse(args: string[], options: RunOptions = {}): Promise<Result> {
  const argv = [...(options.nodeArgs ?? []), bin, ...args];
  const child = spawn(process.execPath, argv, { cwd: root, env: cliEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin!.end(options.stdin ?? '');
  return finish(child);
}

/** `gatehouse <args>` that must succeed; its stdout. */
async function ok(args: string[], stdin?: string): Promise<string> {
  const r = await gatehouse(args, { stdin });
  assert.equal(r.code, 0, `gatehouse ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function okJson(args: string[]): Promise<any> {
  return JSON.parse(await ok([...args, '--json']));
}

/** A table's lines as cells (columns are two or more spaces apart). */
function rows(table: string): string[][] {
  return table.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));
}

/** A table's rows as objects keyed by its header. */
function records(table: string): Record<string, string>[] {
  const [header, ...body] = rows(table);
  return body.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
}

async function expectFailure(args: string[], message: RegExp, options: RunOptions = {}) {
  const r = await gatehouse(args, options);
  assert.equal(r.code, 1, `gatehouse ${args.join(' ')} should fail: ${r.stdout}`);
  assert.equal(r.stderr.split('\n').length, 2, `one line on stderr: ${r.stderr}`);
  assert.match(r.stderr, message);
  return r;
}

before(async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const dir = tempDir();
  cleanups.push(() => dir.remove());
  const port = await getFreePort();
  adminUrl = `http://127.0.0.1:${port}`;
  const cp = spawn(process.execPath, [bin, 'control-plane'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: testRedisPrefix(),
      GATEHOUSE_DATA_DIR: dir.path,
      GATEHOUSE_ADMIN_LISTEN: `127.0.0.1:${port}`,
      GATEHOUSE_ADMIN_TOKEN: TOKEN,
      GATEHOUSE_LOG_LEVEL: 'warn',
    },
  });
  let output = '';
  cp.stdout!.on('data', (c) => (output += c));
  cp.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<void>((resolve) => cp.once('exit', () => resolve()));
  cleanups.push(async () => {
    if (cp.exitCode === null && cp.signalCode === null) {
      cp.kill('SIGTERM');
      await exited;
    }
  });
  const deadline = Date.now() + 90_000;
  for (;;) {
    assert.ok(cp.exitCode === null, `the control plane exited: ${output}`);
    assert.ok(Date.now() < deadline, `the control plane did not start: ${output}`);
    const up = await fetch(`${adminUrl}/status`, { headers: { authorization: `Bearer ${TOKEN}` } }).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    await new Promise((r) => setTimeout(r, 200));
  }
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('gatehouse admin commands without a terminal', () => {
  const ids: Record<string, string> = {};

  test('create a service, a route on it, a consumer, an oauth2 plugin and credential', async () => {
    const service = records(await ok(['services', 'create', '-p', 'name=example', '-p', 'url=http://httpbin.test:8080/base']));
    assert.equal(service.length, 1);
    assert.match(service[0].id, UUID);
    assert.deepEqual({ ...service[0], id: '' }, { id: '', name: 'example', protocol: 'http', host: 'httpbin.test', port: '8080', path: '/base' });
    ids.service = service[0].id;

    const route = records(await ok(['routes', 'create', '--service', 'example', '-p', 'name=r1', '-p', 'paths[]=/example', '-p', 'paths[]=/other', '-p', 'methods[]=GET']));
    assert.deepEqual({ ...route[0], id: '' }, { id: '', name: 'r1', paths: '/example,/other', hosts: '-', methods: 'GET', service: ids.service });
    ids.route = route[0].id;

    const consumer = await okJson(['consumers', 'create', '-p', 'username=app', '-p', 'tags[]=cli']);
    assert.equal(consumer.username, 'app');
    assert.deepEqual(consumer.tags, ['cli']);
    ids.consumer = consumer.id;

    // Form notation for nested and array fields; the API converts the strings to the schema's types.
    const plugin = await okJson([
      'plugins', 'create', '--service', 'example', '-p', 'name=oauth2',
      '-p', 'config.enable_client_credentials=true', '-p', 'config.scopes[]=read', '-p', 'config.scopes[]=write',
    ]);
    assert.equal(plugin.name, 'oauth2');
    assert.equal(plugin.config.enable_client_credentials, true);
    assert.deepEqual(plugin.config.scopes, ['read', 'write']);
    assert.deepEqual(plugin.service, { id: ids.service });
    ids.plugin = plugin.id;

    // The secret is shown once, in the create output.
    const credential = records(await ok(['credentials', 'create', '-c', 'app', '-t', 'oauth2', '-p', 'name=app-client', '-p', 'hash_secret=true']));
    assert.equal(credential[0].name, 'app-client');
    assert.equal(credential[0].consumer, ids.consumer);
    assert.match(credential[0].client_secret, /^[A-Za-z0-9]{32}$/);
    ids.credential = credential[0].id;
    ids.clientId = credential[0].client_id;
    const listed = await okJson(['credentials', 'list', '-c', 'app', '-t', 'oauth2']);
    assert.equal(listed.data.length, 1);
    assert.notEqual(listed.data[0].client_secret, credential[0].client_secret, 'stored hashed');
    assert.ok(!/client_secret/.test(await ok(['credentials', 'list', '-c', 'app', '-t', 'oauth2'])), 'no secret column in the list');
  });

  test('list as a table, as JSON and as ids', async () => {
    const table = await ok(['services', 'list']);
    assert.deepEqual(rows(table)[0], ['id', 'name', 'protocol', 'host', 'port', 'path']);
    assert.deepEqual(records(table).map((r) => r.name), ['example']);
    const json = await okJson(['services', 'list']);
    assert.deepEqual(json.data.map((s: any) => s.id), [ids.service]);
    assert.equal(json.next, null);
    assert.equal(await ok(['plugins', 'list', '-q']), `${ids.plugin}\n`);
    assert.equal(await ok(['routes', 'list', '--service', 'example', '-q']), `${ids.route}\n`);
    assert.equal(await ok(['plugins', 'list', '--consumer', 'app', '-q']), '', 'nested: no plugin on the consumer');
  });

  test('info by name or id, update, and the API converting -p values', async () => {
    const byName = await ok(['services', 'info', 'example']);
    assert.match(byName, new RegExp(`^id\\s+${ids.service}$`, 'm'));
    assert.match(byName, /^retries\s+5$/m);
    assert.equal((await okJson(['services', 'info', ids.service])).name, 'example');
    assert.equal(await ok(['consumers', 'info', 'app', '-q']), `${ids.consumer}\n`);
    assert.equal((await okJson(['credentials', 'info', ids.clientId, '-t', 'oauth2'])).id, ids.credential);

    const updated = await okJson(['services', 'update', 'example', '-p', 'retries=3', '-p', 'tags[]=a', '-p', 'tags[]=b']);
    assert.equal(updated.retries, 3);
    assert.deepEqual(updated.tags, ['a', 'b']);
    const route = records(await ok(['routes', 'update', ids.route, '-p', 'paths[]=/changed']));
    assert.equal(route[0].paths, '/changed');
    const patched = JSON.parse(await ok(['consumers', 'update', 'app', '--stdin', '--json'], '{"custom_id": "c-1"}\n'));
    assert.equal(patched.custom_id, 'c-1');
    assert.equal(patched.username, 'app');
  });

  test("an API error is the API's message on one line, exit 1", async () => {
    await expectFailure(['services', 'create', '-p', 'name=example', '-p', 'url=http://x.test'], /^gatehouse: UNIQUE violation detected on '\{name="example"\}'\n$/);
    await expectFailure(['services', 'update', 'example', '-p', 'retries=many'], /^gatehouse: service 'example': schema violation \(retries: .*\)\n$/);
    await expectFailure(['services', 'info', 'nowhere'], /^gatehouse: service 'nowhere': Not found\n$/);
    await expectFailure(['routes', 'create', '--service', 'nowhere', '-p', 'paths[]=/x'], /^gatehouse: Not found\n$/);
    // The token is sent when set; without it the admin API refuses, and the message says why.
    await expectFailure(['services', 'list'], /^gatehouse: Unauthorized \(the admin API wants a token: set GATEHOUSE_ADMIN_TOKEN\)\n$/, {
      env: { GATEHOUSE_ADMIN_TOKEN: undefined },
    });
    await expectFailure(['services', 'list'], /^gatehouse: Unauthorized\n$/, { env: { GATEHOUSE_ADMIN_TOKEN: 'wrong' } });
  });

  test('an unreachable admin API: the message names the URL tried', async () => {
    const closed = `http://127.0.0.1:${await getFreePort()}`;
    const expected = new RegExp(`^gatehouse: cannot reach the admin API at ${closed.replace(/\./g, '\\.')} \\(ECONNREFUSED\\); set --admin-url or GATEHOUSE_ADMIN_URL\\n$`);
    await expectFailure(['services', 'list', '--admin-url', closed], expected);
    await expectFailure(['consumers', 'info', 'app'], expected, { env: { GATEHOUSE_ADMIN_URL: closed } });
    await expectFailure(['services', 'list', '--admin-url', 'localhost:8001'], /must be http:\/\/ or https:\/\//);
  });

  test('without a terminal, a missing required field is a clear error and nothing is sent', async () => {
    await expectFailure(['services', 'create', '-p', 'url=http://x.test'], /^gatehouse: services create: missing name; give -p name=<value> \(there is no terminal to ask on\)\n$/);
    await expectFailure(['services', 'create'], /missing name and one of url, host; give -p name=<value> -p url=<value>/);
    await expectFailure(['routes', 'create', '--service', 'example'], /missing one of paths, hosts, methods; give -p paths\[\]=<value>/);
    await expectFailure(['consumers', 'create', '-p', 'tags[]=x'], /missing one of username, custom_id/);
    await expectFailure(['plugins', 'create'], /missing name/);
    await expectFailure(['credentials', 'create', '-t', 'oauth2', '-c', 'app'], /missing name/);
    await expectFailure(['consumers', 'create', '--stdin'], /^gatehouse: --stdin line 2: missing one of username, custom_id\n$/, {
      stdin: '{"username": "never"}\n{"tags": ["x"]}\n',
    });
    assert.equal(await ok(['consumers', 'list', '-q']), `${ids.consumer}\n`, 'no consumer created by a refused --stdin');
    const usage = await gatehouse(['credentials', 'create', '-t', 'oauth2', '-p', 'name=x']);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /required option '-c, --consumer <username\|id>' not specified/);
  });

  test('--stdin creates one entity per line; list pages with offset/next, -a to the end', async () => {
    const lines = Array.from({ length: 101 }, (_, i) => JSON.stringify({ username: `bulk-${i}`, tags: ['bulk'] })).join('\n');
    const created = (await ok(['consumers', 'create', '--stdin', '-q'], `${lines}\n`)).trim().split('\n');
    assert.equal(created.length, 101);
    for (const id of created) assert.match(id, UUID);

    const first = await gatehouse(['consumers', 'list', '-q']);
    assert.equal(first.code, 0);
    assert.equal(first.stdout.trim().split('\n').length, 100, 'the first page (100)');
    const firstPage = await okJson(['consumers', 'list']);
    assert.ok(firstPage.next && firstPage.offset, 'the API\'s first page, next included');
    const table = await gatehouse(['consumers', 'list']);
    assert.match(table.stderr, /-a lists them all/);
    const all = await okJson(['consumers', 'list', '-a']);
    assert.equal(all.data.length, 102);
    assert.equal(all.next, null);
    assert.equal(new Set(all.data.map((c: any) => c.id)).size, 102);
    assert.equal((await ok(['consumers', 'list', '--all', '-q'])).trim().split('\n').length, 102);

    // A failure in the middle: what was created is printed, the line is named.
    const r = await gatehouse(['consumers', 'create', '--stdin', '-q'], { stdin: '{"username":"mid-1"}\n{"username":"bulk-3"}\n{"username":"mid-2"}\n' });
    assert.equal(r.code, 1);
    assert.equal(r.stdout.trim().split('\n').length, 1);
    assert.equal(r.stderr, `gatehouse: --stdin line 2: UNIQUE violation detected on '{username="bulk-3"}'\n`);
    await ok(['consumers', 'remove', '-q', 'mid-1', ...created]);
  });

  test('an admin command loads no server code, and no prompt library without a terminal', async () => {
    const dir = tempDir();
    try {
      const log = join(dir.path, 'imports.log');
      const nodeArgs = ['--import', join(root, 'e2e/fixtures/record-imports.mjs')];
      const r = await gatehouse(['services', 'list', '-q'], { nodeArgs, env: { GATEHOUSE_TEST_IMPORT_LOG: log } });
      assert.equal(r.code, 0, r.stderr);
      const loaded = readFileSync(log, 'utf8').split('\n');
      assert.ok(loaded.some((u) => u.endsWith('/packages/cli/src/admin/client.ts')), 'the log recorded the admin client');
      const server = /\/node_modules\/(express|pg|pg-pool|@prisma|prisma|@electric-sql|pglite-prisma-adapter|ioredis|winston|@inquirer)\/|\/packages\/(control-plane|data-plane|plugins)\/|\/packages\/core\/src\/(db|store)\//;
      assert.deepEqual(loaded.filter((u) => server.test(u)), []);
    } finally {
      dir.remove();
    }
  });

  test('remove by id or name; removing what is not there fails', async () => {
    assert.equal(await ok(['credentials', 'remove', '-c', 'app', '-t', 'oauth2', ids.clientId]), `removed credential ${ids.clientId}\n`);
    assert.deepEqual((await okJson(['credentials', 'list', '-c', 'app', '-t', 'oauth2'])).data, []);
    await ok(['plugins', 'remove', ids.plugin]);
    await ok(['routes', 'remove', 'r1']);
    await ok(['services', 'remove', 'example']);
    assert.equal(await ok(['consumers', 'remove', '-q', ids.consumer]), '');
    for (const entity of ['services', 'routes', 'consumers', 'plugins']) assert.deepEqual((await okJson([entity, 'list', '-a'])).data, [], entity);
    await expectFailure(['services', 'remove', 'example'], /^gatehouse: service 'example': Not found\n$/);
  });
});

/** `sh -c` quoting. */
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * `gatehouse <args>` on a pseudo-terminal (util-linux `script`), answering each prompt when its
 * question appears. Output comes back with the terminal's escape sequences.
 */
function onTerminal(args: string[], answers: [RegExp, string][]): Promise<Result> {
  const command = [process.execPath, bin, ...args].map(quote).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: root, env: cliEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  let next = 0;
  let seen = 0;
  return finish(child, (stdout) => {
    // Each question is answered once, when it first appears after the previous answer.
    if (next < answers.length && answers[next][0].test(stdout.slice(seen))) {
      seen = stdout.length;
      child.stdin!.write(`${answers[next++][1]}\r`);
    }
  }).finally(() => child.stdin!.end());
}

const hasScript = spawnSync('script', ['--version']).status === 0;

describe('gatehouse admin commands on a terminal', { skip: hasScript ? false : 'util-linux script is not installed' }, () => {
  test('a missing required field is asked for, and the entity created with the answer', async () => {
    const service = await onTerminal(['services', 'create', '--json'], [
      [/Service name:/, 'prompted'],
      [/Upstream URL/, 'http://prompted.test:81'],
    ]);
    assert.equal(service.code, 0, service.stdout + service.stderr);
    const created = await okJson(['services', 'info', 'prompted']);
    assert.equal(created.host, 'prompted.test');
    assert.equal(created.port, 81);
    assert.ok(service.stdout.includes(created.id), 'the created service is printed');

    // A list field: the comma-separated answer becomes its values.
    const route = await onTerminal(['routes', 'create', '--service', 'prompted', '-p', 'name=asked', '-q'], [[/Paths, comma-separated/, '/one, /two']]);
    assert.equal(route.code, 0, route.stdout + route.stderr);
    assert.deepEqual((await okJson(['routes', 'info', 'asked'])).paths, ['/one', '/two']);

    // Given with -p: nothing to ask.
    const consumer = await onTerminal(['consumers', 'create', '-p', 'username=not-asked', '-q'], []);
    assert.equal(consumer.code, 0, consumer.stdout);
    assert.doesNotMatch(consumer.stdout, /Username:/);
    await ok(['routes', 'remove', 'asked']);
    await ok(['services', 'remove', 'prompted']);
    await ok(['consumers', 'remove', 'not-asked']);
  });
});

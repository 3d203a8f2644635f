// A route whose regex backtracks super-linearly (`~/(a+)+$`, stored before the admin API
// refused such regexes) must not let one request stall the proxy: the data plane leaves the
// route out, with a warning, whether the snapshot comes from the store or from its disk cache.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemoryStore } from '@gatehouse/core/store/memory.ts';
import { capturingLogger, tempDir } from '@gatehouse/core/testing.ts';
import { cacheFile, startDataPlane, type DataPlane } from '../src/index.ts';
import { writeFileAtomic } from '../src/sync.ts';
import { dpConfig, publish, req, route, service, snapshot, startUpstream, type Upstream } from './helpers.ts';

let up: Upstream;
const dirs: { remove(): void }[] = [];
const planes: DataPlane[] = [];
before(async () => {
  up = await startUpstream('up');
});
after(async () => {
  for (const dp of planes) await dp.close();
  for (const d of dirs) d.remove();
  await up.close();
});


function legacySnapshot() {
  const svc = service({ host: '127.0.0.1', port: up.port });
  const routes = [
    route({ name: 'nested-quantifier', paths: ['~/(a+)+$'] }, svc),
    route({ name: 'slow-header', paths: ['/h'], headers: { 'x-v': ['~*^(a|a)*$'] } }, svc),
    route({ name: 'users', paths: ['~/users/\\d+$'] }, svc),
    route({ name: 'fallback', paths: ['/'] }, svc),
  ];
  return snapshot(1, { services: [svc], routes });
}

// 30 characters: with the nested quantifier this takes V8 seconds, doubling with each `a`.
const attack = `/${'a'.repeat(28)}!`;

async function assertServesPromptly(dp: DataPlane) {
  const port = dp.addresses[0].port;
  assert.equal((await req(port, '/users/42')).json().upstream, 'up', 'an ordinary regex route still works');
  for (const [path, headers] of [[attack, {}], ['/h', { 'x-v': `${'a'.repeat(28)}!` }]] as const) {
    const started = Date.now();
    const res = await req(port, path, { headers });
    const took = Date.now() - started;
    assert.equal(res.status, 200, `${path}: answered by the fallback route`);
    assert.ok(took < 1000, `${path} took ${took} ms`);
  }
}

function assertWarned(lines: Record<string, any>[]) {
  const warned = lines.filter((l) => l.level === 'warn' && /^route left out of the config/.test(l.message));
  assert.deepEqual(warned.map((l) => [l.route_name, l.regex]).sort(), [
    ['nested-quantifier', '~/(a+)+$'],
    ['slow-header', '~*^(a|a)*$'],
  ]);
  assert.match(warned[0].reason, /backtracking/);
}

test('a snapshot from the store: the stalling routes are left out and every request is answered promptly', async () => {
  const store = new MemoryStore();
  await publish(store, legacySnapshot());
  const { logger, lines } = capturingLogger('data-plane', 'warn');
  const dir = tempDir();
  dirs.push(dir);
  const dp = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path }), store, logger, plugins: new Map() });
  planes.push(dp);
  assert.equal(dp.configVersion?.version, 1);
  await assertServesPromptly(dp);
  assertWarned(lines);
});

test('the disk cache at start: the same', async () => {
  const dir = tempDir();
  dirs.push(dir);
  writeFileAtomic(cacheFile(dir.path), JSON.stringify(legacySnapshot()));
  const { logger, lines } = capturingLogger('data-plane', 'warn');
  const dp = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path }), store: new MemoryStore(), logger, plugins: new Map() });
  planes.push(dp);
  assert.equal(dp.configVersion?.version, 1);
  await assertServesPromptly(dp);
  assertWarned(lines);
});

// Instructions per proxied request, counted by valgrind's callgrind: the bare http-proxy floor
// and a Gatehouse data plane (the real `gatehouse data-plane` command, no plugins), each warmed
// up first, then counted over the same number of requests. Unlike req/s and CPU time, the count
// repeats from run to run whatever else the machine is doing, so it shows what a change to the
// hot path costs even where timings swing. It cannot show costs that are not instructions
// (cache and TLB misses, the kernel). About three minutes; needs valgrind.
//   npm run bench:instructions      BENCH_INSTR_WARMUP (6000) and BENCH_INSTR_REQUESTS (6000)
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { getFreePort, tempDir, testRedisPrefix } from '@gatehouse/core/testing.ts';
import { SNAPSHOT_KEYS } from '@gatehouse/core/snapshot.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { route, service, snapshot } from '../../packages/data-plane/test/helpers.ts';
import { get, publishSnapshot, root, spawnJson, until } from './lib.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const WARMUP = Number(process.env.BENCH_INSTR_WARMUP ?? 6000);
const REQUESTS = Number(process.env.BENCH_INSTR_REQUESTS ?? 6000);
const CONNECTIONS = 8;

if (spawnSync('valgrind', ['--version']).status !== 0 || spawnSync('callgrind_control', ['-h']).error) {
  console.error('bench:instructions needs valgrind (with callgrind_control): apt-get install valgrind');
  process.exit(1);
}

/** `count` GET requests over CONNECTIONS keep-alive connections; resolves with how many got a 200. */
async function send(port: number, count: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  let left = count;
  let ok = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const r = request({ host: '127.0.0.1', port, path: '/bench', agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) ok++;
          resolve();
        });
      });
      r.on('error', () => resolve());
      r.end();
    });
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (left-- > 0) await one();
  }));
  agent.destroy();
  return ok;
}

function control(pid: number, ...args: string[]): void {
  const r = spawnSync('callgrind_control', [...args, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} failed: ${r.stderr}`);
}

/** Runs `node <args>` under callgrind, counting only the measured requests; returns instructions per request. */
async function measure(name: string, args: string[], port: number | null, env: Record<string, string>): Promise<number> {
  const dir = tempDir('gatehouse-callgrind-');
  const child = spawn('valgrind', ['--tool=callgrind', '--smc-check=all', '--instr-atstart=no', `--callgrind-out-file=${join(dir.path, 'cg.out')}`, process.execPath, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  try {
    let target = port;
    await until(`${name} under valgrind`, async () => {
      if (target === null) target = Number(/^\{"port":(\d+)\}/m.exec(output)?.[1] ?? 0) || null;
      return target !== null && (await get(target, '/bench')) === 200;
    }, 300_000).catch((err) => {
      throw new Error(`${(err as Error).message}; its output: ${output.slice(-1500)}`);
    });
    await send(target!, WARMUP);
    control(child.pid!, '-i', 'on');
    const ok = await send(target!, REQUESTS);
    control(child.pid!, '-i', 'off');
    control(child.pid!, '-d');
    if (ok !== REQUESTS) throw new Error(`${name}: ${REQUESTS - ok} of ${REQUESTS} requests failed`);
    let total = 0;
    await until(`${name}'s callgrind dump`, async () => {
      total = 0;
      for (const f of readdirSync(dir.path)) {
        if (!f.startsWith('cg.out.')) continue;
        total += Number(/^totals: (\d+)/m.exec(readFileSync(join(dir.path, f), 'utf8'))?.[1] ?? 0);
      }
      return total > 0;
    });
    return total / REQUESTS;
  } finally {
    child.kill('SIGKILL');
    dir.remove();
  }
}

const prefix = testRedisPrefix();
const store = new RedisStore({ url: REDIS_URL, prefix });
const up = await spawnJson([join(import.meta.dirname, 'upstream.mjs')]);
const data = tempDir('gatehouse-bench-');
try {
  const svc = service({ host: '127.0.0.1', port: up.info.port });
  await publishSnapshot(store, snapshot(1, { services: [svc], routes: [route({ paths: ['/'] }, svc)] }));
  console.log(`instructions per request (callgrind), ${REQUESTS} requests after ${WARMUP} of warm-up, ${CONNECTIONS} keep-alive connections`);
  const floor = await measure('floor', [join(import.meta.dirname, 'bare-proxy.mjs'), JSON.stringify({ target: `http://127.0.0.1:${up.info.port}`, port: 0, workers: 1 })], null, {});
  console.log(`  bare http-proxy + keep-alive agent (floor): ${Math.round(floor)}`);
  const port = await getFreePort();
  const gh = await measure('gatehouse', [join(root, 'bin/gatehouse.js'), 'data-plane'], port, {
    REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: prefix,
    GATEHOUSE_WORKERS: '1',
    GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`,
    GATEHOUSE_DATA_DIR: data.path,
    GATEHOUSE_LOG_LEVEL: 'error',
  });
  console.log(`  gatehouse data plane, no plugins:           ${Math.round(gh)}`);
  console.log(`  gatehouse / floor: ${(gh / floor).toFixed(3)}x`);
} finally {
  await up.stop();
  await store.del(SNAPSHOT_KEYS.latest, SNAPSHOT_KEYS.version(1), SNAPSHOT_KEYS.dataPlanes).catch(() => {});
  await store.close();
  data.remove();
}

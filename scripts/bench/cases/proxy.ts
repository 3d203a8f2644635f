// Proxy throughput on loopback, every server in its own process and the load generator in
// another: the upstream direct, a bare http-proxy reverse proxy with a keep-alive agent (the
// floor), Gatehouse data planes with no plugins (as many processes, same worker count), and
// more data planes that serve 10,000 routes and one in turn (plus the router's own match cost
// at 100 vs 10,000 routes).
import { join } from 'node:path';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { tempDir, testRedisPrefix, getFreePort } from '@gatehouse/core/testing.ts';
import { SNAPSHOT_KEYS } from '@gatehouse/core/snapshot.ts';
import type { RouteEntity } from '@gatehouse/core/entities.ts';
import { Router } from '../../../packages/data-plane/src/router.ts';
import { route, service, snapshot } from '../../../packages/data-plane/test/helpers.ts';
import { cpuMs, gatehouse, get, load, pin, placement, publishSnapshot, round, spawnJson, until, type BenchCase, type BenchResult, type Child, type LoadResult } from '../lib.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

function routerCost(): { small: number; large: number } {
  const make = (n: number) => {
    const routes: RouteEntity[] = [];
    for (let i = 0; i < n; i++) routes.push(route({ paths: [`/svc${i}/api`], hosts: [i % 2 ? `h${i}.example.test` : 'shared.example.test'] }));
    return new Router(routes.map((r) => ({ route: r, payload: null })));
  };
  const requests = (n: number) =>
    Array.from({ length: 1000 }, (_, i) => {
      const k = ((i * 7919) % 100) * (n / 100);
      return { method: 'GET', host: k % 2 ? `h${k}.example.test` : 'shared.example.test', port: 80, path: `/svc${k}/api/x`, headers: {}, https: false, sni: null };
    });
  // Both routers are timed in alternation, round after round, and each keeps its best round:
  // a burst of load from elsewhere on the machine then costs both alike instead of one.
  const cases = [100, 10_000].map((n) => ({ router: make(n), reqs: requests(n), best: Infinity }));
  for (let round = 0; round < 10; round++) {
    for (const c of cases) {
      const t0 = process.hrtime.bigint();
      for (let k = 0; k < 50; k++) for (const r of c.reqs) c.router.match(r);
      c.best = Math.min(c.best, Number(process.hrtime.bigint() - t0) / (50 * c.reqs.length));
    }
  }
  return { small: cases[0].best, large: cases[1].best };
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Median of per-round ratios, and all of them (sorted) for the record. */
function spread(values: number[]): { median: number; text: string } {
  return { median: median(values), text: [...values].sort((a, b) => a - b).map((v) => v.toFixed(2)).join(' ') };
}

export const proxyCase: BenchCase = {
  name: 'proxy',
  async run({ durationMs, concurrency, workers }) {
    const children: Child[] = [];
    const prefix = testRedisPrefix();
    const store = new RedisStore({ url: REDIS_URL, prefix });
    const widePrefix = testRedisPrefix();
    const wideStore = new RedisStore({ url: REDIS_URL, prefix: widePrefix });
    let wideVersion = 1; // the last snapshot version published to wideStore
    // Processes of each proxy (an even number): the same program runs up to 15% faster or slower
    // from one process to the next on this machine, for as long as the process lives (where its
    // memory happens to land), so a verdict on one or two processes of each would be luck.
    const perKind = Math.max(2, 2 * Math.round(Number(process.env.BENCH_PROXY_PROCESSES ?? 4) / 2) || 4);
    const wideCount = perKind / 2;
    const dirs: ReturnType<typeof tempDir>[] = [];
    try {
      // One worker: each proxy gets core 0 to itself while it is measured (see lib's placement).
      const place = workers === 1 ? placement : null;
      const cpus = place?.rest;
      const up = await spawnJson([join(import.meta.dirname, '../upstream.mjs')]);
      children.push(up);
      if (place) pin(up.child.pid!, place.rest);
      const upstreamPort: number = up.info.port;
      const startFloor = async () => {
        const bare = await spawnJson([join(import.meta.dirname, '../bare-proxy.mjs'), JSON.stringify({ target: `http://127.0.0.1:${upstreamPort}`, port: 0, workers })]);
        children.push(bare);
        if (place) pin(bare.child.pid!, place.proxy);
        return { port: bare.info.port as number, pid: bare.child.pid! };
      };

      // Gatehouse data planes (no plugins), fed through Redis as the control plane does: some
      // with a single route, and through another prefix some that get 10,000 routes in the way.
      const svc = service({ host: '127.0.0.1', port: upstreamPort });
      const oneRoute = snapshot(1, { services: [svc], routes: [route({ paths: ['/'] }, svc)] });
      await publishSnapshot(store, oneRoute);
      await publishSnapshot(wideStore, oneRoute);
      const startGatehouse = async (redisPrefix: string) => {
        const dir = tempDir('gatehouse-bench-');
        dirs.push(dir);
        const port = await getFreePort();
        const dp = await gatehouse(
          'data-plane',
          { REDIS_URL, GATEHOUSE_REDIS_PREFIX: redisPrefix, GATEHOUSE_WORKERS: String(workers), GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`, GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_LOG_LEVEL: 'error' },
          /proxy listening on/,
        );
        children.push(dp);
        if (place) pin(dp.child.pid!, place.proxy);
        await until('data plane serving', async () => (await get(port, '/bench')) === 200);
        return { port, pid: dp.child.pid! };
      };
      const floors: Awaited<ReturnType<typeof startFloor>>[] = [];
      const dps: Awaited<ReturnType<typeof startGatehouse>>[] = [];
      const wideDps: Awaited<ReturnType<typeof startGatehouse>>[] = [];
      for (let i = 0; i < perKind; i++) {
        floors.push(await startFloor());
        dps.push(await startGatehouse(prefix));
        if (i < wideCount) wideDps.push(await startGatehouse(widePrefix));
      }

      // 10,000 routes, or the one the request hits alone (same host, path and service). The same
      // processes serve both in turn, so the ratio is not one process's luck against another's.
      const wideHost = { host: 'h7777.example.test' };
      const routes: RouteEntity[] = [];
      for (let i = 0; i < 10_000; i++) {
        routes.push(route({ paths: [`/svc${i}/api`], hosts: [i % 2 ? `h${i}.example.test` : 'shared.example.test'], methods: i % 3 ? ['GET'] : null }, svc));
      }
      routes.push(route({ paths: ['~/items/\\d+$'] }, svc));
      const layouts = { wide: routes, narrow: [routes[7777]] };
      /** Gives the 10,000-route data planes `layout` and waits until each serves it. */
      const switchWide = async (layout: keyof typeof layouts) => {
        await publishSnapshot(wideStore, snapshot(++wideVersion, { services: [svc], routes: layouts[layout] }));
        const other = layout === 'wide' ? 200 : 404;
        for (const wideDp of wideDps) {
          await until(`${layout} snapshot`, async () => (await get(wideDp.port, '/svc7777/api/x', undefined, wideHost)) === 200 && (await get(wideDp.port, '/svc1/api/x', undefined, { host: 'h1.example.test' })) === other, 60_000);
        }
      };
      const t0 = Date.now();
      await switchWide('wide');
      const applyMs = Date.now() - t0;

      const direct = await load({ url: `http://127.0.0.1:${upstreamPort}/bench`, durationMs, concurrency, cpus });
      type Kind = 'floor' | 'gatehouse' | 'wide' | 'narrow';
      const proxies: { kind: Kind; name: string; port: number; pid: number; path: string; headers?: Record<string, string> }[] = [
        ...floors.map((f, i) => ({ kind: 'floor' as const, name: `floor #${i + 1}`, ...f, path: '/bench' })),
        ...dps.map((d, i) => ({ kind: 'gatehouse' as const, name: `gatehouse #${i + 1}`, ...d, path: '/bench' })),
      ];
      const wideProxies = wideDps.map((d, i) => ({ name: `gatehouse #${perKind + i + 1} (10,000 routes or 1)`, ...d, path: '/svc7777/api/x', headers: wideHost }));
      // Warmed up alike before anything is counted: CPU per request is meant as the steady
      // state, not the JIT compiling each program's code during the first seconds.
      for (const p of [...proxies, ...wideProxies]) await load({ url: `http://127.0.0.1:${p.port}${p.path}`, headers: p.headers, durationMs: Math.min(durationMs, 2000), concurrency, cpus });

      // Rounds of one short run per proxy process. This machine's speed drifts (up to 2x within
      // minutes), so each ratio is taken within a round (the mean of one kind's processes over
      // the other's) and the verdict is the median over the rounds; the best run of each kind is
      // shown beside it. A round runs groups of floor, gatehouse, gatehouse, floor: each kind's
      // runs are centred on the same moment, so a drift steady over the round cancels out. Then
      // the 10,000-route processes run with one layout, and again with the other, the order
      // alternating from round to round.
      type Run = LoadResult & { cpuUs: number };
      const rounds = Math.max(1, Number(process.env.BENCH_PROXY_ROUNDS ?? 6) || 1);
      // Indices into proxies: floors from 0, data planes from perKind.
      const groups: number[] = [];
      for (let g = 0; g < perKind / 2; g++) {
        const [f, d] = [2 * g, perKind + 2 * g];
        groups.push(f, d, d + 1, f + 1);
      }
      const roundMs = Math.max(500, Math.round(durationMs / 2));
      const warmupMs = 300;
      const measure = async (p: (typeof proxies)[number] | (typeof wideProxies)[number], label: string): Promise<Run> => {
        const before = cpuMs(p.pid);
        const result = await load({ url: `http://127.0.0.1:${p.port}${p.path}`, headers: p.headers, durationMs: roundMs, warmupMs, concurrency, cpus });
        // The load generator's warm-up is not counted in result.requests: scale by elapsed share.
        const cpuUs = result.requests > 0 ? ((cpuMs(p.pid) - before) * 1000) / (result.requests * ((roundMs + warmupMs) / roundMs)) : Infinity;
        if (process.env.BENCH_VERBOSE) console.log(`   ${label}, ${p.name}: ${Math.round(result.rps)} req/s, ${Math.round(cpuUs)} µs CPU per request`);
        return { ...result, cpuUs };
      };
      const runs: Run[][] = proxies.map(() => []);
      const layoutRuns = { wide: wideProxies.map((): Run[] => []), narrow: wideProxies.map((): Run[] => []) };
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? groups : [...groups].reverse();
        for (const i of order) runs[i][r] = await measure(proxies[i], `round ${r + 1}`);
        // The layout a round starts with is the one the last round ended with (10,000 routes first).
        const layoutOrder = r % 2 === 0 ? (['wide', 'narrow'] as const) : (['narrow', 'wide'] as const);
        for (const [n, layout] of layoutOrder.entries()) {
          if (n === 1) {
            await switchWide(layout);
            // The config it replaced is garbage now: collected here rather than in the next run.
            for (const p of wideProxies) await load({ url: `http://127.0.0.1:${p.port}${p.path}`, headers: p.headers, durationMs: 1000, concurrency, cpus });
          }
          for (const [k, p] of wideProxies.entries()) layoutRuns[layout][k][r] = await measure(p, `round ${r + 1}, ${layout === 'wide' ? '10,000 routes' : '1 route'}`);
        }
      }
      const of = (kind: Kind) => (kind === 'wide' || kind === 'narrow' ? layoutRuns[kind] : runs.filter((_, i) => proxies[i].kind === kind));
      const inRound = (kind: Kind, r: number, f: (run: Run) => number) => mean(of(kind).map((list) => f(list[r])));
      const [floorRuns, ghRuns, wideRuns, narrowRuns] = (['floor', 'gatehouse', 'wide', 'narrow'] as const).map((k) => of(k).flat());
      const best = (list: Run[]) => list.reduce((a, b) => (b.rps > a.rps ? b : a));
      const perRound = (f: (r: number) => number) => spread(Array.from({ length: rounds }, (_, r) => f(r)));
      const rps = (run: Run) => run.rps;
      const cpuUs = (run: Run) => run.cpuUs;
      const throughput = perRound((r) => inRound('gatehouse', r, rps) / inRound('floor', r, rps));
      const efficiency = perRound((r) => inRound('floor', r, cpuUs) / inRound('gatehouse', r, cpuUs));
      const wideRatio = perRound((r) => inRound('wide', r, rps) / inRound('narrow', r, rps));
      const floor = best(floorRuns);
      const gh = best(ghRuns);
      const wide = best(wideRuns);
      const cost = routerCost();

      const fmt = (r: LoadResult) => ({ rps: round(r.rps, 0), p50_ms: round(r.p50, 2), p99_ms: round(r.p99, 2), errors: r.errors, non200: Object.entries(r.statuses).filter(([s]) => s !== '200').length });
      const allOk = (list: Run[]) => list.every((r) => r.errors === 0 && (r.statuses['200'] ?? 0) === r.requests);
      const results: BenchResult[] = [
        { name: `upstream direct (1 process)`, value: round(direct.rps, 0), unit: 'req/s', target: 'reference', pass: direct.errors === 0, detail: fmt(direct) },
        { name: `bare http-proxy + keep-alive agent, ${workers} worker(s) (floor), best of ${perKind} processes × ${rounds} runs`, value: round(floor.rps, 0), unit: 'req/s', target: 'reference', pass: allOk(floorRuns), detail: fmt(floor) },
        { name: `gatehouse data plane, no plugins, ${workers} worker(s), best of ${perKind} processes × ${rounds} runs`, value: round(gh.rps, 0), unit: 'req/s', target: 'reference', pass: allOk(ghRuns), detail: fmt(gh) },
        {
          name: `gatehouse / floor throughput, median of ${rounds} rounds`,
          value: round(throughput.median, 2),
          unit: 'x',
          target: '>= 0.9',
          pass: throughput.median >= 0.9,
          detail: { rounds: throughput.text, best_run_ratio: round(gh.rps / floor.rps, 2), p99_ratio: round(gh.p99 / floor.p99, 2), cpus: place ? `proxies on ${place.proxy}, load generator and upstream on ${place.rest}` : 'shared' },
        },
        // Not a target (the is req/s): shown to tell a slower Gatehouse from a busier machine.
        { name: 'gatehouse / floor efficiency (proxy CPU per request, floor ÷ gatehouse), median', value: round(efficiency.median, 2), unit: 'x', target: 'reference', pass: Number.isFinite(efficiency.median), detail: { rounds: efficiency.text, floor_us_per_req: round(median(floorRuns.map((r) => r.cpuUs)), 0), gatehouse_us_per_req: round(median(ghRuns.map((r) => r.cpuUs)), 0) } },
        { name: `gatehouse with 10,000 routes / with 1 route, the same ${wideDps.length} processes, median of ${rounds} rounds`, value: round(wideRatio.median, 2), unit: 'x', target: '>= 0.9', pass: wideRatio.median >= 0.9 && allOk(wideRuns) && allOk(narrowRuns), detail: { rounds: wideRatio.text, best_run: fmt(wide), snapshot_apply_ms: applyMs } },
        { name: 'router match cost, 10,000 vs 100 routes (in-process)', value: round(cost.large / cost.small, 2), unit: 'x', target: '< 3', pass: cost.large / cost.small < 3, detail: { ns_100: round(cost.small, 0), ns_10000: round(cost.large, 0) } },
      ];
      return results;
    } finally {
      for (const c of children.reverse()) await c.stop();
      for (const s of [store, wideStore]) {
        const versions = Array.from({ length: wideVersion }, (_, i) => SNAPSHOT_KEYS.version(i + 1));
        await s.del(SNAPSHOT_KEYS.latest, ...versions, SNAPSHOT_KEYS.dataPlanes).catch(() => {});
        await s.close();
      }
      for (const d of dirs) d.remove();
    }
  },
};


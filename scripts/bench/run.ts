// `npm run bench`: every registered case in one run on loopback, bounded in time (about four
// minutes in all with the defaults). Not part of `npm test`.
//   BENCH_DURATION_MS (default 4000) per load run, BENCH_CONCURRENCY (32), BENCH_WORKERS (1),
//   BENCH_ONLY=<case name substring> to run some cases only, BENCH_VERBOSE=1 to print every
//   proxy run, BENCH_PROXY_ROUNDS (6) rounds of proxy runs (each a run of every proxy process,
//   half of BENCH_DURATION_MS long), BENCH_PROXY_PROCESSES (4) processes of each proxy compared.
// Add a case: a module under scripts/bench/cases/ (or beside this file) exporting a BenchCase,
// and one entry in `cases` below.
import type { BenchCase, BenchResult } from './lib.ts';
import { proxyCase } from './cases/proxy.ts';
import { propagationCase } from './cases/propagation.ts';
import { runOauth2Bench } from './oauth2.ts';

const cases: BenchCase[] = [
  proxyCase,
  propagationCase,
  { name: 'oauth2', run: ({ durationMs, concurrency }) => runOauth2Bench({ durationMs, concurrency }) },
];

const options = {
  durationMs: Number(process.env.BENCH_DURATION_MS ?? 4000),
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? 32),
  workers: Number(process.env.BENCH_WORKERS ?? 1),
};
const only = process.env.BENCH_ONLY;
const started = Date.now();
console.log(`gatehouse bench: ${options.durationMs} ms per load run, ${options.concurrency} keep-alive connections, ${options.workers} proxy worker(s); load generator in its own process`);
const all: BenchResult[] = [];
let failed = false;
for (const c of cases) {
  if (only && !c.name.includes(only)) continue;
  const t0 = Date.now();
  console.log(`\n== ${c.name}`);
  try {
    const results = await c.run(options);
    for (const r of results) {
      console.log(`${r.pass ? 'PASS' : 'FAIL'}  ${r.name}: ${r.value} ${r.unit} (target ${r.target})`);
      if (r.detail) console.log(`      ${JSON.stringify(r.detail)}`);
    }
    all.push(...results);
  } catch (err) {
    failed = true;
    console.log(`ERROR ${c.name}: ${(err as Error).stack ?? err}`);
  }
  console.log(`   (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
console.log(`\n${all.filter((r) => r.pass).length} passed, ${all.filter((r) => !r.pass).length} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(failed || all.some((r) => !r.pass) ? 1 : 0);

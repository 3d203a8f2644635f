// A small closed-loop HTTP load generator (keep-alive, fixed concurrency), run in its own process
// so it does not share an event loop with the gateway under test. Prints one JSON line.
//   node scripts/bench/load.mjs '{"url":"http://127.0.0.1:8000/x","method":"GET","headers":{},"body":null,"durationMs":5000,"concurrency":32}'
import http from 'node:http';
import https from 'node:https';

const o = JSON.parse(process.argv[2]);
const url = new URL(o.url);
const isHttps = url.protocol === 'https:';
const agent = new (isHttps ? https : http).Agent({ keepAlive: true, maxSockets: o.concurrency, rejectUnauthorized: false });
const send = isHttps ? https.request : http.request;
const body = o.body == null ? null : Buffer.from(o.body);
const headers = { host: url.host, ...(o.headers ?? {}) };
if (body) headers['content-length'] = String(body.length);

const statuses = {};
let done = 0;
let errors = 0;
const latencies = [];
const warmupUntil = Date.now() + (o.warmupMs ?? 1000);
const end = warmupUntil + o.durationMs;
let measuredStart = 0;

function one() {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const r = send({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: o.method ?? 'GET', headers, agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if (Date.now() >= warmupUntil) {
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          done++;
          latencies.push(performance.now() - t0);
        }
        resolve();
      });
    });
    r.on('error', () => {
      errors++;
      resolve();
    });
    r.end(body ?? undefined);
  });
}

async function worker() {
  while (Date.now() < end) {
    if (!measuredStart && Date.now() >= warmupUntil) measuredStart = Date.now();
    await one();
  }
}

await Promise.all(Array.from({ length: o.concurrency }, worker));
const elapsed = (Date.now() - (measuredStart || warmupUntil)) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : 0);
console.log(JSON.stringify({ requests: done, errors, rps: done / elapsed, statuses, p50: pct(0.5), p99: pct(0.99) }));
agent.destroy();

// The floor: a bare http-proxy reverse proxy with one keep-alive agent, nothing else, with the
// same number of node:cluster workers as the data plane it is compared with.
//   node scripts/bench/bare-proxy.mjs '{"target":"http://127.0.0.1:PORT","port":0,"workers":1}'
import cluster from 'node:cluster';
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const o = JSON.parse(process.argv[2]);
if (cluster.isPrimary && o.workers > 1) {
  let printed = false;
  for (let i = 0; i < o.workers; i++) {
    cluster.fork().on('message', (m) => {
      if (!printed) console.log(JSON.stringify(m));
      printed = true;
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' });
  const proxy = httpProxy.createProxyServer({ target: o.target, agent });
  proxy.on('error', (_err, _req, res) => {
    res.writeHead?.(502);
    res.end();
  });
  const server = createServer((req, res) => proxy.web(req, res));
  server.keepAliveTimeout = 60_000;
  server.listen(o.port, '127.0.0.1', () => {
    const msg = { port: server.address().port };
    if (process.send) process.send(msg);
    else console.log(JSON.stringify(msg));
  });
  process.on('SIGTERM', () => process.exit(0));
}

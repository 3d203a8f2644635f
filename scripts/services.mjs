// Makes sure the Postgres and Redis that tests (and CI) use are reachable, starting the local
// ones when they are not. Never fakes a service: if one cannot be started, says what is missing.
import { execSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function reachable(host, port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function waitFor(host, port, seconds) {
  for (let i = 0; i < seconds * 4; i++) {
    if (await reachable(host, port)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

function tryRun(command) {
  try {
    execSync(command, { stdio: 'pipe', timeout: 60_000 });
    return null;
  } catch (err) {
    return String(err.stderr || err.message).trim();
  }
}

export async function ensureServices() {
  const pg = new URL(TEST_DATABASE_URL);
  const redis = new URL(TEST_REDIS_URL);
  const pgHost = pg.hostname || '127.0.0.1';
  const pgPort = Number(pg.port || 5432);
  const redisHost = redis.hostname || '127.0.0.1';
  const redisPort = Number(redis.port || 6379);
  const problems = [];

  if (!(await reachable(pgHost, pgPort))) {
    if (!existsSync('/etc/postgresql')) {
      problems.push(`Postgres is not reachable at ${pgHost}:${pgPort} and no local cluster exists (/etc/postgresql missing): install PostgreSQL or set TEST_DATABASE_URL`);
    } else {
      const version = readdirSync('/etc/postgresql')[0];
      console.error(`test: starting PostgreSQL ${version} (not reachable at ${pgHost}:${pgPort})`);
      const err = tryRun(`pg_ctlcluster --skip-systemctl-redirect ${version} main start`);
      if (!(await waitFor(pgHost, pgPort, 30))) problems.push(`Postgres did not come up at ${pgHost}:${pgPort}${err ? `: ${err}` : ''}`);
    }
  }
  if (!(await reachable(redisHost, redisPort))) {
    console.error(`test: starting redis-server (not reachable at ${redisHost}:${redisPort})`);
    const err = tryRun(`redis-server --daemonize yes --bind 127.0.0.1 --port ${redisPort} --save "" --appendonly no`);
    if (!(await waitFor(redisHost, redisPort, 20))) problems.push(`Redis did not come up at ${redisHost}:${redisPort}${err ? `: ${err}` : ' (is redis-server installed?)'}`);
  }
  if (problems.length) {
    throw new Error(`test services missing:\n- ${problems.join('\n- ')}`);
  }
}

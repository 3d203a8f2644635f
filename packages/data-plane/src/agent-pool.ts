// Keep-alive agents for upstream connections: one per upstream server and read timeout, kept
// across snapshots while in use, with Node's socket pooling tuned for the proxy (a pooled
// socket keeps its read timeout; an upstream's Keep-Alive hint is honoured).
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Attempt } from './retries.ts';

/** The attempt an upstream socket carries now (checked against the socket's current request). */
export const SOCKET_ATTEMPT = Symbol('gatehouse.attempt');
/** The upstream's `Keep-Alive` response header, kept on the socket before the exchange drops it. */
export const KEEP_ALIVE_HINT = Symbol('gatehouse.keepAliveHint');
/** When an idle pooled socket must be closed (the upstream said it would close it then). */
const IDLE_DEADLINE = Symbol('gatehouse.idleDeadline');
const KEEP_ALIVE_TIMEOUT = /^timeout=(\d+)/;

export type PooledSocket = Socket & { [KEEP_ALIVE_HINT]?: string; [IDLE_DEADLINE]?: number; [SOCKET_ATTEMPT]?: Attempt };

/**
 * Node's agent re-arms a socket's timer twice per request: to its idle timeout when the socket
 * returns to the pool, and we set the read timeout back when it is reused. Here a socket's timer
 * stays at its upstream's read_timeout for its whole life (an idle socket is closed by it, as
 * Kong's upstream_keepalive_idle_timeout does), and `closeExpiredIdleSockets` honours an
 * upstream's shorter `Keep-Alive: timeout=N` as Node does (one second early).
 */
function keepSocketAlive(this: HttpAgent & { keepAliveMsecs: number }, socket: PooledSocket): boolean {
  socket.setKeepAlive(true, this.keepAliveMsecs);
  socket.unref();
  // Let the finished request's objects go now, not when the socket is next used.
  socket[SOCKET_ATTEMPT] = undefined;
  socket[IDLE_DEADLINE] = undefined;
  const hint = socket[KEEP_ALIVE_HINT];
  if (hint === undefined) return true;
  const seconds = KEEP_ALIVE_TIMEOUT.exec(hint)?.[1];
  if (seconds === undefined) return true;
  const idleMs = Number(seconds) * 1000 - 1000;
  if (idleMs <= 0) return false;
  socket[IDLE_DEADLINE] = Date.now() + idleMs;
  return true;
}

/** Keep-alive agent for one upstream (its sockets time out after `readTimeout` of silence). */
function createAgent(protocol: 'http' | 'https', tlsVerify: boolean): HttpAgent {
  const options = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' as const };
  const agent = protocol === 'https' ? new HttpsAgent({ ...options, rejectUnauthorized: tlsVerify }) : new HttpAgent(options);
  agent.keepSocketAlive = keepSocketAlive as HttpAgent['keepSocketAlive'];
  return agent;
}

/** Closes pooled sockets idle past the deadline their upstream announced. Run periodically. */
function closeExpiredIdleSockets(agent: HttpAgent, now: number): void {
  const pools = agent.freeSockets as NodeJS.ReadOnlyDict<PooledSocket[]>;
  for (const name in pools) {
    const pool = pools[name];
    if (!pool) continue;
    for (const socket of pool) if ((socket[IDLE_DEADLINE] ?? Infinity) <= now) socket.destroy();
  }
}

/**
 * Keep-alive agents outlive snapshots while their upstream stays the same. One per read
 * timeout too: a pooled socket keeps its upstream's read timeout (see keepSocketAlive).
 */
export class AgentPool {
  private readonly agents = new Map<string, HttpAgent>();
  private readonly sweep = setInterval(() => {
    const now = Date.now();
    for (const agent of this.agents.values()) closeExpiredIdleSockets(agent, now);
  }, 250).unref();

  get(protocol: 'http' | 'https', host: string, port: number, tlsVerify: boolean, readTimeout: number): { key: string; agent: HttpAgent } {
    const key = `${protocol}://${host}:${port}|${tlsVerify ? 'verify' : 'noverify'}|${readTimeout}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = createAgent(protocol, tlsVerify);
      this.agents.set(key, agent);
    }
    return { key, agent };
  }

  /** Drops agents no upstream uses any more, after in-flight requests had time to finish. */
  retain(keys: Set<string>, graceMs: number): void {
    for (const [key, agent] of this.agents) {
      if (keys.has(key)) continue;
      this.agents.delete(key);
      setTimeout(() => agent.destroy(), graceMs).unref();
    }
  }

  destroy(): void {
    clearInterval(this.sweep);
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}

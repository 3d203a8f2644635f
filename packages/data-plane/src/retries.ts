// One attempt at reaching the upstream for a request: its target (the balancer picks it and
// hears what came of it), its connect timer, and whether a failed one is tried again (up to the
// service's `retries`): a connection refused or timed out while connecting, or reset before any
// answer (a stale keep-alive socket), when the request can be sent again whole.
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Target } from './balancer.ts';
import type { ForwardRequest, Upstream, UpstreamFailure } from './forward.ts';

/** Each request's attempt, for http-proxy's events (a WeakMap instead cost far more in GC). */
export const STATE = Symbol('gatehouse.forward');

/** One try at reaching the upstream for a request (a refused connection is tried again, up to `retries`). */
export interface Attempt {
  request: ForwardRequest;
  upstream: Upstream;
  attempt: number;
  /** Where this attempt goes, from the upstream's balancer (null before the first). */
  target: Target | null;
  timedOut: boolean;
  connected: boolean;
  responded: boolean;
  /** The upstream request of the current attempt, once it has a socket. */
  proxyReq: ClientRequest | null;
  /** The upstream's response, once its head arrived. */
  proxyRes: IncomingMessage | null;
  /** The longest a client may take nothing of its response while the upstream waits (ms). */
  sendTimeout: number;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL']);
const DNS_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME']);

/** The client's connection is gone: nothing sent upstream for it would be answered. */
export function clientLeft(request: ForwardRequest): boolean {
  return request.res.destroyed || request.req.socket.destroyed;
}

/**
 * Asks the upstream's balancer for this attempt's target. The Host header follows the target,
 * unless the route preserves the client's.
 */
export function pickTarget(state: Attempt): Target {
  const target = state.upstream.balancer.pick(state.attempt);
  state.target = target;
  if (!state.request.preserveHost) state.request.req.headers.host = target.hostHeader;
  return target;
}

/** The upstream's response head arrived: the attempt reached its target, whatever the status. */
export function answered(state: Attempt, proxyRes: IncomingMessage): void {
  state.responded = true;
  state.proxyRes = proxyRes;
  state.upstream.balancer.report(state.target!, proxyRes.statusCode!);
}

/**
 * What an upstream error means for the request: try again, or which failure to answer with.
 * `replayable`: the request can be sent again whole (no streamed body went out yet). The
 * failure goes to the balancer either way.
 */
export function judge(state: Attempt, err: Error, replayable: boolean): UpstreamFailure | 'retry' {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const dns = DNS_ERRORS.has(code);
  const failure: UpstreamFailure = dns ? 'dns' : state.timedOut ? 'timeout' : !state.connected && CONNECT_ERRORS.has(code) ? 'connect' : 'invalid';
  state.upstream.balancer.report(state.target!, failure);
  if (dns) return failure;
  const connectFailure = !state.connected && (CONNECT_ERRORS.has(code) || state.timedOut);
  // A reused keep-alive socket the upstream closed just as we wrote also counts as a connection failure.
  const staleSocket = state.connected && !state.responded && code === 'ECONNRESET' && !state.timedOut;
  if ((connectFailure || staleSocket) && replayable && state.attempt < state.upstream.retries && !clientLeft(state.request)) return 'retry';
  return failure;
}

/** Gives up on the attempt's upstream request: its `what` (connect, read, write) took too long. */
export function timeOut(state: Attempt, proxyReq: ClientRequest, what: string): void {
  state.timedOut = true;
  proxyReq.destroy(Object.assign(new Error(`upstream ${what} timeout`), { code: 'ETIMEDOUT' }));
}

/** A new upstream socket is connecting: runs `then` once it is, or times the attempt out at connect_timeout. */
export function awaitConnect(state: Attempt, proxyReq: ClientRequest, socket: Socket, then: () => void): void {
  const timer = setTimeout(timeOut, state.upstream.connectTimeout, state, proxyReq, 'connect');
  socket.once(state.upstream.protocol === 'https' ? 'secureConnect' : 'connect', () => {
    clearTimeout(timer);
    then();
  });
  socket.once('close', () => clearTimeout(timer));
}

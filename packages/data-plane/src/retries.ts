// One attempt at reaching the upstream for a request, its connect timer, and whether a failed
// one is tried again (up to the service's `retries`): a connection refused or timed out while
// connecting, or reset before any answer (a stale keep-alive socket), when the request can be
// sent again whole.
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ForwardRequest, Upstream, UpstreamFailure } from './forward.ts';

/** Each request's attempt, for http-proxy's events (a WeakMap instead cost far more in GC). */
export const STATE = Symbol('gatehouse.forward');

/** One try at reaching the upstream for a request (a refused connection is tried again, up to `retries`). */
export interface Attempt {
  request: ForwardRequest;
  upstream: Upstream;
  attempt: number;
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
 * What an upstream error means for the request: try again, or which failure to answer with.
 * `replayable`: the request can be sent again whole (no streamed body went out yet).
 */
export function judge(state: Attempt, err: Error, replayable: boolean): UpstreamFailure | 'retry' {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (DNS_ERRORS.has(code)) return 'dns';
  const connectFailure = !state.connected && (CONNECT_ERRORS.has(code) || state.timedOut);
  // A reused keep-alive socket the upstream closed just as we wrote also counts as a connection failure.
  const staleSocket = state.connected && !state.responded && code === 'ECONNRESET' && !state.timedOut;
  if ((connectFailure || staleSocket) && replayable && state.attempt < state.upstream.retries && !clientLeft(state.request)) return 'retry';
  if (state.timedOut) return 'timeout';
  if (connectFailure) return 'connect';
  return 'invalid';
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

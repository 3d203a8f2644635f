// The forwarding engine: http-proxy over a keep-alive agent per target. Sends the prepared
// request (its streamed body held until the upstream socket is connected, so a refused
// connection can be tried again), times out connect, write and read, and hands the answer to
// relay.ts; WebSocket handshakes go to websocket.ts.
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import { KEEP_ALIVE_HINT, SOCKET_ATTEMPT, type PooledSocket } from './agent-pool.ts';
import type { Target } from './balancer.ts';
import type { ForwardingEngine, ForwardRequest, Upstream } from './forward.ts';
import { relay, startResponse } from './relay.ts';
import { answered, awaitConnect, clientLeft, judge, pickTarget, STATE, timeOut, type Attempt } from './retries.ts';
import { forwardHandshake, type HandshakeClient } from './websocket.ts';

interface AttemptState extends Attempt {
  /** Bytes of a streamed client body have been handed to an upstream socket: no retry. */
  bodyStarted: boolean;
  /** The client's body, streamed only once the upstream socket is connected (so a refused connection can be retried). */
  gate: Readable | null;
  /** The client closed its connection before its response was finished: nothing more to do. */
  clientGone: boolean;
}

function hasStreamedBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * `close` listener of a client response (`this`), shared by every one: closed before it was
 * finished (the client left), it drops the upstream request or response and its connection,
 * as nginx does by default. Otherwise the upstream would go on working for nobody, and keep
 * the connection until read_timeout. No retry follows (see onError).
 */
function onClientResponseClose(this: ServerResponse): void {
  if (this.writableFinished) return;
  const state = (this.req as any)?.[STATE] as AttemptState | undefined;
  if (!state) return;
  state.clientGone = true;
  if (state.proxyRes) state.proxyRes.destroy();
  else state.proxyReq?.destroy();
}

const SOCKET_LISTENING = Symbol('gatehouse.readTimeoutListener');

/**
 * `timeout` listener of an upstream socket (`this`), shared by every socket: the request it
 * carries now, if any, timed out reading. An idle socket in the agent's pool carries none (the
 * agent itself closes those when their keep-alive time is up).
 */
function onSocketTimeout(this: PooledSocket): void {
  const req = (this as any)._httpMessage as ClientRequest | null;
  const state = this[SOCKET_ATTEMPT];
  if (!req || !state || state.proxyReq !== req || req.destroyed) return;
  timeOut(state, req, 'read');
}

/**
 * What http-proxy pipes into the upstream request when there is no client body: it ends the
 * request at once. Piping the bodyless client request instead costs a stream pipe per request
 * (seven listeners, then their removal); Node drains the unread client request itself when
 * the response finishes.
 */
const NO_BODY = {
  pipe(upstreamRequest: ClientRequest): ClientRequest {
    upstreamRequest.end();
    return upstreamRequest;
  },
};

/** Stands in for http-proxy's deleteLength pass (see proxyFor): the request's length headers stay as they came. */
function keepLength(): void {}

/** The options of a target's http-proxy server; `buffer` is what the next web() call pipes upstream. */
type ProxyOptions = Omit<httpProxy.ServerOptions, 'buffer'> & { buffer: Readable | typeof NO_BODY };

interface TargetProxy {
  server: httpProxy;
  options: ProxyOptions;
}

export interface HttpProxyEngineOptions {
  /** nginx's send_timeout: how long a client may read nothing of its response (ms). Default 60 s. */
  sendTimeout?: number;
}

export class HttpProxyEngine implements ForwardingEngine {
  private readonly sendTimeout: number;

  constructor(options: HttpProxyEngineOptions = {}) {
    this.sendTimeout = options.sendTimeout ?? 60_000;
  }

  /**
   * One http-proxy server per target, its address and agent fixed: a request then passes no
   * options object, which spares http-proxy a per-request copy of its options.
   */
  private readonly proxies = new WeakMap<Target, TargetProxy>();
  private readonly all = new Set<WeakRef<httpProxy>>();

  private proxyFor(target: Target, upstream: Upstream): TargetProxy {
    let found = this.proxies.get(target);
    if (found) return found;
    const options: ProxyOptions = {
      target: { protocol: `${upstream.protocol}:`, host: target.host.replace(/^\[|\]$/g, ''), port: target.port } as any,
      agent: target.agent,
      secure: upstream.tlsVerify,
      xfwd: false,
      changeOrigin: false,
      toProxy: true,
      prependPath: false,
      ws: false,
      // The response head is written here in one writeHead() with a header list, instead of
      // http-proxy's setHeader() per header.
      selfHandleResponse: true,
      buffer: NO_BODY,
    };
    const proxy = httpProxy.createProxyServer(options as httpProxy.ServerOptions);
    // http-proxy's deleteLength pass gives a DELETE or OPTIONS without Content-Length a
    // `Content-Length: 0` and drops its Transfer-Encoding, while the body still streams after
    // it: a chunked body then reaches the upstream as a second request of its own (request
    // smuggling past routing and plugins). A pass that does nothing takes its place, so the
    // request goes as it came. (Replaced, not removed: with one pass fewer, V8 optimised
    // http-proxy's pass loop differently, at 9k more instructions per request under callgrind.)
    const passes = proxy as unknown as { webPasses: ((...args: unknown[]) => unknown)[] };
    passes.webPasses = passes.webPasses.map((pass) => (pass.name === 'deleteLength' ? keepLength : pass));
    proxy.on('proxyReq', (proxyReq, req) => this.onProxyReq(proxyReq, req));
    proxy.on('proxyRes', (proxyRes, req) => {
      const state = (req as any)[STATE] as AttemptState | undefined;
      if (!state) return void proxyRes.resume();
      answered(state, proxyRes);
      const started = startResponse(state, proxyRes);
      (proxyRes.socket as PooledSocket)[KEEP_ALIVE_HINT] = state.request.upstreamKeepAlive;
      if (started) relay(state, proxyRes);
    });
    // Errors without a per-call callback (should not happen): never crash.
    proxy.on('error', () => {});
    found = { server: proxy, options };
    this.proxies.set(target, found);
    if (this.all.size > 1024) for (const ref of this.all) if (!ref.deref()) this.all.delete(ref);
    this.all.add(new WeakRef(proxy));
    return found;
  }

  forward(request: ForwardRequest, upstream: Upstream): void {
    const req = request.req;
    // The client left already (while an access plugin was waiting, say): nothing goes upstream.
    if (clientLeft(request)) return;
    const state: AttemptState = {
      request,
      upstream,
      attempt: 0,
      target: null,
      bodyStarted: false,
      gate: null,
      timedOut: false,
      connected: false,
      responded: false,
      proxyReq: null,
      proxyRes: null,
      clientGone: false,
      sendTimeout: this.sendTimeout,
    };
    (req as any)[STATE] = state;
    request.res.on('close', onClientResponseClose);
    this.attempt(state);
  }

  private attempt(state: AttemptState) {
    const { request } = state;
    const req = request.req;
    const target = pickTarget(state);
    req.url = request.upstreamUrl;
    state.timedOut = false;
    state.connected = false;
    state.gate = null;
    let body: Readable | typeof NO_BODY = NO_BODY;
    if (request.bufferedBody) body = Readable.from([request.bufferedBody]);
    else if (hasStreamedBody(req)) body = state.gate = new Readable({ read() {} });
    const { server, options } = this.proxyFor(target, state.upstream);
    // Read by http-proxy synchronously within web(): the shared options object then carries this
    // request's body without a per-request copy of the options. One callback for every request
    // (the state hangs off req): no closure per request.
    options.buffer = body;
    try {
      server.web(req, request.res, this.onWebError as any);
    } finally {
      // Not kept for the upstream's next request: it holds this one's body and client.
      options.buffer = NO_BODY;
    }
  }

  /** http-proxy's per-call error callback: `(err, req, res, target)`. */
  private readonly onWebError = (err: Error, req: IncomingMessage): void => {
    const state = (req as any)[STATE] as AttemptState | undefined;
    if (state) this.onError(state, err);
  };

  private onProxyReq(proxyReq: ClientRequest, req: IncomingMessage) {
    const state = (req as any)[STATE] as AttemptState | undefined;
    if (!state) return;
    // A retry's request, started just as the client left.
    if (state.clientGone) return void proxyReq.destroy();
    state.proxyReq = proxyReq;
    const socket = proxyReq.socket as Socket;
    if (socket.connecting) awaitConnect(state, proxyReq, socket, () => this.connected(state, proxyReq));
    else this.connected(state, proxyReq);
  }

  /** The upstream socket is connected (a reused keep-alive socket: at once). No closure per request. */
  private connected(state: AttemptState, proxyReq: ClientRequest) {
    state.connected = true;
    // read_timeout: the longest silence allowed while waiting for the upstream. Set on the socket
    // with one listener per socket for its whole life: ClientRequest.setTimeout would add and
    // remove listeners (and bind two functions) on every request.
    const socket = proxyReq.socket as PooledSocket & { [SOCKET_LISTENING]?: true };
    socket[SOCKET_ATTEMPT] = state;
    if (!socket[SOCKET_LISTENING]) {
      socket[SOCKET_LISTENING] = true;
      socket.on('timeout', onSocketTimeout);
    }
    // Once per socket (see keepSocketAlive); pooled sockets keep it.
    if (socket.timeout !== state.upstream.readTimeout) socket.setTimeout(state.upstream.readTimeout);
    if (state.gate) this.openGate(state, proxyReq);
  }

  /** Streams the client's body into the gate now that an upstream socket is connected. */
  private openGate(state: AttemptState, proxyReq: ClientRequest) {
    const gate = state.gate!;
    const req = state.request.req;
    state.bodyStarted = true;
    // write_timeout: the longest stall while sending the body upstream. One timer, pushed back
    // by each chunk (refresh(), not a new timer per chunk).
    const timer = setTimeout(timeOut, state.upstream.writeTimeout, state, proxyReq, 'write');
    const clear = () => clearTimeout(timer);
    req.on('data', (chunk: Buffer) => {
      timer.refresh();
      if (!gate.push(chunk)) req.pause();
    });
    gate._read = () => req.resume();
    req.once('end', () => {
      clear();
      gate.push(null);
    });
    // The client's body broke off (it left, or sent a malformed chunk): the gate closes without
    // an error, since nothing listens for one on it; the client's response closing drops the
    // upstream request (onClientResponseClose).
    req.once('error', () => gate.destroy());
    proxyReq.once('close', clear);
    req.resume();
  }

  private onError(state: AttemptState, err: Error) {
    // We cut the upstream off because the client left: no answer, no retry, no upstream failure to log.
    if (state.clientGone) return;
    const { request } = state;
    if (request.res.headersSent || state.responded) {
      // Failed mid-response: nothing sensible can be sent any more.
      request.res.destroy();
      return;
    }
    const verdict = judge(state, err, !state.bodyStarted);
    if (verdict !== 'retry') return request.onUpstreamError(verdict, err, state.target!);
    state.attempt++;
    this.attempt(state);
  }

  forwardUpgrade(request: ForwardRequest, upstream: Upstream, client: HandshakeClient): void {
    forwardHandshake(request, upstream, client, this.sendTimeout);
  }

  close(): void {
    for (const ref of this.all) ref.deref()?.close();
    this.all.clear();
  }
}

// The forwarding engine: sends the prepared request to the upstream and streams the answer
// back. Everything above it (routing, plugins, headers) is engine-agnostic; the one
// implementation is http-proxy over a keep-alive agent per upstream.
import { request as httpRequest, type Agent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import { KEEP_ALIVE_HINT, SOCKET_ATTEMPT, type PooledSocket } from './agent-pool.ts';
import { relay, startResponse } from './relay.ts';
import { awaitConnect, clientLeft, judge, STATE, timeOut, type Attempt } from './retries.ts';

/** One service's upstream, compiled when a snapshot is applied. */
export interface Upstream {
  key: string;
  protocol: 'http' | 'https';
  host: string;
  port: number;
  /** Host header sent upstream when the route does not preserve the client's. */
  hostHeader: string;
  path: string | null;
  connectTimeout: number;
  readTimeout: number;
  writeTimeout: number;
  retries: number;
  tlsVerify: boolean;
  agent: Agent;
  /** http-proxy target, built once. */
  target: { protocol: string; host: string; port: number };
}

export type UpstreamFailure = 'connect' | 'timeout' | 'dns' | 'invalid';

/** What the engine needs from the request being proxied (implemented by the proxy's exchange). */
export interface ForwardRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Path and query sent upstream. */
  upstreamUrl: string;
  /** Buffered body (a plugin read it), sent instead of streaming the client's. */
  bufferedBody: Buffer | null;
  /**
   * Upstream response headers arrived; runs response-phase plugins and returns the headers for
   * the client as a flat `[name, value, ...]` list. Null: the exchange answered itself.
   */
  onUpstreamResponse(upstream: IncomingMessage): string[] | null;
  /** The upstream response's `Keep-Alive` header, set by onUpstreamResponse (for the pool). */
  readonly upstreamKeepAlive: string | undefined;
  /** The upstream could not be reached or failed before answering. */
  onUpstreamError(kind: UpstreamFailure, err: Error): void;
}

export interface ForwardingEngine {
  forward(request: ForwardRequest, upstream: Upstream): void;
  /**
   * A WebSocket handshake (`head`: what the client sent after it). The upstream's 101 turns the
   * client's connection into a tunnel of bytes both ways; any other answer is relayed as a response.
   */
  forwardUpgrade(request: ForwardRequest, upstream: Upstream, client: HandshakeClient): void;
  close(): void;
}

interface AttemptState extends Attempt {
  /** Bytes of a streamed client body have been handed to an upstream socket: no retry. */
  bodyStarted: boolean;
  /** The client's body, streamed only once the upstream socket is connected (so a refused connection can be retried). */
  gate: Readable | null;
  /** The client closed its connection before its response was finished: nothing more to do. */
  clientGone: boolean;
}

interface UpgradeState extends Attempt {
  client: HandshakeClient;
  /** The upstream switched protocols: bytes flow both ways. */
  tunnel: boolean;
}

const EMPTY = Buffer.alloc(0);

/** What a client may send behind its handshake before the tunnel is open. */
const MAX_EARLY_BYTES = 64 * 1024;

/**
 * A WebSocket client's connection from its handshake on (Node no longer reads it). It is read
 * while plugins run and the upstream answers: what it sends waits for the tunnel (up to a
 * limit), and its leaving is seen at once (an unread socket shows no FIN).
 */
export class HandshakeClient {
  /** What the client sent after its handshake, for the upstream once the tunnel is open. */
  head: Buffer;

  constructor(readonly socket: Socket, head: Buffer) {
    this.head = head;
    socket.on('data', this.onData);
    socket.once('end', this.onEnd);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
    if (this.head.length > MAX_EARLY_BYTES) this.socket.destroy();
  };

  private readonly onEnd = (): void => {
    this.socket.destroy();
  };

  /** No tunnel will come (or not yet: a retry reads on). */
  stopReading(): void {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
  }

  /** Stops reading and hands over what was buffered, once (not kept for the tunnel's life). */
  take(): Buffer {
    this.stopReading();
    const head = this.head;
    this.head = EMPTY;
    return head;
  }
}

function hasStreamedBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

const SOCKET_LISTENING = Symbol('gatehouse.readTimeoutListener');

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

/**
 * `timeout` listener of an upstream socket (`this`), shared by every socket: the request it
 * carries now, if any, timed out reading. An idle socket in the agent's pool carries none (the
 * agent itself closes those when their keep-alive time is up).
 */
function onSocketTimeout(this: Socket & { [SOCKET_ATTEMPT]?: AttemptState }): void {
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

/** The options of an upstream's http-proxy server; `buffer` is what the next web() call pipes upstream. */
type ProxyOptions = Omit<httpProxy.ServerOptions, 'buffer'> & { buffer: Readable | typeof NO_BODY };

interface UpstreamProxy {
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
   * One http-proxy server per upstream, its target and agent fixed: a request then passes no
   * options object, which spares http-proxy a per-request copy of its options.
   */
  private readonly proxies = new WeakMap<Upstream, UpstreamProxy>();
  private readonly all = new Set<WeakRef<httpProxy>>();

  private proxyFor(upstream: Upstream): UpstreamProxy {
    let found = this.proxies.get(upstream);
    if (found) return found;
    const options: ProxyOptions = {
      target: upstream.target as any,
      agent: upstream.agent,
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
      state.responded = true;
      state.proxyRes = proxyRes;
      const started = startResponse(state, proxyRes);
      (proxyRes.socket as PooledSocket)[KEEP_ALIVE_HINT] = state.request.upstreamKeepAlive;
      if (started) relay(state, proxyRes);
    });
    // Errors without a per-call callback (should not happen): never crash.
    proxy.on('error', () => {});
    found = { server: proxy, options };
    this.proxies.set(upstream, found);
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
    const { request, upstream } = state;
    const req = request.req;
    req.url = request.upstreamUrl;
    state.timedOut = false;
    state.connected = false;
    state.gate = null;
    let body: Readable | typeof NO_BODY = NO_BODY;
    if (request.bufferedBody) body = Readable.from([request.bufferedBody]);
    else if (hasStreamedBody(req)) body = state.gate = new Readable({ read() {} });
    const { server, options } = this.proxyFor(upstream);
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
    const socket = proxyReq.socket as PooledSocket & { [SOCKET_LISTENING]?: true; [SOCKET_ATTEMPT]?: AttemptState };
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
    if (verdict !== 'retry') return request.onUpstreamError(verdict, err);
    state.attempt++;
    this.attempt(state);
  }

  // ---------------------------------------------------------------- WebSocket

  /**
   * Sent with node:http rather than http-proxy's ws(): that one relays a refused handshake's
   * body de-chunked under its chunked header, ends the client's connection on the first error
   * (so no retry, and no Kong error body), and has no connect or read timeout.
   */
  forwardUpgrade(request: ForwardRequest, upstream: Upstream, client: HandshakeClient): void {
    if (clientLeft(request)) return void client.socket.destroy();
    const state: UpgradeState = {
      request,
      upstream,
      client,
      attempt: 0,
      timedOut: false,
      connected: false,
      responded: false,
      proxyReq: null,
      proxyRes: null,
      sendTimeout: this.sendTimeout,
      tunnel: false,
    };
    // For onClientDrain, when a refused handshake's response is relayed.
    (request.req as any)[STATE] = state;
    client.socket.once('close', () => {
      if (!state.tunnel) state.proxyReq?.destroy();
    });
    this.attemptUpgrade(state);
  }

  private attemptUpgrade(state: UpgradeState): void {
    const { request, upstream } = state;
    state.timedOut = false;
    state.connected = false;
    const send = upstream.protocol === 'https' ? httpsRequest : httpRequest;
    const proxyReq = send({ host: upstream.host, port: upstream.port, method: 'GET', path: request.upstreamUrl, headers: request.req.headers, agent: upstream.agent });
    state.proxyReq = proxyReq;
    const connected = () => void (state.connected = true);
    proxyReq.once('socket', (socket: Socket) => (socket.connecting ? awaitConnect(state, proxyReq, socket, connected) : connected()));
    // Until the upstream answers; the tunnel then has its own idle timeout (openTunnel).
    proxyReq.setTimeout(upstream.readTimeout, () => timeOut(state, proxyReq, 'read'));
    proxyReq.on('error', (err) => this.onUpgradeError(state, err));
    proxyReq.once('response', (proxyRes: IncomingMessage) => {
      // The upstream answered without switching protocols: an ordinary response, then the
      // connection closes. Its upstream connection is not pooled either: whatever the upstream
      // made of a request that asked to switch protocols, nothing else is sent on it.
      state.responded = true;
      state.proxyRes = proxyRes;
      state.client.stopReading();
      proxyReq.shouldKeepAlive = false;
      if (startResponse(state, proxyRes)) relay(state, proxyRes);
    });
    proxyReq.once('upgrade', (proxyRes: IncomingMessage, socket: Socket, upstreamHead: Buffer) => this.openTunnel(state, proxyRes, socket, upstreamHead));
    proxyReq.end();
  }

  /**
   * The upstream switched protocols: its 101 goes to the client as it came, then bytes flow both
   * ways untouched. A tunnel silent both ways for read_timeout is closed (nginx, under Kong,
   * closes one whose upstream is silent for proxy_read_timeout); either side closing closes both.
   */
  private openTunnel(state: UpgradeState, proxyRes: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    state.responded = true;
    state.tunnel = true;
    const early = state.client.take();
    const client = state.request.req.socket;
    if (client.destroyed) return void upstream.destroy();
    // For the log phase: what the client got.
    state.request.res.statusCode = 101;
    let head = `HTTP/1.1 101 ${proxyRes.statusMessage || 'Switching Protocols'}\r\n`;
    const raw = proxyRes.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
    client.write(`${head}\r\n`);
    if (upstreamHead.length) client.write(upstreamHead);
    if (early.length) upstream.write(early);
    upstream.setNoDelay(true);
    upstream.setTimeout(state.upstream.readTimeout);
    upstream.on('timeout', () => upstream.destroy());
    upstream.on('error', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
    upstream.pipe(client);
    client.pipe(upstream);
  }

  private onUpgradeError(state: UpgradeState, err: Error): void {
    const { request } = state;
    if (state.responded) return void request.req.socket.destroy();
    if (clientLeft(request)) return;
    const verdict = judge(state, err, true);
    if (verdict !== 'retry') {
      state.client.stopReading();
      return request.onUpstreamError(verdict, err);
    }
    state.attempt++;
    this.attemptUpgrade(state);
  }

  close(): void {
    for (const ref of this.all) ref.deref()?.close();
    this.all.clear();
  }
}

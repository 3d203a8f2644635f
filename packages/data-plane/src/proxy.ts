// The proxy: plain node:http / node:https servers, one compiled config swapped atomically on
// each snapshot, the plugin pipeline (access → upstream → response → log) and Kong's proxy
// errors. Nothing here touches express, Prisma or pg.
import { createServer as createHttpServer, ServerResponse, type ServerOptions, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ConfigError, type ListenAddress } from '@gatehouse/core/config.ts';
import type { ConsumerEntity, PluginEntity, RouteEntity, ServiceEntity } from '@gatehouse/core/entities.ts';
import type { Logger } from '@gatehouse/core/logger.ts';
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import type { TlsCredentials } from '@gatehouse/core/tls.ts';
import { AgentPool } from './agent-pool.ts';
import type { Target } from './balancer.ts';
import { compileSnapshot, type CompiledConfig, type RoutePayload } from './compile.ts';
import type { ForwardingEngine, ForwardRequest, UpstreamFailure } from './forward.ts';
import { HttpProxyEngine } from './http-proxy-engine.ts';
import { HandshakeClient } from './websocket.ts';
import { resolveEntry, type ChainEntry, type PluginRuntime } from './plugins.ts';
import { normalizePath } from '@gatehouse/core/uri.ts';
import { upstreamPathV0, upstreamPathV1 } from './router.ts';
import { TrustedIps } from './trusted-ips.ts';
import { onClientError } from './client-errors.ts';
import { addProxyHeaders, clientHeadFromRaw, dropClientClaims, flatHead, hostOf, pluginHeaderValue, prepareClientHeaders, scanNames, TWO_HOSTS, UNDERSCORE, upstreamHeaders } from './header-rules.ts';
import { BODY_400, BODY_404, BODY_405, BODY_413, BODY_500, BODY_502, BODY_503_DNS, BODY_503_NO_SERVICE, BODY_504, jsonBody, pluginAnswer, redirectToHttps, sendRaw } from './kong-responses.ts';
import { bufferBody, PayloadTooLarge } from './request-body.ts';
import { requestIdOf } from './request-id.ts';
import { peerAddress } from './trusted-ips.ts';

// The proxy tests take it from here.
export { IDENTITY_HEADERS } from './header-rules.ts';

/**
 * Closes an upgraded connection once its answer (not a tunnel) is sent. Node no longer reads it,
 * so the client's FIN would go unseen and the socket stay open: what the client still sends is
 * read and dropped until it closes, or for at most 5 s (closing at once, with unread data, would
 * reset the connection and could lose the answer at the client; nginx's lingering_close).
 */
function lingeringClose(socket: Socket): void {
  socket.end();
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), 5000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

export interface ListenerInfo {
  ssl: boolean;
  port: number;
}

/** One request through the proxy: the plugins' RequestContext and the engine's ForwardRequest. */
class Exchange implements RequestContext, ForwardRequest {
  consumer: ConsumerEntity | null = null;
  credential: { id: string; identifier: string } | null = null;
  upstreamUrl = '';
  bufferedBody: Buffer | null = null;
  private _responded = false;
  private _log: Logger | null = null;
  private _shared: Record<string, unknown> | null = null;
  private _body: Promise<Buffer> | null = null;
  private queryOverride: string | null = null;
  upstreamKeepAlive: string | undefined = undefined;

  constructor(
    readonly proxy: ProxyRuntime,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly requestId: string,
    readonly method: string,
    readonly scheme: 'http' | 'https',
    readonly clientIp: string,
    readonly trustedPeer: boolean,
    /** The TCP peer's address (IPv4-mapped IPv6 shown as IPv4). */
    readonly peer: string,
    /** The port of the listener the request came in on, as sent in X-Forwarded-Port. */
    readonly listenerPort: string,
    /** The Host header without its port, lower case (Kong's $host), as routed. */
    readonly host: string,
    readonly path: string,
    readonly rawQuery: string,
    readonly payload: RoutePayload,
    readonly matched: string | null,
    readonly config: CompiledConfig,
    /** A WebSocket handshake's client connection (null for every other request). */
    readonly upgrade: HandshakeClient | null,
  ) {}

  get route(): RouteEntity {
    return this.payload.route;
  }
  get service(): ServiceEntity | null {
    return this.payload.service;
  }
  get preserveHost(): boolean {
    return this.payload.route.preserve_host;
  }
  get responded(): boolean {
    return this._responded || this.res.headersSent;
  }
  get log(): Logger {
    return (this._log ??= this.proxy.logger.child({ request_id: this.requestId }));
  }
  get shared(): Record<string, unknown> {
    return (this._shared ??= {});
  }

  setUpstreamHeader(name: string, value: string | null): void {
    value = pluginHeaderValue(name, value);
    const key = name.toLowerCase();
    if (key === 'host') {
      if (value !== null) this.req.headers.host = value;
      return;
    }
    if (value === null) delete this.req.headers[key];
    else this.req.headers[key] = value;
  }

  setUpstreamQuery(rawQuery: string): void {
    this.queryOverride = rawQuery;
  }

  readBody(): Promise<Buffer> {
    return (this._body ??= bufferBody(this));
  }

  setUpstreamBody(body: Buffer): void {
    this.bufferedBody = body;
  }

  respond(status: number, body: unknown, headers?: Record<string, string>): void {
    if (this.responded) return;
    const res = this.res;
    // Marked responded only after: a header Node refuses throws first, and the plugin's failure still gets its 500.
    const payload = pluginAnswer(res, body, this.requestId, headers);
    this._responded = true;
    res.statusCode = status;
    res.end(payload);
  }

  /** Answer with a Kong-style error body. */
  fail(status: number, body: Buffer, extra?: Record<string, string>) {
    if (this.responded) {
      if (!this.res.writableEnded) this.res.destroy();
      return;
    }
    this._responded = true;
    sendRaw(this.res, status, body, this.requestId, extra);
  }

  /** Kong: a handler error is a 500 to the client and an error log line with the request id. */
  pluginError(entry: ChainEntry, phase: string, err: unknown) {
    if (err instanceof PayloadTooLarge) return this.fail(413, BODY_413);
    // The client left while a plugin read its body: an ordinary event, not the plugin's failure.
    if (this.req.errored !== null && err === this.req.errored) {
      this.proxy.logger.info('client closed the connection during a plugin', { request_id: this.requestId, plugin: entry.name, phase });
      return this.fail(400, BODY_400);
    }
    this.proxy.logger.error('plugin handler failed', {
      request_id: this.requestId,
      plugin: entry.name,
      phase,
      error: err instanceof Error ? err.stack ?? err.message : String(err),
    });
    this.fail(500, BODY_500);
  }

  // ---------------------------------------------------------------- pipeline

  runAccess(i: number): void {
    const list = this.payload.chain.access;
    const https = this.scheme === 'https';
    for (; i < list.length; i++) {
      const entry = list[i];
      const applied = resolveEntry(entry, this.consumer?.id ?? null, https);
      if (applied === null) continue;
      let result: void | Promise<void>;
      try {
        result = entry.handler.access!(this, applied.config, applied.entity as PluginEntity);
      } catch (err) {
        return this.pluginError(entry, 'access', err);
      }
      if (result && typeof (result as Promise<void>).then === 'function') {
        const next = i + 1;
        (result as Promise<void>).then(
          () => (this.responded ? this.afterResponded() : this.runAccess(next)),
          (err) => this.pluginError(entry, 'access', err),
        );
        return;
      }
      if (this.responded) return this.afterResponded();
    }
    this.proceed();
  }

  private afterResponded() {
    // The client's body was never read: let it drain so the connection can be reused.
    if (!this.req.readableEnded && !this._body) this.req.resume();
  }

  proceed(): void {
    const payload = this.payload;
    const upstream = payload.upstream;
    if (upstream === null) return this.fail(503, BODY_503_NO_SERVICE);
    const req = this.req;
    const h = req.headers;
    const route = payload.route;
    const stripped = route.strip_path ? this.matched : null;
    const upstreamPath = payload.pathV1
      ? upstreamPathV1(upstream.path, this.path, stripped)
      : upstreamPathV0(upstream.path, this.path, stripped);
    const query = this.queryOverride ?? this.rawQuery;
    // An empty query (`/x?`) is kept as sent, as Kong does.
    const emptyQuery = query === '' && this.queryOverride === null && req.url!.charCodeAt(req.url!.length - 1) === 63; /* ? */
    this.upstreamUrl = query === '' && !emptyQuery ? upstreamPath : `${upstreamPath}?${query}`;

    const out = upstreamHeaders(h, this.trustedPeer, this.bufferedBody !== null);
    // A WebSocket handshake keeps the two headers that ask the upstream to switch protocols.
    if (this.upgrade !== null) {
      out.connection = 'upgrade';
      out.upgrade = h.upgrade;
    }

    addProxyHeaders(out, h, this, this.listenerPort, stripped);
    // Host: the client's when the route preserves it, else the target's, set for each attempt.
    if (this.bufferedBody) {
      if (this.upgrade === null) out['content-length'] = String(this.bufferedBody.length);
      else if (this.bufferedBody.length !== 0) {
        // A handshake carries no body (the tunnel's bytes follow it): one a plugin set cannot go.
        this.proxy.logger.error('a plugin set a body for a WebSocket handshake', { request_id: this.requestId, route: route.id });
        return this.fail(500, BODY_500);
      }
    }
    req.headers = out;
    try {
      if (this.upgrade === null) this.proxy.engine.forward(this, upstream);
      else this.proxy.engine.forwardUpgrade(this, upstream, this.upgrade);
    } catch (err) {
      // Whatever the engine throws before anything reached the upstream is answered, never left
      // to crash the worker (or to leave the client waiting, from a plugin's promise).
      this.proxy.logger.error('forwarding failed', { request_id: this.requestId, route: this.payload.route.id, error: err instanceof Error ? err.message : String(err) });
      this.fail(500, BODY_500);
    }
  }

  /**
   * The upstream's response head arrived: runs the response-phase plugins and returns the
   * client's headers as a flat `[name, value, ...]` list (null: the exchange answered itself).
   * Hop-by-hop `Connection` and `Keep-Alive` stay behind (the client connection has its own);
   * `Keep-Alive` is kept in `upstreamKeepAlive` for the engine's pool.
   */
  onUpstreamResponse(upstream: IncomingMessage): string[] | null {
    const list = this.payload.chain.response;
    const http10 = this.req.httpVersion === '1.0';
    // Without response plugins the list is copied from the raw headers, so Node never builds
    // the response's header object.
    if (list.length === 0) return clientHeadFromRaw(upstream.rawHeaders, http10, this.requestId, this);
    this.upstreamKeepAlive = prepareClientHeaders(upstream.headers, http10, this.requestId);
    const https = this.scheme === 'https';
    for (const entry of list) {
      const applied = resolveEntry(entry, this.consumer?.id ?? null, https);
      if (applied === null) continue;
      try {
        entry.handler.response!(this, applied.config, upstream);
      } catch (err) {
        this.pluginError(entry, 'response', err);
        return null;
      }
      if (this.responded) return null;
    }
    return flatHead(upstream.headers);
  }

  onUpstreamError(kind: UpstreamFailure, err: Error, target: Target): void {
    this.proxy.logger.warn('upstream request failed', {
      request_id: this.requestId,
      route: this.payload.route.id,
      upstream: `${target.host}:${target.port}`,
      kind,
      error: err.message,
    });
    if (kind === 'timeout') return this.fail(504, BODY_504);
    if (kind === 'dns') return this.fail(503, BODY_503_DNS);
    this.fail(502, BODY_502);
  }

  runLog(): void {
    const https = this.scheme === 'https';
    for (const entry of this.payload.chain.log) {
      const applied = resolveEntry(entry, this.consumer?.id ?? null, https);
      if (applied === null) continue;
      try {
        entry.handler.log!(this, applied.config);
      } catch (err) {
        this.proxy.logger.error('plugin log handler failed', {
          request_id: this.requestId,
          plugin: entry.name,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }
}

export interface ProxyRuntimeOptions {
  logger: Logger;
  plugins: PluginRuntime;
  trustedIps: string[];
  /** For the default engine: see HttpProxyEngineOptions. */
  sendTimeout?: number;
  /** nginx's client_header_timeout (ms): the longest a client may take to send a request's head. Default 60 s. */
  clientHeaderTimeout?: number;
  /** The longest a client may take to send a whole request, head and body (ms; 0: no limit). Default 300 s. */
  clientRequestTimeout?: number;
  /** Shown in the 503 while no configuration is loaded, e.g. `Redis at redis://host:6379`. */
  waitingFor: string;
  engine?: ForwardingEngine;
}

export class ProxyRuntime {
  readonly logger: Logger;
  readonly engine: ForwardingEngine;
  readonly plugins: PluginRuntime;
  private readonly trusted: TrustedIps;
  private readonly agents = new AgentPool();
  private current: CompiledConfig | null = null;
  private readonly noConfigBody: Buffer;
  private readonly servers: Server[] = [];
  /** Connections handed over by 'upgrade' events, open until closed (see close()). */
  private readonly upgraded = new Set<Socket>();
  private applying: Promise<unknown> = Promise.resolve();
  private readonly serverOptions: ServerOptions;

  constructor(options: ProxyRuntimeOptions) {
    this.logger = options.logger;
    this.plugins = options.plugins;
    this.engine = options.engine ?? new HttpProxyEngine({ sendTimeout: options.sendTimeout });
    this.trusted = new TrustedIps(options.trustedIps);
    this.noConfigBody = jsonBody(`no configuration loaded yet: waiting for the control plane (${options.waitingFor})`);
    this.serverOptions = {
      headersTimeout: options.clientHeaderTimeout ?? 60_000,
      requestTimeout: options.clientRequestTimeout ?? 300_000,
      // How often Node looks for requests past those timeouts (its default, 30 s, let a 60 s
      // header timeout fire at 83 s).
      connectionsCheckingInterval: 1000,
    };
  }

  get config(): CompiledConfig | null {
    return this.current;
  }

  /**
   * Compiles `snapshot` and swaps it in. Serialised: a later call waits for an earlier one.
   * Throws (keeping the current config) if a handler cannot be created or refuses it.
   */
  apply(snapshot: Snapshot): Promise<CompiledConfig> {
    const run = this.applying.then(async () => {
      await this.plugins.ensure(new Set(snapshot.plugins.filter((p) => p.enabled).map((p) => p.name)));
      this.plugins.notifySnapshot(snapshot);
      const compiled = compileSnapshot(snapshot, this.plugins, this.agents);
      this.current = compiled;
      const grace = Math.min(
        Math.max(60_000, ...[...compiled.upstreams.values()].map((u) => u.readTimeout + u.connectTimeout)),
        15 * 60_000,
      );
      this.agents.retain(compiled.agentKeys, grace);
      return compiled;
    });
    this.applying = run.catch(() => {});
    return run;
  }

  /**
   * One request on a listener; `listenerPort` is that listener's port, as text. `upgrade`: the
   * request is a WebSocket handshake, from this client connection.
   */
  handle(req: IncomingMessage, res: ServerResponse, https: boolean, listenerPort: string, upgrade: HandshakeClient | null): void {
    const cfg = this.current;
    const requestId = requestIdOf(req);
    if (cfg === null) return sendRaw(res, 503, this.noConfigBody, requestId);
    // TRACE would echo the request, credentials included, back to a script (cross-site tracing); nginx refuses it too.
    if (req.method === 'TRACE') return sendRaw(res, 405, BODY_405, requestId);
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* / */) {
      // absolute-form (http://host/path) or '*'
      try {
        const u = new URL(url);
        url = u.pathname + u.search;
      } catch {
        return sendRaw(res, 400, BODY_400, requestId);
      }
    }
    const q = url.indexOf('?');
    const path = normalizePath(q === -1 ? url : url.slice(0, q));
    const rawQuery = q === -1 ? '' : url.slice(q + 1);
    const raw = req.rawHeaders;
    const names = scanNames(raw);
    if (names === TWO_HOSTS) return sendRaw(res, 400, BODY_400, requestId);
    const hostHeader = req.headers.host;
    let host = '';
    let port = 0;
    if (hostHeader) {
      const lower = hostHeader.toLowerCase();
      host = hostOf(lower);
      const rest = lower.length > host.length + 1 ? lower.slice(host.length + 1) : '';
      port = rest ? Number(rest) : 0;
    }
    if (!port) port = https ? 443 : 80;
    const match = cfg.router.match({
      method: req.method ?? 'GET',
      host,
      port,
      path,
      headers: req.headers,
      rawHeaders: raw,
      https,
      sni: https ? ((req.socket as TLSSocket).servername || null) : null,
    });
    if (match === null) return sendRaw(res, 404, BODY_404, requestId);
    const payload = match.payload;

    const peer = peerAddress(req);
    const trustedPeer = this.trusted.has(peer);
    let scheme: 'http' | 'https' = https ? 'https' : 'http';
    if (payload.httpsOnly && !https) {
      const fwd = trustedPeer ? req.headers['x-forwarded-proto'] : undefined;
      if (fwd !== 'https') return redirectToHttps(req, res, payload.redirectStatus, host, url, requestId);
    }
    if (trustedPeer && req.headers['x-forwarded-proto'] === 'https') scheme = 'https';
    const clientIp = trustedPeer ? this.trusted.clientIp(peer, req.headers['x-forwarded-for']) : peer;

    dropClientClaims(req.headers, names === UNDERSCORE);

    const ex = new Exchange(
      this,
      req,
      res,
      requestId,
      req.method ?? 'GET',
      scheme,
      clientIp,
      trustedPeer,
      peer,
      listenerPort,
      host,
      path,
      rawQuery,
      payload,
      match.matched,
      cfg,
      upgrade,
    );
    const chain = payload.chain;
    if (chain.log.length) {
      let logged = false;
      const done = () => {
        if (logged) return;
        logged = true;
        ex.runLog();
      };
      res.once('finish', done);
      res.once('close', done);
    }
    if (chain.access.length) ex.runAccess(0);
    else ex.proceed();
  }

  /**
   * A request with `Connection: upgrade` (Node hands these over apart, with the raw socket). A
   * WebSocket handshake (GET, `Upgrade: websocket`) is routed and passed through the access
   * plugins like any request, then tunnelled (engine.forwardUpgrade). Any other protocol is not
   * switched to: the request is answered as an ordinary one (its Upgrade header is hop-by-hop and
   * dropped), as nginx does under Kong. Either way a response that is not a tunnel ends the connection.
   */
  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer, https: boolean, listenerPort: string): void {
    // Node took its own listeners off this socket: an error must not go unhandled, and a timeout
    // set on it (GATEHOUSE_SEND_TIMEOUT, a slow client) must still close it.
    socket.on('error', () => socket.destroy());
    socket.on('timeout', () => socket.destroy());
    // Closed at shutdown like the server's own connections (see close()).
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    let handshake: HandshakeClient | null = null;
    res.once('finish', () => {
      // Answered without a tunnel (by the gateway or the upstream): what the client sent after its
      // handshake is no longer kept, and its reading must not reset the connection at 64 KiB.
      handshake?.take();
      lingeringClose(socket);
    });
    // Node stopped parsing at the head: a body could not be read, nor sent on. (Its length
    // forwarded without it would have the upstream take the next request on the connection as
    // that body: a smuggled request.)
    const length = req.headers['content-length'];
    if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined) {
      return sendRaw(res, 400, BODY_400, null);
    }
    const upgrade = req.headers.upgrade;
    const websocket = req.method === 'GET' && typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket';
    if (websocket) handshake = new HandshakeClient(socket, head);
    this.handle(req, res, https, listenerPort, handshake);
  }

  /** Opens the proxy listeners. `tls` is required when one of them is marked ssl. */
  async listen(addresses: ListenAddress[], tls: TlsCredentials | null): Promise<{ host: string; port: number; ssl: boolean }[]> {
    const out: { host: string; port: number; ssl: boolean }[] = [];
    for (const a of addresses) {
      let server: Server;
      // Known once listening (port 0 picks one); no request arrives before.
      let portText = '';
      const options = this.serverOptions;
      if (a.ssl) {
        if (!tls) throw new Error('an ssl proxy listener needs a certificate');
        server = createHttpsServer({ ...options, cert: tls.cert, key: tls.key }, (req, res) => this.handle(req, res, true, portText, null)) as unknown as Server;
      } else server = createHttpServer(options, (req, res) => this.handle(req, res, false, portText, null));
      const ssl = a.ssl;
      server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.upgrade(req, socket, head, ssl, portText));
      server.keepAliveTimeout = 60_000;
      server.on('clientError', onClientError);
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) => reject(new ConfigError(`GATEHOUSE_PROXY_LISTEN: cannot listen on ${a.host}:${a.port}: ${err.code ?? err.message}`));
        server.once('error', onError);
        server.listen({ host: a.host, port: a.port }, () => {
          server.off('error', onError);
          resolve();
        });
      });
      this.servers.push(server);
      const info = server.address() as AddressInfo;
      portText = String(info.port);
      out.push({ host: a.host, port: info.port, ssl: a.ssl });
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeIdleConnections?.();
            setTimeout(() => {
              s.closeAllConnections?.();
              resolve();
            }, 2000).unref();
          }),
      ),
    );
    this.servers.length = 0;
    // Upgraded connections (tunnels, handshakes under way) are not the server's to close. They
    // go before the upstream connections do: a handshake cut off there would be tried again.
    for (const socket of this.upgraded) socket.destroy();
    this.upgraded.clear();
    this.engine.close();
    this.agents.destroy();
    await this.plugins.close();
  }
}

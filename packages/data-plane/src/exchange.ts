// One request through the proxy, in the order this file reads: receive (request id, the head's
// checks, routing, whom to trust), access (plugins), upstream request (URL and headers, then the
// forwarding engine), response (the client's headers, or an upstream failure), log. An Exchange
// is both the plugins' RequestContext and the engine's ForwardRequest.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { ConsumerEntity, PluginEntity, RouteEntity, ServiceEntity } from '@gatehouse/core/entities.ts';
import type { Logger } from '@gatehouse/core/logger.ts';
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import { normalizePath } from '@gatehouse/core/uri.ts';
import type { Target } from './balancer.ts';
import type { RoutePayload } from './compile.ts';
import type { ForwardRequest, UpstreamFailure } from './forward.ts';
import { addProxyHeaders, clientHeadFromRaw, dropClientClaims, flatHead, hostOf, pluginHeaderValue, prepareClientHeaders, scanNames, TWO_HOSTS, UNDERSCORE, upstreamHeaders } from './header-rules.ts';
import { BODY_400, BODY_404, BODY_405, BODY_413, BODY_500, BODY_502, BODY_503_DNS, BODY_503_NO_SERVICE, BODY_504, pluginAnswer, redirectToHttps, sendRaw } from './kong-responses.ts';
import type { Listener } from './listeners.ts';
import { resolveEntry, type ChainEntry } from './plugins.ts';
import { bufferBody, PayloadTooLarge } from './request-body.ts';
import { requestIdOf } from './request-id.ts';
import { upstreamPathV0, upstreamPathV1 } from './router.ts';
import { peerAddress } from './trusted-ips.ts';
import type { HandshakeClient } from './websocket.ts';

export class Exchange implements RequestContext, ForwardRequest {
  // Known once received (see receive()).
  requestId = '';
  method = '';
  scheme: 'http' | 'https' = 'http';
  clientIp = '';
  trustedPeer = false;
  /** The TCP peer's address (IPv4-mapped IPv6 shown as IPv4). */
  peer = '';
  /** The Host header without its port, lower case (Kong's $host), as routed. */
  host = '';
  path = '';
  rawQuery = '';
  /** The matched route's compiled facts: route, service, upstream, plugin chain. */
  payload!: RoutePayload;
  /** The part of the path the route matched (what strip_path strips). */
  matched: string | null = null;

  consumer: ConsumerEntity | null = null;
  credential: { id: string; identifier: string } | null = null;
  upstreamUrl = '';
  bufferedBody: Buffer | null = null;
  upstreamKeepAlive: string | undefined = undefined;
  private _responded = false;
  private _log: Logger | null = null;
  private _shared: Record<string, unknown> | null = null;
  private _body: Promise<Buffer> | null = null;
  private queryOverride: string | null = null;

  constructor(
    readonly listener: Listener,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
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

  // ---------------------------------------------------------------- receive

  /**
   * Reads the request's head, routes it and settles whom to trust, then goes on to the access
   * phase. What cannot go on (no configuration yet, TRACE, a bad head, no route, plain http on
   * an https-only route) is answered here.
   */
  receive(): void {
    const { req, res, listener } = this;
    const proxy = listener.proxy;
    const cfg = proxy.config;
    const requestId = (this.requestId = requestIdOf(req));
    if (cfg === null) return sendRaw(res, 503, proxy.noConfigBody, requestId);
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
    const path = (this.path = normalizePath(q === -1 ? url : url.slice(0, q)));
    this.rawQuery = q === -1 ? '' : url.slice(q + 1);
    const raw = req.rawHeaders;
    const names = scanNames(raw);
    if (names === TWO_HOSTS) return sendRaw(res, 400, BODY_400, requestId);
    const https = listener.https;
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
    this.host = host;
    const method = (this.method = req.method ?? 'GET');
    const match = cfg.router.match({
      method,
      host,
      port,
      path,
      headers: req.headers,
      rawHeaders: raw,
      https,
      sni: https ? ((req.socket as TLSSocket).servername || null) : null,
    });
    if (match === null) return sendRaw(res, 404, BODY_404, requestId);
    const payload = (this.payload = match.payload);
    this.matched = match.matched;

    const peer = (this.peer = peerAddress(req));
    const trustedPeer = (this.trustedPeer = proxy.trusted.has(peer));
    if (payload.httpsOnly && !https) {
      const fwd = trustedPeer ? req.headers['x-forwarded-proto'] : undefined;
      if (fwd !== 'https') return redirectToHttps(req, res, payload.redirectStatus, host, url, requestId);
    }
    if (https || (trustedPeer && req.headers['x-forwarded-proto'] === 'https')) this.scheme = 'https';
    this.clientIp = trustedPeer ? proxy.trusted.clientIp(peer, req.headers['x-forwarded-for']) : peer;
    dropClientClaims(req.headers, names === UNDERSCORE);

    const chain = payload.chain;
    if (chain.log.length) this.logWhenDone();
    if (chain.access.length) this.runAccess(0);
    else this.proceed();
  }

  // ---------------------------------------------------------------- access

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

  // What the plugins may do (RequestContext).

  get responded(): boolean {
    return this._responded || this.res.headersSent;
  }
  get log(): Logger {
    return (this._log ??= this.listener.proxy.logger.child({ request_id: this.requestId }));
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
    const logger = this.listener.proxy.logger;
    // The client left while a plugin read its body: an ordinary event, not the plugin's failure.
    if (this.req.errored !== null && err === this.req.errored) {
      logger.info('client closed the connection during a plugin', { request_id: this.requestId, plugin: entry.name, phase });
      return this.fail(400, BODY_400);
    }
    logger.error('plugin handler failed', {
      request_id: this.requestId,
      plugin: entry.name,
      phase,
      error: err instanceof Error ? err.stack ?? err.message : String(err),
    });
    this.fail(500, BODY_500);
  }

  // ---------------------------------------------------------------- upstream request

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
    addProxyHeaders(out, h, this, this.listener.port, stripped);
    // Host: the client's when the route preserves it, else the target's, set for each attempt.
    if (this.bufferedBody) {
      if (this.upgrade === null) out['content-length'] = String(this.bufferedBody.length);
      else if (this.bufferedBody.length !== 0) {
        // A handshake carries no body (the tunnel's bytes follow it): one a plugin set cannot go.
        this.listener.proxy.logger.error('a plugin set a body for a WebSocket handshake', { request_id: this.requestId, route: route.id });
        return this.fail(500, BODY_500);
      }
    }
    req.headers = out;
    const engine = this.listener.proxy.engine;
    try {
      if (this.upgrade === null) engine.forward(this, upstream);
      else engine.forwardUpgrade(this, upstream, this.upgrade);
    } catch (err) {
      // Whatever the engine throws before anything reached the upstream is answered, never left
      // to crash the worker (or to leave the client waiting, from a plugin's promise).
      this.listener.proxy.logger.error('forwarding failed', { request_id: this.requestId, route: route.id, error: err instanceof Error ? err.message : String(err) });
      this.fail(500, BODY_500);
    }
  }

  // ---------------------------------------------------------------- response

  /**
   * The upstream's response head arrived: runs the response-phase plugins and returns the
   * client's headers as a flat `[name, value, ...]` list (null: the exchange answered itself).
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
    this.listener.proxy.logger.warn('upstream request failed', {
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

  // ---------------------------------------------------------------- log

  /** Runs the log phase once the response is finished or the connection closed, whichever is first. */
  private logWhenDone(): void {
    let logged = false;
    const done = () => {
      if (logged) return;
      logged = true;
      this.runLog();
    };
    this.res.once('finish', done);
    this.res.once('close', done);
  }

  runLog(): void {
    const https = this.scheme === 'https';
    for (const entry of this.payload.chain.log) {
      const applied = resolveEntry(entry, this.consumer?.id ?? null, https);
      if (applied === null) continue;
      try {
        entry.handler.log!(this, applied.config);
      } catch (err) {
        this.listener.proxy.logger.error('plugin log handler failed', {
          request_id: this.requestId,
          plugin: entry.name,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }
}

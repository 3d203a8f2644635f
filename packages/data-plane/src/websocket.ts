// WebSocket handshakes forwarded upstream, and the tunnel they become: the client's connection
// read from its handshake on (HandshakeClient), the handshake sent with node:http (retried like
// any attempt), then the upstream's 101 and bytes both ways, or its refusal relayed as a response.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { ForwardRequest, Upstream } from './forward.ts';
import { startResponse, relay } from './relay.ts';
import { answered, awaitConnect, clientLeft, judge, pickTarget, STATE, timeOut, type Attempt } from './retries.ts';

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

interface UpgradeState extends Attempt {
  client: HandshakeClient;
  /** The upstream switched protocols: bytes flow both ways. */
  tunnel: boolean;
}

/**
 * A WebSocket handshake (`client`: its connection). Sent with node:http rather than
 * http-proxy's ws(): that one relays a refused handshake's body de-chunked under its chunked
 * header, ends the client's connection on the first error (so no retry, and no Kong error
 * body), and has no connect or read timeout.
 */
export function forwardHandshake(request: ForwardRequest, upstream: Upstream, client: HandshakeClient, sendTimeout: number): void {
  if (clientLeft(request)) return void client.socket.destroy();
  const state: UpgradeState = {
    request,
    upstream,
    client,
    attempt: 0,
    target: null,
    timedOut: false,
    connected: false,
    responded: false,
    proxyReq: null,
    proxyRes: null,
    sendTimeout,
    tunnel: false,
  };
  // For onClientDrain, when a refused handshake's response is relayed.
  (request.req as any)[STATE] = state;
  client.socket.once('close', () => {
    if (!state.tunnel) state.proxyReq?.destroy();
  });
  attemptUpgrade(state);
}

function attemptUpgrade(state: UpgradeState): void {
  const { request, upstream } = state;
  state.timedOut = false;
  state.connected = false;
  const target = pickTarget(state);
  const send = upstream.protocol === 'https' ? httpsRequest : httpRequest;
  const proxyReq = send({ host: target.host, port: target.port, method: 'GET', path: request.upstreamUrl, headers: request.req.headers, agent: target.agent });
  state.proxyReq = proxyReq;
  const connected = () => void (state.connected = true);
  proxyReq.once('socket', (socket: Socket) => (socket.connecting ? awaitConnect(state, proxyReq, socket, connected) : connected()));
  // Until the upstream answers; the tunnel then has its own idle timeout (openTunnel).
  proxyReq.setTimeout(upstream.readTimeout, () => timeOut(state, proxyReq, 'read'));
  proxyReq.on('error', (err) => onUpgradeError(state, err));
  proxyReq.once('response', (proxyRes: IncomingMessage) => {
    // The upstream answered without switching protocols: an ordinary response, then the
    // connection closes. Its upstream connection is not pooled either: whatever the upstream
    // made of a request that asked to switch protocols, nothing else is sent on it.
    answered(state, proxyRes);
    state.client.stopReading();
    proxyReq.shouldKeepAlive = false;
    if (startResponse(state, proxyRes)) relay(state, proxyRes);
  });
  proxyReq.once('upgrade', (proxyRes: IncomingMessage, socket: Socket, upstreamHead: Buffer) => openTunnel(state, proxyRes, socket, upstreamHead));
  proxyReq.end();
}

/**
 * The upstream switched protocols: its 101 goes to the client as it came, then bytes flow both
 * ways untouched. A tunnel silent both ways for read_timeout is closed (nginx, under Kong,
 * closes one whose upstream is silent for proxy_read_timeout); either side closing closes both.
 */
function openTunnel(state: UpgradeState, proxyRes: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
  answered(state, proxyRes);
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

function onUpgradeError(state: UpgradeState, err: Error): void {
  const { request } = state;
  if (state.responded) return void request.req.socket.destroy();
  if (clientLeft(request)) return;
  const verdict = judge(state, err, true);
  if (verdict !== 'retry') {
    state.client.stopReading();
    return request.onUpstreamError(verdict, err, state.target!);
  }
  state.attempt++;
  attemptUpgrade(state);
}

// The proxy's listeners: node:http / node:https servers on GATEHOUSE_PROXY_LISTEN. Each request
// becomes an Exchange with its listener's facts; Upgrade requests, which Node hands over with
// their raw socket, are taken in here; shutdown closes both kinds of connection.
import { createServer as createHttpServer, ServerResponse, type IncomingMessage, type Server, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { ConfigError, type ListenAddress } from '@gatehouse/core/config.ts';
import type { TlsCredentials } from '@gatehouse/core/tls.ts';
import { onClientError } from './client-errors.ts';
import { Exchange } from './exchange.ts';
import { BODY_400, sendRaw } from './kong-responses.ts';
import type { ProxyRuntime } from './proxy.ts';
import { HandshakeClient } from './websocket.ts';

/** What every request on one listener shares, made once when the listener opens. */
export interface Listener {
  readonly proxy: ProxyRuntime;
  readonly https: boolean;
  /** The listener's port as sent in X-Forwarded-Port (known once listening: port 0 picks one). */
  port: string;
}

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

export class ProxyListeners {
  readonly servers: Server[] = [];
  /** Connections handed over by 'upgrade' events, open until closed (see close()). */
  private readonly upgraded = new Set<Socket>();

  constructor(
    private readonly proxy: ProxyRuntime,
    private readonly options: ServerOptions,
  ) {}

  /** Opens the proxy listeners. `tls` is required when one of them is marked ssl. */
  async listen(addresses: ListenAddress[], tls: TlsCredentials | null): Promise<{ host: string; port: number; ssl: boolean }[]> {
    const out: { host: string; port: number; ssl: boolean }[] = [];
    for (const a of addresses) {
      const listener: Listener = { proxy: this.proxy, https: a.ssl, port: '' };
      const onRequest = (req: IncomingMessage, res: ServerResponse) => new Exchange(listener, req, res, null).receive();
      let server: Server;
      if (a.ssl) {
        if (!tls) throw new Error('an ssl proxy listener needs a certificate');
        server = createHttpsServer({ ...this.options, cert: tls.cert, key: tls.key }, onRequest) as unknown as Server;
      } else server = createHttpServer(this.options, onRequest);
      server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.upgrade(listener, req, socket, head));
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
      listener.port = String(info.port);
      out.push({ host: a.host, port: info.port, ssl: a.ssl });
    }
    return out;
  }

  /**
   * A request with `Connection: upgrade` (Node hands these over apart, with the raw socket). A
   * WebSocket handshake (GET, `Upgrade: websocket`) is routed and passed through the access
   * plugins like any request, then tunnelled (engine.forwardUpgrade). Any other protocol is not
   * switched to: the request is answered as an ordinary one (its Upgrade header is hop-by-hop and
   * dropped), as nginx does under Kong. Either way a response that is not a tunnel ends the connection.
   */
  private upgrade(listener: Listener, req: IncomingMessage, socket: Socket, head: Buffer): void {
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
    new Exchange(listener, req, res, handshake).receive();
  }

  /**
   * Stops listening: connections get 2 s to finish their requests. Upgraded connections (tunnels,
   * handshakes under way) are not the servers' to close: they are closed then.
   */
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
    for (const socket of this.upgraded) socket.destroy();
    this.upgraded.clear();
  }
}

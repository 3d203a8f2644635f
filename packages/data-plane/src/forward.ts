// What the exchange and a forwarding engine need from each other: the upstream a request goes
// to, the request as the engine sees it, and the engine. Everything above it (routing, plugins,
// headers) is engine-agnostic; the one implementation is http-proxy-engine.ts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Balancer, Target } from './balancer.ts';
import type { HandshakeClient } from './websocket.ts';

/** One service's upstream, compiled when a snapshot is applied. */
export interface Upstream {
  protocol: 'http' | 'https';
  path: string | null;
  connectTimeout: number;
  readTimeout: number;
  writeTimeout: number;
  retries: number;
  tlsVerify: boolean;
  /** Picks the target (server) of each attempt. */
  balancer: Balancer;
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
  /** The client's Host header goes upstream (else the target's hostHeader). */
  readonly preserveHost: boolean;
  /**
   * Upstream response headers arrived; runs response-phase plugins and returns the headers for
   * the client as a flat `[name, value, ...]` list. Null: the exchange answered itself.
   */
  onUpstreamResponse(upstream: IncomingMessage): string[] | null;
  /** The upstream response's `Keep-Alive` header, set by onUpstreamResponse (for the pool). */
  readonly upstreamKeepAlive: string | undefined;
  /** The upstream (`target`, the last attempt's) could not be reached or failed before answering. */
  onUpstreamError(kind: UpstreamFailure, err: Error, target: Target): void;
}

export interface ForwardingEngine {
  forward(request: ForwardRequest, upstream: Upstream): void;
  /**
   * A WebSocket handshake (`client`: its connection). The upstream's 101 turns the client's
   * connection into a tunnel of bytes both ways; any other answer is relayed as a response.
   */
  forwardUpgrade(request: ForwardRequest, upstream: Upstream, client: HandshakeClient): void;
  close(): void;
}

// The upstream's response relayed to the client: its head after the response plugins, then
// its body with backpressure (a client that reads slowly holds the upstream back, within
// send_timeout) and its trailers; either side ending early ends the other.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATE, type Attempt } from './retries.ts';

/**
 * Writes the client's response head from the upstream's, after the response plugins. False:
 * nothing to relay (the exchange answered itself, or Node refused a header value and the
 * client got the invalid-response error); the upstream's body is drained.
 */
export function startResponse(state: Attempt, proxyRes: IncomingMessage): boolean {
  const { request } = state;
  const head = request.onUpstreamResponse(proxyRes);
  if (head === null) {
    proxyRes.resume();
    return false;
  }
  try {
    writeHead(request.res, proxyRes, head);
    return true;
  } catch (err) {
    proxyRes.resume();
    state.responded = false;
    request.onUpstreamError('invalid', err as Error, state.target!);
    return false;
  }
}

function writeHead(res: ServerResponse, proxyRes: IncomingMessage, head: string[]): void {
  try {
    res.writeHead(proxyRes.statusCode!, proxyRes.statusMessage || undefined, head);
  } catch (err) {
    // A `Trailer` header on a response the client gets unchunked (HTTP/1.0, a length, HEAD,
    // 204, 304), where trailers cannot go: the response goes without it.
    if ((err as NodeJS.ErrnoException).code !== 'ERR_HTTP_TRAILER_INVALID') throw err;
    const without: string[] = [];
    for (let i = 0; i < head.length; i += 2) if (head[i].toLowerCase() !== 'trailer') without.push(head[i], head[i + 1]);
    res.writeHead(proxyRes.statusCode!, proxyRes.statusMessage || undefined, without);
  }
}

/** Relays the upstream's body to the client, whose head is written (see relayChunk). */
export function relay(state: Attempt, proxyRes: IncomingMessage): void {
  // An upstream response cut short cuts the client's short (the other way: onClientResponseClose).
  (proxyRes as any)[STATE] = state;
  proxyRes.on('close', onUpstreamResponseClose);
  proxyRes.on('data', relayChunk);
  proxyRes.on('end', relayEnd);
}

/**
 * `close` listener of an upstream response (`this`, carrying its attempt like the client's
 * request), shared by every one: cut short (the upstream reset or closed mid-body), it cuts
 * the client's response short too, as nginx does. Without it the client would wait for
 * the rest of the body forever.
 */
function onUpstreamResponseClose(this: IncomingMessage): void {
  if (!this.complete) ((this as any)[STATE] as Attempt | undefined)?.request.res.destroy();
}

/**
 * The upstream response's body goes to the client through listeners shared by every response
 * (`this`, carrying its attempt): what `pipe()` would do, without its per-request setup and
 * teardown of seven listeners. A client that reads slowly pauses the upstream until its
 * response drains; either side closing early is handled by the `close` listeners.
 */
function relayChunk(this: IncomingMessage, chunk: Buffer): void {
  const state = (this as any)[STATE] as Attempt;
  if (!state.request.res.write(chunk)) holdBack(this, state);
}

/**
 * The client's socket is full: stop reading the upstream until it drains. The upstream is then
 * waiting for us, not silent, so its read_timeout stops counting (else a slow client would have
 * its response cut off); instead the client gets send_timeout to take the data, as nginx's
 * send_timeout, and is dropped (with the upstream connection) if it takes nothing for that long.
 */
function holdBack(proxyRes: IncomingMessage, state: Attempt): void {
  const res = state.request.res;
  proxyRes.pause();
  proxyRes.socket?.setTimeout(0);
  res.socket?.setTimeout(state.sendTimeout);
  res.once('drain', onClientDrain);
}

function onClientDrain(this: ServerResponse): void {
  const state = (this.req as any)?.[STATE] as Attempt | undefined;
  const proxyRes = state?.proxyRes;
  if (!proxyRes) return;
  // The proxy server has no idle timeout of its own (server.timeout is 0) to restore.
  this.socket?.setTimeout(0);
  proxyRes.socket?.setTimeout(state.upstream.readTimeout);
  proxyRes.resume();
}

function relayEnd(this: IncomingMessage): void {
  const state = (this as any)[STATE] as Attempt;
  const res = state.request.res;
  if (this.rawTrailers.length !== 0) relayTrailers(this.rawTrailers, res);
  res.end();
  // The end of the response still waits in the client's socket (the client is not reading):
  // send_timeout covers it too, until it is taken.
  const socket = res.socket;
  if (socket !== null && socket.writableLength !== 0) {
    socket.setTimeout(state.sendTimeout);
    res.prependOnceListener('finish', onSentOut);
  }
}

/**
 * `finish` listener, ahead of Node's own: the response was taken, send_timeout is over. Node
 * then sets the keep-alive timeout, or starts a pipelined response, which must not inherit it.
 */
function onSentOut(this: ServerResponse): void {
  this.socket?.setTimeout(0);
}

/**
 * The upstream's trailers (after a chunked body) go on to the client, whose response is chunked
 * too; a client that cannot take them (HTTP/1.0) gets none, which Node decides. If Node refuses
 * one, the trailers are dropped (an empty list clears what was added), not the response.
 */
function relayTrailers(raw: string[], res: ServerResponse): void {
  const trailers: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) trailers.push([raw[i], raw[i + 1]]);
  try {
    res.addTrailers(trailers);
  } catch {
    res.addTrailers([]);
  }
}

// What a client gets when Node's HTTP parser or its timers give up on its request before the
// proxy sees it (the server's 'clientError'): Kong's status and JSON body, then the connection
// closes. Never an exception: whatever a client sends, the worker goes on.
import type { Duplex } from 'node:stream';

function rawAnswer(status: number, reason: string, message: string): string {
  const body = JSON.stringify({ message });
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`;
}

const URI_TOO_LONG = rawAnswer(414, 'URI Too Long', 'URI too long');
const HEADERS_TOO_LARGE = rawAnswer(431, 'Request Header Fields Too Large', 'Request header or cookie too large');
const TIMED_OUT = rawAnswer(408, 'Request Timeout', 'Request timeout');
const BAD_REQUEST = rawAnswer(400, 'Bad Request', 'Bad request');

/**
 * Node reports a head over its limit the same way for a long URL and for large headers. The
 * bytes it was parsing tell them apart: a request line still without its end means the URL.
 */
function inRequestLine(raw: unknown): boolean {
  if (!Buffer.isBuffer(raw)) return false;
  return /^[A-Z]+ /.test(raw.toString('latin1', 0, 16)) && raw.indexOf(10) === -1;
}

function answerFor(err: NodeJS.ErrnoException & { rawPacket?: unknown }): string {
  if (err.code === 'HPE_HEADER_OVERFLOW') return inRequestLine(err.rawPacket) ? URI_TOO_LONG : HEADERS_TOO_LARGE;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return TIMED_OUT;
  return BAD_REQUEST;
}

/** The server's `clientError` listener. */
export function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // A response already under way on this connection cannot be followed by another one.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || socket.destroyed || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  socket.end(answerFor(err));
}

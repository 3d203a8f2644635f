// The answers the gateway gives itself, as Kong gives them: its JSON error bodies, the https
// redirect (or 426) of a route that takes https only, and a plugin's own answer.
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { hasHeader, VIA } from './header-rules.ts';

export const JSON_TYPE = 'application/json; charset=utf-8';

export function jsonBody(message: string): Buffer {
  return Buffer.from(JSON.stringify({ message }));
}

export const BODY_404 = jsonBody('no Route matched with those values');
const BODY_426 = jsonBody('Please use HTTPS protocol');
export const BODY_500 = jsonBody('An unexpected error occurred');
export const BODY_502 = jsonBody('An invalid response was received from the upstream server');
export const BODY_503_NO_SERVICE = jsonBody('no Service found with those values');
export const BODY_503_DNS = jsonBody('name resolution failed');
export const BODY_504 = jsonBody('The upstream server is timing out');
export const BODY_413 = jsonBody('Request size limit exceeded');
export const BODY_400 = jsonBody('Bad request');
export const BODY_405 = jsonBody('Method not allowed');

export function sendRaw(res: ServerResponse, status: number, body: Buffer, requestId: string | null, extra?: Record<string, string>) {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  // Headers a plugin set for the response that did not happen (it failed halfway) are not this one's.
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  const headers: Record<string, string | number> = { 'content-type': JSON_TYPE, 'content-length': body.length, via: VIA };
  if (requestId) headers['x-request-id'] = requestId;
  if (extra) Object.assign(headers, extra);
  // Named afresh: a head Node refused (a bad upstream header) may have left the upstream's reason.
  res.writeHead(status, STATUS_CODES[status], headers);
  res.end(body);
}

/** A route that takes https only, asked over http: its redirect status, or Kong's 426. `url`: path and query. */
export function redirectToHttps(req: IncomingMessage, res: ServerResponse, status: number, host: string, url: string, requestId: string) {
  req.resume();
  if (status === 426) {
    return sendRaw(res, 426, BODY_426, requestId, { connection: 'Upgrade', upgrade: 'TLS/1.2, HTTP/1.1' });
  }
  const body = Buffer.alloc(0);
  res.writeHead(status, { location: `https://${host}${url}`, 'content-length': 0, via: VIA, 'x-request-id': requestId });
  res.end(body);
}

/**
 * Sets the head of a plugin's answer (respond()) and returns its body: objects as JSON, strings
 * as text. Throws, with nothing sent, for a header Node refuses.
 */
export function pluginAnswer(res: ServerResponse, body: unknown, requestId: string, headers?: Record<string, string>): Buffer {
  let payload: Buffer;
  let type: string | null = null;
  if (body === undefined || body === null) payload = Buffer.alloc(0);
  else if (Buffer.isBuffer(body)) payload = body;
  else if (typeof body === 'string') {
    payload = Buffer.from(body);
    type = 'text/plain; charset=utf-8';
  } else {
    payload = Buffer.from(JSON.stringify(body));
    type = JSON_TYPE;
  }
  if (type && !hasHeader(headers, 'content-type')) res.setHeader('content-type', type);
  res.setHeader('content-length', payload.length);
  res.setHeader('via', VIA);
  res.setHeader('x-request-id', requestId);
  if (headers) for (const k in headers) res.setHeader(k, headers[k]);
  return payload;
}

// Request ids: the client's X-Request-Id when it is well formed, else one made here. Sent
// upstream, returned to the client and logged with errors (Kong: X-Kong-Request-Id).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const REQUEST_ID_OK = /^[\w.:@/+=-]{1,200}$/;

/**
 * Ids for requests that bring none, shaped as a UUID: 80 random bits per process, then a 16-bit
 * epoch (4 hex digits) and a counter (8). Unique without a randomUUID() per request, which was
 * measurable on the hot path. The counter runs from 2^28 to 2^30: a small integer whose hex form
 * always has 8 digits (a larger number's toString(16) goes through floating-point division).
 */
const REQUEST_ID_PREFIX = randomBytes(10)
  .toString('hex')
  .replace(/^(.{8})(.{4})(.{4})(.{4})$/, '$1-$2-$3-$4-');
const COUNTER_FIRST = 2 ** 28;
const COUNTER_END = 2 ** 30;
let requestCounter = COUNTER_FIRST;
let requestEpoch = 0;
let requestEpochHex = '0000';
function nextRequestId(): string {
  if (requestCounter === COUNTER_END) {
    requestCounter = COUNTER_FIRST;
    requestEpoch = (requestEpoch + 1) & 0xffff;
    requestEpochHex = requestEpoch.toString(16).padStart(4, '0');
  }
  return REQUEST_ID_PREFIX + requestEpochHex + (requestCounter++).toString(16);
}

/** The request's id: the one it brought when well formed, else a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID_OK.test(incoming) ? incoming : nextRequestId();
}

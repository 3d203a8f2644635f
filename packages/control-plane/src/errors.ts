// Maps every error an admin request can meet to a Kong-shaped answer. Bad input is rejected
// before it reaches the database (KongError); what is left here is the database being away
// (503), constraint races (409/400) and real bugs (500, logged with the stack).
import { KongError } from '@gatehouse/core';

const UNAVAILABLE_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1011', 'P1017', 'P2024']);
const UNAVAILABLE_TEXT =
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|Connection terminated|connection timeout|timeout exceeded when trying to connect|Can't reach database|DatabaseNotReachable|ConnectionClosed|Connection closed|terminating connection|the database system is (starting up|shutting down)|Client has encountered a connection error|Transaction API error|Unable to start a transaction/i;

function chain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: any = err;
  for (let i = 0; e && i < 6; i++) {
    out.push(e);
    e = e.cause ?? e.meta?.driverAdapterError ?? e.meta?.driverAdapterError?.cause;
  }
  return out;
}

/** True when the error means "cannot talk to the database right now". */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (const e of chain(err) as any[]) {
    if (!e) continue;
    if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
    if (typeof e.code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|57P01|57P02|57P03|08\d\d\d)$/.test(e.code)) return true;
    const kind = e.kind ?? e.cause?.kind;
    if (kind === 'DatabaseNotReachable' || kind === 'ConnectionClosed' || kind === 'SocketTimeout') return true;
    if (typeof e.message === 'string' && UNAVAILABLE_TEXT.test(e.message)) return true;
  }
  return false;
}

function shortReason(err: unknown): string {
  for (const e of chain(err) as any[]) {
    const code = e?.code ?? e?.cause?.code;
    if (code === 'ECONNREFUSED') return 'connection refused';
    if (code === 'ECONNRESET') return 'connection reset';
    if (code === 'ETIMEDOUT') return 'connection timed out';
  }
  // Prisma wraps the reason in the call site and a code frame ("Invalid `x.findMany()` invocation
  // in\n<file>\n<code>\n\n<reason>"): the reason is the last line.
  const lines = String((err as Error)?.message ?? err).split('\n').map((l) => l.trim()).filter(Boolean);
  const reason = lines.length && /^Invalid `/.test(lines[0]) ? lines[lines.length - 1] : lines[0];
  return (reason || 'unreachable').replace(/`/g, '').slice(0, 200);
}

export interface MappedError {
  status: number;
  body: Record<string, unknown>;
  /** Set for the 500s: log it with the stack. */
  unexpected?: boolean;
}

export function mapError(err: unknown): MappedError {
  if (err instanceof KongError) return { status: err.status, body: err.body };
  if (isDatabaseUnavailable(err)) {
    return { status: 503, body: { message: `database unavailable: ${shortReason(err)}` } };
  }
  const e = err as any;
  if (e?.code === 'P2021' || e?.code === 'P2022' || /relation "[^"]+" does not exist/.test(String(e?.message))) {
    return { status: 503, body: { message: 'database unavailable: the schema is not migrated (run `gatehouse migrations up`)' } };
  }
  // Values the entity's schema let through but Postgres cannot store (a plugin entity without
  // bounds): out-of-range integers, over-long values, keys too long for a unique index.
  const pgCode: string | undefined = e?.meta?.driverAdapterError?.cause?.originalCode ?? e?.meta?.driverAdapterError?.cause?.code;
  if (e?.code === 'P2020' || e?.code === 'P2000' || e?.code === 'P2033' || pgCode === '54000' || (pgCode && /^22/.test(pgCode))) {
    const reason =
      pgCode === '54000'
        ? 'a value is too long for a unique field'
        : String(e?.meta?.driverAdapterError?.cause?.originalMessage ?? 'a value cannot be stored').slice(0, 200);
    return { status: 400, body: { code: 2, name: 'schema violation', message: `schema violation (${reason})`, fields: { '@entity': [reason] } } };
  }
  if (e?.code === 'P2002') {
    return { status: 409, body: { code: 5, name: 'unique constraint violation', message: 'UNIQUE violation detected' } };
  }
  if (e?.code === 'P2003') {
    return { status: 400, body: { code: 4, name: 'foreign key violation', message: 'foreign key violation' } };
  }
  if (e?.code === 'P2025') return { status: 404, body: { message: 'Not found' } };
  // Errors raised by express/Node for a malformed request (bad URI escapes, aborted bodies).
  const status = Number(e?.status ?? e?.statusCode);
  if (status >= 400 && status < 500) {
    return { status, body: { message: status === 413 ? 'request body too large' : 'Bad request' } };
  }
  if (err instanceof URIError) return { status: 400, body: { message: 'Bad request' } };
  return { status: 500, body: { message: 'An unexpected error occurred' }, unexpected: true };
}

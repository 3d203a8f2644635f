// The admin API as the admin commands reach it: its address (--admin-url, GATEHOUSE_ADMIN_URL,
// default http://127.0.0.1:8001), the token (GATEHOUSE_ADMIN_TOKEN, sent as a Bearer) and
// Kong's paging. Bodies go out as the user gave them (form fields from -p, JSON from --stdin),
// so the API's own validation and messages decide; a Kong-shaped error comes back as an
// AdminApiError with the API's message, a connection failure as one naming the URL tried.
// Only node:http(s): no server code is loaded.

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8001';
const TIMEOUT_MS = 60_000;

/** Form fields (`-p`, in order, Kong's form notation) or a JSON object (`--stdin`). */
export type RequestBody = { form: [string, string][] } | { json: Record<string, unknown> };

export type Entity = Record<string, unknown>;

export interface Page {
  data: Entity[];
  next: string | null;
  offset?: string;
}

/** An answer of the admin API with an error status; the message is the API's. */
export class AdminApiError extends Error {
  override name = 'AdminApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly fields?: unknown,
  ) {
    super(message);
  }
}

export interface AdminClient {
  /** The address requests go to (what an unreachable-API message names). */
  readonly baseUrl: string;
  request(method: string, path: string, body?: RequestBody): Promise<unknown>;
  /** The first page of a collection, or with `all` every page (following `next`) as one. */
  list(path: string, all: boolean): Promise<Page>;
}

/** Builds the client from --admin-url (or GATEHOUSE_ADMIN_URL) and GATEHOUSE_ADMIN_TOKEN. */
export function adminClient(adminUrl: string | undefined, env: NodeJS.ProcessEnv = process.env): AdminClient {
  const given = adminUrl || env.GATEHOUSE_ADMIN_URL || DEFAULT_ADMIN_URL;
  let base: URL;
  try {
    base = new URL(given);
  } catch {
    throw new Error(`the admin API URL '${given}' is not a URL (e.g. ${DEFAULT_ADMIN_URL})`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`the admin API URL '${given}' must be http:// or https://`);
  // A path prefix (an admin API behind a reverse proxy) is kept in front of every path.
  const baseUrl = `${base.origin}${base.pathname.replace(/\/+$/, '')}`;
  const token = env.GATEHOUSE_ADMIN_TOKEN;

  async function request(method: string, path: string, body?: RequestBody): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body && 'json' in body) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(body.form).toString();
    }
    let answer: { status: number; text: string };
    try {
      answer = await send(new URL(`${baseUrl}${path}`), method, headers, payload);
    } catch (err) {
      throw new Error(`cannot reach the admin API at ${baseUrl} (${reason(err)}); set --admin-url or GATEHOUSE_ADMIN_URL`);
    }
    let parsed: unknown = undefined;
    try {
      parsed = answer.text ? JSON.parse(answer.text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (answer.status >= 400) throw apiError(answer.status, parsed, Boolean(token));
    return parsed;
  }

  async function list(path: string, all: boolean): Promise<Page> {
    const first = (await request('GET', path)) as Page;
    if (!all) return first;
    const data = [...first.data];
    // `next` is a path from the API's root, offset included.
    for (let next = first.next; next; ) {
      const page = (await request('GET', next)) as Page;
      data.push(...page.data);
      next = page.next;
    }
    return { data, next: null };
  }

  return { baseUrl, request, list };
}

function apiError(status: number, body: unknown, tokenSent: boolean): AdminApiError {
  const kong = body && typeof body === 'object' ? (body as { message?: unknown; fields?: unknown }) : {};
  let message = typeof kong.message === 'string' ? kong.message.replace(/\s*\n\s*/g, ' ') : `the admin API answered HTTP ${status}`;
  if (status === 401 && !tokenSent) message += ' (the admin API wants a token: set GATEHOUSE_ADMIN_TOKEN)';
  return new AdminApiError(status, message, kong.fields);
}

/** One request with node:http(s); the whole answer as text. */
async function send(url: URL, method: string, headers: Record<string, string>, payload?: string): Promise<{ status: number; text: string }> {
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, timeout: TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: `no answer within ${TIMEOUT_MS / 1000} s` })));
    req.on('error', reject);
    req.end(payload);
  });
}

/** ECONNREFUSED, ENOTFOUND, …: the code of the error, or of the first of several (IPv6 and IPv4 tried). */
function reason(err: unknown): string {
  const e = err as { code?: string; message?: string; errors?: { code?: string }[] };
  return e?.code ?? e?.errors?.find((x) => x.code)?.code ?? e?.message ?? 'failed';
}

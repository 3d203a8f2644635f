// Route regexes (`~` paths, `~*` header values) as the router compiles them, and the check that
// keeps super-linear backtracking out of the proxy. V8 matches them by backtracking on every
// request: a regex whose matching time grows faster than linearly with the input (`(a+)+$`
// exponentially, `\d+\d+x` quadratically) lets one request block a data plane's event loop.
// recheck decides it (automata theory, and fuzzing where that cannot decide, e.g. lookarounds
// and backreferences). Only regexes it shows to be linear pass: the admin API refuses the rest
// and a data plane leaves out a stored route with one proven to backtrack (not an undecided
// one: on a busy data plane an analysis can run out of time, and routing must not change at
// random). Neither is ever done per request.
import { LRUCache } from 'lru-cache';
import type { RouteEntity } from './entities.ts';

/** A `~/…` path: anchored at the start of the (normalised) request path. */
export function pathRegex(path: string): RegExp {
  return new RegExp(`^(?:${path.slice(1)})`);
}

/** A `~*…` header value: case-insensitive, anywhere in the value. */
export function headerRegex(value: string): RegExp {
  return new RegExp(value.slice(2), 'i');
}

export const isRegexPath = (path: string) => path.startsWith('~');
export const isRegexHeaderValue = (value: string) => value.startsWith('~*');

/** Every regex of a route with the text it was written as. Throws on one that does not compile. */
export function routeRegexes(route: Pick<RouteEntity, 'paths' | 'headers'>): { text: string; regex: RegExp }[] {
  const out: { text: string; regex: RegExp }[] = [];
  for (const path of route.paths ?? []) if (isRegexPath(path)) out.push({ text: path, regex: pathRegex(path) });
  for (const values of Object.values(route.headers ?? {})) {
    for (const value of values ?? []) if (isRegexHeaderValue(value)) out.push({ text: value, regex: headerRegex(value) });
  }
  return out;
}

/** `proven`: recheck found the super-linear case, rather than running out of time or means to decide. */
export type BacktrackingVerdict = { safe: true } | { safe: false; proven: boolean; reason: string };

/** recheck's own limit on one analysis; typical route regexes take 2 to 200 ms. */
export const CHECK_TIMEOUT_MS = 10_000;

/** Verdicts by flags and source: each distinct regex is analysed once per process. */
const verdicts = new LRUCache<string, Promise<BacktrackingVerdict>>({ max: 10_000 });
let queue: Promise<unknown> = Promise.resolve();

/**
 * Whether `regex` matches in time linear in its input. Checks run one at a time, so that each
 * one's time limit counts its own analysis only, not its wait behind others.
 */
export function checkBacktracking(regex: RegExp): Promise<BacktrackingVerdict> {
  const key = `${regex.flags}/${regex.source}`;
  const known = verdicts.get(key);
  if (known) return known;
  const run = queue.then(() => analyse(regex.source, regex.flags));
  queue = run.catch(() => {});
  const verdict = run.then(({ verdict, final }) => {
    // An analysis cut short may finish another time; every other answer stands.
    if (!final) verdicts.delete(key);
    return verdict;
  });
  verdicts.set(key, verdict);
  return verdict;
}

async function analyse(source: string, flags: string): Promise<{ verdict: BacktrackingVerdict; final: boolean }> {
  const unknown = (why: string, final: boolean) => ({ verdict: { safe: false as const, proven: false, reason: `it could not be shown free of super-linear backtracking (${why})` }, final });
  // recheck answers through a helper process; this bounds a helper that stopped answering.
  const abort = new AbortController();
  const guard = setTimeout(() => abort.abort(), CHECK_TIMEOUT_MS + 2000);
  try {
    const { check } = await import('recheck');
    const result = await check(source, flags, { timeout: CHECK_TIMEOUT_MS, signal: abort.signal });
    if (result.status === 'safe') return { verdict: { safe: true }, final: true };
    if (result.status === 'vulnerable') {
      const reason =
        result.complexity.type === 'exponential'
          ? "catastrophic backtracking: matching time can grow exponentially with the input's length"
          : `super-linear backtracking: matching time can grow as the input's length to the power ${result.complexity.degree}`;
      return { verdict: { safe: false, proven: true, reason }, final: true };
    }
    const error = result.error;
    if (error.kind === 'timeout' || error.kind === 'cancel') return unknown(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`, false);
    return unknown(error.message, error.kind !== 'unexpected');
  } catch (err) {
    return unknown((err as Error).message, false);
  } finally {
    clearTimeout(guard);
  }
}

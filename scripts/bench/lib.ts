// Shared pieces of the bench cases: the result shape, the separate-process load generator,
// child processes that print one JSON line when ready, and a Gatehouse data plane process fed
// with a snapshot written straight into Redis (the control plane's wire contract).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { availableParallelism } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { SNAPSHOT_KEYS } from '@gatehouse/core/snapshot.ts';
import type { SharedStore } from '@gatehouse/core/store/types.ts';

export const root = join(import.meta.dirname, '../..');

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  target: string;
  pass: boolean;
  detail?: Record<string, unknown>;
}

export interface BenchOptions {
  /** Measured duration of each load run (after a 1 s warm-up). */
  durationMs: number;
  concurrency: number;
  /** Worker processes of every proxy compared (Gatehouse and the bare http-proxy floor). */
  workers: number;
}

/** A bench case: scripts/bench/run.ts runs every registered one in order. */
export interface BenchCase {
  name: string;
  run(options: BenchOptions): Promise<BenchResult[]>;
}

export interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  statuses: Record<string, number>;
  p50: number;
  p99: number;
}

/**
 * Where the processes of a throughput comparison run, when the machine allows (two cores or more
 * and `taskset`): the proxy under test alone on core 0, the load generator and the upstream on
 * the others. Without it the three share every core and the proxies' figures swing with how the
 * scheduler happens to place them. Null: no placement (one core, or no taskset).
 */
export const placement: { proxy: string; rest: string } | null = (() => {
  const cores = availableParallelism();
  if (cores < 2 || spawnSync('taskset', ['-c', '0', 'true']).status !== 0) return null;
  return { proxy: '0', rest: cores === 2 ? '1' : `1-${cores - 1}` };
})();

/**
 * Moves a running process, all its threads and its child processes (a data plane's cluster
 * workers) onto `cpus` (a taskset list such as `1-3`). Children forked later inherit it.
 */
export function pin(pid: number, cpus: string): void {
  for (const p of [pid, ...childrenOf(pid)]) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(p)]);
    if (r.status !== 0) throw new Error(`taskset could not pin ${p}: ${r.stderr}`);
  }
}

/** Process ids whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** Closed-loop keep-alive load from a separate process (scripts/bench/load.mjs), optionally on `cpus`. */
export function load(options: { url: string; method?: string; headers?: Record<string, string>; body?: string | null; durationMs: number; warmupMs?: number; concurrency: number; cpus?: string }): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const { cpus, ...loadOptions } = options;
    const args = [join(import.meta.dirname, 'load.mjs'), JSON.stringify(loadOptions)];
    const child = cpus
      ? spawn('taskset', ['-c', cpus, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
      : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`load generator exited with ${code}`))));
  });
}

export interface Child {
  child: ChildProcess;
  info: any;
  output: string;
  stop(): Promise<void>;
}

function track(child: ChildProcess): Child {
  const c: Child = {
    child,
    info: null,
    output: '',
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
  child.stdout?.on('data', (d) => (c.output += d));
  child.stderr?.on('data', (d) => (c.output += d));
  return c;
}

/** Starts `node <args>` and resolves with the first JSON line it prints. */
export function spawnJson(args: string[], env: Record<string, string> = {}): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const c = track(child);
    const onData = () => {
      for (const line of c.output.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          c.info = JSON.parse(line);
          child.stdout!.off('data', onData);
          return resolve(c);
        } catch {}
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${c.output.slice(-2000)}`)));
  });
}

/** `node bin/gatehouse.js <command>` with env; resolves once it printed `readyPattern` (null: at once). */
export function gatehouse(command: string, env: Record<string, string>, readyPattern: RegExp | null, timeoutMs = 60_000): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bin/gatehouse.js'), command], {
      cwd: root,
      env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const c = track(child);
    const timer = setTimeout(() => reject(new Error(`gatehouse ${command} not ready after ${timeoutMs} ms: ${c.output.slice(-2000)}`)), timeoutMs);
    const check = () => {
      if (!readyPattern || readyPattern.test(c.output)) {
        clearTimeout(timer);
        resolve(c);
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse ${command} exited with ${code}: ${c.output.slice(-2000)}`));
    });
    check();
  });
}

export async function publishSnapshot(store: SharedStore, snap: Snapshot): Promise<void> {
  await store.set(SNAPSHOT_KEYS.version(snap.version), JSON.stringify(snap), { ttlMs: 10 * 60_000 });
  const pointer = JSON.stringify({ version: snap.version, hash: snap.hash });
  await store.set(SNAPSHOT_KEYS.latest, pointer, { ttlMs: 10 * 60_000 });
  await store.publish(SNAPSHOT_KEYS.channel, pointer);
}

export function get(port: number, path: string, agent?: import('node:http').Agent, headers?: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path, agent: agent ?? false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    r.setTimeout(5000, () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end();
  });
}

export async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const round = (v: number, digits = 1) => Number(v.toFixed(digits));

/** CPU time (user + system, ms) a process and its children (cluster workers) used so far, from /proc. */
export function cpuMs(pid: number): number {
  const ticks = (p: number) => {
    try {
      const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      return Number(f[11]) + Number(f[12]);
    } catch {
      return 0;
    }
  };
  let total = ticks(pid);
  for (const child of childrenOf(pid)) total += ticks(child);
  return total * 10; // USER_HZ = 100
}


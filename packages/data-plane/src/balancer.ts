// Between the exchange and forwarding: which server (target) each attempt of a request goes to,
// and what came of it. Every service's upstream has a balancer, made when the snapshot is
// compiled; each attempt, the first and every retry, asks it for a target.
import type { Agent } from 'node:http';
import type { UpstreamFailure } from './forward.ts';

/** One server an upstream's requests can go to (Kong's target). */
export interface Target {
  readonly host: string;
  readonly port: number;
  /** Host header sent upstream when the route does not preserve the client's. */
  readonly hostHeader: string;
  /** The keep-alive agent of this server's connections. */
  readonly agent: Agent;
}

/** What came of an attempt: the status the target answered with, or how it failed. */
export type AttemptOutcome = number | UpstreamFailure;

export interface Balancer {
  /** The target of a request's attempt number `attempt` (0: the first, then each retry). */
  pick(attempt: number): Target;
  /** What came of an attempt at `target`, for a balancer that steers by health. */
  report(target: Target, outcome: AttemptOutcome): void;
}

/** `host:port` as a target, its Host header without the scheme's default port. */
export function serverTarget(protocol: 'http' | 'https', host: string, port: number, agent: Agent): Target {
  const defaultPort = protocol === 'https' ? 443 : 80;
  const bracketed = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return { host, port, hostHeader: port === defaultPort ? bracketed : `${bracketed}:${port}`, agent };
}

/** A service's own host and port: every attempt goes there, whatever came of the last. */
export class SingleTarget implements Balancer {
  constructor(private readonly target: Target) {}

  pick(): Target {
    return this.target;
  }

  report(): void {}
}

// The proxy runtime: the compiled configuration, swapped atomically on each snapshot, and what
// outlives snapshots (plugin handlers, the forwarding engine, the agent pool, the listeners).
// Requests go from a listener (listeners.ts) through an Exchange (exchange.ts). Nothing here
// touches express, Prisma or pg.
import type { Server } from 'node:http';
import type { ListenAddress } from '@gatehouse/core/config.ts';
import type { Logger } from '@gatehouse/core/logger.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import type { TlsCredentials } from '@gatehouse/core/tls.ts';
import { AgentPool } from './agent-pool.ts';
import { compileSnapshot, type CompiledConfig } from './compile.ts';
import type { ForwardingEngine } from './forward.ts';
import { HttpProxyEngine } from './http-proxy-engine.ts';
import { jsonBody } from './kong-responses.ts';
import { ProxyListeners } from './listeners.ts';
import type { PluginRuntime } from './plugins.ts';
import { TrustedIps } from './trusted-ips.ts';

// The proxy tests take it from here.
export { IDENTITY_HEADERS } from './header-rules.ts';

export interface ProxyRuntimeOptions {
  logger: Logger;
  plugins: PluginRuntime;
  trustedIps: string[];
  /** For the default engine: see HttpProxyEngineOptions. */
  sendTimeout?: number;
  /** nginx's client_header_timeout (ms): the longest a client may take to send a request's head. Default 60 s. */
  clientHeaderTimeout?: number;
  /** The longest a client may take to send a whole request, head and body (ms; 0: no limit). Default 300 s. */
  clientRequestTimeout?: number;
  /** Shown in the 503 while no configuration is loaded, e.g. `Redis at redis://host:6379`. */
  waitingFor: string;
  engine?: ForwardingEngine;
}

export class ProxyRuntime {
  readonly logger: Logger;
  readonly engine: ForwardingEngine;
  readonly plugins: PluginRuntime;
  /** GATEHOUSE_TRUSTED_IPS: the peers whose X-Forwarded-* are believed. */
  readonly trusted: TrustedIps;
  /** The 503's body while no configuration is loaded. */
  readonly noConfigBody: Buffer;
  private readonly agents = new AgentPool();
  private current: CompiledConfig | null = null;
  private readonly listeners: ProxyListeners;
  private applying: Promise<unknown> = Promise.resolve();

  constructor(options: ProxyRuntimeOptions) {
    this.logger = options.logger;
    this.plugins = options.plugins;
    this.engine = options.engine ?? new HttpProxyEngine({ sendTimeout: options.sendTimeout });
    this.trusted = new TrustedIps(options.trustedIps);
    this.noConfigBody = jsonBody(`no configuration loaded yet: waiting for the control plane (${options.waitingFor})`);
    this.listeners = new ProxyListeners(this, {
      headersTimeout: options.clientHeaderTimeout ?? 60_000,
      requestTimeout: options.clientRequestTimeout ?? 300_000,
      // How often Node looks for requests past those timeouts (its default, 30 s, let a 60 s
      // header timeout fire at 83 s).
      connectionsCheckingInterval: 1000,
    });
  }

  get config(): CompiledConfig | null {
    return this.current;
  }

  /** The listening servers (the tests watch their connections). */
  get servers(): Server[] {
    return this.listeners.servers;
  }

  /**
   * Compiles `snapshot` and swaps it in. Serialised: a later call waits for an earlier one.
   * Throws (keeping the current config) if a handler cannot be created or refuses it.
   */
  apply(snapshot: Snapshot): Promise<CompiledConfig> {
    const run = this.applying.then(async () => {
      await this.plugins.ensure(new Set(snapshot.plugins.filter((p) => p.enabled).map((p) => p.name)));
      this.plugins.notifySnapshot(snapshot);
      const compiled = compileSnapshot(snapshot, this.plugins, this.agents);
      this.current = compiled;
      const grace = Math.min(
        Math.max(60_000, ...[...compiled.upstreams.values()].map((u) => u.readTimeout + u.connectTimeout)),
        15 * 60_000,
      );
      this.agents.retain(compiled.agentKeys, grace);
      return compiled;
    });
    this.applying = run.catch(() => {});
    return run;
  }

  /** Opens the proxy listeners. `tls` is required when one of them is marked ssl. */
  listen(addresses: ListenAddress[], tls: TlsCredentials | null): Promise<{ host: string; port: number; ssl: boolean }[]> {
    return this.listeners.listen(addresses, tls);
  }

  async close(): Promise<void> {
    // The listeners and their upgraded connections go before the upstream connections do: a
    // handshake cut off there would be tried again.
    await this.listeners.close();
    this.engine.close();
    this.agents.destroy();
    await this.plugins.close();
  }
}

// GATEHOUSE_TRUSTED_IPS, as Kong's trusted_ips: addresses and CIDRs (IPv4 and IPv6) whose
// X-Forwarded-* headers are believed. `0.0.0.0/0,::/0` trusts everyone; empty trusts no one.
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { LRUCache } from 'lru-cache';

/** The TCP peer's address, whose trust is checked: an IPv4-mapped IPv6 one shown as IPv4. */
export function peerAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

export class TrustedIps {
  private readonly list = new BlockList();
  readonly empty: boolean;
  private readonly all: boolean;
  /**
   * Answers by address: BlockList.check costs about 2 µs a call (it builds a SocketAddress),
   * and the same few load-balancer and client addresses come back request after request.
   */
  private readonly answers = new LRUCache<string, boolean>({ max: 10_000 });

  constructor(entries: string[]) {
    let count = 0;
    let v4all = false;
    let v6all = false;
    for (const raw of entries) {
      const entry = raw.trim();
      if (!entry) continue;
      const slash = entry.indexOf('/');
      const addr = slash === -1 ? entry : entry.slice(0, slash);
      const family = isIP(addr);
      if (family === 0) throw new Error(`GATEHOUSE_TRUSTED_IPS: '${entry}' is not an IP address or CIDR`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (slash === -1) this.list.addAddress(addr, type);
      else {
        const bits = Number(entry.slice(slash + 1));
        if (!Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) {
          throw new Error(`GATEHOUSE_TRUSTED_IPS: '${entry}' has an invalid prefix length`);
        }
        this.list.addSubnet(addr, bits, type);
        if (bits === 0) family === 4 ? (v4all = true) : (v6all = true);
      }
      count++;
    }
    this.empty = count === 0;
    this.all = v4all && v6all;
  }

  /** Whether `address` (as node reports it, IPv4-mapped IPv6 included) is trusted. */
  has(address: string | undefined): boolean {
    if (this.empty || !address) return false;
    if (this.all) return true;
    const known = this.answers.get(address);
    if (known !== undefined) return known;
    const answer = this.check(address);
    this.answers.set(address, answer);
    return answer;
  }

  private check(address: string): boolean {
    if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice(7);
    const family = isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * The client address behind a trusted peer: X-Forwarded-For read from the right, skipping
   * trusted hops (nginx's real_ip_recursive); the leftmost when every hop is trusted.
   */
  clientIp(peer: string, xff: string | string[] | undefined): string {
    if (!xff) return peer;
    const parts = (Array.isArray(xff) ? xff.join(',') : xff).split(',');
    for (let i = parts.length - 1; i >= 0; i--) {
      const hop = parts[i].trim();
      if (!hop) continue;
      if (isIP(hop) === 0) return peer;
      if (!this.has(hop) || i === 0) return hop;
    }
    return peer;
  }
}

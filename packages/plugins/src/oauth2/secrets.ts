// Client secrets are never stored in plaintext (house rule; Kong keeps them in clear unless
// hash_secret is set):
//   hash_secret = true  → bcrypt ("$2b$10$…"), slow on purpose;
//   hash_secret = false → "$sha256$<salt hex>$<sha256(salt + secret) hex>", fast.
// Kong's own PHC form ("$pbkdf2-sha512$i=…,l=…$salt$hash") is verified too, so credentials
// exported from Kong keep working.
import { createHash, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import bcrypt from 'bcrypt';
import { LRUCache } from 'lru-cache';
import { safeEqual, sha256Hex } from '@gatehouse/core/crypto.ts';

const pbkdf2Async = promisify(pbkdf2);

export const BCRYPT_COST = 10;

export async function hashSecret(secret: string, slow: boolean): Promise<string> {
  if (slow) return bcrypt.hash(secret, BCRYPT_COST);
  const salt = randomBytes(16).toString('hex');
  return `$sha256$${salt}$${sha256Hex(salt + secret)}`;
}

/** True when `stored` looks like one of our (or Kong's) hash forms rather than a plaintext. */
export function isHashedSecret(stored: string): boolean {
  return /^\$(2[aby]|sha256|pbkdf2-sha512)\$/.test(stored);
}

async function verifyUncached(stored: string, presented: string): Promise<boolean> {
  if (stored.startsWith('$sha256$')) {
    const [, , salt, hex] = stored.split('$');
    return safeEqual(sha256Hex(salt + presented), hex ?? '');
  }
  if (/^\$2[aby]\$/.test(stored)) return bcrypt.compare(presented, stored);
  if (stored.startsWith('$pbkdf2-sha512$')) {
    const m = /^\$pbkdf2-sha512\$i=(\d+),l=(\d+)\$([^$]+)\$([^$]+)$/.exec(stored);
    if (!m) return false;
    const salt = Buffer.from(m[3], 'base64');
    const derived = await pbkdf2Async(presented, salt, Number(m[1]), Number(m[2]), 'sha512');
    return safeEqual(derived.toString('base64').replace(/=+$/, ''), m[4].replace(/=+$/, ''));
  }
  return false;
}

/**
 * Verifies presented client secrets. Slow hashes are remembered after a *successful* check only,
 * keyed by sha256(credential id, stored hash, presented secret): a changed secret or hash never
 * matches an old entry, and a wrong secret is always checked in full. Concurrent checks of the
 * same triple share one bcrypt run.
 */
export class SecretVerifier {
  private readonly positive = new LRUCache<string, true>({ max: 10_000, ttl: 10 * 60_000 });
  private readonly inflight = new Map<string, Promise<boolean>>();

  async verify(credentialId: string, stored: string, presented: string | undefined | null): Promise<boolean> {
    if (typeof presented !== 'string' || !stored) return false;
    if (stored.startsWith('$sha256$')) return verifyUncached(stored, presented);
    const key = createHash('sha256').update(credentialId).update('\0').update(stored).update('\0').update(presented).digest('hex');
    if (this.positive.get(key)) return true;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = verifyUncached(stored, presented).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const ok = await pending;
    if (ok) this.positive.set(key, true);
    return ok;
  }
}

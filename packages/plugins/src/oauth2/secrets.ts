// Client secrets are never stored in plaintext (house rule; Kong keeps them in clear unless
// hash_secret is set):
//   hash_secret = true  → "$bcrypt-hmac-sha256$2b$10$…": bcrypt, slow on purpose, of a pre-hash
//                         of the secret (below);
//   hash_secret = false → "$sha256$<salt hex>$<sha256(salt + secret) hex>", fast.
// Kong's own PHC form ("$pbkdf2-sha512$i=…,l=…$salt$hash") and plain bcrypt strings ("$2b$…",
// written by earlier versions or imported) are verified too, so existing credentials keep working.
//
// Why the pre-hash: bcrypt reads only the first 72 bytes of its input, so with a plain bcrypt
// hash "x"*72 + "anything" authenticates as "x"*72 + "the real tail". New hashes therefore
// bcrypt base64(HMAC-SHA256(PREHASH_KEY, secret)) instead: 44 ASCII bytes whatever the secret's
// length, every byte of the secret counting, and no NUL byte for bcrypt to stop at. The key is
// fixed and public; it is there for domain separation (the bcrypt input is not a bare SHA-256
// of the secret that could have leaked elsewhere), not as a pepper. The "$bcrypt-hmac-sha256"
// prefix, followed by the bcrypt string itself, tells these hashes from plain bcrypt ones. Plain
// bcrypt hashes are still verified as before (first 72 bytes): their plaintext is unknown, so
// they cannot be converted; setting the secret again (client_secret with hash_secret) writes the
// new form.
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import bcrypt from 'bcrypt';
import { LRUCache } from 'lru-cache';
import { safeEqual, sha256Hex } from '@gatehouse/core/crypto.ts';

const pbkdf2Async = promisify(pbkdf2);

export const BCRYPT_COST = 10;

/** Prefix of pre-hashed bcrypt hashes; the bcrypt string ("$2b$…") follows it. */
const BCRYPT_PREHASHED = '$bcrypt-hmac-sha256';
const PREHASH_KEY = 'gatehouse oauth2 client_secret bcrypt pre-hash v1';

function prehash(secret: string): string {
  return createHmac('sha256', PREHASH_KEY).update(secret, 'utf8').digest('base64');
}

export async function hashSecret(secret: string, slow: boolean): Promise<string> {
  if (slow) return `${BCRYPT_PREHASHED}${await bcrypt.hash(prehash(secret), BCRYPT_COST)}`;
  const salt = randomBytes(16).toString('hex');
  return `$sha256$${salt}$${sha256Hex(salt + secret)}`;
}

/** True when `stored` looks like one of our (or Kong's) hash forms rather than a plaintext. */
export function isHashedSecret(stored: string): boolean {
  return /^\$(2[aby]|sha256|pbkdf2-sha512|bcrypt-hmac-sha256\$2[aby])\$/.test(stored);
}

async function verifyUncached(stored: string, presented: string): Promise<boolean> {
  if (stored.startsWith('$sha256$')) {
    const [, , salt, hex] = stored.split('$');
    return safeEqual(sha256Hex(salt + presented), hex ?? '');
  }
  if (stored.startsWith(`${BCRYPT_PREHASHED}$`)) return bcrypt.compare(prehash(presented), stored.slice(BCRYPT_PREHASHED.length));
  // Plain bcrypt (earlier versions, imports): only the first 72 bytes count, see above.
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

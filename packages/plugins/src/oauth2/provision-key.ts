// The provision_key proves that a request to /oauth2/authorize or the password grant comes from
// the application's own backend. The admin API shows it (as Kong does); config snapshots, which
// travel through Redis and sit in every data plane's disk cache, carry only its SHA-256.
import { safeEqual, sha256Hex } from '@gatehouse/core/crypto.ts';

const HASHED = '$sha256$';

/** The snapshot form of a provision_key. */
export function hashProvisionKey(key: string): string {
  return `${HASHED}${sha256Hex(key)}`;
}

/** Compares a presented key with the configured one, in constant time. */
export function provisionKeyMatches(given: string, configured: string): boolean {
  if (configured.startsWith(HASHED)) return safeEqual(sha256Hex(given), configured.slice(HASHED.length));
  // A plain key: a snapshot from a control plane that did not hash it yet (or a disk cache of one).
  return safeEqual(given, configured);
}

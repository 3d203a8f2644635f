// PKCE (RFC 7636) as the authorization server enforces it: an authorization request for a code
// carries an S256 challenge (required for public clients under pkce=lax, for every client under
// strict), and the token request that redeems the code carries its verifier; a verifier for a
// code issued without a challenge is refused.
import { safeEqual, sha256Base64Url } from '@gatehouse/core/crypto.ts';
import { OAuthError } from './errors.ts';
import type { Params } from './params.ts';
import type { Oauth2Config } from './schema.ts';
import type { SnapshotCredential } from './server.ts';

const VERIFIER_MISMATCH = new OAuthError('invalid_grant', 'Invalid code');

/**
 * An S256 code_challenge (RFC 7636 §4.2: BASE64URL-NOPAD(SHA256(verifier)), i.e. exactly 43
 * unreserved characters encoding 32 bytes), normalised to unpadded base64url; null when it is
 * anything else. Kong's tolerance of the standard base64 alphabet and `=` padding is kept, but
 * the value must still encode exactly 32 bytes: Node's lenient decoder would turn junk (`A`,
 * `~`, `!!!!`) into an empty challenge, and an empty challenge used to mean "no PKCE".
 */
function normaliseChallenge(challenge: string): string | null {
  if (!/^[A-Za-z0-9\-_+/]{43}=?$/.test(challenge)) return null;
  const unpadded = challenge.replace(/=$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  const bytes = Buffer.from(unpadded, 'base64url');
  // Round trip: rejects a last character carrying bits beyond the 256 (non-canonical encodings).
  return bytes.length === 32 && bytes.toString('base64url') === unpadded ? unpadded : null;
}

function requiresPkce(config: Oauth2Config, client: SnapshotCredential): boolean {
  if (config.pkce === 'strict') return true;
  return client.client_type === 'public' && config.pkce !== 'none';
}

/** The S256 challenge of an authorization request for a code, normalised; null when it has none. */
export function requestedChallenge(params: Params, config: Oauth2Config, client: SnapshotCredential): string | null {
  const c = params.code_challenge;
  const m = params.code_challenge_method;
  if (c === undefined || c === null || c === '') {
    if (m !== undefined && m !== null && m !== '') throw new OAuthError('invalid_request', 'code_challenge is required when code_method is present');
    if (requiresPkce(config, client)) throw new OAuthError('invalid_request', `code_challenge is required for ${client.client_type} clients`);
    return null;
  }
  if (m !== undefined && m !== null && m !== 'S256' && m !== 's256') throw new OAuthError('invalid_request', 'code_challenge_method is not supported, must be S256');
  if (typeof c !== 'string') throw new OAuthError('invalid_request', 'code_challenge must be a string');
  const challenge = normaliseChallenge(c);
  if (challenge === null) {
    throw new OAuthError('invalid_request', 'code_challenge must be the base64url-encoded SHA-256 of the code_verifier (43 characters)');
  }
  return challenge;
}

/** The token request's code_verifier against the challenge its code was issued with. */
export function checkVerifier(params: Params, challenge: string | null | undefined): void {
  const verifier = params.code_verifier;
  // Any recorded challenge, even an empty or malformed one from before it was validated,
  // demands a verifier (an empty one can never match: the code is then unusable).
  if (challenge !== null && challenge !== undefined) {
    if (verifier === undefined || verifier === null) {
      throw new OAuthError('invalid_request', 'code_verifier is required for PKCE authorization requests');
    }
    if (typeof verifier !== 'string') throw new OAuthError('invalid_request', 'code_verifier is not a string');
    if (verifier.length < 43 || verifier.length > 128) {
      throw new OAuthError('invalid_request', 'code_verifier must be between 43 and 128 characters');
    }
    if (!safeEqual(sha256Base64Url(verifier), challenge)) throw VERIFIER_MISMATCH;
  } else if (verifier !== undefined && verifier !== null && verifier !== '') {
    // RFC 9700 §4.8.2 (PKCE downgrade): a verifier for a code issued without a challenge.
    throw VERIFIER_MISMATCH;
  }
}

// Size bounds of the OAuth parameters the endpoints read. Some values are stored (an
// authenticated_userid in Redis and Postgres, then sent upstream as a header), some are echoed
// (state, a scope in invalid_scope), all are hashed or compared: none may be as large as a
// request body. Limits are in characters; the admin API holds the values it registers
// (client_id, client_secret, redirect_uris, provision_key, tokens) to the same ones, so a
// registered value is always accepted here.

export const ID_MAX = 255;
export const TOKEN_MAX = 1024;
export const URI_MAX = 2048;

const LIMITS = new Map([
  ['client_id', ID_MAX],
  ['client_secret', ID_MAX],
  ['provision_key', ID_MAX],
  ['authenticated_userid', ID_MAX],
  ['username', ID_MAX],
  ['password', TOKEN_MAX],
  ['code', ID_MAX],
  ['refresh_token', TOKEN_MAX],
  ['token', TOKEN_MAX],
  ['redirect_uri', URI_MAX],
  ['scope', 2048],
  ['state', 2048],
  // RFC 7636 §4.1: a verifier has at most 128 characters; its S256 challenge 43.
  ['code_challenge', 128],
  ['code_verifier', 128],
  ['code_challenge_method', 32],
  ['grant_type', 64],
  ['response_type', 64],
  ['token_type_hint', 64],
] as const);

/** The name of a parameter with a size bound. */
export type BoundedParameter = typeof LIMITS extends ReadonlyMap<infer Name, number> ? Name : never;

/** A string's length; anything else (a repeated parameter, JSON) by the length of its JSON text. */
function size(value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'string') return value.length;
  return JSON.stringify(value)?.length ?? 0;
}

/** The RFC 6749 error for the first parameter over its limit; null when all are within bounds. */
export function oversizedParameter(params: Record<string, unknown>): { error: 'invalid_request'; error_description: string } | null {
  for (const [name, limit] of LIMITS) {
    if (Object.hasOwn(params, name) && size(params[name]) > limit) {
      return { error: 'invalid_request', error_description: `${name} must not be longer than ${limit} characters` };
    }
  }
  return null;
}

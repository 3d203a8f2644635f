// Kong's oauth2 plugin config (kong/plugins/oauth2/schema.lua): same fields, defaults, errors.
import { z } from 'zod';
// The grants' flags come from their list. grants/ loads no store, Redis or bcrypt code (handlers
// reach the token store through the request): the control plane imports this file.
import { GRANT_FLAGS } from './grants/index.ts';
import { ID_MAX } from './limits.ts';

export const oauth2ConfigSchema = z
  .strictObject({
    scopes: z.array(z.string()).nullable().default(null),
    mandatory_scope: z.boolean().default(false),
    provision_key: z.string().min(1).max(ID_MAX).nullable().default(null),
    token_expiration: z.number().min(0).default(7200),
    enable_authorization_code: z.boolean().default(false),
    enable_implicit_grant: z.boolean().default(false),
    enable_client_credentials: z.boolean().default(false),
    enable_password_grant: z.boolean().default(false),
    hide_credentials: z.boolean().default(false),
    accept_http_if_already_terminated: z.boolean().default(false),
    anonymous: z.string().min(1).nullable().default(null),
    global_credentials: z.boolean().default(false),
    auth_header_name: z.string().min(1).default('authorization'),
    refresh_token_ttl: z
      .number()
      .refine((v) => v >= 0 && v <= 1e8, 'value should be between 0 and 100000000')
      .default(1209600),
    reuse_refresh_token: z.boolean().default(false),
    pkce: z.enum(['none', 'lax', 'strict']).default('lax'),
    realm: z.string().nullable().default(null),
  })
  .superRefine((config, ctx) => {
    if (config.mandatory_scope && (config.scopes === null || config.scopes.length === 0)) {
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'required field missing' });
    }
    if (!GRANT_FLAGS.some((flag) => config[flag])) {
      // Kong reports this record-level rule on the `config` field itself.
      ctx.addIssue({ code: 'custom', path: ['@config'], message: `at least one of these fields must be true: ${GRANT_FLAGS.join(', ')}` });
    }
  });

export type Oauth2Config = z.output<typeof oauth2ConfigSchema>;

// The admin commands, one entry per entity: where it lives on the admin API, which columns
// its table shows, which fields a create needs (asked for on a terminal), and the parents it
// can be nested under (`routes create --service x` → POST /services/x/routes). Data only:
// commands/admin-entities.ts makes the commands, admin/actions.ts runs them.

export type Verb = 'create' | 'list' | 'info' | 'update' | 'remove';

export interface Requirement {
  /** Met when the body sets any of these fields. */
  anyOf: string[];
  /** The field a prompt fills in, and its question. */
  ask: string;
  question: string;
  /** The answer is a comma-separated list, sent as `ask[]` values. */
  list?: boolean;
}

export interface Parent {
  /** The option's name as commander keeps it (`service` for `--service`). */
  key: string;
  flags: string;
  /** The parent's collection: `--service x` → /services/x/<entity>. */
  path: string;
  /** `create` refuses to run without it. */
  requiredToCreate?: boolean;
}

export interface EntityCommand {
  command: string;
  singular: string;
  description: string;
  /** The collection on the admin API; with `byType`, the one `-t <type>` names. */
  path: string | { byType: Record<string, string> };
  columns: string[];
  /** Columns after a create, when it shows more (a secret shown once). */
  createColumns?: string[];
  required: Requirement[];
  parents: Parent[];
}

const parent = (key: string, path: string, flags = `--${key} <name|id>`): Parent => ({ key, flags, path });

export const ENTITY_COMMANDS: EntityCommand[] = [
  {
    command: 'services',
    singular: 'service',
    description: 'upstream services',
    path: 'services',
    columns: ['id', 'name', 'protocol', 'host', 'port', 'path'],
    required: [
      { anyOf: ['name'], ask: 'name', question: 'Service name:' },
      { anyOf: ['url', 'host'], ask: 'url', question: 'Upstream URL (e.g. http://httpbin.org):' },
    ],
    parents: [],
  },
  {
    command: 'routes',
    singular: 'route',
    description: 'routes: which requests go to which service',
    path: 'routes',
    columns: ['id', 'name', 'paths', 'hosts', 'methods', 'service'],
    required: [{ anyOf: ['paths', 'hosts', 'methods'], ask: 'paths', question: 'Paths, comma-separated (e.g. /example):', list: true }],
    parents: [parent('service', 'services')],
  },
  {
    command: 'consumers',
    singular: 'consumer',
    description: 'consumers: the clients of your APIs',
    path: 'consumers',
    columns: ['id', 'username', 'custom_id'],
    required: [{ anyOf: ['username', 'custom_id'], ask: 'username', question: 'Username:' }],
    parents: [],
  },
  {
    command: 'plugins',
    singular: 'plugin',
    description: 'plugins, global or on a service, route or consumer',
    path: 'plugins',
    columns: ['id', 'name', 'enabled', 'service', 'route', 'consumer'],
    required: [{ anyOf: ['name'], ask: 'name', question: 'Plugin name (e.g. oauth2):' }],
    parents: [parent('service', 'services'), parent('route', 'routes'), parent('consumer', 'consumers', '--consumer <username|id>')],
  },
  {
    command: 'credentials',
    singular: 'credential',
    description: "consumers' credentials (-t oauth2: OAuth 2.0 clients)",
    path: { byType: { oauth2: 'oauth2' } },
    columns: ['id', 'name', 'client_id', 'consumer'],
    createColumns: ['id', 'name', 'client_id', 'client_secret', 'consumer'],
    required: [{ anyOf: ['name'], ask: 'name', question: 'Credential name:' }],
    parents: [{ ...parent('consumer', 'consumers', '-c, --consumer <username|id>'), requiredToCreate: true }],
  },
];

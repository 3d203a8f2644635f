// `gatehouse services|routes|consumers|plugins|credentials create|list|info|update|remove`:
// the admin API from the command line, one command group per entry of admin/entities.ts.
// The actions (HTTP client, output, prompts) are loaded when a command runs.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEFAULT_ADMIN_URL } from '../admin/client.ts';
import { ENTITY_COMMANDS, type EntityCommand, type Verb } from '../admin/entities.ts';
import { parseAssignment } from '../admin/fields.ts';
import type { ActionOptions } from '../admin/actions.ts';
import { action } from '../util.ts';

function property(text: string, previous: [string, string][] = []): [string, string][] {
  try {
    return [...previous, parseAssignment(text)];
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Options every admin command takes. */
function common(cmd: Command, spec: EntityCommand, verb: Verb): Command {
  cmd
    .option('--admin-url <url>', `admin API address (default: GATEHOUSE_ADMIN_URL, else ${DEFAULT_ADMIN_URL})`)
    .option('--json', "print the admin API's JSON")
    .addOption(new Option('-q, --quiet', 'print only ids').conflicts('json'));
  if (typeof spec.path !== 'string') {
    cmd.addOption(new Option('-t, --type <type>', 'credential type').choices(Object.keys(spec.path.byType)).makeOptionMandatory());
  }
  const keys = spec.parents.map((p) => p.key);
  for (const p of spec.parents) {
    const required = p.requiredToCreate && verb === 'create';
    const option = new Option(p.flags, required ? `the ${p.key}` : `nested under this ${p.key}`).conflicts(keys.filter((k) => k !== p.key));
    cmd.addOption(required ? option.makeOptionMandatory() : option);
  }
  return cmd;
}

function fieldOptions(cmd: Command): Command {
  return cmd
    .option('-p, --property <field=value>', 'a field, repeatable (paths[]=/x, config.scopes[]=read)', property)
    .addOption(new Option('--stdin', 'read entities as newline-delimited JSON objects').conflicts('property'));
}

/** Runs a verb with the actions module, loaded only now. */
function run(fn: (actions: typeof import('../admin/actions.ts')) => Promise<void>): Promise<void> {
  return action(async () => fn(await import('../admin/actions.ts')))();
}

function registerEntity(program: Command, spec: EntityCommand): void {
  const group = program.command(spec.command).description(`${spec.description}: create, list, info, update, remove`);
  const opts = (cmd: Command) => cmd.opts<ActionOptions>();

  const create = common(group.command('create').description(`create ${spec.command} (-p fields, or --stdin)`), spec, 'create');
  fieldOptions(create).action(() => run((a) => a.create(spec, opts(create))));

  const list = common(group.command('list').description(`list ${spec.command} (the first page, or every page with -a)`), spec, 'list');
  list.option('-a, --all', 'follow the pages to the end').action(() => run((a) => a.list(spec, opts(list))));

  const info = common(group.command('info').argument('<id|name>').description(`show one ${spec.singular}`), spec, 'info');
  info.action((key: string) => run((a) => a.info(spec, key, opts(info))));

  const update = common(group.command('update').argument('<id|name>').description(`change fields of a ${spec.singular}`), spec, 'update');
  fieldOptions(update).action((key: string) => run((a) => a.update(spec, key, opts(update))));

  const remove = common(group.command('remove').argument('<id|name...>').description(`remove ${spec.command}`), spec, 'remove');
  remove.action((keys: string[]) => run((a) => a.remove(spec, keys, opts(remove))));
}

export function register(program: Command): void {
  for (const spec of ENTITY_COMMANDS) registerEntity(program, spec);
}

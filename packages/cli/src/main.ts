// `gatehouse` command line. Each command lives in commands/<name>.ts and exports
// `register(program)`; add one import and one line below for a new command. Command modules
// load their heavy dependencies inside their action, so `gatehouse data-plane` never loads
// express, Prisma or pg (e2e/split-proxy.test.ts checks the modules it loads).
import { Command } from 'commander';
import { GATEHOUSE_VERSION } from './util.ts';
import * as controlPlane from './commands/control-plane.ts';
import * as migrations from './commands/migrations.ts';
import * as dataPlane from './commands/data-plane.ts';
import * as start from './commands/start.ts';
import * as adminEntities from './commands/admin-entities.ts';

const program = new Command('gatehouse')
  .description('Gatehouse API gateway: Kong-compatible admin API, proxy and OAuth 2.0 server')
  .version(GATEHOUSE_VERSION)
  .showHelpAfterError()
  .exitOverride((err) => {
    // --help/--version exit 0; usage errors (already printed by commander) exit 1.
    process.exit(err.exitCode === 0 ? 0 : 1);
  });

controlPlane.register(program);
migrations.register(program);
dataPlane.register(program);
start.register(program);
adminEntities.register(program);

await program.parseAsync(process.argv);

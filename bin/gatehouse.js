#!/usr/bin/env node
// Entry point of the `gatehouse` command: TypeScript runs through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
// `gatehouse data-plane` goes straight to its command module: the data-plane process must
// never load the control plane's modules (express, Prisma, pg) that main.ts imports.
if (process.argv[2] === 'data-plane') {
  const { main } = await import('../packages/cli/src/commands/data-plane.ts');
  await main(process.argv);
} else {
  await import('../packages/cli/src/main.ts');
}

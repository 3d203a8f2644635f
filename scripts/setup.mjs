// Runs on `npm install` (root `prepare`): generates the Prisma client. No network beyond the
// npm registry is needed: Prisma 7's client has no query engine binary, and `generate` never
// calls the schema engine, so it is pointed at a no-op executable instead of a download.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prismaCli = join(root, 'node_modules', 'prisma', 'build', 'index.js');
if (!existsSync(prismaCli)) {
  console.error('setup: prisma is not installed yet; run `npm install` at the repository root.');
  process.exit(1);
}
const noop = existsSync('/bin/true') ? '/bin/true' : process.execPath;
const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? noop,
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  CHECKPOINT_DISABLE: '1',
};
const result = spawnSync(process.execPath, [prismaCli, 'generate'], { cwd: root, env, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('setup: `prisma generate` failed (see above).');
  process.exit(result.status ?? 1);
}

// `npm test`: typecheck, make sure Postgres and Redis are up, then run every test file with
// Node's test runner (TypeScript through tsx). Arguments narrow the run: `npm test -- oauth2`.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ensureServices } from './services.mjs';

const root = join(import.meta.dirname, '..');
const filters = process.argv.slice(2);

function findTests(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const full = join(dir, name);
    if (statSync(full).isDirectory()) findTests(full, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, full));
  }
  return out;
}

const files = [...findTests(join(root, 'packages')), ...findTests(join(root, 'e2e'))]
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error(`test: no test files match ${filters.join(' ')}`);
  process.exit(1);
}

if (filters.length === 0) {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--noEmit'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (tsc.status !== 0) {
    console.error('test: typecheck failed');
    process.exit(1);
  }
}

try {
  await ensureServices();
} catch (err) {
  console.error(String(err.message));
  process.exit(1);
}

const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...files],
  { cwd: root, stdio: 'inherit', env: { ...process.env, GATEHOUSE_LOG_LEVEL: process.env.GATEHOUSE_LOG_LEVEL ?? 'error' } },
);
process.exit(result.status ?? 1);

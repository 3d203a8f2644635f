// The logger's process-level guards, in a real child process: a stray rejection or exception is logged
// (structured, one line) and the process lives on.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

test('surviveUnhandledRejections: a stray rejection is logged as one JSON line and the process keeps running', () => {
  const script = `
    import { createLogger, surviveUnhandledRejections } from '@gatehouse/core/logger.ts';
    surviveUnhandledRejections(createLogger({ role: 'probe', level: 'info' }));
    Promise.reject(new Error('went astray\\nsecond line'));
    setTimeout(() => console.log('still alive'), 50);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: import.meta.dirname, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /still alive/);
  const line = r.stderr.split('\n').find((l) => l.includes('unhandled rejection'));
  assert.ok(line, `no log line in: ${r.stderr}`);
  const entry = JSON.parse(line);
  assert.equal(entry.level, 'error');
  assert.equal(entry.role, 'probe');
  assert.equal(entry.error, 'went astray');
  assert.match(entry.stack, /went astray/);
});

test('surviveUncaughtExceptions: an exception nothing caught is logged as a bug and the process keeps running', () => {
  const script = `
    import { createLogger, surviveUncaughtExceptions } from '@gatehouse/core/logger.ts';
    surviveUncaughtExceptions(createLogger({ role: 'probe', level: 'info' }));
    setTimeout(() => { throw new Error('nobody caught me\\nsecond line'); }, 10);
    setTimeout(() => console.log('still alive'), 100);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: import.meta.dirname, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /still alive/);
  const line = r.stderr.split('\n').find((l) => l.includes('uncaught exception'));
  assert.ok(line, `no log line in: ${r.stderr}`);
  const entry = JSON.parse(line);
  assert.equal(entry.level, 'error');
  assert.equal(entry.message, 'bug: uncaught exception, still serving');
  assert.equal(entry.error, 'nobody caught me');
  assert.match(entry.stack, /nobody caught me/);
});

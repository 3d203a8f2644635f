// The embedded database is one process's: a second process opening the same data dir is refused
// with a message naming the owner, and a lock left by a process that died is taken over.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDatabase } from '../src/db/client.ts';
import { tempDir } from '../src/testing.ts';

test('a second process is refused while the first holds the embedded database; a dead owner does not block it', async () => {
  const dir = tempDir('gatehouse-lock-');
  const holder = spawn(
    process.execPath,
    ['--import', 'tsx', '-e', `import('${join(import.meta.dirname, '../src/db/client.ts')}').then(async (m) => { await m.openDatabase({ databaseUrl: null, dataDir: ${JSON.stringify(dir.path)} }); console.log('open'); setInterval(() => {}, 1000); })`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.on('data', (d) => String(d).includes('open') && resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
    });
    await assert.rejects(openDatabase({ databaseUrl: null, dataDir: dir.path }), {
      message: `the embedded database in ${join(dir.path, 'pglite')} is in use by process ${holder.pid}: stop that one first, or set DATABASE_URL`,
    });
    // Killed without closing: its lock stays behind, and is taken over.
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    assert.ok(existsSync(join(dir.path, 'pglite.lock')));
    const db = await openDatabase({ databaseUrl: null, dataDir: dir.path });
    await db.close();
    assert.ok(!existsSync(join(dir.path, 'pglite.lock')), 'released at close');
  } finally {
    holder.kill('SIGKILL');
    dir.remove();
  }
});

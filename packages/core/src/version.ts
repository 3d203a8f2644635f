// Gatehouse's version, from the root package.json (no build step stamps it).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const GATEHOUSE_VERSION: string = (() => {
  try {
    const root = join(dirname(fileURLToPath(import.meta.url)), '../../../package.json');
    return JSON.parse(readFileSync(root, 'utf8')).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

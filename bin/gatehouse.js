#!/usr/bin/env node
// Entry point of the `gatehouse` command: TypeScript runs through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../packages/cli/src/main.ts');

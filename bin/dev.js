#!/usr/bin/env -S node --import tsx
// Development entry: runs the TypeScript sources directly (no build step).
import { run, flush } from '@oclif/core';
import { reportError } from '../src/base-command.ts';

run(process.argv.slice(2), { root: new URL('..', import.meta.url).pathname, development: true })
  .then(() => flush())
  .catch((err) => {
    if (err && err.oclif && err.code === 'EEXIT') {
      process.exitCode = err.oclif.exit;
      return;
    }
    reportError(err);
  });

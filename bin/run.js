#!/usr/bin/env node
import { run, flush } from '@oclif/core';
import { reportError } from '../dist/base-command.js';

run(process.argv.slice(2), import.meta.url)
  .then(() => flush())
  .catch((err) => {
    // errors outside a command (unknown command, bad topic): one line, no stack
    if (err && err.oclif && err.code === 'EEXIT') {
      process.exitCode = err.oclif.exit;
      return;
    }
    reportError(err);
  });

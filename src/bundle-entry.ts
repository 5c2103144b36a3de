/**
 * Entry of the single-file bundle (npm run bundle -> dist/bundle/lora-switch.mjs), for machines without
 * node_modules. oclif finds the commands through the explicit strategy: dist/bundle/package.json points at
 * this module's COMMANDS export.
 */
import { run, flush } from '@oclif/core';
import Bench from './commands/bench.js';
import Convert from './commands/convert.js';
import Generate from './commands/generate.js';
import { reportError } from './base-command.js';

// every command of src/commands (test/cli/bundle.test.ts checks this list against the manifest)
export const COMMANDS = { bench: Bench, convert: Convert, generate: Generate };

// not awaited at top level: oclif imports this module again to read COMMANDS
run(process.argv.slice(2), import.meta.url)
  .then(() => flush())
  .catch((err: { oclif?: { exit?: number }; code?: string }) => {
    if (err && err.oclif && err.code === 'EEXIT') {
      process.exitCode = err.oclif.exit ?? 0;
      return;
    }
    reportError(err);
  });

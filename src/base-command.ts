import { Command } from '@oclif/core';
import { oneLine, exitCodeOf } from './core/errors.js';

/**
 * Every command's errors end as one line `Error: <file>: <problem>` on stderr, a non-zero
 * exit code, and no stack trace (set LSW_DEBUG=1 for the stack).
 */
export abstract class BaseCommand extends Command {
  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<void> {
    // oclif's own exit (this.exit(0), --help, --version)
    if (err && err.oclif && typeof err.oclif.exit === 'number' && (err as { code?: string }).code === 'EEXIT') {
      process.exitCode = err.oclif.exit;
      return;
    }
    reportError(err);
  }
}

export function reportError(err: unknown): void {
  if (process.env.LSW_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  process.stderr.write(`Error: ${oneLine(err).replace(/^Error:\s*/, '')}\n`);
  const oclifExit = (err as { oclif?: { exit?: number } })?.oclif?.exit;
  process.exitCode = typeof oclifExit === 'number' && oclifExit > 0 ? oclifExit : exitCodeOf(err);
}

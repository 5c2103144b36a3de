/**
 * Running the real CLI (bin/run.js) in a child process, and the one-line-error contract every command keeps:
 * a non-zero exit, exactly one line on stderr starting with "Error: ", no stack trace.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin', 'run.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/run.js ...args` in `cwd`, with LSW_DEBUG cleared (no stack traces) and `env` added. */
export function runCli(args: string[], cwd: string, opts: { env?: Record<string, string>; input?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd,
    input: opts.input,
    env: { ...process.env, LSW_DEBUG: '', ...opts.env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A failed run that printed one line `Error: ...` matching `re`, no stack trace and nothing on stdout. */
export function assertOneLineError(r: CliResult, re: RegExp): void {
  assert.ok(r.code !== 0 && r.code !== null, `non-zero exit, got ${r.code}; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.is(lines.length, 1, `exactly one line on stderr: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0], /^Error: /);
  assert.match(lines[0], re);
  assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  assert.is(r.stdout, '', 'nothing on stdout');
}

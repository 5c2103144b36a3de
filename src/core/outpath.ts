/**
 * Output paths that must never replace an input. Every command that writes a file (`convert -o`, `generate --trace`,
 * `bench --out`) checks its output against its inputs before it does any work, so a refused run costs nothing and
 * leaves nothing behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileError } from './errors.js';

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

const same = (a: fs.Stats, b: fs.Stats) => a.dev === b.dev && a.ino === b.ino;

/**
 * Refuse `out` when it is a folder, when it is one of the input files (also through a link), or when it is an existing
 * file anywhere inside an input folder: a Hugging Face model or adapter folder is read as a whole and is never
 * modified. A new file inside an input folder is allowed. Inputs that do not exist are ignored (their own checks
 * report them).
 */
export function checkOutputPath(out: string, inputs: readonly string[]): void {
  const so = statOrNull(out);
  if (!so) return;
  if (so.isDirectory()) throw fileError(out, 'is a folder (give the path of the file to write)');
  const ins = inputs.map((p) => ({ p, s: statOrNull(p) })).filter((x): x is { p: string; s: fs.Stats } => x.s !== null);
  for (const { p, s } of ins) if (!s.isDirectory() && same(so, s)) throw fileError(out, `would overwrite the input ${p}`);
  const dirs = ins.filter((x) => x.s.isDirectory());
  if (dirs.length === 0) return;
  // the folders that hold the output, from its own up to the root (real paths, so links and `..` do not hide one)
  let dir = fs.realpathSync(path.dirname(path.resolve(out)));
  for (;;) {
    const sd = statOrNull(dir);
    const hit = sd && dirs.find((x) => same(sd, x.s));
    if (hit) throw fileError(out, `would overwrite a file inside the input folder ${hit.p} (inputs are never modified)`);
    const up = path.dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

/** Finds and loads the native engine: $LSW_NATIVE_LIB, then <package>/build/native/liblsw.so. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi, { type LibraryHandle } from 'koffi';
import { UserError } from '../errors.js';

const LIB_NAME = process.platform === 'darwin' ? 'liblsw.dylib' : process.platform === 'win32' ? 'lsw.dll' : 'liblsw.so';

/** The package root: the nearest ancestor of this file holding package.json (dist/core/native -> root). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'build')) ) return dir;
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'cuda'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
    dir = up;
  }
}

export function candidatePaths(): string[] {
  const out: string[] = [];
  const env = process.env.LSW_NATIVE_LIB;
  if (env && env.trim() !== '') return [path.resolve(env)];
  const here = path.dirname(fileURLToPath(import.meta.url));
  out.push(path.join(here, LIB_NAME)); // bundled next to the CLI
  out.push(path.join(packageRoot(), 'build', 'native', LIB_NAME));
  return out;
}

let cached: { lib: LibraryHandle; path: string } | null = null;

export function loadNativeLibrary(): { lib: LibraryHandle; path: string } {
  if (cached) return cached;
  const cands = candidatePaths();
  const found = cands.find((p) => fs.existsSync(p));
  if (!found) {
    const where = process.env.LSW_NATIVE_LIB ? `${cands[0]} (from $LSW_NATIVE_LIB)` : cands[cands.length - 1];
    throw new UserError(`${where}: native engine library not found; build it with \`npm run build:native\` (needs cmake and a C++ compiler)`);
  }
  try {
    cached = { lib: koffi.load(found), path: found };
  } catch (e) {
    throw new UserError(`${found}: cannot load the native engine (${(e as Error).message.split('\n')[0]})`);
  }
  return cached;
}

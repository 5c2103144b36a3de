import fs from 'node:fs';
import { UserError } from '../errors.js';
import type { AdapterSpec } from './types.js';

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parse an adapter argument: `path` (scale 1) or `path:scale`, like llama.cpp's `--lora-scaled`.
 * A path that exists as given is taken whole, so folders whose names contain ':' still work.
 */
export function loadAdapterSpec(arg: string): AdapterSpec {
  if (typeof arg !== 'string' || arg.trim() === '') throw new UserError('--adapter: empty adapter path');
  if (fs.existsSync(arg)) return { path: arg, scale: 1 };
  const i = arg.lastIndexOf(':');
  if (i > 0) {
    const tail = arg.slice(i + 1);
    const head = arg.slice(0, i);
    if (NUMBER.test(tail)) {
      const scale = Number(tail);
      if (!Number.isFinite(scale)) throw new UserError(`--adapter ${arg}: scale ${tail} is not a finite number`);
      return { path: head, scale };
    }
    // `path:` or `path:abc` where path exists: a malformed scale, not a path
    if (head !== '' && fs.existsSync(head) && !/^[\\/]/.test(tail)) {
      throw new UserError(`--adapter ${arg}: scale "${tail}" is not a number (use path or path:scale)`);
    }
  }
  return { path: arg, scale: 1 };
}

/**
 * `bench --peer torch`: runs scripts/bench/torch_peer.py with the same shapes, adapter and protocol, and reads its
 * JSON (docs/BENCH.md, tool "torch"). Missing python3 / torch gives one line, not a failure of the bench.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { packageRoot } from '../native/loader.js';
import type { BenchDoc, BenchOptions } from './run.js';

export interface PeerOutcome {
  doc: BenchDoc | null;
  /** one line saying why there is no (complete) peer result */
  error: string | null;
}

export function peerScript(): string {
  return path.join(packageRoot(), 'scripts', 'bench', 'torch_peer.py');
}

/** The python3 to use: $LSW_PYTHON, else python3 on the PATH. */
export function pythonCommand(): string {
  return process.env.LSW_PYTHON && process.env.LSW_PYTHON.trim() !== '' ? process.env.LSW_PYTHON : 'python3';
}

/** null when python3 can import torch and transformers, else one line saying what is missing. */
export function checkPython(python = pythonCommand()): string | null {
  const r = spawnSync(python, ['-c', 'import torch, transformers; print(torch.__version__)'], { encoding: 'utf8', timeout: 120000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `${python} not found: the PyTorch peer needs python3 with torch and transformers` : `${python}: ${r.error.message}`;
  }
  if (r.status !== 0) {
    const last = (r.stderr ?? '').trim().split('\n').pop() ?? '';
    return `${python} cannot import torch and transformers (${last || `exit ${r.status}`}); the PyTorch peer needs both`;
  }
  return null;
}

/** torch_peer.py arguments for the same run; a string says why the peer cannot run it. */
export function peerArgs(o: BenchOptions, jsonOut: string): string[] | string {
  const args = [peerScript()];
  if (o.preset) args.push('--preset', o.preset);
  else if (o.model) {
    if (!fs.existsSync(path.join(o.model, 'config.json'))) return `${o.model}: the PyTorch peer reads presets or Hugging Face folders, not .lsw files`;
    args.push('--model-dir', o.model);
  }
  if (o.dtype === 'f32') return 'the PyTorch peer measures f16 and bf16 only (--dtype f32)';
  args.push('--dtype', o.dtype);
  if (o.adapter) {
    args.push('--experts', String(o.adapter.experts), '--top-k', String(o.adapter.topK), '--rank', String(o.adapter.rank),
      '--targets', o.adapter.targets.join(','), '--router', o.adapter.router);
  }
  args.push('--prompt-tokens', String(o.promptTokens), '--new-tokens', String(o.newTokens), '--warmup', String(o.warmup),
    '--repetitions', String(o.repetitions), '--seed', String(o.seed), '--json', jsonOut);
  return args;
}

/**
 * Runs the peer; `onLine` gets its progress lines (stderr). Never throws for a missing or failing peer: the
 * outcome's `error` says what happened (with a partial doc when the peer wrote one).
 */
export async function runPeer(o: BenchOptions, onLine: (line: string) => void = () => {}): Promise<PeerOutcome> {
  if (!fs.existsSync(peerScript())) return { doc: null, error: `${peerScript()}: not found (the PyTorch peer ships with the repository's scripts/bench)` };
  const python = pythonCommand();
  const missing = checkPython(python);
  if (missing) return { doc: null, error: missing };
  const out = path.join(os.tmpdir(), `lora-switch-peer-${process.pid}-${crypto.randomBytes(4).toString('hex')}.json`);
  const args = peerArgs(o, out);
  if (typeof args === 'string') return { doc: null, error: args };
  try {
    const code = await new Promise<number>((resolve) => {
      const child = spawn(python, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let buf = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trimEnd();
          buf = buf.slice(i + 1);
          if (line) onLine(line);
        }
      });
      child.on('error', () => resolve(127));
      child.on('close', (c) => resolve(c ?? 1));
    });
    let doc: BenchDoc | null = null;
    if (fs.existsSync(out)) {
      try {
        doc = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchDoc;
      } catch (e) {
        return { doc: null, error: `${out}: the peer wrote invalid JSON (${(e as Error).message})` };
      }
    }
    const errs = Array.isArray(doc?.errors) ? (doc!.errors as string[]) : [];
    if (code === 0 && doc) return { doc, error: null };
    if (code === 3 && doc) return { doc, error: `some modes failed: ${errs.join('; ')}` };
    return { doc: doc && doc.results?.length ? doc : null, error: errs.length ? errs.join('; ') : `torch_peer.py exited with status ${code}` };
  } finally {
    fs.rmSync(out, { force: true });
  }
}

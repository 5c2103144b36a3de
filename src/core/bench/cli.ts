/** `lora-switch bench`: flags -> options (one clear line on bad input), then progress and the report. */
import fs from 'node:fs';
import path from 'node:path';
import { UserError, ioReason } from '../errors.js';
import { checkOutputPath } from '../outpath.js';
import { getNative } from '../native/abi.js';
import { checkPrecision, checkMergePrompt, checkKvCache, checkBackend } from '../model.js';
import type { ModelDtype } from '../hf-config.js';
import { outputMode, LiveView } from '../views/render.js';
import { BenchView } from '../views/bench-view.js';
import { PRESET_NAMES, presetConfig, type PresetName } from './presets.js';
import { MODULES, BENCH_MODES, validateAdapter, type BenchMode, type ModuleName, type RouterName } from './synthetic.js';
import { runBench, newBenchState, DECODE_TOKENS, type BenchOptions, type BenchState, type BenchDoc, type DecodeTokens } from './run.js';
import { runPeer } from './peer.js';
import { toCsv, toMarkdown, textReport, fmtTflops } from './format.js';

export interface BenchFlags {
  preset?: string;
  model?: string;
  dtype?: string;
  experts?: number;
  topK?: number;
  rank?: number;
  targets?: string;
  router?: string;
  modes?: string;
  backend?: string;
  threads?: number;
  promptTokens?: number;
  newTokens?: number;
  warmup?: number;
  repetitions?: number;
  seed?: number;
  /** prompt matmul arithmetic on the CUDA backend: precise (default) or fast */
  precision?: string;
  /** how merge mode evaluates the prompt: tokenwise (default) or batched */
  mergePrompt?: string;
  /** element type of the KV cache: auto (default: the weights' 16-bit type, else f32), f32, f16 or bf16 */
  kvCache?: string;
  /** what each decode step appends: random (default: a seeded token stream) or greedy (the model's own pick) */
  decodeTokens?: string;
  peer?: string;
  json?: boolean;
  csv?: boolean;
  markdown?: boolean;
  out?: string;
  /** the command line to record (default: from process.argv) */
  command?: string;
}

/** Prompt length when --prompt-tokens is not given: the paper's 512 on the GPU, 64 on the CPU. */
export const DEFAULT_PROMPT_TOKENS = { cuda: 512, cpu: 64 } as const;

function intFlag(name: string, v: number | undefined, def: number, min: number): number {
  const x = v ?? def;
  if (!Number.isInteger(x) || x < min) throw new UserError(`--${name} must be an integer >= ${min} (got ${v})`);
  return x;
}

/** Comma list of modules (q,k,v,o,gate,up,down; `_proj` accepted) or `all`, in forward order. */
export function parseTargets(s: string): ModuleName[] {
  const t = s.trim().toLowerCase();
  if (t === 'all' || t === 'all-linear' || t === 'all_linear') return [...MODULES];
  const set = new Set<ModuleName>();
  for (const raw of t.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const m = raw.endsWith('_proj') ? raw.slice(0, -5) : raw;
    if (!(MODULES as readonly string[]).includes(m)) throw new UserError(`--targets: unknown module "${raw}" (use q,k,v,o,gate,up,down or all)`);
    set.add(m as ModuleName);
  }
  if (set.size === 0) throw new UserError('--targets selects no module (use q,k,v,o,gate,up,down or all)');
  return MODULES.filter((m) => set.has(m));
}

export function parseModes(s: string): BenchMode[] {
  const out: BenchMode[] = [];
  for (const m of s.split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '')) {
    if (!(BENCH_MODES as readonly string[]).includes(m)) throw new UserError(`--modes: unknown mode "${m}" (use ${BENCH_MODES.join(',')})`);
    if (!out.includes(m as BenchMode)) out.push(m as BenchMode);
  }
  if (out.length === 0) throw new UserError(`--modes selects nothing (use ${BENCH_MODES.join(',')})`);
  return out;
}

function quote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
}

/** Flags -> BenchOptions; every problem is one UserError line naming the flag. */
export function parseBenchFlags(f: BenchFlags): BenchOptions & { peer: 'torch' | null } {
  if (f.preset !== undefined && f.model !== undefined) throw new UserError('bench: give either --preset or -m/--model, not both');
  let preset: PresetName | undefined;
  if (f.model === undefined) {
    const p = f.preset ?? 'llama2-7b';
    if (!(PRESET_NAMES as readonly string[]).includes(p)) throw new UserError(`--preset: unknown preset "${p}" (use ${PRESET_NAMES.join(', ')})`);
    preset = p as PresetName;
  } else if (!fs.existsSync(f.model)) throw new UserError(`${f.model}: no such file or directory`);
  const dtype = (f.dtype ?? 'f16') as ModelDtype;
  if (!['f16', 'bf16', 'f32'].includes(dtype)) throw new UserError(`--dtype: unknown dtype "${f.dtype}" (use f16, bf16 or f32)`);
  const backend = (f.backend ?? 'auto') as BenchOptions['backend'];
  if (!['cpu', 'cuda', 'auto'].includes(backend)) throw new UserError(`--backend: unknown backend "${f.backend}" (use cpu, cuda or auto)`);
  const router = (f.router ?? 'pregated') as RouterName;
  if (!['pregated', 'layerwise'].includes(router)) throw new UserError(`--router: unknown router "${f.router}" (use pregated or layerwise)`);
  const experts = intFlag('experts', f.experts, 8, 1);
  const topK = intFlag('top-k', f.topK, 2, 1);
  if (topK > experts) throw new UserError(`--top-k ${topK} exceeds --experts ${experts}`);
  const rank = intFlag('rank', f.rank, 16, 1);
  const targets = parseTargets(f.targets ?? 'q,v');
  const modes = parseModes(f.modes ?? BENCH_MODES.join(','));
  const newTokens = intFlag('new-tokens', f.newTokens, 200, 2);
  const warmup = intFlag('warmup', f.warmup, 1, 0);
  const repetitions = intFlag('repetitions', f.repetitions, 5, 1);
  const threads = intFlag('threads', f.threads, 0, 0);
  const seed = intFlag('seed', f.seed, 1234, 0);
  const precision = checkPrecision(f.precision);
  const mergePrompt = checkMergePrompt(f.mergePrompt);
  const kvCache = checkKvCache(f.kvCache, 'auto');
  const decodeTokens = (f.decodeTokens ?? 'random') as DecodeTokens;
  if (!(DECODE_TOKENS as readonly string[]).includes(decodeTokens)) throw new UserError(`--decode-tokens: unknown value "${f.decodeTokens}" (use ${DECODE_TOKENS.join(' or ')})`);
  if (f.peer !== undefined && f.peer !== 'torch') throw new UserError(`--peer: unknown peer "${f.peer}" (use torch)`);
  const outputs = [f.json && '--json', f.csv && '--csv', f.markdown && '--markdown'].filter(Boolean);
  if (outputs.length > 1) throw new UserError(`${outputs.join(' and ')} cannot be combined (choose one output format)`);
  if (f.out !== undefined) {
    const dir = path.dirname(path.resolve(f.out));
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UserError(`${f.out}: the folder ${dir} does not exist`);
    checkOutputPath(f.out, f.model !== undefined ? [f.model] : []);
  }
  if (preset) validateAdapter(presetConfig(preset, dtype), { router, experts, topK, rank, targets });
  let promptTokens = f.promptTokens;
  if (promptTokens === undefined) {
    const cuda = backend === 'cuda' || (backend === 'auto' && getNative().raw.lsw_cuda_available() === 1);
    promptTokens = cuda ? DEFAULT_PROMPT_TOKENS.cuda : DEFAULT_PROMPT_TOKENS.cpu;
  }
  promptTokens = intFlag('prompt-tokens', promptTokens, 0, 1);
  return {
    preset,
    model: f.model,
    dtype,
    convertDtype: f.dtype !== undefined ? dtype : undefined,
    // a given model with adapters of its own runs those; synthetic adapter flags then are an error (synthetic.ts)
    adapter: { router, experts, topK, rank, targets },
    modes,
    backend,
    threads,
    promptTokens,
    newTokens,
    warmup,
    repetitions,
    seed,
    precision,
    mergePrompt,
    kvCache,
    decodeTokens,
    command: f.command ?? ['lora-switch', ...process.argv.slice(2)].map(quote).join(' '),
    peer: f.peer === 'torch' ? 'torch' : null,
  };
}

/** Write the JSON result: temporary file + rename, so no half-written file is ever left. */
export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new UserError(`${file}: cannot write (${ioReason(e)})`);
  }
}

/** The result document, with the peer's alongside when it ran. */
export function resultWithPeer(doc: BenchDoc, peer: BenchDoc | null, peerError: string | null): BenchDoc {
  if (!peer && !peerError) return doc;
  return { ...doc, peer: peer ?? null, ...(peerError ? { peer_error: peerError } : {}) };
}

export async function runBenchCli(f: BenchFlags): Promise<BenchDoc> {
  const o = parseBenchFlags(f);
  checkBackend(o.backend);
  // synthetic adapter flags only apply when the given model has no adapters of its own: pass null if the user
  // gave none of them for a model (a model's own adapters then run; without any, the synthetic default is used)
  const adapterFlagsGiven = [f.experts, f.topK, f.rank, f.targets, f.router].some((x) => x !== undefined);
  const fmt = f.json ? 'json' : f.csv ? 'csv' : f.markdown ? 'markdown' : 'text';
  const mode = outputMode(fmt === 'json');
  const state: BenchState = newBenchState(o);
  let view: LiveView<BenchState> | null = null;
  const err = process.stderr;
  let lastRep = 0;
  let started = false;
  const onUpdate = () => {
    if (mode === 'plain' && !started && (state.phase === 'warmup' || state.phase === 'measuring')) {
      // once the model is built, so that bad input stays one line
      started = true;
      const mm = state.matmul ? ` (${state.matmul.dtype} ${state.matmul.rows}×${state.matmul.cols}×${state.matmul.n})` : '';
      err.write(`bench: ${state.title} on ${state.backend}, copy bandwidth ${state.bandwidthGBps?.toFixed(1) ?? '–'} GB/s, matmul ${state.matmulTflops === null ? '–' : fmtTflops(state.matmulTflops)} TFLOP/s${mm}; ${o.modes.join(',')}, prompt ${o.promptTokens} (${o.precision} prefill, ${state.kvCache} KV cache${o.mergePrompt === 'batched' ? ', batched merge-mode prompt' : ''}), ${o.newTokens} new tokens (${o.decodeTokens ?? 'random'} decode tokens), ${o.warmup} warm-up, ${o.repetitions} repetitions\n`);
    }
    if (mode === 'ink') {
      if (!view) view = new LiveView(BenchView, state, 80);
      view.update();
    } else if (mode === 'plain' && state.phase === 'measuring' && state.rep !== lastRep && state.rep > 1) {
      lastRep = state.rep;
      repLine(state.rep - 1);
    }
  };
  const repLine = (rep: number) =>
    err.write(`bench: repetition ${rep}/${state.repetitions} done · ${state.live.map((l) => `${l.mode} ${l.median?.toFixed(3) ?? '–'} ms`).join(' · ')}\n`);
  try {
    const opts: BenchOptions = { ...o, adapter: o.model && !adapterFlagsGiven ? await modelAdapterDefault(o) : o.adapter };
    const doc = await runBench(opts, state, onUpdate);
    if (mode === 'plain') repLine(state.repetitions);
    // (a given model's name leads, as in every error about a file: e.g. weights whose logits are NaN)
    if (doc.results.every((r) => r.error)) throw new UserError(`${o.model ?? 'bench'}: every mode failed (${doc.results[0]?.error ?? 'no modes'})`);
    if (o.peer) {
      state.phase = 'peer';
      onUpdate();
      const r = await runPeer(opts, (line) => {
        state.peerLine = line;
        if (mode === 'plain') err.write(`${line}\n`);
        onUpdate();
      });
      state.peer = r.doc;
      state.peerError = r.error;
    }
    const result = resultWithPeer(doc, state.peer, state.peerError);
    if (f.out) writeJsonAtomic(f.out, result);
    state.phase = 'done';
    const v = view as LiveView<BenchState> | null;
    if (v) await v.done();
    if (fmt === 'json') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else if (fmt === 'csv') process.stdout.write(toCsv(doc, state.peer));
    else if (fmt === 'markdown') process.stdout.write(toMarkdown(doc, state.peer));
    else if (mode === 'plain') process.stdout.write(textReport(doc, state.peer, state.peerError));
    if (fmt !== 'json' && fmt !== 'text' && state.peerError) err.write(`torch peer: ${state.peerError}\n`);
    if (doc.results.some((r) => r.error)) process.exitCode = 3;
    return result;
  } catch (e) {
    const v = view as LiveView<BenchState> | null;
    if (v) await v.done().catch(() => {});
    throw e;
  }
}

/** For -m: the model's own adapters when it has some (null), else the synthetic default adapter. */
async function modelAdapterDefault(o: BenchOptions): Promise<BenchOptions['adapter']> {
  const { openModelFile, closeModelFile } = await import('../model.js');
  if (o.model && fs.statSync(o.model).isFile()) {
    const mf = await openModelFile(o.model);
    try {
      return mf.adapters.length > 0 ? null : o.adapter;
    } finally {
      closeModelFile(mf);
    }
  }
  // an HF folder is converted without adapters: the synthetic default adapter
  return o.adapter;
}

/**
 * The benchmark protocol of `lora-switch bench` (the paper's, docs/BENCH.md): batch 1, a random prompt of
 * `promptTokens`, `newTokens` per query (the first from the prefill, the rest decode steps timed inside the engine
 * by lsw_model_bench_decode_tokens, fed a seeded token stream, or by lsw_model_bench_decode with greedy tokens:
 * DECODE_TOKENS), `warmup` unmeasured queries per mode, then `repetitions` measured queries per mode,
 * INTERLEAVED: every repetition runs every mode in turn on the same loaded model (lsw_model_set_mode, reset in
 * between), the order rotated by one each repetition, so that machine drift hits all modes alike.
 * The core updates a plain state object; views render it.
 */
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { getNative } from '../native/abi.js';
import type { ModelDtype } from '../hf-config.js';
import { oneLine } from '../errors.js';
import { BenchEngine, measureBandwidth, measureMatmul, DTYPE_BYTES, type BenchMode, type SyntheticAdapter, type BuildProgress } from './synthetic.js';
import type { PresetName } from './presets.js';
import type { PrecisionName, MergePromptName, KvCacheName, KvCacheOption } from '../model.js';
import { spread, mean, floorMs, pctOfFloor, kvBytesRead, rnd, prefillFlops, tflops, matmulShape, type MatmulShape } from './stats.js';

export interface BenchOptions {
  preset?: PresetName;
  model?: string;
  dtype: ModelDtype;
  /** -m with an HF folder: convert to this dtype (default: the checkpoint's) */
  convertDtype?: ModelDtype;
  adapter: SyntheticAdapter | null;
  modes: BenchMode[];
  backend: 'cpu' | 'cuda' | 'auto';
  threads: number;
  promptTokens: number;
  newTokens: number;
  warmup: number;
  repetitions: number;
  seed: number;
  /** the command line, recorded in the result */
  command: string;
  /** bytes copied by the bandwidth measurement (default: 1 GiB on CUDA, 256 MiB on the CPU) */
  bandwidthBytes?: number;
  /** prompt matmul arithmetic of the CUDA backend (default precise; the CPU computes in fp32 either way) */
  precision?: PrecisionName;
  /** how merge mode evaluates the prompt: tokenwise (default) or batched (lsw_model_config.merge_prompt) */
  mergePrompt?: MergePromptName;
  /** element type of the KV cache: auto (default: the weights' 16-bit type, else f32), f32, f16 or bf16 */
  kvCache?: KvCacheOption;
  /** shape of the reference matmul (default: matmulShape(backend, hidden, promptTokens)) */
  matmulShape?: MatmulShape;
  /** what each decode step appends (default random, DECODE_TOKENS) */
  decodeTokens?: DecodeTokens;
}

/**
 * What each timed decode step appends. `random`: the next token of a seeded random stream (the step's greedy pick is
 * computed and dropped: lsw_model_bench_decode_tokens), so the router sees a new token every step, as in real text.
 * `greedy`: the step before's greedy pick (lsw_model_bench_decode). Greedy decoding of random weights tends to
 * repeat one token, and merge mode skips the merge of a route it already holds, so `greedy` can time merge mode
 * with few merges (`merges_per_token` says how many ran).
 */
export const DECODE_TOKENS = ['random', 'greedy'] as const;
export type DecodeTokens = (typeof DECODE_TOKENS)[number];

/** A warm-up query decodes at most this many tokens (as the PyTorch peer). */
export const WARMUP_DECODE_STEPS = 32;

export interface MsSpread {
  median: number | null;
  p10: number | null;
  p90: number | null;
}

/** One mode's row (docs/BENCH.md `results[]`), plus a few cross-checks. */
export interface BenchResultRow {
  mode: string;
  ms_per_token: MsSpread;
  tokens_per_s: number | null;
  ratio_to_base: number | null;
  floor_ms: number | null;
  pct_of_floor: number | null;
  prefill_tokens_per_s: number | null;
  ttft_ms: number | null;
  /** useful FLOPs of the prompt forward (stats.ts prefillFlops) / median TTFT, TFLOP/s */
  prefill_tflops?: number | null;
  /** prefill_tflops / the matmul rate measured in the same run (machine.matmul_tflops) × 100 */
  prefill_pct_of_matmul?: number | null;
  peak_device_bytes: number | null;
  launches_per_token: number | null;
  ms_per_token_mean?: number | null;
  decode_steps_measured?: number;
  repetitions_measured?: number;
  adapter_bytes_per_token?: number | null;
  error?: string;
  [k: string]: unknown;
}

/** The JSON result of docs/BENCH.md. */
export interface BenchDoc {
  tool: string;
  version: string;
  date: string;
  command: string;
  machine: { host: string; cpu: string; gpu: string | null; backend: string; copy_bandwidth_gbps: number | null; [k: string]: unknown };
  model: { preset: string | null; path: string | null; dtype: string; params: number | null; weight_bytes: number | null; layers: number | null; hidden: number | null; intermediate: number | null; vocab: number | null; [k: string]: unknown };
  adapter: { router: string; experts: number; top_k: number; rank: number | null; targets: string[]; adapter_bytes: number | null; [k: string]: unknown };
  protocol: { batch: number; prompt_tokens: number; new_tokens: number; warmup: number; repetitions: number; interleaved: boolean; [k: string]: unknown };
  results: BenchResultRow[];
  errors?: string[];
  [k: string]: unknown;
}

export type BenchPhase = 'bandwidth' | 'loading' | 'matmul' | 'warmup' | 'measuring' | 'peer' | 'done';

/** The plain state object that the progress views render. */
export interface BenchState {
  phase: BenchPhase;
  title: string;
  backend: string;
  /** the KV cache's element type, once the model is built (auto resolved) */
  kvCache: KvCacheName | null;
  load: { done: number; total: number; name: string; finalizing: boolean };
  bandwidthGBps: number | null;
  /** measured matmul rate (TFLOP/s) and its shape, once known */
  matmulTflops: number | null;
  matmul: (MatmulShape & { dtype: string }) | null;
  /** repetition in progress (1-based; warm-up rounds count separately) */
  rep: number;
  repetitions: number;
  warmupRound: number;
  warmup: number;
  mode: string;
  queriesDone: number;
  queriesTotal: number;
  /** live median ms/token per mode */
  live: Array<{ mode: string; median: number | null; steps: number }>;
  peerLine: string;
  doc: BenchDoc | null;
  peer: BenchDoc | null;
  peerError: string | null;
}

export function newBenchState(o: Pick<BenchOptions, 'modes' | 'repetitions' | 'warmup' | 'preset' | 'model' | 'dtype'>): BenchState {
  return {
    phase: 'bandwidth',
    // a given model's type is known once it is read (it is its own unless converted on the fly)
    title: o.preset !== undefined ? `${o.preset} (${o.dtype})` : `${o.model}`,
    backend: '',
    kvCache: null,
    load: { done: 0, total: 0, name: '', finalizing: false },
    bandwidthGBps: null,
    matmulTflops: null,
    matmul: null,
    rep: 0,
    repetitions: o.repetitions,
    warmupRound: 0,
    warmup: o.warmup,
    mode: '',
    queriesDone: 0,
    queriesTotal: (o.warmup + o.repetitions) * o.modes.length,
    live: o.modes.map((m) => ({ mode: m, median: null, steps: 0 })),
    peerLine: '',
    doc: null,
    peer: null,
    peerError: null,
  };
}

/** Seeded prompt tokens (mulberry32), in [0, vocab). */
export function randomPrompt(n: number, vocab: number, seed: number): Int32Array {
  let a = seed >>> 0;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * vocab);
  }
  return out;
}

function packageVersion(): string {
  try {
    const req = createRequire(import.meta.url);
    for (const p of ['../../../package.json', '../../package.json']) {
      try {
        return String((req(p) as { version?: string }).version ?? '');
      } catch {
        /* next */
      }
    }
  } catch {
    /* unknown */
  }
  return '';
}

function gpuName(): string | null {
  const r = spawnSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader', '-i', '0'], { encoding: 'utf8', timeout: 10000 });
  if (r.error || r.status !== 0) return null;
  const name = r.stdout.split('\n')[0].trim();
  return name === '' ? null : name;
}

interface ModeAcc {
  steps: number[];
  ttft: number[];
  stats: ReturnType<BenchEngine['stats']> | null;
  peak: number;
  reps: number;
  error: string | null;
  /** SGMM merges in the measured decode steps (merge mode; the engine's counter around each timed loop): one per
   * step, or with a LAYERWISE adapter one per layer and step */
  merges: number;
  /** skipped merges (a route the working weights already held) over the same steps, counted as merges are */
  skips: number;
}

/**
 * Runs the benchmark. `onUpdate` is called after each change of `state` (the caller repaints a view or prints a
 * line). Returns the JSON document of docs/BENCH.md (also left in state.doc).
 */
export async function runBench(o: BenchOptions, state: BenchState, onUpdate: () => void = () => {}): Promise<BenchDoc> {
  const native = getNative();
  const backend: 'cpu' | 'cuda' = o.backend === 'auto' ? (native.raw.lsw_cuda_available() ? 'cuda' : 'cpu') : o.backend;
  state.backend = backend;
  const errors: string[] = [];

  // 1. copy bandwidth of this backend's memory, in the same run (before the model takes its memory)
  state.phase = 'bandwidth';
  onUpdate();
  const bwBytes = o.bandwidthBytes ?? (backend === 'cuda' ? 1 << 30 : 256 << 20);
  let bw: number | null = null;
  try {
    bw = await measureBandwidth(backend, bwBytes);
    if (!(bw > 0) || !Number.isFinite(bw)) {
      errors.push(`copy bandwidth: the engine measured ${bw} GB/s`);
      bw = null;
    }
  } catch (e) {
    errors.push(`copy bandwidth: ${oneLine(e)}`);
  }
  state.bandwidthGBps = bw;

  // 2. the model
  state.phase = 'loading';
  onUpdate();
  const steps = o.newTokens - 1;
  const engine = await BenchEngine.build({
    preset: o.preset,
    model: o.model,
    dtype: o.dtype,
    convertDtype: o.convertDtype,
    adapter: o.adapter,
    backend,
    threads: o.threads,
    maxContext: o.promptTokens + o.newTokens,
    seed: o.seed,
    precision: o.precision ?? 'precise',
    mergePrompt: o.mergePrompt ?? 'tokenwise',
    kvCache: o.kvCache ?? 'auto',
    onProgress: (p: BuildProgress) => {
      state.load = { done: p.done, total: p.total, name: p.name ?? '', finalizing: p.phase === 'finalize' };
      onUpdate();
    },
  });
  state.kvCache = engine.kvCache;
  if (o.preset === undefined) state.title = `${o.model} (${engine.config.dtype})`;
  try {
    const c = engine.config;
    const prompt = randomPrompt(o.promptTokens, c.vocab_size, o.seed);
    // --decode-tokens random: what every decode step appends, the same stream for every mode and query
    const decodeTokens: DecodeTokens = o.decodeTokens ?? 'random';
    const stream = decodeTokens === 'random' ? randomPrompt(steps, c.vocab_size, (o.seed ^ 0x9e3779b9) >>> 0) : null;

    // 3. the matmul rate of the engine's own prefill GEMM for this dtype, in the same run (the reference of
    // prefill_pct_of_matmul)
    const mm = o.matmulShape ?? matmulShape(backend, c.hidden_size, prompt.length);
    state.matmul = { ...mm, dtype: c.dtype };
    state.phase = 'matmul';
    onUpdate();
    let matmulRate: number | null = null;
    try {
      matmulRate = await measureMatmul(backend, c.dtype, mm.rows, mm.cols, mm.n, o.threads);
      if (!(matmulRate > 0) || !Number.isFinite(matmulRate)) {
        errors.push(`matmul rate: the engine measured ${matmulRate} TFLOP/s`);
        matmulRate = null;
      }
    } catch (e) {
      errors.push(`matmul rate: ${oneLine(e)}`);
    }
    state.matmulTflops = matmulRate;
    const flops = prefillFlops(c, prompt.length);
    const acc = new Map<BenchMode, ModeAcc>(o.modes.map((m) => [m, { steps: [], ttft: [], stats: null, peak: 0, reps: 0, error: null, merges: 0, skips: 0 }]));

    const query = async (mode: BenchMode, decodeSteps: number, measured: boolean): Promise<void> => {
      const a = acc.get(mode)!;
      if (a.error) return;
      state.mode = mode;
      onUpdate();
      try {
        engine.setMode(mode);
        engine.reset();
        engine.setGreedy();
        const t0 = performance.now();
        const first = await engine.prefill(prompt);
        const ttft = performance.now() - t0;
        const st0 = engine.stats();
        let ms: Float64Array = new Float64Array(0);
        if (decodeSteps > 0) ms = stream ? await engine.benchDecodeTokens(stream.subarray(0, decodeSteps)) : await engine.benchDecode(first, decodeSteps);
        const st = engine.stats();
        a.peak = Math.max(a.peak, st.deviceBytesPeak);
        if (measured) {
          // the engine counts a merge or a skip per decode step, or with a LAYERWISE adapter per layer per step
          a.merges += st.mergeSteps - st0.mergeSteps;
          a.skips += st.mergeSkipped - st0.mergeSkipped;
          for (const x of ms) a.steps.push(x);
          a.ttft.push(ttft);
          a.stats = st;
          a.reps++;
          const live = state.live.find((l) => l.mode === mode);
          if (live) {
            live.median = spread(a.steps).median;
            live.steps = a.steps.length;
          }
        }
      } catch (e) {
        a.error = oneLine(e);
        errors.push(`${mode}: ${a.error}`);
      }
      state.queriesDone++;
      onUpdate();
    };

    // 4. warm-up rounds, then the measured repetitions; every round runs every mode in turn, rotated
    const rotated = (r: number) => o.modes.map((_, i) => o.modes[(i + r) % o.modes.length]);
    state.phase = 'warmup';
    for (let w = 0; w < o.warmup; w++) {
      state.warmupRound = w + 1;
      for (const m of rotated(w)) await query(m, Math.min(steps, WARMUP_DECODE_STEPS), false);
    }
    state.phase = 'measuring';
    for (let r = 0; r < o.repetitions; r++) {
      state.rep = r + 1;
      for (const m of rotated(r)) await query(m, steps, true);
    }
    engine.reset();

    // 5. the numbers
    const avgCtx = o.promptTokens + (steps + 1) / 2;
    const kvBytes = DTYPE_BYTES[engine.kvCache];
    const kvAvg = kvBytesRead(c.num_layers, c.num_kv_heads, c.head_dim, kvBytes, avgCtx);
    const medians = new Map<BenchMode, number>();
    const rows: BenchResultRow[] = o.modes.map((mode) => {
      const a = acc.get(mode)!;
      const row: BenchResultRow = {
        mode,
        ms_per_token: { median: null, p10: null, p90: null },
        tokens_per_s: null,
        ratio_to_base: null,
        floor_ms: null,
        pct_of_floor: null,
        prefill_tokens_per_s: null,
        ttft_ms: null,
        prefill_tflops: null,
        prefill_pct_of_matmul: null,
        peak_device_bytes: a.peak > 0 ? a.peak : null,
        launches_per_token: null,
      };
      if (a.error) row.error = a.error;
      if (a.steps.length === 0 || !a.stats) return row;
      const s = spread(a.steps);
      medians.set(mode, s.median);
      const ttft = spread(a.ttft).median;
      // merge mode moves its merge's bytes only in the steps that merged (a repeated route is skipped)
      // (the share of the merges a step can run that it did: per step, or per layer and step when layer-wise)
      const mergeFrac = mode === 'merge' ? (a.merges + a.skips > 0 ? a.merges / (a.merges + a.skips) : 0) : null;
      const adapterBytes = mergeFrac === null ? a.stats.adapterBytes : a.stats.adapterBytes * mergeFrac;
      const floor = floorMs(a.stats.weightBytes + adapterBytes + kvAvg, bw);
      row.ms_per_token = { median: rnd(s.median), p10: rnd(s.p10), p90: rnd(s.p90) };
      row.tokens_per_s = rnd(1000 / s.median, 2);
      row.floor_ms = rnd(floor);
      row.pct_of_floor = rnd(pctOfFloor(floor, s.median), 2);
      row.prefill_tokens_per_s = rnd(prompt.length / (ttft / 1000), 1);
      row.ttft_ms = rnd(ttft, 3);
      const pf = tflops(flops.total, ttft);
      row.prefill_tflops = rnd(pf, 6);
      row.prefill_pct_of_matmul = pf !== null && matmulRate !== null ? rnd((pf / matmulRate) * 100, 3) : null;
      // kernels per decode step (the CUDA graph's nodes); the CPU backend launches none, and an uncaptured step
      // has no count: null
      row.launches_per_token = backend === 'cuda' && a.stats.graphCaptured && a.stats.launchesPerToken > 0 ? a.stats.launchesPerToken : null;
      row.ms_per_token_mean = rnd(mean(a.steps));
      row.decode_steps_measured = a.steps.length;
      row.repetitions_measured = a.reps;
      row.adapter_bytes_per_token = Math.round(adapterBytes);
      if (mergeFrac !== null) row.merges_per_token = rnd(mergeFrac, 4);
      return row;
    });
    const baseMed = medians.get('base');
    rows.forEach((r, i) => {
      const med = medians.get(o.modes[i]);
      if (med !== undefined && baseMed !== undefined) r.ratio_to_base = rnd(med / baseMed);
    });

    const st = engine.stats();
    const a = engine.adapter;
    const doc: BenchDoc = {
      tool: 'lora-switch',
      version: `${packageVersion()} (engine ${String(native.raw.lsw_version())}, ${String(native.raw.lsw_cpu_features())})`,
      date: new Date().toISOString(),
      command: o.command,
      machine: {
        host: os.hostname(),
        cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
        gpu: backend === 'cuda' ? gpuName() : null,
        backend,
        copy_bandwidth_gbps: rnd(bw, 1),
        copy_bandwidth_bytes: bwBytes,
        matmul_tflops: rnd(matmulRate, 6),
        matmul_shape: { rows: mm.rows, cols: mm.cols, n: mm.n },
        matmul_dtype: c.dtype,
        cores: os.cpus().length,
        threads: st.threads,
      },
      model: {
        preset: o.preset ?? null,
        path: engine.path,
        dtype: c.dtype,
        params: engine.params,
        weight_bytes: engine.weightBytes,
        layers: c.num_layers,
        hidden: c.hidden_size,
        intermediate: c.intermediate_size,
        vocab: c.vocab_size,
        heads: c.num_heads,
        kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        weights: engine.path ? 'loaded' : 'random',
      },
      adapter: a
        ? { router: a.router, experts: a.experts, top_k: a.top_k, rank: a.rank, targets: a.targets, adapter_bytes: a.adapter_bytes, synthetic: a.synthetic }
        : { router: 'none', experts: 0, top_k: 0, rank: null, targets: [], adapter_bytes: 0, synthetic: false },
      protocol: {
        batch: 1,
        prompt_tokens: prompt.length,
        new_tokens: o.newTokens,
        warmup: o.warmup,
        repetitions: o.repetitions,
        interleaved: true,
        decode_steps_per_query: steps,
        warmup_decode_steps: Math.min(steps, WARMUP_DECODE_STEPS),
        seed: o.seed,
        precision: o.precision ?? 'precise',
        merge_prompt: o.mergePrompt ?? 'tokenwise',
        kv_cache: engine.kvCache,
        decode_tokens: decodeTokens,
      },
      prefill_flops: { ...flops, tokens: prompt.length },
      floor_bytes: { weights_read: st.weightBytes, kv_read_avg: Math.round(kvAvg), avg_context: avgCtx, kv_bytes_per_element: kvBytes },
      results: rows,
      errors,
    };
    state.doc = doc;
    return doc;
  } finally {
    engine.free();
  }
}

/**
 * The engine model that `bench` drives: a synthetic model of a preset shape (every tensor engine-allocated with
 * seeded random values, lsw_model_add_random_tensor: no file, generated directly in host or device memory), or a
 * given .lsw / HF folder; plus synthetic random MoE-LoRA adapters by flags (tensors adapters.0.… of
 * docs/FORMAT.md). Model (src/core/model.ts) is for generation; bench needs the bare backbone mode, the engine's
 * timed decode loop and the stats, so it holds its own lsw_model.
 */
import fs from 'node:fs';
import os from 'node:os';
import { UserError } from '../errors.js';
import type { EngineConfig, ModelDtype } from '../hf-config.js';
import { getNative, BACKEND, MODE, type Native } from '../native/abi.js';
import {
  openModelFile, closeModelFile, adapterDesc, engineConfigStruct, type ModelFile, type PrecisionName, type MergePromptName, type KvCacheName, type KvCacheOption, resolveKvCache, attentionWeightDtype, engineTensorDtype, DTYPE_CODE,
} from '../model.js';
import { DTYPE_BYTES as ST_DTYPE_BYTES, type FloatDtype } from '../dtype.js';
import { presetConfig, type PresetName } from './presets.js';

export const MODULES = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type ModuleName = (typeof MODULES)[number];
export type RouterName = 'pregated' | 'layerwise';
export type BenchMode = 'base' | 'unfused' | 'merge' | 'fused';
export const BENCH_MODES: readonly BenchMode[] = ['base', 'unfused', 'merge', 'fused'];

/** Synthetic adapter requested by flags. */
export interface SyntheticAdapter {
  router: RouterName;
  experts: number;
  topK: number;
  rank: number;
  targets: ModuleName[];
}

/** Random-value scales: weights ±0.02 (activations stay O(1) through RMSNorm), 1-D F32 tensors 1 ± 0.1. */
export const WEIGHT_SCALE = 0.02;
export const NORM_SCALE = 0.1;
/** Bytes per element of a dtype: weights, and the KV cache (--kv-cache) in bench's memory floor. */
export const DTYPE_BYTES: Record<ModelDtype, number> = { f32: ST_DTYPE_BYTES.F32, f16: ST_DTYPE_BYTES.F16, bf16: ST_DTYPE_BYTES.BF16 };

export interface TensorSpec {
  name: string;
  shape: number[];
  dtype: ModelDtype;
}

/** [in, out] of an adapted module. */
export function moduleDims(c: EngineConfig, m: ModuleName): [number, number] {
  const H = c.hidden_size;
  const q = c.num_heads * c.head_dim;
  const kv = c.num_kv_heads * c.head_dim;
  switch (m) {
    case 'q': return [H, q];
    case 'k': case 'v': return [H, kv];
    case 'o': return [q, H];
    case 'gate': case 'up': return [H, c.intermediate_size];
    case 'down': return [c.intermediate_size, H];
  }
}

/** Every backbone tensor of docs/FORMAT.md for this config (1-D tensors are F32). */
export function backboneTensors(c: EngineConfig): TensorSpec[] {
  const dt = c.dtype;
  const H = c.hidden_size;
  const qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const out: TensorSpec[] = [{ name: 'tok_embeddings.weight', shape: [c.vocab_size, H], dtype: dt }];
  for (let L = 0; L < c.num_layers; L++) {
    out.push({ name: `layers.${L}.attn_norm.weight`, shape: [H], dtype: 'f32' });
    out.push({ name: `layers.${L}.attn.wqkv.weight`, shape: [qkv, H], dtype: dt });
    if (c.qkv_bias) out.push({ name: `layers.${L}.attn.bqkv.bias`, shape: [qkv], dtype: 'f32' });
    out.push({ name: `layers.${L}.attn.wo.weight`, shape: [H, c.num_heads * c.head_dim], dtype: dt });
    out.push({ name: `layers.${L}.ffn_norm.weight`, shape: [H], dtype: 'f32' });
    out.push({ name: `layers.${L}.ffn.w_gate_up.weight`, shape: [2 * c.intermediate_size, H], dtype: dt });
    out.push({ name: `layers.${L}.ffn.w_down.weight`, shape: [H, c.intermediate_size], dtype: dt });
  }
  out.push({ name: 'norm.weight', shape: [H], dtype: 'f32' });
  if (!c.tie_embeddings) out.push({ name: 'lm_head.weight', shape: [c.vocab_size, H], dtype: dt });
  return out;
}

/** The tensors of a synthetic adapter (id `a`) in the model dtype (docs/FORMAT.md, "Adapter tensors"). */
export function adapterTensors(c: EngineConfig, s: SyntheticAdapter, a = 0): TensorSpec[] {
  const dt = c.dtype;
  const out: TensorSpec[] = [];
  if (s.router === 'pregated') out.push({ name: `adapters.${a}.router.weight`, shape: [s.experts, moduleDims(c, s.targets[0])[0]], dtype: dt });
  for (let L = 0; L < c.num_layers; L++) {
    if (s.router === 'layerwise') out.push({ name: `adapters.${a}.layers.${L}.router.weight`, shape: [s.experts, c.hidden_size], dtype: dt });
    for (const m of s.targets) {
      const [i, o] = moduleDims(c, m);
      out.push({ name: `adapters.${a}.layers.${L}.${m}.lora_A`, shape: [s.experts, s.rank, i], dtype: dt });
      out.push({ name: `adapters.${a}.layers.${L}.${m}.lora_B`, shape: [s.experts, o, s.rank], dtype: dt });
    }
  }
  return out;
}

export function tensorBytes(t: TensorSpec): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
}

/** What a synthetic model on the CPU backend holds in host memory, in bytes. */
export interface CpuHostBytes {
  /** the random backbone tensors */
  weights: number;
  /** the random adapter tensors */
  adapters: number;
  /** merge mode's working copy of every fused matrix an adapter targets (the CPU engine makes them at finalize) */
  workingCopies: number;
  /** K and V of every layer for maxContext positions */
  kvCache: number;
  total: number;
}

export function cpuHostBytes(c: EngineConfig, adapter: SyntheticAdapter | undefined, maxContext: number, kvCache: KvCacheName): CpuHostBytes {
  const sum = (ts: TensorSpec[]) => ts.reduce((a, t) => a + tensorBytes(t), 0);
  const weights = sum(backboneTensors(c));
  const adapters = adapter ? sum(adapterTensors(c, adapter)) : 0;
  let workingCopies = 0;
  if (adapter) {
    const H = c.hidden_size;
    const q = c.num_heads * c.head_dim;
    const fused = new Set(adapter.targets.map((m) => (m === 'q' || m === 'k' || m === 'v' ? 'qkv' : m === 'gate' || m === 'up' ? 'gate_up' : m)));
    const elems: Record<string, number> = {
      qkv: (c.num_heads + 2 * c.num_kv_heads) * c.head_dim * H,
      o: H * q,
      gate_up: 2 * c.intermediate_size * H,
      down: H * c.intermediate_size,
    };
    for (const f of fused) workingCopies += elems[f] * DTYPE_BYTES[c.dtype] * c.num_layers;
  }
  const kv = c.num_layers * maxContext * c.num_kv_heads * c.head_dim * 2 * DTYPE_BYTES[kvCache];
  return { weights, adapters, workingCopies, kvCache: kv, total: weights + adapters + workingCopies + kv };
}

/**
 * Host memory a new allocation can take without the kernel killing the process: MemAvailable plus free swap from
 * /proc/meminfo (Linux), else what Node reports free.
 */
export function hostAvailableBytes(meminfo?: string): number {
  let text = meminfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/meminfo', 'utf8');
    } catch {
      return os.freemem();
    }
  }
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text!);
    return m ? Number(m[1]) * 1024 : null;
  };
  const avail = kb('MemAvailable');
  return avail === null ? os.freemem() : avail + (kb('SwapFree') ?? 0);
}

const GB = (b: number) => `${(b / 1e9).toFixed(1)} GB`;
/** Process overhead beside the model (Node, the tokenizer, the engine's scratch): counted with the model's bytes. */
export const HOST_OVERHEAD_BYTES = 512 << 20;

/** A UserError when a synthetic CPU model would not fit in the host memory available (it would be killed, not fail). */
export function checkCpuHostMemory(what: string, need: CpuHostBytes, available: number): void {
  if (need.total + HOST_OVERHEAD_BYTES <= available) return;
  const parts = [`weights ${GB(need.weights)}`];
  if (need.adapters) parts.push(`adapters ${GB(need.adapters)}`);
  if (need.workingCopies) parts.push(`merge-mode working copies ${GB(need.workingCopies)}`);
  parts.push(`KV cache ${GB(need.kvCache)}`);
  throw new UserError(`bench: ${what} on the CPU backend needs about ${GB(need.total + HOST_OVERHEAD_BYTES)} of host memory (${parts.join(', ')}, the process ${GB(HOST_OVERHEAD_BYTES)}); ${GB(available)} is available: use a smaller preset (tiny), fewer --prompt-tokens / --new-tokens, or --backend cuda`);
}

/** Deterministic per-tensor seed: FNV-1a 64 of the name, mixed with the run's seed. */
export function tensorSeed(name: string, seed: number): bigint {
  let h = 0xcbf29ce484222325n;
  for (const ch of Buffer.from(name, 'utf8')) {
    h ^= BigInt(ch);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return (h ^ BigInt(seed)) & 0xffffffffffffffffn;
}

export interface EngineStats {
  weightBytes: number;
  adapterBytes: number;
  deviceBytesPeak: number;
  launchesPerToken: number;
  graphCaptured: boolean;
  threads: number;
  simdLevel: number;
  /** merge mode: SGMM merges run, and merges skipped (the same experts and gates as the working weights hold),
   *  since the model was loaded */
  mergeSteps: number;
  mergeSkipped: number;
}

export interface BuildProgress {
  phase: 'tensors' | 'finalize';
  done: number;
  total: number;
  name?: string;
}

export interface BuildOptions {
  preset?: PresetName;
  /** .lsw file or HF folder */
  model?: string;
  dtype: ModelDtype;
  /** dtype of an HF folder converted on the fly (default: its torch_dtype) */
  convertDtype?: ModelDtype;
  /** synthetic adapter (null: none; a given model keeps the adapters of its file) */
  adapter: SyntheticAdapter | null;
  backend: 'cpu' | 'cuda' | 'auto';
  threads: number;
  maxContext: number;
  seed: number;
  /** prompt matmul arithmetic of the CUDA backend (lsw_model_config.prefill_precision; default precise) */
  precision?: PrecisionName;
  /** how merge mode evaluates the prompt (lsw_model_config.merge_prompt; default tokenwise) */
  mergePrompt?: MergePromptName;
  /** element type of the KV cache (lsw_model_config.kv_dtype; default f32; auto: the attention weights' 16-bit type) */
  kvCache?: KvCacheOption;
  onProgress?: (p: BuildProgress) => void;
}

/** What bench reports about the adapter of the model. */
export interface AdapterInfo {
  router: string;
  experts: number;
  top_k: number;
  rank: number | null;
  targets: string[];
  adapter_bytes: number;
  synthetic: boolean;
}


/** A finalized lsw_model for bench. */
export class BenchEngine {
  private handle: unknown;
  private readonly stepOut = new Int32Array(1);
  private constructor(
    private readonly native: Native,
    handle: unknown,
    readonly config: EngineConfig,
    readonly backend: 'cpu' | 'cuda',
    readonly maxContext: number,
    /** parameters and bytes of the backbone */
    readonly params: number,
    readonly weightBytes: number,
    readonly adapter: AdapterInfo | null,
    readonly path: string | null,
    /** the KV cache's element type (auto resolved) */
    readonly kvCache: KvCacheName,
  ) {
    this.handle = handle;
  }

  static async build(o: BuildOptions): Promise<BenchEngine> {
    if (!o.preset === !o.model) throw new UserError('bench: give either --preset or -m/--model');
    const native = getNative();
    const backend: 'cpu' | 'cuda' = o.backend === 'auto' ? (native.raw.lsw_cuda_available() ? 'cuda' : 'cpu') : o.backend;
    let mf: ModelFile | null = null;
    try {
      if (o.model) mf = await openModelFile(o.model, { dtype: o.convertDtype });
      const config = mf ? mf.config : presetConfig(o.preset as PresetName, o.dtype);
      const maxContext = Math.min(o.maxContext, config.max_position_embeddings);
      if (o.maxContext > config.max_position_embeddings)
        throw new UserError(`${o.model ?? o.preset}: --prompt-tokens + --new-tokens = ${o.maxContext} exceeds the model's context of ${config.max_position_embeddings}`);
      const fileAdapters = mf ? mf.adapters : [];
      if (fileAdapters.length > 0 && o.adapter)
        throw new UserError(`${o.model}: the model has its own adapters (${fileAdapters.map((a) => a.name).join(', ')}); synthetic adapter flags (--experts, --top-k, --rank, --targets, --router) apply to models without adapters`);
      if (o.adapter) validateAdapter(config, o.adapter);
      const kvCache = resolveKvCache(o.kvCache ?? 'f32', mf ? attentionWeightDtype(mf) : config.dtype);
      // a synthetic model's values live in host memory on the CPU backend (a model file is mapped, not copied)
      if (backend === 'cpu' && !mf) checkCpuHostMemory(`the ${o.preset} preset`, cpuHostBytes(config, o.adapter ?? undefined, maxContext, kvCache), hostAvailableBytes());

      const out: unknown[] = [null];
      native.call('lsw_model_create', engineConfigStruct(config, backend, maxContext, o.threads, 0, o.precision ?? 'precise', o.mergePrompt ?? 'tokenwise', kvCache), out);
      const handle = out[0];
      try {
        let params = 0;
        let weightBytes = 0;
        let adapterBytes = 0;
        const aid = new Int32Array(1);
        if (mf) {
          // the file's adapters first (ids in lsw.adapters order), then every tensor of the model file
          fileAdapters.forEach((a) => native.call('lsw_model_add_adapter', handle, adapterDesc(a), aid));
          const fileId = new Int32Array(1);
          native.call('lsw_model_map_file', handle, mf.st.path, mf.st.dataOffset, fileId);
          const list = [...mf.st.tensors];
          let i = 0;
          for (const [name, t] of list) {
            const dt = engineTensorDtype(mf.st.path, name, t.dtype);
            native.call('lsw_model_add_tensor', handle, name, dt, t.shape.length, BigInt64Array.from(t.shape.map(BigInt)), fileId[0], t.start);
            const n = t.shape.reduce((a, b) => a * b, 1);
            const bytes = n * ST_DTYPE_BYTES[t.dtype as FloatDtype];  // F32, F16 or BF16 (engineTensorDtype)
            if (name.startsWith('adapters.')) adapterBytes += bytes;
            else {
              params += n;
              weightBytes += bytes;
            }
            o.onProgress?.({ phase: 'tensors', done: ++i, total: list.length, name });
          }
        }
        const random: TensorSpec[] = [];
        if (!mf) random.push(...backboneTensors(config));
        if (o.adapter) {
          native.call('lsw_model_add_adapter', handle, {
            router_kind: o.adapter.router === 'pregated' ? 1 : 2,
            num_experts: o.adapter.experts,
            top_k: o.adapter.topK,
            router_input: MODULES.indexOf(o.adapter.targets[0]),
            ffn_experts: 0,
          }, aid);
          random.push(...adapterTensors(config, o.adapter, aid[0]));
        }
        let done = 0;
        for (const t of random) {
          const scale = t.shape.length === 1 ? NORM_SCALE : WEIGHT_SCALE;
          // async: generating a 7B model's values takes a while; the progress view stays live
          await native.callAsync('lsw_model_add_random_tensor', handle, t.name, DTYPE_CODE[t.dtype], t.shape.length,
            BigInt64Array.from(t.shape.map(BigInt)), tensorSeed(t.name, o.seed), scale);
          const bytes = tensorBytes(t);
          if (t.name.startsWith('adapters.')) adapterBytes += bytes;
          else {
            params += t.shape.reduce((a, b) => a * b, 1);
            weightBytes += bytes;
          }
          o.onProgress?.({ phase: 'tensors', done: ++done, total: random.length, name: t.name });
        }
        o.onProgress?.({ phase: 'finalize', done: 0, total: 1 });
        await native.callAsync('lsw_model_finalize', handle);
        let adapter: AdapterInfo | null = null;
        if (o.adapter) {
          adapter = { router: o.adapter.router, experts: o.adapter.experts, top_k: o.adapter.topK, rank: o.adapter.rank, targets: [...o.adapter.targets], adapter_bytes: adapterBytes, synthetic: true };
        } else if (fileAdapters.length > 0) {
          const a = fileAdapters[0];
          adapter = {
            router: fileAdapters.map((x) => x.router_kind).join('+'),
            experts: a.num_experts,
            top_k: a.top_k,
            rank: null,
            targets: [...new Set(fileAdapters.flatMap((x) => x.target_modules))],
            adapter_bytes: adapterBytes,
            synthetic: false,
          };
        }
        return new BenchEngine(native, handle, config, backend, maxContext, params, weightBytes, adapter, mf ? o.model ?? null : null, kvCache);
      } catch (e) {
        native.raw.lsw_model_free(handle);
        throw e;
      }
    } finally {
      if (mf) closeModelFile(mf);
    }
  }

  private h(): unknown {
    if (this.handle === null) throw new UserError('bench: model already freed');
    return this.handle;
  }

  setMode(mode: BenchMode): void {
    this.native.call('lsw_model_set_mode', this.h(), MODE[mode]);
  }

  /** Greedy sampling for the prefill's token (bench_decode is greedy itself). */
  setGreedy(): void {
    this.native.call('lsw_model_set_sampler', this.h(), { temperature: 0, top_k: 0, top_p: 1, min_p: 0, seed: 0n });
  }

  reset(): void {
    this.native.call('lsw_model_reset', this.h());
  }

  async prefill(tokens: Int32Array): Promise<number> {
    await this.native.callAsync('lsw_model_prefill', this.h(), tokens, tokens.length, this.stepOut);
    return this.stepOut[0];
  }

  /** n greedy decode steps timed inside the engine: per-step ms. */
  async benchDecode(first: number, n: number): Promise<Float64Array> {
    const ms = new Float64Array(n);
    await this.native.callAsync('lsw_model_bench_decode', this.h(), first, n, ms);
    return ms;
  }

  /** The same timed loop fed `tokens` (step i appends tokens[i]; each step's greedy pick is computed and dropped). */
  async benchDecodeTokens(tokens: Int32Array): Promise<Float64Array> {
    const ms = new Float64Array(tokens.length);
    await this.native.callAsync('lsw_model_bench_decode_tokens', this.h(), tokens, tokens.length, ms);
    return ms;
  }

  stats(): EngineStats {
    const s: Record<string, number | bigint> = {};
    this.native.call('lsw_model_get_stats', this.h(), s);
    return {
      weightBytes: Number(s.weight_bytes),
      adapterBytes: Number(s.adapter_bytes),
      deviceBytesPeak: Number(s.device_bytes_peak),
      launchesPerToken: Number(s.launches_per_token),
      graphCaptured: Number(s.graph_captured) !== 0,
      threads: Number(s.n_threads),
      simdLevel: Number(s.simd_level),
      mergeSteps: Number(s.merge_steps),
      mergeSkipped: Number(s.merge_skipped),
    };
  }

  free(): void {
    if (this.handle !== null) {
      this.native.raw.lsw_model_free(this.handle);
      this.handle = null;
    }
  }
}

/** The synthetic adapter against the model: one line naming the flag on a mismatch. */
export function validateAdapter(c: EngineConfig, s: SyntheticAdapter): void {
  if (!Number.isInteger(s.experts) || s.experts < 1) throw new UserError(`--experts must be a positive integer (got ${s.experts})`);
  if (!Number.isInteger(s.topK) || s.topK < 1 || s.topK > s.experts) throw new UserError(`--top-k must be between 1 and --experts (${s.experts}); got ${s.topK}`);
  if (!Number.isInteger(s.rank) || s.rank < 1) throw new UserError(`--rank must be a positive integer (got ${s.rank})`);
  for (const m of s.targets) {
    const [i, o] = moduleDims(c, m);
    if (s.rank > Math.min(i, o)) throw new UserError(`--rank ${s.rank} exceeds the ${m} projection's dimensions (${o}×${i})`);
  }
  if (s.targets.length === 0) throw new UserError('--targets selects no module');
}

/** Bench's measured copy bandwidth of the backend's memory (GB/s, read + write). */
export async function measureBandwidth(backend: 'cpu' | 'cuda', bytes: number): Promise<number> {
  const native = getNative();
  const out = new Float64Array(1);
  await native.callAsync('lsw_measure_bandwidth', backend === 'cuda' ? BACKEND.CUDA : BACKEND.CPU, BigInt(bytes), out);
  return out[0];
}

/**
 * Bench's measured matmul rate of the backend's own prefill GEMM (lsw_measure_matmul, TFLOP/s): Y[n][rows] =
 * X[n][cols] · W^T with W in `dtype`, fresh random data; CUDA: the fast (one-GEMM) path; CPU: on `threads` threads.
 */
export async function measureMatmul(backend: 'cpu' | 'cuda', dtype: ModelDtype, rows: number, cols: number, n: number, threads: number): Promise<number> {
  const native = getNative();
  const code = DTYPE_CODE[dtype];
  if (code === undefined) throw new UserError(`matmul rate: unknown dtype ${JSON.stringify(dtype)}`);
  const out = new Float64Array(1);
  await native.callAsync('lsw_measure_matmul', backend === 'cuda' ? BACKEND.CUDA : BACKEND.CPU, code, rows, cols, n, threads, out);
  return out[0];
}

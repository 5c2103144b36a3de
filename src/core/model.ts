/**
 * Model: a .lsw file (or an HF folder, converted to a temporary .lsw) loaded into the native engine.
 * The header is parsed here; the weights are memory-mapped by the engine, never copied through JS.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileError, UserError } from './errors.js';
import { readSafetensors, type SafetensorsFile } from './safetensors.js';
import type { EngineConfig, ModelDtype } from './hf-config.js';
import { convertModel, writeAdapterFile, type AdapterSpec, type ConvertEvent } from './convert.js';
import { Tokenizer } from './tokenizer.js';
import { getNative, DTYPE, BACKEND, ROPE, MODE, PRECISION, MERGE_PROMPT, type Native } from './native/abi.js';
import {
  readAdapters, loadAdapterSpec, parseRouterInput, ROUTER_KIND_NAMES, type AdapterDesc, type AdapterMeta,
} from './adapters/index.js';

/** Execution modes of adapted models (lsw_mode): merge (SGMM, the paper), unfused (per-expert LoRA ops), fused. */
export type ModeName = 'merge' | 'unfused' | 'fused';
export const MODE_NAMES: readonly ModeName[] = ['merge', 'unfused', 'fused'];

export type BackendName = 'cpu' | 'cuda' | 'auto';

/**
 * Arithmetic of the prompt (prefill) matmuls on the CUDA backend (lsw_precision, cuda/include/lsw.h): `precise` splits
 * the fp32 activations into hi + lo halves of the weight dtype (two tensor-core GEMMs, ~fp32-accurate, close to the
 * CPU), `fast` rounds them once to the weight dtype (one GEMM, what PyTorch does; about twice the prefill rate).
 * Decode steps are the same either way; the CPU backend computes in fp32 either way.
 */
export type PrecisionName = keyof typeof PRECISION;
export const PRECISION_NAMES: readonly PrecisionName[] = ['precise', 'fast'];

/** The precision option checked: one line naming --precision on a bad value. */
export function checkPrecision(p: string | undefined): PrecisionName {
  const v = p ?? 'precise';
  if (!(PRECISION_NAMES as readonly string[]).includes(v)) throw new UserError(`--precision: unknown precision ${JSON.stringify(v)} (precise or fast)`);
  return v as PrecisionName;
}

/**
 * How merge mode evaluates a prompt of several tokens (lsw_merge_prompt, cuda/include/lsw.h; docs/FORMAT.md "Prompts in
 * merge mode"): `tokenwise` (the default) runs every prompt token through the single-token path (an SGMM merge of its
 * experts, then the bare backbone) -- bit for bit feeding the tokens one at a time, but time to first token grows with
 * the prompt; `batched` runs the prompt in chunks as fused mode does (each token's experts as low-rank deltas next to
 * the pristine weights, no weight writes) and merges only for decode steps. Other modes ignore it.
 */
export type MergePromptName = keyof typeof MERGE_PROMPT;
export const MERGE_PROMPT_NAMES: readonly MergePromptName[] = ['tokenwise', 'batched'];

/** The merge-prompt option checked: one line naming --merge-prompt on a bad value. */
export function checkMergePrompt(p: string | undefined): MergePromptName {
  const v = p ?? 'tokenwise';
  if (!(MERGE_PROMPT_NAMES as readonly string[]).includes(v)) throw new UserError(`--merge-prompt: unknown value ${JSON.stringify(v)} (tokenwise or batched)`);
  return v as MergePromptName;
}

/**
 * Element type of the KV cache (lsw_model_config.kv_dtype, cuda/include/lsw.h): `f16` / `bf16` halve its memory and the
 * bytes each decode step reads; K and V are computed in fp32 and rounded once (to nearest even) when stored, and
 * attention computes in fp32 on the rounded values.
 */
export type KvCacheName = ModelDtype;
export const KV_CACHE_NAMES: readonly KvCacheName[] = ['f32', 'f16', 'bf16'];
/**
 * The --kv-cache option: a type, or `auto`, the weights' own 16-bit type (f16 / bf16 weights: that type, f32 weights:
 * f32), which is what transformers, vLLM and llama.cpp keep their caches in. `auto` is the default of `generate` and
 * `bench`; the Model API defaults to f32 (the engine's fp32 arithmetic end to end, what the reference tests compare).
 */
export type KvCacheOption = KvCacheName | 'auto';
export const KV_CACHE_OPTIONS: readonly KvCacheOption[] = ['auto', ...KV_CACHE_NAMES];

/** The KV cache option checked (`dflt` when not given): one line naming --kv-cache on a bad value. */
export function checkKvCache(p: string | undefined, dflt: KvCacheOption = 'f32'): KvCacheOption {
  const v = p ?? dflt;
  if (!(KV_CACHE_OPTIONS as readonly string[]).includes(v)) throw new UserError(`--kv-cache: unknown type ${JSON.stringify(v)} (auto, f32, f16 or bf16)`);
  return v as KvCacheOption;
}

/** The cache type of an option for weights of type `weights` (`auto`: f16 / bf16 weights keep their type, else f32). */
export function resolveKvCache(opt: KvCacheOption, weights: string | undefined): KvCacheName {
  if (opt !== 'auto') return opt;
  return weights === 'f16' || weights === 'bf16' ? weights : 'f32';
}

/** A safetensors tensor dtype as a model dtype (undefined for any other type). */
const ST_MODEL_DTYPES: Record<string, ModelDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
function tensorDtype(st: SafetensorsFile, name: string): ModelDtype | undefined {
  const t = st.tensors.get(name);
  return t && ST_MODEL_DTYPES[t.dtype];
}
/** The type of a model file's attention weights (layer 0's fused q,k,v: where K and V come from), else lsw.config's. */
export function attentionWeightDtype(mf: ModelFile): string {
  return tensorDtype(mf.st, 'layers.0.attn.wqkv.weight') ?? mf.config.dtype;
}

export interface LoadOptions {
  backend?: BackendName;
  threads?: number;
  /** KV cache capacity; default min(max_position_embeddings, 4096) */
  maxContext?: number;
  device?: number;
  /** dtype when converting an HF folder on the fly */
  dtype?: ModelDtype;
  onConvertProgress?: (e: ConvertEvent) => void;
  /** execution mode for the adapters (default: fused) */
  mode?: ModeName;
  /** prompt matmul arithmetic on the CUDA backend (default: precise); the CPU computes in fp32 either way */
  precision?: PrecisionName;
  /** how merge mode evaluates a prompt: tokenwise (default) or batched (lsw_model_config.merge_prompt) */
  mergePrompt?: MergePromptName;
  /** element type of the KV cache: f32 (default), f16, bf16 or auto (the weights' type; lsw_model_config.kv_dtype) */
  kvCache?: KvCacheOption;
  /**
   * Adapter folders to run on top of the model (`path` or `path:scale` strings, or specs), after the adapters the
   * .lsw already holds. They are read, validated against the model and written to a temporary adapter file that the
   * engine maps next to the model (removed once mapped); an HF folder is converted together with them.
   */
  adapters?: Array<string | AdapterSpec>;
}

/** The engine adapter of a model: its id (registration order), metadata entry and lsw_adapter_desc. */
export interface ModelAdapter extends AdapterMeta {
  id: number;
  /** routing rows per token in lsw_model_get_routes: num_layers (layerwise), 1 (pregated and static) */
  rows: number;
}

/** lsw_model_get_routes of one adapter: experts/gates laid out [n][rows][top_k]. */
export interface Routes {
  adapter: number;
  pos: number;
  n: number;
  rows: number;
  topK: number;
  experts: Int32Array;
  gates: Float32Array;
}

export interface SamplerParams {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  seed: number | bigint;
}

/** The engine's dtype code (lsw_dtype) of each model dtype. */
export const DTYPE_CODE: Record<ModelDtype, number> = { f32: DTYPE.F32, f16: DTYPE.F16, bf16: DTYPE.BF16 };
/** The engine's dtype code for tensor `name` of the safetensors file `path`; a file error for a type it does not take. */
export function engineTensorDtype(path: string, name: string, dtype: string): number {
  const md = ST_MODEL_DTYPES[dtype];
  if (md === undefined) throw fileError(path, `tensor "${name}" has dtype ${dtype}; the engine takes F32, F16 or BF16`);
  return DTYPE_CODE[md];
}
const CONFIG_KEYS = ['vocab_size', 'hidden_size', 'intermediate_size', 'num_layers', 'num_heads', 'num_kv_heads', 'head_dim', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta'] as const;

/** A parsed .lsw file: header, engine config, tokenizer; no native state. */
export interface ModelFile {
  path: string;
  st: SafetensorsFile;
  config: EngineConfig;
  metadata: Record<string, string>;
  tokenizer: Tokenizer;
  /** set when the file is a temporary conversion to delete once mapped */
  temporary: boolean;
  /** every adapter the engine gets, in id order: the file's `lsw.adapters`, then those of LoadOptions.adapters */
  adapters: AdapterMeta[];
  /** temporary adapter file (LoadOptions.adapters) mapped next to the model, deleted once mapped */
  adapterFile: { path: string; st: SafetensorsFile } | null;
}

const ADAPTER_META_KEYS: Array<[keyof AdapterMeta, string]> = [
  ['name', 'string'], ['source', 'string'], ['peft_type', 'string'], ['router_kind', 'string'], ['num_experts', 'number'],
  ['top_k', 'number'], ['ffn_experts', 'boolean'], ['scale', 'number'],
];

/** The `lsw.adapters` metadata of a .lsw (docs/FORMAT.md), validated. */
export function parseAdapterMetas(st: SafetensorsFile): AdapterMeta[] {
  const raw = st.metadata['lsw.adapters'];
  if (raw === undefined) return [];
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw fileError(st.path, 'metadata "lsw.adapters" is not valid JSON');
  }
  if (!Array.isArray(v)) throw fileError(st.path, 'metadata "lsw.adapters" is not a JSON array');
  return v.map((a, i) => {
    const bad = (what: string) => fileError(st.path, `metadata "lsw.adapters"[${i}]: ${what}`);
    if (a === null || typeof a !== 'object' || Array.isArray(a)) throw bad('not an object');
    for (const [k, t] of ADAPTER_META_KEYS) if (typeof a[k] !== t) throw bad(`"${k}" must be a ${t}`);
    if (!ROUTER_KIND_NAMES.includes(a.router_kind)) throw bad(`unknown router_kind ${JSON.stringify(a.router_kind)}`);
    if (!Number.isInteger(a.num_experts) || !Number.isInteger(a.top_k) || a.top_k < 1 || a.top_k > a.num_experts) throw bad(`invalid num_experts ${a.num_experts} / top_k ${a.top_k}`);
    if (a.router_kind !== 'static' && (typeof a.router_input !== 'string' || !parseRouterInput(a.router_input))) throw bad(`invalid router_input ${JSON.stringify(a.router_input)}`);
    if (!Array.isArray(a.target_modules)) throw bad('"target_modules" must be an array');
    return a as AdapterMeta;
  });
}

/** lsw_adapter_desc of an `lsw.adapters` entry. */
export function adapterDesc(a: AdapterMeta): AdapterDesc {
  const kind = ROUTER_KIND_NAMES.indexOf(a.router_kind);
  return {
    router_kind: kind,
    num_experts: a.num_experts,
    top_k: a.top_k,
    router_input: a.router_input ? parseRouterInput(a.router_input)?.id ?? 0 : 0,
    ffn_experts: a.ffn_experts ? 1 : 0,
  };
}

function tmpName(suffix: string): string {
  return path.join(os.tmpdir(), `lora-switch-${process.pid}-${crypto.randomBytes(6).toString('hex')}${suffix}`);
}

export function parseLswConfig(st: SafetensorsFile): EngineConfig {
  const md = st.metadata;
  if (md.format !== 'lora-switch') throw fileError(st.path, 'not a lora-switch model file (no "format": "lora-switch" metadata); convert the Hugging Face folder with `lora-switch convert`');
  if (md.format_version !== '1' && md.format_version !== '2') throw fileError(st.path, `unsupported format_version ${JSON.stringify(md.format_version)} (this version reads 1 and 2)`);
  let cfg: EngineConfig;
  try {
    cfg = JSON.parse(md['lsw.config'] ?? '') as EngineConfig;
  } catch {
    throw fileError(st.path, 'metadata "lsw.config" is missing or not valid JSON');
  }
  for (const k of CONFIG_KEYS) {
    if (typeof cfg[k] !== 'number' || !(cfg[k] > 0)) throw fileError(st.path, `metadata "lsw.config" has an invalid ${k}: ${JSON.stringify(cfg[k])}`);
  }
  if (!(cfg.rope_type in ROPE)) throw fileError(st.path, `metadata "lsw.config" has an unknown rope_type ${JSON.stringify(cfg.rope_type)}`);
  if (typeof md['lsw.tokenizer'] !== 'string') throw fileError(st.path, 'metadata "lsw.tokenizer" is missing');
  return cfg;
}

/** Open a .lsw file or an HF folder (converted to a temporary .lsw in os.tmpdir()). */
export async function openModelFile(p: string, opts: LoadOptions = {}): Promise<ModelFile> {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw fileError(p, 'no such file or directory');
  }
  let file = p;
  let temporary = false;
  let specs = (opts.adapters ?? []).map((a) => (typeof a === 'string' ? loadAdapterSpec(a) : { path: a.path, scale: a.scale ?? 1 }));
  if (st.isDirectory()) {
    // an HF folder is converted with its adapters (validated before anything is written) into one temporary .lsw
    file = tmpName('.lsw');
    await convertModel(p, file, { dtype: opts.dtype, onProgress: opts.onConvertProgress, adapters: specs });
    temporary = true;
    specs = [];
  }
  let adapterFile: ModelFile['adapterFile'] = null;
  try {
    const sf = readSafetensors(file);
    const config = parseLswConfig(sf);
    const md = sf.metadata;
    const tokenizer = new Tokenizer({
      tokenizerJson: md['lsw.tokenizer'],
      tokenizerConfig: md['lsw.tokenizer_config'] ?? null,
      chatTemplate: md['lsw.chat_template'] ?? null,
      origin: p,
      bosTokenId: config.bos_token_id,
      eosTokenIds: config.eos_token_ids,
    });
    const adapters = parseAdapterMetas(sf);
    if (specs.length > 0) {
      // a .lsw: the adapters go to a temporary adapter file that the engine maps next to the model
      // adapters in the model's weight dtype (that of its embedding, whatever lsw.config says)
      const dtype = tensorDtype(sf, 'tok_embeddings.weight') ?? config.dtype;
      if (!['f32', 'f16', 'bf16'].includes(dtype)) throw fileError(file, `cannot tell the model's weight dtype for its adapters (lsw.config dtype ${JSON.stringify(config.dtype)})`);
      const extra = readAdapters(specs, config, { dtype });
      const names = new Set(adapters.map((a) => a.name));
      for (const a of extra) {
        let name = a.meta.name;
        for (let n = 2; names.has(name); n++) name = `${a.meta.name}#${n}`;
        a.meta.name = name;
        names.add(name);
      }
      const af = tmpName('.adapters.lsw');
      await writeAdapterFile(af, extra, { ...config, dtype }, adapters.length);
      adapterFile = { path: af, st: readSafetensors(af) };
      adapters.push(...extra.map((a) => a.meta));
    }
    return { path: file, st: sf, config, metadata: md, tokenizer, temporary, adapters, adapterFile };
  } catch (e) {
    if (temporary) fs.rmSync(file, { force: true });
    if (adapterFile) fs.rmSync(adapterFile.path, { force: true });
    throw e;
  }
}

/** Delete the temporary files of an opened model file (a model that will not be loaded). */
export function closeModelFile(mf: ModelFile): void {
  if (mf.temporary) fs.rmSync(mf.path, { force: true });
  if (mf.adapterFile) fs.rmSync(mf.adapterFile.path, { force: true });
}

export class Model {
  private handle: unknown;
  private readonly native: Native;
  readonly config: EngineConfig;
  readonly tokenizer: Tokenizer;
  readonly metadata: Record<string, string>;
  readonly path: string;
  readonly backend: 'cpu' | 'cuda';
  readonly maxContext: number;
  /** prompt matmul arithmetic the engine was built with (lsw_model_config.prefill_precision) */
  readonly precision: PrecisionName;
  /** how merge mode evaluates a prompt (lsw_model_config.merge_prompt), fixed at load */
  readonly mergePrompt: MergePromptName;
  /** element type of the KV cache (lsw_model_config.kv_dtype), fixed at load */
  readonly kvCache: KvCacheName;
  /** the engine's adapters, in id order */
  readonly adapters: ModelAdapter[];
  private modeName: ModeName;
  private readonly tokBuf = new Int32Array(1);
  private readonly outBuf = new Int32Array(1);

  private constructor(native: Native, handle: unknown, mf: ModelFile, backend: 'cpu' | 'cuda', maxContext: number, mode: ModeName, precision: PrecisionName, mergePrompt: MergePromptName, kvCache: KvCacheName) {
    this.native = native;
    this.handle = handle;
    this.config = mf.config;
    this.tokenizer = mf.tokenizer;
    this.metadata = mf.metadata;
    this.path = mf.path;
    this.backend = backend;
    this.maxContext = maxContext;
    this.precision = precision;
    this.mergePrompt = mergePrompt;
    this.kvCache = kvCache;
    this.modeName = mode;
    this.adapters = mf.adapters.map((a, id) => ({ ...a, id, rows: a.router_kind === 'layerwise' ? mf.config.num_layers : 1 }));
  }

  static async load(p: string, opts: LoadOptions = {}): Promise<Model> {
    const mf = await openModelFile(p, opts);
    return Model.fromFile(mf, opts);
  }

  /** Create the native model from an opened file: map, register tensors, finalize. */
  static async fromFile(mf: ModelFile, opts: LoadOptions = {}): Promise<Model> {
    try {
      const mode = opts.mode ?? 'fused';
      if (!MODE_NAMES.includes(mode)) throw new UserError(`--mode: unknown mode ${JSON.stringify(mode)} (merge, unfused or fused)`);
      const precision = checkPrecision(opts.precision);
      const mergePrompt = checkMergePrompt(opts.mergePrompt);
      const kvCache = resolveKvCache(checkKvCache(opts.kvCache), attentionWeightDtype(mf));
      const native = getNative();
      const c = mf.config;
      const want = opts.backend ?? 'auto';
      const backend: 'cpu' | 'cuda' = want === 'auto' ? (native.raw.lsw_cuda_available() ? 'cuda' : 'cpu') : want;
      const maxContext = Math.max(1, Math.min(opts.maxContext ?? Math.min(c.max_position_embeddings, 4096), c.max_position_embeddings));
      const cfg = engineConfigStruct(c, backend, maxContext, opts.threads ?? 0, opts.device ?? 0, precision, mergePrompt, kvCache);
      const out: unknown[] = [null];
      native.call('lsw_model_create', cfg, out);
      const handle = out[0];
      try {
        // adapters first (ids in lsw.adapters order), then every tensor of the model file and the adapter file
        const aid = new Int32Array(1);
        mf.adapters.forEach((a, i) => {
          native.call('lsw_model_add_adapter', handle, adapterDesc(a), aid);
          if (aid[0] !== i) throw new UserError(`internal: engine gave adapter "${a.name}" id ${aid[0]}, expected ${i}`);
        });
        const files = [mf.st, ...(mf.adapterFile ? [mf.adapterFile.st] : [])];
        for (const st of files) {
          const fileId = new Int32Array(1);
          native.call('lsw_model_map_file', handle, st.path, st.dataOffset, fileId);
          for (const [name, t] of st.tensors) {
            const dt = engineTensorDtype(st.path, name, t.dtype);
            native.call('lsw_model_add_tensor', handle, name, dt, t.shape.length, BigInt64Array.from(t.shape.map(BigInt)), fileId[0], t.start);
          }
        }
        await native.callAsync('lsw_model_finalize', handle);
        native.call('lsw_model_set_mode', handle, MODE[mode]);
      } catch (e) {
        native.raw.lsw_model_free(handle);
        throw e;
      }
      return new Model(native, handle, mf, backend, maxContext, mode, precision, mergePrompt, kvCache);
    } finally {
      // the engine holds its own mapping: temporary files can go now
      closeModelFile(mf);
    }
  }

  /** Execution mode of the adapters. */
  get mode(): ModeName {
    return this.modeName;
  }

  setMode(mode: ModeName): void {
    if (!MODE_NAMES.includes(mode)) throw new UserError(`--mode: unknown mode ${JSON.stringify(mode)} (merge, unfused or fused)`);
    this.native.call('lsw_model_set_mode', this.h(), MODE[mode]);
    this.modeName = mode;
  }

  /**
   * Routing of positions [pos, pos + n) by adapter `adapterId` (lsw_model_get_routes): experts and gates laid out
   * [n][rows][top_k], rows = num_layers for a layer-wise router, 1 otherwise (a static adapter: expert 0, gate 1).
   */
  routes(adapterId: number, pos: number, n: number): Routes {
    const a = this.adapters[adapterId];
    if (!a) throw new UserError(`routes: no adapter with id ${adapterId} (the model has ${this.adapters.length})`);
    const size = n * a.rows * a.top_k;
    const experts = new Int32Array(size);
    const gates = new Float32Array(size);
    this.native.call('lsw_model_get_routes', this.h(), adapterId, pos, n, experts, gates);
    return { adapter: adapterId, pos, n, rows: a.rows, topK: a.top_k, experts, gates };
  }

  private h(): unknown {
    if (this.handle === null) throw new UserError('model already freed');
    return this.handle;
  }

  get nPast(): number {
    return this.native.raw.lsw_model_n_past(this.h());
  }

  setSampler(p: Partial<SamplerParams>): void {
    this.native.call('lsw_model_set_sampler', this.h(), {
      temperature: p.temperature ?? 0,
      top_k: p.topK ?? 0,
      top_p: p.topP ?? 1,
      min_p: p.minP ?? 0,
      seed: BigInt(p.seed ?? 0),
    });
  }

  /** Evaluate tokens appended to the sequence; logits of the last position (or of all). */
  eval(tokens: number[], allLogits = false): Float32Array {
    const V = this.config.vocab_size;
    const logits = new Float32Array(allLogits ? tokens.length * V : V);
    this.native.call('lsw_model_eval', this.h(), Int32Array.from(tokens), tokens.length, logits, allLogits ? 1 : 0);
    return logits;
  }

  /** Evaluate the prompt and sample the next token (on a worker thread). */
  async prefill(tokens: number[]): Promise<number> {
    const out = new Int32Array(1);
    await this.native.callAsync('lsw_model_prefill', this.h(), Int32Array.from(tokens), tokens.length, out);
    return out[0];
  }

  /** Append one token and sample the next: one FFI call per decoded token. */
  async step(token: number): Promise<number> {
    this.tokBuf[0] = token;
    await this.native.callAsync('lsw_model_step', this.h(), token, this.outBuf);
    return this.outBuf[0];
  }

  /**
   * Up to `n` decode steps in one native call (lsw_model_decode): the tokens they sample, ending early after one of
   * `stop`. Same tokens and state as that many step() calls, with one asynchronous call instead of one per token.
   */
  async decode(token: number, n: number, stop: readonly number[] = []): Promise<number[]> {
    const out = new Int32Array(Math.max(1, n));
    const stopBuf = new Int32Array(Math.max(1, stop.length));
    stopBuf.set(stop);
    const nOut = new Int32Array(1);
    await this.native.callAsync('lsw_model_decode', this.h(), token, n, stop.length ? stopBuf : null, stop.length, out, nOut);
    return Array.from(out.subarray(0, nOut[0]));
  }

  stepSync(token: number): number {
    this.native.call('lsw_model_step', this.h(), token, this.outBuf);
    return this.outBuf[0];
  }

  logits(): Float32Array {
    const l = new Float32Array(this.config.vocab_size);
    this.native.call('lsw_model_get_logits', this.h(), l);
    return l;
  }

  stats(): Record<string, number | bigint> {
    const s: Record<string, number | bigint> = {};
    this.native.call('lsw_model_get_stats', this.h(), s);
    return s;
  }

  reset(): void {
    this.native.call('lsw_model_reset', this.h());
  }

  free(): void {
    if (this.handle !== null) {
      this.native.raw.lsw_model_free(this.handle);
      this.handle = null;
    }
  }
}

/** `--backend cuda` where the engine sees no usable CUDA device: one line before any work (converting, loading). */
export function checkBackend(backend: string | undefined): void {
  if (backend === 'cuda' && getNative().raw.lsw_cuda_available() !== 1)
    throw new UserError('--backend cuda: no usable CUDA device here (no GPU or driver, or an engine built without nvcc); use --backend cpu or auto');
}

export function nativeInfo(): { version: string; cpu: string; cuda: boolean; path: string } {
  const n = getNative();
  return { version: String(n.raw.lsw_version()), cpu: String(n.raw.lsw_cpu_features()), cuda: n.raw.lsw_cuda_available() === 1, path: n.path };
}

/** The lsw_model_config struct (cuda/include/lsw.h) for an engine config. */
export function engineConfigStruct(
  c: EngineConfig, backend: 'cpu' | 'cuda', maxContext: number, threads: number, device = 0, precision: PrecisionName = 'precise',
  mergePrompt: MergePromptName = 'tokenwise', kvCache: KvCacheName = 'f32',
) {
  return {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_layers: c.num_layers,
    num_heads: c.num_heads,
    num_kv_heads: c.num_kv_heads,
    head_dim: c.head_dim,
    max_context: maxContext,
    qkv_bias: c.qkv_bias ? 1 : 0,
    tie_embeddings: c.tie_embeddings ? 1 : 0,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_type: ROPE[c.rope_type],
    rope_factor: c.rope_factor ?? 1,
    rope_low_freq_factor: c.rope_low_freq_factor ?? 1,
    rope_high_freq_factor: c.rope_high_freq_factor ?? 4,
    rope_original_max_position: c.rope_original_max_position ?? 8192,
    backend: backend === 'cuda' ? BACKEND.CUDA : BACKEND.CPU,
    n_threads: threads,
    device,
    prefill_precision: PRECISION[precision],
    merge_prompt: MERGE_PROMPT[mergePrompt],
    kv_dtype: DTYPE[kvCache.toUpperCase() as keyof typeof DTYPE],
  };
}

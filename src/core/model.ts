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
import { convertModel, type ConvertEvent } from './convert.js';
import { Tokenizer } from './tokenizer.js';
import { getNative, DTYPE, BACKEND, ROPE, type Native } from './native/abi.js';

export type BackendName = 'cpu' | 'cuda' | 'auto';

export interface LoadOptions {
  backend?: BackendName;
  threads?: number;
  /** KV cache capacity; default min(max_position_embeddings, 4096) */
  maxContext?: number;
  device?: number;
  /** dtype when converting an HF folder on the fly */
  dtype?: ModelDtype;
  onConvertProgress?: (e: ConvertEvent) => void;
}

export interface SamplerParams {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  seed: number | bigint;
}

const NATIVE_DTYPES: Record<string, number> = { F32: DTYPE.F32, F16: DTYPE.F16, BF16: DTYPE.BF16 };
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
}

export function parseLswConfig(st: SafetensorsFile): EngineConfig {
  const md = st.metadata;
  if (md.format !== 'lora-switch') throw fileError(st.path, 'not a lora-switch model file (no "format": "lora-switch" metadata); convert the Hugging Face folder with `lora-switch convert`');
  if (md.format_version !== '1') throw fileError(st.path, `unsupported format_version ${JSON.stringify(md.format_version)} (this version reads 1)`);
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
  if (st.isDirectory()) {
    file = path.join(os.tmpdir(), `lora-switch-${process.pid}-${crypto.randomBytes(6).toString('hex')}.lsw`);
    await convertModel(p, file, { dtype: opts.dtype, onProgress: opts.onConvertProgress });
    temporary = true;
  }
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
    return { path: file, st: sf, config, metadata: md, tokenizer, temporary };
  } catch (e) {
    if (temporary) fs.rmSync(file, { force: true });
    throw e;
  }
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
  private readonly tokBuf = new Int32Array(1);
  private readonly outBuf = new Int32Array(1);

  private constructor(native: Native, handle: unknown, mf: ModelFile, backend: 'cpu' | 'cuda', maxContext: number) {
    this.native = native;
    this.handle = handle;
    this.config = mf.config;
    this.tokenizer = mf.tokenizer;
    this.metadata = mf.metadata;
    this.path = mf.path;
    this.backend = backend;
    this.maxContext = maxContext;
  }

  static async load(p: string, opts: LoadOptions = {}): Promise<Model> {
    const mf = await openModelFile(p, opts);
    return Model.fromFile(mf, opts);
  }

  /** Create the native model from an opened file: map, register tensors, finalize. */
  static async fromFile(mf: ModelFile, opts: LoadOptions = {}): Promise<Model> {
    try {
      const native = getNative();
      const c = mf.config;
      const want = opts.backend ?? 'auto';
      const backend: 'cpu' | 'cuda' = want === 'auto' ? (native.raw.lsw_cuda_available() ? 'cuda' : 'cpu') : want;
      const maxContext = Math.max(1, Math.min(opts.maxContext ?? Math.min(c.max_position_embeddings, 4096), c.max_position_embeddings));
      const cfg = {
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
        n_threads: opts.threads ?? 0,
        device: opts.device ?? 0,
      };
      const out: unknown[] = [null];
      native.call('lsw_model_create', cfg, out);
      const handle = out[0];
      try {
        const fileId = new Int32Array(1);
        native.call('lsw_model_map_file', handle, mf.path, mf.st.dataOffset, fileId);
        for (const [name, t] of mf.st.tensors) {
          const dt = NATIVE_DTYPES[t.dtype];
          if (dt === undefined) throw fileError(mf.path, `tensor "${name}" has dtype ${t.dtype}; the engine takes F32, F16 or BF16`);
          native.call('lsw_model_add_tensor', handle, name, dt, t.shape.length, BigInt64Array.from(t.shape.map(BigInt)), fileId[0], t.start);
        }
        await native.callAsync('lsw_model_finalize', handle);
      } catch (e) {
        native.raw.lsw_model_free(handle);
        throw e;
      }
      return new Model(native, handle, mf, backend, maxContext);
    } finally {
      // the engine holds its own mapping: a temporary conversion can go now
      if (mf.temporary) fs.rmSync(mf.path, { force: true });
    }
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

export function nativeInfo(): { version: string; cpu: string; cuda: boolean; path: string } {
  const n = getNative();
  return { version: String(n.raw.lsw_version()), cpu: String(n.raw.lsw_cpu_features()), cuda: n.raw.lsw_cuda_available() === 1, path: n.path };
}

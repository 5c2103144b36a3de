/**
 * HF folder -> .lsw (docs/FORMAT.md): engine names, q/k/v and gate/up fused,
 * dtype converted (round to nearest even), every shape checked against config.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileError } from './errors.js';
import { checkOutputPath } from './outpath.js';
import { Tokenizer } from './tokenizer.js';
import { readHfConfig, readJsonFile, type EngineConfig, type ModelDtype } from './hf-config.js';
import { readSafetensors, readTensorBytes, headerSha256, writeLsw, numel, type SafetensorsFile, type TensorInfo, type TensorSource } from './safetensors.js';
import { convertFloats, FLOAT_DTYPES, DTYPE_BYTES, type FloatDtype } from './dtype.js';
import { readAdapters, type AdapterMeta, type EngineAdapter } from './adapters/index.js';

export const CONVERTER_VERSION = '0.1.0';

/** An adapter to convert alongside the model: a folder and the user's scale (`loadAdapterSpec('path[:scale]')`). */
export interface AdapterSpec {
  path: string;
  scale?: number;
}

export type ConvertEvent =
  | { type: 'start'; source: string; out: string; architecture: string; dtype: ModelDtype; tensors: number; totalBytes: number; adapters: number }
  | { type: 'tensor'; index: number; total: number; name: string; bytesWritten: number; totalBytes: number }
  | { type: 'done'; out: string; bytes: number; ms: number };

export interface ConvertOptions {
  dtype?: ModelDtype;
  adapters?: AdapterSpec[];
  onProgress?: (e: ConvertEvent) => void;
}

export interface ConvertResult {
  out: string;
  bytes: number;
  dtype: ModelDtype;
  architecture: string;
  tensors: number;
  parameters: number;
  ms: number;
  config: EngineConfig;
  /** the `lsw.adapters` entries written (engine adapter ids follow this order) */
  adapters: AdapterMeta[];
}

interface SourceTensor {
  st: SafetensorsFile;
  info: TensorInfo;
  name: string;
}

const DTYPE_NAMES: Record<ModelDtype, 'F32' | 'F16' | 'BF16'> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
const CHUNK_BYTES = 32 * 1024 * 1024;
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

function listWeights(folder: string): string[] {
  const index = path.join(folder, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const j = readJsonFile(index) as { weight_map?: Record<string, string> };
    if (!j || typeof j !== 'object' || !j.weight_map || typeof j.weight_map !== 'object') throw fileError(index, 'missing "weight_map"');
    const files = [...new Set(Object.values(j.weight_map))];
    for (const f of files) if (typeof f !== 'string' || f.includes('/') || f.includes('\\')) throw fileError(index, `invalid shard name ${JSON.stringify(f)}`);
    return files.sort().map((f) => path.join(folder, f));
  }
  const single = path.join(folder, 'model.safetensors');
  if (fs.existsSync(single)) return [single];
  const any = fs.readdirSync(folder).filter((f) => f.endsWith('.safetensors')).sort();
  if (any.length) return any.map((f) => path.join(folder, f));
  const hasBin = fs.readdirSync(folder).some((f) => f.endsWith('.bin') || f.endsWith('.pt'));
  throw fileError(folder, hasBin ? 'only PyTorch .bin weights found; lora-switch reads safetensors (model.safetensors or model.safetensors.index.json)' : 'no safetensors weights found (model.safetensors or model.safetensors.index.json)');
}

function fmtShape(s: number[]): string {
  return `[${s.join(', ')}]`;
}

interface Plan {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  parts: SourceTensor[];
}

function readText(file: string): string | null {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
}

function chatTemplateOf(folder: string, tokenizerConfigRaw: string | null): string | null {
  const jinja = readText(path.join(folder, 'chat_template.jinja'));
  if (jinja !== null) return jinja;
  if (tokenizerConfigRaw === null) return null;
  const tc = JSON.parse(tokenizerConfigRaw) as { chat_template?: unknown };
  const t = tc.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t as Array<{ name?: string; template?: string }>;
    const def = named.find((x) => x.name === 'default') ?? named[0];
    if (def && typeof def.template === 'string') return def.template;
  }
  return null;
}

/** Collect the source tensors of an HF folder, validated against its config. */
export function planConversion(folder: string, cfg: EngineConfig, dtype: ModelDtype): { plans: Plan[]; shards: SafetensorsFile[] } {
  const shards = listWeights(folder).map((f) => readSafetensors(f));
  const src = new Map<string, SourceTensor>();
  for (const st of shards) {
    for (const [name, info] of st.tensors) {
      const prev = src.get(name);
      if (prev) throw fileError(st.path, `tensor "${name}" also appears in ${prev.st.path}`);
      src.set(name, { st, info, name });
    }
  }
  const used = new Set<string>();
  const H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size, hd = cfg.head_dim;
  const qRows = cfg.num_heads * hd, kvRows = cfg.num_kv_heads * hd;
  const want = (hfName: string, shape: number[], float = true): SourceTensor => {
    let t = src.get(hfName);
    if (!t && hfName.startsWith('model.')) t = src.get(hfName.slice(6));
    if (!t) throw fileError(shards.length === 1 ? shards[0].path : folder, `missing tensor "${hfName}" required by config.json`);
    used.add(t.name);
    if (float && !FLOAT_DTYPES.has(t.info.dtype)) throw fileError(t.st.path, `tensor "${t.name}" has dtype ${t.info.dtype}; expected F32, F16, BF16 or F64`);
    if (t.info.shape.length !== shape.length || t.info.shape.some((d, i) => d !== shape[i])) {
      throw fileError(t.st.path, `tensor "${t.name}" has shape ${fmtShape(t.info.shape)} but config.json implies ${fmtShape(shape)}`);
    }
    return t;
  };
  const wd = DTYPE_NAMES[dtype];
  const plans: Plan[] = [];
  plans.push({ name: 'tok_embeddings.weight', dtype: wd, shape: [V, H], parts: [want('model.embed_tokens.weight', [V, H])] });
  for (let L = 0; L < cfg.num_layers; L++) {
    const p = `model.layers.${L}`;
    plans.push({ name: `layers.${L}.attn_norm.weight`, dtype: 'F32', shape: [H], parts: [want(`${p}.input_layernorm.weight`, [H])] });
    plans.push({
      name: `layers.${L}.attn.wqkv.weight`, dtype: wd, shape: [qRows + 2 * kvRows, H],
      parts: [want(`${p}.self_attn.q_proj.weight`, [qRows, H]), want(`${p}.self_attn.k_proj.weight`, [kvRows, H]), want(`${p}.self_attn.v_proj.weight`, [kvRows, H])],
    });
    if (cfg.qkv_bias) {
      plans.push({
        name: `layers.${L}.attn.bqkv.bias`, dtype: 'F32', shape: [qRows + 2 * kvRows],
        parts: [want(`${p}.self_attn.q_proj.bias`, [qRows]), want(`${p}.self_attn.k_proj.bias`, [kvRows]), want(`${p}.self_attn.v_proj.bias`, [kvRows])],
      });
    }
    plans.push({ name: `layers.${L}.attn.wo.weight`, dtype: wd, shape: [H, qRows], parts: [want(`${p}.self_attn.o_proj.weight`, [H, qRows])] });
    plans.push({ name: `layers.${L}.ffn_norm.weight`, dtype: 'F32', shape: [H], parts: [want(`${p}.post_attention_layernorm.weight`, [H])] });
    plans.push({
      name: `layers.${L}.ffn.w_gate_up.weight`, dtype: wd, shape: [2 * I, H],
      parts: [want(`${p}.mlp.gate_proj.weight`, [I, H]), want(`${p}.mlp.up_proj.weight`, [I, H])],
    });
    plans.push({ name: `layers.${L}.ffn.w_down.weight`, dtype: wd, shape: [H, I], parts: [want(`${p}.mlp.down_proj.weight`, [H, I])] });
  }
  plans.push({ name: 'norm.weight', dtype: 'F32', shape: [H], parts: [want('model.norm.weight', [H])] });
  if (cfg.tie_embeddings) {
    if (src.has('lm_head.weight')) used.add('lm_head.weight');
  } else {
    plans.push({ name: 'lm_head.weight', dtype: wd, shape: [V, H], parts: [want('lm_head.weight', [V, H])] });
  }
  for (const [name, t] of src) {
    if (used.has(name) || IGNORED.test(name)) continue;
    throw fileError(t.st.path, `unexpected tensor "${name}" (not part of a ${cfg.architecture} model with this config.json)`);
  }
  return { plans, shards };
}

function* partChunks(part: SourceTensor, to: 'F32' | 'F16' | 'BF16'): Iterable<Uint8Array> {
  const from = part.info.dtype as FloatDtype;
  const esize = DTYPE_BYTES[from];
  const total = part.info.end - part.info.start;
  const step = Math.max(esize, Math.floor(CHUNK_BYTES / esize) * esize);
  for (let off = 0; off < total; off += step) {
    const len = Math.min(step, total - off);
    yield convertFloats(readTensorBytes(part.st, part.info, off, len), from, to);
  }
}

export async function convertModel(src: string, out: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const t0 = Date.now();
  let st: fs.Stats;
  try {
    st = fs.statSync(src);
  } catch {
    throw fileError(src, 'no such file or directory');
  }
  if (!st.isDirectory()) throw fileError(src, 'not a directory (expected a Hugging Face model folder with config.json)');
  checkOutputPath(out, [src, ...(opts.adapters ?? []).map((a) => a.path)]);
  const { config: hf, raw: hfRaw, generationRaw } = readHfConfig(src);
  const tokFile = path.join(src, 'tokenizer.json');
  if (!fs.existsSync(tokFile)) throw fileError(tokFile, 'no such file (lora-switch needs the Hugging Face tokenizer.json)');
  const tokenizerRaw = fs.readFileSync(tokFile, 'utf8');
  readJsonFile(tokFile);
  const tcFile = path.join(src, 'tokenizer_config.json');
  const tokenizerConfigRaw = readText(tcFile);
  if (tokenizerConfigRaw !== null) readJsonFile(tcFile);
  const chatTemplate = chatTemplateOf(src, tokenizerConfigRaw);
  // a tokenizer.json that parses but is not a tokenizer is refused here, not by the first `generate`
  new Tokenizer({ tokenizerJson: tokenizerRaw, tokenizerConfig: tokenizerConfigRaw, chatTemplate, origin: tokFile });

  const { plans, shards } = planConversion(src, hf, opts.dtype ?? hf.dtype);
  const dtype = opts.dtype ?? (hf.dtype || 'f32');
  const config: EngineConfig = { ...hf, dtype };
  // every adapter is read and validated against the base before anything is written
  const adapters = readAdapters((opts.adapters ?? []).map((a) => ({ path: a.path, scale: a.scale ?? 1 })), config, { dtype });

  const files: Array<{ name: string; size: number; sha256: string; sha256_of: string }> = [];
  for (const s of shards) files.push({ name: path.basename(s.path), size: s.fileSize, sha256: headerSha256(s), sha256_of: 'header' });
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'model.safetensors.index.json']) {
    const p = path.join(src, f);
    if (fs.existsSync(p)) {
      const buf = fs.readFileSync(p);
      files.push({ name: f, size: buf.length, sha256: crypto.createHash('sha256').update(buf).digest('hex'), sha256_of: 'file' });
    }
  }
  const metadata: Record<string, string> = {
    format: 'lora-switch',
    // 2: adapter tensors with lora_scale (docs/FORMAT.md); a file without adapters stays readable by version-1 readers
    format_version: adapters.length ? '2' : '1',
    'lsw.config': JSON.stringify(config),
    'lsw.hf_config': hfRaw,
    'lsw.tokenizer': tokenizerRaw,
    'lsw.adapters': JSON.stringify(adapters.map((a) => a.meta)),
    'lsw.provenance': JSON.stringify({
      source: path.resolve(src),
      files,
      converter: `lora-switch ${CONVERTER_VERSION}`,
      date: new Date().toISOString(),
      dtype,
    }),
  };
  if (tokenizerConfigRaw !== null) metadata['lsw.tokenizer_config'] = tokenizerConfigRaw;
  if (chatTemplate !== null) metadata['lsw.chat_template'] = chatTemplate;
  if (generationRaw !== null) metadata['lsw.generation_config'] = generationRaw;

  const sources: TensorSource[] = plans.map((p) => ({
    name: p.name,
    dtype: p.dtype,
    shape: p.shape,
    chunks: function* () {
      for (const part of p.parts) yield* partChunks(part, p.dtype);
    },
  }));
  sources.push(...adapterSources(adapters, 0));
  const totalBytes = sources.reduce((a, p) => a + numel(p.shape) * DTYPE_BYTES[p.dtype as FloatDtype], 0);
  opts.onProgress?.({ type: 'start', source: src, out, architecture: config.architecture, dtype, tensors: sources.length, totalBytes, adapters: adapters.length });
  const { bytes } = await writeLsw(out, metadata, sources, (p) => opts.onProgress?.({ type: 'tensor', ...p }));
  const ms = Date.now() - t0;
  opts.onProgress?.({ type: 'done', out, bytes, ms });
  const parameters = sources.reduce((a, p) => a + numel(p.shape), 0);
  return { out, bytes, dtype, architecture: config.architecture, tensors: sources.length, parameters, ms, config, adapters: adapters.map((a) => a.meta) };
}

/**
 * The tensors of engine adapters as .lsw tensor sources, named `adapters.{firstId + i}.…` (docs/FORMAT.md), each in
 * the dtype the reader was asked for (the model's).
 */
export function adapterSources(adapters: EngineAdapter[], firstId: number): TensorSource[] {
  const out: TensorSource[] = [];
  adapters.forEach((a, i) => {
    for (const t of a.tensors) {
      const dt = DTYPE_NAMES[t.dtype];
      out.push({
        name: `adapters.${firstId + i}.${t.name}`,
        dtype: dt,
        shape: t.shape,
        chunks: function* () {
          yield convertFloats(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), 'F32', dt);
        },
      });
    }
  });
  return out;
}

/**
 * Write engine adapters (read against `config`) into a standalone adapter file: a safetensors file holding only
 * `adapters.{firstId + i}.…` tensors and `lsw.adapters` metadata (format `lora-switch-adapters`). Model.load maps it
 * next to a .lsw to run a plain model with adapters.
 */
export async function writeAdapterFile(out: string, adapters: EngineAdapter[], config: EngineConfig, firstId: number): Promise<void> {
  const metadata: Record<string, string> = {
    format: 'lora-switch-adapters',
    format_version: '2',
    'lsw.adapters': JSON.stringify(adapters.map((a) => a.meta)),
    'lsw.adapters_first_id': String(firstId),
    'lsw.base': JSON.stringify({ hidden_size: config.hidden_size, intermediate_size: config.intermediate_size, num_layers: config.num_layers, dtype: config.dtype }),
  };
  await writeLsw(out, metadata, adapterSources(adapters, firstId));
}

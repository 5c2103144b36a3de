/**
 * Hugging Face config.json (+ generation_config.json) -> the engine config of docs/FORMAT.md.
 * Llama (2/3, rope scaling linear/llama3), Mistral, Qwen2; rope keys both as
 * `rope_theta` + `rope_scaling` and as transformers 5's `rope_parameters`.
 */
import fs from 'node:fs';
import { fileError } from './errors.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2';
export type RopeType = 'default' | 'linear' | 'llama3';
export type ModelDtype = 'f32' | 'f16' | 'bf16';

export interface EngineConfig {
  architecture: Architecture;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_layers: number;
  num_heads: number;
  num_kv_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  qkv_bias: boolean;
  tie_embeddings: boolean;
  rms_norm_eps: number;
  rope_theta: number;
  rope_type: RopeType;
  rope_factor: number;
  rope_low_freq_factor: number;
  rope_high_freq_factor: number;
  rope_original_max_position: number;
  bos_token_id: number | null;
  eos_token_ids: number[];
  dtype: ModelDtype;
}

const ARCHS: Record<string, Architecture> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};
const MODEL_TYPES: Record<string, Architecture> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2' };

export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(file, code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fileError(file, `invalid JSON (${(e as Error).message})`);
  }
}

/** torch_dtype / dtype string -> model dtype, or null when absent/unknown. */
export function parseTorchDtype(v: unknown): ModelDtype | null {
  if (typeof v !== 'string') return null;
  const s = v.replace(/^torch\./, '');
  if (s === 'float32' || s === 'float') return 'f32';
  if (s === 'float16' || s === 'half') return 'f16';
  if (s === 'bfloat16') return 'bf16';
  return null;
}

function eosList(v: unknown): number[] | null {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isInteger(x))) return v as number[];
  return null;
}

/**
 * Parse a config.json object. `file` names it in errors. `generationConfig` (optional) supplies
 * eos/bos token ids that take precedence, as transformers' generate() does.
 */
export function parseHfConfig(raw: unknown, file: string, generationConfig?: unknown): EngineConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw fileError(file, 'is not a JSON object');
  const c = raw as Record<string, unknown>;
  const archs = Array.isArray(c.architectures) ? (c.architectures as unknown[]) : [];
  let arch: Architecture | undefined;
  for (const a of archs) if (typeof a === 'string' && ARCHS[a]) arch = ARCHS[a];
  if (!arch && typeof c.model_type === 'string' && archs.length === 0) arch = MODEL_TYPES[c.model_type];
  if (!arch) {
    const what = archs.length ? archs.join(', ') : typeof c.model_type === 'string' ? `model_type ${c.model_type}` : 'none given';
    throw fileError(file, `unsupported architecture (${what}); supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM`);
  }
  const int = (key: string, opts: { def?: number; min?: number } = {}): number => {
    const v = c[key] ?? opts.def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (opts.min ?? 1)) {
      throw fileError(file, v === undefined ? `missing "${key}"` : `"${key}" must be an integer >= ${opts.min ?? 1}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, def: number, src: Record<string, unknown> = c): number => {
    const v = src[key] ?? def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw fileError(file, `"${key}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };

  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = c.num_key_value_heads == null ? heads : int('num_key_value_heads');
  if (heads % kvHeads !== 0) throw fileError(file, `num_attention_heads (${heads}) is not a multiple of num_key_value_heads (${kvHeads})`);
  let headDim: number;
  if (c.head_dim != null) headDim = int('head_dim');
  else {
    if (hidden % heads !== 0) throw fileError(file, `hidden_size (${hidden}) is not divisible by num_attention_heads (${heads}) and head_dim is not given`);
    headDim = hidden / heads;
  }
  if (headDim % 2 !== 0) throw fileError(file, `head_dim ${headDim} must be even for rotary embeddings`);

  const act = c.hidden_act ?? c.hidden_activation ?? 'silu';
  if (act !== 'silu' && act !== 'swish') throw fileError(file, `unsupported hidden_act "${String(act)}" (only silu)`);
  if (c.mlp_bias === true) throw fileError(file, 'unsupported: mlp_bias true');
  if (arch !== 'qwen2' && c.attention_bias === true) throw fileError(file, 'unsupported: attention_bias true (biases on q/k/v/o)');

  let maxPos = int('max_position_embeddings', { def: 4096 });
  // sliding-window attention is not implemented: exact results hold within one window, so cap the context there
  const sw = c.sliding_window;
  const swActive = arch === 'mistral' ? typeof sw === 'number' : arch === 'qwen2' ? c.use_sliding_window === true && typeof sw === 'number' : false;
  if (swActive && (sw as number) > 0 && (sw as number) < maxPos) maxPos = sw as number;

  // --- rope: older keys (rope_theta + rope_scaling) or transformers 5 rope_parameters
  let rp: Record<string, unknown> | null = null;
  if (c.rope_parameters && typeof c.rope_parameters === 'object' && !Array.isArray(c.rope_parameters)) {
    rp = c.rope_parameters as Record<string, unknown>;
    if (rp.rope_type === undefined && rp.type === undefined && rp.rope_theta === undefined) {
      // per-layer-type form { full_attention: {...} }
      const first = Object.values(rp).find((v) => v && typeof v === 'object') as Record<string, unknown> | undefined;
      if (first) rp = first;
    }
  }
  const scaling = rp ?? (c.rope_scaling && typeof c.rope_scaling === 'object' ? (c.rope_scaling as Record<string, unknown>) : null);
  const ropeTheta = rp && rp.rope_theta !== undefined ? num('rope_theta', 10000, rp) : num('rope_theta', 10000);
  let ropeType: RopeType = 'default';
  let factor = 1;
  let low = 1;
  let high = 4;
  let origMax = 8192;
  if (scaling) {
    const t = scaling.rope_type ?? scaling.type ?? 'default';
    if (t === 'default') ropeType = 'default';
    else if (t === 'linear') {
      ropeType = 'linear';
      factor = num('factor', 1, scaling);
    } else if (t === 'llama3') {
      ropeType = 'llama3';
      factor = num('factor', 8, scaling);
      low = num('low_freq_factor', 1, scaling);
      high = num('high_freq_factor', 4, scaling);
      const om = scaling.original_max_position_embeddings ?? 8192;
      if (typeof om !== 'number' || !Number.isInteger(om) || om <= 0) throw fileError(file, `invalid original_max_position_embeddings ${JSON.stringify(om)}`);
      origMax = om;
    } else {
      throw fileError(file, `unsupported rope scaling type "${String(t)}" (supported: default, linear, llama3)`);
    }
  }

  const gen = generationConfig && typeof generationConfig === 'object' ? (generationConfig as Record<string, unknown>) : {};
  const eos = eosList(gen.eos_token_id) ?? eosList(c.eos_token_id) ?? [];
  const bosRaw = gen.bos_token_id ?? c.bos_token_id;
  const bos = typeof bosRaw === 'number' && Number.isInteger(bosRaw) ? bosRaw : null;

  const rmsKey = c.rms_norm_eps !== undefined ? 'rms_norm_eps' : 'layer_norm_epsilon';
  return {
    architecture: arch,
    vocab_size: int('vocab_size'),
    hidden_size: hidden,
    intermediate_size: int('intermediate_size'),
    num_layers: int('num_hidden_layers'),
    num_heads: heads,
    num_kv_heads: kvHeads,
    head_dim: headDim,
    max_position_embeddings: maxPos,
    qkv_bias: arch === 'qwen2',
    tie_embeddings: c.tie_word_embeddings === true,
    rms_norm_eps: num(rmsKey, 1e-6),
    rope_theta: ropeTheta,
    rope_type: ropeType,
    rope_factor: factor,
    rope_low_freq_factor: low,
    rope_high_freq_factor: high,
    rope_original_max_position: origMax,
    bos_token_id: bos,
    eos_token_ids: eos,
    dtype: parseTorchDtype(c.torch_dtype ?? c.dtype) ?? 'f32',
  };
}

/** Read config.json (and generation_config.json when present) from an HF folder. */
export function readHfConfig(folder: string): { config: EngineConfig; raw: string; generationRaw: string | null } {
  const file = `${folder}/config.json`;
  const rawObj = readJsonFile(file);
  const raw = fs.readFileSync(file, 'utf8');
  const genFile = `${folder}/generation_config.json`;
  let generationRaw: string | null = null;
  let gen: unknown;
  if (fs.existsSync(genFile)) {
    gen = readJsonFile(genFile);
    generationRaw = fs.readFileSync(genFile, 'utf8');
  }
  return { config: parseHfConfig(rawObj, file, gen), raw, generationRaw };
}

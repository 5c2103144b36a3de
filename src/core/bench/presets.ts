/**
 * Synthetic model shapes of `lora-switch bench --preset` (docs/BENCH.md). The same shapes as the PyTorch peer's
 * PRESETS in scripts/bench/torch_peer.py: keep the two in step.
 */
import type { EngineConfig, ModelDtype } from '../hf-config.js';

export const PRESET_NAMES = ['tiny', 'smollm-135m', 'qwen2.5-0.5b', 'llama3.2-1b', 'llama2-7b', 'llama3-8b', 'mistral-7b', 'qwen2.5-7b'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

interface PresetShape {
  architecture: EngineConfig['architecture'];
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  inter: number;
  vocab: number;
  maxPos: number;
  eps: number;
  qkvBias: boolean;
  /** the LM head is the embedding table (tie_word_embeddings), as in the published small models */
  tie: boolean;
  rope: Pick<EngineConfig, 'rope_type' | 'rope_theta' | 'rope_factor' | 'rope_low_freq_factor' | 'rope_high_freq_factor' | 'rope_original_max_position'>;
}

const ROPE_DEFAULT = (theta: number): PresetShape['rope'] => ({
  rope_type: 'default', rope_theta: theta, rope_factor: 1, rope_low_freq_factor: 1, rope_high_freq_factor: 4, rope_original_max_position: 8192,
});

export const PRESETS: Record<PresetName, PresetShape> = {
  tiny: { architecture: 'llama', hidden: 256, layers: 2, heads: 4, kvHeads: 2, inter: 688, vocab: 32000, maxPos: 4096, eps: 1e-5, qkvBias: false, tie: false, rope: ROPE_DEFAULT(10000) },
  // the CPU-sized shapes of published models (their config.json; parameters counted with the tied head):
  // SmolLM-135M 134 515 008, Qwen2.5-0.5B 494 032 768, Llama-3.2-1B 1 235 814 400
  'smollm-135m': { architecture: 'llama', hidden: 576, layers: 30, heads: 9, kvHeads: 3, inter: 1536, vocab: 49152, maxPos: 2048, eps: 1e-5, qkvBias: false, tie: true, rope: ROPE_DEFAULT(10000) },
  'qwen2.5-0.5b': { architecture: 'qwen2', hidden: 896, layers: 24, heads: 14, kvHeads: 2, inter: 4864, vocab: 151936, maxPos: 32768, eps: 1e-6, qkvBias: true, tie: true, rope: ROPE_DEFAULT(1e6) },
  'llama3.2-1b': {
    architecture: 'llama', hidden: 2048, layers: 16, heads: 32, kvHeads: 8, inter: 8192, vocab: 128256, maxPos: 131072, eps: 1e-5, qkvBias: false, tie: true,
    rope: { rope_type: 'llama3', rope_theta: 500000, rope_factor: 32, rope_low_freq_factor: 1, rope_high_freq_factor: 4, rope_original_max_position: 8192 },
  },
  'llama2-7b': { architecture: 'llama', hidden: 4096, layers: 32, heads: 32, kvHeads: 32, inter: 11008, vocab: 32000, maxPos: 4096, eps: 1e-5, qkvBias: false, tie: false, rope: ROPE_DEFAULT(10000) },
  'llama3-8b': {
    architecture: 'llama', hidden: 4096, layers: 32, heads: 32, kvHeads: 8, inter: 14336, vocab: 128256, maxPos: 131072, eps: 1e-5, qkvBias: false, tie: false,
    rope: { rope_type: 'llama3', rope_theta: 500000, rope_factor: 8, rope_low_freq_factor: 1, rope_high_freq_factor: 4, rope_original_max_position: 8192 },
  },
  'mistral-7b': { architecture: 'mistral', hidden: 4096, layers: 32, heads: 32, kvHeads: 8, inter: 14336, vocab: 32000, maxPos: 32768, eps: 1e-5, qkvBias: false, tie: false, rope: ROPE_DEFAULT(1e6) },
  'qwen2.5-7b': { architecture: 'qwen2', hidden: 3584, layers: 28, heads: 28, kvHeads: 4, inter: 18944, vocab: 152064, maxPos: 32768, eps: 1e-6, qkvBias: true, tie: false, rope: ROPE_DEFAULT(1e6) },
};

/** The engine config of a preset (the peer builds the same: scripts/bench/torch_peer.py). */
export function presetConfig(name: PresetName, dtype: ModelDtype): EngineConfig {
  const p = PRESETS[name];
  return {
    architecture: p.architecture,
    vocab_size: p.vocab,
    hidden_size: p.hidden,
    intermediate_size: p.inter,
    num_layers: p.layers,
    num_heads: p.heads,
    num_kv_heads: p.kvHeads,
    head_dim: p.hidden / p.heads,
    max_position_embeddings: p.maxPos,
    qkv_bias: p.qkvBias,
    tie_embeddings: p.tie,
    rms_norm_eps: p.eps,
    ...p.rope,
    bos_token_id: 1,
    eos_token_ids: [2],
    dtype,
  };
}

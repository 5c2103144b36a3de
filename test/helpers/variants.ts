// The architecture variants every engine test (and the GPU comparison with transformers) runs on.
import type { CheckpointOptions } from './checkpoint.js';

export interface Variant {
  name: string;
  opts: CheckpointOptions;
}

export const VARIANTS: Variant[] = [
  { name: 'llama2-f32', opts: { arch: 'llama', hidden: 48, heads: 4, kvHeads: 4, dtype: 'f32', configStyle: 'legacy', seed: 101 } },
  {
    name: 'llama3-gqa-rope-llama3-v5',
    opts: { arch: 'llama', hidden: 64, heads: 8, kvHeads: 2, dtype: 'f32', configStyle: 'v5', rope: { type: 'llama3', theta: 500000, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPosition: 64 }, seed: 102 },
  },
  {
    name: 'llama3-legacy-keys-f16',
    opts: { arch: 'llama', hidden: 64, heads: 8, kvHeads: 2, dtype: 'f16', configStyle: 'legacy', rope: { type: 'llama3', theta: 500000, originalMaxPosition: 32 }, seed: 103 },
  },
  { name: 'llama-linear-rope-bf16', opts: { arch: 'llama', hidden: 48, heads: 4, kvHeads: 2, dtype: 'bf16', rope: { type: 'linear', theta: 10000, factor: 4 }, seed: 104 } },
  { name: 'mistral-gqa-f16', opts: { arch: 'mistral', hidden: 64, heads: 4, kvHeads: 1, dtype: 'f16', seed: 105 } },
  { name: 'qwen2-bias-tied-bf16', opts: { arch: 'qwen2', hidden: 48, heads: 4, kvHeads: 2, dtype: 'bf16', tie: true, vocabPad: 10, configStyle: 'v5', rope: { type: 'default', theta: 1000000 }, seed: 106 } },
  { name: 'qwen2-f32-sharded', opts: { arch: 'qwen2', hidden: 64, heads: 8, kvHeads: 4, dtype: 'f32', shards: 3, seed: 107 } },
  { name: 'llama-explicit-head-dim', opts: { arch: 'llama', hidden: 48, heads: 4, kvHeads: 2, headDim: 16, dtype: "f32", seed: 118 } },
  // multi-query attention with more query heads per KV head (12) than a GPU decode block holds in its group form (8)
  { name: 'llama-mqa-12q-f16', opts: { arch: 'llama', hidden: 48, heads: 12, kvHeads: 1, headDim: 16, dtype: 'f16', seed: 119 } },
  { name: 'mistral-explicit-head-dim-tied-sharded', opts: { arch: 'mistral', hidden: 32, heads: 4, kvHeads: 2, headDim: 24, tie: true, shards: 2, dtype: 'f32', configStyle: 'v5', seed: 109 } },
];

/** A fixed prompt of valid ids for every fixture (all fixtures have >= 290 tokens). */
export const PROMPT_IDS = [1, 72, 101, 108, 108, 111, 32, 258, 119, 111, 114, 108, 100, 260, 275, 46, 200, 17, 33, 270];

/** Statistics of `bench`: percentiles of per-step times and the memory floor. Pure functions. */
import type { EngineConfig } from '../hf-config.js';

/** Linear-interpolation percentile (numpy's default, as scripts/bench/torch_peer.py) of an ascending array. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError('percentile of an empty list');
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile ${q} outside 0..100`);
  if (n === 1) return sorted[0];
  const pos = ((n - 1) * q) / 100;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  const frac = pos - lo;
  return sorted[lo] * (1 - frac) + sorted[hi] * frac;
}

export interface Spread {
  median: number;
  p10: number;
  p90: number;
}

/** median / p10 / p90 of the values (any order; not modified). */
export function spread(values: ArrayLike<number>): Spread {
  const s = Float64Array.from(values).sort();
  return { median: percentile(s, 50), p10: percentile(s, 10), p90: percentile(s, 90) };
}

export function mean(values: ArrayLike<number>): number {
  if (values.length === 0) throw new RangeError('mean of an empty list');
  let t = 0;
  for (let i = 0; i < values.length; i++) t += values[i];
  return t / values.length;
}

/** Bytes of K and V read by one decode step at a context of `ctx` tokens. */
export function kvBytesRead(layers: number, kvHeads: number, headDim: number, bytesPerElem: number, ctx: number): number {
  return 2 * layers * kvHeads * headDim * bytesPerElem * ctx;
}

/**
 * The memory floor of a decode step: the bytes it must move over the measured copy bandwidth (GB/s = 1e9 B/s), in
 * ms. null when the bandwidth is unknown.
 */
export function floorMs(bytesPerToken: number, bandwidthGBps: number | null): number | null {
  if (bandwidthGBps === null || !(bandwidthGBps > 0) || !(bytesPerToken >= 0)) return null;
  return (bytesPerToken / (bandwidthGBps * 1e9)) * 1e3;
}

/** How close a measured ms/token comes to the floor: floor / measured × 100 (100 = at the floor). */
export function pctOfFloor(floor: number | null, medianMs: number): number | null {
  if (floor === null || !(medianMs > 0)) return null;
  return (floor / medianMs) * 100;
}

/** Round to `nd` decimals (null stays null). */
export function rnd(x: number | null | undefined, nd = 4): number | null {
  if (x === null || x === undefined || !Number.isFinite(x)) return null;
  const f = 10 ** nd;
  return Math.round(x * f) / f;
}

/** The shape parameters of a prefill FLOP count. */
export type FlopShape = Pick<EngineConfig, 'hidden_size' | 'intermediate_size' | 'num_layers' | 'num_heads' | 'num_kv_heads' | 'head_dim' | 'vocab_size'>;

export interface PrefillFlops {
  /** 2 × prompt tokens × (wqkv + wo + w_gate_up + w_down parameters of every layer) */
  linear: number;
  /** 2 × vocab × hidden: the lm_head for the last prompt row only (the engine computes no logits for the others) */
  lm_head: number;
  /** causal QK^T and PV: 2 × 2 × heads × head_dim × n(n+1)/2 per layer */
  attention: number;
  total: number;
}

/**
 * The useful FLOPs of a prompt forward of n tokens from an empty cache (one multiply-add = 2 FLOPs): the backbone's
 * linears for every prompt token, the lm_head for the last one, and causal attention. Not counted: norms, RoPE,
 * SwiGLU, softmax, biases, and any adapter (router, LoRA) work.
 */
export function prefillFlops(c: FlopShape, n: number): PrefillFlops {
  const H = c.hidden_size;
  const q = c.num_heads * c.head_dim;
  const kv = c.num_kv_heads * c.head_dim;
  const perLayer = (q + 2 * kv) * H + H * q + 2 * c.intermediate_size * H + H * c.intermediate_size;
  const linear = 2 * n * c.num_layers * perLayer;
  const lmHead = 2 * c.vocab_size * H;
  const attention = c.num_layers * 2 * 2 * c.num_heads * c.head_dim * ((n * (n + 1)) / 2);
  return { linear, lm_head: lmHead, attention, total: linear + lmHead + attention };
}

/** FLOP rate in TFLOP/s of `flops` done in `ms` milliseconds (null when unknown). */
export function tflops(flops: number, ms: number | null): number | null {
  if (ms === null || !(ms > 0) || !(flops >= 0)) return null;
  return flops / (ms * 1e-3) / 1e12;
}

/** The matmul shape bench measures (lsw_measure_matmul): rows × cols of the weights, n activation rows. */
export interface MatmulShape {
  rows: number;
  cols: number;
  n: number;
}

/**
 * bench's reference matmul: Y[n][rows] = X[n][cols] · W^T at the model's hidden size (at most 4096, square);
 * n = 2048 rows on the GPU (the 2,048-token prefill of the target), min(prompt, 512) on the CPU (a few seconds at
 * most there).
 */
export function matmulShape(backend: 'cpu' | 'cuda', hidden: number, promptTokens: number): MatmulShape {
  const d = Math.max(1, Math.min(hidden, 4096));
  return { rows: d, cols: d, n: backend === 'cuda' ? 2048 : Math.max(1, Math.min(promptTokens, 512)) };
}

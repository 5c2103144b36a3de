// Comparison helpers for engine-vs-reference tests.
import { relErr } from './reference.js';
import type { Model } from '../../src/core/model.js';

/** Throws (naming the label) unless every position's logits satisfy ||out-ref||/||ref|| <= tol. */
export function assertLogitsClose(out: ArrayLike<number>[], ref: ArrayLike<number>[], tol: number, label: string): number {
  if (out.length !== ref.length) throw new Error(`${label}: ${out.length} positions, reference has ${ref.length}`);
  let worst = 0;
  let at = -1;
  for (let t = 0; t < ref.length; t++) {
    const e = relErr(out[t], ref[t]);
    if (!(e <= worst)) { worst = e; at = t; }
    if (Number.isNaN(e)) { worst = NaN; at = t; break; }
  }
  if (!(worst <= tol)) throw new Error(`${label}: relative error ${worst} at position ${at} exceeds ${tol}`);
  return worst;
}

/** Split a flat [n * vocab] array into rows. */
export function rows(flatArr: ArrayLike<number>, vocab: number): Float32Array[] {
  const n = flatArr.length / vocab;
  if (!Number.isInteger(n)) throw new Error(`rows: ${flatArr.length} values is not a multiple of vocab ${vocab}`);
  const out: Float32Array[] = [];
  for (let t = 0; t < n; t++) out.push(Float32Array.from(Array.prototype.slice.call(flatArr, t * vocab, (t + 1) * vocab)));
  return out;
}

/** Greedy decoding from a fresh context: the prefill's token, then one step per token, n tokens in all. */
export async function greedy(model: Model, prompt: number[], n: number): Promise<number[]> {
  model.reset();
  model.setSampler({ temperature: 0 });
  const out = [await model.prefill(prompt)];
  while (out.length < n) out.push(await model.step(out[out.length - 1]));
  return out;
}

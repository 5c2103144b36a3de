/** Statistics of `bench`: percentiles of per-step times and the memory floor. Pure functions. */

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

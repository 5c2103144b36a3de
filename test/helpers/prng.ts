// Deterministic PRNG for test fixtures (independent of src/): splitmix64 seeding + xoshiro128**.
// Same seed -> same numbers on every platform, so fixtures are reproducible.

export class Rng {
  private s: Uint32Array;
  constructor(seed: number) {
    // splitmix32-style expansion of the seed into 4 words (never all zero)
    let x = (seed >>> 0) ^ 0x9e3779b9;
    this.s = new Uint32Array(4);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      z = (z ^ (z >>> 16)) >>> 0;
      this.s[i] = z || 0x1234567;
    }
  }
  /** uniform 32-bit unsigned integer */
  u32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }
  /** uniform in [0, 1) with 53 random bits */
  uniform(): number {
    const hi = this.u32() >>> 5; // 27 bits
    const lo = this.u32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
  /** standard normal (Box-Muller) */
  normal(): number {
    let u = this.uniform();
    while (u <= 1e-300) u = this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
  /** n normal values times std (+ mean); rejects exact zeros so fixtures never hold zeros */
  normals(n: number, std = 1, mean = 0): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let v = mean + std * this.normal();
      while (v === 0) v = mean + std * this.normal();
      out[i] = v;
    }
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

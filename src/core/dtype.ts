/**
 * Float conversions between F64/F32/F16/BF16 (little-endian bytes), round-to-nearest-even.
 * Node 20 has no Float16Array, so these are written out.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary32 bits -> binary16 bits, round to nearest even, NaN stays NaN, overflow -> inf. */
export function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) { u32[0] = sign >>> 0; return f32[0]; }
    f32[0] = mant * 2 ** -24;
    return sign ? -f32[0] : f32[0];
  }
  if (exp === 0x1f) { u32[0] = (sign | 0x7f800000 | (mant << 13)) >>> 0; return f32[0]; }
  u32[0] = (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
  return f32[0];
}

/** binary32 bits -> bfloat16 bits, round to nearest even, NaN kept quiet. */
export function f32BitsToBf16(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

let F16_TABLE: Float32Array | null = null;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) F16_TABLE[i] = f16BitsToF32(i);
  }
  return F16_TABLE;
}

export type FloatDtype = 'F64' | 'F32' | 'F16' | 'BF16';
export const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F64', 'F32', 'F16', 'BF16']);

function aligned(bytes: Uint8Array, size: number): Uint8Array {
  return bytes.byteOffset % size === 0 ? bytes : new Uint8Array(bytes);
}

/** Decode little-endian float bytes to Float32Array (F64 rounds to nearest). */
export function toF32(bytes: Uint8Array, dtype: FloatDtype): Float32Array {
  switch (dtype) {
    case 'F32': {
      const b = aligned(bytes, 4);
      return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    }
    case 'F64': {
      const b = aligned(bytes, 8);
      return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8));
    }
    case 'F16': {
      const b = aligned(bytes, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
      const t = f16Table();
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      const b = aligned(bytes, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
  }
}

/** Convert little-endian float bytes from one dtype to another (bytes out, little-endian). */
export function convertFloats(bytes: Uint8Array, from: FloatDtype, to: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (from === to) return bytes;
  const f = toF32(bytes, from);
  if (to === 'F32') return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  if (to === 'F16') for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]);
  else for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16(bits[i]);
  return new Uint8Array(out.buffer);
}

export const DTYPE_BYTES: Record<FloatDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

// Minimal, independent safetensors writer/reader for test fixtures and the fp64 reference.
// Deliberately does not import anything from src/ so that the reference cannot share a bug with the product.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type StDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'U8';

const DTYPE_SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 };

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 codecs (round to nearest even), exact decoders

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** IEEE binary16 bits of x (round to nearest, ties to even), computed from the double directly. */
export function f64ToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  // smallest subnormal 2^-24; max finite 65504
  if (a >= 65520) return sign | 0x7c00; // rounds to inf
  if (a < 2 ** -14) {
    // subnormal: value = m * 2^-24, m in [0, 1023]
    const m = roundHalfEven(a / 2 ** -24);
    return sign | m; // m may be 1024 -> becomes the smallest normal, bits still right
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}

export function f16BitsToF64(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits of x: round the double to f32 first is NOT done; we round the double directly to 8 bits of mantissa. */
export function f64ToBf16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  // Exact route: the nearest bf16 of a double equals rounding its f32 value only when the f32 rounding does not
  // create a tie; avoid double rounding by working on the double.
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7f80;
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  if (e < -126) {
    const m = roundHalfEven(a / 2 ** -133); // subnormal: m * 2^-133
    return sign | m;
  }
  let m = roundHalfEven((a / 2 ** e - 1) * 128);
  if (m === 128) {
    m = 0;
    e += 1;
  }
  if (e > 127) return sign | 0x7f80;
  return sign | ((e + 127) << 7) | m;
}

export function bf16BitsToF64(b: number): number {
  u32buf[0] = (b << 16) >>> 0;
  return f32buf[0];
}

/** Round to float32 (RNE) — Math.fround. */
export const roundF32 = Math.fround;
export const roundF16 = (x: number) => f16BitsToF64(f64ToF16Bits(x));
export const roundBf16 = (x: number) => bf16BitsToF64(f64ToBf16Bits(x));

export function roundTo(dtype: StDtype, x: number): number {
  if (dtype === 'F32') return Math.fround(x);
  if (dtype === 'F16') return roundF16(x);
  if (dtype === 'BF16') return roundBf16(x);
  return x;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ---------------------------------------------------------------------------------------------
// writer

export interface StTensorIn {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** values (rounded to dtype on write); for U8/I32/I64 integers */
  data: ArrayLike<number>;
}

export function encodeTensor(t: StTensorIn): Buffer {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new Error(`tensor ${t.name}: ${t.data.length} values for shape [${t.shape}]`);
  const size = DTYPE_SIZE[t.dtype];
  const buf = Buffer.alloc(n * size);
  for (let i = 0; i < n; i++) {
    const v = t.data[i];
    switch (t.dtype) {
      case 'F64': buf.writeDoubleLE(v, i * 8); break;
      case 'F32': buf.writeFloatLE(v, i * 4); break;
      case 'F16': buf.writeUInt16LE(f64ToF16Bits(v), i * 2); break;
      case 'BF16': buf.writeUInt16LE(f64ToBf16Bits(v), i * 2); break;
      case 'I32': buf.writeInt32LE(v, i * 4); break;
      case 'I64': buf.writeBigInt64LE(BigInt(v), i * 8); break;
      case 'U8': buf.writeUInt8(v, i); break;
    }
  }
  return buf;
}

/** Write a safetensors file: 8-byte LE header length, JSON header (space padded to 8 bytes), tensors back to back. */
export function writeSafetensors(file: string, tensors: StTensorIn[], metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  const blobs: Buffer[] = [];
  let off = 0;
  for (const t of tensors) {
    const b = encodeTensor(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + b.length] };
    blobs.push(b);
    off += b.length;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hb = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat([len, hb, ...blobs]));
}

// ---------------------------------------------------------------------------------------------
// reader (decodes to float64)

export interface StTensorOut {
  dtype: StDtype;
  shape: number[];
  data: Float64Array;
}

export interface StFile {
  metadata: Record<string, string>;
  header: Record<string, any>;
  tensors: Map<string, StTensorOut>;
}

export function readSafetensorsF64(file: string, opts: { skipPad?: boolean } = {}): StFile {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: too short for a safetensors header`);
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new Error(`${file}: header length ${n} past end of file`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const dataStart = 8 + n;
  const tensors = new Map<string, StTensorOut>();
  for (const [name, info] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    if (opts.skipPad !== false && name.startsWith('__pad__')) continue;
    const [s, e] = info.data_offsets as [number, number];
    const count = (info.shape as number[]).reduce((a: number, b: number) => a * b, 1);
    const size = DTYPE_SIZE[info.dtype];
    if (size === undefined) throw new Error(`${file}: tensor ${name} has unknown dtype ${info.dtype}`);
    if (e - s !== count * size) throw new Error(`${file}: tensor ${name} byte size mismatch`);
    if (dataStart + e > buf.length) throw new Error(`${file}: tensor ${name} past end of file`);
    const out = new Float64Array(count);
    const base = dataStart + s;
    for (let i = 0; i < count; i++) {
      switch (info.dtype) {
        case 'F64': out[i] = buf.readDoubleLE(base + i * 8); break;
        case 'F32': out[i] = buf.readFloatLE(base + i * 4); break;
        case 'F16': out[i] = f16BitsToF64(buf.readUInt16LE(base + i * 2)); break;
        case 'BF16': out[i] = bf16BitsToF64(buf.readUInt16LE(base + i * 2)); break;
        case 'I32': out[i] = buf.readInt32LE(base + i * 4); break;
        case 'I64': out[i] = Number(buf.readBigInt64LE(base + i * 8)); break;
        case 'U8': out[i] = buf.readUInt8(base + i); break;
      }
    }
    tensors.set(name, { dtype: info.dtype, shape: info.shape, data: out });
  }
  return { metadata: header.__metadata__ ?? {}, header, tensors };
}

/** Read every tensor of an HF folder (single file or sharded with model.safetensors.index.json). */
export function readHfWeights(dir: string): Map<string, StTensorOut> {
  const idx = path.join(dir, 'model.safetensors.index.json');
  const files: string[] = [];
  if (fs.existsSync(idx)) {
    const map = JSON.parse(fs.readFileSync(idx, 'utf8')).weight_map as Record<string, string>;
    for (const f of new Set(Object.values(map))) files.push(path.join(dir, f));
  } else {
    files.push(path.join(dir, 'model.safetensors'));
  }
  const all = new Map<string, StTensorOut>();
  for (const f of files) for (const [k, v] of readSafetensorsF64(f).tensors) all.set(k, v);
  return all;
}

/**
 * Reading an adapter's safetensors file: header (validated) and tensors decoded to fp32.
 *
 * The header is read with a small local parser until src/core/safetensors.ts (readSafetensors) is in the
 * tree; this module then delegates to it.  Only the float decoding below is specific to adapters.
 */
import fs from 'node:fs';
import { fileError } from '../errors.js';

export interface StEntry {
  dtype: string;
  shape: number[];
  /** byte range inside the data section */
  start: number;
  end: number;
}

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

export interface AdapterWeights {
  file: string;
  tensors: Map<string, StEntry>;
  metadata: Record<string, string>;
  /** Decode one tensor to fp32 (F32, F16, BF16, F64 accepted). */
  readF32(name: string): Float32Array;
  close(): void;
}

function parseHeader(file: string, fd: number, size: number): { dataOffset: number; tensors: Map<string, StEntry>; metadata: Record<string, string> } {
  if (size < 8) throw fileError(file, `not a safetensors file (${size} bytes, shorter than the 8-byte header length)`);
  const lenBuf = Buffer.alloc(8);
  fs.readSync(fd, lenBuf, 0, 8, 0);
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(size - 8)) throw fileError(file, `safetensors header length ${n} runs past the end of the file (${size} bytes)`);
  const hlen = Number(n);
  const hb = Buffer.alloc(hlen);
  fs.readSync(fd, hb, 0, hlen, 8);
  let header: unknown;
  try {
    header = JSON.parse(hb.toString('utf8'));
  } catch (e) {
    throw fileError(file, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw fileError(file, 'safetensors header is not a JSON object');
  const dataOffset = 8 + hlen;
  const dataLen = size - dataOffset;
  const tensors = new Map<string, StEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw && typeof raw === 'object') metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!info || typeof info !== 'object') throw fileError(file, `tensor ${name}: malformed header entry`);
    const dtype = String(info.dtype);
    const bytes = DTYPE_BYTES[dtype];
    if (bytes === undefined) throw fileError(file, `tensor ${name}: unknown dtype ${dtype}`);
    if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isInteger(d) && d >= 0)) throw fileError(file, `tensor ${name}: malformed shape`);
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0)) throw fileError(file, `tensor ${name}: malformed data_offsets`);
    const [start, end] = off as [number, number];
    const shape = info.shape as number[];
    const count = shape.reduce((a, b) => a * b, 1);
    if (end < start || end - start !== count * bytes) throw fileError(file, `tensor ${name}: data_offsets [${start}, ${end}] do not hold ${dtype} [${shape.join(', ')}]`);
    if (end > dataLen) throw fileError(file, `tensor ${name}: data runs past the end of the file (truncated?)`);
    tensors.set(name, { dtype, shape: shape.slice(), start, end });
  }
  // overlapping ranges
  const sorted = [...tensors.entries()].filter(([, t]) => t.end > t.start).sort((a, b) => a[1].start - b[1].start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i][1].start < sorted[i - 1][1].end) throw fileError(file, `tensors ${sorted[i - 1][0]} and ${sorted[i][0]} overlap`);
  }
  return { dataOffset, tensors, metadata };
}

const f16Table: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : s * Infinity;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

/** Open an adapter's safetensors file; throws UserError naming the file on any header problem. */
export function openAdapterWeights(file: string): AdapterWeights {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(file, code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? (e as Error).message})`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const { dataOffset, tensors, metadata } = parseHeader(file, fd, size);
    return {
      file,
      tensors,
      metadata,
      readF32(name: string): Float32Array {
        const t = tensors.get(name);
        if (!t) throw fileError(file, `tensor ${name} is missing`);
        const bytes = t.end - t.start;
        const buf = Buffer.alloc(bytes);
        if (bytes > 0) fs.readSync(fd, buf, 0, bytes, dataOffset + t.start);
        const count = t.shape.reduce((a, b) => a * b, 1);
        const out = new Float32Array(count);
        switch (t.dtype) {
          case 'F32':
            for (let i = 0; i < count; i++) out[i] = buf.readFloatLE(i * 4);
            break;
          case 'F64':
            for (let i = 0; i < count; i++) out[i] = buf.readDoubleLE(i * 8);
            break;
          case 'F16':
            for (let i = 0; i < count; i++) out[i] = f16Table[buf.readUInt16LE(i * 2)];
            break;
          case 'BF16': {
            const u = new Uint32Array(out.buffer);
            for (let i = 0; i < count; i++) u[i] = buf.readUInt16LE(i * 2) << 16;
            break;
          }
          default:
            throw fileError(file, `tensor ${name} has dtype ${t.dtype}; adapter weights must be F32, F16, BF16 or F64`);
        }
        for (let i = 0; i < count; i++) {
          if (!Number.isFinite(out[i])) throw fileError(file, `tensor ${name} holds a non-finite value (${out[i]}) at index ${i}`);
        }
        return out;
      },
      close() {
        fs.closeSync(fd);
      },
    };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

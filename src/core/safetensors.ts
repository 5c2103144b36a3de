/**
 * safetensors reading/validation (any file) and the aligned .lsw writer (docs/FORMAT.md).
 * Every problem with a file becomes a UserError naming the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileError, UserError, ioReason } from './errors.js';

export const DTYPE_SIZES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
};

/** Largest header we accept (the Python library's own limit is 100 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
export const ALIGNMENT = 256;
export const PAD_PREFIX = '__pad__.';

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** byte offsets relative to the start of the data section */
  start: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  fileSize: number;
  headerLength: number;
  /** absolute offset of the data section: 8 + headerLength */
  dataOffset: number;
  header: Record<string, unknown>;
  /** every tensor except the .lsw padding tensors */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Read and validate the header of a safetensors file. */
export function readSafetensors(file: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw fileError(file, 'no such file');
    if (code === 'EISDIR') throw fileError(file, 'is a directory, expected a safetensors file');
    throw fileError(file, `cannot open (${code ?? (e as Error).message})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw fileError(file, 'is a directory, expected a safetensors file');
    const fileSize = st.size;
    if (fileSize < 8) throw fileError(file, `too short for a safetensors file (${fileSize} bytes)`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n64 = lenBuf.readBigUInt64LE(0);
    if (n64 > BigInt(fileSize - 8)) {
      throw fileError(file, `header length ${n64} runs past the end of the file (${fileSize} bytes): truncated or not a safetensors file`);
    }
    const headerLength = Number(n64);
    if (headerLength > MAX_HEADER_BYTES) throw fileError(file, `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    if (headerLength < 2) throw fileError(file, `header length ${headerLength} is too small for a JSON header`);
    const hbuf = Buffer.alloc(headerLength);
    const got = fs.readSync(fd, hbuf, 0, headerLength, 8);
    if (got !== headerLength) throw fileError(file, 'truncated header');
    let header: unknown;
    try {
      header = JSON.parse(hbuf.toString('utf8'));
    } catch (e) {
      throw fileError(file, `invalid JSON header (${(e as Error).message})`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
      throw fileError(file, 'header is not a JSON object');
    }
    const dataOffset = 8 + headerLength;
    const dataLength = fileSize - dataOffset;
    const h = header as Record<string, unknown>;
    let metadata: Record<string, string> = {};
    const all: Array<[string, TensorInfo]> = [];
    for (const [name, value] of Object.entries(h)) {
      if (name === '__metadata__') {
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw fileError(file, '__metadata__ is not an object');
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          if (typeof v !== 'string') throw fileError(file, `__metadata__ value for "${k}" is not a string`);
        }
        metadata = value as Record<string, string>;
        continue;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw fileError(file, `tensor "${name}": entry is not an object`);
      const { dtype, shape, data_offsets: offs } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string') throw fileError(file, `tensor "${name}": missing dtype`);
      const size = DTYPE_SIZES[dtype];
      if (size === undefined) throw fileError(file, `tensor "${name}": unknown dtype "${dtype}"`);
      if (!Array.isArray(shape) || !shape.every(isNonNegInt)) throw fileError(file, `tensor "${name}": invalid shape ${JSON.stringify(shape)}`);
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isNonNegInt)) {
        throw fileError(file, `tensor "${name}": invalid data_offsets ${JSON.stringify(offs)}`);
      }
      const [start, end] = offs as [number, number];
      if (end < start) throw fileError(file, `tensor "${name}": data_offsets [${start}, ${end}] end before they start`);
      if (end > dataLength) {
        throw fileError(file, `tensor "${name}": data [${start}, ${end}) lies past the end of the data section (${dataLength} bytes): file truncated?`);
      }
      const expect = numel(shape as number[]) * size;
      if (expect !== end - start) {
        throw fileError(file, `tensor "${name}": shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${expect} bytes but data_offsets span ${end - start}`);
      }
      all.push([name, { dtype, shape: shape as number[], start, end }]);
    }
    // the tensors must tile the data section: sorted by start, no gap, no overlap, up to its end
    const sorted = [...all].sort((a, b) => a[1].start - b[1].start || a[1].end - b[1].end);
    let pos = 0;
    let prev = '';
    for (const [name, t] of sorted) {
      if (t.start < pos) throw fileError(file, `tensor "${name}" overlaps tensor "${prev}" (data_offsets [${t.start}, ${t.end}))`);
      if (t.start > pos) throw fileError(file, `gap of ${t.start - pos} bytes before tensor "${name}": data_offsets do not tile the data section`);
      pos = t.end;
      prev = name;
    }
    if (pos !== dataLength) {
      throw fileError(file, `tensors cover ${pos} bytes but the data section holds ${dataLength}: ${pos > dataLength ? 'file truncated' : 'trailing bytes'}`);
    }
    const tensors = new Map<string, TensorInfo>();
    for (const [name, t] of all) if (!name.startsWith(PAD_PREFIX)) tensors.set(name, t);
    return { path: file, fileSize, headerLength, dataOffset, header: h, tensors, metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/** sha256 of the 8-byte length and the JSON header (provenance). */
export function headerSha256(st: SafetensorsFile): string {
  const fd = fs.openSync(st.path, 'r');
  try {
    const buf = Buffer.alloc(st.dataOffset);
    fs.readSync(fd, buf, 0, st.dataOffset, 0);
    return crypto.createHash('sha256').update(buf).digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

/** Read `length` bytes of a tensor starting at byte `from` within it. */
export function readTensorBytes(st: SafetensorsFile, t: TensorInfo, from = 0, length = t.end - t.start - from): Buffer {
  const fd = fs.openSync(st.path, 'r');
  try {
    const buf = Buffer.allocUnsafe(length);
    let off = 0;
    while (off < length) {
      const n = fs.readSync(fd, buf, off, length - off, st.dataOffset + t.start + from + off);
      if (n === 0) throw fileError(st.path, 'unexpected end of file while reading tensor data');
      off += n;
    }
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------- writer

export interface TensorSource {
  name: string;
  dtype: string;
  shape: number[];
  /** yields the tensor's bytes, in order; their total must be numel(shape) * size(dtype) */
  chunks: () => Iterable<Uint8Array>;
}

export interface WriteProgress {
  index: number;
  total: number;
  name: string;
  bytesWritten: number;
  totalBytes: number;
}

export interface PlannedTensor {
  name: string;
  dtype: string;
  shape: number[];
  start: number;
  end: number;
}

/** Layout: every tensor starts at a multiple of ALIGNMENT; gaps hold `__pad__.{n}` U8 tensors. */
export function planLayout(tensors: Array<{ name: string; dtype: string; shape: number[] }>): { entries: PlannedTensor[]; dataLength: number } {
  const entries: PlannedTensor[] = [];
  let pos = 0;
  let pad = 0;
  for (const t of tensors) {
    const size = DTYPE_SIZES[t.dtype];
    if (size === undefined) throw new UserError(`internal: unknown dtype ${t.dtype} for ${t.name}`);
    const aligned = Math.ceil(pos / ALIGNMENT) * ALIGNMENT;
    if (aligned > pos) {
      entries.push({ name: `${PAD_PREFIX}${pad++}`, dtype: 'U8', shape: [aligned - pos], start: pos, end: aligned });
      pos = aligned;
    }
    const bytes = numel(t.shape) * size;
    entries.push({ name: t.name, dtype: t.dtype, shape: t.shape, start: pos, end: pos + bytes });
    pos += bytes;
  }
  return { entries, dataLength: pos };
}

/** The header bytes (length prefix + JSON padded with spaces so that the data starts at a multiple of ALIGNMENT). */
export function buildHeader(entries: PlannedTensor[], metadata: Record<string, string>): Buffer {
  const obj: Record<string, unknown> = { __metadata__: metadata };
  for (const e of entries) obj[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [e.start, e.end] };
  const json = Buffer.from(JSON.stringify(obj), 'utf8');
  const total = Math.ceil((8 + json.length) / ALIGNMENT) * ALIGNMENT;
  const n = total - 8;
  const buf = Buffer.alloc(total, 0x20);
  buf.writeBigUInt64LE(BigInt(n), 0);
  json.copy(buf, 8);
  return buf;
}

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

/**
 * Write an aligned .lsw/safetensors file: streamed to a temporary file in the same
 * directory, then renamed over `outFile`. Nothing is left behind on failure.
 */
export async function writeLsw(outFile: string, metadata: Record<string, string>, tensors: TensorSource[], onProgress?: (p: WriteProgress) => void): Promise<{ bytes: number; dataOffset: number }> {
  const { entries, dataLength } = planLayout(tensors);
  const header = buildHeader(entries, metadata);
  const dir = path.dirname(path.resolve(outFile));
  if (!fs.existsSync(dir)) throw fileError(outFile, `directory ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(outFile)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (e) {
    throw fileError(outFile, `cannot create a file in ${dir} (${ioReason(e)})`);
  }
  let ok = false;
  try {
    writeAll(fd, header);
    const byName = new Map(tensors.map((t) => [t.name, t]));
    const totalBytes = dataLength;
    let written = 0;
    let index = 0;
    for (const e of entries) {
      const src = byName.get(e.name);
      if (!src) {
        writeAll(fd, Buffer.alloc(e.end - e.start));
        written += e.end - e.start;
        continue;
      }
      let n = 0;
      for (const chunk of src.chunks()) {
        writeAll(fd, chunk);
        n += chunk.length;
      }
      if (n !== e.end - e.start) throw new Error(`internal: tensor ${e.name} produced ${n} bytes, expected ${e.end - e.start}`);
      written += n;
      onProgress?.({ index: index++, total: tensors.length, name: e.name, bytesWritten: written, totalBytes });
      // let a terminal view repaint between tensors
      await new Promise((r) => setImmediate(r));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, outFile);
    ok = true;
    return { bytes: header.length + dataLength, dataOffset: header.length };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') throw fileError(outFile, 'no space left on device');
    if (code && !(e instanceof UserError)) throw fileError(outFile, `write failed (${code})`);
    throw e;
  } finally {
    if (!ok) {
      try { fs.closeSync(fd); } catch { /* already closed */ }
      try { fs.unlinkSync(tmp); } catch { /* nothing to remove */ }
    }
  }
}

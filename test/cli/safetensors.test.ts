import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensors, writeLsw, readTensorBytes, ALIGNMENT } from '../../src/core/safetensors.js';
import { UserError } from '../../src/core/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-st-'));

/** a raw safetensors file from a header object and a data section */
function rawFile(name: string, header: unknown, data: Buffer, lenOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

function expectUserError(fn: () => unknown, file: string, re: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, UserError);
    const msg = (e as Error).message;
    assert.ok(msg.startsWith(`${file}: `), `message names the file: ${msg}`);
    assert.match(msg, re);
    assert.not.match(msg, /\n/);
    return;
  }
  assert.unreachable('expected a UserError');
}

const good = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F16', shape: [3], data_offsets: [16, 22] } };

test('reads a valid file', () => {
  const p = rawFile('ok.safetensors', { __metadata__: { k: 'v' }, ...good }, Buffer.alloc(22, 1));
  const st = readSafetensors(p);
  assert.equal(st.metadata, { k: 'v' });
  assert.equal(st.tensors.get('b'), { dtype: 'F16', shape: [3], start: 16, end: 22 });
  assert.is(st.dataOffset, 8 + st.headerLength);
});

test('missing file, empty file, short file', () => {
  expectUserError(() => readSafetensors(path.join(dir, 'nope.safetensors')), path.join(dir, 'nope.safetensors'), /no such file/);
  const p = path.join(dir, 'short.safetensors');
  fs.writeFileSync(p, Buffer.alloc(5));
  expectUserError(() => readSafetensors(p), p, /too short/);
});

test('header length past the end', () => {
  const p = rawFile('hlen.safetensors', good, Buffer.alloc(22), 1_000_000n);
  expectUserError(() => readSafetensors(p), p, /header length 1000000 runs past the end/);
});

test('invalid JSON header', () => {
  const p = rawFile('json.safetensors', '{"a": {', Buffer.alloc(0));
  expectUserError(() => readSafetensors(p), p, /invalid JSON header/);
});

test('unknown dtype', () => {
  const p = rawFile('dtype.safetensors', { a: { dtype: 'F12', shape: [2], data_offsets: [0, 4] } }, Buffer.alloc(4));
  expectUserError(() => readSafetensors(p), p, /tensor "a": unknown dtype "F12"/);
});

test('truncated file: data past the end', () => {
  const p = rawFile('trunc.safetensors', good, Buffer.alloc(20));
  expectUserError(() => readSafetensors(p), p, /past the end of the data section.*truncated/);
});

test('overlapping offsets', () => {
  const p = rawFile('overlap.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12));
  expectUserError(() => readSafetensors(p), p, /overlaps/);
});

test('offsets not tiling: gap and trailing bytes', () => {
  const p = rawFile('gap.safetensors', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, Buffer.alloc(12));
  expectUserError(() => readSafetensors(p), p, /gap of 4 bytes before tensor "b"/);
  const q = rawFile('trail.safetensors', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(10));
  expectUserError(() => readSafetensors(q), q, /trailing bytes/);
});

test('shape x dtype size mismatch', () => {
  const p = rawFile('size.safetensors', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8));
  expectUserError(() => readSafetensors(p), p, /shape \[3\] of F32 needs 12 bytes but data_offsets span 8/);
});

test('bad entries: shape, offsets, metadata', () => {
  const p = rawFile('shape.safetensors', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4));
  expectUserError(() => readSafetensors(p), p, /invalid shape/);
  const q = rawFile('offs.safetensors', { a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, Buffer.alloc(4));
  expectUserError(() => readSafetensors(q), q, /end before they start/);
  const r = rawFile('md.safetensors', { __metadata__: { a: 1 } }, Buffer.alloc(0));
  expectUserError(() => readSafetensors(r), r, /__metadata__ value for "a" is not a string/);
});

test('writer: aligned, tiles with padding tensors, round-trips, temp file + rename', async () => {
  const out = path.join(dir, 'w.lsw');
  const rnd = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 255));
  const tensors = [
    { name: 'x', dtype: 'F32', shape: [3, 5], data: rnd(60) },
    { name: 'y', dtype: 'F16', shape: [7], data: rnd(14) },
    { name: 'z', dtype: 'BF16', shape: [2, 128], data: rnd(512) },
    { name: 'w', dtype: 'F32', shape: [1], data: rnd(4) },
  ];
  await writeLsw(out, { format: 'lora-switch', note: 'hé' }, tensors.map((t) => ({ ...t, chunks: () => [t.data.subarray(0, 5), t.data.subarray(5)] })));
  const st = readSafetensors(out);
  assert.is(st.dataOffset % ALIGNMENT, 0);
  assert.equal(st.metadata, { format: 'lora-switch', note: 'hé' });
  for (const t of tensors) {
    const info = st.tensors.get(t.name)!;
    assert.is(info.start % ALIGNMENT, 0, `${t.name} aligned`);
    assert.equal(info.shape, t.shape);
    assert.ok(readTensorBytes(st, info).equals(t.data), `${t.name} bytes`);
  }
  const pads = Object.keys(st.header).filter((k) => k.startsWith('__pad__.'));
  assert.ok(pads.length >= 2, 'gaps are filled with padding tensors');
  for (const k of pads) assert.is((st.header[k] as { dtype: string }).dtype, 'U8');
  assert.equal(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temp file left');
});

test('writer: a failing producer leaves nothing behind and keeps an existing file', async () => {
  const out = path.join(dir, 'fail.lsw');
  fs.writeFileSync(out, 'old');
  let threw = false;
  try {
    await writeLsw(out, {}, [{ name: 'a', dtype: 'F32', shape: [4], chunks: function* () { yield Buffer.alloc(8); throw new Error('boom'); } }]);
  } catch {
    threw = true;
  }
  assert.ok(threw);
  assert.is(fs.readFileSync(out, 'utf8'), 'old');
  assert.equal(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

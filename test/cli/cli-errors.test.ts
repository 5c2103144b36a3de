// Bad input through the real CLI (bin/run.js on dist/): one line naming the file, non-zero exit,
// no stack trace, nothing half-written.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyCheckpoint } from '../helpers/checkpoint.js';
import { runCli, assertOneLineError as oneLineError } from '../helpers/cli.js';
import { nativeInfo } from '../../src/core/model.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-cli-'));
const hf = path.join(dir, 'hf');
makeTinyCheckpoint(hf, { arch: 'llama', shards: 2 });

function cli(args: string[], input?: string) {
  return runCli(args, dir, { input });
}

function corrupt(name: string, mutate: (buf: Buffer) => Buffer): string {
  const d = path.join(dir, name);
  fs.cpSync(hf, d, { recursive: true });
  const shard = fs.readdirSync(d).filter((f) => f.endsWith('.safetensors')).sort()[0];
  const p = path.join(d, shard);
  fs.writeFileSync(p, mutate(fs.readFileSync(p)));
  return d;
}

test('convert: missing folder', () => {
  oneLineError(cli(['convert', 'nope', '-o', 'x.lsw']), /nope: no such file or directory/);
});

test('convert: truncated shard', () => {
  const d = corrupt('trunc', (b) => b.subarray(0, b.length - 100));
  oneLineError(cli(['convert', d, '-o', 'trunc.lsw']), /model-00001-of-00002\.safetensors: .*truncated/);
  assert.not.ok(fs.existsSync(path.join(dir, 'trunc.lsw')));
});

test('convert: header length past the end', () => {
  const d = corrupt('hlen', (b) => {
    const c = Buffer.from(b);
    c.writeBigUInt64LE(BigInt(b.length * 2), 0);
    return c;
  });
  oneLineError(cli(['convert', d, '-o', 'hlen.lsw']), /\.safetensors: header length \d+ runs past the end/);
});

test('convert: unknown dtype, invalid JSON header', () => {
  const d = corrupt('dtype', (b) => Buffer.from(b.toString('latin1').replace('"dtype":"F', '"dtype":"Q'), 'latin1'));
  oneLineError(cli(['convert', d, '-o', 'dtype.lsw']), /\.safetensors: tensor ".*": unknown dtype "Q/);
  const e = corrupt('json', (b) => {
    const c = Buffer.from(b);
    c[8] = 0x5b; // '['
    c[9] = 0x7b;
    return c;
  });
  oneLineError(cli(['convert', e, '-o', 'json.lsw']), /\.safetensors: (invalid JSON header|header is not a JSON object)/);
});

test('convert: shape contradicting config.json, unsupported architecture', () => {
  const d = path.join(dir, 'shape');
  fs.cpSync(hf, d, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, vocab_size: cfg.vocab_size + 1 }));
  oneLineError(cli(['convert', d, '-o', 'shape.lsw']), /\.safetensors: tensor "model\.embed_tokens\.weight" has shape .* but config\.json implies/);
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, architectures: ['FalconForCausalLM'], model_type: 'falcon' }));
  oneLineError(cli(['convert', d, '-o', 'shape.lsw']), /config\.json: unsupported architecture \(FalconForCausalLM\)/);
  assert.not.ok(fs.existsSync(path.join(dir, 'shape.lsw')));
});

test('bad flags: one line', () => {
  oneLineError(cli(['convert', hf, '-o', 'x.lsw', '--dtype', 'f8']), /dtype/);
  oneLineError(cli(['convert', hf]), /output|-o/);
  oneLineError(cli(['generate', '-m', 'x.lsw', '-p', 'hi', '--max-tokens', 'many']), /max-tokens/);
  oneLineError(cli(['nonsense']), /nonsense/);
});

test('generate: missing model file, not a lora-switch file, corrupt .lsw', () => {
  oneLineError(cli(['generate', '-m', 'missing.lsw', '-p', 'hi']), /missing\.lsw: no such file/);
  oneLineError(cli(['generate', 'missing.lsw', '-p', 'hi']), /missing\.lsw: no such file/);
  oneLineError(cli(['generate', '-p', 'hi']), /model: give a \.lsw file or a Hugging Face model folder/);
  oneLineError(cli(['generate', 'a.lsw', '-m', 'b.lsw', '-p', 'hi']), /model: given twice, as "a\.lsw" and as -m "b\.lsw"/);
  const shard = path.join(hf, fs.readdirSync(hf).filter((f) => f.endsWith('.safetensors')).sort()[0]);
  oneLineError(cli(['generate', '-m', shard, '-p', 'hi']), /\.safetensors: not a lora-switch model file/);
  const junk = path.join(dir, 'junk.lsw');
  fs.writeFileSync(junk, 'not a model at all');
  oneLineError(cli(['generate', '-m', junk, '-p', 'hi']), /junk\.lsw: header length \d+ runs past the end/);
  oneLineError(cli(['generate', '-m', junk, '-p', 'hi', '--temperature', 'hot']), /--temperature: expected a number/);
});

test('convert writes a file that generate accepts as a model; --json is one object', () => {
  const r = cli(['convert', hf, '-o', 'ok.lsw', '--json', '--dtype', 'f32']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.architecture, 'llama');
  assert.is(j.dtype, 'f32');
  assert.ok(fs.existsSync(path.join(dir, 'ok.lsw')));
});

test('generate: a .lsw of a newer format version (one line, the file and the version)', () => {
  const r = cli(['convert', hf, '-o', 'v3.lsw', '--dtype', 'f32']);
  assert.is(r.code, 0, r.stderr);
  const file = path.join(dir, 'v3.lsw');
  const buf = fs.readFileSync(file);
  const at = buf.indexOf('"format_version":"1"');
  assert.ok(at > 0, 'the header names format_version 1');
  buf.write('"format_version":"3"', at);  // same length: the header stays valid
  fs.writeFileSync(file, buf);
  oneLineError(cli(['generate', '-m', file, '-p', 'hi']), /v3\.lsw: unsupported format_version "3" \(this version reads 1 and 2\)/);
});

test('generate and bench -m: a .lsw tensor of a type the engine does not take (one line, the file and the tensor)', () => {
  const r = cli(['convert', hf, '-o', 'i32.lsw', '--dtype', 'f32']);
  assert.is(r.code, 0, r.stderr);
  const file = path.join(dir, 'i32.lsw');
  const buf = fs.readFileSync(file);
  const hlen = Number(buf.readBigUInt64LE(0));
  const header = buf.subarray(8, 8 + hlen).toString('utf8');
  const m = /"([^"]+)":\{"dtype":"F32"/.exec(header);
  assert.ok(m, 'an F32 tensor in the header');
  // same element size, so the file stays consistent: only the type is one the engine refuses
  buf.write(header.replace(`"${m![1]}":{"dtype":"F32"`, `"${m![1]}":{"dtype":"I32"`), 8, 'utf8');
  fs.writeFileSync(file, buf);
  const name = m![1].replace(/[.]/g, '\\.');
  const re = new RegExp(`i32\\.lsw: tensor "${name}" has dtype I32; the engine takes F32, F16 or BF16`);
  oneLineError(cli(['generate', '-m', file, '-p', 'hi', '--max-tokens', '1']), re);
  oneLineError(cli(['bench', '-m', file, '--backend', 'cpu', '--modes', 'base', '--new-tokens', '2', '--prompt-tokens', '2', '--repetitions', '1', '--warmup', '0']), re);
});

test('generate and bench: a model whose logits are NaN (a NaN in the final norm weight): one line naming the model and the position, greedy or sampling, no trace left', () => {
  const d = path.join(dir, 'nan-norm');
  makeTinyCheckpoint(d, { arch: 'llama' });
  const p = path.join(d, 'model.safetensors');
  const buf = fs.readFileSync(p);
  const hlen = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  buf.writeFloatLE(NaN, 8 + hlen + h['model.norm.weight'].data_offsets[0] + 4 * 7);
  fs.writeFileSync(p, buf);
  for (const extra of [[], ['--temperature', '0.8', '--top-k', '20']]) {
    const trace = path.join(dir, 'nan-trace.jsonl');
    oneLineError(cli(['generate', d, '-p', 'hello there', '--max-tokens', '3', '--trace', trace, ...extra]),
      /nan-norm: position \d+: (\d+) of \1 logits are not finite \(NaN or infinity; the first at token id 0, nan\), so no token can be sampled/);
    assert.not.ok(fs.existsSync(trace), 'no trace file');
  }
  // bench on the same model: its prompt samples too, so every mode fails; after bench's own progress lines, the error
  // is one line that leads with the model
  const b = cli(['bench', '-m', d, '--backend', 'cpu', '--modes', 'base', '--new-tokens', '2', '--prompt-tokens', '3', '--repetitions', '1', '--warmup', '0']);
  assert.is(b.code, 1, b.stderr);
  const lines = b.stderr.trim().split('\n');
  assert.match(lines[lines.length - 1], /^Error: .*nan-norm: every mode failed \(lsw_model_prefill: position 2: (\d+) of \1 logits are not finite/);
  assert.ok(lines.slice(0, -1).every((l) => l.startsWith('bench: ')), b.stderr);
  assert.not.match(b.stderr, /\n\s+at /, 'no stack trace');
});

test('generate and bench --backend cuda where the engine sees no GPU: one line naming the flag, before any conversion', () => {
  if (nativeInfo().cuda) return;  // (a machine with a GPU: nothing to refuse)
  const re = /--backend cuda: no usable CUDA device here .*; use --backend cpu or auto/;
  const before = fs.readdirSync(dir).length;
  oneLineError(cli(['generate', hf, '-p', 'hi', '--backend', 'cuda']), re);
  oneLineError(cli(['bench', '--preset', 'tiny', '--backend', 'cuda']), re);
  assert.is(fs.readdirSync(dir).length, before, 'nothing written');
});

/** every file under `d` with its bytes, to show that a refused run left a folder exactly as it was */
function snapshot(d: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of fs.readdirSync(d, { recursive: true }) as string[]) {
    const p = path.join(d, f);
    if (fs.statSync(p).isFile()) m.set(f, fs.readFileSync(p).toString('base64'));
  }
  return m;
}

test('no command writes over one of its inputs: convert -o, generate --trace, bench --out (refused before any work)', () => {
  const src = path.join(dir, 'keep');
  fs.cpSync(hf, src, { recursive: true });
  fs.mkdirSync(path.join(src, 'sub'));
  fs.writeFileSync(path.join(src, 'sub', 'notes.txt'), 'kept\n');
  const before = snapshot(src);
  // convert: any existing file of the source folder (also below it), or the folder itself
  for (const f of ['config.json', 'tokenizer.json', fs.readdirSync(src).filter((x) => x.endsWith('.safetensors'))[0], 'sub/notes.txt']) {
    oneLineError(cli(['convert', src, '-o', path.join(src, f)]), /would overwrite a file inside the input folder .*keep/);
  }
  oneLineError(cli(['convert', src, '-o', src]), /keep: is a folder/);
  assert.equal(snapshot(src), before, 'the source folder is unchanged');
  // an output that is a link to an input: the output replaces the link (temporary file + rename), never its target
  fs.symlinkSync(path.join(src, 'config.json'), path.join(dir, 'link.lsw'));
  const l = cli(['convert', src, '-o', 'link.lsw', '--dtype', 'f32']);
  assert.is(l.code, 0, l.stderr);
  assert.not.ok(fs.lstatSync(path.join(dir, 'link.lsw')).isSymbolicLink(), 'the link itself was replaced');
  assert.equal(snapshot(src), before, 'the link\'s target is unchanged');
  // a new file inside the source folder is fine (and is then the only change)
  const r = cli(['convert', src, '-o', path.join(src, 'model.lsw'), '--dtype', 'f32']);
  assert.is(r.code, 0, r.stderr);
  const model = path.join(src, 'model.lsw');
  const lsw = fs.readFileSync(model);
  // generate --trace: the model file, a file of an HF model folder, a folder; the model is unchanged and no
  // generation ran (the refusal comes first: no trace temp file, nothing on stdout)
  oneLineError(cli(['generate', '-m', model, '-p', 'hi', '--max-tokens', '2', '--trace', model]), /model\.lsw: would overwrite the input .*model\.lsw/);
  oneLineError(cli(['generate', src, '-p', 'hi', '--max-tokens', '2', '--trace', path.join(src, 'tokenizer.json')]), /tokenizer\.json: would overwrite a file inside the input folder/);
  oneLineError(cli(['generate', '-m', model, '-p', 'hi', '--max-tokens', '2', '--trace', dir]), /is a folder/);
  // bench --out: the model, a folder
  const bench = ['bench', '-m', model, '--backend', 'cpu', '--modes', 'base', '--new-tokens', '2', '--prompt-tokens', '2', '--repetitions', '1', '--warmup', '0'];
  oneLineError(cli([...bench, '--out', model]), /model\.lsw: would overwrite the input/);
  oneLineError(cli([...bench, '--out', src]), /keep: is a folder/);
  assert.ok(fs.readFileSync(model).equals(lsw), 'the model is unchanged');
  assert.equal(fs.readdirSync(dir).filter((f) => f.includes('.tmp')), [], 'no temporary file left');
  assert.equal(fs.readdirSync(src).filter((f) => f.includes('.tmp')), [], 'no temporary file left in the model folder');
});

test('convert: a tokenizer.json that is JSON but not a tokenizer is refused at convert time, naming the file', () => {
  const d = path.join(dir, 'badtok');
  fs.cpSync(hf, d, { recursive: true });
  fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE' } }));
  oneLineError(cli(['convert', d, '-o', 'badtok.lsw']), /badtok\/tokenizer\.json: cannot build the tokenizer/);
  assert.not.ok(fs.existsSync(path.join(dir, 'badtok.lsw')));
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

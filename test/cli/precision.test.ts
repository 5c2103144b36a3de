// --precision precise|fast (lsw_model_config.prefill_precision) and lsw_measure_matmul through the C ABI, on the CPU
// backend: the option reaches the engine (validated there), the CPU computes in fp32 either way (identical logits and
// tokens), bad values are one line; the matmul rate is a positive finite number and bad arguments are typed errors.
// The CUDA side (fast prompt logits less precise than precise ones, the device matmul rate) is in cuda/tests/test_cuda.cpp.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyCheckpoint } from '../helpers/checkpoint.js';
import { convertModel } from '../../src/core/convert.js';
import { Model, engineConfigStruct, checkPrecision } from '../../src/core/model.js';
import { getNative, BACKEND, DTYPE, PRECISION } from '../../src/core/native/abi.js';
import { measureMatmul } from '../../src/core/bench/synthetic.js';
import { presetConfig } from '../../src/core/bench/presets.js';
import { BackendUnavailableError, NativeInvalidArgumentError, UserError } from '../../src/core/errors.js';
import { runCli, assertOneLineError as oneLineError } from '../helpers/cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-prec-'));
const hf = path.join(dir, 'hf');
makeTinyCheckpoint(hf, { arch: 'llama', kvHeads: 2, dtype: 'bf16', seed: 23 });
const lsw = path.join(dir, 'm.lsw');
await convertModel(hf, lsw, { dtype: 'bf16' });

function cli(args: string[]) {
  return runCli(args, dir, { env: { CI: 'true' } });
}

test('the config struct carries prefill_precision (precise = 0 by default, fast = 1); the engine rejects other values', () => {
  const c = presetConfig('tiny', 'f16');
  assert.is(engineConfigStruct(c, 'cpu', 16, 1).prefill_precision, 0);
  assert.is(engineConfigStruct(c, 'cpu', 16, 1, 0, 'fast').prefill_precision, 1);
  assert.equal(PRECISION, { precise: 0, fast: 1 });
  assert.is(checkPrecision(undefined), 'precise');
  assert.is(checkPrecision('fast'), 'fast');
  assert.throws(() => checkPrecision('tf32'), (e: unknown) => e instanceof UserError && /--precision: unknown precision "tf32" \(precise or fast\)/.test((e as Error).message));
  const native = getNative();
  for (const bad of [2, -1]) {
    const out: unknown[] = [null];
    assert.throws(() => native.call('lsw_model_create', { ...engineConfigStruct(c, 'cpu', 16, 1), prefill_precision: bad }, out),
      (e: unknown) => e instanceof NativeInvalidArgumentError && /prefill_precision/.test((e as Error).message), `prefill_precision ${bad}`);
  }
});

test('Model: --precision fast on the CPU gives the same logits as precise (fp32 either way); a bad value is one UserError', async () => {
  const a = await Model.load(lsw, { backend: 'cpu', threads: 1, maxContext: 64 });
  const b = await Model.load(lsw, { backend: 'cpu', threads: 1, maxContext: 64, precision: 'fast' });
  try {
    assert.is(a.precision, 'precise');
    assert.is(b.precision, 'fast');
    const ids = Array.from({ length: 20 }, (_, i) => (i * 37 + 5) % a.config.vocab_size);  // > 8 tokens: the GEMM path
    const la = a.eval(ids, true);
    const lb = b.eval(ids, true);
    assert.ok(la.some((x) => x !== 0) && la.every(Number.isFinite));
    assert.equal([...lb], [...la]);
  } finally {
    a.free();
    b.free();
  }
  try {
    await Model.load(lsw, { backend: 'cpu', precision: 'half' as 'fast' });
    assert.unreachable('bad precision accepted');
  } catch (e) {
    assert.instance(e, UserError);
    assert.match((e as Error).message, /--precision: unknown precision "half"/);
  }
});

test('generate --precision: fast is recorded in --json and gives the CPU the same tokens; a bad value is one line', () => {
  const args = ['generate', '-m', lsw, '-p', 'hello there', '--max-tokens', '6', '--temperature', '0', '--ignore-eos', '--backend', 'cpu', '--threads', '1', '--json'];
  const p = cli(args);
  const f = cli([...args, '--precision', 'fast']);
  assert.is(p.code, 0, p.stderr);
  assert.is(f.code, 0, f.stderr);
  const jp = JSON.parse(p.stdout);
  const jf = JSON.parse(f.stdout);
  assert.is(jp.precision, 'precise');
  assert.is(jf.precision, 'fast');
  assert.is(jf.tokens.length, 6);
  assert.equal(jf.tokens, jp.tokens);
  oneLineError(cli(['generate', '-m', lsw, '-p', 'hi', '--precision', 'half']), /--precision.*half.*precise, fast/);
});

test('lsw_measure_matmul: a positive finite TFLOP/s for every dtype on the CPU; bad arguments are typed errors', async () => {
  const native = getNative();
  for (const dt of ['f16', 'bf16', 'f32'] as const) {
    const r = await measureMatmul('cpu', dt, 72, 136, 19, 1);
    assert.ok(Number.isFinite(r) && r > 1e-6 && r < 1000, `${dt}: ${r}`);
  }
  const out = new Float64Array([-1]);
  native.call('lsw_measure_matmul', BACKEND.CPU, DTYPE.BF16, 64, 64, 33, 0, out);
  assert.ok(out[0] > 0, 'all cores');
  const bad = (args: unknown[], re: RegExp) => {
    const o = new Float64Array([-1]);
    assert.throws(() => native.call('lsw_measure_matmul', ...args.map((a) => (a === 'OUT' ? o : a))),
      (e: unknown) => e instanceof NativeInvalidArgumentError && re.test((e as Error).message), `${JSON.stringify(args)}`);
    assert.is(o[0], -1, 'nothing written');
  };
  bad([BACKEND.CPU, DTYPE.F16, 0, 64, 8, 0, 'OUT'], /rows, cols and n must be positive \(got 0 x 64 x 8\)/);
  bad([BACKEND.CPU, DTYPE.F16, 64, 64, -3, 0, 'OUT'], /must be positive/);
  bad([BACKEND.CPU, 7, 64, 64, 8, 0, 'OUT'], /unknown dtype 7/);
  bad([9, DTYPE.F16, 64, 64, 8, 0, 'OUT'], /unknown backend 9/);
  bad([BACKEND.CPU, DTYPE.F16, 64, 64, 8, -2, 'OUT'], /n_threads must be >= 0/);
  bad([BACKEND.CPU, DTYPE.F32, 65536, 65536, 16, 0, 'OUT'], /GiB of buffers \(at most 16 GiB\)/);
  bad([BACKEND.CPU, DTYPE.F16, 64, 64, 8, 0, null], /tflops is NULL/);
  if (native.raw.lsw_cuda_available() !== 1) {
    const o = new Float64Array([-1]);
    assert.throws(() => native.call('lsw_measure_matmul', BACKEND.CUDA, DTYPE.BF16, 64, 64, 64, 0, o), (e: unknown) => e instanceof BackendUnavailableError);
    assert.is(o[0], -1);
  }
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

// The KV cache element type (lsw_model_config.kv_dtype; Model `kvCache`, `generate` / `bench --kv-cache`) on the CPU
// backend, against the independent fp64 reference (test/helpers/reference.ts) with K and V rounded to f16 / bf16 as they
// are stored:
//   - prompt logits (the prompt path) and decode steps (the decode path, one and several chunks of positions) match the
//     reference that rounds (relative error per position, as the fp32 tests, within TOL_KV); greedy tokens are the
//     reference's;
//   - the option has an effect: the logits differ from the f32 cache's and from the unrounded reference by more than the
//     tolerance, and the cache takes half the bytes (device_bytes_peak);
//   - the option reaches the engine (validated there), generate and bench carry it, bad values are one line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Model, engineConfigStruct, checkKvCache, resolveKvCache, type KvCacheName } from '../src/core/model.js';
import { getNative } from '../src/core/native/abi.js';
import { NativeInvalidArgumentError, UserError } from '../src/core/errors.js';
import { parseBenchFlags } from '../src/core/bench/cli.js';
import { presetConfig } from '../src/core/bench/presets.js';
import { kvBytesRead } from '../src/core/bench/stats.js';
import { toCsv, CSV_COLUMNS } from '../src/core/bench/format.js';
import type { BenchDoc } from '../src/core/bench/run.js';
import { relErr } from './helpers/reference.js';
import type { StDtype } from './helpers/safetensors.js';
import { assertLogitsClose, rows, greedy } from './helpers/compare.js';
import { PROMPT_IDS } from './helpers/variants.js';
import { variantFixtures } from './helpers/fixtures.js';
import { runCli, assertOneLineError } from './helpers/cli.js';
import { Rng } from './helpers/prng.js';

const TOL = 1e-5;
/**
 * Engine vs the rounding reference: half the dtype's unit roundoff.  The engine rounds its fp32 K/V, the reference its
 * fp64 ones: a value within fp32 error of a rounding midpoint goes to the other neighbour (one ulp of the dtype, a few per
 * sequence), which moves the logits by up to about 1e-4 (f16) / 1e-3 (bf16) here.  Rounding every K/V value moves them
 * further than TOL_KV (asserted below), so the tolerance still tells the rounded cache from an unrounded one.
 */
const TOL_KV: Record<string, number> = { f16: 2 ** -12, bf16: 2 ** -9 };
const STEPS = 8;
const KV: Array<[KvCacheName, StDtype]> = [['f16', 'F16'], ['bf16', 'BF16']];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-kv-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const fixture = variantFixtures(tmp);

/** The prompt's logits (one prompt evaluation), then `steps` single tokens (decode steps), every position's logits. */
function promptThenSteps(model: Model, prompt: number[], steps: number[], vocab: number): Float32Array[] {
  model.reset();
  const out = rows(model.eval(prompt, true), vocab);
  for (const t of steps) out.push(Float32Array.from(model.eval([t], false)));
  return out;
}

// MHA, GQA (4:1 and 8:2), qkv bias with bf16 weights
for (const name of ['llama2-f32', 'llama3-gqa-rope-llama3-v5', 'mistral-gqa-f16', 'qwen2-bias-tied-bf16']) {
  for (const [kv, dt] of KV) {
    test(`${name}, ${kv} KV cache: prompt + ${STEPS} decode steps match the reference rounding K/V when stored (rel <= ${TOL_KV[kv]})`, async () => {
      const { ref, lsw, info } = await fixture(name);
      const rng = new Rng(name.length * 31 + kv.length);
      const steps = Array.from({ length: STEPS }, () => rng.int(info.tokenizer.size));
      const seq = [...PROMPT_IDS, ...steps];
      const model = await Model.load(lsw, { backend: 'cpu', kvCache: kv });
      const f32 = await Model.load(lsw, { backend: 'cpu' });
      try {
        assert.is(model.kvCache, kv);
        assert.is(f32.kvCache, 'f32');
        const want = ref.forward(seq, [], { kvRound: dt }).logits;
        const got = promptThenSteps(model, PROMPT_IDS, steps, info.vocabSize);
        assertLogitsClose(got, want, TOL_KV[kv], `${name} ${kv}`);
        // the rounding is real: farther than the tolerance from the unrounded reference and from the f32 cache's logits
        const plain = promptThenSteps(f32, PROMPT_IDS, steps, info.vocabSize);
        assertLogitsClose(plain, ref.forward(seq).logits, TOL, `${name} f32`);
        assert.throws(() => assertLogitsClose(got, ref.forward(seq).logits, TOL_KV[kv], 'unrounded reference'));
        const worst = Math.max(...got.map((g, t) => relErr(g, plain[t])));
        assert.ok(worst > TOL_KV[kv], `${kv} logits within ${worst} of the f32 cache's`);
        // the first position reads only itself: K/V rounding changes its logits too (attention reads the stored values)
        assert.ok(relErr(got[0], plain[0]) > 0, 'position 0 unchanged');
      } finally {
        model.free();
        f32.free();
      }
    });
  }
}

test('f16 KV cache: greedy tokens are the rounding reference\'s; a long sequence (many decode chunks) matches it', async () => {
  const { ref, lsw, info } = await fixture('llama3-gqa-rope-llama3-v5');
  const model = await Model.load(lsw, { backend: 'cpu', kvCache: 'f16', threads: 2 });
  try {
    const r = ref.greedy(PROMPT_IDS, 12, [], { kvRound: 'F16' });
    assert.ok(r.minMargin > 1e-3, `fixture has a near tie (${r.minMargin}); change its seed`);
    assert.equal(await greedy(model, PROMPT_IDS, 12), r.tokens);
    // prompt of 100 in one evaluation, then 50 decode steps over up to 150 positions (10 chunks of 16)
    const rng = new Rng(77);
    const seq = Array.from({ length: 150 }, () => rng.int(info.tokenizer.size));
    const got = promptThenSteps(model, seq.slice(0, 100), seq.slice(100), info.vocabSize);
    assertLogitsClose(got, ref.forward(seq, [], { kvRound: 'F16' }).logits, TOL_KV.f16, 'f16 long');
  } finally {
    model.free();
  }
});

test('device_bytes_peak: an f16 / bf16 cache takes exactly half the bytes of the f32 one', async () => {
  const { lsw, info } = await fixture('llama3-gqa-rope-llama3-v5');
  const peak: Record<string, bigint> = {};
  for (const kv of ['f32', 'f16', 'bf16'] as const) {
    const m = await Model.load(lsw, { backend: 'cpu', kvCache: kv, maxContext: 40, threads: 1 });
    try {
      m.eval(PROMPT_IDS, false);
      peak[kv] = BigInt(m.stats().device_bytes_peak);
    } finally {
      m.free();
    }
  }
  const c = info.config;
  const kvd = c.num_key_value_heads * (c.head_dim ?? c.hidden_size / c.num_attention_heads);
  const half = BigInt(2 * c.num_hidden_layers * 40 * kvd * 2);  // K and V, 2 of 4 bytes per element
  assert.is(peak.f32 - peak.f16, half);
  assert.is(peak.f32 - peak.bf16, half);
});

test('the config struct carries kv_dtype (f32 = 0 by default, f16 = 1, bf16 = 2); the engine rejects other values', () => {
  const c = presetConfig('tiny', 'f16');
  assert.is(engineConfigStruct(c, 'cpu', 16, 1).kv_dtype, 0);
  assert.is(engineConfigStruct(c, 'cpu', 16, 1, 0, 'precise', 'tokenwise', 'f16').kv_dtype, 1);
  assert.is(engineConfigStruct(c, 'cpu', 16, 1, 0, 'precise', 'tokenwise', 'bf16').kv_dtype, 2);
  assert.is(checkKvCache(undefined), 'f32');
  assert.is(checkKvCache(undefined, 'auto'), 'auto');
  assert.is(checkKvCache('bf16'), 'bf16');
  assert.is(checkKvCache('auto'), 'auto');
  assert.throws(() => checkKvCache('f64'), (e: unknown) => e instanceof UserError && /--kv-cache: unknown type "f64" \(auto, f32, f16 or bf16\)/.test((e as Error).message));
  // auto: 16-bit weights keep their type, anything else takes f32; a given type is kept whatever the weights
  assert.is(resolveKvCache('auto', 'f16'), 'f16');
  assert.is(resolveKvCache('auto', 'bf16'), 'bf16');
  assert.is(resolveKvCache('auto', 'f32'), 'f32');
  assert.is(resolveKvCache('auto', undefined), 'f32');
  assert.is(resolveKvCache('f32', 'f16'), 'f32');
  assert.is(resolveKvCache('bf16', 'f32'), 'bf16');
  const native = getNative();
  for (const bad of [3, -1]) {
    const o: unknown[] = [null];
    assert.throws(() => native.call('lsw_model_create', { ...engineConfigStruct(c, 'cpu', 16, 1), kv_dtype: bad }, o),
      (e: unknown) => e instanceof NativeInvalidArgumentError && new RegExp(`unknown kv_dtype ${bad} \\(0 f32, 1 f16, 2 bf16\\)`).test((e as Error).message), `kv_dtype ${bad}`);
  }
});

function cli(args: string[]) {
  return runCli(args, tmp, { env: { CI: 'true' } });
}

test('generate --kv-cache: recorded in --json, the greedy tokens of the Model API with the same cache; auto (the default) is the weights\' type; a bad value is one line', async () => {
  const { lsw } = await fixture('mistral-gqa-f16');
  const args = ['generate', '-m', lsw, '-p', 'hello world again', '--max-tokens', '6', '--temperature', '0', '--ignore-eos', '--backend', 'cpu', '--threads', '1', '--json'];
  const d = cli(args);
  const f = cli([...args, '--kv-cache', 'f32']);
  const h = cli([...args, '--kv-cache', 'f16']);
  for (const r of [d, f, h]) assert.is(r.code, 0, r.stderr);
  const [jd, jf, jh] = [d, f, h].map((r) => JSON.parse(r.stdout));
  assert.is(jd.kv_cache, 'f16', 'auto on f16 weights');
  assert.is(jf.kv_cache, 'f32');
  assert.is(jh.kv_cache, 'f16');
  assert.is(jh.tokens.length, 6);
  assert.equal(jd.tokens, jh.tokens);
  for (const [kv, j] of [['f16', jh], ['f32', jf]] as const) {
    const model = await Model.load(lsw, { backend: 'cpu', kvCache: kv, threads: 1 });
    try {
      const prompt = model.tokenizer.encode('hello world again');
      assert.is(j.prompt_tokens, prompt.length);
      assert.equal(j.tokens, await greedy(model, prompt, 6), kv);
    } finally {
      model.free();
    }
  }
  // auto on bf16 and f32 weights
  for (const [name, want] of [['qwen2-bias-tied-bf16', 'bf16'], ['llama2-f32', 'f32']] as const) {
    const r = cli(['generate', '-m', (await fixture(name)).lsw, '-p', 'hi', '--max-tokens', '2', '--temperature', '0', '--backend', 'cpu', '--threads', '1', '--json']);
    assert.is(r.code, 0, r.stderr);
    assert.is(JSON.parse(r.stdout).kv_cache, want, name);
    const m = await Model.load((await fixture(name)).lsw, { backend: 'cpu', kvCache: 'auto', threads: 1 });
    try {
      assert.is(m.kvCache, want, `${name} Model kvCache auto`);
    } finally {
      m.free();
    }
  }
  assertOneLineError(cli(['generate', '-m', lsw, '-p', 'hi', '--kv-cache', 'f64']), /--kv-cache.*f64.*f32, f16, bf16/);
});

test('bench --kv-cache: protocol.kv_cache, the floor\'s KV bytes and the peak memory follow it; text, CSV; a bad value is one line', () => {
  assert.is(parseBenchFlags({ preset: 'tiny', backend: 'cpu', command: 'x' }).kvCache, 'auto', 'auto by default');
  assert.is(parseBenchFlags({ preset: 'tiny', backend: 'cpu', kvCache: 'bf16', command: 'x' }).kvCache, 'bf16');
  assert.throws(() => parseBenchFlags({ preset: 'tiny', backend: 'cpu', kvCache: 'int8' }), /--kv-cache: unknown type "int8" \(auto, f32, f16 or bf16\)/);
  const base = ['bench', '--backend', 'cpu', '--preset', 'tiny', '--prompt-tokens', '8', '--new-tokens', '3', '--repetitions', '1', '--warmup', '0', '--threads', '1', '--modes', 'base'];
  const docs: Record<string, BenchDoc> = {};
  for (const kv of ['f32', 'bf16']) {
    const r = cli([...base, '--kv-cache', kv, '--json']);
    assert.is(r.code, 0, r.stderr);
    docs[kv] = JSON.parse(r.stdout) as BenchDoc;
    assert.is(docs[kv].protocol.kv_cache, kv);
  }
  // tiny: 2 layers, 2 KV heads of 64; average decode context 8 + (2 + 1) / 2
  const fb = (d: BenchDoc) => d.floor_bytes as { kv_read_avg: number; kv_bytes_per_element: number };
  assert.is(fb(docs.f32).kv_bytes_per_element, 4);
  assert.is(fb(docs.bf16).kv_bytes_per_element, 2);
  assert.is(fb(docs.f32).kv_read_avg, Math.round(kvBytesRead(2, 2, 64, 4, 9.5)));
  assert.is(fb(docs.bf16).kv_read_avg, Math.round(kvBytesRead(2, 2, 64, 2, 9.5)));
  // the engine's cache of 8 + 3 positions: half the bytes
  assert.is(docs.f32.results[0].peak_device_bytes! - docs.bf16.results[0].peak_device_bytes!, 2 * 2 * 11 * 128 * 2);
  const csv = toCsv(docs.bf16).trimEnd().split('\n');
  assert.is(csv[1].split(',')[CSV_COLUMNS.indexOf('kv_cache')], 'bf16');
  // auto (the default): the synthetic model's weight type (tiny: f16 unless --dtype)
  for (const [dt, want] of [[[], 'f16'], [['--dtype', 'bf16'], 'bf16'], [['--dtype', 'f32'], 'f32']] as const) {
    const r = cli([...base, ...dt, '--json']);
    assert.is(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as BenchDoc;
    assert.is(d.protocol.kv_cache, want, `default with ${dt.join(' ') || 'no --dtype'}`);
    assert.is(fb(d).kv_bytes_per_element, want === 'f32' ? 4 : 2);
  }
  const txt = cli([...base, '--kv-cache', 'f16']);
  assert.is(txt.code, 0, txt.stderr);
  assert.match(txt.stdout, /^protocol batch 1, prompt 8, 3 new tokens, warm-up 0, 1 repetitions, interleaved, precise prefill, f16 KV cache, random decode tokens$/m);
  assertOneLineError(cli(['bench', '--preset', 'tiny', '--backend', 'cpu', '--kv-cache', 'int8']), /--kv-cache.*int8.*f32, f16, bf16/);
});

test.run();

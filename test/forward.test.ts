// The engine's forward pass against the independent fp64 reference, for every architecture variant:
// converted .lsw and HF folder loaded directly; all-position logits; greedy generation; prefill vs one token at
// a time; converter dtype rounding; sampling determinism and filters.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertModel } from '../src/core/convert.js';
import { Model } from '../src/core/model.js';
import { RefModel, softmax } from './helpers/reference.js';
import { assertLogitsClose, rows, greedy } from './helpers/compare.js';
import { VARIANTS, PROMPT_IDS } from './helpers/variants.js';
import { variantFixtures } from './helpers/fixtures.js';
import { ContextFullError, NativeInvalidArgumentError } from '../src/core/errors.js';
import { Rng } from './helpers/prng.js';

const TOL = 1e-5;
const GEN = 16;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-fwd-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const fixture = variantFixtures(tmp);

for (const v of VARIANTS) {
  test(`${v.name}: .lsw logits of every prompt position match the fp64 reference (rel <= ${TOL})`, async () => {
    const { ref, lsw, info } = await fixture(v.name);
    const model = await Model.load(lsw, { backend: 'cpu' });
    try {
      assert.is(model.config.vocab_size, info.vocabSize);
      const want = ref.forward(PROMPT_IDS).logits;
      const got = rows(model.eval(PROMPT_IDS, true), info.vocabSize);
      assertLogitsClose(got, want, TOL, `${v.name} .lsw prefill`);
    } finally {
      model.free();
    }
  });

  test(`${v.name}: greedy ${GEN} tokens identical to the reference; prefill == token by token`, async () => {
    const { ref, lsw, info } = await fixture(v.name);
    const model = await Model.load(lsw, { backend: 'cpu' });
    try {
      const r = ref.greedy(PROMPT_IDS, GEN);
      assert.ok(r.minMargin > 1e-3, `fixture has a near tie (${r.minMargin}); change its seed`);
      assert.equal(await greedy(model, PROMPT_IDS, GEN), r.tokens);
      // prefill all at once vs one token at a time, both against the reference
      const seq = [...PROMPT_IDS, ...r.tokens.slice(0, 6)];
      const want = ref.forward(seq).logits;
      model.reset();
      const batch = rows(model.eval(seq, true), info.vocabSize);
      model.reset();
      const single: Float32Array[] = [];
      for (const t of seq) single.push(Float32Array.from(model.eval([t], false)));
      assert.is(model.nPast, seq.length);
      assertLogitsClose(batch, want, TOL, `${v.name} batch`);
      assertLogitsClose(single, want, TOL, `${v.name} token-by-token`);
      assertLogitsClose(single, batch.map((x) => Float64Array.from(x)), TOL, `${v.name} token-by-token vs batch`);
      // mixed: prompt prefill then more tokens appended in chunks
      model.reset();
      const a = rows(model.eval(seq.slice(0, 9), true), info.vocabSize);
      const b = rows(model.eval(seq.slice(9, 13), true), info.vocabSize);
      const c = rows(model.eval(seq.slice(13), true), info.vocabSize);
      assertLogitsClose([...a, ...b, ...c], want, TOL, `${v.name} chunked`);
    } finally {
      model.free();
    }
  });
}

for (const name of ['llama3-gqa-rope-llama3-v5', 'qwen2-bias-tied-bf16', 'llama-explicit-head-dim']) {
  test(`${name}: HF folder loaded directly matches the reference`, async () => {
    const { ref, info } = await fixture(name);
    const model = await Model.load(info.dir, { backend: 'cpu' });
    try {
      const got = rows(model.eval(PROMPT_IDS, true), info.vocabSize);
      assertLogitsClose(got, ref.forward(PROMPT_IDS).logits, TOL, `${name} HF folder`);
    } finally {
      model.free();
    }
  });
}

for (const dtype of ['f16', 'bf16'] as const) {
  test(`convert --dtype ${dtype} from f32 weights: matches the reference with RNE-rounded weights`, async () => {
    const { info } = await fixture('llama3-gqa-rope-llama3-v5');
    const out = path.join(tmp, `conv-${dtype}.lsw`);
    await convertModel(info.dir, out, { dtype });
    const ref = RefModel.load(info.dir, { roundWeights: dtype === 'f16' ? 'F16' : 'BF16' });
    const unrounded = RefModel.load(info.dir);
    const model = await Model.load(out, { backend: 'cpu' });
    try {
      const got = rows(model.eval(PROMPT_IDS, true), info.vocabSize);
      const want = ref.forward(PROMPT_IDS).logits;
      assertLogitsClose(got, want, TOL, `convert ${dtype}`);
      // and the rounding is visible (this test could fail if the converter did not round)
      assert.throws(() => assertLogitsClose(got, unrounded.forward(PROMPT_IDS).logits, TOL, 'unrounded'));
    } finally {
      model.free();
    }
  });
}

test('sampling: same seed -> same tokens; another seed -> other tokens; every token passes top-k/top-p/min-p', async () => {
  const { ref, lsw } = await fixture('llama2-f32');
  const model = await Model.load(lsw, { backend: 'cpu' });
  const params = { temperature: 1.3, topK: 40, topP: 0.9, minP: 0.02 };
  const run = async (seed: number) => {
    model.reset();
    model.setSampler({ ...params, seed });
    const out = [await model.prefill(PROMPT_IDS)];
    while (out.length < 24) out.push(await model.step(out[out.length - 1]));
    return out;
  };
  try {
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    assert.equal(a, b);
    assert.not.equal(a, c);
    for (const seqTokens of [a, c]) {
      const seq = [...PROMPT_IDS, ...seqTokens];
      const logits = ref.forward(seq).logits;
      for (let i = 0; i < seqTokens.length; i++) {
        const l = logits[PROMPT_IDS.length - 1 + i];
        const p = softmax(Array.from(l, (x) => x / params.temperature));
        const tok = seqTokens[i];
        const better = Array.from(p).filter((q) => q > p[tok] * (1 + 1e-6));
        assert.ok(better.length < params.topK, `token ${tok} at step ${i} is outside the top-${params.topK}`);
        const cum = better.reduce((s, q) => s + q, 0);
        assert.ok(cum < params.topP + 1e-6, `token ${tok} at step ${i} is outside top-p (mass before it ${cum})`);
        assert.ok(p[tok] >= params.minP * Math.max(...p) * (1 - 1e-5), `token ${tok} at step ${i} is below min-p`);
      }
    }
    // greedy is temperature 0 and ignores the seed
    model.reset();
    model.setSampler({ temperature: 0, seed: 1 });
    const g1 = await model.prefill(PROMPT_IDS);
    model.reset();
    model.setSampler({ temperature: 0, seed: 2 });
    assert.is(await model.prefill(PROMPT_IDS), g1);
  } finally {
    model.free();
  }
});

test('sampling: top-k 1 is greedy at any temperature', async () => {
  const { ref, lsw } = await fixture('mistral-gqa-f16');
  const model = await Model.load(lsw, { backend: 'cpu' });
  try {
    model.setSampler({ temperature: 5, topK: 1, topP: 1, minP: 0, seed: 9 });
    const out = [await model.prefill(PROMPT_IDS)];
    while (out.length < 8) out.push(await model.step(out[out.length - 1]));
    assert.equal(out, ref.greedy(PROMPT_IDS, 8).tokens);
  } finally {
    model.free();
  }
});

for (const name of ['llama3-gqa-rope-llama3-v5', 'llama-linear-rope-bf16', 'qwen2-f32-sharded']) {
  test(`${name}: 150-token sequence (past llama3's original_max_position) matches the reference at every position`, async () => {
    const { ref, lsw, info } = await fixture(name);
    const rng = new Rng(2024);
    const seq = Array.from({ length: 150 }, () => rng.int(info.tokenizer.size));
    const model = await Model.load(lsw, { backend: 'cpu' });
    try {
      const want = ref.forward(seq).logits;
      // prefill 100 at once, then 50 one at a time (decode path at long positions)
      const got = rows(model.eval(seq.slice(0, 100), true), info.vocabSize);
      for (const t of seq.slice(100)) got.push(Float32Array.from(model.eval([t], false)));
      assertLogitsClose(got, want, TOL, `${name} long`);
    } finally {
      model.free();
    }
  });
}

test('engine state: reset reproduces logits exactly; two models side by side do not interfere', async () => {
  const a = await fixture('llama2-f32');
  const b = await fixture('qwen2-bias-tied-bf16');
  const ma = await Model.load(a.lsw, { backend: 'cpu' });
  const mb = await Model.load(b.lsw, { backend: 'cpu' });
  try {
    const first = Float32Array.from(ma.eval(PROMPT_IDS.slice(0, 8), true));
    mb.eval(PROMPT_IDS, true);
    ma.eval([5, 6, 7], false);
    ma.reset();
    assert.is(ma.nPast, 0);
    const again = ma.eval(PROMPT_IDS.slice(0, 8), true);
    assert.ok(first.every((x, i) => Object.is(x, again[i])), 'bit-identical after reset');
    mb.reset();
    assertLogitsClose(rows(mb.eval(PROMPT_IDS, true), b.info.vocabSize), b.ref.forward(PROMPT_IDS).logits, TOL, 'second model');
  } finally {
    ma.free();
    mb.free();
  }
});

test('engine errors: context full is a ContextFullError and the model stays usable; bad token ids are rejected', async () => {
  const { ref, lsw, info } = await fixture('mistral-gqa-f16');
  const model = await Model.load(lsw, { backend: 'cpu', maxContext: 24 });
  try {
    assert.is(model.maxContext, 24);
    model.eval(PROMPT_IDS, false); // 20
    let err: unknown;
    try { model.eval([1, 2, 3, 4, 5], false); } catch (e) { err = e; }
    assert.instance(err, ContextFullError);
    assert.is(model.nPast, 20, 'a rejected eval leaves the cache as it was');
    const next = model.eval([7], false);
    model.reset();
    assertLogitsClose([next], [ref.forward([...PROMPT_IDS, 7]).logits[20]], TOL, 'after context-full');
    for (const bad of [-1, info.vocabSize, 1 << 30]) {
      let e2: unknown;
      try { model.eval([bad], false); } catch (e) { e2 = e; }
      assert.instance(e2, NativeInvalidArgumentError, `token ${bad} rejected as an invalid argument`);
      assert.match((e2 as Error).message, new RegExp(`^lsw_model_eval: token ${bad} at index 0 is outside the vocabulary \\(size ${info.vocabSize}\\)`));
      assert.is(model.nPast, 0);
    }
  } finally {
    model.free();
  }
});

test.run();

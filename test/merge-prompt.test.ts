// merge_prompt (lsw_model_config.merge_prompt; docs/FORMAT.md "Prompts in merge mode") on the CPU backend, against the
// independent fp64 reference (test/helpers/reference.ts) and against the token-wise merge mode:
//   - the option reaches the engine (validated there), Model.load / generate / bench carry it, bad values are one line;
//   - a BATCHED merge-mode prompt is computed as fused mode computes a prompt (bit for bit on the CPU: the same delta
//     path), so its logits match the unmerged reference; the TOKENWISE prompt matches the reference with merged,
//     dtype-rounded weights; the two are close (the difference is the rounding of the merged weights) and greedy
//     continuations agree;
//   - routes: the pre-gated router reads layer-0 activations that no merged weight has touched on either path (FORMAT.md),
//     so BATCHED routes = TOKENWISE routes; layer-wise routers read activations of merged layers in TOKENWISE mode, so
//     there only the reference (within GATE_TOL on f32 weights) is guaranteed for both;
//   - state after a batched prompt: a scenario of batched segments and single tokens in which a skip decision based on
//     anything but the working weights' content goes wrong (the last prompt token's experts equal the next decode
//     token's; a decode token whose experts equal the merged ones after a batched segment): every logit row matches the
//     reference that merges exactly the single-token positions, and the merge counters are exactly those of a merge
//     that compares each decode token's routes with the last merged ones (prompt tokens not counted).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertModel } from '../src/core/convert.js';
import { Model, engineConfigStruct, checkMergePrompt, type MergePromptName, type ModeName } from '../src/core/model.js';
import { getNative, MERGE_PROMPT } from '../src/core/native/abi.js';
import { NativeInvalidArgumentError, NativeUnsupportedError, UserError } from '../src/core/errors.js';
import { parseBenchFlags } from '../src/core/bench/cli.js';
import { presetConfig } from '../src/core/bench/presets.js';
import {
  makeTinyCheckpoint, makeLoraSwitchAdapter, makePeftLoraAdapter, makeMixLoraAdapter, MLP_MODULES, type CheckpointInfo,
} from './helpers/checkpoint.js';
import { RefModel, relErr, flat, type RefAdapter } from './helpers/reference.js';
import type { StDtype } from './helpers/safetensors.js';
import { assertLogitsClose, rows, greedy } from './helpers/compare.js';
import { runCli, assertOneLineError, type CliResult } from './helpers/cli.js';

const GATE_TOL = 1e-5;
const GEN = 8;
const PROMPT = [1, 72, 101, 108, 258, 119, 111, 260, 275, 46, 200, 17];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-mprompt-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const info = makeTinyCheckpoint(path.join(tmp, 'llama'), { arch: 'llama', hidden: 48, heads: 4, kvHeads: 2, headDim: 16, dtype: 'f32', seed: 3 });

interface Case {
  name: string;
  dtype: 'f32' | 'f16';
  /** adapter folders + scales and the reference adapters read from the same folders */
  make: (dir: string, ref: RefModel, fold?: StDtype) => { specs: { path: string; scale: number }[]; refs: RefAdapter[] };
  /** the routes of the batched prompt equal the token-wise ones (pre-gated / static routers only) */
  sameRoutes: boolean;
  /** every router is pre-gated on the q input (the normed embedding): a token's experts do not depend on its context */
  tokenRouted: boolean;
  /** logits: engine vs reference (relative, per position) */
  tol: number;
  /** logits: batched vs token-wise merge mode (relative, per position): the rounding of the merged weights */
  twTol: number;
}

const CASES: Case[] = [
  {
    name: 'LoRA-Switch E=4 top_k=2 all-linear (router on the q input)',
    dtype: 'f32',
    make: (d, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 4, topK: 2, seed: 42 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadLoraSwitch(a)] };
    },
    sameRoutes: true,
    tokenRouted: true,
    tol: 1e-5,
    twTol: 1e-5,
  },
  {
    name: 'LoRA-Switch E=5 top_k=2 on up/down (router on the MLP input) + PEFT on q/v (static)',
    dtype: 'f32',
    make: (d, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 5, topK: 2, targetModules: ['up_proj', 'down_proj'], seed: 57 }).dir;
      const b = makePeftLoraAdapter(path.join(d, 'b'), info, { targetModules: ['q_proj', 'v_proj'], seed: 58 }).dir;
      return { specs: [{ path: a, scale: 1 }, { path: b, scale: 0.8 }], refs: [ref.loadLoraSwitch(a), ref.loadPeft(b, 0.8)] };
    },
    sameRoutes: true,
    tokenRouted: false,
    tol: 1e-5,
    twTol: 1e-5,
  },
  {
    name: 'MixLoRA E=3 top_k=1 (layer-wise routers, merged per layer) + attention LoRA',
    dtype: 'f32',
    make: (d, ref) => {
      const a = makeMixLoraAdapter(path.join(d, 'a'), info, { numExperts: 3, topK: 1, seed: 9 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadMixLora(a)] };
    },
    sameRoutes: false,
    tokenRouted: false,
    tol: 1e-5,
    twTol: 1e-5,
  },
  {
    // f16: merged weights are rounded to f16 (2^-11 relative per weight), visibly (FORMAT.md "SGMM arithmetic"); the
    // reference merges the same way with its own fp64 gates, whose last-bit differences flip some roundings: 1e-4 as in
    // adapters-engine.test.ts.  Batched vs token-wise differ by the whole merged-weight rounding: measured ~1e-3 here,
    // tolerance 1e-2 (ten times that, and still a tenth of what dropping the adapters changes).
    name: 'f16: LoRA-Switch E=4 top_k=2 (router on the q input) + PEFT on o',
    dtype: 'f16',
    make: (d, ref, fold) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 4, topK: 2, targetModules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'], seed: 61 }).dir;
      const b = makePeftLoraAdapter(path.join(d, 'b'), info, { targetModules: ['o_proj'], seed: 62 }).dir;
      return { specs: [{ path: a, scale: 1 }, { path: b, scale: 0.5 }], refs: [ref.loadLoraSwitch(a, { foldRound: fold }), ref.loadPeft(b, 0.5, { foldRound: fold })] };
    },
    sameRoutes: true,
    tokenRouted: true,
    tol: 1e-4,
    twTol: 1e-2,
  },
];

/** Routes of every adapter at positions [0, n): per position, the concatenation of its rows (experts, then gates). */
function routeRows(model: Model, n: number): { experts: number[][][]; gates: number[][][] } {
  const experts: number[][][] = [];
  const gates: number[][][] = [];
  for (const a of model.adapters) {
    const r = model.routes(a.id, 0, n);
    const e: number[][] = [];
    const g: number[][] = [];
    for (let t = 0; t < n; t++) {
      e.push(Array.from(r.experts.subarray(t * r.rows * r.topK, (t + 1) * r.rows * r.topK)));
      g.push(Array.from(r.gates.subarray(t * r.rows * r.topK, (t + 1) * r.rows * r.topK)));
    }
    experts.push(e);
    gates.push(g);
  }
  return { experts, gates };
}

/**
 * The merge counters a correct merge mode gives for the single-token positions `merged` (in order), from the routes:
 * without a layer-wise adapter one step per token -- skipped when every adapter's experts and gates equal those of the
 * previous merged position (nothing is merged after a reset: the first one merges); with one, the same per layer, over
 * the layers some adapter routes in (MixLoRA fixtures adapt every layer).
 */
function expectedCounters(model: Model, merged: number[], n: number): { steps: number; skipped: number } {
  const r = routeRows(model, n);
  const layerwise = model.adapters.some((a) => a.router_kind === 'layerwise');
  const L = layerwise ? model.config.num_layers : 1;
  const key = (t: number, l: number) => JSON.stringify(model.adapters.map((a, i) => {
    const row = a.router_kind === 'layerwise' ? l : 0;
    return [r.experts[i][t].slice(row * a.top_k, (row + 1) * a.top_k), r.gates[i][t].slice(row * a.top_k, (row + 1) * a.top_k)];
  }));
  let steps = 0;
  let skipped = 0;
  for (let l = 0; l < L; l++) {
    let prev: string | null = null;
    for (const t of merged) {
      const k = key(t, l);
      if (k === prev) skipped++;
      else steps++;
      prev = k;
    }
  }
  return { steps, skipped };
}

const counters = (m: Model) => {
  const s = m.stats();
  return { steps: Number(s.merge_steps), skipped: Number(s.merge_skipped) };
};

for (const [ci, c] of CASES.entries()) {
  test(`${c.name}: batched merge prompts == fused prefill, close to token-wise, correct merges after them`, async () => {
    const dir = path.join(tmp, `case${ci}`);
    fs.mkdirSync(dir);
    const DT: StDtype = c.dtype === 'f16' ? 'F16' : 'F32';
    const ref = c.dtype === 'f16' ? RefModel.load(info.dir, { roundWeights: DT }) : RefModel.load(info.dir);
    const { specs, refs } = c.make(dir, ref, c.dtype === 'f16' ? DT : undefined);
    const out = path.join(dir, 'model.lsw');
    await convertModel(info.dir, out, { dtype: c.dtype, adapters: specs });
    const V = info.vocabSize;

    // the scenario: a batched prompt ending with X, single tokens X Y Y, a batched segment ending with Z, single Z Y,
    // a batched segment ending with W, single Y W.  With a router on the q input a token's experts are those of the
    // same token anywhere: the first X must merge (nothing is merged after a reset, whatever the prompt's last token
    // was), the Z after the segment must merge (Y is merged, not the segment's Z), the Y after the third segment must
    // be skipped (Y is merged) and still see Y's weights.
    const X = PROMPT[PROMPT.length - 1];
    const [Y, Z, W] = [5, 77, 46];
    const segments: number[][] = [PROMPT, [X], [Y], [Y], [9, 33, 260, Z], [Z], [Y], [44, 2, W], [Y], [W]];
    const seq = segments.flat();
    const single: boolean[] = segments.flatMap((s) => s.map(() => s.length === 1));
    const mergedPos = single.flatMap((s, t) => (s ? [t] : []));

    const want = ref.forward(seq, refs);  // unmerged: fused mode, and the batched prompt positions
    const wantMixed = ref.forward(seq, refs, { mergeRound: DT, mergeAt: (t) => single[t] });
    const wantMerged = ref.forward(seq, refs, { mergeRound: DT });  // token-wise merge mode: every position merged
    assert.ok(relErr(flat(want.logits), flat(ref.forward(seq).logits)) > 1e-2, 'the adapters change the logits');
    const mixedVsAll = Math.max(...mergedPos.map((t) => relErr(wantMixed.logits[t], wantMerged.logits[t])));
    assert.ok(mixedVsAll > 0, 'the batched segments change the merged positions (their KV rows differ)');

    const load = (mode: ModeName, mergePrompt: MergePromptName) => Model.load(out, { backend: 'cpu', mode, threads: 2, mergePrompt });
    const run = (m: Model) => {
      m.reset();
      const before = counters(m);
      const got: Float32Array[] = [];
      const deltas: { steps: number; skipped: number }[] = [];
      for (const s of segments) {
        const c0 = counters(m);
        got.push(...rows(m.eval(s, true), V));
        const c1 = counters(m);
        deltas.push({ steps: c1.steps - c0.steps, skipped: c1.skipped - c0.skipped });
      }
      const after = counters(m);
      return { got, deltas, total: { steps: after.steps - before.steps, skipped: after.skipped - before.skipped } };
    };

    const tw = await load('merge', 'tokenwise');
    const bt = await load('merge', 'batched');
    const fu = await load('fused', 'batched');
    try {
      assert.is(tw.mergePrompt, 'tokenwise');
      assert.is(bt.mergePrompt, 'batched');
      // the first batched prompt is fused mode's prefill, bit for bit (same delta path, same KV), routes too
      const pb = bt.eval(PROMPT, true);
      const pf = fu.eval(PROMPT, true);
      assert.ok(pb.every((x, i) => Object.is(x, pf[i])), 'batched merge prompt == fused prompt, bit for bit');
      assert.equal(routeRows(bt, PROMPT.length), routeRows(fu, PROMPT.length), 'batched merge prompt routes == fused ones');
      assert.equal(counters(bt), { steps: 0, skipped: 0 }, 'a batched prompt merges nothing and counts nothing');
      // fused mode ignores merge_prompt
      const fu2 = await load('fused', 'tokenwise');
      try {
        const p2 = fu2.eval(PROMPT, true);
        assert.ok(p2.every((x, i) => Object.is(x, pf[i])), 'fused mode: merge_prompt changes nothing');
      } finally {
        fu2.free();
      }

      const B = run(bt);
      const T = run(tw);
      // batched: the prompt positions as fused (unmerged reference), the single tokens merged
      assertLogitsClose(B.got, wantMixed.logits, c.tol, `${c.name}: batched scenario vs the reference merging the single tokens`);
      // the first segment saw no merged position: it is the unmerged (fused) reference
      assertLogitsClose(B.got.slice(0, PROMPT.length), want.logits.slice(0, PROMPT.length), c.tol, `${c.name}: batched prompt vs the unmerged reference`);
      // token-wise: every position merged (today's behaviour), and close to batched
      assertLogitsClose(T.got, wantMerged.logits, c.tol, `${c.name}: token-wise scenario vs the merged reference`);
      const twErr = assertLogitsClose(B.got, T.got, c.twTol, `${c.name}: batched vs token-wise`);
      // a wrong skip (stale weights: the bare backbone or another token's experts) is far outside these tolerances:
      // the adapters' effect on the logits is at least ten times the batched / token-wise difference
      assert.ok(relErr(flat(want.logits), flat(ref.forward(seq).logits)) > 10 * twErr, `adapter effect vs batched/token-wise ${twErr}`);

      // routes: both equal the reference (experts exactly, gates within GATE_TOL); pre-gated/static: batched ==
      // token-wise (the router's input is computed before any merged weight on both paths)
      const rb = routeRows(bt, seq.length);
      const rt = routeRows(tw, seq.length);
      const routed = bt.adapters.filter((a) => a.router_kind !== 'static');
      const refRouted = refs.flatMap((r, i) => (r.kind === 'peft' ? [] : [{ r, i }]));
      assert.is(routed.length, refRouted.length, 'routed adapters');
      for (const a of bt.adapters.filter((x) => x.router_kind === 'static'))
        assert.ok(rb.experts[a.id].every((e) => e.every((x) => x === 0)) && rb.gates[a.id].every((g) => g.every((x) => x === 1)), 'static routes');
      routed.forEach((a, j) => {
        const { r, i: ri } = refRouted[j];
        for (let t = 0; t < seq.length; t++) {
          const rec = want.routes[ri][t];
          const we = rec.experts.flat();
          const wg = rec.gates.flat();
          assert.is(we.length, a.rows * r.topK);
          assert.equal(rb.experts[a.id][t], we, `batched: adapter ${a.id} position ${t} experts`);
          assert.equal(rt.experts[a.id][t], we, `token-wise: adapter ${a.id} position ${t} experts`);
          wg.forEach((g, k) => {
            assert.ok(Math.abs(rb.gates[a.id][t][k] - g) <= GATE_TOL, `batched: adapter ${a.id} position ${t} gate ${k}`);
            assert.ok(Math.abs(rt.gates[a.id][t][k] - g) <= GATE_TOL, `token-wise: adapter ${a.id} position ${t} gate ${k}`);
          });
        }
      });
      if (c.sameRoutes) {
        assert.equal(rb.experts, rt.experts, 'pre-gated: batched experts == token-wise');
        for (let i = 0; i < rb.gates.length; i++)
          for (let t = 0; t < seq.length; t++)
            rb.gates[i][t].forEach((g, k) => assert.ok(Math.abs(g - rt.gates[i][t][k]) <= 1e-6, `pre-gated: gate ${i}/${t}/${k}: ${g} vs ${rt.gates[i][t][k]}`));
      }

      // counters: batched segments count nothing; the single tokens exactly as a merge keyed on the working weights
      segments.forEach((s, i) => {
        if (s.length > 1) assert.equal(B.deltas[i], { steps: 0, skipped: 0 }, `batched segment ${i} counted`);
      });
      assert.equal(B.total, expectedCounters(bt, mergedPos, seq.length), `${c.name}: batched merge counters`);
      assert.equal(T.total, expectedCounters(tw, seq.map((_, t) => t), seq.length), `${c.name}: token-wise merge counters (every position)`);
      if (c.tokenRouted) {
        // the scenario's premises: the skip decisions above really were made on equal / different experts
        const e = rb.experts[0];
        const at = (s: number) => segments.slice(0, s).reduce((n, x) => n + x.length, 0);  // first position of segment s
        assert.equal(e[at(1)], e[at(1) - 1], 'X after the prompt ending with X: same experts');
        assert.equal(e[at(5)], e[at(5) - 1], 'Z after the segment ending with Z: same experts');
        assert.not.equal(e[at(5)], e[at(4) - 1], 'Z differs from the merged Y');
        assert.equal(e[at(8)], e[at(6)], 'Y after the third segment: Y is merged');
        assert.not.equal(e[at(8)], e[at(8) - 1], '... and differs from the segment\'s last token');
        // which single tokens merged: X, Y, (Y skipped), Z, Y, (Y skipped), W
        const lastMerged = expectedCounters(bt, [at(8)], seq.length);
        assert.equal(lastMerged, { steps: 1, skipped: 0 });
        assert.equal(B.deltas[8], { steps: 0, skipped: 1 }, 'the Y after the third segment is skipped');
        assert.equal(B.deltas[1], { steps: 1, skipped: 0 }, 'the X after the first prompt merges');
        assert.equal(B.deltas[5], { steps: 1, skipped: 0 }, 'the Z after the second segment merges');
      }

      // greedy continuation: the same tokens in both ways (and the reference's, on f32 weights)
      const g = ref.greedy(PROMPT, GEN, refs);
      assert.ok(g.minMargin > 1e-2, `fixture has a near tie (${g.minMargin}); change its seed`);
      const gb = await greedy(bt, PROMPT, GEN);
      const gt = await greedy(tw, PROMPT, GEN);
      assert.equal(gb, gt, 'batched greedy == token-wise greedy');
      assert.equal(gb, g.tokens, 'greedy == the reference');
    } finally {
      tw.free();
      bt.free();
      fu.free();
    }
  });
}

test('MixLoRA top_k 2: merge mode stays refused with batched prompts', async () => {
  const d = path.join(tmp, 'mix2');
  const a = makeMixLoraAdapter(path.join(d, 'a'), info, { numExperts: 4, topK: 2, targetModules: MLP_MODULES, seed: 13 }).dir;
  const out = path.join(d, 'm.lsw');
  await convertModel(info.dir, out, { dtype: 'f32', adapters: [{ path: a }] });
  let err: unknown;
  try { (await Model.load(out, { backend: 'cpu', mode: 'merge', mergePrompt: 'batched', threads: 1 })).free(); } catch (e) { err = e; }
  assert.instance(err, NativeUnsupportedError);
  assert.match((err as Error).message, /merge mode cannot represent MixLoRA/);
  const m = await Model.load(out, { backend: 'cpu', mode: 'fused', mergePrompt: 'batched', threads: 1 });
  try {
    assert.throws(() => m.setMode('merge'), (e: unknown) => e instanceof NativeUnsupportedError);
    m.eval(PROMPT, false);  // fused: fine
  } finally {
    m.free();
  }
});

test('the config struct carries merge_prompt (tokenwise = 0 by default, batched = 1); the engine rejects other values', () => {
  const c = presetConfig('tiny', 'f16');
  assert.is(engineConfigStruct(c, 'cpu', 16, 1).merge_prompt, 0);
  assert.is(engineConfigStruct(c, 'cpu', 16, 1, 0, 'precise', 'batched').merge_prompt, 1);
  assert.equal(MERGE_PROMPT, { tokenwise: 0, batched: 1 });
  assert.is(checkMergePrompt(undefined), 'tokenwise');
  assert.is(checkMergePrompt('batched'), 'batched');
  assert.throws(() => checkMergePrompt('chunked'), (e: unknown) => e instanceof UserError && /--merge-prompt: unknown value "chunked" \(tokenwise or batched\)/.test((e as Error).message));
  const native = getNative();
  for (const bad of [2, -1]) {
    const o: unknown[] = [null];
    assert.throws(() => native.call('lsw_model_create', { ...engineConfigStruct(c, 'cpu', 16, 1), merge_prompt: bad }, o),
      (e: unknown) => e instanceof NativeInvalidArgumentError && new RegExp(`unknown merge_prompt ${bad} \\(0 tokenwise, 1 batched\\)`).test((e as Error).message), `merge_prompt ${bad}`);
  }
});

function cli(args: string[]) {
  return runCli(args, tmp, { env: { CI: 'true' } });
}

function oneLineError(r: CliResult, re: RegExp): void {
  assertOneLineError(r, re);
}

test('generate --merge-prompt: recorded in --json, batched gives the token-wise greedy tokens; a bad value is one line', async () => {
  const a = makeLoraSwitchAdapter(path.join(tmp, 'gen', 'a'), info, { numExperts: 4, topK: 2, seed: 42 }).dir;
  const lsw = path.join(tmp, 'gen', 'm.lsw');
  await convertModel(info.dir, lsw, { dtype: 'f32', adapters: [{ path: a }] });
  const args = ['generate', '-m', lsw, '-p', 'hello world again', '--max-tokens', '6', '--temperature', '0', '--ignore-eos', '--backend', 'cpu', '--threads', '1', '--mode', 'merge', '--json'];
  const t = cli(args);
  const b = cli([...args, '--merge-prompt', 'batched']);
  assert.is(t.code, 0, t.stderr);
  assert.is(b.code, 0, b.stderr);
  const jt = JSON.parse(t.stdout);
  const jb = JSON.parse(b.stdout);
  assert.is(jt.merge_prompt, 'tokenwise');
  assert.is(jb.merge_prompt, 'batched');
  assert.is(jb.mode, 'merge');
  assert.ok(jb.prompt_tokens > 1);
  assert.is(jb.tokens.length, 6);
  assert.equal(jb.tokens, jt.tokens);
  oneLineError(cli(['generate', '-m', lsw, '-p', 'hi', '--merge-prompt', 'chunked']), /--merge-prompt.*chunked.*tokenwise, batched/);
});

test('bench --merge-prompt: flags, protocol.merge_prompt, the text protocol line; a bad value is one line', () => {
  const o = parseBenchFlags({ preset: 'tiny', backend: 'cpu', command: 'x' });
  assert.is(o.mergePrompt, 'tokenwise', 'tokenwise by default');
  assert.is(parseBenchFlags({ preset: 'tiny', backend: 'cpu', mergePrompt: 'batched', command: 'x' }).mergePrompt, 'batched');
  assert.throws(() => parseBenchFlags({ preset: 'tiny', backend: 'cpu', mergePrompt: 'all' }), /--merge-prompt: unknown value "all" \(tokenwise or batched\)/);
  const out = path.join(tmp, 'bench.json');
  const base = ['bench', '--backend', 'cpu', '--preset', 'tiny', '--prompt-tokens', '9', '--new-tokens', '3', '--repetitions', '1', '--warmup', '0', '--threads', '1', '--modes', 'merge,fused'];
  const r = cli([...base, '--merge-prompt', 'batched', '--json', '--out', out]);
  assert.is(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout);
  assert.is(d.protocol.merge_prompt, 'batched');
  assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).protocol.merge_prompt, 'batched');
  assert.ok(d.results.every((x: { error?: string; ttft_ms: number }) => !x.error && x.ttft_ms > 0), JSON.stringify(d.results));
  const txt = cli(base);
  assert.is(txt.code, 0, txt.stderr);
  assert.match(txt.stdout, /^protocol batch 1, prompt 9, 3 new tokens, warm-up 0, 1 repetitions, interleaved, precise prefill, f16 KV cache, random decode tokens$/m);
  const bt = cli([...base, '--merge-prompt', 'batched']);
  assert.is(bt.code, 0, bt.stderr);
  assert.match(bt.stdout, /^protocol .*, precise prefill, f16 KV cache, batched merge-mode prompt, random decode tokens$/m);
  oneLineError(cli(['bench', '--preset', 'tiny', '--backend', 'cpu', '--merge-prompt', 'all']), /--merge-prompt.*all.*tokenwise, batched/);
});

test.run();

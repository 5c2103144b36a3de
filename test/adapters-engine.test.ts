// Adapters end to end through the native engine (issue 3): `convert --adapter` -> .lsw -> Model.load in each
// execution mode (merge, unfused, fused) against the independent fp64 reference (test/helpers/reference.ts) run on
// the original adapter folders. For every case and mode: all-position logits (rel <= 1e-5 with f32 weights), the
// routes of every position, prefill == token by token, greedy tokens identical to the reference (hence across
// modes). Also: adapters given at load time (plain .lsw and HF folder), lsw.adapters metadata, `generate --trace`
// content, and bad adapter input through the CLI.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertModel } from '../src/core/convert.js';
import { Model, type ModeName } from '../src/core/model.js';
import { generate, AbortFlag } from '../src/core/generate.js';
import { getNative } from '../src/core/native/abi.js';
import { NativeUnsupportedError } from '../src/core/errors.js';
import { readTrace } from '../src/core/trace.js';
import { readSafetensors } from '../src/core/safetensors.js';
import {
  makeTinyCheckpoint, makeLoraSwitchAdapter, makePeftLoraAdapter, makeMixLoraAdapter, ATTN_MODULES, MLP_MODULES,
  type CheckpointInfo,
} from './helpers/checkpoint.js';
import { RefModel, relErr, flat, type RefAdapter, type RouteRecord } from './helpers/reference.js';
import { assertLogitsClose, rows, greedy } from './helpers/compare.js';
import { runCli, assertOneLineError, type CliResult } from './helpers/cli.js';

const TOL = 1e-5;
const GATE_TOL = 1e-5;
const GEN = 8;
const MODES: ModeName[] = ['merge', 'unfused', 'fused'];
const PROMPT = [1, 72, 101, 108, 258, 119, 111, 260, 275, 46, 200, 17];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-adeng-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const bases: Record<'llama' | 'qwen', { info: CheckpointInfo; ref: RefModel; lsw: string }> = {} as never;
for (const [name, opts] of [
  ['llama', { arch: 'llama', hidden: 48, heads: 4, kvHeads: 2, headDim: 16, dtype: 'f32', seed: 3 }],
  ['qwen', { arch: 'qwen2', hidden: 48, heads: 4, kvHeads: 2, dtype: 'f32', seed: 4 }],
] as const) {
  const info = makeTinyCheckpoint(path.join(tmp, name), opts);
  const lsw = path.join(tmp, `${name}.lsw`);
  await convertModel(info.dir, lsw, { dtype: 'f32' });
  bases[name] = { info, ref: RefModel.load(info.dir), lsw };
}

interface Case {
  name: string;
  base: 'llama' | 'qwen';
  /** adapter folders + scales, and the reference adapters read from the same folders */
  make: (dir: string, info: CheckpointInfo, ref: RefModel) => { specs: { path: string; scale: number }[]; refs: RefAdapter[] };
}

const CASES: Case[] = [
  {
    name: 'LoRA-Switch E=4 top_k=2 all-linear',
    base: 'llama',
    make: (d, info, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 4, topK: 2, seed: 42 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadLoraSwitch(a)] };
    },
  },
  {
    name: 'LoRA-Switch E=3 top_k=1 attention-only',
    base: 'qwen',
    make: (d, info, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 3, topK: 1, targetModules: ATTN_MODULES, seed: 31 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadLoraSwitch(a)] };
    },
  },
  {
    name: 'LoRA-Switch E=8 top_k=3 MLP-only (router reads the MLP input), scale 0.5',
    base: 'llama',
    make: (d, info, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 8, topK: 3, targetModules: MLP_MODULES, seed: 83 }).dir;
      const r = ref.loadLoraSwitch(a);
      for (const list of r.experts.values()) for (const p of list) p.scaling *= 0.5;
      return { specs: [{ path: a, scale: 0.5 }], refs: [r] };
    },
  },
  {
    name: 'LoRA-Switch E=2 top_k=2 v_proj+down_proj',
    base: 'qwen',
    make: (d, info, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 2, topK: 2, targetModules: ['v_proj', 'down_proj'], seed: 22 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadLoraSwitch(a)] };
    },
  },
  {
    name: 'PEFT all-linear, rsLoRA, rank/alpha patterns',
    base: 'qwen',
    make: (d, info, ref) => {
      const a = makePeftLoraAdapter(path.join(d, 'a'), info, {
        targetModules: 'all-linear', useRslora: true, r: 4, alpha: 16,
        rankPattern: { 'layers.1.self_attn.v_proj': 2, down_proj: 6 }, alphaPattern: { o_proj: 3 }, seed: 2,
      }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadPeft(a, 1)] };
    },
  },
  {
    name: 'PEFT two adapters with scales 0.7 and -0.4',
    base: 'llama',
    make: (d, info, ref) => {
      const a = makePeftLoraAdapter(path.join(d, 'a'), info, { targetModules: ['q_proj', 'v_proj'], seed: 6 }).dir;
      const b = makePeftLoraAdapter(path.join(d, 'b'), info, { targetModules: ['v_proj', 'down_proj'], seed: 7, r: 3, alpha: 5 }).dir;
      return { specs: [{ path: a, scale: 0.7 }, { path: b, scale: -0.4 }], refs: [ref.loadPeft(a, 0.7), ref.loadPeft(b, -0.4)] };
    },
  },
  {
    name: 'LoRA-Switch + PEFT together (pre-gated + static)',
    base: 'llama',
    make: (d, info, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 4, topK: 2, targetModules: ['q_proj', 'o_proj', 'up_proj'], seed: 5 }).dir;
      const b = makePeftLoraAdapter(path.join(d, 'b'), info, { targetModules: ['k_proj', 'gate_proj'], seed: 8 }).dir;
      return { specs: [{ path: a, scale: 1 }, { path: b, scale: 0.8 }], refs: [ref.loadLoraSwitch(a), ref.loadPeft(b, 0.8)] };
    },
  },
  {
    name: 'two LoRA-Switch adapters (routers on the attention input and on the MLP input) + PEFT',
    base: 'qwen',
    make: (d, info, ref) => {
      const a = makeLoraSwitchAdapter(path.join(d, 'a'), info, { numExperts: 3, topK: 2, targetModules: ['k_proj', 'o_proj', 'down_proj'], seed: 71 }).dir;
      const b = makeLoraSwitchAdapter(path.join(d, 'b'), info, { numExperts: 5, topK: 1, targetModules: ['up_proj', 'down_proj'], seed: 72 }).dir;
      const c = makePeftLoraAdapter(path.join(d, 'c'), info, { targetModules: ['q_proj', 'down_proj'], seed: 73 }).dir;
      return { specs: [{ path: a, scale: 1 }, { path: b, scale: 1.5 }, { path: c, scale: 1 }], refs: [ref.loadLoraSwitch(a), scaled(ref.loadLoraSwitch(b), 1.5), ref.loadPeft(c, 1)] };
    },
  },
  {
    name: 'MixLoRA E=4 top_k=2 (layer-wise routers, whole-FFN experts, attention LoRA)',
    base: 'qwen',
    make: (d, info, ref) => {
      const a = makeMixLoraAdapter(path.join(d, 'a'), info, { numExperts: 4, topK: 2, seed: 13 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadMixLora(a)] };
    },
  },
  {
    name: 'MixLoRA E=3 top_k=1 MLP-only',
    base: 'llama',
    make: (d, info, ref) => {
      const a = makeMixLoraAdapter(path.join(d, 'a'), info, { numExperts: 3, topK: 1, targetModules: MLP_MODULES, seed: 9 }).dir;
      return { specs: [{ path: a, scale: 1 }], refs: [ref.loadMixLora(a)] };
    },
  },
];

function scaled<T extends RefAdapter>(a: T, s: number): T {
  if (a.kind === 'lora-switch') for (const list of a.experts.values()) for (const p of list) p.scaling *= s;
  return a;
}

/** Engine routes of positions [0, n) of every routed adapter, in adapter order, as reference-style records. */
function engineRoutes(model: Model, n: number): RouteRecord[][] {
  const out: RouteRecord[][] = [];
  for (const a of model.adapters) {
    if (a.router_kind === 'static') continue;
    const r = model.routes(a.id, 0, n);
    const recs: RouteRecord[] = [];
    for (let t = 0; t < n; t++) {
      const rec: RouteRecord = { experts: [], gates: [] };
      for (let row = 0; row < r.rows; row++) {
        const o = (t * r.rows + row) * r.topK;
        rec.experts.push(Array.from(r.experts.subarray(o, o + r.topK)));
        rec.gates.push(Array.from(r.gates.subarray(o, o + r.topK)));
      }
      recs.push(rec);
    }
    out.push(recs);
  }
  return out;
}

/** Routes of the routed reference adapters (in order). */
function refRoutes(refs: RefAdapter[], routes: RouteRecord[][]): RouteRecord[][] {
  return refs.flatMap((a, i) => (a.kind === 'peft' ? [] : [routes[i]]));
}

function assertRoutes(got: RouteRecord[][], want: RouteRecord[][], label: string): void {
  assert.is(got.length, want.length, `${label}: routed adapters`);
  for (let a = 0; a < want.length; a++) {
    assert.is(got[a].length, want[a].length, `${label}: adapter ${a} positions`);
    for (let t = 0; t < want[a].length; t++) {
      assert.equal(got[a][t].experts, want[a][t].experts, `${label}: adapter ${a} position ${t} experts`);
      want[a][t].gates.forEach((row, r) => row.forEach((g, k) => {
        const e = Math.abs(got[a][t].gates[r][k] - g);
        assert.ok(e <= GATE_TOL, `${label}: adapter ${a} position ${t} row ${r} gate ${k}: ${got[a][t].gates[r][k]} vs ${g}`);
      }));
    }
  }
}

for (const [ci, c] of CASES.entries()) {
  test(`${c.name}: every mode matches the fp64 reference (logits, routes, greedy), prefill == token by token`, async () => {
    const { info, ref } = bases[c.base];
    const dir = path.join(tmp, `case${ci}`);
    fs.mkdirSync(dir);
    const { specs, refs } = c.make(dir, info, ref);
    const out = path.join(dir, 'model.lsw');
    await convertModel(info.dir, out, { dtype: 'f32', adapters: specs });

    const g = ref.greedy(PROMPT, GEN, refs);
    assert.ok(g.minMargin > 1e-3, `fixture has a near tie (${g.minMargin}); change its seed`);
    const seq = [...PROMPT, ...g.tokens.slice(0, 5)];
    const want = ref.forward(seq, refs);
    const wantRoutes = refRoutes(refs, want.routes);
    // merge mode runs every token -- prompt tokens too -- with merged weights rounded once to the weight dtype
    // (FORMAT.md "SGMM arithmetic"): its reference merges the same way
    const wantMerged = ref.forward(seq, refs, { mergeRound: 'F32' });
    const mergeable = refs.some((a) => a.kind !== 'mixlora' || a.attn.size > 0);
    if (mergeable) assert.ok(relErr(flat(wantMerged.logits), flat(want.logits)) > 0, 'merged-weight rounding is visible');
    // the adapters matter: the bare model's logits differ
    assert.ok(relErr(flat(want.logits), flat(ref.forward(seq).logits)) > 1e-3, 'the adapters change the logits');

    const tokensByMode: number[][] = [];
    for (const mode of MODES) {
      if (mode === 'merge' && refs.some((a) => a.kind === 'mixlora' && a.topK > 1)) {
        // a gated sum of FFNs is not one FFN: the engine refuses merge mode (lsw.h, FORMAT.md)
        let err: unknown;
        try { (await Model.load(out, { backend: 'cpu', mode, threads: 2 })).free(); } catch (e) { err = e; }
        assert.instance(err, NativeUnsupportedError, 'merge mode with MixLoRA top_k > 1 is refused');
        assert.match((err as Error).message, /merge mode cannot represent MixLoRA/);
        continue;
      }
      const model = await Model.load(out, { backend: 'cpu', mode, threads: 2 });
      try {
        assert.is(model.mode, mode);
        const label = `${c.name} [${mode}]`;
        // prefill of the whole sequence
        const wantMode = mode === 'merge' ? wantMerged.logits : want.logits;
        const batch = rows(model.eval(seq, true), info.vocabSize);
        assertLogitsClose(batch, wantMode, TOL, `${label} prefill`);
        assertRoutes(engineRoutes(model, seq.length), wantRoutes, `${label} prefill routes`);
        // the same positions one token at a time (the decode path: merge mode merges per token)
        model.reset();
        const single: Float32Array[] = [];
        for (const t of seq) single.push(Float32Array.from(model.eval([t], false)));
        assertLogitsClose(single, wantMode, TOL, `${label} token by token`);
        // prefill == token by token (merge mode: a prompt runs token by token through the merged weights, so bit for bit)
        assertLogitsClose(single, batch.map((x) => Float64Array.from(x)), mode === 'merge' ? 0 : TOL, `${label} token by token vs prefill`);
        assertRoutes(engineRoutes(model, seq.length), wantRoutes, `${label} token-by-token routes`);
        // chunked prefill: the routing history continues across chunks
        model.reset();
        const chunks = [...rows(model.eval(seq.slice(0, 5), true), info.vocabSize), ...rows(model.eval(seq.slice(5, 11), true), info.vocabSize), ...rows(model.eval(seq.slice(11), true), info.vocabSize)];
        assertLogitsClose(chunks, wantMode, TOL, `${label} chunked prefill`);
        if (mode === 'merge') assertLogitsClose(chunks, batch.map((x) => Float64Array.from(x)), 0, `${label} chunked prefill vs prefill`);
        assertRoutes(engineRoutes(model, seq.length), wantRoutes, `${label} chunked routes`);
        // greedy generation
        const toks = await greedy(model, PROMPT, GEN);
        assert.equal(toks, g.tokens, `${label} greedy tokens`);
        tokensByMode.push(toks);
        const st = model.stats();
        const routed = model.adapters.some((a) => a.router_kind !== 'static');
        // MixLoRA's whole-FFN experts cannot be merged into one weight (a gated sum of FFNs): they stay deltas
        const mergeableAds = model.adapters.some((a) => a.router_kind !== 'layerwise' || a.top_k === 1);
        if (mode === 'merge' && mergeableAds) {
          assert.ok(Number(st.merge_steps) > 0, `${label}: merge mode ran SGMM steps (${st.merge_steps})`);
          if (!routed) assert.ok(Number(st.merge_skipped) > 0, `${label}: static adapters merge once, then skip (${st.merge_skipped})`);
        } else {
          assert.is(Number(st.merge_steps), 0, `${label}: no SGMM outside merge mode`);
        }
      } finally {
        model.free();
      }
    }
    assert.ok(tokensByMode.length >= 2);
    for (const t of tokensByMode) assert.equal(t, tokensByMode[0]);
  });
}

for (const dtype of ['bf16', 'f16'] as const) {
  test(`${dtype} model + LoRA-Switch + PEFT: every mode matches the reference with ${dtype}-rounded weights and adapters`, async () => {
    const { info } = bases.llama;
    const DT = dtype === 'bf16' ? 'BF16' : 'F16';
    const d = path.join(tmp, `round-${dtype}`);
    const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 4, topK: 2, targetModules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'], seed: 61 }).dir;
    const b = makePeftLoraAdapter(path.join(d, 'st'), info, { targetModules: ['o_proj'], seed: 62 }).dir;
    const out = path.join(d, 'm.lsw');
    await convertModel(info.dir, out, { dtype, adapters: [{ path: a }, { path: b, scale: 0.5 }] });
    const ref = RefModel.load(info.dir, { roundWeights: DT });
    const refs: RefAdapter[] = [ref.loadLoraSwitch(a, { foldRound: DT }), ref.loadPeft(b, 0.5, { foldRound: DT })];
    const seq = [...PROMPT, 5, 9, 77];
    const want = ref.forward(seq, refs);
    const wantMerged = ref.forward(seq, refs, { mergeRound: DT });
    // the weight-dtype rounding of merged weights is large: merge mode needs its own reference
    assert.ok(relErr(flat(wantMerged.logits), flat(want.logits)) > 10 * TOL, 'merged rounding is visible');
    for (const mode of MODES) {
      const model = await Model.load(out, { backend: 'cpu', mode, threads: 2 });
      try {
        // merge mode: the prompt runs token by token through the merged (dtype-rounded) weights too
        const batch = rows(model.eval(seq, true), info.vocabSize);
        assertLogitsClose(batch, mode === 'merge' ? wantMerged.logits : want.logits, mode === 'merge' ? 1e-4 : TOL, `${dtype} ${mode} prefill`);
        assertRoutes(engineRoutes(model, seq.length), refRoutes(refs, want.routes), `${dtype} ${mode} routes`);
        model.reset();
        const single = seq.map((t) => Float32Array.from(model.eval([t], false)));
        assertLogitsClose(single, mode === 'merge' ? wantMerged.logits : want.logits, mode === 'merge' ? 1e-4 : TOL, `${dtype} ${mode} token by token`);
        // prefill == token by token: bit for bit in merge mode (the same per-token merged path), TOL otherwise
        assertLogitsClose(single, batch.map((x) => Float64Array.from(x)), mode === 'merge' ? 0 : TOL, `${dtype} ${mode} token by token vs prefill`);
        if (mode === 'merge') {
          // with the engine's own fp32 gates the merged weights are reproduced bit for bit (FORMAT.md SGMM
          // arithmetic), so the reference agrees to fp32 precision again
          const eng = engineRoutes(model, seq.length)[0];
          const forced = ref.forward(seq, refs, { mergeRound: DT, forceRoutes: [eng.map((r) => ({ experts: r.experts[0], gates: r.gates[0] }))] });
          assertLogitsClose(single, forced.logits, TOL, `${dtype} merge token by token, engine gates`);
        }
      } finally {
        model.free();
      }
    }
  });
}

test('convert --adapter: lsw.adapters metadata (FORMAT.md) and adapter tensors in the model dtype', async () => {
  const { info } = bases.qwen;
  const d = path.join(tmp, 'meta');
  const ls = makeLoraSwitchAdapter(path.join(d, 'switch'), info, { numExperts: 3, topK: 2, targetModules: ['q_proj', 'down_proj'], seed: 1 }).dir;
  const peft = makePeftLoraAdapter(path.join(d, 'style'), info, { targetModules: ['v_proj'], seed: 2 }).dir;
  const mix = makeMixLoraAdapter(path.join(d, 'mix'), info, { numExperts: 4, topK: 2, seed: 3 }).dir;
  const out = path.join(d, 'm.lsw');
  const r = await convertModel(info.dir, out, { dtype: 'bf16', adapters: [{ path: ls }, { path: peft, scale: 0.25 }, { path: mix }] });
  const st = readSafetensors(out);
  assert.is(st.metadata.format_version, '2', 'a file with adapters (lora_scale tensors) is format version 2');
  const metas = JSON.parse(st.metadata['lsw.adapters']);
  assert.equal(metas, r.adapters);
  assert.equal(metas.map((m: any) => [m.name, m.peft_type, m.router_kind, m.num_experts, m.top_k, m.router_input, m.ffn_experts, m.scale]), [
    ['switch', 'LORA_SWITCH', 'pregated', 3, 2, 'self_attn.q_proj', false, 1],
    ['style', 'LORA', 'static', 1, 1, null, false, 0.25],
    ['mix#experts', 'MIXLORA', 'layerwise', 4, 2, 'mlp.gate_proj', true, 1],
    ['mix#attn', 'MIXLORA', 'static', 1, 1, null, false, 1],
  ]);
  for (const m of metas) for (const k of ['name', 'source', 'peft_type', 'router_kind', 'num_experts', 'top_k', 'router_input', 'ffn_experts', 'target_modules', 'scale']) assert.ok(k in m, `lsw.adapters entry has ${k}`);
  assert.equal(metas[0].target_modules, ['q_proj', 'down_proj']);
  const names = [...st.tensors.keys()].filter((n) => n.startsWith('adapters.'));
  assert.ok(names.includes('adapters.0.router.weight'));
  assert.ok(names.includes('adapters.0.layers.1.down.lora_B'));
  assert.ok(names.includes('adapters.1.layers.0.v.lora_A'));
  assert.ok(names.includes('adapters.2.layers.1.router.weight'));
  assert.ok(names.includes('adapters.3.layers.0.q.lora_A'));
  for (const n of names) {
    if (n.endsWith('.lora_scale')) {  // each module's LoRA scaling: one F32 value (FORMAT.md "Adapter tensors")
      assert.is(st.tensors.get(n)!.dtype, 'F32', n);
      assert.equal(st.tensors.get(n)!.shape, [1], n);
    } else assert.is(st.tensors.get(n)!.dtype, 'BF16', `${n} is in the model dtype`);
  }
  assert.ok(names.includes('adapters.1.layers.0.v.lora_scale'));
  assert.equal(st.tensors.get('adapters.0.layers.1.down.lora_A')!.shape, [3, 4, info.moduleShape('down_proj').in]);
  assert.equal(st.tensors.get('adapters.0.layers.1.down.lora_B')!.shape, [3, info.moduleShape('down_proj').out, 4]);
  assert.equal(st.tensors.get('adapters.0.router.weight')!.shape, [3, info.moduleShape('q_proj').in]);
  // every adapter tensor starts aligned (FORMAT.md rule 1)
  for (const n of names) assert.is(st.tensors.get(n)!.start % 256, 0);
});

test('Model.load(path, {adapters}): plain .lsw and HF folder give exactly the converted file\'s logits and routes', async () => {
  const { info, lsw } = bases.llama;
  const d = path.join(tmp, 'loadtime');
  const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 4, topK: 2, seed: 12 }).dir;
  const b = makePeftLoraAdapter(path.join(d, 'pf'), info, { targetModules: ['o_proj', 'up_proj'], seed: 13 }).dir;
  const conv = path.join(d, 'both.lsw');
  await convertModel(info.dir, conv, { dtype: 'f32', adapters: [{ path: a, scale: 1 }, { path: b, scale: 0.5 }] });
  // one adapter in the file, the other at load time: ids continue after the file's
  const half = path.join(d, 'half.lsw');
  await convertModel(info.dir, half, { dtype: 'f32', adapters: [{ path: a }] });
  const before = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`lora-switch-${process.pid}-`)).length;
  const results: { logits: Float32Array; routes: Int32Array; names: string[] }[] = [];
  for (const [p, adapters] of [[conv, []], [lsw, [a, `${b}:0.5`]], [info.dir, [a, { path: b, scale: 0.5 }]], [half, [`${b}:0.5`]]] as const) {
    const m = await Model.load(p, { backend: 'cpu', adapters: adapters as any, mode: 'fused', threads: 2 });
    try {
      assert.is(m.adapters.length, 2);
      const logits = Float32Array.from(m.eval(PROMPT, true));
      results.push({ logits, routes: Int32Array.from(m.routes(0, 0, PROMPT.length).experts), names: m.adapters.map((x) => x.name) });
    } finally {
      m.free();
    }
  }
  for (const r of results.slice(1)) {
    assert.ok(r.logits.every((x, i) => Object.is(x, results[0].logits[i])), 'bit-identical logits');
    assert.equal(Array.from(r.routes), Array.from(results[0].routes));
    assert.equal(r.names, results[0].names);
  }
  // temporary files are gone once mapped
  assert.is(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`lora-switch-${process.pid}-`)).length, before);
  // an input .lsw is never modified
  assert.equal(JSON.parse(readSafetensors(lsw).metadata['lsw.adapters']), []);
});

test('setMode switches between modes on a live model without changing the result', async () => {
  const { info, ref } = bases.llama;
  const d = path.join(tmp, 'setmode');
  const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 4, topK: 2, seed: 14 }).dir;
  const refs = [ref.loadLoraSwitch(a)];
  const m = await Model.load(bases.llama.lsw, { backend: 'cpu', adapters: [a], mode: 'merge', threads: 2 });
  try {
    const want = ref.forward(PROMPT, refs).logits;
    const got: Float32Array[] = [];
    PROMPT.forEach((t, i) => {
      m.setMode(MODES[i % 3]);
      got.push(Float32Array.from(m.eval([t], false)));
    });
    assertLogitsClose(got, want, TOL, 'modes switched per token');
  } finally {
    m.free();
  }
});

async function traceCase(name: string, base: 'llama' | 'qwen', make: (d: string, info: CheckpointInfo, ref: RefModel) => { specs: string[]; refs: RefAdapter[] }, mode: ModeName) {
  const { info, ref, lsw } = bases[base];
  const d = path.join(tmp, `trace-${name}`);
  fs.mkdirSync(d);
  const { specs, refs } = make(d, info, ref);
  const file = path.join(d, 'trace.jsonl');
  const r = await generate({ model: lsw, prompt: 'hello world', maxTokens: 6, temperature: 0, ignoreEos: true, adapters: specs, mode, trace: file, backend: 'cpu', threads: 2 });
  assert.is(r.mode, mode);
  const tr = readTrace(file);
  assert.not.ok(fs.readdirSync(d).some((f) => f.endsWith('.tmp')), 'no temporary file left');
  const m = await Model.load(lsw, { backend: 'cpu', adapters: specs });
  const prompt = m.tokenizer.encode('hello world', true);
  m.free();
  const seq = [...prompt, ...r.tokens];
  assert.is(tr.tokens.length, seq.length, 'one record per prompt and generated token');
  assert.equal(tr.tokens.map((t) => t.token), seq);
  assert.equal(tr.tokens.map((t) => t.pos), seq.map((_, i) => i));
  assert.equal(tr.tokens.map((t) => t.phase), seq.map((_, i) => (i < prompt.length ? 'prompt' : 'generated')));
  // greedy tokens = the reference's, routes of every position = the reference's
  const g = ref.greedy(prompt, 6, refs);
  assert.ok(g.minMargin > 1e-3, `fixture has a near tie (${g.minMargin}); change its seed`);
  assert.equal(r.tokens, g.tokens);
  const want = refRoutes(refs, ref.forward(seq, refs).routes);
  const routedHeader = tr.header.adapters.filter((a) => a.router_kind !== 'static');
  const got: RouteRecord[][] = routedHeader.map((a) => tr.tokens.map((t) => {
    const x = t.routes.find((q) => q.adapter === a.id)!;
    assert.ok(x, `token ${t.pos} has routes of adapter ${a.id}`);
    return a.router_kind === 'layerwise'
      ? { experts: x.experts as number[][], gates: x.gates as number[][] }
      : { experts: [x.experts as number[]], gates: [x.gates as number[]] };
  }));
  assertRoutes(got, want, `trace ${name}`);
  for (const t of tr.tokens) assert.is(t.routes.length, routedHeader.length, 'only routed adapters appear in token records');
  return { r, tr };
}

test('generate --trace (LoRA-Switch + static PEFT, merge): header and one record per token, routes = the reference\'s', async () => {
  const { r, tr } = await traceCase('ls', 'llama', (d, info, ref) => {
    const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 5, topK: 2, seed: 21 }).dir;
    const b = makePeftLoraAdapter(path.join(d, 'st'), info, { targetModules: ['v_proj'], seed: 22 }).dir;
    return { specs: [a, `${b}:0.5`], refs: [ref.loadLoraSwitch(a), ref.loadPeft(b, 0.5)] };
  }, 'merge');
  const h = tr.header;
  assert.is(h.type, 'header');
  assert.is(h.format, 'lora-switch-trace');
  assert.is(h.version, 1);
  assert.is(h.mode, 'merge');
  assert.is(h.backend, 'cpu');
  assert.is(h.model, bases.llama.lsw);
  assert.is(h.num_layers, bases.llama.info.opts.layers);
  assert.equal(h.adapters.map((a) => [a.id, a.name, a.router_kind, a.num_experts, a.top_k, a.router_input, a.rows]), [
    [0, 'sw', 'pregated', 5, 2, 'self_attn.q_proj', 1],
    [1, 'st', 'static', 1, 1, null, 0],
  ]);
  assert.ok(!Number.isNaN(Date.parse(h.created)));
  assert.equal(r.adapters.map((a) => [a.id, a.name, a.router_kind, a.scale]), [[0, 'sw', 'pregated', 1], [1, 'st', 'static', 0.5]]);
  assert.equal(r.trace, { file: path.join(tmp, 'trace-ls', 'trace.jsonl'), tokens: tr.tokens.length });
  // gates are rows summing to 1, text is each token decoded alone
  for (const t of tr.tokens) {
    const g = t.routes[0].gates as number[];
    assert.ok(Math.abs(g.reduce((s, x) => s + x, 0) - 1) < 1e-6);
    assert.type(t.text, 'string');
  }
});

test('generate --trace (MixLoRA, fused): layer-wise records [num_layers][top_k]', async () => {
  const { tr } = await traceCase('mix', 'qwen', (d, info, ref) => {
    const a = makeMixLoraAdapter(path.join(d, 'mx'), info, { numExperts: 4, topK: 2, seed: 23 }).dir;
    return { specs: [a], refs: [ref.loadMixLora(a)] };
  }, 'fused');
  assert.equal(tr.header.adapters.map((a) => [a.name, a.router_kind, a.rows]), [['mx#experts', 'layerwise', bases.qwen.info.opts.layers], ['mx#attn', 'static', 0]]);
  for (const t of tr.tokens) assert.is((t.routes[0].experts as number[][]).length, bases.qwen.info.opts.layers);
});

/** Count native calls by function name while `fn` runs (wraps the loaded library's raw functions). */
async function countCalls<T>(fn: () => Promise<T>): Promise<{ result: T; counts: Map<string, number> }> {
  const raw = getNative().raw as Record<string, any>;
  const saved = { ...raw };
  const counts = new Map<string, number>();
  const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const k of Object.keys(saved)) {
    const f = saved[k];
    const w: any = (...a: unknown[]) => { bump(k); return f(...a); };
    w.async = (...a: unknown[]) => { bump(k); return f.async(...a); };
    raw[k] = w;
  }
  try {
    return { result: await fn(), counts };
  } finally {
    Object.assign(raw, saved);
  }
}

test('generate: decode steps in a few native calls (chunks of 1, 2, 3 steps), none per token; --trace fetches the routes once at the end', async () => {
  const { info, lsw } = bases.llama;
  const d = path.join(tmp, 'calls');
  const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 4, topK: 2, seed: 51 }).dir;
  const b = makePeftLoraAdapter(path.join(d, 'st'), info, { seed: 52 }).dir;
  const opts = { model: lsw, prompt: 'hello world', maxTokens: 7, temperature: 0, ignoreEos: true, adapters: [a, b], mode: 'merge' as const, backend: 'cpu' as const, threads: 2 };
  const plain = await countCalls(() => generate(opts));
  assert.is(plain.result.tokens.length, 7);
  // 6 steps after the prefill's token; chunks double from 1 (1 + 2 + 3), unless a step took over 25 ms
  const calls = plain.counts.get('lsw_model_decode') ?? 0;
  assert.ok(calls >= 1 && calls <= 3, `decode calls: ${calls}`);
  assert.is(plain.counts.get('lsw_model_step'), undefined, 'no call per token');
  assert.is(plain.counts.get('lsw_model_prefill'), 1);
  for (const k of ['lsw_model_get_routes', 'lsw_model_n_past', 'lsw_model_get_logits', 'lsw_model_eval']) assert.is(plain.counts.get(k), undefined, `${k} not called`);
  const traced = await countCalls(() => generate({ ...opts, trace: path.join(d, 't.jsonl') }));
  assert.equal(traced.result.tokens, plain.result.tokens);
  const tcalls = traced.counts.get('lsw_model_decode') ?? 0;
  assert.ok(tcalls >= 1 && tcalls <= 3 && traced.counts.get('lsw_model_step') === undefined, `decode calls: ${tcalls}`);
  assert.is(traced.counts.get('lsw_model_get_routes'), 1, 'one routed adapter, its routes fetched once');
  assert.is(traced.counts.get('lsw_model_eval'), 1, 'the last generated token is evaluated once for its routes');
  assert.is(readTrace(path.join(d, 't.jsonl')).tokens.length, traced.result.prompt_tokens + 7);
});

test('generate --trace stopped early (Ctrl-C): the trace holds the tokens produced so far', async () => {
  const { info, lsw } = bases.qwen;
  const d = path.join(tmp, 'abort');
  const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 3, topK: 2, seed: 53 }).dir;
  const file = path.join(d, 't.jsonl');
  const abort = new AbortFlag();
  const r = await generate(
    { model: lsw, prompt: 'hello world', maxTokens: 50, temperature: 0, ignoreEos: true, adapters: [a], mode: 'fused', trace: file, backend: 'cpu', threads: 2 },
    (s) => { if (s.tokens.length >= 3) abort.abort(); },
    abort,
  );
  assert.is(r.stop_reason, 'interrupted');
  const tr = readTrace(file);
  assert.is(tr.tokens.length, r.prompt_tokens + r.tokens.length);
  assert.equal(tr.tokens.filter((t) => t.phase === 'generated').map((t) => t.token), r.tokens);
});

// ------------------------------------------------------------------------------------------------ CLI

function cli(args: string[]) {
  return runCli(args, tmp);
}

function oneLineError(r: CliResult, re: RegExp): void {
  assertOneLineError(r, re);
}

test('CLI: convert --adapter and generate --adapter --mode --trace --json', () => {
  const { info } = bases.llama;
  const d = path.join(tmp, 'cli-ok');
  const a = makeLoraSwitchAdapter(path.join(d, 'sw'), info, { numExperts: 4, topK: 2, seed: 41 }).dir;
  const out = path.join(d, 'm.lsw');
  const c = cli(['convert', info.dir, '-o', out, '--dtype', 'f32', '--adapter', `${a}:0.9`, '--json']);
  assert.is(c.code, 0, c.stderr);
  const cj = JSON.parse(c.stdout);
  assert.equal(cj.adapters.map((x: any) => [x.name, x.router_kind, x.scale]), [['sw', 'pregated', 0.9]]);
  const trace = path.join(d, 't.jsonl');
  const g = cli(['generate', '-m', out, '-p', 'hello world', '-n', '5', '--temperature', '0', '--ignore-eos', '--mode', 'unfused', '--trace', trace, '--json', '-t', '2']);
  assert.is(g.code, 0, g.stderr);
  const gj = JSON.parse(g.stdout);
  assert.is(gj.mode, 'unfused');
  assert.equal(gj.adapters.map((x: any) => [x.id, x.name, x.peft_type, x.router_kind, x.num_experts, x.top_k, x.scale]), [[0, 'sw', 'LORA_SWITCH', 'pregated', 4, 2, 0.9]]);
  const m = bases.llama.ref;
  const r = m.loadLoraSwitch(a);
  for (const list of r.experts.values()) for (const p of list) p.scaling *= 0.9;
  const tr = readTrace(trace);
  const prompt = tr.tokens.filter((t) => t.phase === 'prompt').map((t) => t.token);
  assert.is(prompt.length, gj.prompt_tokens);
  assert.equal(gj.tokens, m.greedy(prompt, 5, [r]).tokens);
  assert.is(tr.header.mode, 'unfused');
  assert.is(tr.tokens.length, prompt.length + 5);
  // the same adapter given to generate with a plain model: same tokens
  const g2 = cli(['generate', '-m', bases.llama.lsw, '--adapter', `${a}:0.9`, '-p', 'hello world', '-n', '5', '--temperature', '0', '--ignore-eos', '--json', '-t', '2']);
  assert.is(g2.code, 0, g2.stderr);
  const g2j = JSON.parse(g2.stdout);
  assert.equal(g2j.tokens, gj.tokens);
  assert.is(g2j.mode, 'fused', 'default mode');
});

test('CLI: bad adapter input is one line, non-zero exit, no output file', () => {
  const { info } = bases.qwen;
  const d = path.join(tmp, 'cli-bad');
  fs.mkdirSync(d, { recursive: true });
  const out = path.join(d, 'out.lsw');
  const cfgEdit = (dir: string, f: (c: any) => void) => {
    const p = path.join(dir, 'adapter_config.json');
    const c = JSON.parse(fs.readFileSync(p, 'utf8'));
    f(c);
    fs.writeFileSync(p, JSON.stringify(c));
  };
  // base shapes disagree: an adapter made for a wider model
  const other = makeTinyCheckpoint(path.join(d, 'wide'), { arch: 'qwen2', hidden: 64, heads: 4, kvHeads: 2, seed: 5 });
  const wide = makeLoraSwitchAdapter(path.join(d, 'wide-ad'), other, { numExperts: 2, topK: 1, seed: 1 }).dir;
  const topk = makeLoraSwitchAdapter(path.join(d, 'topk'), info, { numExperts: 3, topK: 2, seed: 2 }).dir;
  cfgEdit(topk, (c) => { c.top_k = 4; });
  const unknown = makePeftLoraAdapter(path.join(d, 'unknown'), info, { seed: 3 }).dir;
  cfgEdit(unknown, (c) => { c.peft_type = 'ADALORA'; });
  const missing = makeLoraSwitchAdapter(path.join(d, 'missing'), info, { numExperts: 2, topK: 1, targetModules: ['q_proj'], seed: 4 }).dir;
  cfgEdit(missing, (c) => { c.target_modules = ['q_proj', 'v_proj']; });
  const extra = makeLoraSwitchAdapter(path.join(d, 'extra'), info, { numExperts: 2, topK: 1, targetModules: ['q_proj', 'k_proj'], seed: 6 }).dir;
  cfgEdit(extra, (c) => { c.target_modules = ['q_proj']; });
  const router = makeLoraSwitchAdapter(path.join(d, 'router'), info, { numExperts: 2, topK: 1, targetModules: ['down_proj'], seed: 7 }).dir;
  cfgEdit(router, (c) => { c.router_input = 'self_attn.q_proj'; c.target_modules = ['down_proj']; });
  const good = makePeftLoraAdapter(path.join(d, 'good'), info, { seed: 8 }).dir;
  const cases: Array<[string, RegExp]> = [
    [wide, /wide-ad.*(in_features|out_features|base shapes disagree|router)/],
    [topk, /topk.*top_k 4 is greater than num_experts 3/],
    [unknown, /unknown.*unknown peft_type "ADALORA"/],
    [missing, /missing.*missing expert 0 of layers\.0\.self_attn\.v_proj/],
    [extra, /extra.*extra tensor/],
    [router, /router.*router\.weight is \[2, \d+\] but router_input self_attn\.q_proj has in_features 48/],
    [path.join(d, 'nowhere'), /nowhere: no such adapter folder/],
    [`${good}:half`, /scale "half" is not a number/],
  ];
  for (const [ad, re] of cases) {
    // a good adapter first: nothing of it is written either
    oneLineError(cli(['convert', info.dir, '-o', out, '--adapter', good, '--adapter', ad]), re);
    assert.not.ok(fs.existsSync(out), `no output file for ${ad}`);
    assert.equal(fs.readdirSync(d).filter((f) => f.startsWith('.out.lsw')), [], 'no temporary file');
    const trace = path.join(d, 't.jsonl');
    oneLineError(cli(['generate', '-m', bases.qwen.lsw, '--adapter', ad, '-p', 'hi', '-n', '2', '--trace', trace]), re);
    assert.not.ok(fs.existsSync(trace), `no trace file for ${ad}`);
  }
  oneLineError(cli(['generate', '-m', bases.qwen.lsw, '--adapter', good, '--mode', 'sideways', '-p', 'hi']), /mode/);
  const mix = makeMixLoraAdapter(path.join(d, 'mix'), info, { numExperts: 4, topK: 2, seed: 9 }).dir;
  oneLineError(cli(['generate', '-m', bases.qwen.lsw, '--adapter', mix, '--mode', 'merge', '-p', 'hi', '--trace', path.join(d, 'm.jsonl')]), /merge mode cannot represent MixLoRA.*use --mode fused or unfused/);
  assert.not.ok(fs.existsSync(path.join(d, 'm.jsonl')));
  oneLineError(cli(['generate', '-m', bases.qwen.lsw, '--adapter', good, '-p', 'hi', '--trace', path.join(d, 'no', 'such', 'dir', 't.jsonl')]), /t\.jsonl: folder .* does not exist/);
});

test.run();

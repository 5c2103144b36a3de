// The adapter readers of src/core/adapters (folders -> engine tensors, docs/FORMAT.md) checked end to end against
// the fp64 reference: the engine tensors they produce (scaling in lora_scale, experts stacked, routers mapped) are
// run through the reference forward, interpreted exactly as FORMAT.md says the engine will, and must give the
// logits of the reference run on the original folders. This pins down the conversion semantics (alpha/r,
// rsLoRA, rank/alpha patterns, user scales, expert order, router input, MixLoRA layer-wise FFN experts) before
// and independently of the native engine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readAdapters, type EngineAdapter } from '../src/core/adapters/index.js';
import { readHfConfig } from '../src/core/hf-config.js';
import {
  makeTinyCheckpoint, makeLoraSwitchAdapter, makePeftLoraAdapter, makeMixLoraAdapter, type CheckpointInfo,
} from './helpers/checkpoint.js';
import { RefModel, flat, relErr, type RefAdapter, type RefMixLora, type RefPeft, type LoraPair, type ModuleName } from './helpers/reference.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-adconv-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const PROMPT = [1, 72, 101, 108, 258, 119, 111, 260, 275, 46, 200, 17];
const ENGINE_TO_HF: Record<string, ModuleName> = {
  q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj',
};
const LSW_MODULE: ModuleName[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** Interpret engine adapter tensors (FORMAT.md) as reference adapters: delta = sum_k g_k s B_k (A_k x), s = lora_scale. */
function fromEngine(ad: EngineAdapter): RefAdapter {
  const T = new Map(ad.tensors.map((t) => [t.name, t]));
  const E = ad.desc.num_experts;
  const experts = new Map<string, LoraPair[]>();
  for (const t of ad.tensors) {
    const m = /^layers\.(\d+)\.(\w+)\.lora_A$/.exec(t.name);
    if (!m) continue;
    const B = T.get(`layers.${m[1]}.${m[2]}.lora_B`);
    if (!B) throw new Error(`engine adapter: ${t.name} without lora_B`);
    const S = T.get(`layers.${m[1]}.${m[2]}.lora_scale`);
    if (!S) throw new Error(`engine adapter: ${t.name} without lora_scale`);
    assert.is(S.dtype, 'f32');
    assert.equal(S.shape, [1]);
    const [e, r, inn] = t.shape;
    const [e2, out, r2] = B.shape;
    assert.is(e, E, `${t.name}: experts`);
    assert.is(e2, E);
    assert.is(r2, r);
    const list: LoraPair[] = [];
    for (let k = 0; k < E; k++)
      list.push({
        A: Float64Array.from(t.data.subarray(k * r * inn, (k + 1) * r * inn)),
        B: Float64Array.from(B.data.subarray(k * out * r, (k + 1) * out * r)),
        r, inn, out, scaling: S.data[0],
      });
    experts.set(`${m[1]}.${ENGINE_TO_HF[m[2]]}`, list);
  }
  if (ad.desc.router_kind === 0) {
    assert.is(E, 1);
    return { kind: 'peft', modules: new Map([...experts].map(([k, l]) => [k, l[0]])) };
  }
  if (ad.desc.router_kind === 1) {
    const R = T.get('router.weight')!;
    assert.ok(R, 'pregated adapter has router.weight');
    return {
      kind: 'lora-switch', numExperts: E, topK: ad.desc.top_k, routerModule: LSW_MODULE[ad.desc.router_input],
      router: Float64Array.from(R.data), routerIn: R.shape[1], experts,
    };
  }
  assert.is(ad.desc.ffn_experts, 1, 'layer-wise adapters here are MixLoRA (whole-FFN experts)');
  const gates: Float64Array[] = [];
  for (let L = 0; T.has(`layers.${L}.router.weight`); L++) gates.push(Float64Array.from(T.get(`layers.${L}.router.weight`)!.data));
  const attn = new Map<string, LoraPair>();
  for (const [k, l] of experts) if (!/(gate|up|down)_proj$/.test(k)) { attn.set(k, l[0]); experts.delete(k); }
  return { kind: 'mixlora', numExperts: E, topK: ad.desc.top_k, gates, attn, experts };
}

function baseCfg(info: CheckpointInfo) {
  return readHfConfig(info.dir).config as any;
}

function check(label: string, info: CheckpointInfo, specs: { path: string; scale: number }[], refAds: RefAdapter[], tol = 2e-6) {
  const m = RefModel.load(info.dir);
  const engine = readAdapters(specs, baseCfg(info), { dtype: 'f32' });
  const viaEngine = engine.map(fromEngine);
  const want = flat(m.forward(PROMPT, refAds).logits);
  const got = flat(m.forward(PROMPT, viaEngine).logits);
  const bare = flat(m.forward(PROMPT).logits);
  const e = relErr(got, want);
  assert.ok(e <= tol, `${label}: engine tensors give relative error ${e}`);
  assert.ok(relErr(bare, want) > 1e-3, `${label}: the adapter changes the logits`);
  return engine;
}

const llama = makeTinyCheckpoint(path.join(tmp, 'llama'), { arch: 'llama', hidden: 48, heads: 4, kvHeads: 2, headDim: 16, seed: 3 });
const qwen = makeTinyCheckpoint(path.join(tmp, 'qwen'), { arch: 'qwen2', hidden: 48, heads: 4, kvHeads: 2, seed: 4 });

test('PEFT: q/v adapter, user scale 0.6', () => {
  const m = RefModel.load(llama.dir);
  const d = makePeftLoraAdapter(path.join(tmp, 'p-qv'), llama, { targetModules: ['q_proj', 'v_proj'], seed: 1 }).dir;
  check('peft q/v', llama, [{ path: d, scale: 0.6 }], [m.loadPeft(d, 0.6)]);
});

test('PEFT: all-linear + rsLoRA + rank/alpha patterns', () => {
  const m = RefModel.load(qwen.dir);
  const d = makePeftLoraAdapter(path.join(tmp, 'p-all'), qwen, {
    targetModules: 'all-linear', useRslora: true, r: 4, alpha: 16,
    rankPattern: { 'layers.1.self_attn.v_proj': 2, down_proj: 6 }, alphaPattern: { o_proj: 3, 'model.layers.0.mlp.up_proj': 5 }, seed: 2,
  }).dir;
  check('peft all-linear', qwen, [{ path: d, scale: 1 }], [m.loadPeft(d, 1)]);
});

test('PEFT: regex target_modules and layers_to_transform', () => {
  const m = RefModel.load(llama.dir);
  const d = makePeftLoraAdapter(path.join(tmp, 'p-re'), llama, { targetModules: '.*\\.(k_proj|up_proj)', layersToTransform: [1], seed: 5 }).dir;
  const ref = m.loadPeft(d, 1);
  assert.equal([...ref.modules.keys()].sort(), ['1.k_proj', '1.up_proj']);
  check('peft regex', llama, [{ path: d, scale: 1 }], [ref]);
});

test('PEFT: two adapters with scales (one negative) add up', () => {
  const m = RefModel.load(qwen.dir);
  const a = makePeftLoraAdapter(path.join(tmp, 'p-a'), qwen, { targetModules: ['q_proj', 'v_proj'], seed: 6 }).dir;
  const b = makePeftLoraAdapter(path.join(tmp, 'p-b'), qwen, { targetModules: ['v_proj', 'down_proj'], seed: 7, r: 3, alpha: 5 }).dir;
  check('peft x2', qwen, [{ path: a, scale: 0.7 }, { path: b, scale: -0.4 }], [m.loadPeft(a, 0.7), m.loadPeft(b, -0.4)]);
});

for (const [E, k, targets, arch] of [
  [4, 2, undefined, 'llama'],
  [3, 1, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], 'qwen'],
  [8, 3, ['gate_proj', 'up_proj', 'down_proj'], 'llama'],
  [2, 2, ['v_proj', 'down_proj'], 'qwen'],
] as const) {
  test(`LoRA-Switch: E=${E} top_k=${k} targets=${targets ? targets.join(',') : 'all'} (${arch})`, () => {
    const info = arch === 'llama' ? llama : qwen;
    const m = RefModel.load(info.dir);
    const d = makeLoraSwitchAdapter(path.join(tmp, `ls-${E}-${k}-${arch}`), info, { numExperts: E, topK: k, targetModules: targets as any, seed: E * 10 + k }).dir;
    const ref = m.loadLoraSwitch(d);
    const eng = check(`lora-switch E${E}k${k}`, info, [{ path: d, scale: 1 }], [ref]);
    assert.is(eng.length, 1);
    assert.is(eng[0].desc.router_kind, 1);
    assert.is(eng[0].desc.num_experts, E);
    assert.is(eng[0].desc.top_k, k);
    // same routes as the reference
    const a = m.forward(PROMPT, [ref]).routes[0];
    const b = m.forward(PROMPT, [fromEngine(eng[0])]).routes[0];
    assert.equal(b.map((r) => r.experts), a.map((r) => r.experts));
  });
}

test('LoRA-Switch: user scale multiplies every expert delta', () => {
  const m = RefModel.load(llama.dir);
  const d = makeLoraSwitchAdapter(path.join(tmp, 'ls-scale'), llama, { numExperts: 4, topK: 2, seed: 77 }).dir;
  const ref = m.loadLoraSwitch(d);
  for (const list of ref.experts.values()) for (const p of list) p.scaling *= 0.5;
  check('lora-switch scale 0.5', llama, [{ path: d, scale: 0.5 }], [ref]);
});

for (const naming of ['issue', 'upstream'] as const) {
  test(`MixLoRA (${naming} tensor names): layer-wise routers, whole-FFN experts, attention LoRA`, () => {
    const m = RefModel.load(qwen.dir);
    const d = makeMixLoraAdapter(path.join(tmp, `mx-${naming}`), qwen, { numExperts: 4, topK: 2, naming, seed: 8 }).dir;
    const ref = m.loadMixLora(d);
    const eng = check(`mixlora ${naming}`, qwen, [{ path: d, scale: 1 }], [ref]);
    // merge the converted pieces into one reference MixLoRA (attention comes as a separate static adapter): it has
    // the folder's modules, each once, and alone gives the reference logits
    const conv = eng.map(fromEngine);
    const layerwise = conv.filter((a): a is RefMixLora => a.kind === 'mixlora');
    const statics = conv.filter((a): a is RefPeft => a.kind === 'peft');
    assert.is(layerwise.length, 1);
    assert.is(layerwise.length + statics.length, conv.length, 'no other kind of piece');
    const merged: RefMixLora = { ...layerwise[0], attn: new Map(layerwise[0].attn) };
    for (const s of statics)
      for (const [key, p] of s.modules) {
        assert.not.ok(merged.attn.has(key), `${key} converted twice`);
        merged.attn.set(key, p);
      }
    assert.ok(ref.attn.size > 0, 'the folder has attention LoRA');
    assert.equal([...merged.attn.keys()].sort(), [...ref.attn.keys()].sort());
    assert.equal([...merged.experts.keys()].sort(), [...ref.experts.keys()].sort());
    const e = relErr(flat(m.forward(PROMPT, [merged]).logits), flat(m.forward(PROMPT, [ref]).logits));
    assert.ok(e <= 2e-6, `mixlora ${naming}: the merged pieces give relative error ${e}`);
  });
}

test('MixLoRA: top_k 1 and MLP-only targets', () => {
  const m = RefModel.load(llama.dir);
  const d = makeMixLoraAdapter(path.join(tmp, 'mx-k1'), llama, { numExperts: 3, topK: 1, targetModules: ['gate_proj', 'up_proj', 'down_proj'], seed: 9 }).dir;
  check('mixlora k1', llama, [{ path: d, scale: 1 }], [m.loadMixLora(d)]);
});

test.run();

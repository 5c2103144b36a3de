// Adapter folders -> engine adapters: names, shapes, stacking order, scaling, and one-line errors for bad input.
// Fixtures: tiny adapter folders written here with seeded random (never zero) weights.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Rng } from './helpers/prng.js';
import { writeSafetensors, roundTo, type StDtype } from './helpers/safetensors.js';
import { loadAdapterSpec, readAdapter, readAdapters, RouterKind, type AdapterBaseConfig, type EngineAdapter } from '../src/core/adapters/index.js';
import { UserError } from '../src/core/errors.js';
import { readHfConfig } from '../src/core/hf-config.js';
import { makeTinyCheckpoint, makeLoraSwitchAdapter, makePeftLoraAdapter, makeMixLoraAdapter } from './helpers/checkpoint.js';
import { readSafetensorsF64 } from './helpers/safetensors.js';
import { traceHeader, traceAdapters, traceTokens, TraceWriter, readTrace, parseTrace, f32Short, traceLine } from '../src/core/trace.js';

// head_dim != hidden/heads and nkv < nh so every module has a distinct shape
const BASE: AdapterBaseConfig = { hidden_size: 12, intermediate_size: 18, num_layers: 3, num_heads: 4, num_kv_heads: 2, head_dim: 5 };
const SHAPE: Record<string, [number, number]> = {
  q_proj: [20, 12], k_proj: [10, 12], v_proj: [10, 12], o_proj: [12, 20], gate_proj: [18, 12], up_proj: [18, 12], down_proj: [12, 18],
};
const SECTION: Record<string, string> = {
  q_proj: 'self_attn', k_proj: 'self_attn', v_proj: 'self_attn', o_proj: 'self_attn', gate_proj: 'mlp', up_proj: 'mlp', down_proj: 'mlp',
};
const ENGINE: Record<string, string> = { q_proj: 'q', k_proj: 'k', v_proj: 'v', o_proj: 'o', gate_proj: 'gate', up_proj: 'up', down_proj: 'down' };

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-adapters-'));
let dirCount = 0;

interface T { name: string; shape: number[]; dtype?: StDtype }
type Values = Map<string, Float64Array>;

/** Write adapter_config.json + adapter_model.safetensors; returns the values as stored (rounded to their dtype). */
function writeAdapter(config: Record<string, unknown>, tensors: T[], seed: number, opts: { dir?: string } = {}): { dir: string; values: Values } {
  const dir = opts.dir ?? path.join(tmpRoot, `a${dirCount++}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  const rng = new Rng(seed);
  const values: Values = new Map();
  const st = tensors.map((t) => {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const dtype = t.dtype ?? 'F32';
    const raw = rng.normals(n, 0.5);
    const rounded = Float64Array.from(raw, (v) => roundTo(dtype, v));
    for (const v of rounded) if (v === 0) throw new Error('fixture produced a zero');
    values.set(t.name, rounded);
    return { name: t.name, dtype, shape: t.shape, data: rounded };
  });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), st);
  return { dir, values };
}

// ----- LoRA-Switch fixtures -------------------------------------------------------------------------------------

function loraSwitchTensors(o: { E: number; r: number; targets: string[]; routerIn: number; prefix?: string; layers?: number; dtype?: StDtype }): T[] {
  const p = o.prefix ?? '';
  const ts: T[] = [{ name: `${p}router.weight`, shape: [o.E, o.routerIn], dtype: o.dtype }];
  for (let L = 0; L < (o.layers ?? BASE.num_layers); L++) {
    for (const m of o.targets) {
      const [out, inF] = SHAPE[m];
      for (let e = 0; e < o.E; e++) {
        ts.push({ name: `${p}layers.${L}.${SECTION[m]}.${m}.experts.${e}.lora_A.weight`, shape: [o.r, inF], dtype: o.dtype });
        ts.push({ name: `${p}layers.${L}.${SECTION[m]}.${m}.experts.${e}.lora_B.weight`, shape: [out, o.r], dtype: o.dtype });
      }
    }
  }
  return ts;
}

function lsConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    peft_type: 'LORA_SWITCH', r: 2, lora_alpha: 6, num_experts: 3, top_k: 2,
    target_modules: ['down_proj', 'q_proj', 'v_proj'], router_input: 'self_attn.q_proj',
    base_model_name_or_path: 'tiny-llama', ...extra,
  };
}

function tensorMap(a: EngineAdapter) {
  return new Map(a.tensors.map((t) => [t.name, t]));
}

/** Check an engine tensor slice against stored values times a scale, exactly as fp32 arithmetic gives it. */
function assertSlice(data: Float32Array, offset: number, src: Float64Array, scale: number, label: string) {
  for (let i = 0; i < src.length; i++) {
    const want = scale === 1 ? Math.fround(src[i]) : Math.fround(Math.fround(src[i]) * scale);
    if (data[offset + i] !== want) assert.unreachable(`${label}[${i}] = ${data[offset + i]}, expected ${want}`);
  }
}

/** A module's LoRA scaling: lora_scale [1] F32 holding the scale (rounded to fp32), B stored unscaled (FORMAT.md). */
function assertScale(tm: Map<string, { dtype: string; shape: number[]; data: Float32Array }>, prefix: string, scale: number) {
  const S = tm.get(`${prefix}.lora_scale`);
  assert.ok(S, `${prefix}.lora_scale present`);
  assert.is(S!.dtype, 'f32');
  assert.equal(S!.shape, [1]);
  assert.is(S!.data[0], Math.fround(scale), `${prefix}.lora_scale`);
}

function expectUserError(fn: () => unknown, file: string, re: RegExp) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, UserError, `expected a UserError, got ${(e as Error)?.stack}`);
    const msg = (e as Error).message;
    assert.not.match(msg, /\n/, 'message must be one line');
    assert.ok(msg.startsWith(file), `message should name ${file}: ${msg}`);
    assert.match(msg, re);
    return msg;
  }
  assert.unreachable(`expected an error matching ${re}`);
}

// ----- loadAdapterSpec ------------------------------------------------------------------------------------------

test('loadAdapterSpec: path and path:scale', () => {
  assert.equal(loadAdapterSpec('some/adapter'), { path: 'some/adapter', scale: 1 });
  assert.equal(loadAdapterSpec('some/adapter:0.5'), { path: 'some/adapter', scale: 0.5 });
  assert.equal(loadAdapterSpec('some/adapter:-1.5e-1'), { path: 'some/adapter', scale: -0.15 });
  assert.equal(loadAdapterSpec('some/adapter:2'), { path: 'some/adapter', scale: 2 });
  assert.equal(loadAdapterSpec('C:\\adapters\\x'), { path: 'C:\\adapters\\x', scale: 1 });
  // an existing folder whose name contains ':' is taken whole
  const odd = path.join(tmpRoot, 'odd:2');
  fs.mkdirSync(odd, { recursive: true });
  assert.equal(loadAdapterSpec(odd), { path: odd, scale: 1 });
  // an existing folder followed by a non-number
  const real = path.join(tmpRoot, 'real');
  fs.mkdirSync(real, { recursive: true });
  assert.throws(() => loadAdapterSpec(`${real}:half`), (e: Error) => e instanceof UserError && /scale "half" is not a number/.test(e.message));
  assert.throws(() => loadAdapterSpec(''), (e: Error) => e instanceof UserError);
});

// ----- LoRA-Switch ----------------------------------------------------------------------------------------------

test('LoRA-Switch: desc, meta, names, shapes, expert stacking, alpha/r and user scale in lora_scale', () => {
  const targets = ['down_proj', 'q_proj', 'v_proj'];
  const { dir, values } = writeAdapter(lsConfig(), loraSwitchTensors({ E: 3, r: 2, targets, routerIn: 12 }), 11);
  const [a, ...rest] = readAdapter({ path: dir, scale: 0.75 }, BASE, { dtype: 'f16' });
  assert.is(rest.length, 0);
  assert.equal(a.desc, { router_kind: RouterKind.PREGATED, num_experts: 3, top_k: 2, router_input: 0, ffn_experts: 0 });
  assert.equal(a.meta, {
    name: path.basename(dir), source: path.resolve(dir), peft_type: 'LORA_SWITCH', router_kind: 'pregated', num_experts: 3, top_k: 2,
    router_input: 'self_attn.q_proj', ffn_experts: false, target_modules: ['q_proj', 'v_proj', 'down_proj'], scale: 0.75,
  });
  // names in order: router, then per layer the modules in lsw_module order
  const names = a.tensors.map((t) => t.name);
  const expected = ['router.weight'];
  for (let L = 0; L < 3; L++) for (const m of ['q', 'v', 'down']) expected.push(`layers.${L}.${m}.lora_A`, `layers.${L}.${m}.lora_B`, `layers.${L}.${m}.lora_scale`);
  assert.equal(names, expected);
  for (const t of a.tensors) assert.is(t.dtype, t.name.endsWith('.lora_scale') ? 'f32' : 'f16');
  const tm = tensorMap(a);
  assert.equal(tm.get('router.weight')!.shape, [3, 12]);
  assertSlice(tm.get('router.weight')!.data, 0, values.get('router.weight')!, 1, 'router');
  const scale = (6 / 2) * 0.75;
  for (let L = 0; L < 3; L++) {
    for (const m of ['q_proj', 'v_proj', 'down_proj']) {
      const [out, inF] = SHAPE[m];
      const A = tm.get(`layers.${L}.${ENGINE[m]}.lora_A`)!;
      const B = tm.get(`layers.${L}.${ENGINE[m]}.lora_B`)!;
      assert.equal(A.shape, [3, 2, inF]);
      assert.equal(B.shape, [3, out, 2]);
      for (let e = 0; e < 3; e++) {
        const src = `layers.${L}.${SECTION[m]}.${m}.experts.${e}`;
        assertSlice(A.data, e * 2 * inF, values.get(`${src}.lora_A.weight`)!, 1, `${A.name}[${e}]`);
        assertSlice(B.data, e * out * 2, values.get(`${src}.lora_B.weight`)!, 1, `${B.name}[${e}]`);
      }
      assertScale(tm, `layers.${L}.${ENGINE[m]}`, scale);
    }
  }
});

test('LoRA-Switch: PEFT-style prefixes stripped, F16/BF16 weights decoded, rsLoRA, router on an MLP input', () => {
  for (const [dtype, prefix] of [['F16', 'base_model.model.model.'], ['BF16', 'base_model.model.']] as const) {
    const cfg = lsConfig({ target_modules: ['gate_proj', 'o_proj'], router_input: 'mlp.down_proj', num_experts: 4, top_k: 3, r: 3, lora_alpha: 5, use_rslora: true });
    const { dir, values } = writeAdapter(cfg, loraSwitchTensors({ E: 4, r: 3, targets: ['gate_proj', 'o_proj'], routerIn: 18, prefix, dtype }), 12);
    const [a] = readAdapter({ path: dir, scale: 1 }, BASE, { dtype: 'f32' });
    assert.equal(a.desc, { router_kind: RouterKind.PREGATED, num_experts: 4, top_k: 3, router_input: 6, ffn_experts: 0 });
    assert.is(a.meta.router_input, 'mlp.down_proj');
    const tm = tensorMap(a);
    assert.equal(tm.get('router.weight')!.shape, [4, 18]);
    assertSlice(tm.get('router.weight')!.data, 0, values.get(`${prefix}router.weight`)!, 1, 'router');
    const B = tm.get('layers.2.o.lora_B')!;
    assert.equal(B.shape, [4, 12, 3]);
    assertSlice(B.data, 3 * 12 * 3, values.get(`${prefix}layers.2.self_attn.o_proj.experts.3.lora_B.weight`)!, 1, 'rslora B');
    assertScale(tm, 'layers.2.o', 5 / Math.sqrt(3));
  }
});

// ----- PEFT LoRA ------------------------------------------------------------------------------------------------

function peftTensors(mods: { L: number; m: string; r: number }[], o: { adapterName?: string; prefix?: string } = {}): T[] {
  const p = o.prefix ?? 'base_model.model.model.';
  const an = o.adapterName ? `.${o.adapterName}` : '';
  const ts: T[] = [];
  for (const { L, m, r } of mods) {
    const [out, inF] = SHAPE[m];
    ts.push({ name: `${p}layers.${L}.${SECTION[m]}.${m}.lora_A${an}.weight`, shape: [r, inF] });
    ts.push({ name: `${p}layers.${L}.${SECTION[m]}.${m}.lora_B${an}.weight`, shape: [out, r] });
  }
  return ts;
}

function peftConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0.05, bias: 'none', fan_in_fan_out: false,
    modules_to_save: null, target_modules: ['q_proj', 'v_proj', 'down_proj'], base_model_name_or_path: 'tiny-llama', ...extra };
}

test('PEFT LoRA: STATIC E=1, rank_pattern/alpha_pattern by PEFT matching, per-module scaling, user scale', () => {
  // rank_pattern: exact key for layer 1 q_proj; suffix key for v_proj; alpha_pattern regex-ish key for down_proj
  const rankPattern = { 'model.layers.1.self_attn.q_proj': 3, v_proj: 2 };
  const alphaPattern = { 'layers\\.\\d+\\.mlp\\.down_proj': 2 };
  const mods: { L: number; m: string; r: number }[] = [];
  const rankOf = (L: number, m: string) => (m === 'v_proj' ? 2 : L === 1 && m === 'q_proj' ? 3 : 4);
  for (let L = 0; L < 3; L++) for (const m of ['q_proj', 'v_proj', 'down_proj']) mods.push({ L, m, r: rankOf(L, m) });
  const { dir, values } = writeAdapter(peftConfig({ rank_pattern: rankPattern, alpha_pattern: alphaPattern }), peftTensors(mods), 21);
  const [a, ...rest] = readAdapter({ path: dir, scale: -0.5 }, BASE, { dtype: 'bf16' });
  assert.is(rest.length, 0);
  assert.equal(a.desc, { router_kind: RouterKind.STATIC, num_experts: 1, top_k: 1, router_input: 0, ffn_experts: 0 });
  assert.equal(a.meta.router_kind, 'static');
  assert.equal(a.meta.target_modules, ['q_proj', 'v_proj', 'down_proj']);
  assert.is(a.meta.peft_type, 'LORA');
  assert.is(a.tensors.length, 3 * 3 * 3);
  const tm = tensorMap(a);
  for (const { L, m, r } of mods) {
    const [out, inF] = SHAPE[m];
    const A = tm.get(`layers.${L}.${ENGINE[m]}.lora_A`)!;
    const B = tm.get(`layers.${L}.${ENGINE[m]}.lora_B`)!;
    assert.equal(A.shape, [1, r, inF]);
    assert.equal(B.shape, [1, out, r]);
    const alpha = m === 'down_proj' ? 2 : 8;
    const src = `base_model.model.model.layers.${L}.${SECTION[m]}.${m}`;
    assertSlice(A.data, 0, values.get(`${src}.lora_A.weight`)!, 1, A.name);
    assertSlice(B.data, 0, values.get(`${src}.lora_B.weight`)!, 1, B.name);
    assertScale(tm, `layers.${L}.${ENGINE[m]}`, (alpha / r) * -0.5);
  }
});

test('PEFT LoRA: ".default" names, regex target_modules, layers_to_transform, rsLoRA', () => {
  const mods = [{ L: 1, m: 'k_proj', r: 4 }, { L: 1, m: 'up_proj', r: 4 }];
  const cfg = peftConfig({ target_modules: '.*\\.(k_proj|up_proj)', layers_to_transform: [1], use_rslora: true, lora_alpha: 16 });
  const { dir, values } = writeAdapter(cfg, peftTensors(mods, { adapterName: 'default' }), 22);
  const [a] = readAdapter({ path: dir, scale: 1 }, BASE, { dtype: 'f32' });
  assert.equal(a.tensors.map((t) => t.name), ['layers.1.k.lora_A', 'layers.1.k.lora_B', 'layers.1.k.lora_scale', 'layers.1.up.lora_A', 'layers.1.up.lora_B', 'layers.1.up.lora_scale']);
  assert.equal(a.meta.target_modules, ['k_proj', 'up_proj']);
  const B = tensorMap(a).get('layers.1.up.lora_B')!;
  assertSlice(B.data, 0, values.get('base_model.model.model.layers.1.mlp.up_proj.lora_B.default.weight')!, 1, 'rslora');
  assertScale(tensorMap(a), 'layers.1.up', 16 / Math.sqrt(4));
});

test('PEFT LoRA: exclude_modules, default target_modules (q_proj, v_proj)', () => {
  const mods = [0, 2].map((L) => ({ L, m: 'q_proj', r: 4 }));
  const cfg = peftConfig({ target_modules: ['q_proj'], exclude_modules: ['layers.1.self_attn.q_proj'] });
  const [a] = readAdapter({ path: writeAdapter(cfg, peftTensors(mods), 25).dir, scale: 1 }, BASE, { dtype: 'f32' });
  assert.equal(a.tensors.map((t) => t.name), ['layers.0.q.lora_A', 'layers.0.q.lora_B', 'layers.0.q.lora_scale', 'layers.2.q.lora_A', 'layers.2.q.lora_B', 'layers.2.q.lora_scale']);
  const mods2: { L: number; m: string; r: number }[] = [];
  for (let L = 0; L < 3; L++) for (const m of ['q_proj', 'v_proj']) mods2.push({ L, m, r: 4 });
  const cfg2 = peftConfig();
  delete cfg2.target_modules;
  const [b] = readAdapter({ path: writeAdapter(cfg2, peftTensors(mods2), 26).dir, scale: 1 }, BASE, { dtype: 'f32' });
  assert.equal(b.meta.target_modules, ['q_proj', 'v_proj']);
});

test('PEFT LoRA: all-linear, and several adapters at once are separate STATIC adapters', () => {
  const all = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const mods: { L: number; m: string; r: number }[] = [];
  for (let L = 0; L < 3; L++) for (const m of all) mods.push({ L, m, r: 4 });
  const one = writeAdapter(peftConfig({ target_modules: 'all-linear' }), peftTensors(mods), 23, { dir: path.join(tmpRoot, 'multi', 'x', 'lora') });
  const two = writeAdapter(peftConfig({ target_modules: ['q_proj'] }), peftTensors([0, 1, 2].map((L) => ({ L, m: 'q_proj', r: 4 }))), 24, { dir: path.join(tmpRoot, 'multi', 'y', 'lora') });
  const list = readAdapters([{ path: one.dir, scale: 1 }, loadAdapterSpec(`${two.dir}:0.25`)], BASE, { dtype: 'f16' });
  assert.is(list.length, 2);
  assert.equal(list.map((a) => a.meta.name), ['lora', 'lora#2']);
  assert.equal(list[0].meta.target_modules, all);
  assert.is(list[0].tensors.length, 3 * 7 * 3);
  assert.is(list[1].meta.scale, 0.25);
  const B = tensorMap(list[1]).get('layers.2.q.lora_B')!;
  assertSlice(B.data, 0, two.values.get('base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight')!, 1, 'second adapter');
  assertScale(tensorMap(list[1]), 'layers.2.q', 2 * 0.25);
});

// ----- MixLoRA --------------------------------------------------------------------------------------------------

function mixTensors(o: { E: number; r: number; targets: string[]; legacy?: boolean; legacyNames?: boolean }): T[] {
  const ts: T[] = [];
  const legacyName: Record<string, string> = { gate_proj: 'w1_proj', down_proj: 'w2_proj', up_proj: 'w3_proj' };
  for (let L = 0; L < BASE.num_layers; L++) {
    ts.push({ name: o.legacy ? `mixlora.layers.${L}.gate.weight` : `mixlora.layers.${L}.mlp.moe_gate.weight`, shape: [o.E, 12] });
    for (const m of o.targets) {
      const [out, inF] = SHAPE[m];
      if (SECTION[m] === 'self_attn') {
        ts.push({ name: `mixlora.layers.${L}.self_attn.${m}.lora_A.weight`, shape: [o.r, inF] });
        ts.push({ name: `mixlora.layers.${L}.self_attn.${m}.lora_B.weight`, shape: [out, o.r] });
      } else {
        for (let e = 0; e < o.E; e++) {
          const base = o.legacy ? `mixlora.layers.${L}.experts.${e}.${o.legacyNames ? legacyName[m] : m}` : `mixlora.layers.${L}.mlp.${m}.experts.${e}`;
          ts.push({ name: `${base}.lora_A.weight`, shape: [o.r, inF] });
          ts.push({ name: `${base}.lora_B.weight`, shape: [out, o.r] });
        }
      }
    }
  }
  return ts;
}

function mixConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { peft_type: 'MIXLORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny-llama', bias: 'none', r: 2, lora_alpha: 4, lora_dropout: 0.05,
    target_modules: ['q_proj', 'v_proj', 'gate_proj', 'up_proj', 'down_proj'], routing_strategy: 'mixlora', num_experts: 4, top_k: 2, ...extra };
}

test('MixLoRA: a LAYERWISE ffn-experts adapter with per-layer routers plus a STATIC attention adapter', () => {
  const targets = ['q_proj', 'v_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const { dir, values } = writeAdapter(mixConfig(), mixTensors({ E: 4, r: 2, targets }), 31);
  const list = readAdapter({ path: dir, scale: 2 }, BASE, { dtype: 'f16' });
  assert.is(list.length, 2);
  const [moe, att] = list;
  const name = path.basename(dir);
  assert.equal(moe.desc, { router_kind: RouterKind.LAYERWISE, num_experts: 4, top_k: 2, router_input: 4, ffn_experts: 1 });
  assert.equal(moe.meta, { name: `${name}#experts`, source: path.resolve(dir), peft_type: 'MIXLORA', router_kind: 'layerwise', num_experts: 4,
    top_k: 2, router_input: 'mlp.gate_proj', ffn_experts: true, target_modules: ['gate_proj', 'up_proj', 'down_proj'], scale: 2 });
  assert.equal(att.desc, { router_kind: RouterKind.STATIC, num_experts: 1, top_k: 1, router_input: 0, ffn_experts: 0 });
  assert.equal(att.meta.name, `${name}#attn`);
  assert.equal(att.meta.target_modules, ['q_proj', 'v_proj']);
  const expectedMoe: string[] = [];
  const expectedAtt: string[] = [];
  for (let L = 0; L < 3; L++) {
    expectedMoe.push(`layers.${L}.router.weight`);
    for (const m of ['gate', 'up', 'down']) expectedMoe.push(`layers.${L}.${m}.lora_A`, `layers.${L}.${m}.lora_B`, `layers.${L}.${m}.lora_scale`);
    for (const m of ['q', 'v']) expectedAtt.push(`layers.${L}.${m}.lora_A`, `layers.${L}.${m}.lora_B`, `layers.${L}.${m}.lora_scale`);
  }
  assert.equal(moe.tensors.map((t) => t.name), expectedMoe);
  assert.equal(att.tensors.map((t) => t.name), expectedAtt);
  const tm = tensorMap(moe);
  const scale = (4 / 2) * 2;
  for (let L = 0; L < 3; L++) {
    const R = tm.get(`layers.${L}.router.weight`)!;
    assert.equal(R.shape, [4, 12]);
    assertSlice(R.data, 0, values.get(`mixlora.layers.${L}.mlp.moe_gate.weight`)!, 1, R.name);
    for (const m of ['gate_proj', 'up_proj', 'down_proj']) {
      const [out, inF] = SHAPE[m];
      const A = tm.get(`layers.${L}.${ENGINE[m]}.lora_A`)!;
      const B = tm.get(`layers.${L}.${ENGINE[m]}.lora_B`)!;
      assert.equal(A.shape, [4, 2, inF]);
      assert.equal(B.shape, [4, out, 2]);
      for (let e = 0; e < 4; e++) {
        assertSlice(A.data, e * 2 * inF, values.get(`mixlora.layers.${L}.mlp.${m}.experts.${e}.lora_A.weight`)!, 1, `${A.name}[${e}]`);
        assertSlice(B.data, e * out * 2, values.get(`mixlora.layers.${L}.mlp.${m}.experts.${e}.lora_B.weight`)!, 1, `${B.name}[${e}]`);
      }
      assertScale(tm, `layers.${L}.${ENGINE[m]}`, scale);
    }
  }
  const qb = tensorMap(att).get('layers.1.q.lora_B')!;
  assert.equal(qb.shape, [1, 20, 2]);
  assertSlice(qb.data, 0, values.get('mixlora.layers.1.self_attn.q_proj.lora_B.weight')!, 1, 'attn B');
  assertScale(tensorMap(att), 'layers.1.q', scale);
});

test('MixLoRA: legacy "mixtral" names (gate.weight, experts.{e}.w1/w2/w3_proj); MLP-only gives one adapter', () => {
  const targets = ['gate_proj', 'up_proj', 'down_proj'];
  const cfg = mixConfig({ routing_strategy: 'mixtral', target_modules: ['w1_proj', 'w2_proj', 'w3_proj'], num_experts: 3, top_k: 1 });
  const { dir, values } = writeAdapter(cfg, mixTensors({ E: 3, r: 2, targets, legacy: true, legacyNames: true }), 32);
  const list = readAdapter({ path: dir, scale: 1 }, BASE, { dtype: 'f32' });
  assert.is(list.length, 1);
  assert.is(list[0].meta.name, path.basename(dir));
  assert.equal(list[0].meta.target_modules, targets);
  const B = tensorMap(list[0]).get('layers.0.down.lora_B')!;
  assertSlice(B.data, 2 * 12 * 2, values.get('mixlora.layers.0.experts.2.w2_proj.lora_B.weight')!, 1, 'legacy down B expert 2');
  assertScale(tensorMap(list[0]), 'layers.0.down', 2);
  const R = tensorMap(list[0]).get('layers.2.router.weight')!;
  assertSlice(R.data, 0, values.get('mixlora.layers.2.gate.weight')!, 1, 'legacy router');
});

// ----- bad input: one line naming the file ----------------------------------------------------------------------

function st(dir: string) { return path.join(dir, 'adapter_model.safetensors'); }
function cfgf(dir: string) { return path.join(dir, 'adapter_config.json'); }
const lsT = (extra: Partial<Parameters<typeof loraSwitchTensors>[0]> = {}) =>
  loraSwitchTensors({ E: 3, r: 2, targets: ['down_proj', 'q_proj', 'v_proj'], routerIn: 12, ...extra });
const read = (dir: string) => () => readAdapter({ path: dir, scale: 1 }, BASE, { dtype: 'f32' });

test('errors: base shapes disagree with the model', () => {
  const ts = lsT();
  const bad = ts.find((t) => t.name === 'layers.1.self_attn.v_proj.experts.2.lora_A.weight')!;
  bad.shape = [2, 13];
  const { dir } = writeAdapter(lsConfig(), ts, 41);
  expectUserError(read(dir), st(dir), /layers\.1\.self_attn\.v_proj\.experts\.2\.lora_A\.weight is \[2, 13\] but the model's .* has in_features 12/);
  const ts2 = lsT();
  ts2.find((t) => t.name === 'layers.0.mlp.down_proj.experts.0.lora_B.weight')!.shape = [11, 2];
  const d2 = writeAdapter(lsConfig(), ts2, 41).dir;
  expectUserError(read(d2), st(d2), /out_features 12/);
  // more layers than the model
  const d3 = writeAdapter(lsConfig(), lsT({ layers: 4 }), 41).dir;
  expectUserError(read(d3), st(d3), /layer 3 but the model has 3 layers/);
});

test('errors: missing tensor, missing expert, extra tensors', () => {
  const d1 = writeAdapter(lsConfig(), lsT().filter((t) => t.name !== 'layers.2.self_attn.q_proj.experts.1.lora_B.weight'), 42).dir;
  expectUserError(read(d1), st(d1), /missing tensor layers\.2\.self_attn\.q_proj\.experts\.1\.lora_B\.weight/);
  const d2 = writeAdapter(lsConfig(), lsT().filter((t) => !t.name.startsWith('layers.1.mlp.down_proj.experts.2.')), 42).dir;
  expectUserError(read(d2), st(d2), /missing expert 2 of layers\.1\.mlp\.down_proj/);
  const d3 = writeAdapter(lsConfig(), lsT().filter((t) => t.name !== 'router.weight'), 42).dir;
  expectUserError(read(d3), st(d3), /missing tensor router\.weight/);
  const d4 = writeAdapter(lsConfig(), [...lsT(), { name: 'layers.0.self_attn.k_proj.experts.0.lora_A.weight', shape: [2, 12] }], 42).dir;
  expectUserError(read(d4), st(d4), /extra tensor layers\.0\.self_attn\.k_proj\.experts\.0\.lora_A\.weight: k_proj is not in target_modules/);
  const d5 = writeAdapter(lsConfig(), [...lsT(), { name: 'layers.0.self_attn.q_proj.experts.3.lora_A.weight', shape: [2, 12] }], 42).dir;
  expectUserError(read(d5), st(d5), /expert 3 but num_experts is 3/);
  const d6 = writeAdapter(lsConfig(), [...lsT(), { name: 'lm_head.weight', shape: [2, 12] }], 42).dir;
  expectUserError(read(d6), st(d6), /unexpected tensor lm_head\.weight/);
  // PEFT: target selects a module with no tensors; a tensor the config does not select
  const mods = [0, 1, 2].map((L) => ({ L, m: 'q_proj', r: 4 }));
  const d7 = writeAdapter(peftConfig({ target_modules: ['q_proj', 'v_proj'] }), peftTensors(mods), 43).dir;
  expectUserError(read(d7), st(d7), /missing tensor base_model\.model\.model\.layers\.0\.self_attn\.v_proj\.lora_A\.weight/);
  const d8 = writeAdapter(peftConfig({ target_modules: ['q_proj'], layers_to_transform: [0, 1] }), peftTensors(mods), 43).dir;
  expectUserError(read(d8), st(d8), /extra tensor .*layers\.2\.self_attn\.q_proj\.lora_A\.weight/);
  // MixLoRA: a missing router
  const d9 = writeAdapter(mixConfig(), mixTensors({ E: 4, r: 2, targets: ['q_proj', 'gate_proj'] }).filter((t) => t.name !== 'mixlora.layers.1.mlp.moe_gate.weight'),
    44).dir;
  fs.writeFileSync(cfgf(d9), JSON.stringify(mixConfig({ target_modules: ['q_proj', 'gate_proj'] })));
  expectUserError(read(d9), st(d9), /missing tensor mixlora\.layers\.1\.mlp\.moe_gate\.weight/);
});

test('errors: top_k > num_experts, unknown peft_type, router width, rank mismatch', () => {
  const d1 = writeAdapter(lsConfig({ top_k: 4 }), lsT(), 45).dir;
  expectUserError(read(d1), cfgf(d1), /top_k 4 is greater than num_experts 3/);
  const d1m = writeAdapter(mixConfig({ top_k: 5 }), mixTensors({ E: 4, r: 2, targets: ['q_proj', 'v_proj', 'gate_proj', 'up_proj', 'down_proj'] }), 45).dir;
  expectUserError(read(d1m), cfgf(d1m), /top_k 5 is greater than num_experts 4/);
  const d2 = writeAdapter(lsConfig({ peft_type: 'ADALORA' }), lsT(), 45).dir;
  expectUserError(read(d2), cfgf(d2), /unknown peft_type "ADALORA" \(supported: LORA_SWITCH, LORA, MIXLORA\)/);
  const d3 = writeAdapter(lsConfig({ router_input: 'self_attn.o_proj' }), lsT(), 45).dir;
  expectUserError(read(d3), st(d3), /router\.weight is \[3, 12\] but router_input self_attn\.o_proj has in_features 20/);
  const d3b = writeAdapter(lsConfig({ router_input: 'self_attn.gate_proj' }), lsT(), 45).dir;
  expectUserError(read(d3b), cfgf(d3b), /router_input "self_attn\.gate_proj" is not a module of layer 0/);
  const ts = lsT();
  ts.find((t) => t.name === 'layers.0.self_attn.q_proj.experts.0.lora_B.weight')!.shape = [20, 3];
  const d4 = writeAdapter(lsConfig(), ts, 45).dir;
  expectUserError(read(d4), st(d4), /rank mismatch: layers\.0\.self_attn\.q_proj\.experts\.0\.lora_A\.weight is \[2, 12\] \(rank 2\) but .*lora_B\.weight is \[20, 3\] \(rank 3\)/);
  // PEFT: rank in file disagrees with rank_pattern
  const mods = [0, 1, 2].map((L) => ({ L, m: 'q_proj', r: 4 }));
  const d5 = writeAdapter(peftConfig({ target_modules: ['q_proj'], rank_pattern: { q_proj: 8 } }), peftTensors(mods), 46).dir;
  expectUserError(read(d5), st(d5), /rank 4 but the config gives r = 8/);
  // MixLoRA router width
  const mt = mixTensors({ E: 4, r: 2, targets: ['gate_proj'] });
  mt.find((t) => t.name === 'mixlora.layers.0.mlp.moe_gate.weight')!.shape = [4, 18];
  const d6 = writeAdapter(mixConfig({ target_modules: ['gate_proj'] }), mt, 47).dir;
  expectUserError(read(d6), st(d6), /moe_gate\.weight is \[4, 18\], expected \[num_experts 4, hidden_size 12\]/);
});

test('errors: unsupported PEFT and MixLoRA features, files', () => {
  const mods = [0, 1, 2].map((L) => ({ L, m: 'q_proj', r: 4 }));
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ fan_in_fan_out: true }, /fan_in_fan_out: true is for GPT-2 style Conv1D/],
    [{ modules_to_save: ['lm_head'] }, /modules_to_save \["lm_head"\] .* not supported/],
    [{ use_dora: true }, /DoRA/],
    [{ target_modules: ['q_proj', 'embed_tokens'] }, /LoRA on embed_tokens is not supported/],
    [{ bias: 'all' }, /bias: "all"/],
  ];
  for (const [extra, re] of cases) {
    const d = writeAdapter(peftConfig({ target_modules: ['q_proj'], ...extra }), peftTensors(mods), 48).dir;
    expectUserError(read(d), cfgf(d), re);
  }
  const de = writeAdapter(peftConfig({ target_modules: ['q_proj'] }), [...peftTensors(mods), { name: 'base_model.model.model.embed_tokens.lora_embedding_A', shape: [4, 30] }], 48).dir;
  expectUserError(read(de), st(de), /LoRA on embeddings is not supported/);
  const dm = writeAdapter(mixConfig({ routing_strategy: 'switch' }), mixTensors({ E: 4, r: 2, targets: ['q_proj'] }), 49).dir;
  expectUserError(read(dm), cfgf(dm), /routing_strategy "switch" is not supported/);
  const da = writeAdapter(mixConfig({ act_fn: 'gelu' }), mixTensors({ E: 4, r: 2, targets: ['q_proj'] }), 49).dir;
  expectUserError(read(da), cfgf(da), /act_fn "gelu"/);
  // missing peft_type, bad JSON, no folder, pickle weights only, truncated safetensors
  const dp = writeAdapter({ r: 2 }, lsT(), 50).dir;
  expectUserError(read(dp), cfgf(dp), /missing "peft_type"/);
  const dj = writeAdapter(lsConfig(), lsT(), 50).dir;
  fs.writeFileSync(cfgf(dj), '{"peft_type": "LORA",');
  expectUserError(read(dj), cfgf(dj), /not valid JSON/);
  const nowhere = path.join(tmpRoot, 'does-not-exist');
  expectUserError(read(nowhere), nowhere, /no such adapter folder/);
  const db = writeAdapter(mixConfig(), [], 50).dir;
  fs.renameSync(st(db), path.join(db, 'adapter_model.bin'));
  expectUserError(read(db), path.join(db, 'adapter_model.bin'), /PyTorch pickle weights are not read/);
  const dt = writeAdapter(lsConfig(), lsT(), 51).dir;
  const buf = fs.readFileSync(st(dt));
  fs.writeFileSync(st(dt), buf.subarray(0, buf.length - 7));
  expectUserError(read(dt), st(dt), /past the end of the data section|truncated/);
});

// ----- the shared fixture builders (test/helpers/checkpoint.ts) and the product's config reader ------------------

test('fixtures of test/helpers/checkpoint.ts: engine config from readHfConfig, every adapter kind parses', () => {
  const ck = makeTinyCheckpoint(path.join(tmpRoot, 'ck'), { hidden: 16, intermediate: 24, layers: 2, heads: 4, kvHeads: 2, headDim: 6 });
  const { config } = readHfConfig(ck.dir);
  const ls = makeLoraSwitchAdapter(path.join(tmpRoot, 'fx-ls'), ck, { numExperts: 5, topK: 3, targetModules: ['k_proj', 'up_proj'], routerInput: 'mlp.up_proj' });
  const [a] = readAdapter({ path: ls.dir, scale: 1 }, config, { dtype: 'f32' });
  assert.equal(a.desc, { router_kind: RouterKind.PREGATED, num_experts: 5, top_k: 3, router_input: 5, ffn_experts: 0 });
  assert.equal(tensorMap(a).get('router.weight')!.shape, [5, 16]);
  assert.equal(tensorMap(a).get('layers.1.k.lora_B')!.shape, [5, 12, 4]);
  const raw = readSafetensorsF64(path.join(ls.dir, 'adapter_model.safetensors')).tensors;
  assertSlice(tensorMap(a).get('layers.1.up.lora_B')!.data, 4 * 24 * 4, raw.get('layers.1.mlp.up_proj.experts.4.lora_B.weight')!.data, 1, 'fixture B');
  assertScale(tensorMap(a), 'layers.1.up', 8 / 4);

  const pf = makePeftLoraAdapter(path.join(tmpRoot, 'fx-peft'), ck, { targetModules: 'all-linear', rankPattern: { o_proj: 2 }, alphaPattern: { down_proj: 3 }, useRslora: true });
  const [p] = readAdapter({ path: pf.dir, scale: 1 }, config, { dtype: 'f32' });
  assert.equal(tensorMap(p).get('layers.0.o.lora_A')!.shape, [1, 2, 24]);
  const praw = readSafetensorsF64(path.join(pf.dir, 'adapter_model.safetensors')).tensors;
  assertSlice(tensorMap(p).get('layers.1.down.lora_B')!.data, 0, praw.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')!.data, 1, 'fixture rslora');
  assertScale(tensorMap(p), 'layers.1.down', 3 / Math.sqrt(4));

  for (const naming of ['issue', 'upstream'] as const) {
    const mx = makeMixLoraAdapter(path.join(tmpRoot, `fx-mix-${naming}`), ck, { naming, numExperts: 3, topK: 2 });
    const list = readAdapter({ path: mx.dir, scale: 1 }, config, { dtype: 'f32' });
    assert.equal(list.map((x) => x.meta.router_kind), ['layerwise', 'static'], naming);
    assert.equal(list[0].meta.target_modules, ['gate_proj', 'up_proj', 'down_proj']);
    assert.equal(list[1].meta.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj']);
    assert.equal(tensorMap(list[0]).get('layers.1.router.weight')!.shape, [3, 16]);
  }
});

test('inputs are never modified', () => {
  const { dir } = writeAdapter(lsConfig(), lsT(), 60);
  const before = [fs.readFileSync(st(dir)), fs.readFileSync(cfgf(dir))];
  readAdapter({ path: dir, scale: 3 }, BASE, { dtype: 'f16' });
  assert.ok(before[0].equals(fs.readFileSync(st(dir))));
  assert.ok(before[1].equals(fs.readFileSync(cfgf(dir))));
});

// ----- routing traces (src/core/trace.ts, docs/TRACE.md) ---------------------------------------------------------

const TRACE_ADAPTERS = [
  { name: 'switch', router_kind: 'pregated' as const, num_experts: 4, top_k: 2, router_input: 'self_attn.q_proj' },
  { name: 'plain', router_kind: 'static' as const, num_experts: 1, top_k: 1, router_input: null },
  { name: 'mix#experts', router_kind: 'layerwise' as const, num_experts: 5, top_k: 3, router_input: 'mlp.gate_proj' },
];

test('trace: header and token records from engine route blocks laid out [n][rows][top_k]', () => {
  const L = 3;
  const header = traceHeader({ model: 'm.lsw', mode: 'merge', backend: 'cpu', num_layers: L, adapters: traceAdapters(TRACE_ADAPTERS, L), created: new Date(0) });
  assert.equal(header.adapters.map((a) => [a.id, a.rows]), [[0, 1], [1, 0], [2, 3]]);
  assert.is(header.created, '1970-01-01T00:00:00.000Z');
  const rng = new Rng(70);
  const n = 4;
  const e0 = Int32Array.from({ length: n * 2 }, () => rng.int(4));
  const g0 = Float32Array.from({ length: n * 2 }, () => rng.uniform() + 0.01);
  const e2 = Int32Array.from({ length: n * L * 3 }, () => rng.int(5));
  const g2 = Float32Array.from({ length: n * L * 3 }, () => rng.uniform() + 0.01);
  const toks = [0, 1, 2, 3].map((i) => ({ pos: 10 + i, token: 100 + i, text: i === 2 ? 'a "quoted"\nline' : `t${i}`, phase: (i < 2 ? 'prompt' : 'generated') as 'prompt' | 'generated' }));
  const recs = traceTokens(header, toks, [{ adapter: 2, experts: e2, gates: g2 }, { adapter: 0, experts: e0, gates: g0 }]);
  assert.is(recs.length, n);
  for (let i = 0; i < n; i++) {
    const r = recs[i];
    assert.equal([r.pos, r.token, r.phase], [10 + i, 100 + i, i < 2 ? 'prompt' : 'generated']);
    assert.equal(r.routes.map((x) => x.adapter), [0, 2]);
    assert.equal(r.routes[0].experts, [e0[i * 2], e0[i * 2 + 1]]);
    const g = r.routes[0].gates as number[];
    for (let k = 0; k < 2; k++) assert.is(Math.fround(g[k]), g0[i * 2 + k]);
    const ex = r.routes[1].experts as number[][];
    const gx = r.routes[1].gates as number[][];
    assert.is(ex.length, L);
    for (let l = 0; l < L; l++) for (let k = 0; k < 3; k++) {
      assert.is(ex[l][k], e2[(i * L + l) * 3 + k]);
      assert.is(Math.fround(gx[l][k]), g2[(i * L + l) * 3 + k]);
    }
  }
  assert.is(f32Short(Math.fround(0.6)), 0.6);
  assert.throws(() => traceTokens(header, toks, [{ adapter: 0, experts: e0, gates: g0 }]), /no routes for adapter 2/);
  assert.throws(() => traceTokens(header, toks, [{ adapter: 0, experts: e0.subarray(1), gates: g0 }, { adapter: 2, experts: e2, gates: g2 }]), /expected 4 x 1 x 2/);
  const bad = Int32Array.from(e0); bad[3] = 4;
  assert.throws(() => traceTokens(header, toks, [{ adapter: 0, experts: bad, gates: g0 }, { adapter: 2, experts: e2, gates: g2 }]), /expert 4 out of range/);
  // a layer-wise adapter records expert -1, gate 0 in layers it does not adapt (lsw.h); nowhere else
  const e2u = Int32Array.from(e2); const g2u = Float32Array.from(g2);
  for (let k = 0; k < 3; k++) { e2u[3 + k] = -1; g2u[3 + k] = 0; }
  const recU = traceTokens(header, toks, [{ adapter: 0, experts: e0, gates: g0 }, { adapter: 2, experts: e2u, gates: g2u }]);
  assert.equal((recU[0].routes[1].experts as number[][])[1], [-1, -1, -1]);
  assert.equal((recU[0].routes[1].gates as number[][])[1], [0, 0, 0]);
  assert.equal(parseTrace([traceLine(header), ...recU.map(traceLine)].join(''), 'u.jsonl').tokens.length, n);
  const badU = Int32Array.from(e0); badU[0] = -1;
  const badG = Float32Array.from(g0); badG[0] = 0;
  assert.throws(() => traceTokens(header, toks, [{ adapter: 0, experts: badU, gates: badG }, { adapter: 2, experts: e2, gates: g2 }]), /expert -1 out of range/);
  const e2g = Int32Array.from(e2u); const g2g = Float32Array.from(g2u); g2g[3] = 0.5;
  assert.throws(() => traceTokens(header, toks, [{ adapter: 0, experts: e0, gates: g0 }, { adapter: 2, experts: e2g, gates: g2g }]), /expert -1 out of range/);
});

test('trace: writer renames into place on close, round-trips through readTrace, abort leaves nothing', () => {
  const file = path.join(tmpRoot, 'trace.jsonl');
  const adapters = traceAdapters(TRACE_ADAPTERS.slice(0, 2), 2);
  const w = TraceWriter.open(file, { model: 'x.lsw', mode: 'fused', backend: 'cpu', num_layers: 2, adapters });
  w.write([{ pos: 0, token: 5, text: 'He', phase: 'prompt' }, { pos: 1, token: 6, text: 'llo', phase: 'prompt' }],
    [{ adapter: 0, experts: [1, 3, 0, 2], gates: [0.7, 0.3, 0.55, 0.45] }]);
  assert.not.ok(fs.existsSync(file), 'nothing under the final name before close');
  w.write([{ pos: 2, token: 7, text: '!', phase: 'generated' }], [{ adapter: 0, experts: [2, 1], gates: [0.5, 0.5] }]);
  w.close();
  assert.is(w.tokensWritten, 3);
  const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
  assert.is(lines.length, 4);
  const t = readTrace(file);
  assert.is(t.header.mode, 'fused');
  assert.equal(t.tokens.map((x) => [x.pos, x.text, x.phase]), [[0, 'He', 'prompt'], [1, 'llo', 'prompt'], [2, '!', 'generated']]);
  assert.equal(t.tokens[1].routes, [{ adapter: 0, experts: [0, 2], gates: [0.55, 0.45] }]);
  assert.equal(fs.readdirSync(tmpRoot).filter((f) => f.includes('trace.jsonl.')), []);
  const f2 = path.join(tmpRoot, 'aborted.jsonl');
  const w2 = TraceWriter.open(f2, { model: 'x', mode: 'merge', backend: 'cpu', num_layers: 2, adapters });
  w2.abort();
  assert.equal(fs.readdirSync(tmpRoot).filter((f) => f.includes('aborted')), []);
  // malformed traces: one line naming the file and the line
  const lines2 = [...lines];
  lines2[2] = '{"type":"token","pos":1,"token":6,"text":"x","phase":"prompt","routes":[{"adapter":0,"experts":[0,9],"gates":[0.5,0.5]}]}';
  expectUserError(() => parseTrace(lines2.join('\n'), 'bad.jsonl'), 'bad.jsonl', /line 3: routes of adapter 0 do not match/);
  expectUserError(() => parseTrace('{"type":"token"}\n', 'bad.jsonl'), 'bad.jsonl', /line 1: not a lora-switch trace header/);
  expectUserError(() => parseTrace(`${lines[0]}\n{oops`, 'bad.jsonl'), 'bad.jsonl', /line 2: not valid JSON/);
});

test.after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

test.run();

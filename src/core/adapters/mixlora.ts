/**
 * MixLoRA folders (TUDB-Labs/MixLoRA, peft_type "MIXLORA") as two engine adapters:
 *  - a LAYERWISE adapter (ffn_experts = 1): per layer a top-k router over the MLP input and num_experts whole-FFN
 *    experts, each the base FFN with LoRA on the targeted gate/up/down projections;
 *  - a STATIC adapter: the plain LoRA MixLoRA puts on the targeted attention projections.
 *
 * Names as MixLoRA writes them (mixlora/model.py, routing_strategy "mixlora"):
 *   mixlora.layers.{L}.mlp.moe_gate.weight                        [E, H]
 *   mixlora.layers.{L}.mlp.{gate,up,down}_proj.experts.{e}.lora_{A,B}.weight
 *   mixlora.layers.{L}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
 * and as its older releases wrote them (routing_strategy "mixtral", see misc/legacy_weights_convertor.py):
 *   mixlora.layers.{L}.gate.weight
 *   mixlora.layers.{L}.experts.{e}.{gate_proj|up_proj|down_proj|w1_proj|w3_proj|w2_proj}.lora_{A,B}.weight
 * Both routing_strategy values mean the same top-k softmax routing, and both naming schemes are accepted with
 * either value (each name is unambiguous); error messages use the scheme the file uses.
 * MixLoRA's own loader applies the top-level r / lora_alpha (and use_rslora) to every LoRA, experts included;
 * so does this reader (an "expert_lora" section is not used by MixLoRA's inference code either).
 * jitter_noise (random scaling of the MLP input, a training aid) is ignored. MixLoRA saves adapter_model.bin
 * (PyTorch pickle); this reader takes adapter_model.safetensors and says how to convert when only the .bin exists.
 */
import path from 'node:path';
import { fileError } from '../errors.js';
import { boolField, checkPair, fmtShape, intField, loraScaling, numField, stackExperts, type AdapterFolder } from './common.js';
import { MODULES, moduleByHfName, moduleShape, type AdapterBaseConfig, type ModuleInfo } from './modules.js';
import { RouterKind, type AdapterSpec, type AdapterTensor, type EngineAdapter, type ReadAdapterOptions } from './types.js';
import { openAdapterWeights } from './weights.js';

const LEGACY_PROJ: Record<string, string> = { w1_proj: 'gate_proj', w2_proj: 'down_proj', w3_proj: 'up_proj' };
/** Names MixLoRA knows for other architectures (Phi, Phi-3): not Llama-family. */
const NON_LLAMA = new Set(['dense', 'fc1', 'fc2', 'qkv_proj', 'gate_up_proj']);

function parseTargets(value: unknown, file: string): ModuleInfo[] {
  let names: string[];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) names = value as string[];
  else if (value && typeof value === 'object' && !Array.isArray(value)) {
    names = Object.entries(value as Record<string, unknown>).filter(([, on]) => on === true).map(([k]) => k);
  } else throw fileError(file, '"target_modules" must be a list of module names or an object {name: true|false}');
  const ids = new Set<number>();
  for (const raw of names) {
    const n = LEGACY_PROJ[raw] ?? raw;
    const m = moduleByHfName(n);
    if (m) ids.add(m.id);
    else if (NON_LLAMA.has(n)) throw fileError(file, `target module "${raw}" belongs to a Phi-style model, not a Llama-family one`);
    // MixLoRA silently ignores names it does not know; so do we
  }
  if (ids.size === 0) throw fileError(file, `"target_modules" ${JSON.stringify(value)} names no q/k/v/o/gate/up/down projection`);
  return MODULES.filter((m) => ids.has(m.id));
}

type Pair = { A?: string; B?: string };

export function readMixLora(spec: AdapterSpec, folder: AdapterFolder, base: AdapterBaseConfig, opts: ReadAdapterOptions): EngineAdapter[] {
  const cf = folder.configFile;
  const cfg = folder.config;
  const strategy = cfg.routing_strategy;
  if (strategy !== 'mixlora' && strategy !== 'mixtral') {
    throw fileError(cf, `routing_strategy ${JSON.stringify(strategy ?? null)} is not supported (only top-k routing: "mixlora", or "mixtral" as older releases call it)`);
  }
  const r = intField(cfg, 'r', cf, { min: 1 });
  const alpha = numField(cfg, 'lora_alpha', cf);
  const rslora = boolField(cfg, 'use_rslora', cf);
  if (boolField(cfg, 'use_dora', cf)) throw fileError(cf, 'DoRA experts (use_dora: true) are not supported');
  const E = intField(cfg, 'num_experts', cf, { min: 1 });
  const topK = intField(cfg, 'top_k', cf, { min: 1, def: 2 });
  if (topK > E) throw fileError(cf, `top_k ${topK} is greater than num_experts ${E}`);
  const act = cfg.act_fn;
  if (act !== undefined && act !== null && act !== 'silu' && act !== 'swish') {
    throw fileError(cf, `act_fn ${JSON.stringify(act)} is not supported (Llama-family FFNs use silu)`);
  }
  const targets = parseTargets(cfg.target_modules, cf);
  const attnTargets = targets.filter((m) => m.section === 'self_attn');
  const mlpTargets = targets.filter((m) => m.section === 'mlp');
  const scaling = loraScaling(alpha, r, rslora) * spec.scale;
  const nl = base.num_layers;
  const H = base.hidden_size;

  const wf = folder.weightsFile;
  const w = openAdapterWeights(wf);
  try {
    const gates = new Map<number, string>();
    const attn = new Map<string, Pair>(); // `${L}.${id}`
    const experts = new Map<string, Pair>(); // `${L}.${id}.${e}`
    const add = (map: Map<string, Pair>, key: string, ab: string, name: string) => {
      const p = map.get(key) ?? {};
      if ((ab === 'A' ? p.A : p.B) !== undefined) throw fileError(wf, `duplicate tensors ${ab === 'A' ? p.A : p.B} and ${name}`);
      if (ab === 'A') p.A = name; else p.B = name;
      map.set(key, p);
    };
    const layerOk = (L: number, name: string) => {
      if (L >= nl) throw fileError(wf, `tensor ${name} is for layer ${L} but the model has ${nl} layers (base shapes disagree with the model)`);
    };
    const targetOk = (m: ModuleInfo | undefined, raw: string, name: string): ModuleInfo => {
      if (!m) throw fileError(wf, `unexpected tensor ${name}: ${raw} is not an adapted linear of a Llama layer`);
      if (!targets.includes(m)) throw fileError(wf, `extra tensor ${name}: ${m.hf} is not in target_modules of ${cf}`);
      return m;
    };
    let sawLegacy = false;
    for (const [name] of w.tensors) {
      if (name.startsWith('__pad__')) continue;
      let m: RegExpExecArray | null;
      if ((m = /^mixlora\.layers\.(\d+)\.(mlp\.moe_gate|gate)\.weight$/.exec(name))) {
        const L = Number(m[1]);
        layerOk(L, name);
        if (m[2] === 'gate') sawLegacy = true;
        if (gates.has(L)) throw fileError(wf, `duplicate routers for layer ${L}: ${gates.get(L)} and ${name}`);
        gates.set(L, name);
      } else if ((m = /^mixlora\.layers\.(\d+)\.self_attn\.([a-z_0-9]+)\.lora_(A|B)\.weight$/.exec(name))) {
        const L = Number(m[1]);
        layerOk(L, name);
        const mod = targetOk(moduleByHfName(m[2]), m[2], name);
        if (mod.section !== 'self_attn') throw fileError(wf, `unexpected tensor ${name}: ${mod.hf} is not an attention projection`);
        add(attn, `${L}.${mod.id}`, m[3], name);
      } else if ((m = /^mixlora\.layers\.(\d+)\.mlp\.([a-z_0-9]+)\.experts\.(\d+)\.lora_(A|B)\.weight$/.exec(name))
        || (m = /^mixlora\.layers\.(\d+)\.experts\.(\d+)\.([a-z_0-9]+)\.lora_(A|B)\.weight$/.exec(name))) {
        const isLegacy = !name.includes('.mlp.');
        if (isLegacy) sawLegacy = true;
        const L = Number(m[1]);
        const raw = isLegacy ? m[3] : m[2];
        const e = Number(isLegacy ? m[2] : m[3]);
        layerOk(L, name);
        const mod = targetOk(moduleByHfName(LEGACY_PROJ[raw] ?? raw), raw, name);
        if (mod.section !== 'mlp') throw fileError(wf, `unexpected tensor ${name}: ${mod.hf} is not an MLP projection`);
        if (e >= E) throw fileError(wf, `extra tensor ${name}: expert ${e} but num_experts is ${E}`);
        add(experts, `${L}.${mod.id}.${e}`, m[4], name);
      } else {
        throw fileError(wf, `unexpected tensor ${name} (not part of the MixLoRA format)`);
      }
    }
    const legacy = sawLegacy;

    const gateName = (L: number) => (legacy ? `mixlora.layers.${L}.gate.weight` : `mixlora.layers.${L}.mlp.moe_gate.weight`);
    const attnName = (L: number, mod: ModuleInfo, ab: string) => `mixlora.layers.${L}.self_attn.${mod.hf}.lora_${ab}.weight`;
    const expName = (L: number, mod: ModuleInfo, e: number, ab: string) =>
      legacy ? `mixlora.layers.${L}.experts.${e}.${mod.hf}.lora_${ab}.weight` : `mixlora.layers.${L}.mlp.${mod.hf}.experts.${e}.lora_${ab}.weight`;

    const moe: AdapterTensor[] = [];
    const att: AdapterTensor[] = [];
    for (let L = 0; L < nl; L++) {
      const g = gates.get(L);
      if (!g) throw fileError(wf, `missing tensor ${gateName(L)} (the router of layer ${L})`);
      const gs = w.tensors.get(g)!.shape;
      if (gs.length !== 2 || gs[0] !== E || gs[1] !== H) {
        throw fileError(wf, `${g} is ${fmtShape(gs)}, expected [num_experts ${E}, hidden_size ${H}] (router width must match the MLP input)`);
      }
      if (mlpTargets.length > 0) moe.push({ name: `layers.${L}.router.weight`, dtype: opts.dtype, shape: [E, H], data: w.readF32(g) });
      for (const mod of mlpTargets) {
        const [out, inF] = moduleShape(base, mod);
        const list: { A: Float32Array; B: Float32Array }[] = [];
        for (let e = 0; e < E; e++) {
          const p = experts.get(`${L}.${mod.id}.${e}`);
          if (!p) throw fileError(wf, `missing expert ${e} of layer ${L} ${mod.hf} (no ${expName(L, mod, e, 'A')}; num_experts is ${E})`);
          if (!p.A) throw fileError(wf, `missing tensor ${expName(L, mod, e, 'A')}`);
          if (!p.B) throw fileError(wf, `missing tensor ${expName(L, mod, e, 'B')}`);
          checkPair(wf, `layers.${L}.mlp.${mod.hf}`, { nameA: p.A, nameB: p.B, shapeA: w.tensors.get(p.A)!.shape, shapeB: w.tensors.get(p.B)!.shape }, base, mod, r);
          list.push({ A: w.readF32(p.A), B: w.readF32(p.B) });
        }
        moe.push(...stackExperts(`layers.${L}.${mod.engine}`, opts.dtype, list, r, out, inF, scaling));
      }
      for (const mod of attnTargets) {
        const p = attn.get(`${L}.${mod.id}`);
        if (!p || !p.A) throw fileError(wf, `missing tensor ${attnName(L, mod, 'A')}`);
        if (!p.B) throw fileError(wf, `missing tensor ${attnName(L, mod, 'B')}`);
        checkPair(wf, `layers.${L}.self_attn.${mod.hf}`, { nameA: p.A, nameB: p.B, shapeA: w.tensors.get(p.A)!.shape, shapeB: w.tensors.get(p.B)!.shape }, base, mod, r);
        const [out, inF] = moduleShape(base, mod);
        att.push(...stackExperts(`layers.${L}.${mod.engine}`, opts.dtype, [{ A: w.readF32(p.A), B: w.readF32(p.B) }], r, out, inF, scaling));
      }
    }

    const name = path.basename(path.resolve(folder.dir));
    const source = path.resolve(folder.dir);
    const result: EngineAdapter[] = [];
    if (mlpTargets.length > 0) {
      result.push({
        desc: { router_kind: RouterKind.LAYERWISE, num_experts: E, top_k: topK, router_input: 4 /* LSW_MOD_GATE: the MLP input */, ffn_experts: 1 },
        meta: {
          name: attnTargets.length > 0 ? `${name}#experts` : name,
          source, peft_type: 'MIXLORA', router_kind: 'layerwise', num_experts: E, top_k: topK,
          router_input: 'mlp.gate_proj', ffn_experts: true,
          target_modules: mlpTargets.map((m) => m.hf), scale: spec.scale,
        },
        tensors: moe,
      });
    }
    if (attnTargets.length > 0) {
      result.push({
        desc: { router_kind: RouterKind.STATIC, num_experts: 1, top_k: 1, router_input: 0, ffn_experts: 0 },
        meta: {
          name: mlpTargets.length > 0 ? `${name}#attn` : name,
          source, peft_type: 'MIXLORA', router_kind: 'static', num_experts: 1, top_k: 1,
          router_input: null, ffn_experts: false,
          target_modules: attnTargets.map((m) => m.hf), scale: spec.scale,
        },
        tensors: att,
      });
    }
    return result;
  } finally {
    w.close();
  }
}

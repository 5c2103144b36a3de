/**
 * LoRA-Switch adapter folders (peft_type "LORA_SWITCH"): one pre-gated router reading the layer-0 input of
 * `router_input`, and num_experts LoRA experts on every target module of every layer.
 */
import path from 'node:path';
import { fileError } from '../errors.js';
import {
  checkPair, fmtShape, intField, loraScaling, numField, boolField, stackExperts,
  type AdapterFolder, type LoraPair,
} from './common.js';
import { MODULES, moduleByHfName, moduleShape, parseRouterInput, type AdapterBaseConfig, type ModuleInfo } from './modules.js';
import { RouterKind, type AdapterSpec, type AdapterTensor, type EngineAdapter, type ReadAdapterOptions } from './types.js';
import { openAdapterWeights } from './weights.js';

/** Prefixes a LoRA-Switch tensor name may carry (PEFT-style saving). */
const PREFIXES = ['', 'model.', 'base_model.model.', 'base_model.model.model.'];

const EXPERT_RE = /^layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.experts\.(\d+)\.lora_(A|B)(?:\.default)?\.weight$/;

function stripPrefix(name: string): string | undefined {
  // longest prefix first
  for (const p of [...PREFIXES].sort((a, b) => b.length - a.length)) {
    if (p !== '' && name.startsWith(p)) {
      const rest = name.slice(p.length);
      if (rest === 'router.weight' || rest.startsWith('layers.')) return rest;
    }
  }
  if (name === 'router.weight' || name.startsWith('layers.')) return name;
  return undefined;
}

export function parseTargetModules(value: unknown, file: string): ModuleInfo[] {
  let names: string[];
  if (value === 'all-linear') names = MODULES.map((m) => m.hf);
  else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) names = value as string[];
  else throw fileError(file, `"target_modules" must be a list of module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or "all-linear"`);
  if (names.length === 0) throw fileError(file, '"target_modules" is empty');
  const set = new Set<number>();
  for (const n of names) {
    const m = moduleByHfName(n);
    if (!m) throw fileError(file, `target module "${n}" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj`);
    set.add(m.id);
  }
  return MODULES.filter((m) => set.has(m.id));
}

export function readLoraSwitch(spec: AdapterSpec, folder: AdapterFolder, base: AdapterBaseConfig, opts: ReadAdapterOptions): EngineAdapter[] {
  const cf = folder.configFile;
  const cfg = folder.config;
  const r = intField(cfg, 'r', cf, { min: 1 });
  const alpha = numField(cfg, 'lora_alpha', cf);
  const E = intField(cfg, 'num_experts', cf, { min: 1 });
  const topK = intField(cfg, 'top_k', cf, { min: 1 });
  if (topK > E) throw fileError(cf, `top_k ${topK} is greater than num_experts ${E}`);
  const rslora = boolField(cfg, 'use_rslora', cf);
  const targets = parseTargetModules(cfg.target_modules, cf);
  if (typeof cfg.router_input !== 'string') throw fileError(cf, 'missing "router_input" (the layer-0 module whose input the router reads, e.g. "self_attn.q_proj")');
  const routerMod = parseRouterInput(cfg.router_input);
  if (!routerMod) throw fileError(cf, `router_input "${cfg.router_input}" is not a module of layer 0 (e.g. "self_attn.q_proj", "mlp.gate_proj")`);
  const scaling = loraScaling(alpha, r, rslora) * spec.scale;

  const wf = folder.weightsFile;
  const w = openAdapterWeights(wf);
  try {
    const nl = base.num_layers;
    const targetIds = new Set(targets.map((m) => m.id));
    // canonical name -> file name
    const pairs = new Map<string, { A?: string; B?: string; shapeA?: number[]; shapeB?: number[] }>();
    let routerName: string | undefined;
    for (const [fileName, entry] of w.tensors) {
      if (fileName.startsWith('__pad__')) continue;
      const name = stripPrefix(fileName);
      if (name === undefined) throw fileError(wf, `unexpected tensor ${fileName} (not part of the LoRA-Switch format)`);
      if (name === 'router.weight') {
        if (routerName !== undefined) throw fileError(wf, `duplicate router: ${routerName} and ${fileName}`);
        routerName = fileName;
        continue;
      }
      const m = EXPERT_RE.exec(name);
      if (!m) throw fileError(wf, `unexpected tensor ${fileName} (not part of the LoRA-Switch format)`);
      const L = Number(m[1]);
      const mod = moduleByHfName(m[3]);
      const e = Number(m[4]);
      if (!mod || mod.section !== m[2]) throw fileError(wf, `unexpected tensor ${fileName}: ${m[2]}.${m[3]} is not an adapted linear of a Llama layer`);
      if (L >= nl) throw fileError(wf, `tensor ${fileName} is for layer ${L} but the model has ${nl} layers (base shapes disagree with the model)`);
      if (!targetIds.has(mod.id)) throw fileError(wf, `extra tensor ${fileName}: ${mod.hf} is not in target_modules of ${cf}`);
      if (e >= E) throw fileError(wf, `extra tensor ${fileName}: expert ${e} but num_experts is ${E}`);
      const key = `${L}.${mod.id}.${e}`;
      const p = pairs.get(key) ?? {};
      if (m[5] === 'A') {
        if (p.A) throw fileError(wf, `duplicate tensors ${p.A} and ${fileName}`);
        p.A = fileName; p.shapeA = entry.shape;
      } else {
        if (p.B) throw fileError(wf, `duplicate tensors ${p.B} and ${fileName}`);
        p.B = fileName; p.shapeB = entry.shape;
      }
      pairs.set(key, p);
    }
    if (!routerName) throw fileError(wf, 'missing tensor router.weight');
    const rs = w.tensors.get(routerName)!.shape;
    const [, routerIn] = moduleShape(base, routerMod);
    if (rs.length !== 2 || rs[0] !== E) throw fileError(wf, `${routerName} is ${fmtShape(rs)} but num_experts is ${E} (expected [${E}, ${routerIn}])`);
    if (rs[1] !== routerIn) throw fileError(wf, `${routerName} is ${fmtShape(rs)} but router_input ${routerMod.section}.${routerMod.hf} has in_features ${routerIn} (router width does not match router_input)`);

    const tensors: AdapterTensor[] = [{ name: 'router.weight', dtype: opts.dtype, shape: [E, routerIn], data: w.readF32(routerName) }];
    for (let L = 0; L < nl; L++) {
      for (const mod of targets) {
        const [out, inF] = moduleShape(base, mod);
        const experts: { A: Float32Array; B: Float32Array }[] = [];
        for (let e = 0; e < E; e++) {
          const canon = `layers.${L}.${mod.section}.${mod.hf}.experts.${e}`;
          const p = pairs.get(`${L}.${mod.id}.${e}`);
          if (!p) throw fileError(wf, `missing expert ${e} of layers.${L}.${mod.section}.${mod.hf} (no ${canon}.lora_A.weight / lora_B.weight; num_experts is ${E})`);
          if (!p.A) throw fileError(wf, `missing tensor ${canon}.lora_A.weight`);
          if (!p.B) throw fileError(wf, `missing tensor ${canon}.lora_B.weight`);
          const pair: LoraPair = { nameA: p.A, nameB: p.B, shapeA: p.shapeA!, shapeB: p.shapeB! };
          checkPair(wf, `layers.${L}.${mod.section}.${mod.hf}`, pair, base, mod, r);
          experts.push({ A: w.readF32(p.A), B: w.readF32(p.B) });
        }
        tensors.push(...stackExperts(`layers.${L}.${mod.engine}`, opts.dtype, experts, r, out, inF, scaling));
      }
    }
    return [{
      desc: { router_kind: RouterKind.PREGATED, num_experts: E, top_k: topK, router_input: routerMod.id, ffn_experts: 0 },
      meta: {
        name: path.basename(path.resolve(folder.dir)),
        source: path.resolve(folder.dir),
        peft_type: 'LORA_SWITCH',
        router_kind: 'pregated',
        num_experts: E,
        top_k: topK,
        router_input: `${routerMod.section}.${routerMod.hf}`,
        ffn_experts: false,
        target_modules: targets.map((m) => m.hf),
        scale: spec.scale,
      },
      tensors,
    }];
  } finally {
    w.close();
  }
}

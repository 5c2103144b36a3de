// Independent fp64 reference forward for Llama / Mistral / Qwen2 checkpoints in Hugging Face layout, written
// from transformers' modelling code (modeling_llama.py, modeling_rope_utils.py), plus the adapter maths of
// issue 3 (LoRA-Switch pre-gated routing, PEFT LoRA, MixLoRA). Plain TypeScript over Float64Array; reads the HF
// folder itself (own safetensors reader). Imports nothing from src/.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readHfWeights, readSafetensorsF64, roundTo, type StDtype, type StTensorOut } from './safetensors.js';

export type ModuleName = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
const MODULES: ModuleName[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const MLP: ModuleName[] = ['gate_proj', 'up_proj', 'down_proj'];
const modPath = (m: ModuleName) => (MLP.includes(m) ? `mlp.${m}` : `self_attn.${m}`);

export interface RefConfig {
  arch: 'llama' | 'mistral' | 'qwen2';
  vocabSize: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  tie: boolean;
  rope: { type: 'default' | 'linear' | 'llama3'; theta: number; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMax: number };
}

/** Parse config.json as transformers does (both rope key styles). */
export function parseHfConfig(cfg: any): RefConfig {
  const archs: string[] = cfg.architectures ?? [];
  const arch = archs.includes('Qwen2ForCausalLM') || cfg.model_type === 'qwen2'
    ? 'qwen2'
    : archs.includes('MistralForCausalLM') || cfg.model_type === 'mistral' ? 'mistral' : 'llama';
  const heads = cfg.num_attention_heads;
  const rp = cfg.rope_parameters ?? null;
  const rs = rp ?? cfg.rope_scaling ?? null;
  const theta = rp?.rope_theta ?? cfg.rope_theta ?? 10000;
  const type = (rs?.rope_type ?? rs?.type ?? 'default') as RefConfig['rope']['type'];
  if (!['default', 'linear', 'llama3'].includes(type)) throw new Error(`reference: rope type ${type} not modelled`);
  return {
    arch,
    vocabSize: cfg.vocab_size,
    hidden: cfg.hidden_size,
    intermediate: cfg.intermediate_size,
    layers: cfg.num_hidden_layers,
    heads,
    kvHeads: cfg.num_key_value_heads ?? heads,
    headDim: cfg.head_dim ?? cfg.hidden_size / heads,
    eps: cfg.rms_norm_eps,
    tie: cfg.tie_word_embeddings ?? false,
    rope: {
      type,
      theta,
      factor: rs?.factor ?? 1,
      lowFreqFactor: rs?.low_freq_factor ?? 1,
      highFreqFactor: rs?.high_freq_factor ?? 4,
      originalMax: rs?.original_max_position_embeddings ?? cfg.max_position_embeddings,
    },
  };
}

/** inv_freq exactly as transformers' _compute_default/_linear/_llama3 rope parameters (in fp64). */
export function ropeInvFreq(c: RefConfig): Float64Array {
  const d = c.headDim;
  const inv = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) inv[i] = 1 / Math.pow(c.rope.theta, (2 * i) / d);
  if (c.rope.type === 'linear') for (let i = 0; i < inv.length; i++) inv[i] /= c.rope.factor;
  if (c.rope.type === 'llama3') {
    const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMax: old } = c.rope;
    const lowWl = old / lo;
    const highWl = old / hi;
    for (let i = 0; i < inv.length; i++) {
      const wl = (2 * Math.PI) / inv[i];
      let f = wl > lowWl ? inv[i] / factor : inv[i];
      const smooth = (old / wl - lo) / (hi - lo);
      const medium = !(wl < highWl) && !(wl > lowWl);
      if (medium) f = (1 - smooth) * (f / factor) + smooth * f;
      inv[i] = f;
    }
  }
  return inv;
}

// ---------------------------------------------------------------------------------------------
// small fp64 linear algebra

/** y = W x (+ b), W row-major [out, in] */
export function matvec(W: Float64Array, out: number, inn: number, x: Float64Array, b?: Float64Array): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    const base = o * inn;
    for (let i = 0; i < inn; i++) s += W[base + i] * x[i];
    y[o] = b ? s + b[o] : s;
  }
  return y;
}

export function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = w[i] * (x[i] * inv);
  return y;
}

export const silu = (v: number) => v / (1 + Math.exp(-v));

export function softmax(v: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < v.length; i++) m = Math.max(m, v[i]);
  const out = new Float64Array(v.length);
  let s = 0;
  for (let i = 0; i < v.length; i++) { out[i] = Math.exp(v[i] - m); s += out[i]; }
  for (let i = 0; i < v.length; i++) out[i] /= s;
  return out;
}

/** softmax over all, keep top-k (ties: lower index), renormalise */
export function routeTopK(logits: ArrayLike<number>, k: number): { experts: number[]; gates: number[]; probs: Float64Array } {
  const p = softmax(logits);
  const idx = Array.from(p.keys()).sort((a, b) => (p[b] !== p[a] ? p[b] - p[a] : a - b)).slice(0, k);
  const sum = idx.reduce((s, i) => s + p[i], 0);
  return { experts: idx, gates: idx.map((i) => p[i] / sum), probs: p };
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** ||a - ref|| / ||ref|| */
export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) throw new Error(`relErr: length ${a.length} vs ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return Math.sqrt(num / den);
}

export function flat(rows: ArrayLike<number>[]): Float64Array {
  const n = rows.reduce((s, r) => s + r.length, 0);
  const out = new Float64Array(n);
  let o = 0;
  for (const r of rows) { out.set(Array.from(r), o); o += r.length; }
  return out;
}

// ---------------------------------------------------------------------------------------------
// adapters (reference-side representation)

export interface LoraPair { A: Float64Array; B: Float64Array; r: number; inn: number; out: number; scaling: number }

export interface RefLoraSwitch {
  kind: 'lora-switch';
  numExperts: number;
  topK: number;
  routerModule: ModuleName; // in layer 0
  router: Float64Array; // [E, in]
  routerIn: number;
  /** `${layer}.${module}` -> per-expert pairs (scaling = alpha/r) */
  experts: Map<string, LoraPair[]>;
}

export interface RefPeft {
  kind: 'peft';
  /** `${layer}.${module}` -> pair with scaling = userScale * alpha/r (or alpha/sqrt(r)) */
  modules: Map<string, LoraPair>;
}

export interface RefMixLora {
  kind: 'mixlora';
  numExperts: number;
  topK: number;
  gates: Float64Array[]; // per layer [E, H]
  attn: Map<string, LoraPair>; // `${L}.${m}` plain LoRA on attention
  experts: Map<string, LoraPair[]>; // `${L}.${m}` for gate/up/down, per expert
}

export type RefAdapter = RefLoraSwitch | RefPeft | RefMixLora;

export interface AdapterLoadOptions {
  /** emulate the converter's storage on a model of this dtype: A and B each rounded once to it, the scaling rounded
   *  to fp32 and applied separately (lora_scale, docs/FORMAT.md) */
  foldRound?: StDtype;
}

function pair(A: StTensorOut, B: StTensorOut, scaling: number, name: string, expectIn: number, expectOut: number, fold?: StDtype): LoraPair {
  const [r, inn] = A.shape;
  const [out, rb] = B.shape;
  if (rb !== r || inn !== expectIn || out !== expectOut)
    throw new Error(`reference: ${name}: lora shapes A[${A.shape}] B[${B.shape}] do not fit [${expectOut}, ${expectIn}]`);
  if (fold) {
    const Br = B.data.map((v) => roundTo(fold, v));
    const Ar = A.data.map((v) => roundTo(fold, v));
    return { A: Ar, B: Br, r, inn, out, scaling: Math.fround(scaling) };
  }
  return { A: A.data, B: B.data, r, inn, out, scaling };
}

function readAdapter(dir: string) {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
  const st = readSafetensorsF64(path.join(dir, 'adapter_model.safetensors')).tensors;
  return { config, st };
}

function need(st: Map<string, StTensorOut>, name: string, dir: string): StTensorOut {
  const t = st.get(name);
  if (!t) throw new Error(`reference: ${dir}: missing tensor ${name}`);
  return t;
}

// ---------------------------------------------------------------------------------------------

export interface RouteRecord {
  /** LoRA-Switch: one entry; MixLoRA: one per layer */
  experts: number[][];
  gates: number[][];
}

export interface ForwardResult {
  logits: Float64Array[]; // one row per position
  hidden: Float64Array[]; // final normed hidden per position
  routes: RouteRecord[][]; // [adapter][position]
}

export class RefModel {
  readonly config: RefConfig;
  readonly hfConfig: any;
  private w = new Map<string, Float64Array>();
  readonly invFreq: Float64Array;

  constructor(hfConfig: any, weights: Map<string, StTensorOut>, opts: { roundWeights?: StDtype } = {}) {
    this.hfConfig = hfConfig;
    this.config = parseHfConfig(hfConfig);
    for (const [k, t] of weights) {
      let d = t.data;
      if (opts.roundWeights && t.shape.length === 2) d = d.map((v) => roundTo(opts.roundWeights!, v));
      else if (opts.roundWeights) d = d.map((v) => Math.fround(v)); // 1-D tensors are stored F32
      this.w.set(k, d);
    }
    this.invFreq = ropeInvFreq(this.config);
    this.check();
  }

  /** Load an HF folder. roundWeights emulates `convert --dtype` (2-D weights rounded to nearest-even). */
  static load(dir: string, opts: { roundWeights?: StDtype } = {}): RefModel {
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    return new RefModel(cfg, readHfWeights(dir), opts);
  }

  private check() {
    const c = this.config;
    const need = (n: string, len: number) => {
      const t = this.w.get(n);
      if (!t) throw new Error(`reference: missing ${n}`);
      if (t.length !== len) throw new Error(`reference: ${n} has ${t.length} values, expected ${len}`);
    };
    need('model.embed_tokens.weight', c.vocabSize * c.hidden);
    if (!c.tie) need('lm_head.weight', c.vocabSize * c.hidden);
    for (let L = 0; L < c.layers; L++) {
      need(`model.layers.${L}.self_attn.q_proj.weight`, c.heads * c.headDim * c.hidden);
      need(`model.layers.${L}.self_attn.k_proj.weight`, c.kvHeads * c.headDim * c.hidden);
      need(`model.layers.${L}.self_attn.o_proj.weight`, c.hidden * c.heads * c.headDim);
      need(`model.layers.${L}.mlp.down_proj.weight`, c.hidden * c.intermediate);
    }
  }

  weight(name: string): Float64Array {
    const t = this.w.get(name);
    if (!t) throw new Error(`reference: missing ${name}`);
    return t;
  }

  /** [out, in] of a module */
  moduleShape(m: ModuleName): { out: number; inn: number } {
    const c = this.config;
    switch (m) {
      case 'q_proj': return { out: c.heads * c.headDim, inn: c.hidden };
      case 'k_proj': case 'v_proj': return { out: c.kvHeads * c.headDim, inn: c.hidden };
      case 'o_proj': return { out: c.hidden, inn: c.heads * c.headDim };
      case 'gate_proj': case 'up_proj': return { out: c.intermediate, inn: c.hidden };
      case 'down_proj': return { out: c.hidden, inn: c.intermediate };
    }
  }

  /** base linear of layer L, module m (with bias when the checkpoint has one) */
  baseLinear(L: number, m: ModuleName, x: Float64Array): Float64Array {
    const { out, inn } = this.moduleShape(m);
    const p = `model.layers.${L}.${modPath(m)}`;
    return matvec(this.weight(`${p}.weight`), out, inn, x, this.w.get(`${p}.bias`));
  }

  // ------------------------------------------------------------------ adapters loading

  loadLoraSwitch(dir: string, o: AdapterLoadOptions = {}): RefLoraSwitch {
    const { config: ac, st } = readAdapter(dir);
    if (ac.peft_type !== 'LORA_SWITCH') throw new Error(`reference: ${dir}: peft_type ${ac.peft_type}`);
    const E = ac.num_experts;
    const rIn = String(ac.router_input).split('.');
    const routerModule = rIn[rIn.length - 1] as ModuleName;
    const routerIn = this.moduleShape(routerModule).inn;
    const router = need(st, 'router.weight', dir);
    if (router.shape[0] !== E || router.shape[1] !== routerIn) throw new Error(`reference: router shape [${router.shape}]`);
    const scaling = ac.lora_alpha / (ac.use_rslora ? Math.sqrt(ac.r) : ac.r);
    const experts = new Map<string, LoraPair[]>();
    for (let L = 0; L < this.config.layers; L++)
      for (const m of ac.target_modules as ModuleName[]) {
        const { out, inn } = this.moduleShape(m);
        const list: LoraPair[] = [];
        for (let e = 0; e < E; e++) {
          const p = `layers.${L}.${modPath(m)}.experts.${e}`;
          list.push(pair(need(st, `${p}.lora_A.weight`, dir), need(st, `${p}.lora_B.weight`, dir), scaling, p, inn, out, o.foldRound));
        }
        experts.set(`${L}.${m}`, list);
      }
    return {
      kind: 'lora-switch', numExperts: E, topK: ac.top_k, routerModule, routerIn, experts,
      router: o.foldRound ? router.data.map((v) => roundTo(o.foldRound!, v)) : router.data,
    };
  }

  /** PEFT LoRA adapter with a user scale (llama.cpp's --lora-scaled). */
  loadPeft(dir: string, userScale = 1, o: AdapterLoadOptions = {}): RefPeft {
    const { config: ac, st } = readAdapter(dir);
    if (ac.peft_type !== 'LORA') throw new Error(`reference: ${dir}: peft_type ${ac.peft_type}`);
    const modules = new Map<string, LoraPair>();
    const tm = ac.target_modules;
    const rp: Record<string, number> = ac.rank_pattern ?? {};
    const ap: Record<string, number> = ac.alpha_pattern ?? {};
    const layersTo: number[] | null = typeof ac.layers_to_transform === 'number' ? [ac.layers_to_transform] : ac.layers_to_transform ?? null;
    for (let L = 0; L < this.config.layers; L++)
      for (const m of MODULES) {
        const key = `model.layers.${L}.${modPath(m)}`;
        let hit: boolean;
        if (tm === 'all-linear') hit = true;
        else if (typeof tm === 'string') hit = new RegExp(`^(?:${tm})$`).test(key);
        else hit = (tm as string[]).some((t) => key === t || key.endsWith(`.${t}`));
        if (hit && layersTo && !layersTo.includes(L)) hit = false;
        if (!hit) continue;
        const rk = Object.keys(rp).find((p) => new RegExp(`^(.*\\.)?(${p})$`).test(key));
        const ak = Object.keys(ap).find((p) => new RegExp(`^(.*\\.)?(${p})$`).test(key));
        const r = rk !== undefined ? rp[rk] : ac.r;
        const alpha = ak !== undefined ? ap[ak] : ac.lora_alpha;
        const scaling = (userScale * alpha) / (ac.use_rslora ? Math.sqrt(r) : r);
        const { out, inn } = this.moduleShape(m);
        const A = need(st, `base_model.model.${key}.lora_A.weight`, dir);
        if (A.shape[0] !== r) throw new Error(`reference: ${key}: rank ${A.shape[0]} but config says ${r}`);
        modules.set(`${L}.${m}`, pair(A, need(st, `base_model.model.${key}.lora_B.weight`, dir), scaling, key, inn, out, o.foldRound));
      }
    return { kind: 'peft', modules };
  }

  loadMixLora(dir: string, o: AdapterLoadOptions = {}): RefMixLora {
    const { config: ac, st } = readAdapter(dir);
    if (ac.peft_type !== 'MIXLORA') throw new Error(`reference: ${dir}: peft_type ${ac.peft_type}`);
    const E = ac.num_experts;
    const upstream = st.has('mixlora.layers.0.gate.weight');
    const scaling = ac.lora_alpha / (ac.use_rslora ? Math.sqrt(ac.r) : ac.r);
    const gates: Float64Array[] = [];
    const attn = new Map<string, LoraPair>();
    const experts = new Map<string, LoraPair[]>();
    for (let L = 0; L < this.config.layers; L++) {
      const g = need(st, upstream ? `mixlora.layers.${L}.gate.weight` : `mixlora.layers.${L}.mlp.moe_gate.weight`, dir);
      if (g.shape[0] !== E || g.shape[1] !== this.config.hidden) throw new Error(`reference: moe gate shape [${g.shape}]`);
      gates.push(o.foldRound ? g.data.map((v) => roundTo(o.foldRound!, v)) : g.data);
      for (const m of ac.target_modules as ModuleName[]) {
        const { out, inn } = this.moduleShape(m);
        if (!MLP.includes(m)) {
          const p = `mixlora.layers.${L}.self_attn.${m}`;
          attn.set(`${L}.${m}`, pair(need(st, `${p}.lora_A.weight`, dir), need(st, `${p}.lora_B.weight`, dir), scaling, p, inn, out, o.foldRound));
        } else {
          const list: LoraPair[] = [];
          for (let e = 0; e < E; e++) {
            const p = upstream ? `mixlora.layers.${L}.experts.${e}.${m}` : `mixlora.layers.${L}.mlp.${m}.experts.${e}`;
            list.push(pair(need(st, `${p}.lora_A.weight`, dir), need(st, `${p}.lora_B.weight`, dir), scaling, p, inn, out, o.foldRound));
          }
          experts.set(`${L}.${m}`, list);
        }
      }
    }
    return { kind: 'mixlora', numExperts: E, topK: ac.top_k, gates, attn, experts };
  }

  // ------------------------------------------------------------------ forward

  /** Logits of every position of `tokens` (positions 0..n-1), with optional adapters. */
  /**
   * opts.mergeRound: emulate merge mode (see `linear` below); opts.mergeAt(t) (default: every position) limits that to
   * the positions it accepts -- the others keep their deltas (merge mode's batched prompts: only decode steps merge).
   * opts.forceRoutes[ai][t]: use these experts/gates for
   * pre-gated adapter ai at token t instead of its router's (e.g. the engine's fp32 gates, so that a merge-mode
   * comparison is not dominated by weight-dtype rounding flips caused by gates differing in their last bit).
   * opts.kvRound: the KV cache's element type (lsw_model_config.kv_dtype): K (after RoPE) and V are rounded to it, to
   * nearest even, as they are stored; attention reads the rounded values, the new position's too.
   */
  forward(
    tokens: number[], adapters: RefAdapter[] = [],
    opts: {
      lastOnly?: boolean; mergeRound?: StDtype; mergeAt?: (t: number) => boolean;
      forceRoutes?: ({ experts: number[]; gates: number[] } | undefined)[][];
      kvRound?: StDtype;
    } = {},
  ): ForwardResult {
    const c = this.config;
    const T = tokens.length;
    const H = c.hidden;
    const hd = c.headDim;
    const mix = adapters.filter((a): a is RefMixLora => a.kind === 'mixlora');
    if (mix.length > 1) throw new Error('reference: at most one MixLoRA adapter');
    const routes: RouteRecord[][] = adapters.map(() => []);
    // pre-gated gates per adapter per token, computed lazily when layer 0's router_input input exists
    const pre: ({ experts: number[]; gates: number[] } | undefined)[][] = adapters.map(() => new Array(T));
    const emb = this.weight('model.embed_tokens.weight');
    let h: Float64Array[] = tokens.map((t) => {
      if (!(t >= 0 && t < c.vocabSize)) throw new Error(`reference: token ${t} out of range`);
      return emb.slice(t * H, (t + 1) * H);
    });

    const loraDelta = (p: LoraPair, x: Float64Array, y: Float64Array, g: number) => {
      const ax = matvec(p.A, p.r, p.inn, x);
      const s = g * p.scaling;
      for (let o = 0; o < p.out; o++) {
        let acc = 0;
        const base = o * p.r;
        for (let j = 0; j < p.r; j++) acc += p.B[base + j] * ax[j];
        y[o] += s * acc;
      }
    };

    /**
     * W += g · s · B A with the SGMM arithmetic of docs/FORMAT.md, in fp32: g' = fp32(g · s) with s = fp32(scaling)
     * (lora_scale), c = fp32(g' · B[o][j]), W[o][i] = fp32(W[o][i] + c · A[j][i]) (c · A is exact in fp64, so this is
     * fmaf up to a rare double rounding).
     */
    const addOuter = (W: Float64Array, p: LoraPair, g: number) => {
      const f = Math.fround;
      const gs = f(f(g) * f(p.scaling));
      for (let o = 0; o < p.out; o++)
        for (let j = 0; j < p.r; j++) {
          const c = f(gs * f(p.B[o * p.r + j]));
          const row = o * p.inn;
          const arow = j * p.inn;
          for (let i = 0; i < p.inn; i++) W[row + i] = f(W[row + i] + c * p.A[arow + i]);
        }
    };

    /**
     * adapted linear: base + every adapter's delta; for MixLoRA MLP modules `expert` selects the expert.
     * opts.mergeRound emulates merge mode (docs/FORMAT.md "SGMM arithmetic"): the token's LoRA-Switch and PEFT
     * deltas are added to the weight, which is rounded once to that dtype, then multiplied (MixLoRA's FFN experts
     * too when top_k is 1; with top_k > 1 they stay deltas — the engine refuses merge mode for them).
     */
    const linear = (L: number, m: ModuleName, x: Float64Array, t: number, expert?: number): Float64Array => {
      const key = `${L}.${m}`;
      let merged: Float64Array | null = null;
      const mergeInto = (p: LoraPair, g: number) => {
        if (!merged) merged = this.weight(`model.layers.${L}.${modPath(m)}.weight`).map((v) => Math.fround(v));
        addOuter(merged, p, g);
      };
      const deltas: Array<[LoraPair, number]> = [];
      const add = (p: LoraPair, g: number, mergeable: boolean) => {
        if (opts.mergeRound && mergeable && (opts.mergeAt?.(t) ?? true)) mergeInto(p, g);
        else deltas.push([p, g]);
      };
      adapters.forEach((a, ai) => {
        if (a.kind === 'peft') {
          const p = a.modules.get(key);
          if (p) add(p, 1, true);
        } else if (a.kind === 'lora-switch') {
          if (L === 0 && m === a.routerModule && !pre[ai][t]) {
            const r = routeTopK(matvec(a.router, a.numExperts, a.routerIn, x), a.topK);
            pre[ai][t] = opts.forceRoutes?.[ai]?.[t] ?? { experts: r.experts, gates: r.gates };
            routes[ai][t] = { experts: [r.experts], gates: [r.gates] };
          }
          const list = a.experts.get(key);
          if (!list) return;
          const g = pre[ai][t];
          if (!g) throw new Error(`reference: layer ${L} ${m} is adapted but runs before the router input (layer 0 ${a.routerModule})`);
          g.experts.forEach((e, k) => add(list[e], g.gates[k], true));
        } else {
          const p = a.attn.get(key);
          if (p) add(p, 1, true);
          const list = a.experts.get(key);
          if (list) {
            if (expert === undefined) throw new Error('reference: MixLoRA MLP module outside expert');
            // a MixLoRA expert's FFN merges exactly only with top_k 1 (gate 1): docs/FORMAT.md "Layer-wise adapters"
            add(list[expert], 1, a.topK === 1);
          }
        }
      });
      let y: Float64Array;
      if (merged) {
        const W = (merged as Float64Array).map((v) => roundTo(opts.mergeRound!, v));
        const { out, inn } = this.moduleShape(m);
        y = matvec(W, out, inn, x, this.w.get(`model.layers.${L}.${modPath(m)}.bias`));
      } else {
        y = this.baseLinear(L, m, x);
      }
      for (const [p, g] of deltas) loraDelta(p, x, y, g);
      return y;
    };

    const rope = (v: Float64Array, nh: number, pos: number) => {
      const half = hd / 2;
      for (let hh = 0; hh < nh; hh++) {
        const o = hh * hd;
        for (let i = 0; i < half; i++) {
          const ang = pos * this.invFreq[i];
          const cs = Math.cos(ang);
          const sn = Math.sin(ang);
          const x1 = v[o + i];
          const x2 = v[o + i + half];
          // q*cos + rotate_half(q)*sin, rotate_half(q) = cat(-q2, q1)
          v[o + i] = x1 * cs - x2 * sn;
          v[o + i + half] = x2 * cs + x1 * sn;
        }
      }
    };

    for (let L = 0; L < c.layers; L++) {
      const p = `model.layers.${L}`;
      const xa = h.map((x) => rmsnorm(x, this.weight(`${p}.input_layernorm.weight`), c.eps));
      const q = xa.map((x, t) => linear(L, 'q_proj', x, t));
      const k = xa.map((x, t) => linear(L, 'k_proj', x, t));
      const v = xa.map((x, t) => linear(L, 'v_proj', x, t));
      q.forEach((x, t) => rope(x, c.heads, t));
      k.forEach((x, t) => rope(x, c.kvHeads, t));
      if (opts.kvRound) for (const x of [...k, ...v]) x.forEach((val, i) => (x[i] = roundTo(opts.kvRound!, val)));
      const groups = c.heads / c.kvHeads;
      const scale = 1 / Math.sqrt(hd);
      const att = q.map((qt, t) => {
        const o = new Float64Array(c.heads * hd);
        for (let hh = 0; hh < c.heads; hh++) {
          const kh = Math.floor(hh / groups);
          const sc = new Float64Array(t + 1);
          for (let s = 0; s <= t; s++) {
            let d = 0;
            for (let i = 0; i < hd; i++) d += qt[hh * hd + i] * k[s][kh * hd + i];
            sc[s] = d * scale;
          }
          const pr = softmax(sc);
          for (let s = 0; s <= t; s++) for (let i = 0; i < hd; i++) o[hh * hd + i] += pr[s] * v[s][kh * hd + i];
        }
        return o;
      });
      const ao = att.map((x, t) => linear(L, 'o_proj', x, t));
      h = h.map((x, t) => x.map((val, i) => val + ao[t][i]));
      const xf = h.map((x) => rmsnorm(x, this.weight(`${p}.post_attention_layernorm.weight`), c.eps));
      const mlpOut = xf.map((x, t) => {
        const ffn = (expert?: number) => {
          const g = linear(L, 'gate_proj', x, t, expert);
          const u = linear(L, 'up_proj', x, t, expert);
          const a = g.map((gv, i) => silu(gv) * u[i]);
          return linear(L, 'down_proj', a, t, expert);
        };
        if (!mix.length) return ffn();
        const m = mix[0];
        const ai = adapters.indexOf(m);
        const r = routeTopK(matvec(m.gates[L], m.numExperts, H, x), m.topK);
        const rec = (routes[ai][t] ??= { experts: [], gates: [] });
        rec.experts[L] = r.experts;
        rec.gates[L] = r.gates;
        const out = new Float64Array(H);
        r.experts.forEach((e, kk) => {
          const y = ffn(e);
          for (let i = 0; i < H; i++) out[i] += r.gates[kk] * y[i];
        });
        return out;
      });
      h = h.map((x, t) => x.map((val, i) => val + mlpOut[t][i]));
    }
    const fin = h.map((x) => rmsnorm(x, this.weight('model.norm.weight'), c.eps));
    const head = c.tie ? emb : this.weight('lm_head.weight');
    const logits = fin.map((x, t) => (opts.lastOnly && t !== T - 1 ? new Float64Array(0) : matvec(head, c.vocabSize, H, x)));
    return { logits, hidden: fin, routes };
  }

  /** Greedy decode of n tokens after `prompt`; also returns the smallest top1-top2 logit margin seen. */
  greedy(prompt: number[], n: number, adapters: RefAdapter[] = [], opts: { kvRound?: StDtype } = {}): { tokens: number[]; minMargin: number } {
    const seq = prompt.slice();
    const out: number[] = [];
    let minMargin = Infinity;
    for (let i = 0; i < n; i++) {
      const { logits } = this.forward(seq, adapters, { lastOnly: true, kvRound: opts.kvRound });
      const l = logits[logits.length - 1];
      const a = argmax(l);
      let second = -Infinity;
      for (let j = 0; j < l.length; j++) if (j !== a && l[j] > second) second = l[j];
      minMargin = Math.min(minMargin, l[a] - second);
      out.push(a);
      seq.push(a);
    }
    return { tokens: out, minMargin };
  }
}

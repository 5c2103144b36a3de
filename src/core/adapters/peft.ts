/**
 * PEFT LoRA folders (peft_type "LORA") as one STATIC engine adapter (E = 1, gate 1).
 *
 * Follows PEFT's matching rules (peft.tuners.tuners_utils.check_target_module_exists, peft.utils.get_pattern_key):
 * - target_modules as a list: a module key matches when it equals an entry or ends with "." + entry;
 *   as a string: a regular expression that must match the whole key; "all-linear": every linear but lm_head;
 *   absent: PEFT's default for Llama-family models, ["q_proj", "v_proj"].
 * - exclude_modules: the same rules, removing matches.
 * - layers_to_transform: an int or a list of layer indices.
 * - rank_pattern / alpha_pattern: the first key (in file order) with `^(.*\.)?(key)$` matching the module key
 *   (an exact key first) overrides r / lora_alpha.
 * - use_rslora: scaling lora_alpha / sqrt(r) instead of lora_alpha / r.
 * The module key is the name in the base model, e.g. "model.layers.3.self_attn.q_proj" (the tensor name without
 * "base_model.model." and without ".lora_A[.adapter].weight").
 */
import path from 'node:path';
import { fileError } from '../errors.js';
import { checkPair, intField, loraScaling, numField, boolField, stackExperts, type AdapterFolder } from './common.js';
import { MODULES, moduleByHfName, moduleShape, type AdapterBaseConfig, type ModuleInfo } from './modules.js';
import { RouterKind, type AdapterSpec, type AdapterTensor, type EngineAdapter, type ReadAdapterOptions } from './types.js';
import { openAdapterWeights } from './weights.js';

const PEFT_DEFAULT_LLAMA_TARGETS = ['q_proj', 'v_proj'];

/** Translate a Python `re` pattern to a JS RegExp source (named groups); anchored by the caller. */
function pyRegex(src: string, file: string, what: string): RegExp {
  const js = src.replace(/\(\?P<([A-Za-z_][A-Za-z0-9_]*)>/g, '(?<$1>').replace(/\(\?P=([A-Za-z_][A-Za-z0-9_]*)\)/g, '\\k<$1>');
  try {
    return new RegExp(`^(?:${js})$`);
  } catch (e) {
    throw fileError(file, `${what} ${JSON.stringify(src)} is not a regular expression this reader understands (${(e as Error).message})`);
  }
}

type Matcher = (key: string) => boolean;

function moduleMatcher(value: unknown, file: string, field: string): Matcher | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') {
    if (field === 'target_modules' && value === 'all-linear') return () => true;
    const re = pyRegex(value, file, `"${field}"`);
    return (key) => re.test(key);
  }
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    const list = value as string[];
    return (key) => list.some((t) => key === t || key.endsWith(`.${t}`));
  }
  throw fileError(file, `"${field}" must be a list of module names or a regular expression string`);
}

/** PEFT's get_pattern_key: which pattern key (if any) applies to a module key. */
function patternValue(pattern: Record<string, unknown>, key: string, file: string, field: string): number | undefined {
  const keys = Object.keys(pattern);
  let hit: string | undefined = keys.find((k) => k === key);
  if (hit === undefined) {
    for (const k of keys) {
      const src = k.replace(/\(\?P<([A-Za-z_][A-Za-z0-9_]*)>/g, '(?<$1>');
      let re: RegExp;
      try {
        re = new RegExp(`^(?:.*\\.)?(?:${src})$`);
      } catch (e) {
        throw fileError(file, `"${field}" key ${JSON.stringify(k)} is not a valid pattern (${(e as Error).message})`);
      }
      if (re.test(key)) { hit = k; break; }
    }
  }
  if (hit === undefined) return undefined;
  const v = pattern[hit];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw fileError(file, `"${field}" value for ${JSON.stringify(hit)} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function objField(cfg: Record<string, unknown>, key: string, file: string): Record<string, unknown> {
  const v = cfg[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw fileError(file, `"${key}" must be an object mapping module names to values`);
  return v as Record<string, unknown>;
}

function nonEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  if (typeof v === 'string') return v !== '';
  return true;
}

// base_model.model.<key>.lora_A[.adapter].weight
const TENSOR_RE = /^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B)(?:\.([^.]+))?\.(weight|bias)$/;
const KEY_RE = /^(.*?)layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)$/;

export function readPeftLora(spec: AdapterSpec, folder: AdapterFolder, base: AdapterBaseConfig, opts: ReadAdapterOptions): EngineAdapter[] {
  const cf = folder.configFile;
  const cfg = folder.config;
  const r0 = intField(cfg, 'r', cf, { min: 1, def: 8 });
  const alpha0 = numField(cfg, 'lora_alpha', cf, 8);
  const rslora = boolField(cfg, 'use_rslora', cf);
  if (boolField(cfg, 'use_dora', cf)) throw fileError(cf, 'DoRA adapters (use_dora: true) are not supported');
  if (boolField(cfg, 'fan_in_fan_out', cf)) throw fileError(cf, 'fan_in_fan_out: true is for GPT-2 style Conv1D layers; Llama-family linears store [out, in] and do not use it');
  if (boolField(cfg, 'lora_bias', cf)) throw fileError(cf, 'lora_bias: true (a bias on lora_B) is not supported');
  if (cfg.bias !== undefined && cfg.bias !== null && cfg.bias !== 'none') throw fileError(cf, `bias: ${JSON.stringify(cfg.bias)} (trained base biases) is not supported; only "none"`);
  if (nonEmpty(cfg.modules_to_save)) throw fileError(cf, `modules_to_save ${JSON.stringify(cfg.modules_to_save)} (fully trained modules) is not supported`);
  if (nonEmpty(cfg.layer_replication)) throw fileError(cf, 'layer_replication is not supported');
  if (nonEmpty(cfg.target_parameters)) throw fileError(cf, 'target_parameters (LoRA on raw parameters) is not supported');
  if (nonEmpty(cfg.trainable_token_indices)) throw fileError(cf, 'trainable_token_indices (trained embedding rows) is not supported');
  if (nonEmpty(cfg.alora_invocation_tokens)) throw fileError(cf, 'activated LoRA (alora_invocation_tokens) is not supported');
  const rankPattern = objField(cfg, 'rank_pattern', cf);
  const alphaPattern = objField(cfg, 'alpha_pattern', cf);

  const tm = cfg.target_modules ?? PEFT_DEFAULT_LLAMA_TARGETS;
  if (Array.isArray(tm)) {
    for (const t of tm) {
      if (t === 'lm_head' || t === 'embed_tokens' || (typeof t === 'string' && /(^|\.)(lm_head|embed_tokens)$/.test(t))) {
        throw fileError(cf, `LoRA on ${t} is not supported (only q/k/v/o/gate/up/down projections)`);
      }
    }
  }
  const target = moduleMatcher(tm, cf, 'target_modules')!;
  const exclude = moduleMatcher(cfg.exclude_modules, cf, 'exclude_modules');
  let layers: Set<number> | null = null;
  const ltt = cfg.layers_to_transform;
  if (ltt !== undefined && ltt !== null) {
    const list = typeof ltt === 'number' ? [ltt] : ltt;
    if (!Array.isArray(list) || !list.every((x) => Number.isInteger(x) && x >= 0)) throw fileError(cf, '"layers_to_transform" must be a layer index or a list of them');
    for (const L of list as number[]) if (L >= base.num_layers) throw fileError(cf, `layers_to_transform names layer ${L} but the model has ${base.num_layers} layers`);
    layers = new Set(list as number[]);
  }

  const wf = folder.weightsFile;
  const w = openAdapterWeights(wf);
  try {
    // collect pairs by module key
    const found = new Map<string, { L: number; mod: ModuleInfo; A?: string; B?: string }>();
    let prefix: string | undefined;
    let adapterName: string | undefined;
    for (const [name] of w.tensors) {
      if (name.startsWith('__pad__')) continue;
      if (name.includes('lora_magnitude_vector')) throw fileError(wf, `tensor ${name}: DoRA adapters are not supported`);
      if (name.includes('lora_embedding_')) throw fileError(wf, `tensor ${name}: LoRA on embeddings is not supported`);
      const m = TENSOR_RE.exec(name);
      if (!m) {
        if (/(^|\.)(lm_head|embed_tokens)\.weight$/.test(name)) throw fileError(wf, `tensor ${name} is a full module weight (modules_to_save); not supported`);
        throw fileError(wf, `unexpected tensor ${name} (not a PEFT LoRA tensor)`);
      }
      const [, key, kind, aname, suffix] = m;
      if (suffix === 'bias') throw fileError(wf, `tensor ${name}: a bias on lora_B (lora_bias) is not supported`);
      const an = aname ?? '';
      if (adapterName === undefined) adapterName = an;
      else if (adapterName !== an) throw fileError(wf, `tensors of two adapters in one file ("${adapterName || '(unnamed)'}" and "${an || '(unnamed)'}"); save them separately`);
      if (/(^|\.)(lm_head|embed_tokens)$/.test(key)) throw fileError(wf, `tensor ${name}: LoRA on ${key} is not supported (only q/k/v/o/gate/up/down projections)`);
      const km = KEY_RE.exec(key);
      const mod = km ? moduleByHfName(km[4]) : undefined;
      if (!km || !mod || mod.section !== km[3]) throw fileError(wf, `unexpected tensor ${name}: ${key} is not an adapted linear of a Llama layer`);
      if (prefix === undefined) prefix = km[1];
      else if (prefix !== km[1]) throw fileError(wf, `tensor ${name}: module path prefix "${km[1]}" differs from "${prefix}" used by other tensors`);
      const L = Number(km[2]);
      if (L >= base.num_layers) throw fileError(wf, `tensor ${name} is for layer ${L} but the model has ${base.num_layers} layers (base shapes disagree with the model)`);
      const entry = found.get(key) ?? { L, mod };
      if (kind === 'lora_A') entry.A = name;
      else entry.B = name;
      found.set(key, entry);
    }
    if (prefix === undefined) throw fileError(wf, 'holds no LoRA tensors');

    const isTarget = (key: string, L: number): boolean =>
      target(key) && !(exclude && exclude(key)) && (layers === null || layers.has(L));
    for (const [key, f] of found) {
      if (!isTarget(key, f.L)) throw fileError(wf, `extra tensor ${f.A ?? f.B}: ${key} is not selected by target_modules/exclude_modules/layers_to_transform of ${cf}`);
    }

    const tensors: AdapterTensor[] = [];
    const used = new Set<number>();
    const tag = adapterName ? `.${adapterName}` : '';
    for (let L = 0; L < base.num_layers; L++) {
      for (const mod of MODULES) {
        const key = `${prefix}layers.${L}.${mod.section}.${mod.hf}`;
        if (!isTarget(key, L)) continue;
        const f = found.get(key);
        const full = `base_model.model.${key}`;
        if (!f || !f.A) throw fileError(wf, `missing tensor ${full}.lora_A${tag}.weight (target_modules selects ${key})`);
        if (!f.B) throw fileError(wf, `missing tensor ${full}.lora_B${tag}.weight (target_modules selects ${key})`);
        const rPat = patternValue(rankPattern, key, cf, 'rank_pattern');
        const aPat = patternValue(alphaPattern, key, cf, 'alpha_pattern');
        const r = rPat ?? r0;
        const alpha = aPat ?? alpha0;
        if (!Number.isInteger(r) || r < 1) throw fileError(cf, `rank_pattern gives ${key} the rank ${r}`);
        checkPair(wf, key, { nameA: f.A, nameB: f.B, shapeA: w.tensors.get(f.A)!.shape, shapeB: w.tensors.get(f.B)!.shape }, base, mod, r);
        const [out, inF] = moduleShape(base, mod);
        const scaling = loraScaling(alpha, r, rslora) * spec.scale;
        tensors.push(...stackExperts(`layers.${L}.${mod.engine}`, opts.dtype, [{ A: w.readF32(f.A), B: w.readF32(f.B) }], r, out, inF, scaling));
        used.add(mod.id);
      }
    }
    if (tensors.length === 0) throw fileError(cf, `target_modules ${JSON.stringify(tm)} selects no q/k/v/o/gate/up/down projection of the model`);
    return [{
      desc: { router_kind: RouterKind.STATIC, num_experts: 1, top_k: 1, router_input: 0, ffn_experts: 0 },
      meta: {
        name: path.basename(path.resolve(folder.dir)),
        source: path.resolve(folder.dir),
        peft_type: 'LORA',
        router_kind: 'static',
        num_experts: 1,
        top_k: 1,
        router_input: null,
        ffn_experts: false,
        target_modules: MODULES.filter((m) => used.has(m.id)).map((m) => m.hf),
        scale: spec.scale,
      },
      tensors,
    }];
  } finally {
    w.close();
  }
}

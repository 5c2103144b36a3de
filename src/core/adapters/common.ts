/** Helpers shared by the adapter readers: folder layout, config fields, shape checks, stacking and scaling. */
import fs from 'node:fs';
import path from 'node:path';
import { fileError, UserError, ioReason } from '../errors.js';
import { moduleShape, type AdapterBaseConfig, type ModuleInfo } from './modules.js';
import type { AdapterDtype, AdapterTensor } from './types.js';

export interface AdapterFolder {
  dir: string;
  configFile: string;
  weightsFile: string;
  config: Record<string, unknown>;
}

/** Find adapter_config.json and adapter_model.safetensors of an adapter folder (or of the folder of a file in it). */
export function openAdapterFolder(p: string): AdapterFolder {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new UserError(`${p}: no such adapter folder`);
  }
  const dir = st.isDirectory() ? p : path.dirname(p);
  const configFile = path.join(dir, 'adapter_config.json');
  if (!fs.existsSync(configFile)) throw fileError(dir, 'not an adapter folder (no adapter_config.json)');
  let text: string;
  try {
    text = fs.readFileSync(configFile, 'utf8');
  } catch (e) {
    throw fileError(configFile, `cannot read (${ioReason(e)})`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw fileError(configFile, `not valid JSON (${(e as Error).message})`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw fileError(configFile, 'not a JSON object');
  const weightsFile = path.join(dir, 'adapter_model.safetensors');
  if (!fs.existsSync(weightsFile)) {
    const bin = path.join(dir, 'adapter_model.bin');
    if (fs.existsSync(bin)) {
      throw fileError(bin, 'PyTorch pickle weights are not read; convert them once: python -c "import torch, safetensors.torch as s; s.save_file({k: v.contiguous().clone() for k, v in torch.load(\'adapter_model.bin\', weights_only=True).items()}, \'adapter_model.safetensors\')"');
    }
    throw fileError(dir, 'no adapter_model.safetensors');
  }
  return { dir, configFile, weightsFile, config: config as Record<string, unknown> };
}

export function intField(cfg: Record<string, unknown>, key: string, file: string, opts: { min?: number; def?: number } = {}): number {
  let v = cfg[key];
  if (v === undefined || v === null) {
    if (opts.def !== undefined) return opts.def;
    throw fileError(file, `missing "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw fileError(file, `"${key}" must be an integer, got ${JSON.stringify(v)}`);
  if (opts.min !== undefined && v < opts.min) throw fileError(file, `"${key}" must be at least ${opts.min}, got ${v}`);
  return v;
}

export function numField(cfg: Record<string, unknown>, key: string, file: string, def?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (def !== undefined) return def;
    throw fileError(file, `missing "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw fileError(file, `"${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

export function boolField(cfg: Record<string, unknown>, key: string, file: string, def = false): boolean {
  const v = cfg[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'boolean') throw fileError(file, `"${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** The LoRA scaling: alpha / r, or rsLoRA's alpha / sqrt(r). */
export function loraScaling(alpha: number, r: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}

export function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/** One LoRA pair as read from the adapter file. */
export interface LoraPair {
  nameA: string;
  nameB: string;
  shapeA: number[];
  shapeB: number[];
}

/**
 * Check a pair against the base module: A [r, in], B [out, r], ranks equal, and equal to `rank` when given.
 * Returns the rank.
 */
export function checkPair(file: string, label: string, pair: LoraPair, base: AdapterBaseConfig, m: ModuleInfo, rank?: number): number {
  const [out, inF] = moduleShape(base, m);
  const { shapeA: a, shapeB: b } = pair;
  if (a.length !== 2) throw fileError(file, `${pair.nameA} has shape ${fmtShape(a)}, expected a matrix [r, ${inF}]`);
  if (b.length !== 2) throw fileError(file, `${pair.nameB} has shape ${fmtShape(b)}, expected a matrix [${out}, r]`);
  if (a[1] !== inF) throw fileError(file, `${pair.nameA} is ${fmtShape(a)} but the model's ${label} has in_features ${inF} (base shapes disagree with the model)`);
  if (b[0] !== out) throw fileError(file, `${pair.nameB} is ${fmtShape(b)} but the model's ${label} has out_features ${out} (base shapes disagree with the model)`);
  if (a[0] !== b[1]) throw fileError(file, `rank mismatch: ${pair.nameA} is ${fmtShape(a)} (rank ${a[0]}) but ${pair.nameB} is ${fmtShape(b)} (rank ${b[1]})`);
  if (a[0] < 1) throw fileError(file, `${pair.nameA} has rank 0`);
  if (rank !== undefined && a[0] !== rank) throw fileError(file, `rank mismatch: ${pair.nameA} has rank ${a[0]} but the config gives r = ${rank}`);
  return a[0];
}

/**
 * Stack E experts of one module into the engine layout: lora_A [E, r, in] and lora_B [E, out, r] as read (each
 * rounded once to `dtype` when written), plus lora_scale [1] F32 holding `scale`. The engine applies the scale in fp32
 * with the gate (docs/FORMAT.md "Adapter tensors"), so a 16-bit model stores A and B exactly as a 16-bit adapter
 * holds them instead of rounding B · scale a second time.
 */
export function stackExperts(
  prefix: string,
  dtype: AdapterDtype,
  experts: { A: Float32Array; B: Float32Array }[],
  rank: number,
  out: number,
  inF: number,
  scale: number,
): AdapterTensor[] {
  const E = experts.length;
  const A = new Float32Array(E * rank * inF);
  const B = new Float32Array(E * out * rank);
  for (let e = 0; e < E; e++) {
    A.set(experts[e].A, e * rank * inF);
    B.set(experts[e].B, e * out * rank);
  }
  return [
    { name: `${prefix}.lora_A`, dtype, shape: [E, rank, inF], data: A },
    { name: `${prefix}.lora_B`, dtype, shape: [E, out, rank], data: B },
    { name: `${prefix}.lora_scale`, dtype: 'f32', shape: [1], data: Float32Array.of(scale) },
  ];
}

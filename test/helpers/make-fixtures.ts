// Generate the fixture set for the GPU comparison with transformers/peft (scripts/gpu/compare_transformers.py).
//
//   npx tsx test/helpers/make-fixtures.ts <outdir> [--engine] [--mode merge|unfused|fused] [--only substr]
//
// Writes <outdir>/manifest.json, <outdir>/models/<variant>/ (HF folders), <outdir>/adapters/<name>/ and
// <outdir>/results/<case>.ts-ref.json (this repo's independent fp64 reference). With --engine it also runs
// the lora-switch engine (CPU backend, through src/core) and writes <outdir>/results/<case>.engine-cpu.json.
// Carry <outdir> to the GPU machine and run the Python script there; it needs nothing else from this repo.
//
// Result file format (one JSON object, the interchange with the Python side):
//   { "case": str, "source": str, "prompt_ids": int[], "vocab_size": int,
//     "logits": float[T][V]   (every prompt position),
//     "greedy_tokens": int[]  (greedy continuation of prompt_ids, gen_tokens long),
//     "error"?: str }
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  makeTinyCheckpoint, makeLoraSwitchAdapter, makeMixLoraAdapter, makePeftLoraAdapter, type CheckpointInfo,
} from './checkpoint.js';
import { RefModel, type RefAdapter } from './reference.js';
import { VARIANTS, PROMPT_IDS } from './variants.js';

export const GEN_TOKENS = 16;

export interface AdapterRef {
  path: string; // relative to outdir
  type: 'LORA' | 'LORA_SWITCH' | 'MIXLORA';
  scale: number;
}
export interface Case {
  name: string;
  model: string; // relative
  adapters: AdapterRef[];
  /** relative logits error an engine output may have (compare_transformers.py --tol when larger), for an
   *  ill-conditioned case */
  tol?: number;
}
export interface Manifest {
  version: 1;
  prompt_ids: number[];
  gen_tokens: number;
  cases: Case[];
}

export function makeFixtureSet(out: string): Manifest {
  const models = new Map<string, CheckpointInfo>();
  const cases: Case[] = [];
  for (const v of VARIANTS) {
    const info = makeTinyCheckpoint(path.join(out, 'models', v.name), v.opts);
    models.set(v.name, info);
    cases.push({ name: v.name, model: `models/${v.name}`, adapters: [] });
  }
  // (mistral-gqa-f16: 16-bit weights, so the GPU end-to-end run reaches the 16-bit fused-LoRA and SGMM kernels too)
  for (const baseName of ['llama3-gqa-rope-llama3-v5', 'qwen2-f32-sharded', 'mistral-gqa-f16']) {
    const b = models.get(baseName)!;
    const short = baseName.split('-')[0];
    const mk = (name: string, type: AdapterRef['type'], fn: (dir: string) => void) => {
      const rel = `adapters/${short}-${name}`;
      fn(path.join(out, rel));
      return { path: rel, type, scale: 1 } as AdapterRef;
    };
    // on the 16-bit base every adapter is saved in its dtype (the engine stores adapters in the model's dtype, so f32
    // adapter weights would be rounded there and the fp64 reference would not see the same values), the LoRA-Switch
    // ones at rank 16 (32-byte LoRA rows), so the CUDA vector LoRA GEMVs and the tensor-core SGMM take them
    const a16 = b.opts.dtype === 'f32' ? {} : { dtype: b.opts.dtype };
    const w16 = b.opts.dtype === 'f32' ? {} : { ...a16, r: 16 };
    const peftQv = mk('peft-qv', 'LORA', (d) => makePeftLoraAdapter(d, b, { targetModules: ['q_proj', 'v_proj'], r: 4, alpha: 8, ...a16, seed: 11 }));
    const peftAll = mk('peft-all-rslora-patterns', 'LORA', (d) =>
      makePeftLoraAdapter(d, b, { targetModules: 'all-linear', r: 4, alpha: 16, useRslora: true, rankPattern: { 'layers.1.self_attn.v_proj': 2, down_proj: 6 }, alphaPattern: { o_proj: 3 }, ...a16, seed: 12 }));
    const peftMlp = mk('peft-mlp-layer1', 'LORA', (d) => makePeftLoraAdapter(d, b, { targetModules: ['gate_proj', 'up_proj', 'down_proj'], layersToTransform: [1], ...a16, seed: 13 }));
    const ls42 = mk('lsw-e4k2-all', 'LORA_SWITCH', (d) => makeLoraSwitchAdapter(d, b, { numExperts: 4, topK: 2, ...w16, seed: 21 }));
    const ls31 = mk('lsw-e3k1-attn', 'LORA_SWITCH', (d) => makeLoraSwitchAdapter(d, b, { numExperts: 3, topK: 1, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], ...w16, seed: 22 }));
    const ls83 = mk('lsw-e8k3-mlp', 'LORA_SWITCH', (d) => makeLoraSwitchAdapter(d, b, { numExperts: 8, topK: 3, targetModules: ['gate_proj', 'up_proj', 'down_proj'], ...w16, seed: 23 }));
    const mix = mk('mixlora-e4k2', 'MIXLORA', (d) => makeMixLoraAdapter(d, b, { numExperts: 4, topK: 2, ...a16, seed: 24 }));
    const m = `models/${baseName}`;
    cases.push(
      { name: `${short}+peft-qv`, model: m, adapters: [peftQv] },
      // rsLoRA at alpha 16 with rank/alpha patterns makes large deltas that amplify fp32 rounding: the CPU engine's
      // own SIMD paths (scalar / AVX2 / AVX-512, each a different fp32 summation order) differ from each other by up to
      // 3.1e-5 here and lie 4e-6 to 2.5e-5 from the fp64 reference (session 35)
      { name: `${short}+peft-all-rslora-patterns`, model: m, adapters: [peftAll], tol: 5e-5 },
      { name: `${short}+peft-two-scaled`, model: m, adapters: [{ ...peftQv, scale: 0.7 }, { ...peftMlp, scale: -0.4 }] },
      { name: `${short}+lsw-e4k2-all`, model: m, adapters: [ls42] },
      { name: `${short}+lsw-e3k1-attn`, model: m, adapters: [ls31] },
      { name: `${short}+lsw-e8k3-mlp`, model: m, adapters: [ls83] },
      { name: `${short}+mixlora-e4k2`, model: m, adapters: [mix] },
    );
  }
  // multi-query attention (12 query heads on one KV head; the GPU's decode attention serves more than 8 per KV head
  // with a block per query head): LoRA-Switch on every linear in the base's dtype at rank 16, so the decode attention
  // also adds the q,k,v GEMV's deferred LoRA expand there
  {
    const b = models.get('llama-mqa-12q-f16')!;
    const rel = 'adapters/mqa-lsw-e4k2-all';
    makeLoraSwitchAdapter(path.join(out, rel), b, { numExperts: 4, topK: 2, dtype: b.opts.dtype, r: 16, seed: 25 });
    cases.push({ name: 'mqa+lsw-e4k2-all', model: 'models/llama-mqa-12q-f16', adapters: [{ path: rel, type: 'LORA_SWITCH', scale: 1 }] });
  }
  const manifest: Manifest = { version: 1, prompt_ids: PROMPT_IDS, gen_tokens: GEN_TOKENS, cases };
  fs.writeFileSync(path.join(out, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return manifest;
}

export function refAdapters(ref: RefModel, out: string, c: Case): RefAdapter[] {
  return c.adapters.map((a) => {
    const dir = path.join(out, a.path);
    if (a.type === 'LORA') return ref.loadPeft(dir, a.scale);
    if (a.type === 'LORA_SWITCH') return ref.loadLoraSwitch(dir);
    return ref.loadMixLora(dir);
  });
}

function writeResult(out: string, c: Case, source: string, body: Record<string, unknown>) {
  const dir = path.join(out, 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${c.name}.${source}.json`), JSON.stringify({ case: c.name, source, prompt_ids: PROMPT_IDS, ...body }));
}

async function main() {
  const args = process.argv.slice(2);
  const out = args.find((a) => !a.startsWith('--') && !['merge', 'unfused', 'fused'].includes(a));
  if (!out) {
    console.error('usage: tsx test/helpers/make-fixtures.ts <outdir> [--engine] [--mode merge|unfused|fused] [--only substr]');
    process.exit(2);
  }
  const engine = args.includes('--engine');
  const mode = args.includes('--mode') ? args[args.indexOf('--mode') + 1] : undefined;
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  fs.mkdirSync(out, { recursive: true });
  const manifest = makeFixtureSet(out);
  for (const c of manifest.cases) {
    if (only && !c.name.includes(only)) continue;
    const ref = RefModel.load(path.join(out, c.model));
    try {
      const ads = refAdapters(ref, out, c);
      const logits = ref.forward(PROMPT_IDS, ads).logits.map((r) => Array.from(r));
      const g = ref.greedy(PROMPT_IDS, GEN_TOKENS, ads);
      writeResult(out, c, 'ts-ref', { vocab_size: ref.config.vocabSize, logits, greedy_tokens: g.tokens, min_margin: g.minMargin });
      console.log(`${c.name}: reference written (min greedy margin ${g.minMargin.toFixed(4)})`);
    } catch (e) {
      writeResult(out, c, 'ts-ref', { error: String((e as Error).message) });
      console.log(`${c.name}: reference failed: ${(e as Error).message}`);
    }
    if (engine) {
      try {
        const { convertModel } = await import('../../src/core/convert.js');
        const { Model } = await import('../../src/core/model.js');
        const lsw = path.join(os.tmpdir(), `lsw-fx-${process.pid}-${c.name.replace(/[^a-z0-9-]/gi, '_')}.lsw`);
        await convertModel(path.join(out, c.model), lsw, { adapters: c.adapters.map((a) => ({ path: path.join(out, a.path), scale: a.scale })) } as any);
        const model = await Model.load(lsw, { backend: 'cpu', ...(mode ? { mode } : {}) } as any);
        try {
          const V = model.config.vocab_size;
          const flat = model.eval(PROMPT_IDS, true);
          const logits = [];
          for (let t = 0; t < PROMPT_IDS.length; t++) logits.push(Array.from(flat.subarray(t * V, (t + 1) * V)));
          model.reset();
          model.setSampler({ temperature: 0 });
          const toks = [await model.prefill(PROMPT_IDS)];
          while (toks.length < GEN_TOKENS) toks.push(await model.step(toks[toks.length - 1]));
          writeResult(out, c, 'engine-cpu', { vocab_size: V, logits, greedy_tokens: toks, mode: mode ?? null });
          console.log(`${c.name}: engine written`);
        } finally {
          model.free();
          fs.rmSync(lsw, { force: true });
        }
      } catch (e) {
        writeResult(out, c, 'engine-cpu', { error: String((e as Error).message) });
        console.log(`${c.name}: engine failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
}

// CPU prompt throughput of `fused` mode with a synthetic LoRA-Switch adapter and a synthetic MixLoRA adapter (whole-FFN
// experts), against the bare model, on a random F16 Llama of SmolLM-135M's widths (8 layers, the test tokenizer).
// Each adapter: 8 experts, top-2, rank 64 (MixLoRA: its experts on gate/up/down, plain LoRA on q,k,v,o).
//   node --import tsx scripts/bench/cpu-prompt-adapters.ts [--threads 2] [--prompt 256] [--reps 3] [--dir /tmp/lsw-cpa]
// Prints one line per model: prompt tokens/s of each repetition (one eval of the whole prompt after a reset).
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Model } from '../../src/core/model.js';
import { makeTinyCheckpoint, makeMixLoraAdapter, makeLoraSwitchAdapter } from '../../test/helpers/checkpoint.js';

const { values } = parseArgs({
  options: { threads: { type: 'string', default: '2' }, prompt: { type: 'string', default: '256' }, reps: { type: 'string', default: '3' }, dir: { type: 'string', default: '/tmp/lsw-cpa' } },
});
const threads = Number(values.threads), n = Number(values.prompt), reps = Number(values.reps), dir = values.dir!;
const info = makeTinyCheckpoint(path.join(dir, 'base'), {
  arch: 'llama', hidden: 576, heads: 9, kvHeads: 3, headDim: 64, intermediate: 1536, layers: 8, dtype: 'f16', seed: 3,
});
const mix = makeMixLoraAdapter(path.join(dir, 'mix'), info, { numExperts: 8, topK: 2, r: 64, seed: 4, dtype: 'f16' }).dir;
const ls = makeLoraSwitchAdapter(path.join(dir, 'ls'), info, { numExperts: 8, topK: 2, r: 64, seed: 5, dtype: 'f16' }).dir;
const prompt = Array.from({ length: n }, (_, i) => ((i * 37 + 11) % (info.vocabSize - 8)) + 5);
for (const [name, ad] of [['base', null], ['lora-switch', ls], ['mixlora', mix]] as const) {
  const m = await Model.load(info.dir, { backend: 'cpu', mode: 'fused', threads, adapters: ad ? [ad] : [] });
  const rates: string[] = [];
  for (let r = 0; r < reps; r++) {
    m.reset();
    const t0 = performance.now();
    m.eval(prompt, false);
    rates.push((n / ((performance.now() - t0) / 1000)).toFixed(1));
  }
  console.log(`${name}: ${rates.join(' ')} tokens/s (prompt ${n}, ${threads} threads)`);
  m.free();
}

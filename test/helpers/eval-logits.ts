// Child process for tests that need a fresh engine (e.g. LSW_SIMD is read once at library load):
//   tsx test/helpers/eval-logits.ts <model: .lsw or HF folder> <out.json> <comma-separated prompt ids> [gen]
// Writes the interchange format of make-fixtures.ts plus "single_logits" (the same positions fed one token at a
// time) and the engine's stats.
import * as fs from 'node:fs';
import { Model } from '../../src/core/model.js';

const [modelPath, outFile, idsArg, genArg] = process.argv.slice(2);
const prompt = idsArg.split(',').map(Number);
const gen = Number(genArg ?? 16);
const model = await Model.load(modelPath, { backend: 'cpu' });
try {
  const V = model.config.vocab_size;
  const flat = model.eval(prompt, true);
  const logits: number[][] = [];
  for (let t = 0; t < prompt.length; t++) logits.push(Array.from(flat.subarray(t * V, (t + 1) * V)));
  model.reset();
  const single: number[][] = [];
  for (const t of prompt) single.push(Array.from(model.eval([t], false)));
  model.reset();
  model.setSampler({ temperature: 0 });
  const toks = [await model.prefill(prompt)];
  while (toks.length < gen) toks.push(await model.step(toks[toks.length - 1]));
  const stats = model.stats();
  fs.writeFileSync(outFile, JSON.stringify({
    source: 'engine-cpu', prompt_ids: prompt, vocab_size: V, logits, single_logits: single, greedy_tokens: toks,
    stats: Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, Number(v)])),
  }));
} finally {
  model.free();
}

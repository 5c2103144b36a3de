// The CPU backend's fused mode on the thread pool (adapters.cpp): a decode step splits every shrink of a fused matrix
// over the threads, then each thread's rows of W x with their LoRA up-projections (fused_decode); a prompt groups its
// (token, slot) pairs by expert and runs each expert's shrink and up-projection (KernelTable::lora_up) over its tokens,
// split over the threads by rank rows and by output rows (fused_prompt). The other adapter tests use tiny hidden sizes, where the decode shrinks
// stay on one thread; here hidden 512 and rank 32 (q,k,v: 192 shrink rows x 512) take the threaded path. For a
// pre-gated LoRA-Switch adapter and a layer-wise MixLoRA adapter (layer-wise routers, whole-FFN experts), each next to
// a static PEFT LoRA: the prompt's logits at every position and every decode step's logits against the independent
// fp64 reference, 1 thread == 2 threads bit for bit, and the adapters visibly change the logits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Model } from '../src/core/model.js';
import { makeTinyCheckpoint, makeLoraSwitchAdapter, makeMixLoraAdapter, makePeftLoraAdapter } from './helpers/checkpoint.js';
import { RefModel, relErr, flat } from './helpers/reference.js';
import { assertLogitsClose, rows } from './helpers/compare.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-fdec-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const info = makeTinyCheckpoint(path.join(tmp, 'base'), {
  arch: 'llama', hidden: 512, heads: 8, kvHeads: 2, headDim: 64, intermediate: 1024, layers: 2, dtype: 'f32', seed: 23,
});
const ref = RefModel.load(info.dir);
const peft = makePeftLoraAdapter(path.join(tmp, 'peft'), info, { r: 32, seed: 5 }).dir;
const PROMPT = [1, 72, 101, 108, 258, 119];
const STEPS = [111, 260, 275, 46, 200, 17];

for (const kind of ['lora-switch', 'mixlora'] as const) {
  test(`fused prompt and decode on the thread pool: ${kind} E=4 top-2 r32 + PEFT r32, hidden 512`, async () => {
    const dir = path.join(tmp, kind);
    const a = kind === 'lora-switch'
      ? makeLoraSwitchAdapter(dir, info, { numExperts: 4, topK: 2, r: 32, seed: 41 }).dir
      : makeMixLoraAdapter(dir, info, { numExperts: 4, topK: 2, r: 32, seed: 43 }).dir;
    const refs = [kind === 'lora-switch' ? ref.loadLoraSwitch(a) : ref.loadMixLora(a), ref.loadPeft(peft, 1)];
    const seq = [...PROMPT, ...STEPS];
    const wantAll = ref.forward(seq, refs).logits;
    const want = wantAll.slice(PROMPT.length);
    assert.ok(relErr(flat(wantAll), flat(ref.forward(seq).logits)) > 1e-3, 'the adapters change the logits');
    const byThreads: Float32Array[][] = [];
    for (const threads of [1, 2]) {
      const m = await Model.load(info.dir, { backend: 'cpu', mode: 'fused', threads, adapters: [a, peft] });
      try {
        const prompt = rows(m.eval(PROMPT, true), info.vocabSize);
        assertLogitsClose(prompt, wantAll.slice(0, PROMPT.length), 1e-5, `${kind} fused prompt, ${threads} thread(s)`);
        byThreads.push([...prompt, ...STEPS.map((t) => m.eval([t]))]);
      } finally {
        m.free();
      }
      assertLogitsClose(byThreads[byThreads.length - 1].slice(PROMPT.length), want, 1e-5, `${kind} fused decode, ${threads} thread(s)`);
    }
    const [one, two] = byThreads;
    assert.ok(one.every((l, i) => l.every((v, j) => Object.is(v, two[i][j]))), '1 thread == 2 threads, bit for bit');
  });
}

test.run();

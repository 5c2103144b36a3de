// lsw_model_decode (Model.decode): several decode steps in one native call must leave exactly what as many
// lsw_model_step calls leave: the same tokens, positions, logits, routes and merge counters, in every mode, with
// greedy and seeded sampling, and ending right after a stop token.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { convertModel } from '../src/core/convert.js';
import { Model, type ModeName } from '../src/core/model.js';
import { NativeInvalidArgumentError } from '../src/core/errors.js';
import { generate } from '../src/core/generate.js';
import { makeTinyCheckpoint, makeLoraSwitchAdapter } from './helpers/checkpoint.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-decode-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const PROMPT = [5, 17, 42, 3, 99, 7];
const N = 24;
let lswPath = '';

async function lsw(): Promise<string> {
  if (lswPath) return lswPath;
  const base = makeTinyCheckpoint(path.join(dir, 'hf'), { arch: 'llama', layers: 2, seed: 7 });
  // sharp routing, so that the experts change from token to token (merge mode then really merges per step)
  makeLoraSwitchAdapter(path.join(dir, 'sw'), base, { numExperts: 4, topK: 2, routerGain: 4, seed: 11 });
  lswPath = path.join(dir, 'm.lsw');
  await convertModel(path.join(dir, 'hf'), lswPath, { dtype: 'f32', adapters: [{ path: path.join(dir, 'sw'), scale: 1 }] });
  return lswPath;
}

interface Run {
  tokens: number[];
  nPast: number;
  logits: Float32Array;
  experts: Int32Array;
  gates: Float32Array;
  merges: string;
}

async function run(mode: ModeName, temperature: number, how: 'step' | 'decode', n: number, stop: number[] = []): Promise<Run> {
  const m = await Model.load(await lsw(), { backend: 'cpu', threads: 1, mode });
  try {
    m.setSampler({ temperature, seed: 1234 });
    let t = await m.prefill(PROMPT);
    const tokens: number[] = [t];
    if (how === 'step') {
      for (let i = 0; i < n; i++) {
        t = await m.step(t);
        tokens.push(t);
        if (stop.includes(t)) break;
      }
    } else {
      tokens.push(...(await m.decode(t, n, stop)));
    }
    const r = m.routes(0, 0, m.nPast);
    const s = m.stats();
    return { tokens, nPast: m.nPast, logits: m.logits(), experts: r.experts, gates: r.gates, merges: `${s.merge_steps}/${s.merge_skipped}` };
  } finally {
    m.free();
  }
}

function same(a: Run, b: Run, what: string) {
  assert.equal(b.tokens, a.tokens, `${what}: tokens`);
  assert.is(b.nPast, a.nPast, `${what}: positions in the cache`);
  assert.ok(Buffer.from(b.logits.buffer).equals(Buffer.from(a.logits.buffer)), `${what}: last logits bit for bit`);
  assert.equal(Array.from(b.experts), Array.from(a.experts), `${what}: experts of every position`);
  assert.ok(Buffer.from(b.gates.buffer).equals(Buffer.from(a.gates.buffer)), `${what}: gates of every position`);
  assert.is(b.merges, a.merges, `${what}: merge steps / skipped`);
}

for (const mode of ['merge', 'fused', 'unfused'] as ModeName[]) {
  for (const temperature of [0, 1]) {
    test(`${mode}, temperature ${temperature}: decode(${N}) == ${N} steps; ending after a stop token == steps up to it`, async () => {
      const steps = await run(mode, temperature, 'step', N);
      assert.is(steps.tokens.length, N + 1);
      assert.is(steps.nPast, PROMPT.length + N);
      if (mode === 'merge') assert.ok(Number(steps.merges.split('/')[0]) > 1, `merge mode merged more than once: ${steps.merges}`);
      const experts = new Set(Array.from(steps.experts).slice(PROMPT.length * 2));
      assert.ok(experts.size > 1, 'the routing changes from token to token');
      same(steps, await run(mode, temperature, 'decode', N), `${mode} t=${temperature}`);
      // a stop token: the first decoded token (after a few) that has not been sampled before, so the end is exact
      const at = steps.tokens.findIndex((t, i) => i >= 5 && steps.tokens.indexOf(t) === i);
      assert.ok(at > 0, 'a token to stop at');
      const stop = [steps.tokens[at], 100000];
      const upTo = await run(mode, temperature, 'step', N, stop);
      assert.is(upTo.tokens.length, at + 1);
      same(upTo, await run(mode, temperature, 'decode', N, stop), `${mode} t=${temperature} stop at ${at}`);
    });
  }
}

test('decode: 0 steps do nothing; bad arguments are typed errors that name the argument', async () => {
  const m = await Model.load(await lsw(), { backend: 'cpu', threads: 1 });
  try {
    const t = await m.prefill(PROMPT);
    assert.equal(await m.decode(t, 0), []);
    assert.is(m.nPast, PROMPT.length);
    for (const [n, re] of [[-1, /n = -1 is negative/], [1 << 20, /context full/]] as Array<[number, RegExp]>) {
      try {
        await m.decode(t, n);
        assert.unreachable(`decode(${n}) should fail`);
      } catch (e) {
        if (n < 0) assert.instance(e, NativeInvalidArgumentError);
        assert.match((e as Error).message, re);
      }
    }
  } finally {
    m.free();
  }
});

test('generate (chunked decode) gives the tokens of a step-by-step loop; a --stop string inside a chunk ends the text there', async () => {
  const file = await lsw();
  const m = await Model.load(file, { backend: 'cpu', threads: 1, mode: 'fused' });
  let want: number[];
  let text: string;
  try {
    const ids = m.tokenizer.encode('hello world', true);
    let t = await m.prefill(ids);
    want = [t];
    for (let i = 1; i < 60; i++) want.push((t = await m.step(t)));
    text = m.tokenizer.decode(want, false);
  } finally {
    m.free();
  }
  const opts = { model: file, prompt: 'hello world', maxTokens: 60, temperature: 0, ignoreEos: true, mode: 'fused' as const, backend: 'cpu' as const, threads: 1 };
  const r = await generate(opts);
  assert.equal(r.tokens, want, 'the same 60 tokens');
  assert.is(r.stop_reason, 'max_tokens');
  // a stop string that first ends well inside the run: the text ends right before it, however far the engine ran
  const cut = text.indexOf(text.slice(30, 34));
  assert.ok(cut >= 4 && cut <= 30, `a stop string inside the text (at ${cut})`);
  const s = await generate({ ...opts, stop: [text.slice(30, 34)] });
  assert.is(s.stop_reason, 'stop');
  assert.is(s.text, text.slice(0, cut));
});

test.run();

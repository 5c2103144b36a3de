// End to end through the native engine: Model API and the generate command (piped and --json).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyCheckpoint } from '../helpers/checkpoint.js';
import { convertModel } from '../../src/core/convert.js';
import { Model } from '../../src/core/model.js';
import { ContextFullError, NativeError } from '../../src/core/errors.js';
import { runCli } from '../helpers/cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-gen-'));
const hf = path.join(dir, 'hf');
makeTinyCheckpoint(hf, { arch: 'llama', kvHeads: 2, dtype: 'f32', seed: 11 });
const lsw = path.join(dir, 'm.lsw');
await convertModel(hf, lsw, { dtype: 'f32' });

function cli(args: string[], input?: string) {
  return runCli(args, dir, { input });
}

function argmax(a: Float32Array): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i;
  return b;
}

test('Model: eval/prefill/step agree; greedy prefill picks the argmax; reset forgets', async () => {
  const m = await Model.load(lsw, { backend: 'cpu', threads: 1, maxContext: 64 });
  try {
    const ids = m.tokenizer.encode('hello world', true);
    const logits = m.eval(ids);
    assert.is(logits.length, m.config.vocab_size);
    assert.ok(logits.every(Number.isFinite));
    assert.is(m.nPast, ids.length);
    m.reset();
    assert.is(m.nPast, 0);
    m.setSampler({ temperature: 0 });
    const next = await m.prefill(ids);
    assert.is(next, argmax(logits));
    const after = await m.step(next);
    assert.is(m.nPast, ids.length + 1);
    m.reset();
    const l2 = m.eval([...ids, next]);
    assert.is(after, argmax(l2));
  } finally {
    m.free();
  }
});

test('Model: a full KV cache is a typed error carrying the engine message', async () => {
  const m = await Model.load(lsw, { backend: 'cpu', threads: 1, maxContext: 4 });
  try {
    m.eval([1, 2, 3]);
    let err: unknown;
    try {
      m.eval([4, 5]);
    } catch (e) {
      err = e;
    }
    assert.instance(err, NativeError);
    assert.instance(err, ContextFullError);
    assert.match((err as Error).message, /^lsw_model_eval: \S/);
    // the same through the asynchronous call (run on a worker thread)
    m.reset();
    let aerr: unknown;
    try {
      await m.prefill([1, 2, 3, 4, 5, 6]);
    } catch (e) {
      aerr = e;
    }
    assert.instance(aerr, ContextFullError);
    assert.match((aerr as Error).message, /^lsw_model_prefill: \S/);
    assert.not.match((aerr as Error).message, /LSW_E_/, `engine message, got ${(aerr as Error).message}`);
  } finally {
    m.free();
  }
});

test('Model.load of an HF folder converts to a temporary file and removes it', async () => {
  const before = new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('lora-switch-')));
  const m = await Model.load(hf, { backend: 'cpu', threads: 1, maxContext: 16 });
  const after = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('lora-switch-') && !before.has(f));
  assert.equal(after, []);
  const ref = await Model.load(lsw, { backend: 'cpu', threads: 1, maxContext: 16 });
  assert.equal([...m.eval([3, 4, 5])], [...ref.eval([3, 4, 5])]);
  m.free();
  ref.free();
});

test('generate --json: greedy is deterministic, tokens/prompt_tokens/timings present, piped text matches', () => {
  const args = ['generate', '-m', lsw, '-p', 'hello', '--max-tokens', '12', '--temperature', '0', '--ignore-eos', '--backend', 'cpu', '--threads', '1'];
  const a = cli([...args, '--json']);
  assert.is(a.code, 0, a.stderr);
  const j = JSON.parse(a.stdout);
  assert.is(j.tokens.length, 12);
  assert.is(j.stop_reason, 'max_tokens');
  assert.ok(j.prompt_tokens > 0);
  for (const k of ['prefill_ms', 'decode_ms', 'tokens_per_s']) assert.type(j.timings[k], 'number');
  const b = JSON.parse(cli([...args, '--json']).stdout);
  assert.equal(b.tokens, j.tokens);
  const piped = cli(args);
  assert.is(piped.code, 0, piped.stderr);
  assert.is(piped.stdout, `${j.text}\n`);
  const stdin = cli(args.filter((x, i) => x !== '-p' && args[i - 1] !== '-p'), 'hello\n');
  assert.is(stdin.stdout, piped.stdout, 'prompt from standard input');
  const positional = cli(['generate', lsw, ...args.slice(3)]);  // the model as the MODEL argument instead of -m
  assert.is(positional.code, 0, positional.stderr);
  assert.is(positional.stdout, piped.stdout, 'generate MODEL equals generate -m MODEL');
  const noP = args.slice(3).filter((x, i, a) => x !== '-p' && a[i - 1] !== '-p');
  const positionalStdin = cli(['generate', lsw, ...noP], 'hello\n');  // the piped prompt is not taken for the MODEL
  assert.is(positionalStdin.code, 0, positionalStdin.stderr);
  assert.is(positionalStdin.stdout, piped.stdout, 'generate MODEL with the prompt on standard input');
});

test('generate: seeded sampling repeats, the seed/temperature/top-k/top-p/min-p change it, --stop cuts the text', () => {
  const base = ['generate', '-m', lsw, '-p', 'the fox', '--max-tokens', '16', '--ignore-eos', '--json', '--backend', 'cpu'];
  const args = [...base, '--temperature', '1.0', '--seed', '42'];
  const run = (extra: string[]) => {
    const r = cli([...base, ...extra]);
    assert.is(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const a = run(args.slice(base.length));
  const b = run(args.slice(base.length));
  assert.is(a.tokens.length, 16);
  assert.equal(a.tokens, b.tokens);
  assert.not.equal(run(['--temperature', '1.0', '--seed', '43']).tokens, a.tokens, 'another seed, other tokens');
  const greedy = run(['--temperature', '0']).tokens;
  assert.not.equal(a.tokens, greedy, 'temperature 1 is not greedy');
  // with every filter off, temperature 1 samples away from the greedy tokens; each filter alone, at its
  // tightest, leaves only the most likely token: greedy again
  const off = { '--top-k': '0', '--top-p': '1', '--min-p': '0' };
  const filtered = (flag: keyof typeof off, v: string) =>
    run(['--temperature', '1', '--seed', '42', ...Object.entries({ ...off, [flag]: v }).flat()]).tokens;
  assert.not.equal(run(['--temperature', '1', '--seed', '42', ...Object.entries(off).flat()]).tokens, greedy, 'no filter');
  assert.equal(filtered('--top-k', '1'), greedy, '--top-k 1');
  assert.equal(filtered('--top-p', '0.000001'), greedy, '--top-p 0.000001');
  assert.equal(filtered('--min-p', '1'), greedy, '--min-p 1');
  const text: string = a.text;
  const cut = [...text].findIndex((ch, i) => i > 0 && ch.trim() !== '' && ch !== '\uFFFD');
  assert.ok(cut > 0, `a stop character after the first one in ${JSON.stringify(text)}`);
  const stop = [...text][cut];
  const c = JSON.parse(cli([...args, '--stop', stop]).stdout);
  assert.is(c.stop_reason, 'stop');
  assert.is(c.text, text.slice(0, text.indexOf(stop)));
  assert.ok(c.tokens.length < a.tokens.length, '--stop ended the generation early');
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

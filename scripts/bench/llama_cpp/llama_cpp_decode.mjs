#!/usr/bin/env node
// Decode latency of llama.cpp (node-llama-cpp's prebuilt CPU build) on a GGUF file, with the protocol of
// `lora-switch bench` / lsw_bench: batch 1, a seeded random prompt of --prompt tokens, greedy decode, per-step
// wall time between consecutive generated tokens (one forward + sampling each), median / p10 / p90 over the
// measured repetitions, the first repetition a warm-up. Prints one JSON object on stdout.
//
//   node llama_cpp_decode.mjs --gguf model-f16.gguf [--threads 2] [--prompt 32] [--tokens 128] [--reps 3]
//                             [--seed 1234] [--no-mmap] [--node-llama-cpp DIR] [--tokens-out FILE]
//
// node-llama-cpp is NOT a dependency of lora-switch: install it anywhere (npm install node-llama-cpp) and pass
// the folder that holds its node_modules with --node-llama-cpp (default: resolved from this script's folder).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

function fail(msg) {
  process.stderr.write(`llama_cpp_decode.mjs: ${msg}\n`);
  process.exit(2);
}

// a model llama.cpp cannot load, or any other failure: one line, no stack trace
const oneLine = (e) => `${args?.gguf ? `${args.gguf}: ` : ''}${String(e?.message ?? e).replace(/\s+/g, ' ').trim()}`;
process.on('unhandledRejection', (e) => fail(oneLine(e)));
process.on('uncaughtException', (e) => fail(oneLine(e)));

var args = { threads: 2, prompt: 32, tokens: 128, reps: 3, seed: 1234 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = argv[i];
  if (k === '--no-mmap') {  // weights read into memory instead of mmapped (faster here: 4 KiB pages of a mapping)
    args.noMmap = true;
    continue;
  }
  const v = argv[i + 1];
  if (v === undefined) fail(`${k} needs a value`);
  i++;
  if (k === '--gguf') args.gguf = v;
  else if (k === '--node-llama-cpp') args.lib = v;
  else if (k === '--tokens-out') args.tokensOut = v;
  else if (['--threads', '--prompt', '--tokens', '--reps', '--seed'].includes(k)) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < (k === '--seed' ? 0 : 1)) fail(`${k} must be a positive integer, got ${v}`);
    args[k.slice(2)] = n;
  } else fail(`unknown argument ${k}`);
}
if (!args.gguf) fail('--gguf FILE is required');
if (!fs.existsSync(args.gguf)) fail(`${args.gguf}: no such file`);
if (args.reps < 2) fail('--reps must be at least 2 (the first is a warm-up)');

let mod;
let version = 'unknown';
try {
  const req = createRequire(path.join(path.resolve(args.lib ?? path.dirname(new URL(import.meta.url).pathname)), 'x.js'));
  const entry = req.resolve('node-llama-cpp');
  mod = await import(pathToFileURL(entry).href);
  for (let d = path.dirname(entry); d !== path.dirname(d); d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (fs.existsSync(pj)) {
      const j = JSON.parse(fs.readFileSync(pj, 'utf8'));
      if (j.name === 'node-llama-cpp') { version = j.version; break; }
    }
  }
} catch (e) {
  fail(`node-llama-cpp not found (${String(e.message).split('\n')[0]}); npm install node-llama-cpp in some folder and pass it with --node-llama-cpp`);
}

// mulberry32 as in lora-switch bench's randomPrompt, but ids drawn above the special and byte pieces
function prompt(n, vocab, seed) {
  let s = seed >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out.push(259 + Math.floor(r * (vocab - 259)));
  }
  return out;
}

function pct(sorted, p) {
  const i = (sorted.length - 1) * p;
  const lo = Math.floor(i), hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

// llama.cpp's own decode timing (llama_perf_context_print, "eval time = X ms / N runs", info level) and the CPU
// variant it loads (debug level) are read from its log
const logs = [];
const llama = await mod.getLlama({ gpu: false, build: 'never', maxThreads: args.threads, logLevel: 'debug',
  logger: (level, msg) => { logs.push(String(msg)); if (level === 'error' || level === 'fatal') process.stderr.write(String(msg)); } });
async function perfEval(ctx) {
  logs.length = 0;
  await ctx.printTimings();
  const m = /eval time =\s*([\d.]+) ms \/\s*(\d+) runs/.exec(logs.filter((l) => !/prompt eval/.test(l)).join(''));
  return m ? { ms: Number(m[1]), runs: Number(m[2]) } : null;
}
const backendVariant = (/libggml-cpu-([\w-]+)\.so/.exec(logs.join('\n')) ?? [])[1] ?? null;
llama.logLevel = 'info';  // no debug lines (each one a call into JavaScript) while it decodes
const model = await llama.loadModel({ modelPath: args.gguf, gpuLayers: 0, useMmap: !args.noMmap });
const nVocab = Number(model.fileInfo.metadata?.llama?.vocab_size);
if (!Number.isInteger(nVocab) || nVocab <= 259) fail(`${args.gguf}: no usable llama.vocab_size in the GGUF metadata`);
// batches dispatched at once (node-llama-cpp's default waits for the next event-loop cycle), llama.cpp's own
// defaults otherwise (f16 KV cache, no flash attention on the CPU, weights mmapped unless --no-mmap)
const context = await model.createContext({ contextSize: args.prompt + args.tokens + 16, batchSize: Math.max(args.prompt, 32),
  threads: { ideal: args.threads, min: args.threads }, flashAttention: false, performanceTracking: true,
  batching: { dispatchSchedule: (dispatch) => dispatch() } });
const ids = prompt(args.prompt, nVocab, args.seed);
const steps = [];
let tokens = null;
let lastTtft = null;
for (let rep = 0; rep < args.reps; rep++) {
  const seq = context.getSequence();
  const got = [];
  const times = [];
  let t0 = performance.now();
  const t00 = t0;
  let ttft = null;  // prompt evaluation + the first token
  for await (const tok of seq.evaluate(ids.map(Number), { temperature: 0 })) {
    const t = performance.now();
    if (ttft === null) ttft = t - t00;
    else times.push(t - t0);
    t0 = t;
    got.push(Number(tok));
    if (got.length >= args.tokens) break;
  }
  seq.dispose();
  if (rep === 0) tokens = got;
  else steps.push(...times);
  lastTtft = ttft;
  if (rep === 0) {
    await perfEval(context);  // drop the warm-up's counters
    process.stderr.write(`warm-up: ${got.length} tokens\n`);
  }
}
const perf = await perfEval(context);
steps.sort((a, b) => a - b);
const median = pct(steps, 0.5);
const res = {
  tool: 'llama.cpp',
  engine: `node-llama-cpp ${version}`,
  // the ggml CPU variant node-llama-cpp loaded for this CPU (haswell, zen4, …)
  cpu_backend: backendVariant,
  gguf: path.resolve(args.gguf),
  mmap: !args.noMmap, threads: args.threads, prompt_tokens: args.prompt, new_tokens: args.tokens, repetitions_measured: args.reps - 1,
  decode_steps_measured: steps.length,
  ms_per_token: { median, p10: pct(steps, 0.1), p90: pct(steps, 0.9) },
  tokens_per_s: 1000 / median,
  ttft_ms_last: lastTtft,
  // llama.cpp's own mean decode time per token over the measured repetitions (no JS in it)
  llama_perf_eval: perf ? { ms_per_token_mean: perf.ms / perf.runs, runs: perf.runs } : null,
  first_tokens: tokens.slice(0, 16),
  cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
};
if (args.tokensOut) fs.writeFileSync(args.tokensOut, JSON.stringify(tokens));
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(res) + '\n');

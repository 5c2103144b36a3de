#!/usr/bin/env node
// lora-switch (CPU backend, `bench --modes base`) against llama.cpp (node-llama-cpp's prebuilt CPU build) on the
// same weights, in alternating runs so that the host's drift hits both alike (scripts/bench/llama_cpp/README.md).
//
//   node scripts/bench/llama_cpp/compare.mjs --dir DIR --node-llama-cpp LIBDIR [--rounds 5] [--threads 2]
//        [--prompt 32] [--tokens 128] [--reps 3] [--mmap] [--out results.json]
//
// DIR is make_model.py's output (DIR/hf and DIR/model-f16.gguf). Each round runs both engines once, the order
// swapped every round; each run loads its model, decodes --reps queries (the first a warm-up) and reports its
// median ms/token. Prints a Markdown table; --out also writes every run's JSON (temporary file, then renamed).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..', '..');

function fail(msg) {
  process.stderr.write(`compare.mjs: ${msg}\n`);
  process.exit(2);
}

// llama.cpp reads its weights into memory by default here (--no-mmap: ~10 % faster on the 2-core VM, 2026-12-05);
// --mmap keeps node-llama-cpp's default mapping
const o = { rounds: 5, threads: 2, prompt: 32, tokens: 128, reps: 3, mmap: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = argv[i], v = argv[i + 1];
  if (k === '--mmap') {
    o.mmap = true;
    i--;
    continue;
  }
  if (v === undefined) fail(`${k} needs a value`);
  if (k === '--dir') o.dir = v;
  else if (k === '--node-llama-cpp') o.lib = v;
  else if (k === '--out') o.out = v;
  else if (['--rounds', '--threads', '--prompt', '--tokens', '--reps'].includes(k)) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) fail(`${k} must be a positive integer, got ${v}`);
    o[k.slice(2)] = n;
  } else fail(`unknown argument ${k}`);
}
if (!o.dir) fail('--dir DIR (make_model.py --out DIR) is required');
const hf = path.join(o.dir, 'hf');
const gguf = path.join(o.dir, 'model-f16.gguf');
for (const p of [path.join(hf, 'config.json'), gguf]) if (!fs.existsSync(p)) fail(`${p}: missing (run make_model.py --out ${o.dir})`);
if (o.reps < 2) fail('--reps must be at least 2 (the first is a warm-up)');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) fail(`${[cmd, ...args].join(' ')} failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').pop()}`);
  return JSON.parse(r.stdout);
}

function lswRun() {
  const doc = run(process.execPath, [path.join(root, 'bin', 'run.js'), 'bench', '--backend', 'cpu', '--model', hf, '--modes', 'base',
    '--threads', String(o.threads), '--prompt-tokens', String(o.prompt), '--new-tokens', String(o.tokens),
    '--warmup', '1', '--repetitions', String(o.reps - 1), '--json']);
  const row = doc.results.find((r) => r.mode === 'base');
  return { engine: `lora-switch ${doc.version}`, ms: row.ms_per_token, tokens_per_s: row.tokens_per_s, ttft_ms: row.ttft_ms, kv: doc.protocol.kv_cache ?? null };
}

function llamaRun() {
  const args = [path.join(here, 'llama_cpp_decode.mjs'), '--gguf', gguf, '--threads', String(o.threads), '--prompt', String(o.prompt),
    '--tokens', String(o.tokens), '--reps', String(o.reps)];
  if (o.lib) args.push('--node-llama-cpp', o.lib);
  if (!o.mmap) args.push('--no-mmap');
  const r = run(process.execPath, args);
  return { engine: `${r.engine}${r.cpu_backend ? ` (ggml-cpu-${r.cpu_backend})` : ''}${r.mmap ? '' : ', no mmap'}`, ms: r.ms_per_token, tokens_per_s: r.tokens_per_s, ttft_ms: r.ttft_ms_last, kv: 'f16',
    own_ms_per_token_mean: r.llama_perf_eval?.ms_per_token_mean ?? null };
}

function simdFlags() {
  try {
    const flags = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1].split(' ') ?? [];
    return flags.filter((f) => /^(avx|avx2|fma|f16c)$|^avx512|^amx/.test(f)).join(' ');
  } catch {
    return null;
  }
}

const runs = [];
for (let round = 1; round <= o.rounds; round++) {
  const order = round % 2 ? [['lora-switch', lswRun], ['llama.cpp', llamaRun]] : [['llama.cpp', llamaRun], ['lora-switch', lswRun]];
  for (const [name, fn] of order) {
    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
    const t = new Date().toISOString();
    const r = fn();
    runs.push({ round, tool: name, started: t, loadavg_1min: Number(load), ...r });
    process.stderr.write(`round ${round} ${name}: ${r.ms.median.toFixed(2)} ms/token (p10 ${r.ms.p10.toFixed(2)}), ${r.tokens_per_s.toFixed(1)} tokens/s\n`);
  }
}

const med = (a) => { const s = [...a].sort((x, y) => x - y); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const summary = {};
for (const tool of ['lora-switch', 'llama.cpp']) {
  const tps = runs.filter((r) => r.tool === tool).map((r) => 1000 / r.ms.median);
  summary[tool] = { engine: runs.find((r) => r.tool === tool).engine, tokens_per_s_median: med(tps), min: Math.min(...tps), max: Math.max(...tps) };
}
const own = runs.filter((r) => r.own_ms_per_token_mean != null).map((r) => 1000 / r.own_ms_per_token_mean);
if (own.length) summary['llama.cpp'].own_eval_tokens_per_s_median = med(own);
const doc = {
  date: new Date().toISOString(),
  command: `node scripts/bench/llama_cpp/compare.mjs ${argv.join(' ')}`,
  machine: { cpu: os.cpus()[0]?.model?.trim() ?? 'unknown', cores: os.cpus().length, mem_gb: Math.round(os.totalmem() / 2 ** 30), simd: simdFlags() },
  model: JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8')),
  protocol: { threads: o.threads, prompt_tokens: o.prompt, new_tokens: o.tokens, queries_per_run: o.reps, warmup_queries: 1, rounds: o.rounds },
  summary,
  // against llama.cpp's better figure (its own timer has no JS in it)
  ratio: summary['lora-switch'].tokens_per_s_median /
    Math.max(summary['llama.cpp'].tokens_per_s_median, summary['llama.cpp'].own_eval_tokens_per_s_median ?? 0),
  runs,
};
const lines = ['| round | tool | median ms/token (p10–p90) | tokens/s | llama.cpp\'s own mean ms/token | load avg |', '| --- | --- | --- | ---: | ---: | ---: |'];
for (const r of runs) {
  const own = r.own_ms_per_token_mean != null ? `${r.own_ms_per_token_mean.toFixed(2)} (${(1000 / r.own_ms_per_token_mean).toFixed(1)} tokens/s)` : '–';
  lines.push(`| ${r.round} | ${r.tool} | ${r.ms.median.toFixed(2)} (${r.ms.p10.toFixed(2)}–${r.ms.p90.toFixed(2)}) | ${(1000 / r.ms.median).toFixed(1)} | ${own} | ${r.loadavg_1min} |`);
}
for (const [tool, s] of Object.entries(summary)) {
  lines.push(`\n${tool} (${s.engine}): **${s.tokens_per_s_median.toFixed(1)} tokens/s** median of runs (${s.min.toFixed(1)}–${s.max.toFixed(1)})` +
    (s.own_eval_tokens_per_s_median ? `; by llama.cpp's own timer ${s.own_eval_tokens_per_s_median.toFixed(1)} tokens/s` : ''));
}
lines.push(`\nlora-switch / llama.cpp (its better figure): **${doc.ratio.toFixed(2)} ×**`);
process.stdout.write(lines.join('\n') + '\n');
if (o.out) {
  fs.writeFileSync(o.out + '.tmp', JSON.stringify(doc, null, 1) + '\n');
  fs.renameSync(o.out + '.tmp', o.out);
}

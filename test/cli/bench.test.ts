// lora-switch bench: statistics, the floor, the JSON schema of a tiny CPU run through the real CLI, the CSV /
// Markdown / text renderers, the Ink view, the torch peer's absence, and bad flags. No timed assertions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import React from 'react';
import { render } from 'ink-testing-library';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { percentile, spread, mean, floorMs, pctOfFloor, kvBytesRead, rnd, prefillFlops, tflops, matmulShape } from '../../src/core/bench/stats.js';
import { toCsv, toMarkdown, textReport, kvCacheNote, mergeNote, CSV_COLUMNS, fmtParams } from '../../src/core/bench/format.js';
import { newBenchState, randomPrompt, type BenchDoc } from '../../src/core/bench/run.js';
import { BenchView } from '../../src/core/views/bench-view.js';
import { parseBenchFlags, parseTargets, parseModes } from '../../src/core/bench/cli.js';
import { peerArgs, runPeer } from '../../src/core/bench/peer.js';
import { backboneTensors, adapterTensors, tensorBytes, cpuHostBytes, checkCpuHostMemory, hostAvailableBytes, HOST_OVERHEAD_BYTES } from '../../src/core/bench/synthetic.js';
import { UserError } from '../../src/core/errors.js';
import { presetConfig, PRESETS } from '../../src/core/bench/presets.js';
import { makeTinyCheckpoint, makeLoraSwitchAdapter } from '../helpers/checkpoint.js';
import { runCli, assertOneLineError as oneLineError } from '../helpers/cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-bench-'));

function cli(args: string[], env: Record<string, string> = {}) {
  return runCli(args, dir, { env: { CI: 'true', ...env } });
}

// ---------------------------------------------------------------------------------------------------------
test('percentile: linear interpolation as numpy (known arrays)', () => {
  const a = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(Math.abs(percentile(a, 50) - 5.5) < 1e-12);
  assert.ok(Math.abs(percentile(a, 10) - 1.9) < 1e-12);
  assert.ok(Math.abs(percentile(a, 90) - 9.1) < 1e-12);
  assert.is(percentile(a, 0), 1);
  assert.is(percentile(a, 100), 10);
  assert.is(percentile([7], 10), 7);
  assert.ok(Math.abs(percentile([1, 3], 25) - 1.5) < 1e-12);
  assert.throws(() => percentile([], 50), /empty/);
  assert.throws(() => percentile([1, 2], 101), /outside/);
});

test('spread: median/p10/p90 of an unsorted array, which it leaves as it is', () => {
  const v = [9, 1, 5, 3, 7, 2, 8, 4, 6, 10, 11];
  const copy = [...v];
  const s = spread(v);
  assert.equal(v, copy, 'input not modified');
  assert.is(s.median, 6);
  assert.ok(Math.abs(s.p10 - 2) < 1e-12);
  assert.ok(Math.abs(s.p90 - 10) < 1e-12);
  // an outlier moves p90 but not the median
  const s2 = spread([1, 1, 1, 1, 1, 1, 1, 1, 1, 1000]);
  assert.is(s2.median, 1);
  assert.ok(s2.p90 > 90 && s2.p90 < 1000);
  assert.is(mean([1, 2, 3, 6]), 3);
});

test('floor: bytes per token over the copy bandwidth, and % of it', () => {
  // docs/BENCH.md: 13.48 GB of weights at 4250 GB/s -> 3.17 ms/token
  const f = floorMs(13.48e9, 4250)!;
  assert.ok(Math.abs(f - 3.171765) < 1e-5, String(f));
  assert.ok(Math.abs(pctOfFloor(f, 3.3)! - 96.114) < 1e-3);
  assert.is(pctOfFloor(2, 4), 50);
  assert.is(floorMs(1e9, null), null);
  assert.is(floorMs(1e9, 0), null);
  assert.is(pctOfFloor(null, 3), null);
  assert.is(pctOfFloor(1, 0), null);
  // K and V of every layer at the context, fp32
  assert.is(kvBytesRead(32, 8, 128, 4, 100), 2 * 32 * 8 * 128 * 4 * 100);
  assert.is(rnd(1.23456, 2), 1.23);
  assert.is(rnd(null), null);
  assert.is(rnd(Number.NaN), null);
});

test('presets: the peer\'s shapes; synthetic tensors cover the 7B weight bytes of docs/BENCH.md', () => {
  const c = presetConfig('llama2-7b', 'f16');
  const bytes = backboneTensors(c).reduce((a, t) => a + tensorBytes(t), 0);
  // docs/BENCH.md: 6 738 415 616 params, 13 476 831 232 bytes (f16) — plus the F32 norms the engine keeps in fp32
  const params2d = backboneTensors(c).filter((t) => t.shape.length === 2).reduce((a, t) => a + t.shape[0] * t.shape[1], 0);
  const norms = backboneTensors(c).filter((t) => t.shape.length === 1).reduce((a, t) => a + t.shape[0], 0);
  assert.is(params2d + norms, 6738415616);
  assert.is(bytes, params2d * 2 + norms * 4);
  assert.is(PRESETS.tiny.hidden, 256);
  assert.is(presetConfig('qwen2.5-7b', 'bf16').qkv_bias, true);
  assert.is(presetConfig('llama3-8b', 'f16').rope_type, 'llama3');
  // adapter: pregated router on q's input, A [E,r,in], B [E,out,r] per target and layer
  const t = adapterTensors(c, { router: 'pregated', experts: 8, topK: 2, rank: 16, targets: ['q', 'v'] });
  assert.equal(t[0], { name: 'adapters.0.router.weight', shape: [8, 4096], dtype: 'f16' });
  assert.is(t.length, 1 + 32 * 4);
  assert.equal(t.find((x) => x.name === 'adapters.0.layers.3.v.lora_B')?.shape, [8, 4096, 16]);
  const mq = presetConfig('mistral-7b', 'f16');
  assert.equal(adapterTensors(mq, { router: 'layerwise', experts: 4, topK: 1, rank: 8, targets: ['k', 'down'] }).slice(0, 5).map((x) => [x.name, x.shape]), [
    ['adapters.0.layers.0.router.weight', [4, 4096]],
    ['adapters.0.layers.0.k.lora_A', [4, 8, 4096]],
    ['adapters.0.layers.0.k.lora_B', [4, 1024, 8]],
    ['adapters.0.layers.0.down.lora_A', [4, 8, 14336]],
    ['adapters.0.layers.0.down.lora_B', [4, 4096, 8]],
  ]);
});

test('presets: the small shapes have their published models\' parameter counts, the LM head tied', () => {
  const count = (name: keyof typeof PRESETS) => {
    const c = presetConfig(name, 'f16');
    return { c, n: backboneTensors(c).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0) };
  };
  // config.json of HuggingFaceTB/SmolLM-135M, Qwen/Qwen2.5-0.5B, meta-llama/Llama-3.2-1B (tie_word_embeddings true)
  const want: [keyof typeof PRESETS, number][] = [['smollm-135m', 134515008], ['qwen2.5-0.5b', 494032768], ['llama3.2-1b', 1235814400]];
  for (const [name, n] of want) {
    const r = count(name);
    assert.is(r.n, n, name);
    assert.is(r.c.tie_embeddings, true, name);
    assert.not.ok(backboneTensors(r.c).some((t) => t.name === 'lm_head.weight'), `${name}: no lm_head tensor`);
    assert.is(r.c.head_dim, 64, name);
  }
  assert.is(presetConfig('qwen2.5-0.5b', 'f16').qkv_bias, true);
  assert.is(presetConfig('llama3.2-1b', 'f16').rope_factor, 32);
  assert.is(presetConfig('llama2-7b', 'f16').tie_embeddings, false);
});

/** PRESETS of scripts/bench/torch_peer.py, read from its source (a dict literal of dict(...) calls). */
function peerPresets(): Record<string, Record<string, unknown>> {
  const src = fs.readFileSync(new URL('../../scripts/bench/torch_peer.py', import.meta.url), 'utf8');
  const start = src.indexOf('PRESETS = {');
  assert.ok(start >= 0, 'torch_peer.py has PRESETS = {');
  let i = src.indexOf('{', start);
  let depth = 0;
  let out = '';
  const closers: string[] = [];
  for (; i < src.length; i++) {
    const ch = src[i];
    if (ch === '#') { while (i < src.length && src[i] !== '\n') i++; out += '\n'; continue; }
    if (src.startsWith('dict(', i)) { out += '{'; closers.push('}'); depth++; i += 4; continue; }
    if (ch === '{') { out += '{'; closers.push('}'); depth++; continue; }
    if (ch === '(') { out += '('; closers.push(')'); continue; }
    if (ch === ')' || ch === '}') { const c = closers.pop()!; out += c; if (c === '}') depth--; if (depth === 0) break; continue; }
    out += ch;
  }
  const json = out
    .replace(/\b([A-Za-z_][A-Za-z0-9_]*)=/g, '"$1":')   // keyword arguments
    .replace(/\bTrue\b/g, 'true').replace(/\bFalse\b/g, 'false')
    .replace(/,(\s*[}\]])/g, '$1');                       // trailing commas
  return JSON.parse(json);
}

test('presets: torch_peer.py builds exactly our shapes (names, sizes, heads, rope, tied head)', () => {
  const peer = peerPresets();
  assert.equal(Object.keys(peer).sort(), Object.keys(PRESETS).sort());
  for (const [name, p] of Object.entries(PRESETS)) {
    const q = peer[name] as Record<string, any>;
    assert.equal(
      [q.arch, q.hidden, q.layers, q.heads, q.kv_heads, q.inter, q.vocab, q.max_pos, q.eps, q.tie ?? false, q.rope.rope_type, q.rope.rope_theta],
      [p.architecture, p.hidden, p.layers, p.heads, p.kvHeads, p.inter, p.vocab, p.maxPos, p.eps, p.tie, p.rope.rope_type, p.rope.rope_theta],
      name,
    );
    if (p.rope.rope_type === 'llama3')
      assert.equal([q.rope.factor, q.rope.low_freq_factor, q.rope.high_freq_factor, q.rope.original_max_position_embeddings],
        [p.rope.rope_factor, p.rope.rope_low_freq_factor, p.rope.rope_high_freq_factor, p.rope.rope_original_max_position], name);
    // qwen2 has q/k/v biases in transformers' Qwen2 itself; the others have none
    assert.is(p.qkvBias, q.arch === 'qwen2', name);
  }
});

test('CPU host memory: a synthetic model\'s bytes by part; too little memory is one clear error before anything is allocated', () => {
  const c = presetConfig('llama2-7b', 'f16');
  const b = cpuHostBytes(c, { router: 'pregated', experts: 8, topK: 2, rank: 16, targets: ['q', 'v'] }, 712, 'f16');
  // by hand: 6 738 415 616 params, of them 32 x 2 x 4096 + 4096 = 266 240 F32 norm weights, the rest 2 bytes
  assert.is(b.weights, (6738415616 - 266240) * 2 + 266240 * 4);
  // router [8][4096] + per layer A [8][16][4096] and B [8][4096][16] for q and v, 2 bytes each
  assert.is(b.adapters, (8 * 4096 + 32 * 4 * 8 * 16 * 4096) * 2);
  // q and v live in the fused q,k,v matrix: (32 + 2 x 32) x 128 rows of 4096, every layer
  assert.is(b.workingCopies, 12288 * 4096 * 2 * 32);
  assert.is(b.kvCache, 32 * 712 * 4096 * 2 * 2);
  assert.is(b.total, b.weights + b.adapters + b.workingCopies + b.kvCache);
  // gate and up share one fused matrix; o and down are their own; GQA's q,k,v matrix is narrower
  const l3 = presetConfig('llama3-8b', 'bf16');
  assert.is(cpuHostBytes(l3, { router: 'layerwise', experts: 4, topK: 1, rank: 8, targets: ['gate', 'up', 'down'] }, 100, 'f32').workingCopies,
    (2 * 14336 * 4096 + 4096 * 14336) * 2 * 32);
  assert.is(cpuHostBytes(l3, { router: 'pregated', experts: 4, topK: 1, rank: 8, targets: ['k', 'o'] }, 100, 'f32').workingCopies,
    ((32 + 2 * 8) * 128 * 4096 + 4096 * 4096) * 2 * 32);
  assert.is(cpuHostBytes(l3, undefined, 100, 'f32').kvCache, 32 * 100 * 8 * 128 * 2 * 4);
  // fits with the process's overhead: no error; a byte less: one line naming the preset, the parts and the way out
  checkCpuHostMemory('the llama2-7b preset', b, b.total + HOST_OVERHEAD_BYTES);
  try {
    checkCpuHostMemory('the llama2-7b preset', b, b.total + HOST_OVERHEAD_BYTES - 1);
    assert.unreachable('no error');
  } catch (e) {
    assert.instance(e, UserError);
    const m = (e as Error).message;
    assert.not.match(m, /\n/);
    assert.match(m, /^bench: the llama2-7b preset on the CPU backend needs about 17\.7 GB of host memory \(weights 13\.5 GB, adapters 0\.1 GB, merge-mode working copies 3\.2 GB, KV cache 0\.4 GB, the process 0\.5 GB\); 17\.7 GB is available: use a smaller preset \(tiny\)/);
  }
  // what is available: MemAvailable plus free swap
  assert.is(hostAvailableBytes('MemTotal:       25000000 kB\nMemFree:          100 kB\nMemAvailable:    2000 kB\nSwapTotal: 9 kB\nSwapFree:          24 kB\n'), 2024 * 1024);
  assert.is(hostAvailableBytes('MemTotal: 5 kB\nMemAvailable: 7 kB\n'), 7 * 1024);
  assert.ok(hostAvailableBytes() > 0);
});

test('flags: targets, modes, defaults and the protocol', () => {
  assert.equal(parseTargets('v,q_proj,q'), ['q', 'v']);
  assert.equal(parseTargets('all'), ['q', 'k', 'v', 'o', 'gate', 'up', 'down']);
  assert.throws(() => parseTargets('q,x'), /unknown module "x"/);
  assert.equal(parseModes('fused,base,fused'), ['fused', 'base']);
  assert.throws(() => parseModes('base,warp'), /unknown mode "warp"/);
  const o = parseBenchFlags({ preset: 'tiny', backend: 'cpu', command: 'x' });
  assert.is(o.promptTokens, 64);
  assert.is(o.newTokens, 200);
  assert.is(o.warmup, 1);
  assert.is(o.repetitions, 5);
  assert.equal(o.modes, ['base', 'unfused', 'merge', 'fused']);
  assert.equal(o.adapter, { router: 'pregated', experts: 8, topK: 2, rank: 16, targets: ['q', 'v'] });
  assert.is(parseBenchFlags({ preset: 'tiny', backend: 'cuda', command: 'x' }).promptTokens, 512);
  assert.throws(() => parseBenchFlags({ preset: 'tiny', experts: 4, topK: 5 }), /--top-k 5 exceeds --experts 4/);
  assert.throws(() => parseBenchFlags({ preset: 'huge' }), /unknown preset "huge"/);
  assert.throws(() => parseBenchFlags({ preset: 'tiny', newTokens: 1 }), /--new-tokens must be an integer >= 2/);
  assert.throws(() => parseBenchFlags({ preset: 'tiny', json: true, csv: true }), /cannot be combined/);
  assert.is(o.precision, 'precise', 'precise prefill by default');
  assert.is(parseBenchFlags({ preset: 'tiny', backend: 'cpu', precision: 'fast', command: 'x' }).precision, 'fast');
  assert.throws(() => parseBenchFlags({ preset: 'tiny', backend: 'cpu', precision: 'half' }), /--precision: unknown precision "half" \(precise or fast\)/);
  const p = randomPrompt(100, 32000, 7);
  assert.equal(p, randomPrompt(100, 32000, 7), 'seeded');
  assert.ok(p.every((x) => x >= 0 && x < 32000));
  assert.ok(new Set(p).size > 90, 'not constant');
});

test('prefill FLOPs: llama2-7b from its published parameter count; the reference matmul shape', () => {
  const c = presetConfig('llama2-7b', 'f16');
  // 6 738 415 616 params = linears + embedding + lm_head (32000 x 4096 each) + 65 norms of 4096
  const linears = 6738415616 - 2 * 32000 * 4096 - 65 * 4096;
  const n = 2048;
  const f = prefillFlops(c, n);
  assert.is(f.linear, 2 * n * linears);
  assert.is(f.lm_head, 2 * 32000 * 4096, 'the lm_head for the last prompt row only');
  // causal: query i attends to i + 1 keys; QK^T and PV, 2 FLOPs per multiply-add, 32 heads x 128, 32 layers
  let pairs = 0;
  for (let i = 0; i < n; i++) pairs += i + 1;
  assert.is(f.attention, 32 * 2 * 2 * 32 * 128 * pairs);
  assert.is(f.total, f.linear + f.lm_head + f.attention);
  // GQA: K and V projections shrink with the KV heads (mistral-7b: 8 of 32)
  const m = presetConfig('mistral-7b', 'f16');
  assert.is(prefillFlops(m, 1).linear, 2 * 32 * (4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 14336 * 4096));
  assert.ok(Math.abs(tflops(2e12, 1000)! - 2) < 1e-12);
  assert.is(tflops(1, 0), null);
  assert.is(tflops(1, null), null);
  assert.equal(matmulShape('cuda', 4096, 512), { rows: 4096, cols: 4096, n: 2048 });
  assert.equal(matmulShape('cuda', 8192, 512), { rows: 4096, cols: 4096, n: 2048 });
  assert.equal(matmulShape('cpu', 256, 8), { rows: 256, cols: 256, n: 8 });
  assert.equal(matmulShape('cpu', 3584, 4096), { rows: 3584, cols: 3584, n: 512 });
});

test('peer: the same shapes and protocol as flags of torch_peer.py; a missing python3 is one line', async () => {
  const o = parseBenchFlags({ preset: 'mistral-7b', dtype: 'bf16', experts: 4, topK: 1, rank: 8, targets: 'all', router: 'layerwise', promptTokens: 128, newTokens: 50, warmup: 2, repetitions: 3, backend: 'cpu', command: 'x' });
  const a = peerArgs(o, '/tmp/p.json') as string[];
  assert.ok(Array.isArray(a));
  assert.match(a[0], /scripts\/bench\/torch_peer\.py$/);
  const flag = (k: string) => a[a.indexOf(k) + 1];
  assert.is(flag('--preset'), 'mistral-7b');
  assert.is(flag('--dtype'), 'bf16');
  assert.is(flag('--experts'), '4');
  assert.is(flag('--top-k'), '1');
  assert.is(flag('--rank'), '8');
  assert.is(flag('--targets'), 'q,k,v,o,gate,up,down');
  assert.is(flag('--router'), 'layerwise');
  assert.is(flag('--prompt-tokens'), '128');
  assert.is(flag('--new-tokens'), '50');
  assert.is(flag('--warmup'), '2');
  assert.is(flag('--repetitions'), '3');
  assert.is(flag('--json'), '/tmp/p.json');
  assert.match(String(peerArgs({ ...o, dtype: 'f32' }, '/tmp/p.json')), /f16 and bf16 only/);
  const prev = process.env.LSW_PYTHON;
  process.env.LSW_PYTHON = path.join(dir, 'no-such-python3');
  try {
    const r = await runPeer(o);
    assert.is(r.doc, null);
    assert.match(r.error ?? '', /no-such-python3 not found: the PyTorch peer needs python3 with torch/);
  } finally {
    if (prev === undefined) delete process.env.LSW_PYTHON;
    else process.env.LSW_PYTHON = prev;
  }
});

// ---------------------------------------------------------------------------------------------------------
function sampleDoc(): BenchDoc {
  const row = (mode: string, med: number, ratio: number | null, extra: Record<string, unknown> = {}) => ({
    mode, ms_per_token: { median: med, p10: rnd(med - 0.1), p90: rnd(med + 0.2) }, tokens_per_s: rnd(1000 / med, 2), ratio_to_base: ratio,
    floor_ms: 3.17, pct_of_floor: rnd((3.17 / med) * 100, 2), prefill_tokens_per_s: 20000, ttft_ms: 25.5, prefill_tflops: 142.25, prefill_pct_of_matmul: 18.97, peak_device_bytes: 14e9,
    launches_per_token: 1, ...extra,
  });
  return {
    tool: 'lora-switch', version: '0.1.0', date: '2026-12-01T01:00:00.000Z', command: 'lora-switch bench --preset llama2-7b',
    machine: { host: 'h', cpu: 'c', gpu: 'NVIDIA H200', backend: 'cuda', copy_bandwidth_gbps: 4250, matmul_tflops: 750.123, matmul_shape: { rows: 4096, cols: 4096, n: 2048 }, matmul_dtype: 'f16' },
    model: { preset: 'llama2-7b', path: null, dtype: 'f16', params: 6738415616, weight_bytes: 13476831232, layers: 32, hidden: 4096, intermediate: 11008, vocab: 32000 },
    adapter: { router: 'pregated', experts: 8, top_k: 2, rank: 16, targets: ['q', 'v'], adapter_bytes: 100 },
    protocol: { batch: 1, prompt_tokens: 512, new_tokens: 200, warmup: 1, repetitions: 5, interleaved: true, precision: 'fast', kv_cache: 'f16' },
    results: [row('base', 3.3, 1), row('merge', 4.4, 1.3333, { merges_per_token: 0.4 }), { ...row('fused', 0, null), ms_per_token: { median: null, p10: null, p90: null }, tokens_per_s: null, error: 'boom, "bad" | worse' }],
  };
}

test('csv: header, one line per mode, failures quoted', () => {
  const lines = toCsv(sampleDoc()).trimEnd().split('\n');
  assert.is(lines[0], CSV_COLUMNS.join(','));
  assert.is(lines.length, 4);
  assert.is(lines[1], 'lora-switch,base,3.3,3.2,3.5,303.03,1,3.17,96.06,20000,25.5,142.25,18.97,14000000000,1,,f16,');
  assert.match(lines[2], /^lora-switch,merge,4\.4,4\.3,4\.6,227\.27,1\.3333,.*,14000000000,1,0\.4,f16,$/);
  assert.match(lines[3], /^lora-switch,fused,,,,,,3\.17,.*,"boom, ""bad"" \| worse"$/);
  // a peer document without the prefill FLOP fields and protocol.kv_cache: empty cells
  const old = { ...sampleDoc(), tool: 'torch', protocol: { ...sampleDoc().protocol, kv_cache: undefined }, results: [{ ...sampleDoc().results[0], mode: 'torch-eager', prefill_tflops: undefined, prefill_pct_of_matmul: undefined }] };
  assert.is(toCsv(old).trimEnd().split('\n')[1], 'torch,torch-eager,3.3,3.2,3.5,303.03,1,3.17,96.06,20000,25.5,,,14000000000,1,,,');
  // with a peer: its rows follow
  const peer = { ...sampleDoc(), tool: 'torch', results: [{ ...sampleDoc().results[0], mode: 'torch-eager' }] };
  const withPeer = toCsv(sampleDoc(), peer).trimEnd().split('\n');
  assert.is(withPeer.length, 5);
  assert.match(withPeer[4], /^torch,torch-eager,3\.3,/);
});

test('markdown: what was measured (date, command), then a table row per mode', () => {
  const md = toMarkdown(sampleDoc());
  assert.match(md, /\*\*measured\*\* 2026-12-01T01:00:00\.000Z · `lora-switch bench --preset llama2-7b`/);
  assert.match(md, /\*\*machine\*\* cuda \(NVIDIA H200\), c, copy bandwidth 4250\.0 GB\/s, matmul 750\.1 TFLOP\/s \(f16 4096×4096×2048\)/);
  assert.match(md, /\*\*protocol\*\* batch 1, prompt 512, 200 new tokens, warm-up 1, 5 repetitions, interleaved, fast prefill, f16 KV cache$/m);
  assert.match(md, /\n\| tool \| mode \| ms\/token \(p10–p90\) \| tokens\/s \| × base \| % of floor \| prefill tok\/s \| TTFT ms \| prefill TFLOP\/s \| % of matmul \| peak memory \| launches\/token \|\n\| --- \| --- \| ---: \|/);
  assert.match(md, /\n\| lora-switch \| base \| 3\.300 \(3\.200–3\.500\) \| 303\.0 \| 1\.000 \| 96\.1 % \| 20000 \| 25\.5 \| 142\.3 \| 19\.0 % \| 14\.00 GB \| 1 \|\n/);
  assert.match(md, /\| lora-switch \| fused \| failed: boom, "bad" \\\| worse \|/);
  const txt = textReport(sampleDoc(), null, 'python3 not found');
  assert.match(txt, /lora-switch {2}merge +4\.400 +4\.300–4\.600 +227\.3 +1\.333 +3\.170 +72\.0% +20000 +25\.5 +142\.3 +19\.0% +14\.00 GB +1$/m);
  assert.match(txt, /TTFT ms +prefill TFLOP\/s +% matmul +peak mem/);
  assert.match(txt, /torch peer: python3 not found/);
});

test('merge note: the share of decode steps that merged; below 90 % why, and the flag when decoding was greedy', () => {
  const doc = (f: number, dt?: string) => {
    const d = sampleDoc();
    d.results[1].merges_per_token = f;
    if (dt) d.protocol.decode_tokens = dt;
    return d;
  };
  assert.is(mergeNote(doc(1, 'random')), 'merge: 100 % of the measured decode steps merged their experts.');
  assert.is(mergeNote(doc(0.995, 'random')), 'merge: 99.5 % of the measured decode steps merged their experts.');
  const low = mergeNote(doc(0.4, 'greedy'))!;
  assert.match(low, /^merge: 40 % of the measured decode steps merged their experts; the rest kept the route .* count fewer merges than real text needs; --decode-tokens random feeds a new token every step\.$/);
  assert.not.match(mergeNote(doc(0.4, 'random'))!, /--decode-tokens/);
  assert.is(mergeNote({ ...sampleDoc(), results: [sampleDoc().results[0]] }), null, 'no merge row: no note');
  assert.match(textReport(doc(0.4, 'greedy')), /\n\nmerge: 40 % .*--decode-tokens random/);
  assert.match(toMarkdown(doc(0.4, 'greedy')), /\n\nmerge: 40 % .*`--decode-tokens random`/);
});

test('peer with another KV cache type: one note naming both and the flag that compares like for like', () => {
  const f32 = { ...sampleDoc(), protocol: { ...sampleDoc().protocol, kv_cache: 'f32' } };
  const peer = { ...sampleDoc(), tool: 'torch', results: [{ ...sampleDoc().results[0], mode: 'torch-eager' }] };  // f16
  const note = 'KV cache: lora-switch f32, torch f16; --kv-cache f16 compares like for like.';
  assert.is(kvCacheNote(f32, peer), note);
  assert.match(textReport(f32, peer), new RegExp(`^${note.replace(/[.;]/g, '\\$&')}$`, 'm'));
  assert.match(toMarkdown(f32, peer), /^KV cache: lora-switch f32, torch f16; `--kv-cache f16` compares like for like\.$/m);
  const csv = toCsv(f32, peer).trimEnd().split('\n');
  assert.match(csv[1], /,f32,$/);  // lora-switch's row, then the peer's: their kv_cache cells
  assert.match(csv[csv.length - 1], /^torch,torch-eager,.*,f16,$/);
  // alike, no peer, or a peer document without protocol.kv_cache: no note
  const cases: Array<[BenchDoc, BenchDoc | null]> = [[sampleDoc(), peer], [f32, null], [f32, { ...peer, protocol: { ...peer.protocol, kv_cache: undefined } }]];
  for (const [d, p] of cases) {
    assert.is(kvCacheNote(d, p), null);
    assert.not.match(textReport(d, p), /^KV cache:/m);
    assert.not.match(toMarkdown(d, p), /^KV cache:/m);
  }
});

test('parameter counts keep their digits at every size; a given model is titled without a guessed type', () => {
  assert.is(fmtParams(6738415616), '6.738 B');
  assert.is(fmtParams(134515008), '134.5 M');
  assert.is(fmtParams(70336), '70.3 k');
  assert.is(fmtParams(512), '512');
  // the dtype flag is the synthetic model's; a given model's own type is filled in once it is read (run.ts)
  assert.is(newBenchState({ modes: ['base'], repetitions: 1, warmup: 0, model: 'm.lsw', dtype: 'f16' }).title, 'm.lsw');
  assert.is(newBenchState({ modes: ['base'], repetitions: 1, warmup: 0, preset: 'tiny', dtype: 'bf16' }).title, 'tiny (bf16)');
});

test('view: spinner while measuring the bandwidth and building, progress with live medians, then the table', () => {
  const s = newBenchState({ modes: ['base', 'merge'], repetitions: 5, warmup: 1, preset: 'tiny', dtype: 'f16' });
  s.backend = 'cpu';
  const { lastFrame, rerender, unmount } = render(React.createElement(BenchView, { state: { ...s } }));
  assert.match(lastFrame() ?? '', /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] measuring the copy bandwidth \(cpu\)…/);
  Object.assign(s, { phase: 'loading', bandwidthGBps: 8.25, load: { done: 3, total: 19, name: 'layers.0.attn.wqkv.weight', finalizing: false } });
  rerender(React.createElement(BenchView, { state: { ...s } }));
  let f = lastFrame() ?? '';
  assert.match(f, /copy bandwidth 8\.3 GB\/s \(cpu\)/);
  assert.match(f, /building tiny \(f16\) on cpu: 3\/19 tensors/);
  assert.match(f, /layers\.0\.attn\.wqkv\.weight/);
  Object.assign(s, { phase: 'matmul', matmul: { rows: 256, cols: 256, n: 64, dtype: 'f16' } });
  rerender(React.createElement(BenchView, { state: { ...s } }));
  f = lastFrame() ?? '';
  assert.match(f, /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] measuring the matmul rate \(cpu, f16 256×256×64\)…/);
  Object.assign(s, { phase: 'measuring', matmulTflops: 0.05537, rep: 2, mode: 'merge', queriesDone: 5, live: [{ mode: 'base', median: 2.5, steps: 30 }, { mode: 'merge', median: null, steps: 0 }] });
  rerender(React.createElement(BenchView, { state: { ...s } }));
  f = lastFrame() ?? '';
  assert.match(f, /copy bandwidth 8\.3 GB\/s \(cpu\) · matmul 0\.0554 TFLOP\/s \(f16 256×256×64\)/);
  assert.match(f, /tiny \(f16\) · repetition 2\/5 · merge/);
  assert.match(f, /5\/12 queries/);
  assert.match(f, /base {5}2\.500 ms\/token \(30 steps\)/);
  assert.match(f, /merge {4}–/);
  Object.assign(s, { phase: 'done', doc: sampleDoc() });
  rerender(React.createElement(BenchView, { state: { ...s } }));
  f = lastFrame() ?? '';
  assert.match(f, /tool +mode +ms\/token/);
  assert.match(f, /lora-switch {2}base +3\.300/);
  assert.match(f, /fused +failed: boom/);
  unmount();
});

// ---------------------------------------------------------------------------------------------------------
const isNum = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
const isNumOrNull = (x: unknown) => x === null || isNum(x);

test('--json: a tiny CPU run gives exactly the docs/BENCH.md schema, every mode, base ratio 1; --out writes the same', () => {
  const out = path.join(dir, 'res.json');
  const r = cli(['bench', '--backend', 'cpu', '--preset', 'tiny', '--prompt-tokens', '8', '--new-tokens', '5', '--repetitions', '2', '--threads', '1', '--json', '--out', out]);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr, '', 'nothing but JSON');
  const d = JSON.parse(r.stdout) as BenchDoc;
  assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')), d, '--out holds the same result');
  assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.tmp-')), 'no temporary file left');
  assert.is(d.tool, 'lora-switch');
  for (const k of ['version', 'date', 'command']) assert.type(d[k], 'string', k);
  assert.ok(!Number.isNaN(Date.parse(d.date)));
  assert.match(d.command, /^lora-switch bench --backend cpu --preset tiny /);
  // machine
  assert.type(d.machine.host, 'string');
  assert.type(d.machine.cpu, 'string');
  assert.is(d.machine.gpu, null);
  assert.is(d.machine.backend, 'cpu');
  assert.ok(isNum(d.machine.copy_bandwidth_gbps) && d.machine.copy_bandwidth_gbps! > 0, 'bandwidth measured');
  // the matmul rate of the engine's GEMM, measured in the same run: hidden x hidden x min(prompt, 512) on the CPU
  const mmRate = d.machine.matmul_tflops as number;
  assert.ok(isNum(mmRate) && mmRate > 0, 'matmul rate measured');
  assert.equal(d.machine.matmul_shape, { rows: 256, cols: 256, n: 8 });
  assert.is(d.machine.matmul_dtype, 'f16');
  assert.is(d.protocol.precision, 'precise');
  assert.is(d.protocol.kv_cache, 'f16');
  assert.is(d.protocol.decode_tokens, 'random', 'a seeded token stream by default');
  assert.is((d.floor_bytes as { kv_bytes_per_element: number }).kv_bytes_per_element, 2, 'the f16 weights\' type by default (auto)');
  // model
  assert.equal(
    { preset: d.model.preset, path: d.model.path, dtype: d.model.dtype, layers: d.model.layers, hidden: d.model.hidden, intermediate: d.model.intermediate, vocab: d.model.vocab },
    { preset: 'tiny', path: null, dtype: 'f16', layers: 2, hidden: 256, intermediate: 688, vocab: 32000 },
  );
  const c = presetConfig('tiny', 'f16');
  assert.is(d.model.weight_bytes, backboneTensors(c).reduce((a, t) => a + tensorBytes(t), 0));
  assert.ok(Number.isInteger(d.model.params) && d.model.params! > 0);
  // adapter
  assert.equal({ ...d.adapter, adapter_bytes: undefined, synthetic: undefined }, { router: 'pregated', experts: 8, top_k: 2, rank: 16, targets: ['q', 'v'], adapter_bytes: undefined, synthetic: undefined });
  assert.is(d.adapter.adapter_bytes, adapterTensors(c, { router: 'pregated', experts: 8, topK: 2, rank: 16, targets: ['q', 'v'] }).reduce((a, t) => a + tensorBytes(t), 0));
  // protocol
  assert.equal({ batch: d.protocol.batch, prompt_tokens: d.protocol.prompt_tokens, new_tokens: d.protocol.new_tokens, warmup: d.protocol.warmup, repetitions: d.protocol.repetitions, interleaved: d.protocol.interleaved },
    { batch: 1, prompt_tokens: 8, new_tokens: 5, warmup: 1, repetitions: 2, interleaved: true });
  // results: every mode, in order, every field typed
  assert.equal(d.results.map((x) => x.mode), ['base', 'unfused', 'merge', 'fused']);
  for (const x of d.results) {
    assert.is(x.error, undefined, `${x.mode}: ${x.error}`);
    for (const k of ['median', 'p10', 'p90'] as const) assert.ok(isNum(x.ms_per_token[k]) && x.ms_per_token[k]! > 0, `${x.mode} ${k}`);
    assert.ok(x.ms_per_token.p10! <= x.ms_per_token.median! && x.ms_per_token.median! <= x.ms_per_token.p90!, `${x.mode} p10 <= median <= p90`);
    for (const k of ['tokens_per_s', 'ratio_to_base', 'floor_ms', 'pct_of_floor', 'prefill_tokens_per_s', 'ttft_ms'] as const) assert.ok(isNum(x[k]) && (x[k] as number) > 0, `${x.mode} ${k}`);
    assert.ok(Number.isInteger(x.peak_device_bytes) && x.peak_device_bytes! > 0, `${x.mode} peak`);
    assert.ok(isNumOrNull(x.launches_per_token));
    assert.is(x.launches_per_token, null, 'the CPU backend launches no kernels');
    assert.is(x.decode_steps_measured, 2 * 4, 'every decode step of every repetition');
    assert.ok(Math.abs(x.tokens_per_s! - 1000 / x.ms_per_token.median!) / x.tokens_per_s! < 1e-3);
    assert.ok(Math.abs(x.pct_of_floor! - (x.floor_ms! / x.ms_per_token.median!) * 100) < 0.05, `${x.mode} pct_of_floor`);
    // prefill TFLOP/s = useful FLOPs of the 8-token prompt / TTFT, recomputed here from the tiny shape (2 layers,
    // hidden 256, 4 heads of 64, 2 KV heads, intermediate 688, vocab 32000): linears per token, lm_head once, causal attention
    const perLayer = 256 * (4 + 2 * 2) * 64 + 4 * 64 * 256 + 2 * 688 * 256 + 688 * 256;
    const flops = 2 * 8 * 2 * perLayer + 2 * 32000 * 256 + 2 * 2 * 2 * 4 * 64 * ((8 * 9) / 2);
    const expect = flops / (x.ttft_ms! / 1000) / 1e12;
    const pt = x.prefill_tflops as number;
    assert.ok(isNum(pt) && pt > 0, `${x.mode} prefill_tflops`);
    assert.ok(Math.abs(pt - expect) <= 2e-6 + 2e-3 * expect, `${x.mode} prefill_tflops ${pt} vs ${expect}`);
    const pm = x.prefill_pct_of_matmul as number;
    assert.ok(isNum(pm) && pm > 0, `${x.mode} prefill_pct_of_matmul`);
    assert.ok(Math.abs(pm - (pt / mmRate) * 100) <= 2e-3 + 2e-3 * pm, `${x.mode} pct ${pm} vs ${(pt / mmRate) * 100}`);
  }
  const lin = 2 * 8 * 2 * (256 * 8 * 64 + 256 * 256 + 3 * 688 * 256), lm = 2 * 32000 * 256, att = 2 * 2 * 2 * 4 * 64 * 36;
  assert.equal(d.prefill_flops, { linear: lin, lm_head: lm, attention: att, total: lin + lm + att, tokens: 8 });
  assert.is(d.results[0].ratio_to_base, 1);
  const base = d.results[0];
  for (const x of d.results) assert.ok(Math.abs(x.ratio_to_base! - x.ms_per_token.median! / base.ms_per_token.median!) < 1e-3);
  // a new token every step: every measured merge-mode step merged; the other modes have no such field
  for (const x of d.results) assert.is(x.merges_per_token, x.mode === 'merge' ? 1 : undefined, x.mode);
  // the floor counts the adapter bytes a mode moves: base moves none, merge the most
  const fl = Object.fromEntries(d.results.map((x) => [x.mode, x.floor_ms!]));
  assert.ok(fl.base < fl.fused && fl.fused <= fl.merge, JSON.stringify(fl));
});

test('plain output (piped): description, the table, and one line when the torch peer is missing', () => {
  const r = cli(['bench', '--backend', 'cpu', '--preset', 'tiny', '--prompt-tokens', '4', '--new-tokens', '3', '--repetitions', '1', '--warmup', '0', '--threads', '1', '--modes', 'base,fused', '--peer', 'torch', '--precision', 'fast'],
    { LSW_PYTHON: path.join(dir, 'no-python') });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /^model {4}tiny: 2×256, I 688, V 32000, f16/m);
  assert.match(r.stdout, /^machine {2}cpu, .*copy bandwidth [\d.]+ GB\/s, matmul [\d.e-]+ TFLOP\/s \(f16 256×256×4\)$/m);
  assert.match(r.stdout, /^protocol batch 1, prompt 4, 3 new tokens, warm-up 0, 1 repetitions, interleaved, fast prefill, f16 KV cache, random decode tokens$/m);
  assert.match(r.stdout, /prefill TFLOP\/s +% matmul/);
  assert.match(r.stdout, /^lora-switch {2}base /m);
  assert.match(r.stdout, /^lora-switch {2}fused /m);
  assert.not.match(r.stdout, /unfused|merge/);
  assert.match(r.stdout, /^torch peer: .*no-python not found: the PyTorch peer needs python3 with torch and transformers$/m);
  assert.not.match(r.stderr, /\n\s+at /);
});

test('-m: a .lsw with its own adapters runs them; synthetic adapter flags are then one line', () => {
  const base = makeTinyCheckpoint(path.join(dir, 'hf'), { arch: 'llama' });
  makeLoraSwitchAdapter(path.join(dir, 'sw'), base, { numExperts: 4, topK: 2 });
  const conv = cli(['convert', 'hf', '--adapter', 'sw', '-o', 'm.lsw', '--json']);
  assert.is(conv.code, 0, conv.stderr);
  const r = cli(['bench', '-m', 'm.lsw', '--backend', 'cpu', '--prompt-tokens', '4', '--new-tokens', '3', '--repetitions', '1', '--warmup', '0', '--threads', '1', '--json']);
  assert.is(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout) as BenchDoc;
  assert.is(d.model.preset, null);
  assert.is(d.model.path, 'm.lsw');
  assert.is(d.model.weights, 'loaded');
  assert.is(d.model.vocab, base.config.vocab_size);
  assert.equal([d.adapter.router, d.adapter.experts, d.adapter.top_k, d.adapter.synthetic], ['pregated', 4, 2, false]);
  assert.ok(d.adapter.adapter_bytes! > 0);
  assert.equal(d.results.map((x) => [x.mode, x.error]), [['base', undefined], ['unfused', undefined], ['merge', undefined], ['fused', undefined]]);
  oneLineError(cli(['bench', '-m', 'm.lsw', '--backend', 'cpu', '--rank', '2']), /m\.lsw: the model has its own adapters/);
});

test('bad flags: one line, non-zero exit, nothing on stdout', () => {
  oneLineError(cli(['bench', '--preset', 'tiny', '--experts', '8', '--top-k', '9']), /--top-k 9 exceeds --experts 8/);
  oneLineError(cli(['bench', '--preset', 'gpt5']), /--preset: unknown preset "gpt5" \(use tiny, smollm-135m, qwen2\.5-0\.5b, llama3\.2-1b, llama2-7b, llama3-8b, mistral-7b, qwen2\.5-7b\)/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--modes', 'base,turbo']), /--modes: unknown mode "turbo"/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--targets', 'q,qq']), /--targets: unknown module "qq"/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--json', '--csv']), /--json and --csv cannot be combined/);
  oneLineError(cli(['bench', '-m', path.join(dir, 'missing.lsw')]), /missing\.lsw: no such file or directory/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--backend', 'cpu', '--rank', '300']), /--rank 300 exceeds the q projection's dimensions/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--out', path.join(dir, 'nodir', 'x.json')]), /x\.json: the folder .*nodir does not exist/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--backend', 'cpu', '--precision', 'half']), /--precision.*half.*precise, fast/);
  oneLineError(cli(['bench', '--preset', 'tiny', '--backend', 'cpu', '--decode-tokens', 'sometimes']), /--decode-tokens.*sometimes.*random, greedy/);
  assert.throws(() => parseBenchFlags({ preset: 'tiny', backend: 'cpu', decodeTokens: 'sometimes' }), /--decode-tokens: unknown value "sometimes" \(use random or greedy\)/);
});

test('--decode-tokens greedy: the model\'s own picks, recorded, and merge mode counts the merges that ran', () => {
  assert.is(parseBenchFlags({ preset: 'tiny', backend: 'cpu', command: 'x' }).decodeTokens, 'random');
  const r = cli(['bench', '--backend', 'cpu', '--preset', 'tiny', '--prompt-tokens', '4', '--new-tokens', '6', '--repetitions', '1', '--warmup', '0', '--threads', '1', '--modes', 'merge', '--decode-tokens', 'greedy', '--json']);
  assert.is(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout) as BenchDoc;
  assert.is(d.protocol.decode_tokens, 'greedy');
  const f = d.results[0].merges_per_token as number;
  assert.ok(f >= 0 && f <= 1 && Math.round(f * 5) === f * 5, `merges_per_token ${f}: a count of the 5 decode steps`);
});

test('layer-wise merge: merges_per_token is the share of the layers\' merges, not merges per step', () => {
  // a LAYERWISE adapter merges or skips in each of tiny's 2 layers per step: the engine counts per layer, so 5
  // decode steps give 10 chances (before the fix the row said 200 % here, and the floor doubled the merge bytes)
  const r = cli(['bench', '--backend', 'cpu', '--preset', 'tiny', '--prompt-tokens', '4', '--new-tokens', '6', '--repetitions', '1', '--warmup', '0', '--threads', '1', '--modes', 'merge', '--router', 'layerwise', '--json']);
  assert.is(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout) as BenchDoc;
  const x = d.results[0];
  const f = x.merges_per_token as number;
  assert.ok(f > 0.5 && f <= 1 && Math.abs(Math.round(f * 10) - f * 10) < 1e-3, `merges_per_token ${f}: a count of 2 layers x 5 steps`);
  assert.match(mergeNote(d)!, /^merge: \d+ % of the layers in the measured decode steps merged their experts/);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

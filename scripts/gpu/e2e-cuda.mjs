#!/usr/bin/env node
// End to end on a GPU machine: every fixture case (models, PEFT / LoRA-Switch / MixLoRA adapters) through the
// real CLI on the CPU and the CUDA backend, in every mode, greedy and seeded sampling: the token ids must be
// identical.  Also checks that --trace routes agree between backends.  Each case runs with an fp32 KV cache (--kv-cache
// f32), greedy and sampled, and greedy with an f16 one (--kv-cache f16: both backends round K/V alike).  The fixtures'
// own default (auto: their weights' type) is one of the two for 16-bit weights, the f32 run for f32 weights.
//
//   node scripts/gpu/e2e-cuda.mjs FIXTURES_DIR [RESULT.json]
//
// FIXTURES_DIR comes from `npx tsx test/helpers/make-fixtures.ts DIR`.  The CLI is $LSW_CLI (default
// bin/run.js; the GPU session uses the single-file bundle).  Exit 1 on any mismatch.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const [fx, resultFile] = process.argv.slice(2);
if (!fx) { console.error('usage: e2e-cuda.mjs FIXTURES_DIR [RESULT.json]'); process.exit(2); }
const cli = process.env.LSW_CLI ?? path.join(path.dirname(new URL(import.meta.url).pathname), '../../bin/run.js');
const manifest = JSON.parse(fs.readFileSync(path.join(fx, 'manifest.json'), 'utf8'));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-e2e-'));

const backends = (process.env.LSW_E2E_BACKENDS ?? 'cpu,cuda').split(',');
function run(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = ''; let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('close', (code) => {
      if (code !== 0) resolve({ error: (err || out || `exit ${code}`).trim().split('\n').pop() });
      else { try { resolve(JSON.parse(out)); } catch (e) { resolve({ error: `bad JSON: ${e.message}` }); } }
    });
  });
}

const rows = [];
let failed = 0;
async function runCase(c) {
  const adapterArgs = c.adapters.flatMap((a) => ['--adapter', `${path.join(fx, a.path)}:${a.scale}`]);
  const lsw = path.join(work, `${c.name.replace(/[^\w.-]/g, '_')}.lsw`);
  const conv = await run(['convert', path.join(fx, c.model), '-o', lsw, ...adapterArgs, '--json']);
  if (conv.error) { rows.push({ case: c.name, mode: '-', ok: false, note: `convert: ${conv.error}` }); failed++; return; }
  const modes = c.adapters.length ? ['merge', 'unfused', 'fused'] : ['fused'];
  for (const mode of modes) {
    for (const [kv, sampling] of [['f32', ['--temperature', '0']], ['f32', ['--temperature', '0.9', '--top-k', '20', '--top-p', '0.95', '--min-p', '0.02', '--seed', '7']], ['f16', ['--temperature', '0']]]) {
      const tag = (sampling[1] === '0' ? 'greedy' : 'sampled') + (kv === 'f32' ? '' : ` kv ${kv}`);
      const kvArgs = ['--kv-cache', kv];
      const out = {};
      const [b0, b1] = backends;
      await Promise.all([b0, b1].map(async (backend, i) => {
        const key = i === 0 ? 'cpu' : 'cuda';
        const trace = path.join(work, `${c.name.replace(/[^\w.-]/g, '_')}.${mode}.${tag.replace(/ /g, '_')}.${i}.jsonl`);
        out[key] = await run(['generate', '-m', lsw, '-p', 'Hello world, the quick brown fox', '--max-tokens', '24',
          '--ignore-eos', '--mode', mode, '--backend', backend, '--json', ...(c.adapters.length ? ['--trace', trace] : []), ...kvArgs, ...sampling]);
        out[key].traceFile = trace;
      }));
      let ok = !out.cpu.error && !out.cuda.error;
      let note = out.cpu.error ? `cpu: ${out.cpu.error}` : out.cuda.error ? `cuda: ${out.cuda.error}` : '';
      // merge + MixLoRA top_k > 1 is refused on both backends alike: that is agreement, not failure
      if (out.cpu.error && out.cuda.error && out.cpu.error.includes('merge mode cannot') && out.cuda.error.includes('merge mode cannot')) { ok = true; note = 'refused on both (merge + MixLoRA top_k > 1)'; }
      else if (ok) {
        const same = JSON.stringify(out.cpu.tokens) === JSON.stringify(out.cuda.tokens);
        let routesSame = true;
        if (c.adapters.length && fs.existsSync(out.cpu.traceFile) && fs.existsSync(out.cuda.traceFile)) {
          const strip = (f) => fs.readFileSync(f, 'utf8').split('\n').slice(1).map((l) => l && JSON.stringify((JSON.parse(l).routes ?? []).map((r) => r.experts ?? r))).join('\n');
          routesSame = strip(out.cpu.traceFile) === strip(out.cuda.traceFile);
        }
        ok = same && routesSame;
        note = `${same ? 'tokens equal' : 'TOKENS DIFFER'}${c.adapters.length ? (routesSame ? ', routes equal' : ', ROUTES DIFFER') : ''}; cpu ${out.cpu.timings.tokens_per_s} tok/s, cuda ${out.cuda.timings.tokens_per_s} tok/s`;
      }
      if (!ok) failed++;
      rows.push({ case: c.name, mode, sampling: tag, ok, note });
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(36)} ${mode.padEnd(8)} ${tag.padEnd(14)} ${note}`);
    }
  }
}
const queue = [...manifest.cases];
const conc = Number(process.env.LSW_E2E_JOBS ?? 6);
await Promise.all(Array.from({ length: conc }, async () => { while (queue.length) await runCase(queue.shift()); }));
const passed = rows.filter((r) => r.ok).length;
console.log(`${passed} passed, ${rows.length - passed} failed`);
if (resultFile) fs.writeFileSync(resultFile, JSON.stringify({ date: new Date().toISOString(), cli, rows }, null, 1));
fs.rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);

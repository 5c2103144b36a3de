// The forward pass on every SIMD level the engine can choose at run time (LSW_SIMD caps it), each in a fresh
// process, against the fp64 reference: users' CPUs vary, and CI's may pick a different path than this machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { convertModel } from '../src/core/convert.js';
import { makeTinyCheckpoint } from './helpers/checkpoint.js';
import { RefModel } from './helpers/reference.js';
import { assertLogitsClose } from './helpers/compare.js';
import { VARIANTS, PROMPT_IDS } from './helpers/variants.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-simd-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const LEVELS: [string, number][] = [['scalar', 0], ['avx2', 1], ['avx512', 2]];

/**
 * The highest level this CPU supports, from the flags in /proc/cpuinfo, as the engine's dispatch
 * (cuda/src/cpu.cpp choose_kernels) decides it: 2 with avx512f + avx512bw + avx512vl, 1 with avx2 + fma + f16c,
 * else 0 (also on CPUs whose /proc/cpuinfo has no x86 "flags" line). null where /proc/cpuinfo cannot be read.
 */
function cpuSimdLevel(): number | null {
  let info: string;
  try {
    info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
  const line = /^flags\s*:(.*)$/m.exec(info);
  const flags = new Set((line?.[1] ?? '').trim().split(/\s+/));
  const has = (...f: string[]) => f.every((x) => flags.has(x));
  if (has('avx512f', 'avx512bw', 'avx512vl')) return 2;
  if (has('avx2', 'fma', 'f16c')) return 1;
  return 0;
}
const CPU_LEVEL = cpuSimdLevel();
const CASES = ['llama3-gqa-rope-llama3-v5', 'qwen2-bias-tied-bf16', 'mistral-gqa-f16'];

function runChild(model: string, level: string) {
  const out = path.join(tmp, `out-${level}-${path.basename(model)}.json`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'helpers', 'eval-logits.ts'), model, out, PROMPT_IDS.join(','), '16'], {
    env: { ...process.env, LSW_SIMD: level },
    encoding: 'utf8',
    cwd: path.resolve(here, '..'),
  });
  if (r.status !== 0) throw new Error(`child (LSW_SIMD=${level}) failed: ${r.stderr || r.stdout}`);
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

for (const name of CASES) {
  test(`${name}: every SIMD level matches the reference (logits, token-by-token, greedy)`, async () => {
    const v = VARIANTS.find((x) => x.name === name)!;
    const info = makeTinyCheckpoint(path.join(tmp, name), v.opts);
    const lsw = path.join(tmp, `${name}.lsw`);
    await convertModel(info.dir, lsw);
    const ref = RefModel.load(info.dir);
    const want = ref.forward(PROMPT_IDS).logits;
    const greedy = ref.greedy(PROMPT_IDS, 16).tokens;
    const seen = new Set<number>();
    for (const [level, expect] of LEVELS) {
      const res = runChild(lsw, level);
      seen.add(res.stats.simd_level);
      assert.ok(res.stats.simd_level <= expect, `LSW_SIMD=${level} capped the level (got ${res.stats.simd_level})`);
      // the best level both the cap and this CPU allow is the one chosen
      if (CPU_LEVEL !== null) assert.is(res.stats.simd_level, Math.min(expect, CPU_LEVEL), `LSW_SIMD=${level} on a CPU of level ${CPU_LEVEL}`);
      assertLogitsClose(res.logits, want, 1e-5, `${name} LSW_SIMD=${level} batch`);
      assertLogitsClose(res.single_logits, want, 1e-5, `${name} LSW_SIMD=${level} token-by-token`);
      assert.equal(res.greedy_tokens, greedy, `${name} LSW_SIMD=${level} greedy`);
    }
    assert.ok(seen.has(0), 'the scalar path ran');
    // every level this CPU supports was tested
    for (let l = 0; l <= (CPU_LEVEL ?? 0); l++) assert.ok(seen.has(l), `level ${l} (supported by this CPU) ran`);
  });
}

test.run();

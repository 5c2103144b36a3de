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
      assertLogitsClose(res.logits, want, 1e-5, `${name} LSW_SIMD=${level} batch`);
      assertLogitsClose(res.single_logits, want, 1e-5, `${name} LSW_SIMD=${level} token-by-token`);
      assert.equal(res.greedy_tokens, greedy, `${name} LSW_SIMD=${level} greedy`);
    }
    assert.ok(seen.has(0), 'the scalar path ran');
  });
}

test.run();

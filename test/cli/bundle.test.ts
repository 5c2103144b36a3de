// `npm run bundle` produces a CLI that runs from a folder without node_modules.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTinyCheckpoint } from '../helpers/checkpoint.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-bundle-'));

test('bundle: --help and convert run from a copy outside the repository', () => {
  const b = spawnSync(process.execPath, [path.join(root, 'scripts', 'bundle.mjs')], { encoding: 'utf8' });
  assert.is(b.status, 0, b.stderr);
  const copy = path.join(dir, 'cli');
  fs.cpSync(path.join(root, 'dist', 'bundle'), copy, { recursive: true });
  assert.ok(fs.existsSync(path.join(copy, 'koffi-linux-x64.node')));
  const env = { ...process.env, NODE_PATH: '' };
  const help = spawnSync(process.execPath, [path.join(copy, 'lora-switch.mjs'), '--help'], { encoding: 'utf8', cwd: dir, env });
  assert.is(help.status, 0, help.stderr);
  // every command of the manifest is in the bundle
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'oclif.manifest.json'), 'utf8'));
  for (const id of Object.keys(manifest.commands)) assert.match(help.stdout, new RegExp(`\\b${id}\\b`), `bundle lacks ${id}`);
  const hf = path.join(dir, 'hf');
  makeTinyCheckpoint(hf, { arch: 'qwen2' });
  const conv = spawnSync(process.execPath, [path.join(copy, 'lora-switch.mjs'), 'convert', hf, '-o', path.join(dir, 'm.lsw'), '--json'], { encoding: 'utf8', cwd: dir, env });
  assert.is(conv.status, 0, conv.stderr);
  assert.is(JSON.parse(conv.stdout).architecture, 'qwen2');
  // (the single file evaluates every module at start-up, koffi's native module included)
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
// @ts-expect-error plain .mjs script without types
import { buildManifest, serialize } from '../../scripts/manifest.mjs';

test('oclif.manifest.json is up to date (regenerate with `npm run build && npm run manifest`)', async () => {
  const committed = fs.readFileSync(new URL('../../oclif.manifest.json', import.meta.url), 'utf8');
  const fresh = serialize(await buildManifest());
  assert.fixture(committed, fresh);
});

test('the manifest lists exactly the implemented commands, each with --json', async () => {
  const m = JSON.parse(fs.readFileSync(new URL('../../oclif.manifest.json', import.meta.url), 'utf8'));
  const cmds = Object.keys(m.commands).sort();
  const files = fs.readdirSync(new URL('../../src/commands', import.meta.url)).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).sort();
  assert.equal(cmds, files);
  for (const c of cmds) assert.ok(m.commands[c].flags.json, `${c} has --json`);
});

test.run();

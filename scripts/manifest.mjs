#!/usr/bin/env node
// Generates oclif.manifest.json with @oclif/core's own tooling (the `oclif` CLI needs Node 22).
// `node scripts/manifest.mjs`          writes the manifest (run after `npm run build`)
// `node scripts/manifest.mjs --print`  prints it (the staleness test compares the two)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Plugin } from '@oclif/core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function buildManifest() {
  const plugin = new Plugin({ root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true, isRoot: true });
  await plugin.load();
  return plugin.manifest;
}

export function serialize(manifest) {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = serialize(await buildManifest());
  if (process.argv.includes('--print')) process.stdout.write(text);
  else {
    fs.writeFileSync(path.join(root, 'oclif.manifest.json'), text);
    console.log(`wrote oclif.manifest.json (${Object.keys(JSON.parse(text).commands).length} commands)`);
  }
}

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import { FUNCTIONS, STRUCTS } from '../../src/core/native/abi.js';

const header = fs.readFileSync(new URL('../../cuda/include/lsw.h', import.meta.url), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
const norm = (s: string) => s.replace(/\b_Out_\s+/g, '').replace(/\s+/g, ' ').replace(/\s*([(),*])\s*/g, '$1').trim();

test('every LSW_API function of lsw.h is declared in the koffi table with the same prototype', () => {
  const decls = [...header.matchAll(/^LSW_API\s+([^;]+);/gm)].map((m) => norm(m[1]));
  assert.ok(decls.length > 20);
  const names = decls.map((d) => /(lsw_\w+)\(/.exec(d)![1]);
  assert.equal([...names].sort(), Object.keys(FUNCTIONS).sort());
  for (const d of decls) {
    const name = /(lsw_\w+)\(/.exec(d)![1] as keyof typeof FUNCTIONS;
    assert.is(norm(FUNCTIONS[name]), d, name);
  }
});

test('every struct of lsw.h is declared field by field', () => {
  for (const m of header.matchAll(/typedef struct (\w+) \{([^}]*)\}/g)) {
    const fields = [...m[2].matchAll(/^\s*(\w+)\s+(\w+);/gm)].map((f) => [f[2], f[1]]);
    assert.equal(Object.entries(STRUCTS[m[1]] ?? {}), fields, m[1]);
  }
});

test.run();

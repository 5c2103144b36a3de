import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import { FUNCTIONS, STRUCTS, LSW_ABI_VERSION } from '../../src/core/native/abi.js';
import { LswStatus, STATUS_NAMES, NativeError, nativeError } from '../../src/core/errors.js';

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

test('every lsw_status of lsw.h has its name, its value and its own typed error; the ABI versions agree', () => {
  const body = /typedef enum lsw_status \{([^}]*)\} lsw_status;/.exec(header);
  assert.ok(body, 'the lsw_status enum');
  const statuses = [...body![1].matchAll(/(LSW_(?:E_)?\w+)\s*=\s*(\d+)/g)].map((m) => [m[1], Number(m[2])] as const);
  assert.ok(statuses.length >= 11);
  assert.equal(statuses.map(([n, v]) => [n.replace(/^LSW_(E_)?/, ''), v]), Object.entries(LswStatus));
  const classes = new Set<string>();
  for (const [n, v] of statuses) {
    assert.is(STATUS_NAMES[v], n);
    if (v === 0) continue;
    const e = nativeError('lsw_x', v, 'why');
    assert.instance(e, NativeError);
    assert.is.not(e.constructor, NativeError, `${n} has its own error class`);
    classes.add(e.name);
  }
  assert.is(classes.size, statuses.length - 1, 'one class per status');
  assert.is(Number(/#define LSW_ABI_VERSION (\d+)/.exec(header)![1]), LSW_ABI_VERSION);
});

test.run();

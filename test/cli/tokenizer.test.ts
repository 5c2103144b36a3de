import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyCheckpoint } from '../helpers/checkpoint.js';
import { Tokenizer } from '../../src/core/tokenizer.js';
import { StopMatcher } from '../../src/core/generate.js';
import { UserError } from '../../src/core/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-tok-'));
const src = path.join(dir, 'm');
makeTinyCheckpoint(src, { arch: 'llama' });
const tok = Tokenizer.fromFolder(src);

test('encode/decode round trip, BOS handling', () => {
  const text = 'hello world, the quick brown fox';
  const ids = tok.encode(text, true);
  const plain = tok.encode(text, false);
  // the llama fixture's BOS comes from the tokenizer.json post-processor (tokenizer_config.json has no add_bos_token)
  assert.is(tok.addBos, null);
  assert.type(tok.bosTokenId, 'number');
  assert.is(ids[0], tok.bosTokenId);
  assert.equal(ids.slice(1), plain, 'with BOS: one id more, the BOS, in front');
  assert.not.equal(plain[0], tok.bosTokenId);
  const hello = tok.encode('hello', true);
  assert.is(hello[0], tok.bosTokenId);
  assert.is(hello.length, tok.encode('hello', false).length + 1);
  assert.is(tok.decode(plain), text);
});

test('stream decoder: concatenated deltas equal the whole decode, never a replacement char', () => {
  const text = 'héllo wörld — ünïcode ✓ the fox';
  const ids = tok.encode(text, false);
  const dec = tok.streamDecoder();
  let out = '';
  for (const id of ids) {
    const d = dec.push(id);
    assert.not.ok(d.includes('\uFFFD'), `delta ${JSON.stringify(d)}`);
    out += d;
  }
  out += dec.flush();
  assert.is(out, tok.decode(ids));
});

test('chat template renders through jinja; a model without one gives a clear error', () => {
  const t = new Tokenizer({
    tokenizerJson: fs.readFileSync(path.join(src, 'tokenizer.json'), 'utf8'),
    tokenizerConfig: JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }),
    chatTemplate: "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    origin: 'm',
  });
  assert.is(t.applyChatTemplate([{ role: 'system', content: 'S' }, { role: 'user', content: 'hi' }]), '<s><|system|>S<|user|>hi<|assistant|>');
  const none = new Tokenizer({ tokenizerJson: fs.readFileSync(path.join(src, 'tokenizer.json'), 'utf8'), origin: 'm' });
  assert.throws(() => none.applyChatTemplate([{ role: 'user', content: 'x' }]), (e: unknown) => e instanceof UserError && /no chat template/.test((e as Error).message));
});

test('stop matcher holds back possible stop prefixes and cuts at the stop string', () => {
  const m = new StopMatcher(['END', '\n\n']);
  assert.equal(m.push('abc E'), { emit: 'abc ', stopped: false });
  assert.equal(m.push('N'), { emit: '', stopped: false });
  assert.equal(m.push('x'), { emit: 'ENx', stopped: false });
  assert.equal(m.push('yy\n'), { emit: 'yy', stopped: false });
  assert.equal(m.push('\nzz'), { emit: '', stopped: true });
  const n = new StopMatcher(['STOP']);
  assert.equal(n.push('aSTOPb'), { emit: 'a', stopped: true });
  assert.is(new StopMatcher([]).push('x').emit, 'x');
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

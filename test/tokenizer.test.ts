// The product's tokenizer (src/core/tokenizer.ts over @huggingface/tokenizers + jinja) against an independent
// oracle: a tiny BPE encoder/decoder written in the test helpers and hand-written chat renderings.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tokenizer } from '../src/core/tokenizer.js';
import { convertModel } from '../src/core/convert.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { makeTinyCheckpoint, expectedChat } from './helpers/checkpoint.js';
import { oracleEncode, oracleDecode } from './helpers/tokenizer-fixture.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-tok-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const llama = makeTinyCheckpoint(path.join(tmp, 'llama'), { arch: 'llama' });
const qwen = makeTinyCheckpoint(path.join(tmp, 'qwen'), { arch: 'qwen2' });

const TEXTS = [
  'Hello world. The quick brown fox jumps over the lazy dog.',
  'the theory of these three things',
  "It's 42 o'clock,   isn't it?\n\nNew line\ttab",
  'experts: top-k router; LoRA-Switch!',
  ' leading space and trailing  ',
];
const UNICODE = ['héllo wörld', '世界 你好', 'emoji 🙂🚀 done', 'mixed ñ, ß and Ω'];

for (const [name, fx] of [['llama', llama], ['qwen2', qwen]] as const) {
  test(`${name}: encode matches the independent BPE oracle; BOS per post-processor`, () => {
    const tok = Tokenizer.fromFolder(fx.dir);
    for (const t of TEXTS) assert.equal(tok.encode(t), oracleEncode(fx.tokenizer, t), JSON.stringify(t));
    const ids = tok.encode('Hello');
    if (name === 'llama') assert.is(ids[0], fx.tokenizer.bosId);
    else assert.ok(!ids.includes(fx.tokenizer.vocab.get('<|endoftext|>')!));
    assert.equal(tok.encode('Hello', false), oracleEncode(fx.tokenizer, 'Hello', false));
    // merges are exercised (fewer ids than bytes)
    assert.ok(tok.encode(TEXTS[0], false).length < Buffer.byteLength(TEXTS[0]) * 0.8);
  });

  test(`${name}: decode(encode(x)) == x, including multi-byte UTF-8; oracle decode agrees`, () => {
    const tok = Tokenizer.fromFolder(fx.dir);
    for (const t of [...TEXTS, ...UNICODE]) {
      const ids = tok.encode(t, false);
      assert.is(tok.decode(ids), t);
      assert.is(oracleDecode(fx.tokenizer, ids), t);
    }
  });

  test(`${name}: streaming decoder emits the same text, never a broken UTF-8 character`, () => {
    const tok = Tokenizer.fromFolder(fx.dir);
    for (const t of UNICODE) {
      const ids = tok.encode(t, false);
      const sd = tok.streamDecoder();
      let s = '';
      for (const id of ids) {
        const piece = sd.push(id);
        assert.ok(!piece.includes('\ufffd'), `replacement char in piece of ${t}`);
        s += piece;
      }
      s += sd.flush();
      assert.is(s, t);
    }
  });

  test(`${name}: special tokens in text map to their ids; skipped on decode`, () => {
    const tok = Tokenizer.fromFolder(fx.dir);
    const eos = fx.tokenizer.eosToken;
    const ids = tok.encode(`hi${eos}there`, false);
    assert.equal(ids, oracleEncode(fx.tokenizer, `hi${eos}there`, false));
    assert.ok(ids.includes(fx.tokenizer.eosId));
    assert.is(tok.decode(ids), 'hithere');
    assert.is(tok.decode(ids, false), `hi${eos}there`);
    assert.ok(tok.eosTokenIds.includes(fx.tokenizer.eosId));
  });

  test(`${name}: chat template renders exactly; encodeChat = encode(render) without a second BOS`, () => {
    const tok = Tokenizer.fromFolder(fx.dir);
    const msgs = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hello there' },
      { role: 'assistant', content: 'Hi.' },
      { role: 'user', content: 'And the fox?' },
    ];
    assert.is(tok.applyChatTemplate(msgs, true), expectedChat(fx.opts.arch, msgs, true));
    assert.is(tok.applyChatTemplate(msgs, false), expectedChat(fx.opts.arch, msgs, false));
    const ids = tok.encodeChat(msgs);
    const rendered = expectedChat(fx.opts.arch, msgs, true);
    assert.equal(ids, oracleEncode(fx.tokenizer, rendered, false), 'the template already holds BOS: no second one');
    if (name === 'llama') assert.is(ids.filter((i) => i === fx.tokenizer.bosId).length, 1);
  });
}

test('.lsw metadata carries tokenizer, tokenizer_config, chat template and generation_config verbatim', async () => {
  const out = path.join(tmp, 'q.lsw');
  await convertModel(qwen.dir, out);
  const st = readSafetensors(out) as any;
  const md = st.metadata as Record<string, string>;
  assert.is(md['lsw.tokenizer'], fs.readFileSync(path.join(qwen.dir, 'tokenizer.json'), 'utf8'));
  assert.is(md['lsw.tokenizer_config'], fs.readFileSync(path.join(qwen.dir, 'tokenizer_config.json'), 'utf8'));
  assert.is(md['lsw.hf_config'], fs.readFileSync(path.join(qwen.dir, 'config.json'), 'utf8'));
  assert.is(md['lsw.generation_config'], fs.readFileSync(path.join(qwen.dir, 'generation_config.json'), 'utf8'));
  assert.is(md['lsw.chat_template'], JSON.parse(fs.readFileSync(path.join(qwen.dir, 'tokenizer_config.json'), 'utf8')).chat_template);
  assert.is(md.format, 'lora-switch');
});

test.run();

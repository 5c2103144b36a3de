import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseHfConfig } from '../../src/core/hf-config.js';
import { UserError } from '../../src/core/errors.js';

const base = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
  num_attention_heads: 8, num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 1024, rms_norm_eps: 1e-5,
  torch_dtype: 'bfloat16', bos_token_id: 1, eos_token_id: 2,
};

function err(raw: unknown, re: RegExp): void {
  try {
    parseHfConfig(raw, 'm/config.json');
  } catch (e) {
    assert.instance(e, UserError);
    assert.ok((e as Error).message.startsWith('m/config.json: '));
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable('expected an error');
}

test('llama: GQA, derived head_dim, defaults', () => {
  const c = parseHfConfig(base, 'x');
  assert.is(c.architecture, 'llama');
  assert.is(c.num_kv_heads, 2);
  assert.is(c.head_dim, 8);
  assert.is(c.rope_theta, 10000);
  assert.is(c.rope_type, 'default');
  assert.is(c.qkv_bias, false);
  assert.is(c.tie_embeddings, false);
  assert.is(c.dtype, 'bf16');
  assert.equal(c.eos_token_ids, [2]);
  assert.is(c.bos_token_id, 1);
});

test('head_dim given, kv heads default to heads, dtype key of transformers 5', () => {
  const { num_key_value_heads: _, torch_dtype: __, ...rest } = base;
  const c = parseHfConfig({ ...rest, head_dim: 16, dtype: 'float16' }, 'x');
  assert.is(c.head_dim, 16);
  assert.is(c.num_kv_heads, 8);
  assert.is(c.dtype, 'f16');
});

test('llama3 rope: legacy rope_theta + rope_scaling and transformers 5 rope_parameters agree', () => {
  const legacy = parseHfConfig({ ...base, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, 'x');
  const v5 = parseHfConfig({ ...base, rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, 'x');
  assert.equal(legacy, v5);
  assert.is(v5.rope_type, 'llama3');
  assert.is(v5.rope_theta, 500000);
  assert.is(v5.rope_factor, 32);
  assert.is(v5.rope_original_max_position, 8192);
});

test('linear rope with old "type" key; default rope_parameters', () => {
  const c = parseHfConfig({ ...base, rope_scaling: { type: 'linear', factor: 4 } }, 'x');
  assert.is(c.rope_type, 'linear');
  assert.is(c.rope_factor, 4);
  const d = parseHfConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }, 'x');
  assert.is(d.rope_type, 'default');
  assert.is(d.rope_theta, 1e6);
});

test('qwen2: q/k/v bias, tied embeddings, sliding window off', () => {
  const c = parseHfConfig({ ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true, use_sliding_window: false, sliding_window: 64 }, 'x');
  assert.is(c.architecture, 'qwen2');
  assert.is(c.qkv_bias, true);
  assert.is(c.tie_embeddings, true);
  assert.is(c.max_position_embeddings, 1024);
});

test('mistral: sliding window caps the context', () => {
  const c = parseHfConfig({ ...base, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 256 }, 'x');
  assert.is(c.architecture, 'mistral');
  assert.is(c.max_position_embeddings, 256);
});

test('eos list and generation_config precedence', () => {
  const c = parseHfConfig({ ...base, eos_token_id: [2, 7] }, 'x');
  assert.equal(c.eos_token_ids, [2, 7]);
  const g = parseHfConfig(base, 'x', { eos_token_id: [9, 10], bos_token_id: 3 });
  assert.equal(g.eos_token_ids, [9, 10]);
  assert.is(g.bos_token_id, 3);
});

test('bad configs: one line naming the file', () => {
  err({ ...base, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, /unsupported architecture \(GPT2LMHeadModel\)/);
  err({ ...base, hidden_size: undefined }, /missing "hidden_size"/);
  err({ ...base, num_key_value_heads: 3 }, /not a multiple/);
  err({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }, /unsupported rope scaling type "yarn"/);
  err({ ...base, hidden_act: 'gelu' }, /unsupported hidden_act/);
  err({ ...base, attention_bias: true }, /attention_bias/);
  err([1, 2], /not a JSON object/);
});

test.run();

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyCheckpoint } from '../helpers/checkpoint.js';
import { convertModel } from '../../src/core/convert.js';
import { readSafetensors, readTensorBytes, ALIGNMENT, type SafetensorsFile } from '../../src/core/safetensors.js';
import { toF32 } from '../../src/core/dtype.js';
import { UserError } from '../../src/core/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lsw-conv-'));

function hfTensor(folder: string, name: string): Float32Array {
  const idx = path.join(folder, 'model.safetensors.index.json');
  const file = fs.existsSync(idx) ? path.join(folder, JSON.parse(fs.readFileSync(idx, 'utf8')).weight_map[name]) : path.join(folder, 'model.safetensors');
  const st = readSafetensors(file);
  const t = st.tensors.get(name)!;
  return toF32(readTensorBytes(st, t), t.dtype as 'F32');
}
function lswTensor(st: SafetensorsFile, name: string): Float32Array {
  const t = st.tensors.get(name);
  assert.ok(t, `${name} present`);
  return toF32(readTensorBytes(st, t!), t!.dtype as 'F32');
}

test('qwen2, sharded, f32: fused q/k/v (+bias) and gate/up, exact bytes, metadata', async () => {
  const src = path.join(dir, 'qwen');
  const info = makeTinyCheckpoint(src, { arch: 'qwen2', dtype: 'f32', shards: 3, kvHeads: 2, seed: 7 });
  const out = path.join(dir, 'qwen.lsw');
  const r = await convertModel(src, out, { dtype: 'f32' });
  assert.is(r.architecture, 'qwen2');
  const st = readSafetensors(out);
  assert.is(st.dataOffset % ALIGNMENT, 0);
  for (const t of st.tensors.values()) assert.is(t.start % ALIGNMENT, 0);
  const q = hfTensor(src, 'model.layers.1.self_attn.q_proj.weight');
  const k = hfTensor(src, 'model.layers.1.self_attn.k_proj.weight');
  const v = hfTensor(src, 'model.layers.1.self_attn.v_proj.weight');
  assert.equal([...lswTensor(st, 'layers.1.attn.wqkv.weight')], [...q, ...k, ...v]);
  const qb = hfTensor(src, 'model.layers.1.self_attn.q_proj.bias');
  const kb = hfTensor(src, 'model.layers.1.self_attn.k_proj.bias');
  const vb = hfTensor(src, 'model.layers.1.self_attn.v_proj.bias');
  assert.equal([...lswTensor(st, 'layers.1.attn.bqkv.bias')], [...qb, ...kb, ...vb]);
  const g = hfTensor(src, 'model.layers.0.mlp.gate_proj.weight');
  const u = hfTensor(src, 'model.layers.0.mlp.up_proj.weight');
  assert.equal([...lswTensor(st, 'layers.0.ffn.w_gate_up.weight')], [...g, ...u]);
  assert.equal(st.tensors.get('layers.0.attn.wqkv.weight')!.shape, [info.config.hidden_size + 2 * 2 * (info.config.hidden_size / info.config.num_attention_heads), info.config.hidden_size]);
  assert.is(st.metadata.format, 'lora-switch');
  assert.is(st.metadata.format_version, '1');
  assert.is(JSON.parse(st.metadata['lsw.config']).qkv_bias, true);
  assert.is(st.metadata['lsw.tokenizer'], fs.readFileSync(path.join(src, 'tokenizer.json'), 'utf8'));
  assert.is(st.metadata['lsw.hf_config'], fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
  assert.is(st.metadata['lsw.adapters'], '[]');
  const prov = JSON.parse(st.metadata['lsw.provenance']);
  assert.is(prov.dtype, 'f32');
  assert.ok(prov.files.some((f: { name: string; sha256: string }) => f.name.endsWith('.safetensors') && /^[0-9a-f]{64}$/.test(f.sha256)));
  if (info.config.tie_word_embeddings) assert.not.ok(st.tensors.has('lm_head.weight'));
});

test('llama bf16 -> f16 and f32 -> bf16: values rounded once, norms stay F32', async () => {
  const src = path.join(dir, 'llama');
  makeTinyCheckpoint(src, { arch: 'llama', dtype: 'bf16', seed: 3 });
  const out = path.join(dir, 'llama16.lsw');
  await convertModel(src, out, { dtype: 'f16' });
  const st = readSafetensors(out);
  assert.is(st.tensors.get('tok_embeddings.weight')!.dtype, 'F16');
  assert.is(st.tensors.get('norm.weight')!.dtype, 'F32');
  assert.is(st.tensors.get('layers.0.attn_norm.weight')!.dtype, 'F32');
  const a = hfTensor(src, 'model.embed_tokens.weight');
  const b = lswTensor(st, 'tok_embeddings.weight');
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= Math.abs(a[i]) * 2 ** -11 + 2 ** -24, `elem ${i}`);
  const def = path.join(dir, 'llama-default.lsw');
  const r = await convertModel(src, def);
  assert.is(r.dtype, 'bf16', 'default dtype: the checkpoint\'s');
});

test('a shape contradicting config.json: one line naming file and tensor, no output', async () => {
  const src = path.join(dir, 'bad');
  makeTinyCheckpoint(src, { arch: 'llama', dtype: 'f32' });
  const cfgPath = path.join(src, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  cfg.intermediate_size += 8;
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  const out = path.join(dir, 'bad.lsw');
  try {
    await convertModel(src, out);
    assert.unreachable('should fail');
  } catch (e) {
    assert.instance(e, UserError);
    assert.match((e as Error).message, /model\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[\d+, \d+\] but config\.json implies/);
  }
  assert.not.ok(fs.existsSync(out));
});

test('a shard that ends early while the output is being written: one line naming it, no output, no temp file left', async () => {
  const src = path.join(dir, 'short');
  makeTinyCheckpoint(src, { arch: 'llama', dtype: 'f32', seed: 5 });
  const shard = path.join(src, 'model.safetensors');
  const outDir = path.join(dir, 'short-out');
  fs.mkdirSync(outDir);
  const out = path.join(outDir, 'short.lsw');
  let tensorsWritten = 0;
  let tempSeen: string[] = [];
  try {
    await convertModel(src, out, {
      onProgress: (e) => {
        if (e.type !== 'tensor' || tensorsWritten++ > 0) return;
        // the writer has started (its temporary file exists); the shard loses its tensor data now, so the next
        // tensor read fails in the middle of the write
        tempSeen = fs.readdirSync(outDir).filter((f) => f.includes('.tmp-'));
        fs.truncateSync(shard, readSafetensors(shard).dataOffset);
      },
    });
    assert.unreachable('should fail');
  } catch (e) {
    assert.instance(e, UserError);
    assert.match((e as Error).message, /model\.safetensors: unexpected end of file while reading tensor data/);
  }
  assert.is(tensorsWritten, 1, 'the failure came after the first tensor was written');
  assert.is(tempSeen.length, 1, 'a temporary file existed while writing');
  assert.not.ok(fs.existsSync(out));
  assert.equal(fs.readdirSync(outDir), [], 'no temporary file left');
});

test('missing tensor, unexpected tensor, missing tokenizer, unsupported architecture', async () => {
  const src = path.join(dir, 'arch');
  makeTinyCheckpoint(src, { arch: 'llama' });
  const cfgPath = path.join(src, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: cfg.num_hidden_layers + 1 }));
  await assertRejects(convertModel(src, path.join(dir, 'x.lsw')), /missing tensor "model\.layers\.\d+\.input_layernorm\.weight"/);
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: cfg.num_hidden_layers - 1 }));
  await assertRejects(convertModel(src, path.join(dir, 'x.lsw')), /unexpected tensor "model\.layers\.\d+\./);
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, architectures: ['PhiForCausalLM'], model_type: 'phi' }));
  await assertRejects(convertModel(src, path.join(dir, 'x.lsw')), /config\.json: unsupported architecture \(PhiForCausalLM\)/);
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  fs.rmSync(path.join(src, 'tokenizer.json'));
  await assertRejects(convertModel(src, path.join(dir, 'x.lsw')), /tokenizer\.json: no such file/);
  await assertRejects(convertModel(path.join(dir, 'nowhere'), path.join(dir, 'x.lsw')), /nowhere: no such file or directory/);
  assert.not.ok(fs.existsSync(path.join(dir, 'x.lsw')));
});

async function assertRejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, UserError);
    assert.match((e as Error).message, re);
    assert.not.match((e as Error).message, /\n/);
    return;
  }
  assert.unreachable(`expected rejection matching ${re}`);
}

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();

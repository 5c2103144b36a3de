import { test } from 'uvu';
import * as assert from 'uvu/assert';
import React from 'react';
import { render } from 'ink-testing-library';
import { GenerateView } from '../../src/core/views/generate-view.js';
import { ConvertView, newConvertState } from '../../src/core/views/convert-view.js';
import { newState } from '../../src/core/generate.js';

test('generate view: streams text and shows tokens/s while decoding', () => {
  const s = newState('m.lsw', 64);
  const { lastFrame, rerender, unmount } = render(<GenerateView state={{ ...s }} />);
  assert.match(lastFrame() ?? '', /loading model/);
  Object.assign(s, { phase: 'decoding', text: 'Once upon a time', tokens: [1, 2, 3, 4], tokensPerS: 123.45 });
  rerender(<GenerateView state={{ ...s }} />);
  const f = lastFrame() ?? '';
  assert.match(f, /Once upon a time/);
  assert.match(f, /4\/64 tokens · 123\.5 tok\/s/);
  Object.assign(s, { phase: 'done', stopReason: 'interrupted', backend: 'cpu', promptTokens: 5, prefillMs: 12 });
  rerender(<GenerateView state={{ ...s }} />);
  assert.match(lastFrame() ?? '', /4 tokens · 123\.5 tok\/s · prefill 5 tok in 12 ms · cpu · interrupted/);
  unmount();
});

test('generate view: mode and adapters when the model has adapters', () => {
  const s = { ...newState('m.lsw', 8), phase: 'decoding' as const, tokens: [1, 2], tokensPerS: 10, mode: 'merge', adapters: ['my-switch', 'style'] };
  const { lastFrame, rerender, unmount } = render(<GenerateView state={s} />);
  assert.match(lastFrame() ?? '', /2\/8 tokens · 10\.0 tok\/s · merge · my-switch, style/);
  rerender(<GenerateView state={{ ...s, phase: 'done', stopReason: 'max_tokens', backend: 'cpu', promptTokens: 3, prefillMs: 4 }} />);
  assert.match(lastFrame() ?? '', /· cpu · merge · my-switch, style · max_tokens/);
  unmount();
});

test('generate view: converting an HF folder shows tensor progress', () => {
  const s = { ...newState('hf/', 8), phase: 'converting' as const, convert: { done: 3, total: 10 } };
  const { lastFrame, unmount } = render(<GenerateView state={s} />);
  assert.match(lastFrame() ?? '', /converting 3\/10 tensors/);
  unmount();
});

test('convert view: progress bar, then a summary line', () => {
  const s = { ...newConvertState('hf', 'out.lsw'), architecture: 'llama', dtype: 'f16', done: 5, total: 10, bytesWritten: 512 * 1024, totalBytes: 1024 * 1024, current: 'layers.1.attn.wqkv.weight' };
  const { lastFrame, rerender, unmount } = render(<ConvertView state={s} />);
  const f = lastFrame() ?? '';
  assert.match(f, /Converting hf → out\.lsw \(llama, f16\)/);
  assert.match(f, /50%\s+5\/10 tensors\s+0\.5 MiB\/1\.0 MiB/);
  assert.match(f, /layers\.1\.attn\.wqkv\.weight/);
  rerender(<ConvertView state={{ ...s, finished: true, done: 10, ms: 2500 }} />);
  assert.match(lastFrame() ?? '', /✓ out\.lsw: llama, f16, 10 tensors, 0\.5 MiB in 2\.5 s/);
  unmount();
});

test.run();

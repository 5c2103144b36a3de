import React from 'react';
import { Box, Text } from 'ink';
import type { GenerateState } from '../generate.js';

/** ` · fused · my-switch, style` when the model has adapters */
function adapters(s: GenerateState): string {
  return s.adapters.length > 0 ? ` · ${s.mode} · ${s.adapters.join(', ')}` : '';
}

function status(s: GenerateState): string {
  switch (s.phase) {
    case 'loading':
      return 'loading model…';
    case 'converting':
      return s.convert ? `converting ${s.convert.done}/${s.convert.total} tensors…` : 'converting…';
    case 'prefill':
      return `prefill ${s.promptTokens} tokens…`;
    case 'decoding':
      return `${s.tokens.length}/${s.maxTokens} tokens · ${s.tokensPerS.toFixed(1)} tok/s${adapters(s)}`;
    case 'done': {
      const why = s.stopReason === 'interrupted' ? ' · interrupted' : s.stopReason ? ` · ${s.stopReason}` : '';
      return `${s.tokens.length} tokens · ${s.tokensPerS.toFixed(1)} tok/s · prefill ${s.promptTokens} tok in ${s.prefillMs.toFixed(0)} ms · ${s.backend}${adapters(s)}${why}`;
    }
  }
}

/** Streams the generated text with a status line; renders the state only. */
export function GenerateView({ state }: { state: GenerateState }): React.JSX.Element {
  return (
    <Box flexDirection="column">
      {state.text !== '' ? <Text>{state.text}</Text> : null}
      <Text dimColor>{status(state)}</Text>
    </Box>
  );
}

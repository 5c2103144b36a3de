import React from 'react';
import { Box, Text } from 'ink';

export interface ConvertState {
  source: string;
  out: string;
  architecture: string;
  dtype: string;
  done: number;
  total: number;
  bytesWritten: number;
  totalBytes: number;
  current: string;
  finished: boolean;
  ms: number;
}

export function newConvertState(source: string, out: string): ConvertState {
  return { source, out, architecture: '', dtype: '', done: 0, total: 0, bytesWritten: 0, totalBytes: 0, current: '', finished: false, ms: 0 };
}

export function mib(b: number): string {
  return `${(b / 1048576).toFixed(1)} MiB`;
}

function bar(frac: number, width = 30): string {
  const n = Math.max(0, Math.min(width, Math.round(frac * width)));
  return '█'.repeat(n) + '░'.repeat(width - n);
}

export function ConvertView({ state }: { state: ConvertState }): React.JSX.Element {
  const frac = state.totalBytes > 0 ? state.bytesWritten / state.totalBytes : 0;
  if (state.finished) {
    return <Text color="green">{`✓ ${state.out}: ${state.architecture}, ${state.dtype}, ${state.total} tensors, ${mib(state.bytesWritten)} in ${(state.ms / 1000).toFixed(1)} s`}</Text>;
  }
  return (
    <Box flexDirection="column">
      <Text>{`Converting ${state.source} → ${state.out}${state.architecture ? ` (${state.architecture}, ${state.dtype})` : ''}`}</Text>
      <Text>{`${bar(frac)} ${(frac * 100).toFixed(0)}%  ${state.done}/${state.total} tensors  ${mib(state.bytesWritten)}/${mib(state.totalBytes)}`}</Text>
      {state.current ? <Text dimColor>{state.current}</Text> : null}
    </Box>
  );
}

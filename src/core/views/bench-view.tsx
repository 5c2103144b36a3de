import React, { useEffect, useState } from 'react';
import { Box, Text } from 'ink';
import spinners from 'cli-spinners';
import type { BenchState } from '../bench/run.js';
import { textReport, fmtTflops } from '../bench/format.js';

/** ora-style spinner (cli-spinners' "dots"); its animation is the only state the view keeps. */
export function Spinner(): React.JSX.Element {
  const { frames, interval } = spinners.dots;
  const [i, setI] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setI((x) => (x + 1) % frames.length), interval);
    return () => clearInterval(t);
  }, [frames.length, interval]);
  return <Text color="cyan">{frames[i]}</Text>;
}

function Busy({ children }: { children: string }): React.JSX.Element {
  return (
    <Box>
      <Spinner />
      <Text>{` ${children}`}</Text>
    </Box>
  );
}

function bar(frac: number, width = 24): string {
  const n = Math.max(0, Math.min(width, Math.round(frac * width)));
  return '█'.repeat(n) + '░'.repeat(width - n);
}

/** Progress of `lora-switch bench` (spinners while measuring bandwidth and building the model), then the result table. */
export function BenchView({ state: s }: { state: BenchState }): React.JSX.Element {
  if (s.phase === 'done' && s.doc) return <Text>{textReport(s.doc, s.peer, s.peerError).trimEnd()}</Text>;
  const mmShape = s.matmul ? `${s.matmul.dtype} ${s.matmul.rows}×${s.matmul.cols}×${s.matmul.n}` : '';
  const mm = s.matmulTflops !== null ? ` · matmul ${fmtTflops(s.matmulTflops)} TFLOP/s (${mmShape})` : '';
  const bw = s.bandwidthGBps !== null ? <Text dimColor>{`copy bandwidth ${s.bandwidthGBps.toFixed(1)} GB/s (${s.backend})${mm}`}</Text> : null;
  if (s.phase === 'bandwidth') return <Busy>{`measuring the copy bandwidth${s.backend ? ` (${s.backend})` : ''}…`}</Busy>;
  if (s.phase === 'matmul') {
    return (
      <Box flexDirection="column">
        {bw}
        <Busy>{`measuring the matmul rate (${s.backend}, ${mmShape})…`}</Busy>
      </Box>
    );
  }
  if (s.phase === 'loading') {
    const what = s.load.finalizing ? 'finalizing' : s.load.total > 0 ? `${s.load.done}/${s.load.total} tensors` : 'opening';
    return (
      <Box flexDirection="column">
        {bw}
        <Busy>{`building ${s.title} on ${s.backend}: ${what}`}</Busy>
        {s.load.name && !s.load.finalizing ? <Text dimColor>{s.load.name}</Text> : null}
      </Box>
    );
  }
  if (s.phase === 'peer') {
    return (
      <Box flexDirection="column">
        <Busy>running the PyTorch peer…</Busy>
        {s.peerLine ? <Text dimColor>{s.peerLine}</Text> : null}
      </Box>
    );
  }
  const frac = s.queriesTotal > 0 ? s.queriesDone / s.queriesTotal : 0;
  const where = s.phase === 'warmup' ? `warm-up ${s.warmupRound}/${s.warmup}` : `repetition ${s.rep}/${s.repetitions}`;
  return (
    <Box flexDirection="column">
      {bw}
      <Text>{`${s.title} · ${where} · ${s.mode}`}</Text>
      <Text>{`${bar(frac)} ${s.queriesDone}/${s.queriesTotal} queries`}</Text>
      {s.live.map((l) => (
        <Text key={l.mode} dimColor={l.median === null}>{`  ${l.mode.padEnd(8)} ${l.median === null ? '–' : `${l.median.toFixed(3)} ms/token`}${l.steps ? ` (${l.steps} steps)` : ''}`}</Text>
      ))}
    </Box>
  );
}

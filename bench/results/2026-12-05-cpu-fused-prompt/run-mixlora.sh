#!/bin/bash
# CPU prompt throughput, fused mode, LoRA-Switch and MixLoRA adapters (scripts/bench/cpu-prompt-adapters.ts), three
# libraries alternating round by round: ced6d51 (per-token deltas), e0ef0c4 (LoRA-Switch-style deltas grouped by
# expert), new (MixLoRA whole-FFN experts grouped too).  CPU-only Release builds of liblsw.so chosen with LSW_NATIVE_LIB.
cd /work/main
for round in 1 2; do
  for lib in ced6d51 e0ef0c4 new; do
    so=/tmp/head.so; [ $lib = e0ef0c4 ] && so=/tmp/e0ef.so; [ $lib = new ] && so=/tmp/grp5.so
    echo "== round $round, $lib"
    LSW_NATIVE_LIB=$so node --import tsx scripts/bench/cpu-prompt-adapters.ts --threads 2 --prompt 256 --reps 3
  done
done

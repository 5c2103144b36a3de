#!/bin/bash
# Session 47, this 2-core development VM (AMD EPYC, AVX-512 path), CPU backend, on the tree of the commit that adds
# this folder: the three small presets with the default adapter (8 experts, top-2, r16 on q,v, pre-gated), every mode
# interleaved, random decode tokens (the new default); then smollm-135m's base and merge rows with greedy tokens, to
# show what the merge row timed before (merges_per_token); then the CPU SGMM alone, the library before (e34c336) and
# after, interleaved (cuda/tools/sgmm_ab.cpp; the old library built from a worktree of e34c336 with -DLSW_CUDA=OFF).
set -u
L=../../../bin/run.js
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-200 > machine.txt; date -u >> machine.txt
$L bench --backend cpu --preset smollm-135m --out smollm-135m.json > smollm-135m.txt 2>&1
$L bench --backend cpu --preset qwen2.5-0.5b --new-tokens 100 --repetitions 3 --out qwen2.5-0.5b.json > qwen2.5-0.5b.txt 2>&1
$L bench --backend cpu --preset llama3.2-1b --new-tokens 64 --repetitions 3 --out llama3.2-1b.json > llama3.2-1b.txt 2>&1
$L bench --backend cpu --preset smollm-135m --modes base,merge --decode-tokens greedy --out smollm-135m-greedy.json > smollm-135m-greedy.txt 2>&1
for r in 1 2 3 4 5; do
  for lib in /tmp/wt-old/lib ../../../build/native; do echo -n "$lib  "; LD_LIBRARY_PATH=$lib /tmp/sgmm_ab; done
  for lib in /tmp/wt-old/lib ../../../build/native; do echo -n "$lib  "; LD_LIBRARY_PATH=$lib /tmp/sgmm_ab 16 2048 512 16 2 9; done
done > sgmm-ab.txt 2>&1

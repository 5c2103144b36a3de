// Decode GEMV (n <= 8 tokens), fused-LoRA epilogue, LoRA shrink/expand, per-shape autotuning.
#include "kernels.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

// ---- fused-mode LoRA cost: analysis (2026-12, from code + ptxas; H200 numbers of 2026-12-01) ----------------
// Measured in the harness graph (7B F16, r64 top-2 on all 7 linears): base 3.85 ms, fused 5.47 ms (1.42x), LoRA
// GEMVs forced to v2: 4.77 ms.  The extra 640 MB per token should cost ~0.16 ms; it cost 0.9-1.6 ms.  Causes:
//  1. The LoRA instantiations of the GEMV were much fatter than the base ones, so the autotuned variants (tuned
//     WITHOUT LoRA) lost occupancy and bytes in flight once the epilogue was on.  The old epilogue held, per row and
//     through the whole main loop, 4 B values + 4 t values per lane (QB = 4) plus B/t/expert pointers, rank, k*rank
//     and a 64-bit expert stride.  ptxas (sm_90, 256 threads/block; registers (blocks/SM from registers)):
//        variant (R,U,KS)      f16 base   LoRA before -> now      bf16 base   LoRA before -> now
//        v2  (1,4,1)           44 (5)     57 (4)  -> 42 (5)       44 (5)      56 (4)            -> 42 (5)
//        v4  (4,2,1)  qkv      64 (4)     128 (2) -> 64 (4)       70 (3)      128 (2) + 40 B spill -> 70 (3)
//        v10 (4,2,2)  o/gu/dn  64 (4)     128 (2) -> 64 (4)       72 (3)      154 (1)           -> 70 (3)
//        v6/v8 (1,4,2|4)       52 (4)     64 (4) + 8 B spill -> 52 (4)
//     i.e. the kernels the autotuner picked for every 7B matrix ran with half (bf16 v10: a third) of the warps and
//     of the loads in flight.  LSW_CUDA_GEMV_LORA_VARIANT=2 recovered 0.7 ms of the 1.6.  ("now": after
//     change 1' below: every 16-bit LoRA instantiation has its base kernel's occupancy, no spills, no stack frame.)
//  2. Serial latency in the epilogue setup: after griddepcontrol.wait every lane did R x 4 expert-index loads, each
//     feeding a dependent 2-byte B load (64 B per warp instruction), plus R x 4 runtime integer divisions, before
//     the main loop; t was read with 4-byte loads.
//  3. o_proj's shrink is an extra graph node per layer (258 vs 226 nodes): lora_shrink with 128 blocks (< 132 SMs,
//     4 warps/SM) launched without PDL, so its A reads (1 MB) could only start after attention had finished, then
//     the o GEMV waited for all of it: ~launch gap + 1 HBM latency + 2 block barriers per layer (~0.1 ms/token).
//  4. The prologue shrinks (RMSNorm/SwiGLU + shrink, prologue_shrink) were launched without PDL and only read their
//     A rows after the previous GEMV had finished: +1 HBM latency per prologue vs the plain RMSNorm/SwiGLU (x3 per
//     layer); the SwiGLU one (down, D = 11008) has 128 blocks < 132 SMs, read its 22 KB A row in 3 serial rounds
//     (unroll 2 over 5.4 chunks per thread) and did two block reductions (4 barriers) where one suffices.
//  No atomics anywhere (all reductions fixed-order), so nothing to fix there.
// Changes (this file):
//  1'. Epilogue with (almost) no registers: after griddepcontrol.wait each thread issues cp.async copies of ITS
//     16-byte B chunk(s) of the block's rows (ROWS = rows per block, one 16-byte chunk per thread for r64 top-2 f16
//     with v10) and of every segment's t into shared memory, then runs the unchanged main loop; after it, one
//     barrier, a per-thread 16-byte dot (B chunk . t), a segmented shuffle reduction per row and one more barrier.
//     Nothing LoRA-related is live across the main loop, so the LoRA kernels keep the base kernels' registers.
//     Ranks not a multiple of 16 bytes / unaligned B: the base GEMV + the thread-per-row epilogue kernel.
//  2'. The autotuner can tune LoRA launches separately (autotune_gemv_lora, gemv_tuned_variant(..., lora)); a LoRA
//     launch uses its own choice, else the base choice of the shape.
//  3'/4'. lora_shrink and prologue_shrink launch with PDL when gemv_set_pdl(true) and load their first A chunks
//     (up to 4 x 16 B / 6 x 16 B per thread) into registers BEFORE griddepcontrol.wait (A is a weight; the expert
//     index is read relaxed first, re-read after the wait and the row reloaded if it changed, so a router right
//     before is still correct); x after the wait; one fused (Σx², dot) block reduction.
// 5'. (2026-12-01, session 14) In-kernel shrink, fused decode's default: the shrinks run in leading blocks of the LoRA
//     GEMV launch itself (epi_shrink_block; t published through LoraEpilogue::sync), so the norms / SwiGLU are the
//     plain kernels and o's shrink is no extra launch: 266 instead of 299 launches per token, 7B all-linear r64
//     4.67 -> 4.56-4.63 ms (the separate path measured 4.59-4.87 ms in the same session's runs).  The separate path
//     (3'/4') stays behind LSW_CUDA_FUSED_SHRINK=separate.
// 6'. (2026-12-01, session 15) Contention on the in-kernel shrink's shared addresses: every thread of every shrink block
//     read its expert index with a relaxed (L2) load of the same address, and every waiting warp of every GEMV block
//     polled the counter's line.  Now one thread per row reads the expert into shared memory, thread 0 alone polls
//     (the other warps wait at the barrier that follows), the model gives each counter pair its own 128-byte line,
//     and the shrink blocks request their A rows before griddepcontrol.wait (n_experts: the expert guessed, checked
//     after the wait).  7B all-linear r64: 4.56-4.63 -> 4.38-4.39 ms (A rows after the wait: 4.51 ms;
//     bench/results/2026-12-01-h200-session15).  Tried and not kept: computing with the guessed rows while the expert
//     is read again after the wait (redo on a wrong guess) -- the second copy of the dot loop made the F16 kernels spill.
// ---------------------------------------------------------------------------------------------------------------
// ---- history: RMSNorm / SwiGLU folded into the decode GEMV (tried, measured slower, removed 2026-12-01) ------------
// An opt-in path (LSW_CUDA_GEMV_PROLOGUE=1, gemv_prologue) computed the decode RMSNorm / SwiGLU inside the GEMV
// that reads it (Σx² and x*w per lane, the 1/rms scale on the row sum; silu(g)*u per chunk), 3 graph nodes per layer
// fewer.  On the H200 it was slower than the default (separate kernels) with and without PDL: 7B decode linears in
// the harness graph, 3.70 vs 3.52 ms without PDL, 4.12 vs 3.43 ms with PDL (cuda-kernels-7b.txt in
// bench/results/2026-12-01-h200-session7 and -session9).  Removed on 2026-12-01 (kernels, model switch, harness
// tests and rows, autotune table); the default path's kernels are unchanged.

namespace lswc {

// ---- small PTX helpers ------------------------------------------------------------------------------------------
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {  // global -> shared, 16 B, L2 only
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void *smem, const void *gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }
__device__ __forceinline__ void prefetch_l1(const void *p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }
// NormFold in side: partial sums staged in shared memory up to this many (more: read from L2 at the end)
constexpr int kFoldSmemParts = 1024;
// threadIdx.x the compiler cannot prove equal to an earlier read: keeps it from carrying values derived from it
// (e.g. the epilogue's segment lookup) in registers across the GEMV main loop instead of recomputing them
__device__ __forceinline__ int opaque_tid() {
  int t;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
  return t;
}
// a well-defined read of a value another grid may still be writing (PDL, before griddepcontrol.wait)
__device__ __forceinline__ int ld_relaxed(const int *p) {
  int v;
  asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// ---- GEMV timeline trace (dev builds with -DLSW_GEMV_TRACE only; production kernels carry none of it) ------------
// Thread 0 of every GEMV block (and in-kernel shrink block) fills one record of kGtWords words while gemv_trace_set
// has armed a buffer: [0] rows << 32 | cols, [1] grid << 40 | block << 20 | smid << 8 | flags (1 LoRA, 2 shrink block,
// 4 half-way look found t, 8 plain GEMV), [2] start, [3] after griddepcontrol.wait, [7] end; GEMV blocks: [4] after the
// half-way look, [5] after the main loop, [8] t seen (after the poll's barrier), [9] t and B staged, [6] after the LoRA
// epilogue; shrink blocks: [4] experts re-read, [9] / [10] thread 0's first A chunk / X value arrived, [5] dots done,
// [8] block sums done, [6] published; routing shrink blocks (LoraRoute) also [11] the router's dots done (thread 0's
// share), [12] the logits known, [13] the experts chosen (route_block's marks).  %globaltimer ns;
// cuda/dev/trace_gemv.py reads it.
#if defined(LSW_GEMV_TRACE)
struct GemvTraceCfg {
  unsigned long long *buf;
  int *seq;
  int cap;
};
__device__ GemvTraceCfg g_gt;
__shared__ unsigned long long *lsw_gt_rec;
__device__ __forceinline__ unsigned long long gt_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)::"memory");
  return t;
}
__device__ __forceinline__ void gt_begin(int rows, int cols, int flags) {
  if (threadIdx.x != 0) return;
  const unsigned long long t = gt_now();
  unsigned long long *r = nullptr;
  if (g_gt.cap > 0) {
    const int i = atomicAdd(g_gt.seq, 1);
    if (i < g_gt.cap) r = g_gt.buf + (unsigned long long)kGtWords * i;
  }
  lsw_gt_rec = r;
  if (!r) return;
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  r[0] = (unsigned long long)(unsigned)rows << 32 | (unsigned)cols;
  r[1] = (unsigned long long)gridDim.x << 40 | (unsigned long long)blockIdx.x << 20 | (unsigned long long)sm << 8 | flags;
  r[2] = t;
  for (int k = 3; k < kGtWords; k++) r[k] = 0;
}
__device__ __forceinline__ void gt_mark(int k) {
  if (threadIdx.x == 0 && lsw_gt_rec) lsw_gt_rec[k] = gt_now();
}
__device__ __forceinline__ void gt_flag(int f) {
  if (threadIdx.x == 0 && lsw_gt_rec) lsw_gt_rec[1] |= (unsigned)f;
}
#else
__device__ __forceinline__ void gt_begin(int, int, int) {}
__device__ __forceinline__ void gt_mark(int) {}
__device__ __forceinline__ void gt_flag(int) {}
#endif

// NV sums over the block at once (one barrier for all of them); red: NV * NT/32 floats; single use per kernel
template <int NT, int NV>
__device__ __forceinline__ void block_sum_n(float (&v)[NV], float *red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
#pragma unroll
  for (int q = 0; q < NV; q++) {
    v[q] = warp_sum(v[q]);
    if (lane == 0) red[q * (NT / 32) + wid] = v[q];
  }
  __syncthreads();
#pragma unroll
  for (int q = 0; q < NV; q++) {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < NT / 32; i++) s += red[q * (NT / 32) + i];
    v[q] = s;
  }
}

// ---- in-kernel LoRA shrink: the leading lora.nsb blocks of a GEMV launch ----------------------------------------
// (Session 28 tried filling the o / down launches' one wave with equal blocks instead: their plain v11 blocks beside
// 16 shrink blocks of 8 A rows, a warp per row.  All-linear r64 fused went 4.17 -> 4.34 ms/token.  The warp-per-row
// shrink, with its own fp32 X per warp, finished after the GEMV loops.  With no slot left free, the next launch's
// blocks could not start early under PDL.  bench/results/2026-12-02-h200-session28/run1-balance)
constexpr int EPI_SHRINK_MS = 4;  // 16-byte A chunks in flight per thread of a shrink block (registers: <= the GEMV's)
// Row q of n entries holding top_k * rank_of(e) shrink rows each, in order -> (entry e, expert slot k, rank index i);
// false past the last row
template <typename RankOf>
__device__ __forceinline__ bool split_shrink_row(int n, int top_k, RankOf rank_of, int q, int &e, int &k, int &i) {
  for (e = 0; e < n; e++) {
    const int nr = top_k * rank_of(e);
    if (q < nr) break;
    q -= nr;
  }
  if (e >= n) return false;
  k = q / rank_of(e);
  i = q - k * rank_of(e);
  return true;
}
// Shrink row q (of Σ_seg top_k * rank_seg, segments in order) -> (segment, expert slot k, rank index i)
__device__ __forceinline__ bool epi_shrink_row(const LoraEpilogue &lo, int q, int &sg, int &k, int &i) {
  return split_shrink_row(lo.nseg, lo.top_k, [&](int e) { return lo.seg[e].rank; }, q, sg, k, i);
}
// Block b computes rows [b * srpb, + srpb): t = g_k * dot(A[e_k][i], X), all of the block's 16-byte A chunks
// (<= MS per thread) in flight at once, X chunks reused across the block's rows, one fixed-order block reduction
// (deterministic); then publishes: a block barrier after the t writes, then thread 0 fences (cumulative: it covers
// the other threads' writes ordered before it by the barrier, as cooperative groups' grid sync relies on) and counts
// the block in lora.sync[0].  The
// GEMV blocks (higher block indices, so dispatched after every shrink block) read t after an acquire of
// sync[0] == nsb.  cols % VEC == 0 and 16-byte aligned A / X (launcher-checked).
// With lo.n_experts > 0 the A chunks are requested BEFORE griddepcontrol.wait (A never changes; the expert index is
// read relaxed and clamped to [0, n_experts): a previous step's or a router's in-flight value); after the wait the
// index is read again and the slots loaded for another expert load again (as shrink_prefetch does for lora_shrink).
// A deferring launch's router in a shrink block (LoraRoute), in the routing kernel instances only (ROUTE below).  With
// the routing in every instance the deferring kernels spilled 28-192 bytes at their 64 registers, as a separate
// (non-inlined) call too; in instances of their own, with the A rows requested into L2 rather than registers, none did
// until session 64's wide route_block: its 8 chunks in flight per thread make the 64-register f16 instances spill 4-60
// bytes (bf16's, at 80 registers, none).  run 3's trace: the q,k,v GEMV blocks of the routing instance end ~2-2.5 us
// later than run 2's (24 bytes), still before its shrink blocks, which set the launch's end.
template <typename T, bool PARTS = false>
__device__ __forceinline__ void shrink_route(const LoraEpilogue &lo, const float *__restrict__ X, int cols, int *r_e,
                                          float *r_g) {
  __shared__ float r_lg[kRouteShrinkMaxE], r_rs;
  __shared__ double r_ex[kRouteShrinkMaxE], r_mx;
  route_block<T, PARTS>(lo.route.n_experts, cols, lo.top_k, static_cast<const T *>(lo.route.R), X, lo.route.vec,
                 lo.route.fold, r_lg, r_ex, &r_rs, &r_mx, r_e, r_g, lo.route.wide, [](int k) { gt_mark(k); });
}
// ROUTE (deferring launches with LoraEpilogue::route): the block routes the token itself right after the wait
// (route_block, the same bits as a route_n launch) and takes its rows' experts and gates from that instead of from
// global memory; block 0 also stores them there.  Its A rows requested before the wait follow the previous step's
// routes of this layer (still in memory), and rows for other experts load again after the routing.  Tried and taken
// out (session 62 run 5): every shrink block requesting R into its L1 before the wait and, once routed, its deferred
// expand's LoRA-B rows into L2: layer-wise q,v r16 fused 1.062 / 1.063 -> 1.064 / 1.066 x base (H100), so the shrink
// blocks' chain is not what the launch waits for.
// (ROUTE: 0 none, 1 routed, 2 routed from the producer's partial logits: RouteFold::lg_part, route_block's PARTS)
template <typename T, int ROUTE = 0>
__device__ __forceinline__ void epi_shrink_block(const LoraEpilogue &lo, const float *__restrict__ X, int cols) {
  constexpr int NT = 256, MS = EPI_SHRINK_MS, VEC = Tr<T>::VEC;
  __shared__ float red[MS * NT / 32];
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (ROUTE && blockIdx.x == 0)  // R into L2 before the wait, as a PDL route_n launch requests it
    route_prefetch_l2(static_cast<const T *>(lo.route.R), lo.route.n_experts, cols);
  const int tid = threadIdx.x, nv = cols / VEC, cj = (nv + NT - 1) / NT, cjm = min(cj, MS), rpb = lo.srpb;
  const int q0 = blockIdx.x * rpb;
  // the block's rows' experts: read relaxed by one thread per row (a warp-wide or block-wide read of the same
  // address from every shrink block would queue at one L2 slice), pre: before the wait, clamped; -1 past the last row
  // (after the wait, with the row's gate: the one round trip for both, ahead of the dots)
  __shared__ int s_e[2][MS];
  __shared__ float s_g[MS];
  __shared__ int r_e[ROUTE ? kDeferMaxK : 1];  // ROUTE: the token's experts and gates, this block's routing
  __shared__ float r_g[ROUTE ? kDeferMaxK : 1];
  auto experts = [&](int w, bool pre) {
    if (tid < MS) {
      int sg, k, i, e = -1;
      float g = 0.f;
      if (tid < rpb && epi_shrink_row(lo, q0 + tid, sg, k, i)) {
        if (ROUTE && !pre) {
          e = r_e[k];
          g = r_g[k] * lo.seg[sg].scale;
        } else {
          e = ld_relaxed(lo.seg[sg].experts + k);
          if (pre) e = min(max(e, 0), lo.n_experts - 1);
          else g = lo.seg[sg].gates[k] * lo.seg[sg].scale;
        }
      }
      s_e[w][tid] = e;
      if (!pre) s_g[tid] = g;
    }
    __syncthreads();
  };
  auto arow = [&](int q, int e) -> const uint4 * {
    int sg, k, i;
    epi_shrink_row(lo, q, sg, k, i);
    return reinterpret_cast<const uint4 *>(static_cast<const T *>(lo.seg[sg].A) + ((size_t)e * lo.seg[sg].rank + i) * cols);
  };
  // slot s = (row r = s / cjm, chunk j = s % cjm)
  uint4 a[MS];
  int es[MS];  // expert whose A chunk slot s holds (-1: none)
#pragma unroll
  for (int s = 0; s < MS; s++) es[s] = -1;
  if (lo.n_experts > 0) {
    experts(0, true);
    int r = 0, j = 0;
#pragma unroll
    for (int s = 0; s < MS; s++) {
      const int c = tid + NT * j;
      if (r < rpb && c < nv) {
        if (ROUTE) {  // into L2 only: A chunks held in registers through the routing made the kernel spill
          if (s_e[0][r] >= 0) prefetch_l2(arow(q0 + r, s_e[0][r]) + c);
        } else {
          es[s] = s_e[0][r];
          if (es[s] >= 0) a[s] = ld_stream(arow(q0 + r, es[s]) + c);
        }
      }
      if (++j == cjm) { j = 0; r++; }
    }
  }
  asm volatile("griddepcontrol.wait;" ::: "memory");  // X, the routes and the previous reader of t are done
  gt_mark(3);
  // this thread's X chunks into L1 while the experts are read again (the dots below then hit L1): two round trips
  // in parallel instead of one after the other
  for (int j = 0; j < cjm; j++)
    if (tid + NT * j < nv) prefetch_l1(X + (size_t)(tid + NT * j) * VEC);
  if constexpr (ROUTE) {
    shrink_route<T, ROUTE == 2>(lo, X, cols, r_e, r_g);
    __syncthreads();
    if (blockIdx.x == 0 && tid < lo.top_k) {  // published with t below (the barrier and thread 0's fence)
      lo.route.experts[tid] = r_e[tid];
      lo.route.gates[tid] = r_g[tid];
    }
  }
  experts(1, false);
  gt_mark(4);
  unsigned live = 0;  // bit s: slot s loaded
  {
    int r = 0, j = 0;
#pragma unroll
    for (int s = 0; s < MS; s++) {
      const int c = tid + NT * j;
      if (r < rpb && c < nv) {
        const int e = s_e[1][r];
        if (e >= 0) {
          if (e != es[s]) a[s] = ld_stream(arow(q0 + r, e) + c);
          live |= 1u << s;
        }
      }
      if (++j == cjm) { j = 0; r++; }
    }
  }
#if defined(LSW_GEMV_TRACE)
  // thread 0: [9] when its first A chunk has arrived, [10] when its first X value has (each a forced dependency)
  if (tid == 0 && lsw_gt_rec) {
    if (a[0].x == 0x7f7f7f7fu && (live & 1u)) gt_flag(16);
    gt_mark(9);
    if (__ldg(X) == 1234.5f) gt_flag(32);
    gt_mark(10);
  }
#endif
  float acc[MS];
#pragma unroll
  for (int s = 0; s < MS; s++) acc[s] = 0.f;
  auto dot = [&](const uint4 &av, int c, float &ac) { ac = dot16<T>(av, X + (size_t)c * VEC, ac); };
  {
    int r = 0, j = 0;
#pragma unroll
    for (int s = 0; s < MS; s++) {
      if ((live >> s) & 1u) {
#pragma unroll
        for (int rr = 0; rr < MS; rr++)  // acc[r] with a compile-time index
          if (rr == r) dot(a[s], tid + NT * j, acc[rr]);
      }
      if (++j == cjm) { j = 0; r++; }
    }
  }
  if (cj > MS) {  // long rows (srpb == 1): the chunks past the first MS per thread, streamed
    const int e = s_e[1][0];
    if (e >= 0)
      for (int c = tid + NT * MS; c < nv; c += NT) dot(ld_stream(arow(q0, e) + c), c, acc[0]);
  }
  gt_mark(5);
  block_sum_n<NT, MS>(acc, red);
  gt_mark(8);
#pragma unroll
  for (int r = 0; r < MS; r++) {
    int sg, k, i;
    if (tid == r && r < rpb && epi_shrink_row(lo, q0 + r, sg, k, i)) {
      const LoraSeg &g = lo.seg[sg];
      const_cast<float *>(g.t)[k * g.rank + i] = s_g[r] * acc[r];
    }
  }
  __syncthreads();
  if (tid == 0) {
    __threadfence();
    atomicAdd(lo.sync, 1);
  }
  gt_mark(6);
}

// ---- fused-LoRA epilogue layout of one GEMV block --------------------------------------------------------------
// The block's output rows [blockIdx.x * ROWS, + ROWS) are contiguous.  Its LoRA work is cut into "slots": slot s
// (thread s % 256, pass s / 256) serves row s / SPR and takes that row's 16-byte B chunks c = s % SPR, + SPR, ...
// (chunk c = expert slot k, ranks [jc*VEC, jc*VEC+VEC)); the first is staged into shared memory by cp.async, later
// ones are prefetched into L2 and read after the main loop.  SPR (a power of two <= 32) lanes of one warp per row.
template <typename T, int R, int KS>
struct LoraTile {
  static constexpr int VEC = Tr<T>::VEC;
  static constexpr int ROWS = (8 / KS) * R;
  static constexpr int LQ = ROWS >= 32 ? ROWS / 16 : 1;  // slots per thread: ROWS * 16 chunks = r64 top-2 16-bit
  static constexpr int SLOTS = 256 * LQ;
  static constexpr int SPR = SLOTS / ROWS < 32 ? SLOTS / ROWS : 32;
  static constexpr int TSEG = 512;  // t floats staged per segment (top_k * rank <= 512), else read from global
  static_assert((SPR & (SPR - 1)) == 0 && ROWS * SPR <= SLOTS, "LoRA slot layout");
};
// c -> (k, jc) = (c / rv, c % rv) for c < top_k * rv: a subtraction per expert slot instead of an integer division
__device__ __forceinline__ void chunk_split(int c, int rv, int &k, int &jc) {
  k = 0;
  jc = c;
  while (jc >= rv) { jc -= rv; k++; }
}
__device__ __forceinline__ int lora_seg_index(const LoraEpilogue &lo, int row) { return lora_seg_of(lo.seg, lo.nseg, row); }
// Phase 2 of a shrink block of a deferring launch (LoraEpilogue::defer): once all lo.nsb shrink blocks have published
// t (thread 0 acquires sync[0] == nsb, then a block barrier, as the GEMV blocks of the epilogue path do), rows
// [blockIdx.x * erpb, + erpb) of the matrix get defer[row] = rs * Σ_k Σ_j B[e_k][row - row0][j] t[k*rank + j], 0
// outside the segments.  tpr threads per row (a power of two: half the row's 16-byte B chunks rounded up, <= 32), each
// with <= 2 chunks (16-bit B with top_k * rank <= 512, gemv_defer_ok: <= 64 chunks per row), DX_RU rows per thread
// in flight, then the tpr partial sums combined by xor shuffles (fixed order: deterministic).  rs: the NormFold in
// side's scale, computed by warp 0 exactly as the GEMV blocks compute it (same partials, same lane order, same bits).
// The last shrink block to finish re-arms the counter pair for the next launch.
constexpr int DX_RU = 4;
template <typename T>
__device__ __forceinline__ void defer_expand(const LoraEpilogue &lo, const NormFold &nf, int rows) {
  constexpr int NT = 256, VEC = Tr<T>::VEC;
  __shared__ __align__(16) float s_t[3][512];
  __shared__ int s_ex[3][kDeferMaxK];
  __shared__ float s_rs;
  const int tid = threadIdx.x;
  int cmax = 1;  // most 16-byte chunks in a row -> tpr
  for (int sg = 0; sg < lo.nseg; sg++) cmax = max(cmax, lo.top_k * lo.seg[sg].rank / VEC);
  int tpr = 1;
  while (2 * tpr < cmax && tpr < 32) tpr *= 2;
  const int rpp = NT / tpr;  // rows per pass
  // rs (the previous kernel's partials, complete since the launch's wait) before the poll, so its round trips overlap
  // the wait for the other shrink blocks instead of following it (session 64 run 4, H100: layer-wise q,v r16 fused
  // 5.039 / 5.045 -> 5.025 / 5.029 ms against rs after the t loads)
  if (tid < 32) {
    const float rs = nf.in_part ? fold_rs(nf.in_part, nf.in_n, nf.in_dim, nf.in_eps) : 1.f;
    if (tid == 0) s_rs = rs;
  }
  if (tid == 0)
    while (ld_acquire(lo.sync) < lo.nsb) __nanosleep(32);
  __syncthreads();
  for (int sg = 0; sg < lo.nseg; sg++) {
    const int n = lo.top_k * lo.seg[sg].rank;
    for (int i = tid; i < n; i += NT) s_t[sg][i] = __ldcg(lo.seg[sg].t + i);
    if (tid < lo.top_k) s_ex[sg][tid] = __ldcg(lo.seg[sg].experts + tid);
  }
  __syncthreads();
  const float rs = s_rs;
  const int sub = tid % tpr, r0 = blockIdx.x * lo.erpb, r1 = min(rows, r0 + lo.erpb);
  for (int base = r0; base < r1; base += rpp * DX_RU) {  // (block-uniform trip count: the shuffles below)
    const int rb = base + tid / tpr;
    uint4 bv[DX_RU][2];
    int sgs[DX_RU];
    // a row's (segment sg) chunk q of this thread -> (expert slot k, rank chunk jc); false when it has none (recomputed where used:
    // keeping the offsets in registers costs the 64-register kernels a spill)
    auto chunk_of = [&](int sg, int q, int &k, int &jc) {
      if (sg < 0) return false;
      const int rv = lo.seg[sg].rank / VEC, c = sub + tpr * q;
      if (c >= lo.top_k * rv) return false;
      chunk_split(c, rv, k, jc);
      return true;
    };
#pragma unroll
    for (int u = 0; u < DX_RU; u++) {  // every chunk of DX_RU rows requested before the first is used
      const int row = rb + u * rpp;
      sgs[u] = row < r1 ? lora_seg_index(lo, row) : -1;
#pragma unroll
      for (int q = 0; q < 2; q++) {
        int k, jc;
        if (chunk_of(sgs[u], q, k, jc)) {
          const LoraSeg &g = lo.seg[sgs[u]];
          bv[u][q] = ld_stream(reinterpret_cast<const uint4 *>(g.B) +
                               ((unsigned)(s_ex[sgs[u]][k] * g.rows + row - g.row0) * (unsigned)(g.rank / VEC) + jc));
        }
      }
    }
#pragma unroll
    for (int u = 0; u < DX_RU; u++) {
      const int row = rb + u * rpp;
      float p = 0.f;
#pragma unroll
      for (int q = 0; q < 2; q++) {
        int k, jc;
        if (chunk_of(sgs[u], q, k, jc)) {
          float bf[VEC];
          unpack16<T>(bv[u][q], bf);
          const float *tp = &s_t[sgs[u]][k * lo.seg[sgs[u]].rank + jc * VEC];
#pragma unroll
          for (int e = 0; e < VEC; e++) p = fmaf(bf[e], tp[e], p);
        }
      }
      for (int o = tpr / 2; o > 0; o >>= 1) p += __shfl_xor_sync(0xffffffffu, p, o);
      if (sub == 0 && row < r1) lo.defer[row] = rs * p;
    }
  }
  __syncthreads();
  if (tid == 0 && atomicAdd(lo.sync + 1, 1) == lo.nsb - 1) {  // every shrink block is past its wait and its t reads
    lo.sync[0] = 0;
    lo.sync[1] = 0;
  }
}
// Rows [r0, r0+R) per row group, KS warps of the block share one row group (split over the columns,
// interleaved 16-byte chunks, partial sums combined in shared memory in a fixed order: deterministic),
// U 16-byte chunks per lane in flight per row before they are consumed.
//
// Programmatic dependent launch (no-ops unless launched with the PDL attribute, see gemv_set_pdl):
// the kernel lets its own dependents begin launching after its main loop (trig_late, the default; at once
// otherwise: gemv_set_trigger_late), loads its FIRST batch of weights into
// registers (weights never depend on the kernel before it; see kernels.cuh for the one rule) and only
// then waits (griddepcontrol.wait) for the producer of X (and of Y when accumulating, and of the LoRA t).
// Requesting more than that batch before the wait, into L2 (prefetch.global.L2, with or without evict_last, 1-4
// more batches), was tried in session 27: 7B base 3.58 -> 3.98-4.11 ms/token (bench/results/2026-12-02-h200-session27).
//
// LORA (NX == 1, launcher-checked: every segment's rank * sizeof(T) % 16 == 0, B 16-byte aligned): see LoraTile.
// nf (NX == 1, launcher-checked): the RMSNorm fold (kernels.cuh NormFold).  In side: the producer's partial sums are
// requested into shared memory right after the wait (cp.async, L2 only: no registers held through the main loop, the
// round trip hidden behind it) and summed at the end after a block barrier, every warp in the same fixed order (the
// same rs everywhere).  Out side: the rows' norm weights and residuals are prefetched into L2 before the wait (a
// hint; L2 is where every grid's writes meet), then one partial sum of squares per GEMV block after a block barrier.
// While either side is on no thread of the block returns early.
// RP: the router partials' code (NormFold::out_R) is compiled in (gemv_kernel's RP instances only: in every one-token
// kernel it moved ptxas's registers and spills, the routing deferring instances' spills from 28 to 84-92 bytes)
template <typename T, int NX, int R, int U, int KS, bool LORA, bool RP = false>
__device__ __forceinline__ void gemv_body(const T *__restrict__ W, int rows, int cols,
                                                   const float *__restrict__ X, int ldx, float *__restrict__ Y,
                                                   int ldy, const float *__restrict__ bias, int accumulate,
                                                   const LoraEpilogue &lora, const NormFold &nf, int trig_late,
                                                   int bskip = 0) {
  constexpr int VEC = Tr<T>::VEC;
  constexpr int WPB = 8, GPB = WPB / KS, S = 32 * KS;  // warps per block, row groups per block, chunk stride
  int bid = blockIdx.x - bskip;  // (bskip: leading blocks of the launch that are not GEMV blocks, gemv_defer_kernel)
  bool shr = false;  // in-kernel shrink: t comes from this launch's leading blocks
  if constexpr (LORA) {
    if (lora.nsb > 0) {
      if (bid < lora.nsb) {
        gt_flag(2);
        epi_shrink_block<T>(lora, X, cols);
        return;
      }
      bid -= lora.nsb;
      shr = true;
    }
  }
  const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
  const int grp = wib / KS, part = wib - grp * KS;
  // block-local row lr -> row: contiguous, or (SwiGLU fold, nf.act_half = I) the first half of the block's rows
  // gate rows bid*H2 + lr, the second half the matching up rows I + bid*H2 + lr - H2; lv(lr): a row of the matrix
  constexpr int BR = GPB * R, H2 = BR / 2;
  const int half = NX == 1 ? nf.act_half : 0;  // (launcher-checked: NX == 1)
  auto grow = [&](int lr) { return !half ? bid * BR + lr : lr < H2 ? bid * H2 + lr : half + bid * H2 + (lr - H2); };
  auto lv = [&](int lr) { return !half ? bid * BR + lr < rows : bid * H2 + (lr < H2 ? lr : lr - H2) < half; };
  const int r0 = grow(grp * R);  // this group's R rows are contiguous (H2 is a multiple of R)
  const int lim = !half ? rows - r0 : half - (bid * H2 + (grp * R < H2 ? grp * R : grp * R - H2));  // rows r < lim
  const bool active = lim > 0;
  const bool fold_out = nf.out_xw != nullptr, fold_in = nf.in_part != nullptr;  // uniform over the grid
  const bool fold_any = fold_out || fold_in || half > 0;
  // (LORA / fold: every thread takes part in the block's barriers)
  if (KS == 1 && !LORA && !active && !fold_any) return;
  const int nvec = active ? cols / VEC : 0;  // cols % VEC == 0 (checked by the launcher)
  const uint4 *wrow[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    int rr = min(r0 + r, rows - 1);  // rows past the end re-read the last row, not stored
    wrow[r] = reinterpret_cast<const uint4 *>(W + (size_t)rr * cols);
  }
  if (!trig_late) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (fold_out && lane == 0 && part == 0 && active) {  // the epilogue's lines into L2 (prefetch: no data used)
    prefetch_l2(nf.out_w + r0);
    if (accumulate) prefetch_l2(Y + r0);
  }
  int c0 = lane + 32 * part;
  uint4 w[U][R];
  if (c0 + S * (U - 1) < nvec) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < R; r++) w[u][r] = ld_stream(wrow[r] + c0 + S * u);
  }
  // router partials (NormFold::out_R, launcher-checked: NX == 1, whole 16-byte chunks): the block's rows of every
  // expert's R row into shared memory (dynamic, after the fold-in stage: rp_off floats in), before the wait
  extern __shared__ __align__(16) float lsw_gemv_fold_parts[];  // fold in: the producer's partial sums (dynamic)
  const bool rpart = RP && fold_out && nf.out_R != nullptr;  // (uniform)
  T *l_rp = reinterpret_cast<T *>(lsw_gemv_fold_parts + nf.rp_off);  // [kRoutePartE][BR]
  float *l_lpw = lsw_gemv_fold_parts + nf.rp_off + kRoutePartE * BR * sizeof(T) / 4;  // [WPB][kRoutePartE]
  if (rpart) {
    constexpr int CB = BR * (int)sizeof(T) >= 16 ? BR * (int)sizeof(T) / 16 : 1;  // 16-byte chunks per expert (RP: >= 1)
    for (int i = threadIdx.x; i < nf.out_E * CB; i += 256) {
      const int e = i / CB, ch = i - e * CB, row = bid * BR + ch * (16 / (int)sizeof(T));
      if (row < rows) cp_async16(l_rp + e * BR + ch * (16 / (int)sizeof(T)), static_cast<const T *>(nf.out_R) + (size_t)e * rows + row);
    }
    cp_async_commit();
  }
  asm volatile("griddepcontrol.wait;" ::: "memory");
  gt_mark(3);
  float *l_part = lsw_gemv_fold_parts;
  if (fold_in && nf.in_n <= kFoldSmemParts) {
    for (int i = threadIdx.x; 4 * i < nf.in_n; i += 256) cp_async16(&l_part[4 * i], nf.in_part + 4 * i);
    cp_async_commit();
  }
  // fold in: rs = 1 / sqrt(mean(h²) + eps), the same in every warp (same partials, same order).  rs_early: now, while
  // the first batch of weights is still in flight (the partials are L2 hits), so that the epilogue after the main
  // loop is shorter; else after the main loop (below).  Early, each warp's lane 0 keeps it in shared memory (l_rs),
  // not in a register live through the main loop.  Not for bf16: with the early sum (the first batch's registers
  // live across it) ptxas took the bf16 one-token kernels from 64 to 71 registers, one block per SM fewer, and held
  // to 64 they spilled; the f16 and f32 ones stay within their block counts
  constexpr bool kRsEarlyOk = !std::is_same<T, __nv_bfloat16>::value;
  const bool rs_now = kRsEarlyOk && fold_in && nf.rs_early;
  auto fold_rs_get = [&]() {
    const bool staged = nf.in_n <= kFoldSmemParts;
    if (staged) {
      cp_async_wait_all();
      __syncthreads();
    }
    return fold_rs_of(staged ? fold_part_sum<false>(l_part, nf.in_n) : fold_part_sum<true>(nf.in_part, nf.in_n),
                      nf.in_dim, nf.in_eps);
  };
  __shared__ float l_rs[WPB];
  if (rs_now) {
    const float r = fold_rs_get();
    if (lane == 0) l_rs[wib] = r;
  }

  using LT = LoraTile<T, R, KS>;
  __shared__ __align__(16) uint4 l_b[LORA ? LT::SLOTS : 1];
  __shared__ __align__(16) float l_t[LORA ? 3 * LT::TSEG : 1];
  __shared__ float l_sum[LORA ? LT::ROWS : 1];
  // this thread's share of every segment's t -> l_t (cp.async; segments with top_k * rank > TSEG stay in global)
  auto stage_t = [&]() {
    const int tid = threadIdx.x;
    const int rb = bid * LT::ROWS;
#pragma unroll
    for (int sgi = 0; sgi < 3; sgi++) {
      if (sgi >= lora.nseg) break;
      const int n = lora.top_k * lora.seg[sgi].rank;
      const float *tg = lora.seg[sgi].t;
      if (n > LT::TSEG || (!half && (lora.seg[sgi].row0 >= rb + LT::ROWS || lora.seg[sgi].row0 + lora.seg[sgi].rows <= rb)))
        continue;  // read from global after the loop / no row of this block in the segment (paired rows: staged)
      if ((n & 3) == 0 && (reinterpret_cast<uintptr_t>(tg) & 15) == 0) {
        for (int i = tid; i < n / 4; i += 256) cp_async16(&l_t[sgi * LT::TSEG + 4 * i], tg + 4 * i);
      } else {
        for (int i = tid; i < n; i += 256) cp_async4(&l_t[sgi * LT::TSEG + i], tg + i);
      }
    }
    cp_async_commit();
  };
  bool t_staged = !shr;  // in-kernel shrink: staged once sync[0] reaches nsb (looked at half way, else after the loop)
  if constexpr (LORA) {  // stage t and this thread's B chunks (cp.async: nothing held in registers, no stall on data)
    const int tid = threadIdx.x;
    if (!shr) stage_t();
#pragma unroll
    for (int i = 0; i < LT::LQ; i++) {
      const int slot = tid + 256 * i, lr = slot / LT::SPR, ln = slot % LT::SPR, row = grow(lr);
      if (lr >= LT::ROWS || !lv(lr)) continue;
      const int sgi = lora_seg_index(lora, row);
      if (sgi < 0) continue;
      const LoraSeg &sg = lora.seg[sgi];
      const int rv = sg.rank / VEC, cpr = lora.top_k * rv;  // 16-byte chunks per rank row, per output row
      for (int c = ln; c < cpr; c += LT::SPR) {
        int k, jc;
        chunk_split(c, rv, k, jc);
        const int e = __ldg(sg.experts + k);
        const uint4 *src = reinterpret_cast<const uint4 *>(sg.B) + ((unsigned)(e * sg.rows + row - sg.row0) * (unsigned)rv + jc);
        if (c == ln) cp_async16(&l_b[slot], src);
        else prefetch_l2(src);
      }
    }
    cp_async_commit();
  }

  float acc[R][NX];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int t = 0; t < NX; t++) acc[r][t] = 0.f;

  // per-chunk FMA of one 16-byte weight vector (and the matching x values) into acc
  auto consume = [&](const uint4 (&wv)[R], int c) {
#pragma unroll
    for (int t = 0; t < NX; t++) {
      float xv[VEC];
      const float4 *xp = reinterpret_cast<const float4 *>(X + (size_t)t * ldx + (size_t)c * VEC);
#pragma unroll
      for (int q = 0; q < VEC / 4; q++) {
        float4 v = __ldg(xp + q);
        xv[4 * q] = v.x; xv[4 * q + 1] = v.y; xv[4 * q + 2] = v.z; xv[4 * q + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < R; r++) {
        float wf[VEC];
        unpack16<T>(wv[r], wf);
#pragma unroll
        for (int q = 0; q < VEC; q++) acc[r][t] = fmaf(wf[q], xv[q], acc[r][t]);
      }
    }
  };
  // main loop: U x R independent 16-byte loads in flight (the first batch was issued before the wait); half: stop
  // once half of the row is consumed (the next batch already in flight)
  auto main_loop = [&](bool half) {
    while (c0 + S * (U - 1) < nvec && (!half || 2 * c0 < nvec)) {
#pragma unroll
      for (int u = 0; u < U; u++) consume(w[u], c0 + S * u);
      c0 += S * U;
      if (c0 + S * (U - 1) < nvec) {
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
          for (int r = 0; r < R; r++) w[u][r] = ld_stream(wrow[r] + c0 + S * u);
      }
    }
  };
  // (Session 28 tried more looks, after 3/4 and 7/8 of the row too, and staging the store's operands into shared
  // memory by cp.async right after the main loop.  All-linear r64 fused went 4.167 -> 4.270 ms/token with both and
  // 4.209 with the staging alone: the looks lengthened the main loops more than they shortened the waits after them.
  // bench/results/2026-12-02-h200-session28/run2-looks)
  if constexpr (LORA) {  // in-kernel shrink: one look at the shrink blocks' counter half way (weights in flight)
    if (shr) {
      main_loop(true);
      if (ld_acquire(lora.sync) >= lora.nsb) {
        stage_t();
        t_staged = true;
        gt_flag(4);
      }
      gt_mark(4);
    }
  }
  main_loop(false);
  if (trig_late) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // (gemv_set_trigger_late)
  // tail: one chunk at a time
  for (; c0 < nvec; c0 += S) {
    uint4 wt[R];
#pragma unroll
    for (int r = 0; r < R; r++) wt[r] = ld_stream(wrow[r] + c0);
    consume(wt, c0);
  }
  gt_mark(5);
  // one-token launches: the store's operands (norm weight, bias, residual) requested now by the lanes that store, so
  // their round trip overlaps the reductions and the LoRA epilogue below (in the store loop they were R dependent
  // round trips: a load after each row's stores, which may alias)
  // (LoRA kernels: after their epilogue, whose registers they would otherwise share and spill)
  float pre_w[NX == 1 ? R : 1], pre_b[NX == 1 ? R : 1], pre_y[NX == 1 ? R : 1];
  auto preload = [&]() {
    if constexpr (NX == 1) {
#pragma unroll
      for (int r = 0; r < R; r++) {
        pre_w[r] = pre_b[r] = pre_y[r] = 0.f;
        if (lane == 0 && part == 0 && r < lim) {
          const int row = r0 + r;
          if (fold_out) pre_w[r] = __ldg(nf.out_w + row);
          if (bias) pre_b[r] = bias[row];
          if (accumulate) pre_y[r] = Y[row];
        }
      }
    }
  };
  if constexpr (!LORA) preload();
  float v[R][NX];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int t = 0; t < NX; t++) v[r][t] = warp_sum(acc[r][t]);
  if constexpr (LORA) {  // Σ_k B[e_k][row][:] · t_k per row: slot dots, segmented shuffle sums, fixed order
    const int tid = opaque_tid();
    if (shr) {  // in-kernel shrink: warps whose half-way look failed stage t once thread 0 has seen it finished
      // (acquire, then the barrier: one poller per block, not one per warp on the counter's line).  Thread 0 polls
      // only if its own half-way look failed (look_trusted): an acquire that saw sync[0] == nsb orders every t write
      // before the barrier as the poll's would, and the counter is re-armed only after every GEMV block's t reads
      if (tid == 0 && !(t_staged && lora.look_trusted))
        while (ld_acquire(lora.sync) < lora.nsb) __nanosleep(64);
      __syncthreads();
      gt_mark(8);
      if (!t_staged) stage_t();
    }
    cp_async_wait_all();
    __syncthreads();
    gt_mark(9);
#pragma unroll
    for (int i = 0; i < LT::LQ; i++) {
      const int slot = tid + 256 * i, lr = slot / LT::SPR, ln = slot % LT::SPR, row = grow(lr);
      float p = 0.f;
      const int sgi = lr < LT::ROWS && lv(lr) ? lora_seg_index(lora, row) : -1;
      if (sgi >= 0) {
        const LoraSeg &sg = lora.seg[sgi];
        const int rv = sg.rank / VEC, cpr = lora.top_k * rv;
        const bool tsh = lora.top_k * sg.rank <= LT::TSEG;
        for (int c = ln; c < cpr; c += LT::SPR) {
          int k, jc;
          chunk_split(c, rv, k, jc);
          uint4 bv;
          if (c == ln) {
            bv = l_b[slot];
          } else {
            const int e = __ldg(sg.experts + k);
            bv = ld_stream(reinterpret_cast<const uint4 *>(sg.B) + ((unsigned)(e * sg.rows + row - sg.row0) * (unsigned)rv + jc));
          }
          float bf[VEC];
          unpack16<T>(bv, bf);
          const int o = k * sg.rank + jc * VEC;
          if (tsh) {
            const float4 *tp = reinterpret_cast<const float4 *>(&l_t[sgi * LT::TSEG + o]);
#pragma unroll
            for (int q = 0; q < VEC / 4; q++) {
              const float4 tv = tp[q];
              p = fmaf(bf[4 * q], tv.x, p); p = fmaf(bf[4 * q + 1], tv.y, p);
              p = fmaf(bf[4 * q + 2], tv.z, p); p = fmaf(bf[4 * q + 3], tv.w, p);
            }
          } else {
#pragma unroll
            for (int q = 0; q < VEC; q++) p = fmaf(bf[q], __ldcg(sg.t + o + q), p);  // coherent: may be this launch's
          }
        }
      }
#pragma unroll
      for (int o = LT::SPR / 2; o > 0; o >>= 1) p += __shfl_xor_sync(0xffffffffu, p, o);
      if (ln == 0 && lr < LT::ROWS) l_sum[lr] = p;
    }
    preload();
    __syncthreads();
    gt_mark(6);
    // in-kernel shrink: the last GEMV block past its t reads re-arms the counters for the next launch (every shrink
    // block has counted itself, every GEMV block has read t)
    if (shr && tid == 0 && atomicAdd(lora.sync + 1, 1) == (int)gridDim.x - lora.nsb - 1) {
      lora.sync[0] = 0;
      lora.sync[1] = 0;
    }
    if (KS == 1 && !active && !fold_any) return;
  }
  float rs = 1.f;  // (fold in; early: lane 0 of each warp wrote it to l_rs, read back by the warp after __syncwarp)
  if (fold_in) {
    if (rs_now) {
      __syncwarp();
      rs = l_rs[wib];
    } else {
      rs = fold_rs_get();
    }
  }
  bool store = true;
  if constexpr (KS > 1) {
    __shared__ float red[WPB][R][NX];
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NX; t++) red[wib][r][t] = v[r][t];
    }
    __syncthreads();
    if (part != 0 || !active) {
      if (!fold_any) return;
      store = false;
    } else {
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NX; t++) {
          float sum = red[grp * KS][r][t];
#pragma unroll
          for (int p = 1; p < KS; p++) sum += red[grp * KS + p][r][t];
          v[r][t] = sum;
        }
    }
  }
  float sq = 0.f;  // fold out: Σ of this group's stored rows' squares (lane 0)
  float lp[kRoutePartE];  // router partials: Σ of R[e][row] · xw[row] over this group's stored rows (lane 0)
#pragma unroll
  for (int e = 0; e < kRoutePartE; e++) lp[e] = 0.f;
  if (rpart) {  // (every thread of the block gets here: fold_out)
    cp_async_wait_all();
    __syncthreads();
  }
  __shared__ float l_gu[NX == 1 ? BR : 1];  // SwiGLU fold: the block's gate and up rows
  if (store) {
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int t = 0; t < NX; t++) {
        float vv = v[r][t];
        const int row = r0 + r;
        if (lane == 0 && r < lim) {
          float nw = 0.f;
          if constexpr (NX == 1) nw = pre_w[r];
          else if (fold_out) nw = __ldg(nf.out_w + row);
          if constexpr (LORA) vv += l_sum[grp * R + r];
          vv *= rs;
          float *y = Y + (size_t)t * ldy + row;
          if constexpr (NX == 1) {
            if (bias) vv += pre_b[r];
            if (accumulate) vv += pre_y[r];
          } else {
            if (bias) vv += bias[row];
            if (accumulate) vv += *y;
          }
          *y = vv;
          if (fold_out) {
            const float xw = vv * nw;
            nf.out_xw[row] = xw;
            sq = fmaf(vv, vv, sq);
            if (rpart) {
#pragma unroll
              for (int e = 0; e < kRoutePartE; e++)
                if (e < nf.out_E) lp[e] = fmaf(Tr<T>::to_f(l_rp[e * BR + grp * R + r]), xw, lp[e]);
            }
          }
          if constexpr (NX == 1)
            if (half) l_gu[grp * R + r] = vv;
        }
      }
    }
  }
  if (half) {  // SwiGLU fold: act[i] = silu(gate_i) * up_i for the block's H2 pairs (the swiglu kernel's formula)
    __syncthreads();
    for (int i = threadIdx.x; i < H2; i += 256)
      if (bid * H2 + i < half) nf.act_out[bid * H2 + i] = swiglu_f(l_gu[i], l_gu[H2 + i]);
  }
  if (fold_out) {  // the block's partial sum, warps in order (router partials: warp 1, a thread per expert)
    __shared__ float l_sq[WPB];
    if (lane == 0) l_sq[wib] = sq;
    if (rpart && lane == 0) {
#pragma unroll
      for (int e = 0; e < kRoutePartE; e++) l_lpw[wib * kRoutePartE + e] = lp[e];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float tot = 0.f;
#pragma unroll
      for (int i = 0; i < WPB; i++) tot += l_sq[i];
      nf.out_part[bid] = tot;
    }
    if (rpart && wib == 1 && lane < nf.out_E) {
      float tot = 0.f;
#pragma unroll
      for (int i = 0; i < WPB; i++) tot += l_lpw[i * kRoutePartE + lane];
      nf.out_lpart[(size_t)bid * kRoutePartE + lane] = tot;
    }
  }
}
// RP: an instance with the router partials' code (NormFold::out_R), launched only for them
template <typename T, int NX, int R, int U, int KS, bool LORA, bool RP = false>
__global__ void __launch_bounds__(256) gemv_kernel(const T *__restrict__ W, int rows, int cols,
                                                   const float *__restrict__ X, int ldx, float *__restrict__ Y,
                                                   int ldy, const float *__restrict__ bias, int accumulate,
                                                   const __grid_constant__ LoraEpilogue lora,
                                                   const __grid_constant__ NormFold nf, int trig_late) {
  gt_begin(rows, cols, LORA ? 1 : 8);
  gemv_body<T, NX, R, U, KS, LORA, RP>(W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, nf, trig_late);
  gt_mark(7);
}
// The 16-bit LoRA kernels with R * U <= 8, held to their base kernels' occupancy (F16: 64 registers, 4 blocks of 256
// per SM; BF16: 3 blocks): the in-kernel shrink path and the half-way look at its counter would otherwise cost them
// a block per SM (ptxas: F16 v4 / v10 64 -> 73 registers).
template <typename T> constexpr int lora_min_blocks() { return std::is_same<T, __half>::value ? 4 : 3; }
template <typename T, int NX, int R, int U, int KS>
__global__ void __launch_bounds__(256, lora_min_blocks<T>()) gemv_lora_kernel(
    const T *__restrict__ W, int rows, int cols, const float *__restrict__ X, int ldx, float *__restrict__ Y, int ldy,
    const float *__restrict__ bias, int accumulate, const __grid_constant__ LoraEpilogue lora,
    const __grid_constant__ NormFold nf, int trig_late) {
  gt_begin(rows, cols, 1);
  gemv_body<T, NX, R, U, KS, true>(W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, nf, trig_late);
  gt_mark(7);
}
// Deferred expand (LoraEpilogue::defer): the leading lora.nsb blocks compute t (epi_shrink_block), then, once every
// shrink block has published, defer[] for their erpb rows (defer_expand); the other blocks are the PLAIN kernel's
// (no epilogue, no wait on t), so the launch's critical path is the base GEMV's.  Held to the LoRA kernels' occupancy.
// ROUTE: the shrink blocks route the token first (LoraEpilogue::route); an instance of its own, so that the others'
// code stays as it was.  (Session 62 run 7 timed a third instance whose shrink blocks skipped the routing and took the
// stale routes in memory, LSW_CUDA_ROUTE_DIAG=1: 1.024 x base against 1.059 x; code in commit 0ff13b8, removed.)
// (ROUTE 2: routed from the producer's partial logits, RouteFold::lg_part; an instance of its own too)
template <typename T, int R, int U, int KS, int ROUTE = 0>
__global__ void __launch_bounds__(256, lora_min_blocks<T>()) gemv_defer_kernel(
    const T *__restrict__ W, int rows, int cols, const float *__restrict__ X, int ldx, float *__restrict__ Y, int ldy,
    const float *__restrict__ bias, int accumulate, const __grid_constant__ LoraEpilogue lora,
    const __grid_constant__ NormFold nf, int trig_late) {
  gt_begin(rows, cols, 1);
  if ((int)blockIdx.x < lora.nsb) {
    gt_flag(2);
    epi_shrink_block<T, ROUTE>(lora, X, cols);
    defer_expand<T>(lora, nf, rows);
  } else {
    gemv_body<T, 1, R, U, KS, false>(W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, nf, trig_late, lora.nsb);
  }
  gt_mark(7);
}
// Always-correct scalar fallback: warp per row, element loads.
template <typename T>
__global__ void gemv_simple_kernel(const T *__restrict__ W, int rows, int cols, const float *__restrict__ X, int ldx,
                                   int n, float *__restrict__ Y, int ldy, const float *__restrict__ bias,
                                   int accumulate) {
  const int lane = threadIdx.x & 31;
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (row >= rows) return;
  const T *w = W + (size_t)row * cols;
  for (int t = 0; t < n; t++) {
    float acc = 0.f;
    for (int c = lane; c < cols; c += 32) acc = fmaf(Tr<T>::to_f(w[c]), X[(size_t)t * ldx + c], acc);
    acc = warp_sum(acc);
    if (lane == 0) {
      if (bias) acc += bias[row];
      float *y = Y + (size_t)t * ldy + row;
      if (accumulate) acc += *y;
      *y = acc;
    }
  }
}

// Variant 0 = automatic: the variant the autotuner measured fastest for this (dtype, rows, cols), else
// kDefaultVariant (the best of the first H200 run on most 7B shapes).  1.. = explicit kernels.
struct GemvVariant { int R, U, KS; const char *name; };
static const GemvVariant kVariants[] = {
    {0, 0, 0, "auto (autotuned per shape, else v2)"},
    {1, 8, 1, "warp/row, 8 x 16B in flight"},  // the production kernel before autotuning
    {1, 4, 1, "warp/row, 4 x 16B in flight"},
    {2, 4, 1, "2 rows/warp, 4 x 16B in flight per row"},
    {4, 2, 1, "4 rows/warp, 2 x 16B in flight per row"},
    {1, 16, 1, "warp/row, 16 x 16B in flight"},
    {1, 4, 2, "2 warps/row (split-K in the block), 4 x 16B"},
    {1, 8, 2, "2 warps/row (split-K in the block), 8 x 16B"},
    {1, 4, 4, "4 warps/row (split-K in the block), 4 x 16B"},
    {2, 4, 2, "2 rows per 2 warps (split-K), 4 x 16B per row"},
    {4, 2, 2, "4 rows per 2 warps (split-K), 2 x 16B per row"},
    {4, 2, 4, "4 rows per 4 warps (split-K), 2 x 16B per row"},  // short rows: half v10's serial round trips
    {2, 4, 4, "2 rows per 4 warps (split-K), 4 x 16B per row"},
};
static constexpr int kDefaultVariant = 2;
// The autotuner's candidates: v1..v11 (since session 22; v1..v10 before).  v11 / v12 (4 / 2 rows per 4 warps) win
// alone on the 7B o / down / gate,up / lm_head shapes and in the graph of the linears alone (93.3 -> 94.5 % of copy,
// session 17 run 2).  In the decode as it runs, v12 loses: a NormFold consumer pays its epilogue (partials, barrier,
// SwiGLU) per block and gate,up on v12 has 4x the blocks (the folded base graph took 3.67 ms so in run 1, 3.43 ms on
// v1..v10 in run 2).  v11 does not: forced per role into the folded decode graph (harness bench_roles, session 22
// run 5, two rounds) it took 0.004-0.012 ms off each of o, gate,up and down, and lm_head was even.  The fused-LoRA
// launches lose on v11 (in-kernel shrinks: 4.05 instead of 3.93 ms, session 17 run 2; whole-decode fused r64 4.526
// instead of 4.359 ms when the tuner went up to v12, run 6), so a LoRA launch without a LoRA-tuned entry takes the
// tuner's best among v1..v<kLoraAutoVariants>, recorded beside the plain choice.  LSW_CUDA_GEMV_MAX_VARIANT=N: the
// tuner tries v1..vN (10: the choice before session 22; 12: v12 too).
// (Session 29 forced o, down and gate,up's LoRA launches onto v3 / v4 instead of v10, fewer and larger blocks
// that leave more slots free for the next launch: all-linear r64 fused 4.146 -> 4.18-4.28 ms/token.
// bench/results/2026-12-03-h200-session29/run3-lora-variants)
static constexpr int kAutoVariants = 11;
static constexpr int kLoraAutoVariants = 10;
// An in-kernel-shrink LoRA launch whose GEMV blocks (plain choice of the shape) and shrink blocks do not fit in one
// wave of resident blocks runs this variant instead.  With r64 top-2 on q,k,v the plain choice (v4: 384 blocks of 32
// rows) + 192 shrink blocks > 528 slots on the H200: its last 48 blocks, 256 KB each, started only when the shrinks
// ended, ~12 us late (timeline trace, bench/results/2026-12-01-h200-session17).  v10 (4 rows per 2 warps, half the
// rows per block) is also what autotune_gemv_lora picked for every 7B shape.  Whole decode, all-linear r64 fused:
// 4.357 -> 4.233 ms; for every launch, also those that fit, it cost q,v r16 +0.4 % and layer-wise q,v r16 +2.4 %
// (session 17 run 7), hence only past one wave.  gemv_set_lora_default(0) / LSW_CUDA_GEMV_LORA_DEFAULT=0: never.
static int g_lora_default = kGemvLoraWaveVariant;
int gemv_set_lora_default(int v) {
  const int was = g_lora_default;
  g_lora_default = v >= 0 && v < gemv_variants() ? v : kGemvLoraWaveVariant;
  return was;
}
// resident blocks of a LoRA GEMV launch: the 16-bit LoRA kernels are held to lora_min_blocks per SM (launch bounds);
// F32 (tests, tiny models): 2, a floor
static int lora_wave_blocks(int dtype) {
  return sm_count() * (dtype == LSW_DTYPE_F16 ? lora_min_blocks<__half>() : dtype == LSW_DTYPE_BF16 ? lora_min_blocks<__nv_bfloat16>() : 2);
}
int gemv_variants() { return (int)(sizeof(kVariants) / sizeof(kVariants[0])); }
const char *gemv_variant_name(int v) { return v >= 0 && v < gemv_variants() ? kVariants[v].name : "?"; }
#if defined(LSW_GEMV_TRACE)
cudaError_t gemv_trace_set(unsigned long long *buf, int cap, int *seq) {
  const GemvTraceCfg c{buf, seq, buf && seq ? cap : 0};
  return cudaMemcpyToSymbol(g_gt, &c, sizeof c);
}
#endif

static bool g_pdl = false;
void gemv_set_pdl(bool on) { g_pdl = on; }
bool gemv_pdl() { return g_pdl; }
// off by default: on the H200 (session 8) launching them with PDL too made the 7B base decode slower (their early
// launch lets the next GEMV's blocks start, and sit on SM slots, while the previous GEMV is still running)
static bool g_pdl_small = false, g_pdl_attn = false;
// NormFold in side / follows_gemv: such a GEMV follows the GEMV that produced its input directly.  GEMV -> GEMV with
// PDL made the harness chains slower in session 16 (the 7B linears alone: 3.43-3.45 ms with PDL and the late trigger,
// 3.35-3.38 ms without), so until session 24 it launched plainly even when gemv_pdl() was on; the library default
// stays off, the model turns it on (below)
static bool g_pdl_fold_in = false;
void pdl_set_fold_in(bool on) { g_pdl_fold_in = on; }
// NormFold in side: rs right after the wait (gemv_set_fold_rs_early).  Session 27's block timelines of the 7B graph
// (bench/results/2026-12-02-h200-session27): after their main loop the folding GEMVs' blocks (q,k,v, gate,up,
// lm_head) took 1.7-2.2 us against 0.8-0.9 us without the fold, and q,k,v and gate,up run more than one wave, so
// every wave pays it
static bool g_fold_rs_early = true;
void gemv_set_fold_rs_early(bool on) { g_fold_rs_early = on; }
// where a GEMV lets its PDL dependents launch, for plain and for LoRA launches apart: after its main loop (the
// library default; session 16: the fused all-linear harness graph 4.07 -> 4.01 ms, base unchanged) or at its start
// (the dependents' blocks then sit on SM slots, waiting, for the whole GEMV).  Session 16 measured the start worse for
// the 7B linears alone (3.59-3.69 against 3.43-3.45 ms); session 24, with session 22's v11 choices for o, gate,up and
// down, measured it better for plain GEMVs and worse for LoRA ones (bench/results/2026-12-02-h200-session24 run 2:
// harness folded base graph 3.445 -> 3.401 ms with the folding GEMVs on PDL too, fused r64 in-kernel 3.804 -> 3.881;
// run 3, whole 7B base 3.84 -> 3.77 ms/token, all-linear r64 fused 4.37 -> 4.40), so the model sets plain launches
// to trigger at their start and LoRA launches late (model.cu, LSW_CUDA_GEMV_TRIGGER).  With that split (run 4, another
// machine) q,v r16 fused went 3.81-3.84 -> 3.78 ms and layer-wise q,v r16 fused 4.12-4.16 -> 4.08-4.09, all-linear
// r64 fused stayed at 4.24, and base went 3.76 -> 3.78: the base gain of run 3 did not repeat there
static bool g_trigger_late = true, g_trigger_late_lora = true;
void gemv_set_trigger_late(bool on) { g_trigger_late = g_trigger_late_lora = on; }
void gemv_set_trigger(bool plain_late, bool lora_late) {
  g_trigger_late = plain_late;
  g_trigger_late_lora = lora_late;
}
void pdl_set_scope(bool norms, bool attention) {
  g_pdl_small = norms;
  g_pdl_attn = attention;
}
bool pdl_norms() { return g_pdl && g_pdl_small; }
bool pdl_attention() { return g_pdl && g_pdl_attn; }

// ---- per-shape choice (autotune_gemv fills it; gemv(..., variant 0) reads it) ---------------------
// Two tables: plain launches and launches with the fused-LoRA epilogue (autotune_gemv_lora).  A LoRA launch
// without a LoRA entry for its shape uses the plain entry.
static std::mutex g_tune_mu;
static std::map<std::tuple<int, int, int>, int> g_tuned, g_tuned_lora;
// the plain tuner's best among v1..v<kLoraAutoVariants>: what a LoRA launch of the shape takes without its own entry
static std::map<std::tuple<int, int, int>, int> g_tuned_lora_base;
static std::string g_tune_report;

int gemv_tuned_variant(int dtype, int rows, int cols, bool lora) {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  auto &m = lora ? g_tuned_lora : g_tuned;
  auto it = m.find(std::make_tuple(dtype, rows, cols));
  return it == m.end() ? 0 : it->second;
}
void gemv_set_variant(int dtype, int rows, int cols, int variant, bool lora) {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  auto &m = lora ? g_tuned_lora : g_tuned;
  if (variant <= 0) m.erase(std::make_tuple(dtype, rows, cols));
  else m[std::make_tuple(dtype, rows, cols)] = variant;
  if (!lora) g_tuned_lora_base.erase(std::make_tuple(dtype, rows, cols));  // a set plain choice serves LoRA launches too
}
static int tuned_lora_base(int dtype, int rows, int cols) {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  auto it = g_tuned_lora_base.find(std::make_tuple(dtype, rows, cols));
  return it == g_tuned_lora_base.end() ? 0 : it->second;
}
void gemv_tune_clear() {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  g_tuned.clear();
  g_tuned_lora.clear();
  g_tuned_lora_base.clear();
  g_tune_report.clear();
}
std::string gemv_tune_report() {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  return g_tune_report;
}
static int env_variant(const char *name) {
  const char *ev = getenv(name);
  if (!ev || !*ev) return 0;
  const int v = atoi(ev);
  return v > 0 && v < gemv_variants() ? v : 0;
}
// LSW_CUDA_GEMV_LORA_SHAPES="ROWSxCOLS=V,...": the fused-LoRA launches of those shapes on variant V; likewise
// LSW_CUDA_GEMV_SHAPES for the plain launches (A-B runs; each read once, at its first use)
static std::vector<std::tuple<int, int, int>> parse_env_shapes(const char *name) {
  std::vector<std::tuple<int, int, int>> v;
  const char *ev = getenv(name);
  for (const char *p = ev; p && *p;) {
    int r = 0, c = 0, var = 0, n = 0;
    if (sscanf(p, "%dx%d=%d%n", &r, &c, &var, &n) != 3) break;
    if (var > 0 && var < gemv_variants()) v.emplace_back(r, c, var);
    p += n;
    while (*p == ',' || *p == ' ') p++;
  }
  return v;
}
static int env_shape(int rows, int cols, bool lora) {
  static const std::vector<std::tuple<int, int, int>> lshapes = parse_env_shapes("LSW_CUDA_GEMV_LORA_SHAPES"),
                                                      pshapes = parse_env_shapes("LSW_CUDA_GEMV_SHAPES");
  for (const auto &t : lora ? lshapes : pshapes)
    if (std::get<0>(t) == rows && std::get<1>(t) == cols) return std::get<2>(t);
  return 0;
}
// explicit variant > 0: itself; 0: LSW_CUDA_GEMV_LORA_VARIANT and LSW_CUDA_GEMV_LORA_SHAPES (LoRA launches) or
// LSW_CUDA_GEMV_SHAPES (plain ones),
// LSW_CUDA_GEMV_VARIANT, the tuned LoRA choice (LoRA launches), the tuned plain choice (for a LoRA launch: the plain
// tuner's best among v1..v<kLoraAutoVariants>), kDefaultVariant, in that order; an in-kernel-shrink launch
// (shrink_blocks > 0) that would then need more than one wave takes g_lora_default.  A deferring launch passes
// lora = false (its GEMV blocks are the plain kernel's) with its shrink blocks.
static int resolve_variant(int dtype, int rows, int cols, int variant, bool lora, int shrink_blocks = 0) {
  if (variant > 0 && variant < gemv_variants()) return variant;
  if (variant != 0) return -1;
  int v = lora ? env_variant("LSW_CUDA_GEMV_LORA_VARIANT") : 0;  // A-B runs of the fused-LoRA launches
  if (!v) v = env_shape(rows, cols, lora);
  if (!v) v = env_variant("LSW_CUDA_GEMV_VARIANT");               // force one kernel everywhere (debugging)
  if (!v && lora) v = gemv_tuned_variant(dtype, rows, cols, true);
  if (v) return v;
  v = gemv_tuned_variant(dtype, rows, cols, false);
  if (lora)  // the plain tuner's best among the variants a LoRA launch may take (see kLoraAutoVariants)
    if (const int vl = tuned_lora_base(dtype, rows, cols)) v = vl;
  if (!v) v = kDefaultVariant;
  if (shrink_blocks > 0 && g_lora_default > 0) {  // in-kernel shrinks: one wave, or g_lora_default
    const GemvVariant &k = kVariants[v];
    const int wave = lora_wave_blocks(dtype);
    if (wave > 0 && cdiv(cdiv(rows, k.R), 8 / k.KS) + shrink_blocks > wave) v = g_lora_default;
  }
  return v;
}

// GEMV-side launches: with PDL exactly when gemv_set_pdl(true)
template <typename... KArgs, typename... Args>
static void launch_ks(void (*kern)(KArgs...), dim3 grid, int threads, size_t smem, cudaStream_t s, bool pdl,
                      Args... args) {
  launch_pdl_smem(kern, grid, dim3(threads), smem, s, pdl, args...);
}
template <typename... KArgs, typename... Args>
static void launch_k(void (*kern)(KArgs...), dim3 grid, int threads, cudaStream_t s, Args... args) {
  launch_pdl(kern, grid, dim3(threads), s, g_pdl, args...);
}

template <typename T, int NX, int R, int U, int KS>
static cudaError_t launch_gemv_t(const void *W, int rows, int cols, const float *X, int ldx, float *Y, int ldy,
                                 const float *bias, bool accumulate, const LoraEpilogue *lora, NormFold *nf,
                                 cudaStream_t s) {
  const int threads = 256, groups_per_block = threads / 32 / KS;
  const int groups = cdiv(rows, R);
  int gemv_blocks = cdiv(groups, groups_per_block);
  constexpr int BR = (8 / KS) * R;  // rows per block (the kernel's GPB * R)
  constexpr bool kRpInst = NX == 1 && sizeof(T) == 2 && BR * 2 % 16 == 0;  // an RP instance exists
  NormFold f;  // (validated by gemv(): n == 1, the vector path)
  size_t smem = 0;  // fold in: the partial sums' stage (dynamic: the other launches keep their shared memory as is)
  if (nf) {
    f = *nf;
    f.out_n = 0;
    if (f.act_out) gemv_blocks = cdiv(f.act_half, groups_per_block * R / 2);  // SwiGLU fold: H2 gate + H2 up rows
    else f.act_half = 0;
    if (f.out_xw) nf->out_n = f.out_n = gemv_blocks;
    f.rs_early = g_fold_rs_early;
    if (f.in_part && f.in_n <= kFoldSmemParts) smem = (size_t)cdiv(f.in_n, 4) * 16;
    // router partials: whole 16-byte chunks of R per block and per R row, else not written (out_lp = 0)
    // (16-bit weights, no LoRA; the variants whose block rows are whole 16-byte chunks of R: kRpInst)
    const bool rp = kRpInst && !(lora && lora->nseg > 0) && f.out_xw && f.out_R && f.out_lpart && f.out_E >= 1 &&
                    f.out_E <= kRoutePartE && (size_t)rows * sizeof(T) % 16 == 0 && aligned16(f.out_R) &&
                    aligned16(f.out_lpart) && !f.act_out;
    nf->out_lp = rp;
    if (rp) {
      f.rp_off = (int)(smem / 4);
      smem += (size_t)kRoutePartE * BR * sizeof(T) + 8 * kRoutePartE * 4;
    } else {
      f.out_R = nullptr;
    }
  }
  const dim3 grid(gemv_blocks + (lora && lora->nseg > 0 ? lora->nsb : 0));  // + in-kernel shrink blocks
  // a GEMV folding a norm in directly follows the GEMV that produced x: plain launch (see g_pdl_fold_in), except
  // with in-kernel shrinks, whose blocks then read their A rows while the producer finishes (measured faster)
  const bool ik = lora && lora->nseg > 0 && lora->nsb > 0;
  const bool pdl = g_pdl && (!(f.in_part || f.follows_gemv) || g_pdl_fold_in || ik);
  if (lora && lora->nseg > 0 && lora->defer) {  // (gemv() checked gemv_defer_ok: 16-bit, n == 1, shrink blocks)
    if constexpr (NX == 1 && sizeof(T) == 2 && R * U <= 8)
      launch_ks(!lora->route.R ? gemv_defer_kernel<T, R, U, KS>
                : lora->route.fold.lg_part ? gemv_defer_kernel<T, R, U, KS, 2> : gemv_defer_kernel<T, R, U, KS, 1>,
                grid, threads,
                smem, s, pdl, (const T *)W, rows, cols, X, ldx, Y, ldy, bias, (int)accumulate, *lora, f,
                (int)g_trigger_late_lora);
    else
      return cudaErrorInvalidValue;
  } else if (lora && lora->nseg > 0) {
    if constexpr (NX == 1 && sizeof(T) == 2 && R * U <= 8)
      launch_ks(gemv_lora_kernel<T, NX, R, U, KS>, grid, threads, smem, s, pdl, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
               (int)accumulate, *lora, f, (int)g_trigger_late_lora);
    else if constexpr (NX == 1)
      launch_ks(gemv_kernel<T, NX, R, U, KS, true>, grid, threads, smem, s, pdl, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
               (int)accumulate, *lora, f, (int)g_trigger_late_lora);
    else
      return cudaErrorInvalidValue;
  } else if (f.out_R) {  // (rp: kRpInst)
    if constexpr (kRpInst)
      launch_ks(gemv_kernel<T, NX, R, U, KS, false, true>, grid, threads, smem, s, pdl, (const T *)W, rows, cols, X, ldx,
                Y, ldy, bias, (int)accumulate, LoraEpilogue{}, f, (int)g_trigger_late);
  } else {
    launch_ks(gemv_kernel<T, NX, R, U, KS, false>, grid, threads, smem, s, pdl, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
             (int)accumulate, LoraEpilogue{}, f, (int)g_trigger_late);
  }
  LSWC_LAUNCH_RET();
}

template <typename T, int R, int U, int KS>
static cudaError_t launch_gemv_n(int n, const void *W, int rows, int cols, const float *X, int ldx, float *Y, int ldy,
                                 const float *bias, bool acc, const LoraEpilogue *lora, NormFold *nf,
                                 cudaStream_t s) {
  switch (n) {
    case 1: return launch_gemv_t<T, 1, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 2: return launch_gemv_t<T, 2, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 3: return launch_gemv_t<T, 3, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 4: return launch_gemv_t<T, 4, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
  }
  return cudaErrorInvalidValue;
}

template <typename T>
static cudaError_t gemv_dispatch(int variant, int n, const void *W, int rows, int cols, const float *X, int ldx,
                                 float *Y, int ldy, const float *bias, bool acc, const LoraEpilogue *lora,
                                 cudaStream_t s, NormFold *nf = nullptr) {
  // n = 5..8 run as 4 + (n-4): keeps register pressure of the NX=8 instantiation away.
  if (n > 4) {
    if (nf) return cudaErrorInvalidValue;
    cudaError_t e = gemv_dispatch<T>(variant, 4, W, rows, cols, X, ldx, Y, ldy, bias, acc, nullptr, s);
    if (e != cudaSuccess) return e;
    return gemv_dispatch<T>(variant, n - 4, W, rows, cols, X + (size_t)4 * ldx, ldx, Y + (size_t)4 * ldy, ldy, bias,
                            acc, nullptr, s);
  }
  switch (variant) {
    case 1: return launch_gemv_n<T, 1, 8, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 2: return launch_gemv_n<T, 1, 4, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 3: return launch_gemv_n<T, 2, 4, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 4: return launch_gemv_n<T, 4, 2, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 5: return launch_gemv_n<T, 1, 16, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 6: return launch_gemv_n<T, 1, 4, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 7: return launch_gemv_n<T, 1, 8, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 8: return launch_gemv_n<T, 1, 4, 4>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 9: return launch_gemv_n<T, 2, 4, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 10: return launch_gemv_n<T, 4, 2, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 11: return launch_gemv_n<T, 4, 2, 4>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
    case 12: return launch_gemv_n<T, 2, 4, 4>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, nf, s);
  }
  return cudaErrorInvalidValue;
}

cudaError_t gemv_simple(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y,
                        int ldy, const float *bias, bool accumulate, cudaStream_t s) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  dim3 grid(cdiv(rows, 8));
  switch (dtype) {
    case LSW_DTYPE_F32: gemv_simple_kernel<float><<<grid, 256, 0, s>>>((const float *)W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate); break;
    case LSW_DTYPE_F16: gemv_simple_kernel<__half><<<grid, 256, 0, s>>>((const __half *)W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate); break;
    case LSW_DTYPE_BF16: gemv_simple_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>((const __nv_bfloat16 *)W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

// LoRA epilogue on top of a finished Y (used when the vector path cannot run): thread per row.
template <typename T>
__global__ void lora_epilogue_kernel(int rows, float *Y, const __grid_constant__ LoraEpilogue lora) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  float acc = 0.f;
  for (int sgi = 0; sgi < lora.nseg; sgi++) {
    const LoraSeg &sg = lora.seg[sgi];
    if (row < sg.row0 || row >= sg.row0 + sg.rows) continue;
    const T *B = static_cast<const T *>(sg.B);
    for (int k = 0; k < lora.top_k; k++) {
      const int e = sg.experts[k];
      const T *b = B + ((size_t)e * sg.rows + (row - sg.row0)) * sg.rank;
      for (int j = 0; j < sg.rank; j++) acc = fmaf(Tr<T>::to_f(b[j]), sg.t[k * sg.rank + j], acc);
    }
  }
  Y[row] += acc;
}

static cudaError_t lora_epilogue(int dtype, int rows, float *Y, const LoraEpilogue &lora, cudaStream_t s) {
  switch (dtype) {
    case LSW_DTYPE_F32: lora_epilogue_kernel<float><<<cdiv(rows, 256), 256, 0, s>>>(rows, Y, lora); break;
    case LSW_DTYPE_F16: lora_epilogue_kernel<__half><<<cdiv(rows, 256), 256, 0, s>>>(rows, Y, lora); break;
    case LSW_DTYPE_BF16: lora_epilogue_kernel<__nv_bfloat16><<<cdiv(rows, 256), 256, 0, s>>>(rows, Y, lora); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

// can the GEMV kernel's epilogue take this LoRA (16-byte B chunks)?
static bool lora_vec_ok(int dtype, const LoraEpilogue &lora) {
  const int vec = dtype == LSW_DTYPE_F32 ? 4 : 8;
  if (lora.nseg > 3 || lora.top_k <= 0) return false;
  for (int i = 0; i < lora.nseg; i++)
    if (lora.seg[i].rank <= 0 || lora.seg[i].rank % vec != 0 || !aligned16(lora.seg[i].B)) return false;
  return true;
}

// in-kernel shrink requested (every segment has A, sync set)?  -1: malformed request
static int inkernel_shrink(const LoraEpilogue &lo) {
  int with = 0;
  for (int i = 0; i < lo.nseg; i++) with += lo.seg[i].A != nullptr;
  if (with == 0) return 0;
  if (with != lo.nseg || !lo.sync) return -1;
  for (int i = 0; i < lo.nseg; i++)
    if (!lo.seg[i].gates || !lo.seg[i].experts || !lo.seg[i].t) return -1;
  return 1;
}
// the same t as the in-kernel shrink computes, by a separate lora_shrink launch (when the vector path cannot run)
static cudaError_t shrink_before(int dtype, const LoraEpilogue &lo, const float *X, int cols, cudaStream_t s) {
  for (int i = 0; i < lo.nseg; i++) {
    ShrinkBatch b;
    b.njobs = 1;
    b.top_k = lo.top_k;
    b.experts = lo.seg[i].experts;
    b.gates = lo.seg[i].gates;
    b.n_experts = lo.n_experts;
    b.job[0] = ShrinkJob{lo.seg[i].A, lo.seg[i].rank, cols, X, const_cast<float *>(lo.seg[i].t), lo.seg[i].scale};
    cudaError_t e = lora_shrink(dtype, b, s);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// in-kernel shrink blocks: srpb A rows each, so that a thread has <= EPI_SHRINK_MS 16-byte A chunks in flight
// (Session 29 tried one A row per block on 4,096-column inputs, twice the shrink blocks: all-linear r64 fused
// 4.17 -> 4.26 ms/token, q,v r16 even.  bench/results/2026-12-03-h200-session29/run4-shrink-rpb)
static void shrink_blocks(LoraEpilogue &lo, int cols, int vec) {
  static const bool trust = env_flag("LSW_CUDA_LORA_TRUST_LOOK", true);
  lo.look_trusted = trust;
  lo.route.wide = route_wide();
  int total = 0;
  for (int i = 0; i < lo.nseg; i++) total += lo.top_k * lo.seg[i].rank;
  const int cj = cdiv(cols / vec, 256);
  lo.srpb = cj >= EPI_SHRINK_MS ? 1 : EPI_SHRINK_MS / cj;
  lo.nsb = cdiv(total, lo.srpb);
}
// the vector path's conditions (the only path that takes a NormFold)
static bool gemv_fast(int dtype, const void *W, int cols, const float *X, int ldx) {
  const int vec = dtype == LSW_DTYPE_F32 ? 4 : 8;
  return cols % vec == 0 && aligned16(W) && aligned16(X) && ldx % 4 == 0 && cols > 0;
}
static bool inkernel_vec_ok(int dtype, const LoraEpilogue &lo) {
  bool ok = lora_vec_ok(dtype, lo);
  for (int i = 0; i < lo.nseg && ok; i++) ok = aligned16(lo.seg[i].A);
  return ok;
}
bool gemv_defer_ok(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n,
                   const LoraEpilogue *lora) {
  if (n != 1 || !lora || lora->nseg <= 0 || lora->nseg > 3 || !lora->defer || rows <= 0) return false;
  if ((dtype != LSW_DTYPE_F16 && dtype != LSW_DTYPE_BF16) || lora->top_k < 1 || lora->top_k > kDeferMaxK) return false;
  if (inkernel_shrink(*lora) <= 0 || !gemv_fast(dtype, W, cols, X, ldx) || !inkernel_vec_ok(dtype, *lora)) return false;
  for (int i = 0; i < lora->nseg; i++)
    if (lora->top_k * lora->seg[i].rank > 512) return false;  // defer_expand's t stage and chunks per row
  const LoraRoute &rt = lora->route;  // a router in the shrink blocks: its sizes, outputs and its fold's partials
  if (rt.R && (rt.n_experts < lora->top_k || rt.n_experts > kRouteShrinkMaxE || !rt.experts || !rt.gates ||
               (rt.fold.in_part && rt.fold.in_n <= 0)))
    return false;
  // the producer's partial logits (the ROUTE 2 instance sums them): of this router, with its fold, <= kRoutePartE experts
  if (rt.fold.lg_part && (!rt.R || rt.fold.lg_R != rt.R || !rt.fold.in_part || rt.n_experts > kRoutePartE ||
                          !aligned16(rt.fold.lg_part)))
    return false;
  LoraEpilogue lo = *lora;
  shrink_blocks(lo, cols, 8);
  const int wave = lora_wave_blocks(dtype);
  return wave > 0 && lo.nsb <= wave;  // every shrink block waits for all the others: they must fit at once
}
bool gemv_fold_ok(int dtype, const void *W, int cols, const float *X, int ldx, int n, const LoraEpilogue *lora) {
  if (n != 1 || !gemv_fast(dtype, W, cols, X, ldx)) return false;
  if (!lora || lora->nseg == 0) return true;
  if (lora->nseg > 3) return false;
  const int ik = inkernel_shrink(*lora);
  return ik == 0 ? lora_vec_ok(dtype, *lora) : ik > 0 && inkernel_vec_ok(dtype, *lora);
}
int gemv_fold_parts(int rows) {  // (a multiple of 4: the in side copies 16-byte chunks)
  int most = 0;
  for (int v = 1; v < gemv_variants(); v++) most = std::max(most, cdiv(cdiv(rows, kVariants[v].R), 8 / kVariants[v].KS));
  return cdiv(most, 4) * 4;
}

cudaError_t gemv(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                 const float *bias, bool accumulate, const LoraEpilogue *lora, cudaStream_t s, int variant,
                 NormFold *nf) {
  if (nf) nf->out_lp = 0;
  if (rows <= 0 || n <= 0) return cudaSuccess;
  if (n > 8) return cudaErrorInvalidValue;
  const bool has_lora = lora && lora->nseg > 0;
  if (has_lora && (n != 1 || lora->nseg > 3)) return cudaErrorInvalidValue;
  if (has_lora && lora->route.R && !lora->defer) return cudaErrorInvalidValue;  // routes only in deferring launches
  if (nf && !nf->in_part && !nf->out_xw && !nf->act_out && !(nf->follows_gemv && gemv_fold_ok(dtype, W, cols, X, ldx, n, lora)))
    nf = nullptr;  // nothing to fold (a PDL hint alone, on a launch the vector kernel does not take, is dropped)
  if (nf && (!gemv_fold_ok(dtype, W, cols, X, ldx, n, lora) || (nf->in_part && (accumulate || nf->in_n <= 0)) ||
             (nf->out_xw && (!nf->out_w || !nf->out_part)) ||
             (nf->act_out && (accumulate || nf->out_xw || nf->act_half <= 0 || rows != 2 * nf->act_half))))
    return cudaErrorInvalidValue;
  const int vec = dtype == LSW_DTYPE_F32 ? 4 : 8;
  const bool fast = gemv_fast(dtype, W, cols, X, ldx);
  const int ik = has_lora ? inkernel_shrink(*lora) : 0;
  if (ik < 0) return cudaErrorInvalidValue;
  // a deferred expand runs as asked or not at all (its consumer adds defer[]: no silent fallback to the epilogue)
  if (has_lora && lora->defer && !gemv_defer_ok(dtype, W, rows, cols, X, ldx, n, lora)) return cudaErrorInvalidValue;
  if (ik) {
    const bool ok = fast && inkernel_vec_ok(dtype, *lora);
    LoraEpilogue lo = *lora;
    for (int i = 0; i < lo.nseg; i++) lo.seg[i].A = nullptr;  // t computed before: a plain LoRA epilogue launch
    if (!ok) {
      cudaError_t e = shrink_before(dtype, *lora, X, cols, s);
      return e != cudaSuccess ? e : gemv(dtype, W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, &lo, s, variant);
    }
    lo = *lora;
    shrink_blocks(lo, cols, vec);
    if (lo.defer) {  // deferred expand: the GEMV blocks are the plain kernel's, so the plain choice, kept to one wave
      lo.erpb = cdiv(rows, lo.nsb);
      const int v0 = variant;
      variant = resolve_variant(dtype, rows, cols, variant, false, lo.nsb);
      if (variant > 0 && kVariants[variant].R * kVariants[variant].U > 8)  // (no deferring kernel: 64 registers)
        variant = v0 == 0 ? kGemvLoraWaveVariant : -1;
    } else {
      variant = resolve_variant(dtype, rows, cols, variant, true, lo.nsb);
    }
    if (variant < 0) return cudaErrorInvalidValue;
    switch (dtype) {
      case LSW_DTYPE_F32: return gemv_dispatch<float>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, &lo, s, nf);
      case LSW_DTYPE_F16: return gemv_dispatch<__half>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, &lo, s, nf);
      case LSW_DTYPE_BF16: return gemv_dispatch<__nv_bfloat16>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, &lo, s, nf);
    }
    return cudaErrorInvalidValue;
  }
  LoraEpilogue plain;
  if (has_lora && (lora->nsb || lora->srpb)) {  // t is an input here: no shrink blocks whatever the caller left set
    plain = *lora;
    plain.nsb = plain.srpb = 0;
    lora = &plain;
  }
  if (!fast || (has_lora && !lora_vec_ok(dtype, *lora))) {  // base GEMV, then the thread-per-row LoRA epilogue
    cudaError_t e = fast ? gemv(dtype, W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, nullptr, s, variant)
                         : gemv_simple(dtype, W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, s);
    if (e != cudaSuccess || !has_lora) return e;
    return lora_epilogue(dtype, rows, Y, *lora, s);
  }
  variant = resolve_variant(dtype, rows, cols, variant, has_lora);
  if (variant < 0) return cudaErrorInvalidValue;
  switch (dtype) {
    case LSW_DTYPE_F32: return gemv_dispatch<float>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s, nf);
    case LSW_DTYPE_F16: return gemv_dispatch<__half>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s, nf);
    case LSW_DTYPE_BF16: return gemv_dispatch<__nv_bfloat16>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s, nf);
  }
  return cudaErrorInvalidValue;
}

// ---- LoRA shrink: BLOCK per gathered A row (one CTA per rank row of every job: 128 for r64 top-2), 16-byte
// loads, the first PF per thread issued BEFORE griddepcontrol.wait (launched with PDL when gemv_set_pdl(true)),
// all jobs of a batch in one launch, fixed-order block reduction (deterministic) ------------------------------
// (job, expert slot k, rank index i) of shrink row `row` of a batch; false past the last row (uniform per block)
__device__ __forceinline__ bool shrink_row(const ShrinkBatch &b, int row, int &j, int &k, int &i) {
  return split_shrink_row(b.njobs, b.top_k, [&](int e) { return b.job[e].rank; }, row, j, k, i);
}
// Before griddepcontrol.wait: the expert of slot k read relaxed (the router may be the kernel right before us) and
// clamped to [0, n_experts), its A row's first PF 16-byte chunks of this thread into registers.  Returns the expert
// used (-1: nothing loaded); after the wait the caller re-reads the expert and reloads when it differs.
template <typename T, int NT, int PF>
__device__ __forceinline__ int shrink_prefetch(const ShrinkBatch &b, const void *A, int rank, int cols, int k, int i,
                                               uint4 (&pa)[PF]) {
  if (b.n_experts <= 0) return -1;
  const int e = min(max(ld_relaxed(b.experts + k), 0), b.n_experts - 1);
  const uint4 *a = reinterpret_cast<const uint4 *>(static_cast<const T *>(A) + ((size_t)e * rank + i) * cols);
  const int nvec = cols / Tr<T>::VEC;
#pragma unroll
  for (int p = 0; p < PF; p++)
    if ((int)threadIdx.x + NT * p < nvec) pa[p] = ld_stream(a + threadIdx.x + NT * p);
  return e;
}

template <typename T>
__global__ void __launch_bounds__(128) lora_shrink_kernel(ShrinkBatch b) {
  constexpr int NT = 128, PF = 4, VEC = Tr<T>::VEC;
  __shared__ float red[NT / 32];
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int tid = threadIdx.x;
  int j, k, i;
  if (!shrink_row(b, blockIdx.x, j, k, i)) return;  // whole block
  const ShrinkJob &jb = b.job[j];
  const bool vec = jb.cols % VEC == 0 && (reinterpret_cast<uintptr_t>(jb.A) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(jb.x) & 15) == 0;
  uint4 pa[PF];
  const int e_pre = vec ? shrink_prefetch<T, NT, PF>(b, jb.A, jb.rank, jb.cols, k, i, pa) : -1;
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const int e = b.experts[k];
  const T *arow = static_cast<const T *>(jb.A) + ((size_t)e * jb.rank + i) * jb.cols;
  float acc = 0.f;
  if (vec) {
    const int nvec = jb.cols / VEC;
    const uint4 *a = reinterpret_cast<const uint4 *>(arow);
    const bool pre = e == e_pre;
    auto dot = [&](const uint4 &av, int c) {
      float wf[VEC];
      unpack16<T>(av, wf);
      const float4 *xp = reinterpret_cast<const float4 *>(jb.x + (size_t)c * VEC);
#pragma unroll
      for (int q = 0; q < VEC / 4; q++) {
        const float4 v = __ldg(xp + q);
        acc = fmaf(wf[4 * q], v.x, acc); acc = fmaf(wf[4 * q + 1], v.y, acc);
        acc = fmaf(wf[4 * q + 2], v.z, acc); acc = fmaf(wf[4 * q + 3], v.w, acc);
      }
    };
#pragma unroll
    for (int p = 0; p < PF; p++) {
      const int c = tid + NT * p;
      if (c < nvec) dot(pre ? pa[p] : ld_stream(a + c), c);
    }
#pragma unroll 4
    for (int c = tid + NT * PF; c < nvec; c += NT) dot(ld_stream(a + c), c);
  } else {
    for (int c = tid; c < jb.cols; c += NT) acc = fmaf(Tr<T>::to_f(arow[c]), jb.x[c], acc);
  }
  float sum[1] = {acc};
  block_sum_n<NT, 1>(sum, red);
  if (tid == 0) jb.t[k * jb.rank + i] = (b.gates[k] * jb.scale) * sum[0];
}

cudaError_t lora_shrink(int dtype, const ShrinkBatch &b, cudaStream_t s) {
  int total = 0;
  for (int j = 0; j < b.njobs; j++) total += b.top_k * b.job[j].rank;
  if (total == 0) return cudaSuccess;
  dim3 grid(total);
  switch (dtype) {
    case LSW_DTYPE_F32: launch_k(lora_shrink_kernel<float>, grid, 128, s, b); break;
    case LSW_DTYPE_F16: launch_k(lora_shrink_kernel<__half>, grid, 128, s, b); break;
    case LSW_DTYPE_BF16: launch_k(lora_shrink_kernel<__nv_bfloat16>, grid, 128, s, b); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

// ---- LoRA expand (unfused baseline): thread per output row ---------------------------------------
template <typename T>
__global__ void lora_expand_kernel(const T *__restrict__ B, int rows, int rank, const int *experts, int k,
                                   const float *gates, const float *__restrict__ t, float *__restrict__ Y) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const int e = experts[k];
  const T *b = B + ((size_t)e * rows + row) * rank;
  float acc = 0.f;
  for (int j = 0; j < rank; j++) acc = fmaf(Tr<T>::to_f(b[j]), t[j], acc);
  Y[row] += gates[k] * acc;
}

cudaError_t lora_expand(int dtype, const void *B, int rows, int rank, const int *experts, int k, const float *gates,
                        const float *t, float *Y, cudaStream_t s) {
  dim3 grid(cdiv(rows, 128));
  switch (dtype) {
    case LSW_DTYPE_F32: lora_expand_kernel<float><<<grid, 128, 0, s>>>((const float *)B, rows, rank, experts, k, gates, t, Y); break;
    case LSW_DTYPE_F16: lora_expand_kernel<__half><<<grid, 128, 0, s>>>((const __half *)B, rows, rank, experts, k, gates, t, Y); break;
    case LSW_DTYPE_BF16: lora_expand_kernel<__nv_bfloat16><<<grid, 128, 0, s>>>((const __nv_bfloat16 *)B, rows, rank, experts, k, gates, t, Y); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

}  // namespace lswc

namespace lswc {

// ---- prologue + LoRA shrink in one launch (fused mode without extra graph nodes) ----------------
// Block per shrink row (job j, expert slot k, rank index i); every block streams its A row once together
// with x (L2-resident) and, in the same pass,
//   mode 0 (RMSNorm): Σx² and Σ a·(x·w)  ->  inv = 1/sqrt(Σx²/D + eps),  t = g_k · inv · Σ a·(x·w)
//   mode 1 (SwiGLU):  Σ a·silu(x[c])·x[D+c]                             t = g_k · Σ ...
// then writes its share of v (the input of the following GEMV: x·inv·w or silu(x)·x[D:]) to `out`.
// The first PF 16-byte A chunks of each thread (D <= 12288 for 16-bit A: all of them) are loaded BEFORE
// griddepcontrol.wait (PDL launch when gemv_set_pdl(true)), so after the wait only L2 reads of x remain; the
// (Σx², dot) pair is reduced in one pass.  Blocks with no shrink row (njobs == 0) only build v.
template <typename T>
__global__ void __launch_bounds__(256) prologue_shrink_kernel(int mode, int D, const float *__restrict__ x,
                                                              const float *__restrict__ w, float eps,
                                                              float *__restrict__ out, ShrinkBatch b) {
  constexpr int NT = 256, PF = 6, VEC = Tr<T>::VEC;
  __shared__ float red[2 * NT / 32];
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int tid = threadIdx.x;
  int j = 0, k = 0, i = 0;
  const bool has_row = shrink_row(b, blockIdx.x, j, k, i);  // uniform over the block
  const void *A = has_row ? b.job[j].A : nullptr;
  const int rank = has_row ? b.job[j].rank : 1;
  const bool vec = D % VEC == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
                   (mode == 1 || (reinterpret_cast<uintptr_t>(w) & 15) == 0) &&
                   (!has_row || (reinterpret_cast<uintptr_t>(A) & 15) == 0);
  uint4 pa[PF];
  const int e_pre = vec && has_row ? shrink_prefetch<T, NT, PF>(b, A, rank, D, k, i, pa) : -1;
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const T *arow = nullptr;
  bool pre = false;
  if (has_row) {
    const int e = b.experts[k];
    arow = static_cast<const T *>(A) + ((size_t)e * rank + i) * D;
    pre = e == e_pre;
  }
  // v[c*VEC .. +VEC) of chunk c (x·w before the 1/rms scale, or silu(g)·u); Σx² into ss (mode 0)
  auto build = [&](int c, float (&vv)[VEC], float &ss) {
    float xv[VEC];
    const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)c * VEC);
#pragma unroll
    for (int q = 0; q < VEC / 4; q++) {
      const float4 t4 = __ldg(xp + q);
      xv[4 * q] = t4.x; xv[4 * q + 1] = t4.y; xv[4 * q + 2] = t4.z; xv[4 * q + 3] = t4.w;
    }
    if (mode == 0) {
      const float4 *wp = reinterpret_cast<const float4 *>(w + (size_t)c * VEC);
#pragma unroll
      for (int q = 0; q < VEC / 4; q++) {
        const float4 t4 = __ldg(wp + q);
        vv[4 * q] = xv[4 * q] * t4.x; vv[4 * q + 1] = xv[4 * q + 1] * t4.y;
        vv[4 * q + 2] = xv[4 * q + 2] * t4.z; vv[4 * q + 3] = xv[4 * q + 3] * t4.w;
      }
#pragma unroll
      for (int q = 0; q < VEC; q++) ss = fmaf(xv[q], xv[q], ss);
    } else {
      const float4 *up = reinterpret_cast<const float4 *>(x + D + (size_t)c * VEC);
#pragma unroll
      for (int q = 0; q < VEC / 4; q++) {
        const float4 t4 = __ldg(up + q);
        const float u4[4] = {t4.x, t4.y, t4.z, t4.w};
#pragma unroll
        for (int h = 0; h < 4; h++) {
          const float g = xv[4 * q + h];
          vv[4 * q + h] = g / (1.f + expf(-g)) * u4[h];
        }
      }
    }
  };
  float sums[2] = {0.f, 0.f};  // Σx², Σ a·v
  if (vec) {
    const int nvec = D / VEC;
    const uint4 *a = reinterpret_cast<const uint4 *>(arow);
    auto chunk = [&](int c, const uint4 &av) {
      float vv[VEC];
      build(c, vv, sums[0]);
      if (has_row) {
        float af[VEC];
        unpack16<T>(av, af);
#pragma unroll
        for (int q = 0; q < VEC; q++) sums[1] = fmaf(af[q], vv[q], sums[1]);
      }
    };
#pragma unroll
    for (int p = 0; p < PF; p++) {
      const int c = tid + NT * p;
      if (c < nvec) chunk(c, !has_row ? make_uint4(0, 0, 0, 0) : pre ? pa[p] : ld_stream(a + c));
    }
#pragma unroll 2
    for (int c = tid + NT * PF; c < nvec; c += NT) chunk(c, has_row ? ld_stream(a + c) : make_uint4(0, 0, 0, 0));
  } else {
    for (int c = tid; c < D; c += NT) {
      const float xc = x[c];
      float v;
      if (mode == 0) { sums[0] = fmaf(xc, xc, sums[0]); v = xc * w[c]; }
      else v = xc / (1.f + expf(-xc)) * x[D + c];
      if (has_row) sums[1] = fmaf(Tr<T>::to_f(arow[c]), v, sums[1]);
    }
  }
  block_sum_n<NT, 2>(sums, red);
  const float inv = mode == 0 ? 1.f / sqrtf(sums[0] / (float)D + eps) : 1.f;
  if (has_row && tid == 0)
    b.job[j].t[k * rank + i] = (b.gates[k] * b.job[j].scale) * (mode == 0 ? sums[1] * inv : sums[1]);
  // this block's share of v (x / w were just read by this block: L1 hits); same arithmetic as rmsnorm / swiglu
  if (vec && (reinterpret_cast<uintptr_t>(out) & 15) == 0) {
    for (int c = blockIdx.x * NT + tid; c < D / 4; c += gridDim.x * NT) {
      const float4 x4 = __ldg(reinterpret_cast<const float4 *>(x) + c);
      const float xa[4] = {x4.x, x4.y, x4.z, x4.w};
      float o[4];
      if (mode == 0) {
        const float4 w4 = __ldg(reinterpret_cast<const float4 *>(w) + c);
        const float wa[4] = {w4.x, w4.y, w4.z, w4.w};
#pragma unroll
        for (int h = 0; h < 4; h++) o[h] = xa[h] * inv * wa[h];
      } else {
        const float4 u4 = __ldg(reinterpret_cast<const float4 *>(x + D) + c);
        const float ua[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
        for (int h = 0; h < 4; h++) o[h] = xa[h] / (1.f + expf(-xa[h])) * ua[h];
      }
      reinterpret_cast<float4 *>(out)[c] = make_float4(o[0], o[1], o[2], o[3]);
    }
  } else {
    for (int c = blockIdx.x * NT + tid; c < D; c += gridDim.x * NT) {
      const float xc = x[c];
      out[c] = mode == 0 ? xc * inv * w[c] : xc / (1.f + expf(-xc)) * x[D + c];
    }
  }
}

cudaError_t prologue_shrink(int dtype, int mode, int D, const float *x, const float *w, float eps, float *out,
                            const ShrinkBatch &b, cudaStream_t s) {
  if (D <= 0) return cudaSuccess;
  int total = 0;
  for (int j = 0; j < b.njobs; j++) {
    if (b.job[j].cols != D) return cudaErrorInvalidValue;  // every job reads v
    total += b.top_k * b.job[j].rank;
  }
  const int blocks = std::max(total, std::min(cdiv(D, 1024), 64));
  switch (dtype) {
    case LSW_DTYPE_F32: launch_k(prologue_shrink_kernel<float>, dim3(blocks), 256, s, mode, D, x, w, eps, out, b); break;
    case LSW_DTYPE_F16: launch_k(prologue_shrink_kernel<__half>, dim3(blocks), 256, s, mode, D, x, w, eps, out, b); break;
    case LSW_DTYPE_BF16: launch_k(prologue_shrink_kernel<__nv_bfloat16>, dim3(blocks), 256, s, mode, D, x, w, eps, out, b); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

}  // namespace lswc

namespace lswc {

// ---- GEMV autotuner -------------------------------------------------------------------------------
// Times every explicit variant on the caller's real weights (all nW matrices of one shape launched back to
// back, as in the decode step: pass every layer's matrix so the set exceeds L2) and records the fastest for
// (dtype, rows, cols).  ~nW launches x (2 + reps) passes x variants: a few ms per shape for 7B.
bool cuda_verbose() { return env_flag("LSW_CUDA_VERBOSE", false); }

// Times every explicit variant (with eps: the fused-LoRA launch of each matrix) and records the fastest.
// The tuner's chains of one shape launch as the decode does (with PDL when gemv_pdl(), each GEMV letting the next in
// where gemv_set_trigger says) unless gemv_set_tune_pdl(false) (plain launches: the tuner before session 26; the model
// reads LSW_CUDA_GEMV_TUNE_PDL).  Why: with PDL and the start trigger a one-wave GEMV's blocks are placed on the SMs
// while the GEMV before it still runs, unevenly (session 25's trace: the 7B q,k,v GEMV on v4, 384 blocks of 32 rows,
// had 0 blocks on 24 SMs and 4 on 84), which the plain chains never show: they picked v4 for q,k,v, and the 7B base
// decode ran 0.09 ms/token faster with q,k,v forced to v10 (session 26 run 2).
static bool g_tune_pdl = true;
void gemv_set_tune_pdl(bool on) { g_tune_pdl = on; }
// A plain shape takes v11 whenever it timed within kTunePreferTol of the fastest variant, not the fastest itself.
// Why (session 38, bench/results/2026-12-04-h200-session38/run6-lm-head): timed alone, several variants of a shape
// come within 1-3 % of each other and the pick changed from process to process (8B lm_head 128256x4096: v4, v5, v6 or
// v11; 7B gate,up: v10 or v11; 7B lm_head: v4, v10 or v11), while in the decode they differ more than that: forced
// into the 8B decode, lm_head on v4 / v11 took 4.158-4.168 ms/token and on v5 / v6 4.211-4.230; 7B processes whose
// gate,up drew v10 ran 0.03 ms slower than those on v11.  v11 is the one measured best in the decode for every 7B
// role (session 22's bench_roles; here: gate,up, and lm_head even).  gemv_set_tune_prefer(false) /
// LSW_CUDA_GEMV_PREFER=0 (read by the model): the fastest alone, as before.  LoRA launches are tuned as before.
static constexpr int kTunePreferred = 11;
static constexpr float kTunePreferTol = 0.03f;
static bool g_tune_prefer = true;
void gemv_set_tune_prefer(bool on) { g_tune_prefer = on; }
static int autotune_impl(int dtype, int rows, int cols, const void *const *Ws, const LoraEpilogue *eps, int nW,
                         const float *X, float *Y, cudaStream_t s, float *best_us) {
  if (rows <= 0 || cols <= 0 || nW <= 0 || !Ws || !X || !Y) return 0;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return 0;
  const int vec = dtype == LSW_DTYPE_F32 ? 4 : 8;
  for (int i = 0; i < nW; i++)
    if (!aligned16(Ws[i])) return 0;
  if (cols % vec != 0 || !aligned16(X)) return 0;  // scalar fallback: nothing to choose
  if (eps)
    for (int i = 0; i < nW; i++)
      if (eps[i].nseg <= 0 || !lora_vec_ok(dtype, eps[i])) return 0;  // thread-per-row epilogue: nothing to choose
  const size_t esz = dtype == LSW_DTYPE_F32 ? 4 : 2;
  const double mat_bytes = (double)rows * cols * esz;
  // passes so that one timed pass streams at least ~256 MB (weights not L2-resident between passes)
  int per_pass = nW;
  while ((double)per_pass * mat_bytes < 256e6 && per_pass < 64 * nW) per_pass += nW;
  const bool saved_pdl = g_pdl;
  g_pdl = g_tune_pdl && g_pdl;  // (see g_tune_pdl)
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
    if (e0) cudaEventDestroy(e0);
    g_pdl = saved_pdl;
    cudaGetLastError();
    return 0;
  }
  // the tuner tries v1..v<kAutoVariants> (LSW_CUDA_GEMV_MAX_VARIANT=N: v1..vN)
  int nv = std::min(gemv_variants(), kAutoVariants + 1);
  if (const char *ev = getenv("LSW_CUDA_GEMV_MAX_VARIANT"); ev && atoi(ev) > 0) nv = std::min(gemv_variants(), atoi(ev) + 1);
  std::vector<float> us(nv, 0.f);
  int best = 0;
  cudaError_t err = cudaSuccess;
  for (int v = 1; v < nv && err == cudaSuccess; v++) {
    auto pass = [&]() {
      for (int i = 0; i < per_pass && err == cudaSuccess; i++)
        err = gemv(dtype, Ws[i % nW], rows, cols, X, cols, 1, Y, rows, nullptr, false, eps ? &eps[i % nW] : nullptr, s,
                   v);
    };
    pass();  // warm-up (instruction cache, clocks)
    float bestv = 1e30f;
    for (int rep = 0; rep < 3 && err == cudaSuccess; rep++) {
      cudaEventRecord(e0, s);
      pass();
      cudaEventRecord(e1, s);
      if (cudaEventSynchronize(e1) != cudaSuccess) { err = cudaGetLastError(); break; }
      float ms = 0.f;
      cudaEventElapsedTime(&ms, e0, e1);
      bestv = std::min(bestv, ms * 1000.f / per_pass);
    }
    us[v] = bestv;
    if (err == cudaSuccess && (best == 0 || bestv < us[best])) best = v;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  g_pdl = saved_pdl;
  if (err != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const int fastest = best;
  if (!eps && g_tune_prefer && kTunePreferred < nv && best > 0 && us[kTunePreferred] > 0.f &&
      us[kTunePreferred] <= us[best] * (1.f + kTunePreferTol))
    best = kTunePreferred;
  if (best > 0) gemv_set_variant(dtype, rows, cols, best, eps != nullptr);
  if (best > kLoraAutoVariants && !eps) {  // LoRA launches of this shape: the best among v1..v<kLoraAutoVariants>
    int bl = 1;
    for (int v = 2; v <= kLoraAutoVariants && v < nv; v++)
      if (us[v] < us[bl]) bl = v;
    std::lock_guard<std::mutex> lk(g_tune_mu);
    g_tuned_lora_base[std::make_tuple(dtype, rows, cols)] = bl;
  }
  if (best_us && best > 0) *best_us = us[best];
  char line[512];
  int o = snprintf(line, sizeof line, "lswc: gemv%s %s %dx%d -> v%d (%.2f us, %.0f GB/s); tried", eps ? "+lora" : "",
                   dtype == LSW_DTYPE_F32 ? "f32" : dtype == LSW_DTYPE_F16 ? "f16" : "bf16", rows, cols, best,
                   best > 0 ? us[best] : 0.f, best > 0 ? mat_bytes / (us[best] * 1e-6) / 1e9 : 0.0);
  if (best != fastest && o < (int)sizeof line)
    o += snprintf(line + o, sizeof line - o, " (preferred: within %.0f %% of v%d)", 100.f * kTunePreferTol, fastest);
  for (int v = 1; v < nv && o < (int)sizeof line - 16; v++) o += snprintf(line + o, sizeof line - o, " v%d %.2f", v, us[v]);
  {
    std::lock_guard<std::mutex> lk(g_tune_mu);
    g_tune_report += line;
    g_tune_report += "\n";
  }
  if (cuda_verbose()) fprintf(stderr, "%s\n", line);
  return best;
}

int autotune_gemv(int dtype, int rows, int cols, const void *const *Ws, int nW, const float *X, float *Y,
                  cudaStream_t s, float *best_us) {
  return autotune_impl(dtype, rows, cols, Ws, nullptr, nW, X, Y, s, best_us);
}
int autotune_gemv_lora(int dtype, int rows, int cols, const void *const *Ws, const LoraEpilogue *eps, int nW,
                       const float *X, float *Y, cudaStream_t s, float *best_us) {
  if (!eps) return 0;
  return autotune_impl(dtype, rows, cols, Ws, eps, nW, X, Y, s, best_us);
}

}  // namespace lswc

namespace lswc {
int autotune_gemv_all(const GemvTuneItem *items, int n, const float *X, float *Y, cudaStream_t s) {
  if (!env_flag("LSW_CUDA_AUTOTUNE", true)) return 0;
  std::map<std::tuple<int, int, int>, std::vector<const void *>> groups;  // (dtype, rows, cols)
  std::vector<std::tuple<int, int, int>> order;
  for (int i = 0; i < n; i++) {
    if (!items[i].W || items[i].rows <= 0 || items[i].cols <= 0) continue;
    auto key = std::make_tuple(items[i].dtype, items[i].rows, items[i].cols);
    auto &g = groups[key];
    if (g.empty()) order.push_back(key);
    g.push_back(items[i].W);
  }
  int tuned = 0;
  for (auto &key : order) {
    const int dt = std::get<0>(key), rows = std::get<1>(key), cols = std::get<2>(key);
    if (gemv_tuned_variant(dt, rows, cols) > 0) { tuned++; continue; }
    auto &g = groups[key];
    const int v = autotune_gemv(dt, rows, cols, g.data(), (int)g.size(), X, Y, s);
    if (v > 0) tuned++;
  }
  return tuned;
}
}  // namespace lswc

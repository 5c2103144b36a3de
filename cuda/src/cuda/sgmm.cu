// SGMM (merge mode): for every adapted matrix of every layer, in ONE launch,
//   W = round( W0 + Σ_k g_k · (Σ_j B_k[:, j] A_k[j, :]) )      (fp32, from the pristine W0, rounded once)
// The grid is flattened over the tiles of all matrices; each block finds its matrix by binary search on
// SgmmDesc::tile0.  Two kinds of kernel: SIMT (any dtype/shape; the reference path) and tensor-core
// (F16/BF16, rank % 16 == 0, cols % 8 == 0), which stream W0 -> W.
// The SIMT kernel follows docs/FORMAT.md's arithmetic exactly (bit-identical to the CPU); the tensor-core one
// sums each expert's B·A on tensor cores (fp32 accumulate) into tmp_k and chains acc = fmaf(g_k, tmp_k, acc) from
// acc = float(W0), then W = round(acc): within 1 ulp (+ the fp32 accumulation bound of test_cuda) of it.  Until
// 2026-12-04 the chain started from 0 and W0 was added last (W = round(float(W0) + acc)): one more rounding, and in
// the top-1 epilogue a multiply and an add per element where the chain from W0 takes one FFMA.
//
// Tensor-core variants (sgmm_set_tc_variant / autotune_sgmm; 0, 1 and 3 give the same bits):
//   0 one-shot: one 64 x 128 tile per block.  H200, Llama-2-7B's 64 q,v weights (4096 x 4096 F16), r16 top-2:
//     3.05 ms = 33 % of copy bandwidth (W0 read + W write counted; cuBLAS batched rank-64 update: 1.64 ms, 62 %);
//     r64 top-1 2.73 ms (37 %), r64 top-2 3.90 ms (27 %).  Latency-bound: each block does a dependent binary
//     search, loads W0, then A/B, syncs, multiplies and stores, with little in flight.
//   1 persistent (~2 blocks per SM, next W0 tile in registers): 3.22 ms, no better.
//   2 exact register-tiled SIMT (FORMAT.md order, bit-identical to the CPU): 4.49 ms.
//   3 streaming (sgmm_tc_stream_kernel, below), designed for bandwidth: one persistent block per SM running one or
//     two 8-warp groups; each group walks a contiguous range of tiles, or since session 51 where the matrices come in
//     at most 4 runs of one shape and the LoRA-B re-reads are large (r64 top-2) the super-strips dealt out in rounds
//     (s3_segments: r64 top-2 64.4-65.7 -> 77.5-83.5 % of copy on three H100s) (per matrix: super-strips of up to 8 x 128
//     columns whose LoRA-A block stays in shared memory, row blocks in order, the super-strip's tiles side by side),
//     W0 and the tile's LoRA-B rows through a 2..8-stage cp.async pipeline, mma.sync on ldmatrix fragments with the
//     epilogue straight from registers, one group barrier per tile.  Same roundings as variant 0, so the same bits.
//     Measured (H200, 64 q,v weights 4096 x 4096 F16, W0 read + W write counted;
//     bench/results/2026-12-01-h200-session13): r16 top-2 1.17 ms = 86 % of copy (target >= 85 %), r64 top-1
//     1.22 ms = 84 % (cuBLAS batched rank-64 update: 1.66 ms, 62 %), r64 top-2 2.03 ms = 51 %.  Path there:
//     2.10 ms (48 %; WMMA, smem delta patch, ~8,300 warp instructions per tile: issue-bound) -> 1.56 ms (register
//     epilogue, division-free cursor: 4,170 per tile) -> 1.27 ms (per-matrix state instead of per-tile dependent
//     loads) -> 1.18 ms (super-strips: the LoRA-B rows of a matrix were re-read from DRAM once per 128-column strip,
//     12 % more bytes than W0 + W).  r64 top-1 1.30 -> 1.22 ms from unpadded, swizzled LoRA-B stage rows (s3_ldb),
//     which let it keep 4-strip super-strips.  r64 top-2 2.06 -> 1.69 ms (51 -> 61 %; session 18) from its LoRA-B copies
//     set up once per matrix: past 512 chunks they were addressed per tile (divisions by the rank, a dependent
//     expert-id load), a quarter of all its instructions.  Nsight Compute after it: r64 top-1 and top-2 both retire
//     ~490 M warp instructions per ms (issue active ~52 %: ~2 cycles of fixed-latency and 1.5-1.9 of shared-memory
//     waits per instruction, 4 warps per scheduler), and top-2's DRAM traffic (W0 + W + its LoRA-B rows read again
//     per strip: 6.5 GB) runs at 88 % of copy.  Dealing the tiles out in rounds, so that all groups share the B rows
//     in L2, did not measurably help (bench/results/2026-12-01-h200-session18).  The W stores addressed incrementally
//     (wq): 7 % fewer instructions, 1-2 % less time.
//     Session 26: top-1 launches take s3_top1_mma (both 16-row halves of a warp's block at once, each k-step's LoRA-A
//     fragments loaded once for both, the k-steps unrolled for ranks 16 / 32 / 64): r64 top-1 1.2466 -> 1.2160 / 1.2213
//     ms (82.4 -> 84.5 / 84.1 % of copy, interleaved in one harness process).  Tried in the same session and dropped: a
//     row block's LoRA-B rows staged once for the super-strip's tiles instead of per tile: no gain at r64 top-1 or r16
//     top-2, and the general consumer got slower (r64 top-2 1.69 -> 1.74 ms).
//     Session 46: top-1 launches run in 32-row half tiles (s3_top1_half, sgmm_tc_stream_half_kernel; S3_F_HALF, the
//     model's LSW_CUDA_SGMM_HALF=0 switches it off): half stages of 8 KB of W0 + 32 LoRA-B rows, so r64 keeps its 4-strip
//     super-strip with 4 stages (3 half tiles in flight) instead of 2 whole ones: on the H200 r64 top-1 84.2-84.5 ->
//     85.3-86.3 % of copy, r32 86.9-87.0 -> 89.7-89.9, r16 88.8-89.1 -> 90.0-90.5 (three harness processes).
//     History: the first H200 run was bit-identical wherever each group had one tile and died with
//     cudaErrorIllegalInstruction as soon as a group walked several (the L2 cache-hint copies inside the loop, most
//     likely a ptxas miscompile: see s3_cp16); without the hint it passes every harness test, memcheck clean.
//     Session 52 (bench/results/2026-12-06-h100-session52): r64 top-2 in lockstep reads its bytes once (Nsight Compute:
//     W0 + A + B from DRAM, no re-reads) and is bound by instruction latency (834 M warp instructions per launch, 48 %
//     issue, 7.9 cycles per instruction at 4 warps per scheduler); its k-steps unrolled (s3_expert_mma) 80.9-81.3 ->
//     82.4-82.9 % of copy on an H100; the producer's LoRA-B copies without row checks or zero fill in whole row blocks
//     (it was 26 % of the instructions, Nsight Compute source counters) 82.7-83.5 -> 84.8-85.8 % on another H100.
//     Tried and dropped there (topk-consumer.diff): both 16-row halves per expert in one
//     pass (4 instead of 6 ldmatrix per 8 MMAs): 64 accumulators spill at 128 registers, and with 227 KB of shared
//     memory the ~29 KB of L1 cannot hold 512 threads' stack frames: twice as slow.  A timing probe with a third of the
//     ldmatrix loads skipped gained <= 2 %.
//     Session 60-61: a top-2 consumer issuing both experts' k-steps side by side (8 independent MMA chains per k-step
//     instead of 4; code in commit 3a6bf32): bit-identical, but on an H100 r64 top-2 moved 79.5-82.3 % of copy against
//     the default's 83.4-84.1 % in the same processes (bench/results/2026-12-07-h100-session61): removed.  More MMA
//     chains in flight do not help.  Session 61: the wgmma consumer (s3_wg_*, below; sm_90a), the default where top_k x
//     max rank is 128: r64 top-2 81.3-85.9 -> 86.5-87.7 % of copy (H100s, interleaved, two runs of three processes),
//     same bits; its warps wait on memory and the group barrier rather than on shared-memory results.
//   Tried and dropped (session 33, bench/results/2026-12-04-h200-session33, diff kept there): L2 requests ahead of the
//     copies.  W0 tiles 1-8 ahead (bulk or per line) did not help: one tile ahead was even, and further ahead the lines were
//     evicted before use (DRAM reads +50 % at 4 tiles).  LoRA-B rows with evict_last did not survive to the next
//     super-strip (same DRAM bytes).  So the two-stage pipeline's latency is not what holds r64 top-1 at 84 %.
//   Nor is the tile geometry (session 36, bench/results/2026-12-04-h200-session36): the copy probe in tiles of 64 x 128
//     to 8 x 1024 (strip-major, super-strip or row-major order; sgmm_copy_probe_shape) moves 92.2-93.2 % of copy, so
//     256-byte row segments cost nothing; the old probe's 91.2 % is its own per-tile work (descriptor search, bounds checks).  With r64 top-1's
//     LoRA-B re-reads (+5.7 % bytes) that ceiling is ~88 %; the kernel reaches 84.1-84.5 %.
//   Tried and dropped (session 36 run 2, wide-group.diff there): ONE group of all 16 warps per SM (16 x 32 per warp), so
//     that r64 top-1 holds an 8-strip super-strip with 4 stages: bit-identical, but 58-72 % at r64 top-1 (default 83-84)
//     and 83 % at r16 top-2 (86.5): a single barrier domain has nothing to overlap its per-tile waits with.
//   Tried and dropped (session 46, bench/results/2026-12-05-h100-session46, w0-registers.diff there): top-1 launches
//     loading each lane's W0 bytes (the epilogue's rows lrow + 8 m) from global memory straight into registers, 2 or 3
//     tiles ahead, the stages holding only LoRA-B rows: bit-identical, but 59-64 % of copy against 87.5-89 % (H100).
//     In that layout a warp instruction covers 8 rows x 64 bytes; the copy probe's pattern 4 shows it costs 7 points alone.
//   Tried and removed (2026-12-01, H200 sessions 7-8; code in commits da7540e and a0ac119): a row-streaming kernel
//     (each warp streaming 32 rows along whole rows, raw mma.sync with permuted n-positions, no shared-memory
//     epilogue) at 2.67 ms, and a tile-streaming kernel (variant 3's walk with W0 in registers in the mma accumulator
//     layout) at 2.89 ms: both bit-identical to variant 0, both slower than variant 3, so they only cost autotune time.
#include "kernels.cuh"
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <type_traits>
#include <vector>

namespace lswc {
using namespace nvcuda;

constexpr int ST_R = 16, ST_C = 64;             // SIMT tile
constexpr int TC_R = 64, TC_C = 128, TC_J = 64;  // tensor-core tile (rows x cols), rank chunk

__device__ __forceinline__ int find_desc(const SgmmDesc *d, int n, int tile) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {  // last desc with tile0 <= tile
    const int mid = (lo + hi + 1) >> 1;
    if (d[mid].tile0 <= tile) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename T>
__global__ void __launch_bounds__(256) sgmm_simt_kernel(const SgmmDesc *__restrict__ descs, int n_descs, int top_k,
                                                        const int *__restrict__ experts,
                                                        const float *__restrict__ gates, const int *skip) {
  if (skip && *skip) return;
  const SgmmDesc d = descs[find_desc(descs, n_descs, blockIdx.x)];
  const int tiles_c = (d.cols + ST_C - 1) / ST_C;
  const int local = blockIdx.x - d.tile0;
  const int r0 = (local / tiles_c) * ST_R, c0 = (local % tiles_c) * ST_C;
  const T *W0 = static_cast<const T *>(d.W0);
  T *W = static_cast<T *>(d.W);
  const T *A = static_cast<const T *>(d.A);
  const T *B = static_cast<const T *>(d.B);
  for (int q = threadIdx.x; q < ST_R * ST_C; q += blockDim.x) {
    const int i = r0 + q / ST_C, c = c0 + q % ST_C;
    if (i >= d.rows || c >= d.cols) continue;
    // exactly the arithmetic of docs/FORMAT.md "SGMM arithmetic" (bit-identical to the CPU backend):
    // acc = W0; for k, r: c = g_k * B[k][i][r] (fp32, rounded); acc = fmaf(c, A[k][r][j], acc); round once
    const size_t o = (size_t)i * d.cols + c;
    float acc = Tr<T>::to_f(W0[o]);
    for (int k = 0; k < top_k; k++) {
      const int e = experts[d.slot * top_k + k];
      const float g = gates[d.slot * top_k + k] * d.scale;
      const T *b = B + ((size_t)e * d.rows + i) * d.rank;
      const T *a = A + (size_t)e * d.rank * d.cols + c;
      for (int j = 0; j < d.rank; j++) acc = fmaf(__fmul_rn(g, Tr<T>::to_f(b[j])), Tr<T>::to_f(a[(size_t)j * d.cols]), acc);
    }
    W[o] = Tr<T>::from_f(acc);
  }
}

// Variants 0 / 1: the block's W0 tile (thread tid holds rows (tid + 256 i) / 16, 16-byte column chunk tid % 16, as
// loaded) -> fp32 in `stage` (ld floats per row; it aliases the operand buffers, so barriers on both sides) -> the
// warp's accumulator fragments (rows wm*32 .., columns wn*32 ..): the fmaf chain of every tensor-core variant starts
// from W0 (see the top of this file).  Elements outside the matrix hold 0 (never stored).
template <typename T>
__device__ __forceinline__ void sgmm_w0_to_acc(const uint4 (&w0)[4], float *stage, int ld,
                                               wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&acc)[2][2],
                                               int tid, int wm, int wn) {
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int q = tid + i * 256;
    float f[8];
    unpack16<T>(w0[i], f);
    float4 *dst = reinterpret_cast<float4 *>(stage + (q >> 4) * ld + (q & 15) * 8);
    dst[0] = make_float4(f[0], f[1], f[2], f[3]);
    dst[1] = make_float4(f[4], f[5], f[6], f[7]);
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
      wmma::load_matrix_sync(acc[i][j], stage + (wm * 32 + i * 16) * ld + wn * 32 + j * 16, ld, wmma::mem_row_major);
  __syncthreads();
}

// Variants 0 / 1: a rank chunk of A and B in shared memory (padded rows); SLD: the fp32 stage's row stride
template <typename T> struct SgmmTcOps {
  static constexpr int ALD = TC_C + 8, BLD = TC_J + 8, SLD = TC_C + 4;
  T As[TC_J][ALD];
  T Bs[TC_R][BLD];
};
// their shared memory: the operands, or the fp32 stage that aliases them, whichever is larger
template <typename T>
constexpr int kSgmmTcSmem = sizeof(SgmmTcOps<T>) > sizeof(float) * TC_R * SgmmTcOps<T>::SLD
                                ? sizeof(SgmmTcOps<T>) : sizeof(float) * TC_R * SgmmTcOps<T>::SLD;

// Variants 0 / 1, the rest of a 64 x 128 tile after sgmm_w0_to_acc: acc = fmaf(g_k, B_k A_k, acc) per expert on
// tensor cores (per expert an fp32 partial over rank chunks of TC_J staged in `ops`), then acc -> `stage` (fp32; it
// aliases ops) -> W, rounded once, in 16-byte coalesced stores.  The caller puts a barrier between the stage reads at
// the end and any reuse of the shared memory.
template <typename T>
__device__ __forceinline__ void sgmm_tc_tile(const SgmmDesc &d, int r0, int c0, int top_k,
                                             const int *__restrict__ experts, const float *__restrict__ gates,
                                             SgmmTcOps<T> &ops, float *stage,
                                             wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&acc)[2][2],
                                             int tid, int wm, int wn) {
  constexpr int ALD = SgmmTcOps<T>::ALD, BLD = SgmmTcOps<T>::BLD, SLD = SgmmTcOps<T>::SLD;
  T *W = static_cast<T *>(d.W);
  const T *A = static_cast<const T *>(d.A);
  const T *B = static_cast<const T *>(d.B);
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> tmp[2][2];
  for (int k = 0; k < top_k; k++) {
    const int e = experts[d.slot * top_k + k];
    const float g = gates[d.slot * top_k + k] * d.scale;
    const T *Ae = A + (size_t)e * d.rank * d.cols;
    const T *Be = B + (size_t)e * d.rows * d.rank;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::fill_fragment(tmp[i][j], 0.f);
    for (int j0 = 0; j0 < d.rank; j0 += TC_J) {
      const int jc = min(TC_J, d.rank - j0);  // a multiple of 16 (sgmm_tc_ok)
      // A chunk [jc][128], 16 chunks of 8 per row (rows from jc on are not read: kk < jc below)
      for (int q = tid; q < jc * (TC_C / 8); q += 256) {
        const int j = q >> 4, cc = (q & 15) * 8, c = c0 + cc;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (c < d.cols) v = *reinterpret_cast<const uint4 *>(Ae + (size_t)(j0 + j) * d.cols + c);
        *reinterpret_cast<uint4 *>(&ops.As[j][cc]) = v;
      }
      // B chunk [64 rows][jc], 8 chunks of 8 per row
      for (int q = tid; q < TC_R * (TC_J / 8); q += 256) {
        const int r = q >> 3, jj = (q & 7) * 8, gr = r0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (jj < jc && gr < d.rows) v = *reinterpret_cast<const uint4 *>(Be + (size_t)gr * d.rank + j0 + jj);
        *reinterpret_cast<uint4 *>(&ops.Bs[r][jj]) = v;
      }
      __syncthreads();
      for (int kk = 0; kk < jc; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf[2];
#pragma unroll
        for (int i = 0; i < 2; i++) wmma::load_matrix_sync(af[i], &ops.Bs[wm * 32 + i * 16][kk], BLD);
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::load_matrix_sync(bf[j], &ops.As[kk][wn * 32 + j * 16], ALD);
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int j = 0; j < 2; j++) wmma::mma_sync(tmp[i][j], af[i], bf[j], tmp[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 2; j++)
#pragma unroll
        for (int t = 0; t < acc[i][j].num_elements; t++) acc[i][j].x[t] = fmaf(g, tmp[i][j].x[t], acc[i][j].x[t]);
  }
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
      wmma::store_matrix_sync(stage + (wm * 32 + i * 16) * SLD + wn * 32 + j * 16, acc[i][j], SLD, wmma::mem_row_major);
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int q = tid + i * 256, rr = q >> 4, cc = (q & 15) * 8, r = r0 + rr, c = c0 + cc;
    if (r < d.rows && c < d.cols) st_stream(W + (size_t)r * d.cols + c, pack16<T>(stage + rr * SLD + cc));
  }
}

template <typename T>
__global__ void __launch_bounds__(256, 2) sgmm_tc_kernel(const SgmmDesc *__restrict__ descs, int n_descs, int top_k,
                                                      const int *__restrict__ experts,
                                                      const float *__restrict__ gates, const int *skip) {
  if (skip && *skip) return;
  using Ops = SgmmTcOps<T>;
  constexpr int SLD = Ops::SLD;
  __shared__ __align__(128) unsigned char smem[kSgmmTcSmem<T>];
  Ops &ops = *reinterpret_cast<Ops *>(smem);
  float *stage = reinterpret_cast<float *>(smem);

  const SgmmDesc d = descs[find_desc(descs, n_descs, blockIdx.x)];
  const int tid = threadIdx.x, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;  // 2 x 4 warps, each 32 rows x 32 cols
  const int tiles_c = (d.cols + TC_C - 1) / TC_C;
  const int local = blockIdx.x - d.tile0;
  const int r0 = (local / tiles_c) * TC_R, c0 = (local % tiles_c) * TC_C;
  const T *W0 = static_cast<const T *>(d.W0);

  // 1. W0 tile -> registers -> fp32 in shared memory -> the accumulators (acc starts from W0: the fmaf chain below).
  //    Its HBM latency no longer overlaps the low-rank product, as it did while W0 was added last; this kernel is the
  //    autotuner's fallback, not the streaming path.
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  {
    uint4 w0[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int q = tid + i * 256, r = r0 + (q >> 4), c = c0 + (q & 15) * 8;
      w0[i] = (r < d.rows && c < d.cols) ? ld_stream(W0 + (size_t)r * d.cols + c) : make_uint4(0, 0, 0, 0);
    }
    sgmm_w0_to_acc<T>(w0, stage, SLD, acc, tid, wm, wn);
  }

  // 2. the experts' products, 3. the stores
  sgmm_tc_tile<T>(d, r0, c0, top_k, experts, gates, ops, stage, acc, tid, wm, wn);
}

// Persistent tensor-core variant (same 64x128 tiles and tile numbering as sgmm_tc_kernel, same arithmetic,
// so the same results bit for bit): a grid of ~2 blocks per SM walks the tiles with stride gridDim.x.
// What the first H200 run showed (33 % of copy) is latency, not bandwidth: every block of the one-shot
// kernel starts with a binary search of dependent global loads, then loads its W0 tile, then A/B, so little
// is in flight.  Here the tile0 table is staged once in shared memory (search without global loads) and the
// W0 tile of the NEXT tile is loaded into registers while the current tile's low-rank product and stores run.
constexpr int SG_MAXD = 512;

template <typename T>
__global__ void __launch_bounds__(256, 2) sgmm_tc_persist_kernel(const SgmmDesc *__restrict__ descs, int n_descs,
                                                              int total_tiles, int top_k,
                                                              const int *__restrict__ experts,
                                                              const float *__restrict__ gates, const int *skip) {
  using Ops = SgmmTcOps<T>;
  constexpr int SLD = Ops::SLD;
  __shared__ __align__(128) unsigned char smem[kSgmmTcSmem<T>];
  __shared__ int s_tile0[SG_MAXD];
  __shared__ int2 s_rc[SG_MAXD];             // rows, cols
  __shared__ const void *s_w0[SG_MAXD];      // pristine W0
  Ops &ops = *reinterpret_cast<Ops *>(smem);
  float *stage = reinterpret_cast<float *>(smem);
  const int tid = threadIdx.x, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;
  const bool in_smem = n_descs <= SG_MAXD;
  if (in_smem)
    for (int i = tid; i < n_descs; i += 256) {
      s_tile0[i] = descs[i].tile0;
      s_rc[i] = make_int2(descs[i].rows, descs[i].cols);
      s_w0[i] = descs[i].W0;
    }
  if (skip && *skip) return;  // uniform over the grid
  __syncthreads();
  auto find = [&](int tile) {
    if (!in_smem) return find_desc(descs, n_descs, tile);
    int lo = 0, hi = n_descs - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (s_tile0[mid] <= tile) lo = mid; else hi = mid - 1;
    }
    return lo;
  };
  // W0 tile of descriptor di: address from the shared copy (no dependent global load before the stream)
  auto load_w0 = [&](int di, int tile, uint4 (&w)[4]) {
    int rows, cols, t0;
    const T *W0;
    if (in_smem) { rows = s_rc[di].x; cols = s_rc[di].y; t0 = s_tile0[di]; W0 = static_cast<const T *>(s_w0[di]); }
    else { rows = descs[di].rows; cols = descs[di].cols; t0 = descs[di].tile0; W0 = static_cast<const T *>(descs[di].W0); }
    const int tiles_c = (cols + TC_C - 1) / TC_C;
    const int local = tile - t0;
    const int r0 = (local / tiles_c) * TC_R, c0 = (local % tiles_c) * TC_C;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int q = tid + i * 256, r = r0 + (q >> 4), c = c0 + (q & 15) * 8;
      w[i] = (r < rows && c < cols) ? ld_stream(W0 + (size_t)r * cols + c) : make_uint4(0, 0, 0, 0);
    }
  };
  int tile = blockIdx.x;
  if (tile >= total_tiles) return;
  int di = find(tile);
  uint4 w0[4];
  load_w0(di, tile, w0);
  int nxt = tile + gridDim.x;
  int dni = nxt < total_tiles ? find(nxt) : 0;
  while (tile < total_tiles) {
    // the next tile's W0 is issued first: in flight during this whole tile (A/B staging, product, stores)
    uint4 w0n[4];
    if (nxt < total_tiles) load_w0(dni, nxt, w0n);
    const SgmmDesc d = descs[di];
    const int tiles_c = (d.cols + TC_C - 1) / TC_C;
    const int local = tile - d.tile0;
    const int r0 = (local / tiles_c) * TC_R, c0 = (local % tiles_c) * TC_C;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    sgmm_w0_to_acc<T>(w0, stage, SLD, acc, tid, wm, wn);  // (the previous tile is done with the stage: loop end)
    sgmm_tc_tile<T>(d, r0, c0, top_k, experts, gates, ops, stage, acc, tid, wm, wn);
    __syncthreads();  // stage (aliases As/Bs) is read before the next tile overwrites it
    if (nxt < total_tiles) {
#pragma unroll
      for (int i = 0; i < 4; i++) w0[i] = w0n[i];
    }
    tile = nxt;
    di = dni;
    nxt = tile + gridDim.x;
    if (nxt < total_tiles) dni = find(nxt);
  }
}

// EXACT register-tiled SIMT kernel on the tensor-core tiling (64 x 128 tiles, sgmm_prepare(..., true)): the
// arithmetic of docs/FORMAT.md / sgmm_simt_kernel bit for bit (acc = W0; for k, for j: acc = fmaf(fl(g_k*B), A,
// acc); rounded once), but each thread owns 4 rows x 8 columns: W0 streams in as 16-byte vectors, c = g·B
// (fp32, rounded as the CPU does) and A (fp32) are staged per 16-rank chunk in shared memory, so one c float4
// (a broadcast) and two A float4 feed 32 FMAs.  ~34 GFMA for the 7B q,v r16 top-2 merge: near the memory time.
template <typename T>
__global__ void __launch_bounds__(256) sgmm_exact_tiled_kernel(const SgmmDesc *__restrict__ descs, int n_descs,
                                                               int top_k, const int *__restrict__ experts,
                                                               const float *__restrict__ gates, const int *skip) {
  if (skip && *skip) return;
  constexpr int KC = 16;
  __shared__ __align__(16) float as[KC][TC_C];   // A rows of the chunk, fp32
  __shared__ __align__(16) float cs[KC][TC_R];   // c = fl(g * B) of the chunk
  const SgmmDesc d = descs[find_desc(descs, n_descs, blockIdx.x)];
  const int tid = threadIdx.x, cv = tid & 15, rg = tid >> 4;  // 16 column vectors x 16 row groups
  const int tiles_c = (d.cols + TC_C - 1) / TC_C;
  const int local = blockIdx.x - d.tile0;
  const int r0 = (local / tiles_c) * TC_R, c0 = (local % tiles_c) * TC_C;
  const int col = c0 + cv * 8;
  const bool colok = col < d.cols;  // cols % 8 == 0 (sgmm_tc_ok): a vector is all in or all out
  const T *W0 = static_cast<const T *>(d.W0);
  T *W = static_cast<T *>(d.W);
  const T *A = static_cast<const T *>(d.A);
  const T *B = static_cast<const T *>(d.B);
  float acc[4][8];
#pragma unroll
  for (int r = 0; r < 4; r++) {
    const int row = r0 + rg * 4 + r;
    uint4 u = make_uint4(0, 0, 0, 0);
    if (row < d.rows && colok) u = ld_stream(W0 + (size_t)row * d.cols + col);
    unpack16<T>(u, acc[r]);
  }
  for (int k = 0; k < top_k; k++) {
    const int e = experts[d.slot * top_k + k];
    const float g = gates[d.slot * top_k + k] * d.scale;
    const T *Ae = A + (size_t)e * d.rank * d.cols;
    const T *Be = B + (size_t)e * d.rows * d.rank;
    for (int j0 = 0; j0 < d.rank; j0 += KC) {  // rank % 16 == 0
      __syncthreads();
      {  // A chunk: 16 rows x 128 cols = 256 vectors, one per thread
        const int j = tid >> 4, cc = (tid & 15) * 8;
        float f[8];
        uint4 u = make_uint4(0, 0, 0, 0);
        if (c0 + cc < d.cols) u = *reinterpret_cast<const uint4 *>(Ae + (size_t)(j0 + j) * d.cols + c0 + cc);
        unpack16<T>(u, f);
        *reinterpret_cast<float4 *>(&as[j][cc]) = make_float4(f[0], f[1], f[2], f[3]);
        *reinterpret_cast<float4 *>(&as[j][cc + 4]) = make_float4(f[4], f[5], f[6], f[7]);
      }
#pragma unroll
      for (int q = 0; q < 4; q++) {  // c chunk: 64 rows x 16 ranks
        const int idx = tid + q * 256, rr = idx >> 4, j = idx & 15, row = r0 + rr;
        const float b = row < d.rows ? Tr<T>::to_f(Be[(size_t)row * d.rank + j0 + j]) : 0.f;
        cs[j][rr] = __fmul_rn(g, b);
      }
      __syncthreads();
#pragma unroll 4
      for (int j = 0; j < KC; j++) {
        const float4 c4 = *reinterpret_cast<const float4 *>(&cs[j][rg * 4]);
        const float4 a0 = *reinterpret_cast<const float4 *>(&as[j][cv * 8]);
        const float4 a1 = *reinterpret_cast<const float4 *>(&as[j][cv * 8 + 4]);
        const float cr[4] = {c4.x, c4.y, c4.z, c4.w};
        const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
          for (int q = 0; q < 8; q++) acc[r][q] = fmaf(cr[r], av[q], acc[r][q]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 4; r++) {
    const int row = r0 + rg * 4 + r;
    if (row < d.rows && colok) st_stream(W + (size_t)row * d.cols + col, pack16<T>(acc[r]));
  }
}

// ---- variant 3: streaming tensor-core kernel (bandwidth design) ------------------------------------------------
// Same 64 x 128 tiles (same tile count as sgmm_prepare(..., true)), same per-element arithmetic as sgmm_tc_kernel:
// 16-bit fragments on tensor cores, per expert an fp32 partial `tmp` accumulated over the rank in ascending 16-steps
// (m16n8k16; WMMA's 16x16x16 is two of them), acc = fmaf(g_k, tmp, acc) in expert order from acc = float(W0), then
// W = round(acc).  Which warp computes a block, where the operands sit in shared memory and how the rank is
// chunked do not change a single rounding, so the output is bit-identical to variant 0 (the harness and autotune_sgmm
// check it).
//
// Work: a persistent grid of ONE block per SM (512 threads, all of the opt-in shared memory); the block runs one or
// two independent GROUPS of 8 warps (named barriers 1/2, no __syncthreads after the prologue).  Two groups per SM
// overlap one group's barrier waits / MMA with the other's; one group gets the whole smem when the operands are
// big.  The choice is made in the kernel (s3_plan) because the host launcher only holds device descriptors and
// cannot see the ranks (graph-safe: no host read-back).  Equivalent to "2 blocks per SM", decided per launch.
// Each group owns a contiguous range of the tiles.  "Resident" mode (s3_resident, the usual one): LoRA A of a
// super-strip (all selected experts and ranks, S 128-column strips) is staged once in shared memory, W0 tiles and
// their LoRA-B rows stream through NS stages (NS-1 tiles in flight while the current one runs on tensor cores), each
// warp's 32 x 32 block is computed as two 16-row halves and written from registers (16-byte streaming stores).
// Stage rows are XOR-swizzled (16-byte chunk ^= (row & 1) << 2) so the lanes' 16-byte W0 reads are conflict-free.
// "Chunked" mode (s3_chunked; top_k·rank too large for resident A + 2 stages, e.g. rank 128 top-3): plain strip-major
// order, W0 through the stages, A and B loaded per tile in 64-rank chunks (synchronously, like variant 0), WMMA with a
// per-warp fp32 smem patch: compute-bound shapes.
constexpr int S3_R = 64, S3_C = 128;            // tile: rows x cols (= TC_R x TC_C)
constexpr int S3_ALD = S3_C + 8;                // A rows in smem (T): 272 bytes, conflict-free fragment loads
constexpr int S3_DLD = 36;                      // per-warp fp32 delta patch [16][36]
constexpr int S3_DELTA = 8 * 16 * S3_DLD * 4;   // 8 warps: 18432 bytes
constexpr int S3_W0 = S3_R * S3_C * 2;          // one W0 tile: 16384 bytes
constexpr int S3_KC = 64;                       // chunked mode: ranks per chunk
constexpr int S3_MAXNS = 8;                     // at most 8 stages (7 tiles = 112 KB of W0 in flight per group)
constexpr int S3_HDR = 256;                     // block header in dynamic smem (max rank, shape runs, the groups' schedules)
constexpr int S3_RUNS = 4;                      // lockstep: at most this many runs of same-shape matrices (s3_max_rank)
constexpr int S3_SEGS = 14;                     // a group's schedule in the header: up to 13 segments and a sentinel
// the block header's words (s3_max_rank): [0] max rank, [1] shape runs, [2, 2 + S3_RUNS) their first descriptors,
// [S3_HDR_OK] every descriptor has tiles; then from byte S3_HDR_SEGS each group's schedule (s3_segments)
constexpr int S3_HDR_OK = 2 + S3_RUNS, S3_HDR_SEGS = 32;
static_assert((S3_HDR_OK + 1) * 4 <= S3_HDR_SEGS && S3_HDR_SEGS + 2 * S3_SEGS * 8 <= S3_HDR, "the block header's layout");
constexpr int S3_GATES = 64;                    // resident mode: the slot's gates in shared memory (top_k <= 64)
constexpr int S3_F_TOP1 = 1;                    // kernel flag: the top-1 consumer (s3_top1_mma; sgmm_set_stream_top1)
constexpr int S3_F_HALF = 2;                    // top-1 launches in half tiles (s3_top1_half; sgmm_set_stream_half)
constexpr int S3_F_LOCK = 4;                    // lockstep rounds where they pay (s3_lock_pays; sgmm_set_stream_lock)
constexpr int S3_F_LOCK_ALL = 8;                // lockstep rounds wherever the matrices have one shape (tests, A-B runs)
constexpr int S3_F_WG = 16;                     // the wgmma consumer (s3_wg_*; sgmm_set_stream_wgmma; sm_90a builds) ...
constexpr int S3_F_WG64 = 32;                   // ... where top_k * max rank is 128, and with this flag 64 as well
// sgmm_tc_stream_kernel's WG instances: 0 the mma.sync consumer, 1 the wgmma one; F16 timing-only diagnostics of the
// wgmma one (sgmm_set_stream_diag; wrong results): 2 no products (W = W0), 3 no LoRA-B copies (products of stale stages)
constexpr int S3_WG_NOMMA = 2, S3_WG_NOB = 3;
constexpr int S3_BU = 4;                        // resident mode: 16-byte LoRA-B copies per thread set up per matrix
// smallest dynamic smem the launcher accepts: two groups in chunked mode with 2 stages each
constexpr int S3_MIN_SMEM = S3_HDR + 2 * (S3_KC * S3_ALD * 2 + S3_R * (S3_KC + 8) * 2 + S3_DELTA + 2 * S3_W0);

struct S3Plan { int groups, ns, resident, per, strip; };
// resident mode: the A block of `strip` 128-column strips (one "super-strip") is held at a time: row stride
__host__ __device__ inline int s3_alds(int strip) { return strip * S3_C + 8; }
// resident mode: row stride (elements) of a stage's B rows for K = top_k * max rank: K itself when it is a power of
// two (16-byte chunks XOR-swizzled per row, s3_bswz: conflict-free ldmatrix without padding, which is what lets r64
// top-1 keep a 4-strip super-strip with two groups), else K + 8 (padded, no swizzle)
__host__ __device__ inline int s3_ldb(int ktm) { return (ktm & (ktm - 1)) == 0 ? ktm : ktm + 8; }
// the swizzle: physical chunk = chunk ^ ((row >> sh) & mask); 8 consecutive rows at one chunk hit 8 distinct 16-byte
// bank groups (rows of 32, 64 and >= 128 bytes)
struct S3Bswz { int sh, mask; };
__host__ __device__ inline S3Bswz s3_bswz(int ktm) {
  if ((ktm & (ktm - 1)) != 0) return S3Bswz{0, 0};
  return ktm >= 64 ? S3Bswz{0, 7} : ktm == 32 ? S3Bswz{1, 3} : S3Bswz{2, 1};
}
// stages that fit in `per` bytes with all K = top_k * max rank resident (gates; A: K rows of the super-strip; stage:
// W0 + B[64][K+8])
__host__ __device__ inline int s3_res_ns(int per, int ktm, int strip) {
  const long long n = (long long)per - S3_GATES * 4 - (long long)ktm * s3_alds(strip) * 2;
  return n <= 0 ? 0 : (int)(n / (S3_W0 + 128LL * s3_ldb(ktm)));
}
__host__ __device__ inline int s3_chunk_ns(int per) {
  const int n = per - S3_KC * S3_ALD * 2 - S3_R * (S3_KC + 8) * 2 - S3_DELTA;
  return n <= 0 ? 0 : n / S3_W0;
}
// groups (1/2), super-strip width (8/4/2/1 strips) and stages for a launch with `smem` dynamic bytes and K = top_k *
// max rank.  Resident mode: two groups if they fit with >= 2 stages each, else one; the widest super-strip that
// leaves >= 2 stages.  Why: on the H200 two groups of 2 stages beat one group of 5 (2.28 vs 3.07 ms, 7B q,v r64 top-2)
// and the stage count hardly matters, while a narrow strip makes every matrix's LoRA-B rows be read once per strip:
// L2 does not keep them across a strip (the W0/W stream in between is hundreds of MB), so with 128-column strips the
// r16 top-2 merge moved 12 % more DRAM bytes than W0 + W (Nsight Compute, H200 session 13 run 3).  cfg_groups /
// cfg_strip 0: auto; cfg_maxst 0: S3_MAXNS.  Chunked mode when nothing resident fits.  ns < 2: not runnable.
__host__ __device__ inline S3Plan s3_plan(int smem, int ktm, int cfg_groups, int cfg_maxst, int cfg_strip) {
  const int maxst = cfg_maxst >= 2 && cfg_maxst <= S3_MAXNS ? cfg_maxst : S3_MAXNS;
  const bool fs = cfg_strip == 1 || cfg_strip == 2 || cfg_strip == 4 || cfg_strip == 8;
  S3Plan p{1, 0, 0, 0, 1};
  for (int g = 2; g >= 1 && !p.resident; g--) {
    if ((cfg_groups == 1 || cfg_groups == 2) && g != cfg_groups) continue;
    p.groups = g;
    p.per = ((smem - S3_HDR) / g) & ~127;
    for (int st = 8; st >= 1; st >>= 1) {
      if (fs && st != cfg_strip) continue;
      const int ns = s3_res_ns(p.per, ktm, st);
      if (ns >= 2) { p.resident = 1; p.ns = ns; p.strip = st; break; }
    }
  }
  if (!p.resident) { p.strip = 1; p.ns = s3_chunk_ns(p.per); }
  if (p.ns > maxst) p.ns = maxst;
  return p;
}

__device__ __forceinline__ uint32_t s3_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
// 16-byte async copy global -> shared; ok == false: zero fill (no global read).
// NO `.L2::cache_hint` with a `createpolicy` policy here: the first version streamed W0 with
// createpolicy.fractional.L2::evict_first + cp.async.cg...L2::cache_hint, and every H200 launch in which a group copied
// inside its main loop (a group with >= 2 tiles) died with cudaErrorIllegalInstruction, while groups of one tile (all
// of their copies issued before the loop) passed bit-identical.  That pattern matches a ptxas miscompile of this very
// pair reported for sm_90 / sm_100 with ptxas 12.8, 13.1 and 13.3 (fixed in 13.4; this tree builds with 13.0): the
// LDGSTS reads its L2 descriptor from a uniform register that ptxas never materialises and the hardware traps decoding
// it (Marlin and Triton dropped the hint).  The hint was only a performance nicety (W0 is read once), so it is gone
// for every toolkit.
__device__ __forceinline__ void s3_cp16(uint32_t dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
// the same copy with no zero-fill operand (the source exists)
__device__ __forceinline__ void s3_cp16f(uint32_t dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void s3_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// wait until at most n of this thread's groups are pending (n: 0..S3_MAXNS-2, an immediate in PTX).  A compare chain,
// not a switch: ptxas made the switch a jump table (constant-bank load, indirect branch: ~9 instructions per tile), and
// the resident plans that matter run 2 stages (n = 0: r64 top-2) or few more.
__device__ __forceinline__ void s3_wait(int n) {
  if (n <= 0) asm volatile("cp.async.wait_group 0;" ::: "memory");
  else if (n == 1) asm volatile("cp.async.wait_group 1;" ::: "memory");
  else if (n == 2) asm volatile("cp.async.wait_group 2;" ::: "memory");
  else if (n == 3) asm volatile("cp.async.wait_group 3;" ::: "memory");
  else if (n == 4) asm volatile("cp.async.wait_group 4;" ::: "memory");
  else if (n == 5) asm volatile("cp.async.wait_group 5;" ::: "memory");
  else if (n == 6) asm volatile("cp.async.wait_group 6;" ::: "memory");
  else asm volatile("cp.async.wait_group 0;" ::: "memory");
}
// barrier of one 8-warp group (ids 1, 2; 0 is __syncthreads); orders shared memory like __syncthreads
// (barrier.sync, the non-.aligned form: no assumption that the warp is converged when it arrives; ptxas adds the
// warp sync itself.  Every warp of the group executes the same sequence of group barriers: every condition around
// them -- range, descriptor, strip, rank chunk -- is uniform over the group.)
__device__ __forceinline__ void s3_bar(int id) { asm volatile("barrier.sync %0, 256;" ::"r"(id) : "memory"); }

using S3Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Ranks kg in [kb, ke) of the concatenated K (expert k = kg / rank, j = kg % rank) into this warp's 32 x 32 block:
// Bop holds B rows (tile row, K column kg - kbase, stride ldb), Aop holds A rows (K row kg - kbase, stride S3_ALD).
// tmp restarts at each expert's first 16 ranks; acc = fmaf(g_k, tmp, acc) after its last: variant 0's order (acc
// starts as float(W0)).
template <typename T>
__device__ __forceinline__ void s3_mma(S3Acc (&acc)[2][2], S3Acc (&tmp)[2][2], const T *Bop, int ldb, const T *Aop,
                                       int kbase, int kb, int ke, int rank, const float *gsl, float gsc, int wm,
                                       int wn) {
#pragma unroll 1
  for (int kg = kb; kg < ke; kg += 16) {
    const int k = kg / rank, j = kg - k * rank;
    if (j == 0) {
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int jj = 0; jj < 2; jj++) wmma::fill_fragment(tmp[i][jj], 0.f);
    }
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af[2];
#pragma unroll
    for (int i = 0; i < 2; i++) wmma::load_matrix_sync(af[i], Bop + (wm * 32 + i * 16) * ldb + (kg - kbase), ldb);
#pragma unroll
    for (int jj = 0; jj < 2; jj++) {  // one B-operand fragment live at a time (register budget: 128 at 512 threads)
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf;
      wmma::load_matrix_sync(bf, Aop + (kg - kbase) * S3_ALD + wn * 32 + jj * 16, S3_ALD);
#pragma unroll
      for (int i = 0; i < 2; i++) wmma::mma_sync(tmp[i][jj], af[i], bf, tmp[i][jj]);
    }
    if (j + 16 == rank) {
      const float g = gsl[k] * gsc;
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int jj = 0; jj < 2; jj++)
#pragma unroll
          for (int t = 0; t < acc[i][jj].num_elements; t++) acc[i][jj].x[t] = fmaf(g, tmp[i][jj].x[t], acc[i][jj].x[t]);
    }
  }
}

// A rows kb .. kb+n-1 of the concatenated K, columns c0 .. c0+127 -> dst[n][S3_ALD] (synchronous; zero past cols)
template <int NB, typename T>
__device__ __forceinline__ void s3_load_a(T *dst, const T *A, const int *esl, int rank, int cols, int c0, int kb, int n,
                                          int gt) {
  const int nvec = n * 16;
  for (int q0 = gt; q0 < nvec; q0 += NB * 256) {
    uint4 v[NB];
#pragma unroll
    for (int u = 0; u < NB; u++) {
      const int q = q0 + u * 256;
      v[u] = make_uint4(0, 0, 0, 0);
      if (q < nvec) {
        const int r = q >> 4, c = c0 + (q & 15) * 8, kg = kb + r, k = kg / rank, j = kg - k * rank;
        if (c < cols) v[u] = __ldg(reinterpret_cast<const uint4 *>(A + ((size_t)esl[k] * rank + j) * cols + c));
      }
    }
#pragma unroll
    for (int u = 0; u < NB; u++) {
      const int q = q0 + u * 256;
      if (q < nvec) *reinterpret_cast<uint4 *>(dst + (q >> 4) * S3_ALD + (q & 15) * 8) = v[u];
    }
  }
}
// B rows r0 .. r0+63, concatenated K columns kb .. kb+n-1 -> dst[64][ldb] (synchronous; zero past rows)
template <int NB, typename T>
__device__ __forceinline__ void s3_load_b(T *dst, int ldb, const T *B, const int *esl, int rank, int rows, int r0,
                                          int kb, int n, int gt) {
  const int nvr = n >> 3, nvec = S3_R * nvr;
  for (int q0 = gt; q0 < nvec; q0 += NB * 256) {
    uint4 v[NB];
#pragma unroll
    for (int u = 0; u < NB; u++) {
      const int q = q0 + u * 256;
      v[u] = make_uint4(0, 0, 0, 0);
      if (q < nvec) {
        const int r = q / nvr, kg = kb + (q - r * nvr) * 8, k = kg / rank, j = kg - k * rank, row = r0 + r;
        if (row < rows) v[u] = __ldg(reinterpret_cast<const uint4 *>(B + ((size_t)esl[k] * rows + row) * rank + j));
      }
    }
#pragma unroll
    for (int u = 0; u < NB; u++) {
      const int q = q0 + u * 256;
      if (q < nvec) {
        const int r = q / nvr;
        *reinterpret_cast<uint4 *>(dst + r * ldb + (q - r * nvr) * 8) = v[u];
      }
    }
  }
}

// ---- resident path: raw m16n8k16 fragments, epilogue from registers -------------------------------------------------
// Session 11's Nsight Compute profile of the first streaming kernel (WMMA fragments, a per-warp fp32 smem patch in the
// epilogue, integer divisions per tile) counted ~8,300 warp instructions per 64 x 128 tile: issue-bound at 48 % of
// copy.  This path does the same arithmetic with ~3,400-4,200 (session 13):
// - a division-free tile cursor (S3Cur) for the producer and the consumer, 16-byte copies addressed incrementally;
// - LoRA B rows of a tile are contiguous per expert (rows r0 .. r0+63 of B_e, rank elements each): one or two
//   16-byte copies per thread whose sources are computed once per matrix (more only when top_k * rank > 64);
// - mma.sync m16n8k16 on ldmatrix fragments; LoRA A's strip is staged with its 32-bit words transposed in 4 x 4 groups
//   (shared-memory word 4j + v of every 16-word group holds word 4v + j of the row), so n-block j's accumulator at
//   column positions 2q, 2q+1 belongs to columns 8q + 2j, 8q + 2j + 1: lane q of a row holds 8 consecutive columns,
//   and the epilogue reads W0 (16 bytes from the stage) and stores W (16 bytes) straight from its registers;
// - per expert, tmp starts from a zero accumulator operand (no per-element zeroing) and acc = fmaf(g, tmp, acc) with the
//   first expert's acc float(W0) from the stage: the one-shot kernel's roundings, hence its bits.
// Each warp computes its 32 x 32 block as two 16-row halves (16 acc + 16 tmp registers live).
template <typename T>
__device__ __forceinline__ void s3_hmma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<T, __half>::value)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// c = A B (zero accumulator operand)
template <typename T>
__device__ __forceinline__ void s3_hmma0(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const float z = 0.f;
  if constexpr (std::is_same<T, __half>::value)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
        : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(z));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
        : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(z));
}
// ldmatrix x4 (A operand) / x4.trans (B operand) from a shared-memory address.  volatile: never moved across the group
// barriers (also volatile asm) that publish the stage and the strip.
__device__ __forceinline__ void s3_ldsm(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void s3_ldsm_t(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// Top-1 resident consumer (s3_resident, flag S3_F_TOP1): with one expert, W = round(fmaf(g, tmp, W0)) needs no second
// accumulator, so a warp holds both 16-row halves of its 32 x 32 block at once (32 fp32 registers, as acc + tmp of one
// half did) and loads each k-step's LoRA-A fragments (b0, b1) once for both halves instead of once per half: per tile
// and warp 4 instead of 6 ldmatrix.x4 per k-step, and with KS (= rank / 16) a compile-time constant the k-steps
// unroll, so ptxas can issue the next step's fragment loads under this step's MMAs.  Same products in the same order
// (ascending 16-rank steps from a zero accumulator), hence the same bits.  aop / aop16: the halves' B rows (row wm*32,
// wm*32 + 16) in the stage; bop: this lane's LoRA-A fragment address (strip si); ach(kk): K column kk's swizzled chunk.
template <typename T, int KS>
__device__ __forceinline__ void s3_top1_mma(float (&c)[2][4][4], uint32_t aop, uint32_t aop16, uint32_t bop, int alds,
                                            int a_hi, int a_sw, int ks_rt) {
  auto step = [&](int s, bool first) {
    const int kk = s * 16;
    const uint32_t ach = (uint32_t)((((kk >> 3) + a_hi) ^ a_sw) << 4);
    uint32_t a0[4], a1[4], b0[4], b1[4];
    s3_ldsm_t(bop + kk * alds * 2, b0);
    s3_ldsm_t(bop + kk * alds * 2 + 32, b1);
    s3_ldsm(aop + ach, a0);
    s3_ldsm(aop16 + ach, a1);
    auto mma = [&](float (&acc)[4], const uint32_t (&a)[4], uint32_t x, uint32_t y) {
      if (first) s3_hmma0<T>(acc, a, x, y);  // (first is a constant once step is inlined)
      else s3_hmma<T>(acc, a, x, y);
    };
    mma(c[0][0], a0, b0[0], b0[1]);
    mma(c[0][1], a0, b0[2], b0[3]);
    mma(c[0][2], a0, b1[0], b1[1]);
    mma(c[0][3], a0, b1[2], b1[3]);
    mma(c[1][0], a1, b0[0], b0[1]);
    mma(c[1][1], a1, b0[2], b0[3]);
    mma(c[1][2], a1, b1[0], b1[1]);
    mma(c[1][3], a1, b1[2], b1[3]);
  };
  step(0, true);
  if constexpr (KS > 0) {
#pragma unroll
    for (int s = 1; s < KS; s++) step(s, false);
  } else {
#pragma unroll 1
    for (int s = 1; s < ks_rt; s++) step(s, false);
  }
}

// One 16-rank k-step of the general consumer (s3_expert_mma): K columns kk .. kk + 15 of one expert into
// tmp, the four n8 blocks of a 16-row half; first: from a zero accumulator operand.
template <typename T>
__device__ __forceinline__ void s3_kstep(float (&tmp)[4][4], uint32_t aop, uint32_t bop, int alds, int a_hi, int a_sw,
                                         int kk, bool first) {
  uint32_t a[4], b0[4], b1[4];
  s3_ldsm(aop + (uint32_t)((((kk >> 3) + a_hi) ^ a_sw) << 4), a);
  s3_ldsm_t(bop + kk * alds * 2, b0);
  s3_ldsm_t(bop + kk * alds * 2 + 32, b1);
  if (first) {  // (a constant once inlined)
    s3_hmma0<T>(tmp[0], a, b0[0], b0[1]);
    s3_hmma0<T>(tmp[1], a, b0[2], b0[3]);
    s3_hmma0<T>(tmp[2], a, b1[0], b1[1]);
    s3_hmma0<T>(tmp[3], a, b1[2], b1[3]);
  } else {
    s3_hmma<T>(tmp[0], a, b0[0], b0[1]);
    s3_hmma<T>(tmp[1], a, b0[2], b0[3]);
    s3_hmma<T>(tmp[2], a, b1[0], b1[1]);
    s3_hmma<T>(tmp[3], a, b1[2], b1[3]);
  }
}

// The general consumer's product of one expert for one 16-row half (s3_resident): K columns kb .. kb + 16 KS - 1 (KS 0:
// ks_rt steps) in ascending 16-steps from a zero accumulator, as the one-shot kernel sums them.  With KS a compile-time
// constant the steps unroll with no loop control: the runtime loop took ~10 instructions a step, and r64 top-2 is bound
// by instruction latency (Nsight Compute, session 52: 834 M warp instructions per launch, issue 48 % busy with 7.9
// cycles per instruction, mostly fixed-latency and shared-memory waits).  r64 top-2 80.9-81.3 -> 82.4-82.9 % of copy
// (H100, three alternating processes), r16 top-2 even.  The half-tile kernel's s3_top1_mma16 is the same product with
// kb = 0 and another load order; one function for both made ptxas spill 44-92 bytes here (fatal in this kernel: see
// the session 52 note in docs/PERF-LOG.md), so they stay apart.
template <typename T, int KS>
__device__ __forceinline__ void s3_expert_mma(float (&tmp)[4][4], uint32_t aop, uint32_t bop, int alds, int a_hi,
                                              int a_sw, int kb, int ks_rt) {
  auto step = [&](int s, bool first) { s3_kstep<T>(tmp, aop, bop, alds, a_hi, a_sw, kb + s * 16, first); };
  step(0, true);
  if constexpr (KS > 0) {
#pragma unroll
    for (int s = 1; s < KS; s++) step(s, false);
  } else {
    for (int s = 1; s < ks_rt; s++) step(s, false);
  }
}

// A rows of a super-strip, 16 bytes at a time: K rows, row r of the block being row arow(r) of A (the caller's expert /
// rank mapping), S 128-column strips from column cb, zero past cols; put(row, chunk, v) stores chunk `chunk` (of the
// S * 16 per row) of block row `row` in the caller's layout.  Four loads in flight per thread.  Synchronous; the
// caller's group barrier publishes the block.
template <typename T, typename RowF, typename PutF>
__device__ __forceinline__ void s3_stage_rows(const T *A, int K, int cols, int cb, int S, int gt, RowF arow, PutF put) {
  const int vs = __ffs(S) + 3;  // log2 of the 16-byte chunks per A row of the block (S * 16)
  const int nvec = K << vs;
  for (int q0 = gt; q0 < nvec; q0 += 4 * 256) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
      const int qq = q0 + u * 256, row = qq >> vs, c = cb + (qq & ((S << 4) - 1)) * 8;
      v[u] = make_uint4(0u, 0u, 0u, 0u);
      if (qq < nvec && c < cols) v[u] = __ldg(reinterpret_cast<const uint4 *>(A + arow(row) * cols + c));
    }
#pragma unroll
    for (int u = 0; u < 4; u++) {
      const int qq = q0 + u * 256;
      if (qq < nvec) put(qq >> vs, qq & ((S << 4) - 1), v[u]);
    }
  }
}
// ... into the resident block As (32-bit words, alds / 2 per row), each 16-byte chunk's words transposed in 4 x 4
// groups so that a lane's accumulator columns come out contiguous (see the resident path's notes)
template <typename T, typename RowF>
__device__ __forceinline__ void s3_stage_a(uint32_t *As, int alds, const T *A, int K, int cols, int cb, int S, int gt,
                                           RowF arow) {
  s3_stage_rows(A, K, cols, cb, S, gt, arow, [&](int row, int vv, const uint4 &v) {
    uint32_t *dst = As + row * (alds / 2) + (vv >> 2) * 16 + (vv & 3);
    dst[0] = v.x;
    dst[4] = v.y;
    dst[8] = v.z;
    dst[12] = v.w;
  });
}

// ---- the wgmma consumer of resident mode (flag S3_F_WG, sm_90a builds; session 61) --------------------------------
// Why: r64 top-2 is bound by its instructions, not by memory (session 52: 48 % issue at 4 warps per scheduler; session
// 60: 1.64-1.66 ms on an H200, as on the H100s, i.e. 63 % of the H200's copy rate).  Per warp and tile its mma.sync
// products take ~110 instructions (4 k-steps x 2 halves x 2 experts x 3 ldmatrix + 4 HMMA, plus addressing) of ~650.
// A warpgroup's wgmma reads both operands from shared memory through descriptors: one instruction per 64 x 32 x 16
// step, no fragment loads, and it runs asynchronously, so the W0 reads of the epilogue overlap the second expert.
// Measured (H100s, session 61, bench/results/2026-12-07-h100-session61): r64 top-2 81.3-85.9 -> 86.5-87.7 % of copy,
// the same bits; Nsight Compute: 2.6 % fewer warp instructions, and the warps wait on memory and the group barrier
// instead of shared-memory results.  At K = 64 (r32 top-2, r64 top-1 in whole tiles) 0.4-0.8 points slower, so the
// default takes K = 128 only (s3_wg_takes).
// Layout in this mode (ktm = top_k * max rank = 64 or 128: whole 128-byte K blocks):
// - a warpgroup (warps 0-3 or 4-7 of the group) computes all 64 rows of the tile and 64 of its 128 columns, in two
//   passes of 32 columns (m64n32k16: 16 fp32 registers per expert product; m64n64k16, 32 per product, spilled 132
//   bytes at the kernel's 128 registers); each expert's product from zero into its own registers, and the epilogue
//   chains acc = fmaf(g_k, tmp_k, acc) from float(W0) as every other consumer does;
// - the stage's LoRA-B rows (wgmma's A operand, K-major) in 8 KB blocks of 64 K columns, 128 bytes per tile row, the
//   16-byte chunks XOR-swizzled by row % 8: the 128-byte swizzle, so a descriptor's start address walks K in 32-byte
//   steps inside a block (s3_wg_boff);
// - the super-strip's LoRA-A block (wgmma's B operand, N-major: imm-trans-b) as N-blocks of 32 columns, each K row of
//   a block 64 bytes, 8-row groups 512 bytes apart, chunks swizzled by (K row / 2) % 4 (the 64-byte swizzle); inside
//   each block the 32-bit words transposed 4 x 4 as in s3_stage_a, so that a lane's accumulator columns come out as 8
//   consecutive columns (s3_wg_stage_a);
// - both regions 1024-byte aligned (the swizzle patterns repeat every 1 KB / 512 bytes): the A block starts at the
//   first 1 KB boundary after the gates, which the resident plan's padded rows (16 bytes per K row, >= 1 KB at
//   ktm >= 64) pay for.
// Shared-memory writes reach wgmma (the async proxy) through fence.proxy.async before the group barrier.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LSW_S3_WG 1
#else
#define LSW_S3_WG 0
#endif
// the launches that take it (ktm = top_k * max rank: whole 64-column K blocks): 128, or 64 with S3_F_WG64 (the host's
// choice of kernel and the kernel's own check)
__host__ __device__ constexpr bool s3_wg_takes(int ktm, int flags) { return ktm == 128 || (ktm == 64 && (flags & S3_F_WG64)); }
// stage byte offset (from the B region) of tile row r, K chunk c (K columns 8c .. 8c + 7)
__device__ __forceinline__ uint32_t s3_wg_boff(int r, int c) {
  return (uint32_t)(((c >> 3) << 13) + (r << 7) + (((c & 7) ^ (r & 7)) << 4));
}
// d (+)= A B over one 16-column K step, 64 rows x 32 columns: A K-major (LoRA-B rows, 128-byte swizzle), B N-major
// (LoRA-A block, 64-byte swizzle); acc == 0: d = A B.  (m64n64k16, both 32-column groups at once, needs 32 fp32
// registers per product: with the two products of top-2 the kernel spilled 132 bytes at 128 registers.)
template <typename T>
__device__ __forceinline__ void s3_wgmma(float (&d)[16], uint64_t da, uint64_t db, int acc) {
#if LSW_S3_WG
  if constexpr (std::is_same<T, __half>::value)
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "l"(da), "l"(db), "r"(acc));
  else
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "l"(da), "l"(db), "r"(acc));
#endif
}
__device__ __forceinline__ void s3_wg_fence() {
#if LSW_S3_WG
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void s3_wg_commit() {
#if LSW_S3_WG
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void s3_wg_wait() {
#if LSW_S3_WG
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}
// after a wait: the accumulators are (re)defined here, so no read of them moves above it
__device__ __forceinline__ void s3_wg_keep(float (&d)[16]) {
#pragma unroll
  for (int i = 0; i < 16; i++) asm volatile("" : "+f"(d[i])::"memory");
}
// this thread's shared-memory writes (landed cp.async copies, stores) made visible to wgmma
__device__ __forceinline__ void s3_proxy_fence() {
#if LSW_S3_WG
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
// 16 bytes from a shared-memory address (one LDS.128: through a generic pointer whose alignment the compiler could not
// see, the W0 reads became four 32-bit loads)
__device__ __forceinline__ uint4 s3_lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}
// One expert's product for a warpgroup's 64 x 32 block, from zero, as one wgmma group: fence, KS steps (K columns
// kb .. kb + 16 KS - 1; sb: the stage's B region, ab: the block's 32-column N-block), commit.  Straight-line code
// from fence to commit: a loop or branch inside the group makes ptxas serialize the wgmmas (C7520).  The descriptors
// are built once and stepped in their 32-bit address word (start address / 16 in bits 0-13, which a valid shared
// address never overflows): building both per step from the addresses cost ~15 instructions per wgmma, and with them
// the kernel retired 14 % more warp instructions than the mma.sync one (769 M against 676 M per launch at r64 top-2,
// Nsight Compute on an H100, session 61).  LIN: the steps stay inside one 64-column K block (A's start address moves
// 32 bytes a step), else A's block changes mid-expert (rank 48 from K column 48, rank 128) and its address is
// recomputed per step.
__device__ __forceinline__ uint32_t s3_wg_aoff(int kk) { return (uint32_t)(((kk >> 6) << 13) + ((kk & 63) << 1)); }
template <typename T, int KS, bool LIN>
__device__ __forceinline__ void s3_wg_chain(float (&d)[16], uint32_t sb, uint32_t ab, int nbb, int kb) {
  const uint32_t a_lo = (((sb + s3_wg_aoff(kb)) & 0x3FFFFu) >> 4) | 1u << 16;  // LBO 16 bytes (unused: K-major)
  const uint32_t a_hi = 1024u >> 4 | 1u << 30;                                // SBO 1 KB, 128-byte swizzle
  const uint32_t b_lo = (((ab + (uint32_t)kb * 64u) & 0x3FFFFu) >> 4) | ((uint32_t)nbb >> 4) << 16;
  const uint32_t b_hi = 512u >> 4 | 2u << 30;                                 // SBO 512 bytes, 64-byte swizzle
  s3_wg_fence();
#pragma unroll
  for (int s = 0; s < KS; s++) {
    const uint32_t alo = LIN ? a_lo + 2u * s : (((sb + s3_wg_aoff(kb + 16 * s)) & 0x3FFFFu) >> 4) | 1u << 16;
    s3_wgmma<T>(d, (uint64_t)a_hi << 32 | alo, (uint64_t)b_hi << 32 | (b_lo + 64u * s), s);
  }
  s3_wg_commit();
}
// ... for a rank known at run time (16 .. 128, a multiple of 16: ktm <= 128)
template <typename T>
__device__ __forceinline__ void s3_wg_chain_rt(float (&d)[16], uint32_t sb, uint32_t ab, int nbb, int kb, int rank) {
  const bool lin = (kb & 63) + rank <= 64;
  switch (rank >> 4) {
    case 1: s3_wg_chain<T, 1, true>(d, sb, ab, nbb, kb); break;
    case 2: s3_wg_chain<T, 2, true>(d, sb, ab, nbb, kb); break;
    case 3:
      if (lin) s3_wg_chain<T, 3, true>(d, sb, ab, nbb, kb);
      else s3_wg_chain<T, 3, false>(d, sb, ab, nbb, kb);
      break;
    case 4: s3_wg_chain<T, 4, true>(d, sb, ab, nbb, kb); break;
    case 5: s3_wg_chain<T, 5, false>(d, sb, ab, nbb, kb); break;
    case 6: s3_wg_chain<T, 6, false>(d, sb, ab, nbb, kb); break;
    case 7: s3_wg_chain<T, 7, false>(d, sb, ab, nbb, kb); break;
    default: s3_wg_chain<T, 8, false>(d, sb, ab, nbb, kb); break;
  }
}
// s3_stage_a's job in the wgmma layout (see above), into As (1 KB aligned; nbb = bytes per 32-column N-block = K rows
// x 64): logical chunk vv of K row kr goes to N-block vv / 4 (32 columns), its word t to position chunk t, word vv % 4
// of it; 8-row groups of 512 bytes, chunk c of row r at c ^ (r / 2) % 4 (the 64-byte swizzle of a 1 KB aligned block)
template <typename T, typename RowF>
__device__ __forceinline__ void s3_wg_stage_a(unsigned char *As, int nbb, const T *A, int K, int cols, int cb, int S,
                                              int gt, RowF arow) {
  s3_stage_rows(A, K, cols, cb, S, gt, arow, [&](int kr, int vv, const uint4 &v) {
    const int sw = (kr >> 1) & 3;
    unsigned char *row = As + (vv >> 2) * nbb + (kr >> 3) * 512 + (kr & 7) * 64 + (vv & 3) * 4;
    *reinterpret_cast<uint32_t *>(row + ((0 ^ sw) << 4)) = v.x;
    *reinterpret_cast<uint32_t *>(row + ((1 ^ sw) << 4)) = v.y;
    *reinterpret_cast<uint32_t *>(row + ((2 ^ sw) << 4)) = v.z;
    *reinterpret_cast<uint32_t *>(row + ((3 ^ sw) << 4)) = v.w;
  });
}

// Tile cursor of resident mode: per matrix, super-strips of S 128-column strips (the last one may be narrower), and in
// each super-strip the 64-row blocks in order, the S tiles of a row block side by side.  Any bijection of a matrix's
// tiles onto [tile0, tile0 + tiles) works, since the groups split that index range; the chunked path walks the plain
// strip-major order.  s3_cur_at once (divisions), then s3_cur_next per tile (none).
struct S3Cur {
  int d, r0, c0, rows, cols;
  int cb, si, se;  // super-strip: first column, this tile's strip in it, its strips
};
__device__ __forceinline__ S3Cur s3_cur_at(const SgmmDesc *__restrict__ descs, int n_descs, int t, int S) {
  S3Cur c;
  c.d = find_desc(descs, n_descs, t);
  c.rows = descs[c.d].rows;
  c.cols = descs[c.d].cols;
  const int tiles_r = (c.rows + S3_R - 1) / S3_R, strips = (c.cols + S3_C - 1) / S3_C;
  const int local = t - descs[c.d].tile0, ss = local / (tiles_r * S), rem = local - ss * tiles_r * S;
  c.se = min(S, strips - ss * S);
  const int rb = rem / c.se;
  c.si = rem - rb * c.se;
  c.r0 = rb * S3_R;
  c.cb = ss * S * S3_C;
  c.c0 = c.cb + c.si * S3_C;
  return c;
}
__device__ __forceinline__ void s3_cur_next(S3Cur &c, const SgmmDesc *__restrict__ descs, int n_descs, int S) {
  if (++c.si < c.se) { c.c0 += S3_C; return; }
  c.si = 0;
  c.c0 = c.cb;
  c.r0 += S3_R;
  if (c.r0 < c.rows) return;
  c.r0 = 0;
  c.cb += S * S3_C;
  if (c.cb >= c.cols) {
    c.cb = 0;
    // the next matrix that owns tiles (one of 0 rows or columns owns none and shares the next one's tile0)
    for (c.d++; c.d < n_descs; c.d++) {
      c.rows = descs[c.d].rows;
      c.cols = descs[c.d].cols;
      if (c.rows > 0 && c.cols > 0) break;
    }
  }
  c.c0 = c.cb;
  c.se = min(S, (c.cols - c.cb + S3_C - 1) / S3_C);
}

// One group's tiles [t_beg, t_end) in resident mode.  Group shared memory (gsm): the slot's gates (S3_GATES floats),
// the A block of the super-strip (ktm rows x alds = S*128 + 8 elements), then ns stages of stage_bytes: W0 tile
// (64 x 128, 16-byte chunks XOR-swizzled by row parity) and the tile's B rows (64 x ldb, s3_ldb / s3_bswz: expert k's
// ranks at columns k*rank ..).  The B rows of a row block are read for each of its S tiles back to back (L2 hits).
// Per-matrix state (pointers, rank, this thread's LoRA-B chunk sources, the gates) is loaded when the producer or the
// consumer reaches a new matrix, not per tile: H200 session 13 run 1's profile of this path had 25 % of all warp
// stalls on the producer's dependent descriptor / expert-id loads and 7 % on the gate loads.
template <typename T, int WG>
__device__ __forceinline__ void s3_resident(const SgmmDesc *__restrict__ descs, int n_descs, const int2 *segs,
                                            int top_k, const int *__restrict__ experts,
                                            const float *__restrict__ gates, unsigned char *gsm, int ktm, int ns,
                                            int S, int bar_id, int gt, int flags) {
  const int warp = gt >> 5, lane = gt & 31, wm = warp >> 2, wn = warp & 3, g = lane >> 2, q = lane & 3;
  const int ldb = s3_ldb(ktm), stage_bytes = S3_W0 + S3_R * ldb * 2, alds = s3_alds(S);
  const S3Bswz bz = s3_bswz(ktm);
  // WG: the wgmma consumer and its layouts (see s3_wg_boff).  A compile-time choice: with both consumers in one
  // function, chosen at run time, ptxas spilled 0.8 KB at the kernel's 128 registers; the WG kernel sends launches
  // whose ktm does not fit it to a separate, non-inlined call of the default path (s3_run_dflt)
  auto b_off = [&](int r, int c) {  // stage byte offset of B row r, logical 16-byte chunk c (= K column c * 8)
    if constexpr (WG) return (uint32_t)(S3_W0 + s3_wg_boff(r, c));
    return (uint32_t)(S3_W0 + r * ldb * 2 + ((c ^ ((r >> bz.sh) & bz.mask)) << 4));
  };
  float *s_gate = reinterpret_cast<float *>(gsm);
  uint32_t *As = reinterpret_cast<uint32_t *>(gsm + S3_GATES * 4);  // A block, 32-bit words (alds / 2 per row)
  uint32_t a_u32 = s3_smem_u32(As);
  unsigned char *st0 = gsm + S3_GATES * 4 + ktm * alds * 2;
  uint32_t st0_u32 = a_u32 + ktm * alds * 2;
  const int nbb = ktm * 64;  // wgmma layout: bytes per 32-column N-block of the A block
  if constexpr (WG) {  // the A block at the next 1 KB boundary, unpadded rows; the stages right after it (1 KB steps)
    const uint32_t pad = ((a_u32 + 1023u) & ~1023u) - a_u32;
    As = reinterpret_cast<uint32_t *>(gsm + S3_GATES * 4 + pad);
    a_u32 += pad;
    st0 = gsm + S3_GATES * 4 + pad + ktm * S * S3_C * 2;
    st0_u32 = a_u32 + ktm * S * S3_C * 2;
  }

  // ---- producer: W0 chunk (row gt/16 + 16 i, 16-byte column chunk gt%16) of the tile -> swizzled stage offset
  const int pr = gt >> 4, pv = gt & 15;
  const uint32_t w_off = (uint32_t)(pr * S3_C + ((pv ^ ((pr & 1) << 2)) * 8)) * 2;
  S3Cur P = s3_cur_at(descs, n_descs, segs[0].x, S);
  int p = segs[0].x, pe = segs[0].y, pk = 0, ps = 0;  // tile, its segment's end, the segment (s3_segments)
  // matrix P.d: W0, B, rank; this thread's B chunks u = 0 .. S3_BU-1 (chunk gt + 256 u of the tile's top_k x 64 x
  // rank/8, i.e. top_k * rank <= 128): source without the tile's first row, in 16-byte units from B (pbo: B up to
  // 64 GB), and stage offset | tile row << 24 (sbr).  Computed once per matrix: per tile (divisions by the rank, a
  // dependent expert-id load) it was a quarter of all instructions of r64 top-2 (Nsight Compute, session 18).
  const T *pW0 = nullptr, *pBm = nullptr;
  int prank = 16, pnch = 0;
  uint32_t pbo[S3_BU], sbr[S3_BU];
  const int *pesl = experts;
  auto chunk_of = [&](int qq, int &k, int &r, int &j8) {  // chunk -> expert, tile row, 8-rank group
    const int per = prank >> 3;
    k = qq / (per * 64);
    const int w = qq - k * per * 64;
    r = w / per;
    j8 = w - r * per;
  };
  auto pload = [&]() {
    const SgmmDesc *D = descs + P.d;
    pW0 = static_cast<const T *>(D->W0);
    pBm = static_cast<const T *>(D->B);
    prank = D->rank;
    pesl = experts + D->slot * top_k;
    pnch = top_k * prank * 8;
#pragma unroll
    for (int u = 0; u < S3_BU; u++) {
      const int qq = gt + 256 * u;
      pbo[u] = 0u;
      sbr[u] = 0u;
      if (qq < pnch) {
        int k, r, j8;
        chunk_of(qq, k, r, j8);
        pbo[u] = (uint32_t)((((size_t)__ldg(pesl + k) * P.rows + r) * prank + j8 * 8) >> 3);
        sbr[u] = b_off(r, k * (prank >> 3) + j8) | (uint32_t)r << 24;
      }
    }
  };
  pload();
  auto issue = [&]() {
    if (p < pe) {
      const uint32_t st = st0_u32 + ps * stage_bytes;
      const int c = P.c0 + pv * 8;
      const T *src = pW0 + (size_t)(P.r0 + pr) * P.cols + c;
      const size_t step = (size_t)16 * P.cols;
      if (P.r0 + S3_R <= P.rows && P.c0 + S3_C <= P.cols) {
#pragma unroll
        for (int i = 0; i < 4; i++) s3_cp16(st + w_off + i * 16 * S3_C * 2, src + i * step, true);
      } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const bool ok = P.r0 + pr + 16 * i < P.rows && c < P.cols;
          s3_cp16(st + w_off + i * 16 * S3_C * 2, ok ? src + i * step : pW0, ok);
        }
      }
      // B rows r0 .. r0+63 of each selected expert (64 x rank contiguous elements each); none in the timing-only
      // instance S3_WG_NOB
      const T *bt = pBm + (size_t)P.r0 * prank;
      if (WG == S3_WG_NOB) {
      } else if (P.r0 + S3_R <= P.rows) {  // a whole row block: no row check, no zero fill (session 52: ~8 instructions a chunk)
#pragma unroll
        for (int u = 0; u < S3_BU; u++)
          if (gt + 256 * u < pnch) s3_cp16f(st + (sbr[u] & 0xffffffu), bt + (size_t)pbo[u] * 8);
      } else {
#pragma unroll
        for (int u = 0; u < S3_BU; u++)
          if (gt + 256 * u < pnch) {
            const bool ok = P.r0 + (int)(sbr[u] >> 24) < P.rows;
            s3_cp16(st + (sbr[u] & 0xffffffu), ok ? bt + (size_t)pbo[u] * 8 : pBm, ok);
          }
      }
      for (int qq = gt + 256 * S3_BU; WG != S3_WG_NOB && qq < pnch; qq += 256) {  // top_k * rank > 128: the rest, addressed per tile
        int k, r, j8;
        chunk_of(qq, k, r, j8);
        const bool ok = P.r0 + r < P.rows;
        s3_cp16(st + b_off(r, k * (prank >> 3) + j8),
                 ok ? pBm + ((size_t)__ldg(pesl + k) * P.rows + P.r0 + r) * prank + j8 * 8 : pBm, ok);
      }
      p++;
      const int d0 = P.d;
      s3_cur_next(P, descs, n_descs, S);
      if (p == pe && segs[pk + 1].x >= 0) {  // the next segment of the schedule
        pk++;
        p = segs[pk].x;
        pe = segs[pk].y;
        P = s3_cur_at(descs, n_descs, p, S);
        pload();
      } else if (P.d != d0 && p < pe) {
        pload();
      }
    }
    s3_commit();
    ps = ps + 1 == ns ? 0 : ps + 1;
  };
  for (int i = 0; i < ns - 1; i++) issue();

  // ---- consumer: this lane's fragment addresses (bytes, relative to the stage's B rows / the A block, strip 0), its
  // W0 words in a stage (row wm*32 + g, 16-byte chunk wn*4 + q) and its first W element of a tile
  const uint32_t a_lane = (uint32_t)((lane & 15) * ldb * 2);
  const int a_hi = lane >> 4, a_sw = ((lane & 15) >> bz.sh) & bz.mask;  // row block offsets keep the swizzle
  const uint32_t b_lane = (uint32_t)(((((lane >> 3) & 1) * 8 + (lane & 7)) * alds + wn * 32 + (lane >> 4) * 8) * 2);
  const int chunk = wn * 4 + q, lrow = wm * 32 + g;
  const int w0_lane = (lrow * S3_C + ((chunk ^ ((g & 1) << 2)) * 8)) * 2;  // rows lrow + 8 m keep the parity of g
  S3Cur C = s3_cur_at(descs, n_descs, segs[0].x, S);
  int ct = segs[0].x, ce = segs[0].y, ck = 0;  // the consumer's tile, its segment's end, the segment
  auto c_next = [&]() {  // after s3_cur_next: on to the next segment where this one ends
    if (++ct == ce && segs[ck + 1].x >= 0) {
      ck++;
      ct = segs[ck].x;
      ce = segs[ck].y;
      C = s3_cur_at(descs, n_descs, ct, S);
    }
  };
  int cst = 0, a_d = -1, a_cb = -1, crank = 16;
  T *cW = nullptr;
  const float *cgsl = gates;  // the slot's gates in global memory (read there only past S3_GATES)
  float cgsc = 1.f;           // the descriptor's LoRA scaling (multiplied into every gate as it is read)
  while (ct < ce) {
    s3_wait(ns - 2);  // this thread's copies of tile t have landed
    if constexpr (WG) s3_proxy_fence();  // ... and are visible to wgmma
    s3_bar(bar_id);   // everyone's have; everyone is done with tile t-1 (its stage, the A block, the gates)
    issue();          // tile t+ns-1 into the stage tile t-1 used
    if (C.d != a_d || C.cb != a_cb) {  // new super-strip: A rows of all selected experts, words transposed (see above)
      const SgmmDesc *D = descs + C.d;
      crank = D->rank;
      cW = static_cast<T *>(D->W);
      const int *esl = experts + D->slot * top_k;
      cgsl = gates + D->slot * top_k;
      cgsc = D->scale;
      for (int k = gt; k < top_k && k < S3_GATES; k += 256) s_gate[k] = __ldg(cgsl + k) * cgsc;
      auto arow = [&](int row) {
        const int k = row / crank, j = row - k * crank;  // rank j of expert k
        return (size_t)__ldg(esl + k) * crank + j;
      };
      if constexpr (WG) {
        s3_wg_stage_a(reinterpret_cast<unsigned char *>(As), nbb, static_cast<const T *>(D->A), top_k * crank, C.cols,
                      C.cb, S, gt, arow);
        s3_proxy_fence();
      } else {
        s3_stage_a(As, alds, static_cast<const T *>(D->A), top_k * crank, C.cols, C.cb, S, gt, arow);
      }
      s3_bar(bar_id);
      a_d = C.d;
      a_cb = C.cb;
    }
    const int rank = crank;
    const uint32_t st = st0_u32 + cst * stage_bytes;
    const unsigned char *w0p = st0 + cst * stage_bytes + w0_lane;
    // this lane's W rows lrow + 8 m, m = 0..3: wq points at row lrow + 8 m and advances by row8 after each store
    // (a 64-bit multiply per store cost ~10 instructions of the ~190 of a half); bit m of okm: row in range
    T *wq = cW + (size_t)(C.r0 + lrow) * C.cols + C.c0 + chunk * 8;
    const size_t row8 = (size_t)8 * C.cols;
    const int rows_left = C.rows - C.r0 - lrow;  // rows lrow + 8 m of the tile exist when 8 m < rows_left
    const unsigned okm = C.r0 + S3_R <= C.rows && C.c0 + S3_C <= C.cols ? 0xfu
                         : C.c0 + chunk * 8 >= C.cols ? 0u
                         : (unsigned)(rows_left > 0) | (unsigned)(rows_left > 8) << 1 |
                               (unsigned)(rows_left > 16) << 2 | (unsigned)(rows_left > 24) << 3;
    if constexpr (WG) {  // the wgmma consumer: warpgroup wm, tile columns 64 wm .. + 63 in two passes of 32
      const uint32_t sb = st + S3_W0;
      // this thread: tile rows 16 wn + g + 8 hh; in pass p the 16-byte chunk 8 wm + 4 p + q (8 consecutive columns:
      // accumulator elements jj * 4 + 2 hh + e, jj = 0..3, e = 0..1, by the 4 x 4 word transposition), its W0 bytes
      // at chunk position ch ^ 4 (g & 1) of the stage row (the W0 swizzle)
      const int trow = 16 * wn + g, tch = 8 * wm + q;
      const uint32_t w0a = st + (uint32_t)(trow * S3_C * 2);
      T *wq = cW + (size_t)(C.r0 + trow) * C.cols + C.c0 + tch * 8;
      const bool rok0 = C.r0 + trow < C.rows, rok1 = C.r0 + trow + 8 < C.rows;
      const float g0 = s_gate[0], g1 = s_gate[1];
#pragma unroll 1
      for (int pass = 0; pass < 2; pass++) {
        const uint32_t ab = a_u32 + (uint32_t)((C.si * 4 + wm * 2 + pass) * nbb);
        const int ch = tch + 4 * pass;
        const uint32_t w0c = w0a + (uint32_t)((ch ^ ((g & 1) << 2)) * 16);
        float d0[16], d1[16];
        auto fold = [&](float (&acc)[16], const float (&t)[16], float gk, bool from_w0) {  // acc = fmaf(g, t, acc|W0)
#pragma unroll
          for (int hh = 0; hh < 2; hh++) {
            float f[8];
            if (from_w0) unpack16<T>(s3_lds128(w0c + hh * 8 * S3_C * 2), f);
#pragma unroll
            for (int jj = 0; jj < 4; jj++)
#pragma unroll
              for (int e = 0; e < 2; e++) {
                const int i = jj * 4 + 2 * hh + e;
                acc[i] = fmaf(gk, t[i], from_w0 ? f[2 * jj + e] : acc[i]);
              }
          }
        };
        if constexpr (WG == S3_WG_NOMMA) {  // timing only: no products (W = W0), the same loads, stores and barriers
#pragma unroll
          for (int i = 0; i < 16; i++) d1[i] = 0.f;
          fold(d0, d1, g0, true);
        } else if (top_k == 2) {  // both products in flight; expert 0's epilogue under expert 1's wgmmas
          if (rank == 64) {  // r64 without the run-time dispatch's jump table (more such branches: ptxas spilled)
            s3_wg_chain<T, 4, true>(d0, sb, ab, nbb, 0);
            s3_wg_chain<T, 4, true>(d1, sb, ab, nbb, 64);
          } else {
            s3_wg_chain_rt<T>(d0, sb, ab, nbb, 0, rank);
            s3_wg_chain_rt<T>(d1, sb, ab, nbb, rank, rank);
          }
          s3_wg_wait<1>();
          s3_wg_keep(d0);
          fold(d0, d0, g0, true);
          s3_wg_wait<0>();
          s3_wg_keep(d1);
          fold(d0, d1, g1, false);
        } else {
          for (int k = 0; k < top_k; k++) {
            s3_wg_chain_rt<T>(d1, sb, ab, nbb, k * rank, rank);
            s3_wg_wait<0>();
            s3_wg_keep(d1);
            fold(d0, d1, k < S3_GATES ? s_gate[k] : __ldg(cgsl + k) * cgsc, k == 0);
          }
        }
        const bool cok = C.c0 + ch * 8 < C.cols;
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
          float f[8];
#pragma unroll
          for (int jj = 0; jj < 4; jj++) {
            f[2 * jj] = d0[jj * 4 + 2 * hh];
            f[2 * jj + 1] = d0[jj * 4 + 2 * hh + 1];
          }
          st_stream_if(wq + (size_t)hh * 8 * C.cols + pass * 32, pack16<T>(f), (hh ? rok1 : rok0) && cok);
        }
      }
      cst = cst + 1 == ns ? 0 : cst + 1;
      s3_cur_next(C, descs, n_descs, S);
      c_next();
      continue;
    }
    const uint32_t bop = a_u32 + b_lane + C.si * (S3_C * 2);
    if (top_k == 1 && (flags & S3_F_TOP1)) {  // both halves at once (s3_top1_mma)
      float c[2][4][4];
      const uint32_t aop = st + S3_W0 + a_lane + wm * 32 * ldb * 2, aop16 = aop + 16 * ldb * 2;
      if (rank == 64) s3_top1_mma<T, 4>(c, aop, aop16, bop, alds, a_hi, a_sw, 4);
      else if (rank == 32) s3_top1_mma<T, 2>(c, aop, aop16, bop, alds, a_hi, a_sw, 2);
      else if (rank == 16) s3_top1_mma<T, 1>(c, aop, aop16, bop, alds, a_hi, a_sw, 1);
      else s3_top1_mma<T, 0>(c, aop, aop16, bop, alds, a_hi, a_sw, rank >> 4);
      const float gk = s_gate[0];
#pragma unroll
      for (int m = 0; m < 4; m++) {  // row lrow + 8 m: half m / 2, accumulator elements 2 (m % 2), +1
        const int h = m >> 1, hh = m & 1;
        const uint4 w0 = *reinterpret_cast<const uint4 *>(w0p + m * 8 * S3_C * 2);
        float f[8];
        unpack16<T>(w0, f);
#pragma unroll
        for (int j = 0; j < 4; j++) {  // W = round(fmaf(g, tmp, W0)): one FFMA per element
          f[2 * j] = fmaf(gk, c[h][j][2 * hh], f[2 * j]);
          f[2 * j + 1] = fmaf(gk, c[h][j][2 * hh + 1], f[2 * j + 1]);
        }
        st_stream_if(wq, pack16<T>(f), okm & 1u << m);
        wq += row8;
      }
      cst = cst + 1 == ns ? 0 : cst + 1;
      s3_cur_next(C, descs, n_descs, S);
      c_next();
      continue;
    }
#pragma unroll 1
    for (int h = 0; h < 2; h++) {
      const int rb = wm * 32 + h * 16;  // the half's first tile row
      const uint32_t aop = st + S3_W0 + a_lane + rb * ldb * 2;
      // expert k's product over its ranks (ascending 16-steps) -> tmp
      auto expert = [&](int k, float (&tmp)[4][4]) {
        const int kb = k * rank;
        if (rank == 64) s3_expert_mma<T, 4>(tmp, aop, bop, alds, a_hi, a_sw, kb, 4);
        else if (rank == 32) s3_expert_mma<T, 2>(tmp, aop, bop, alds, a_hi, a_sw, kb, 2);
        else if (rank == 16) s3_expert_mma<T, 1>(tmp, aop, bop, alds, a_hi, a_sw, kb, 1);
        else s3_expert_mma<T, 0>(tmp, aop, bop, alds, a_hi, a_sw, kb, rank >> 4);
      };
      auto gate = [&](int k) { return k < S3_GATES ? s_gate[k] : __ldg(cgsl + k) * cgsc; };
      // acc = fmaf(g_0, tmp_0, W0) with W0 of rows rb + g (acc[.][0..1]) and rb + g + 8 (acc[.][2..3]), columns
      // chunk*8 .. +7, read after expert 0's product (acc live during it spilled registers: 128 at 512 threads)
      float acc[4][4];
      {
        float tmp[4][4];
        const float gk = gate(0);
        expert(0, tmp);
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
          const uint4 w0 = *reinterpret_cast<const uint4 *>(w0p + (2 * h + hh) * 8 * S3_C * 2);
          float f[8];
          unpack16<T>(w0, f);
#pragma unroll
          for (int j = 0; j < 4; j++) {
            acc[j][2 * hh] = fmaf(gk, tmp[j][2 * hh], f[2 * j]);
            acc[j][2 * hh + 1] = fmaf(gk, tmp[j][2 * hh + 1], f[2 * j + 1]);
          }
        }
      }
      auto add = [&](int k, float gk) {  // acc = fmaf(g_k, tmp_k, acc)
        float tmp[4][4];
        expert(k, tmp);
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[j][e] = fmaf(gk, tmp[j][e], acc[j][e]);
      };
      // top_k == 2, the common case: no loop control, no gate fallback.  With the predicated stores (st_stream_if) and the
      // compare-chain wait (s3_wait) this took r64 top-2 from 736 M to 676 M warp instructions per launch and 84.6-84.8
      // to 86.3-87.2 % of copy (H100, alternating processes, session 53 run 1; r16 top-2 even).  Tried beside it and
      // dropped: the LoRA-B fragment address as one XOR per k-step (669 M instructions, but 84.9-85.4 %), and the W0
      // words read through a 32-bit shared address (ptxas spilled 4 bytes)
      if (top_k == 2) add(1, s_gate[1]);
      else
        for (int k = 1; k < top_k; k++) add(k, gate(k));
      // W = round(acc)
#pragma unroll
      for (int hh = 0; hh < 2; hh++) {
        const int m = 2 * h + hh;  // row lrow + 8 m
        float f[8];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          f[2 * j] = acc[j][2 * hh];
          f[2 * j + 1] = acc[j][2 * hh + 1];
        }
        st_stream_if(wq, pack16<T>(f), okm & 1u << m);
        wq += row8;
      }
    }
    cst = cst + 1 == ns ? 0 : cst + 1;
    s3_cur_next(C, descs, n_descs, S);
    c_next();
  }
  s3_wait(0);  // nothing real is pending (copies past the range are empty groups); leave no copy behind anyway
}

// Chunked mode (top_k * rank too large for the resident operands): a separate, non-inlined function so that its
// register allocation does not weigh on the resident paths.  gsm: this group's shared memory.
template <typename T>
__device__ __noinline__ void s3_chunked(const SgmmDesc *__restrict__ descs, int n_descs, int t_beg, int t_end, int top_k,
                                        const int *__restrict__ experts, const float *__restrict__ gates,
                                        unsigned char *gsm, int ns, int bar_id, int gt) {
  unsigned char *const s3_smem = gsm;  // offsets below are relative to the group's region
  const int o_a = 0;
  const int warp = gt >> 5, lane = gt & 31, wm = warp >> 2, wn = warp & 3;
  // chunked mode: [A chunk: KC x S3_ALD][B chunk: 64 x (KC+8)][delta: 8 warps x 16 x 36 f32][ns stages: W0]
  const int o_bc = o_a + S3_KC * S3_ALD * 2;
  const int o_delta = o_bc + S3_R * (S3_KC + 8) * 2;
  const int o_stage = o_delta + S3_DELTA;
  const int stage_bytes = S3_W0;
  T *Abuf = reinterpret_cast<T *>(s3_smem + o_a);

  // producer: tile p of descriptor pd into stage ps (one commit group per call, empty past the range)
  int p = t_beg, pd = find_desc(descs, n_descs, t_beg), ps = 0;
  int td = pd;
  auto issue = [&]() {
    if (p < t_end) {
      const int rows = descs[pd].rows, cols = descs[pd].cols, t0 = descs[pd].tile0;
      const int tiles_r = (rows + S3_R - 1) / S3_R, local = p - t0, cs = local / tiles_r;
      const int r0 = (local - cs * tiles_r) * S3_R, c0 = cs * S3_C;
      const T *W0 = static_cast<const T *>(descs[pd].W0);
      unsigned char *st = s3_smem + o_stage + ps * stage_bytes;
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const int q = gt + i * 256, r = q >> 4, v = q & 15, row = r0 + r, c = c0 + v * 8;
        const bool ok = row < rows && c < cols;
        s3_cp16(s3_smem_u32(st + (r * S3_C + ((v ^ ((r & 1) << 2)) * 8)) * 2), ok ? W0 + (size_t)row * cols + c : W0,
                ok);
      }
      p++;
      while (pd + 1 < n_descs && descs[pd + 1].tile0 <= p) pd++;
    }
    s3_commit();
    ps = ps + 1 == ns ? 0 : ps + 1;
  };
  for (int i = 0; i < ns - 1; i++) issue();

  int cst = 0;
  for (int t = t_beg; t < t_end; t++) {
    s3_wait(ns - 2);  // this thread's copies of tile t have landed
    s3_bar(bar_id);   // everyone's have; everyone is done with tile t-1 (its stage, the operand chunks, the patches)
    issue();          // tile t+ns-1 into the stage tile t-1 used
    const int rows = descs[td].rows, cols = descs[td].cols, rank = descs[td].rank;
    const int tiles_r = (rows + S3_R - 1) / S3_R, local = t - descs[td].tile0, cs = local / tiles_r;
    const int r0 = (local - cs * tiles_r) * S3_R, c0 = cs * S3_C;
    const int slot = descs[td].slot, kt = top_k * rank;
    const int o_st = o_stage + cst * stage_bytes;

    // acc = W0 (fp32) of this warp's 32 x 32 block, through its smem patch, 16 rows at a time (the stage holds tile t:
    // zero-filled outside the matrix)
    const T *w0s = reinterpret_cast<const T *>(s3_smem + o_st);
    float *delta = reinterpret_cast<float *>(s3_smem + o_delta) + warp * 16 * S3_DLD;
    S3Acc acc[2][2], tmp[2][2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
#pragma unroll
      for (int i2 = 0; i2 < 2; i2++) {
        const int rl = i2 * 8 + (lane >> 2), v = lane & 3, rr = wm * 32 + h * 16 + rl, chunk = wn * 4 + v;
        float f[8];
        unpack16<T>(*reinterpret_cast<const uint4 *>(w0s + rr * S3_C + ((chunk ^ ((rr & 1) << 2)) * 8)), f);
        *reinterpret_cast<float4 *>(delta + rl * S3_DLD + v * 8) = make_float4(f[0], f[1], f[2], f[3]);
        *reinterpret_cast<float4 *>(delta + rl * S3_DLD + v * 8 + 4) = make_float4(f[4], f[5], f[6], f[7]);
      }
      __syncwarp();
      wmma::load_matrix_sync(acc[h][0], delta, S3_DLD, wmma::mem_row_major);
      wmma::load_matrix_sync(acc[h][1], delta + 16, S3_DLD, wmma::mem_row_major);
      __syncwarp();  // the patch is read before the next half overwrites it
    }
    for (int kc0 = 0; kc0 < kt; kc0 += S3_KC) {
      const int kc = min(S3_KC, kt - kc0);
      if (kc0 > 0) s3_bar(bar_id);  // the previous chunk's fragments are loaded
      s3_load_a<1>(Abuf, static_cast<const T *>(descs[td].A), experts + slot * top_k, rank, cols, c0, kc0, kc, gt);
      s3_load_b<1>(reinterpret_cast<T *>(s3_smem + o_bc), S3_KC + 8, static_cast<const T *>(descs[td].B),
                   experts + slot * top_k, rank, rows, r0, kc0, kc, gt);
      s3_bar(bar_id);
      s3_mma<T>(acc, tmp, reinterpret_cast<const T *>(s3_smem + o_bc), S3_KC + 8, Abuf, kc0, kc0, kc0 + kc, rank,
                gates + slot * top_k, descs[td].scale, wm, wn);
    }

    // epilogue of this warp's 32 x 32 block, 16 rows at a time: acc -> smem patch, W = round(acc)
    T *W = static_cast<T *>(descs[td].W);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      wmma::store_matrix_sync(delta, acc[h][0], S3_DLD, wmma::mem_row_major);
      wmma::store_matrix_sync(delta + 16, acc[h][1], S3_DLD, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int i2 = 0; i2 < 2; i2++) {
        const int rl = i2 * 8 + (lane >> 2), v = lane & 3;
        const int rr = wm * 32 + h * 16 + rl, chunk = wn * 4 + v, row = r0 + rr, c = c0 + chunk * 8;
        if (row < rows && c < cols) st_stream(W + (size_t)row * cols + c, pack16<T>(delta + rl * S3_DLD + v * 8));
      }
      __syncwarp();  // the patch is read before the second half overwrites it
    }
    cst = cst + 1 == ns ? 0 : cst + 1;
    while (td + 1 < n_descs && descs[td + 1].tile0 <= t + 1) td++;
  }
  s3_wait(0);  // nothing real is pending (copies past the range are empty groups); leave no copy behind anyway
}

// max rank over the descriptors (sizes the resident operands; every block computes the same plan), and the runs of
// consecutive descriptors of one shape for the lockstep schedule: hdr (the block header's words) [0] max rank, [1] the
// number of runs (0: more than S3_RUNS, or a descriptor without tiles), [2 ..] each run's first descriptor, ascending
__device__ __forceinline__ int s3_max_rank(const SgmmDesc *__restrict__ descs, int n_descs, int *hdr) {
  if (threadIdx.x == 0) {
    hdr[0] = 16;
    hdr[1] = 1;
    hdr[2] = 0;
    hdr[S3_HDR_OK] = n_descs > 0;
  }
  __syncthreads();
  int mr = 16;
  bool ok = true;
  for (int i = threadIdx.x; i < n_descs; i += blockDim.x) {
    const int r = descs[i].rows, c = descs[i].cols;
    mr = max(mr, descs[i].rank);
    ok = ok && r > 0 && c > 0;
    if (i > 0 && (r != descs[i - 1].rows || c != descs[i - 1].cols)) {  // run k starts at descriptor i
      const int k = atomicAdd(hdr + 1, 1);
      if (k < S3_RUNS) hdr[2 + k] = i;
    }
  }
  mr = __reduce_max_sync(0xffffffffu, mr);
  ok = __all_sync(0xffffffffu, ok);
  if ((threadIdx.x & 31) == 0) {
    atomicMax(hdr, mr);
    if (!ok) atomicAnd(hdr + S3_HDR_OK, 0);
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // the run starts in order (recorded in any order)
    const int nrun = hdr[1];
    if (nrun > S3_RUNS || !hdr[S3_HDR_OK]) {
      hdr[1] = 0;
    } else {
      for (int b0 = 3; b0 < 2 + nrun; b0++)  // (insertion sort of hdr[3 .. 1 + nrun]; hdr[2] = 0 is the least)
        for (int b = b0; b > 2 && hdr[b] < hdr[b - 1]; b--) {
          const int t = hdr[b];
          hdr[b] = hdr[b - 1];
          hdr[b - 1] = t;
        }
    }
  }
  __syncthreads();
  return hdr[0];
}

// A group's schedule in resident mode: the tile ranges [x, y) it walks, in order, then a sentinel x = -1 (at most
// S3_SEGS entries).  Without lockstep: one range, the contiguous split of the tile order (nr groups, this one id).
// Lockstep (session 51; lock, and the descriptors in at most S3_RUNS runs of one shape, hdr as s3_max_rank left it):
// the contiguous split puts the groups of one matrix at unrelated row blocks, so every super-strip reads the matrix's
// LoRA-B rows from DRAM again (r64 top-2: as many bytes as W0).  Here each run's units (super-strips of W strips, L
// tiles) are dealt out in rounds (round r: unit r * nr + id), so the groups on a matrix start its super-strips
// together and walk its row blocks side by side, and a row block's LoRA-B rows, read by the first of them, are in L2
// for the others.  What is left of the run after its whole rounds goes out the same way in halves, quarters and
// eighths of units (at least 4 row blocks), then in contiguous ranges, so every group gets each run's contiguous
// share of tiles to within one.  A run whose matrices' last super-strip is narrower is split contiguously.  Any
// partition of the tiles gives the same bits.  Session 18 tried "dealing" without gain, when the kernel was
// issue-bound; on today's kernel it pays at r64 top-2 (s3_lock_pays).
__device__ __forceinline__ void s3_segments(const SgmmDesc *__restrict__ descs, int n_descs, int total, int id, int nr,
                                            int S, bool lock, const int *hdr, int2 *out) {
  int n = 0;
  const int nrun = lock ? hdr[1] : 0;
  auto split = [&](int beg, int end) {  // this group's share of [beg, end)
    const int len = end - beg;
    const int b = beg + (int)((long long)len * id / nr), e = beg + (int)((long long)len * (id + 1) / nr);
    if (b < e) out[n++] = make_int2(b, e);
  };
  if (nrun == 0) split(0, total);
  int rounds = S3_SEGS - 1 - nrun;  // range segments the rounds may take (each run's rest and the sentinel keep theirs)
  for (int j = 0; j < nrun; j++) {
    const int d0 = hdr[2 + j], d1 = j + 1 < nrun ? hdr[3 + j] : n_descs;
    const int beg = descs[d0].tile0, end = d1 < n_descs ? descs[d1].tile0 : total;
    const int tiles_r = (descs[d0].rows + S3_R - 1) / S3_R, strips = (descs[d0].cols + S3_C - 1) / S3_C;
    const int W = min(S, strips), L = strips % W == 0 ? tiles_r * W : 0;
    int pos = beg;
    if (L > 0)
      for (int P = L, lv = 0; lv < 4 && P >= 4 * W && P % W == 0; P >>= 1, lv++) {
        const int q = min((end - pos) / P / nr, rounds);
        for (int r = 0; r < q; r++) {
          const int b = pos + (r * nr + id) * P;
          out[n++] = make_int2(b, b + P);
        }
        rounds -= q;
        pos += q * nr * P;
      }
    split(pos, end);
  }
  out[n] = make_int2(-1, -1);
}
// Where the lockstep rounds pay (S3_F_LOCK, the default): the contiguous split re-reads a matrix's LoRA-B rows once per
// super-strip, ktm / (S * 128) of the bytes of W0; lockstep where that is a quarter or more.  Two H100s, the 64 q,v
// weights of Llama-2-7B (bench/results/2026-12-06-h100-session51, runs 4 and 5, interleaved in one process): r64 top-2
// (S = 1: 100 %) 65.2-65.7 -> 79.7-81.0 % of copy and 64.5-64.6 -> 77.5-82.6 %, the 7B q,v r64 top-2 merge 6.881 /
// 6.883 -> 6.449 / 6.444 ms per token and 6.993 -> 6.506; r16 top-2 (S = 8: 3 %) 91.6-92.0 -> 90.7-91.2 % and
// 90.3-90.5 -> 90.2-90.3 %, so it keeps the contiguous split.  Run 6, a GQA model's q,v (4096 and 1024 rows) sorted by
// shape: 62.0-62.3 -> 75.9-77.1 %, the Llama-3-8B q,v r64 top-2 merge 6.760 -> 6.437 ms per token.
__device__ __forceinline__ bool s3_lock_pays(int flags, int ktm, int S) {
  return (flags & S3_F_LOCK_ALL) || ((flags & S3_F_LOCK) && 4 * ktm >= S * S3_C);
}
// variant 3's plan and group split for K = top_k * max rank, then resident or chunked mode
template <typename T, int WG = 0>
__device__ __forceinline__ void s3_run(const SgmmDesc *__restrict__ descs, int n_descs, int total_tiles, int top_k,
                                       const int *__restrict__ experts, const float *__restrict__ gates,
                                       unsigned char *s3_smem, int smem_bytes, int ktm, int cfg_groups, int cfg_maxst,
                                       int cfg_strip, int cfg_flags) {
  const S3Plan pl = s3_plan(smem_bytes, ktm, cfg_groups, cfg_maxst, cfg_strip);
  const int grp = threadIdx.x >> 8;
  if (grp >= pl.groups || pl.ns < 2) return;
  const int ns = pl.ns, bar_id = 1 + grp, gt = threadIdx.x & 255;

  const int nr = gridDim.x * pl.groups, id = blockIdx.x * pl.groups + grp;
  const int o_a = S3_HDR + grp * pl.per;  // this group's shared memory (byte offset into s3_smem)
  if (pl.resident) {  // the group's schedule (s3_segments) in the block header
    int2 *segs = reinterpret_cast<int2 *>(s3_smem + S3_HDR_SEGS + grp * S3_SEGS * 8);
    if (gt == 0)
      s3_segments(descs, n_descs, total_tiles, id, nr, pl.strip, s3_lock_pays(cfg_flags, ktm, pl.strip),
                  reinterpret_cast<const int *>(s3_smem), segs);
    s3_bar(bar_id);
    if (segs[0].x < 0) return;  // no tiles
    s3_resident<T, WG>(descs, n_descs, segs, top_k, experts, gates, s3_smem + o_a, ktm, ns, pl.strip, bar_id, gt,
                   cfg_flags);
    return;
  }

  // chunked mode: the contiguous split of the strip-major tile order
  const int t_beg = (int)((long long)total_tiles * id / nr), t_end = (int)((long long)total_tiles * (id + 1) / nr);
  if (t_beg >= t_end) return;

  s3_chunked<T>(descs, n_descs, t_beg, t_end, top_k, experts, gates, s3_smem + o_a, ns, bar_id, gt);
}

// the default path as a call of its own (register allocation apart from the caller's)
template <typename T>
__device__ __noinline__ void s3_run_dflt(const SgmmDesc *__restrict__ descs, int n_descs, int total_tiles, int top_k,
                                         const int *__restrict__ experts, const float *__restrict__ gates,
                                         unsigned char *s3_smem, int smem_bytes, int ktm, int cfg_groups, int cfg_maxst,
                                         int cfg_strip, int cfg_flags) {
  s3_run<T>(descs, n_descs, total_tiles, top_k, experts, gates, s3_smem, smem_bytes, ktm, cfg_groups, cfg_maxst,
            cfg_strip, cfg_flags);
}
// WG: the wgmma consumer where K = top_k * max rank takes it (s3_wg_takes), else the default path (s3_run_dflt: only
// where the host's max rank was wrong; sgmm() launches this instance only for launches that take it).  An instance of
// its own, so that the default one's code does not change; without sm_90a code (e.g. the PTX JIT-compiled for another
// GPU) it is the default kernel.
template <typename T, int WG>
__global__ void __launch_bounds__(512, 1) sgmm_tc_stream_kernel(const SgmmDesc *__restrict__ descs, int n_descs,
                                                               int total_tiles, int top_k,
                                                               const int *__restrict__ experts,
                                                               const float *__restrict__ gates, const int *skip,
                                                               int smem_bytes, int cfg_groups, int cfg_maxst,
                                                               int cfg_strip, int cfg_flags) {
  if (skip && *skip) return;  // uniform over the grid, before any copy is issued
  extern __shared__ __align__(128) unsigned char s3_smem[];
  const int ktm = top_k * s3_max_rank(descs, n_descs, reinterpret_cast<int *>(s3_smem));
  if constexpr (WG && LSW_S3_WG) {
    if (s3_wg_takes(ktm, cfg_flags))
      s3_run<T, WG>(descs, n_descs, total_tiles, top_k, experts, gates, s3_smem, smem_bytes, ktm, cfg_groups, cfg_maxst,
                    cfg_strip, cfg_flags);
    else
      s3_run_dflt<T>(descs, n_descs, total_tiles, top_k, experts, gates, s3_smem, smem_bytes, ktm, cfg_groups,
                     cfg_maxst, cfg_strip, cfg_flags);
  } else {
    s3_run<T>(descs, n_descs, total_tiles, top_k, experts, gates, s3_smem, smem_bytes, ktm, cfg_groups, cfg_maxst,
              cfg_strip, cfg_flags);
  }
}
// 1 where this device runs sm_90a code (the wgmma consumer exists), 0 where not
__global__ void sgmm_wg_probe_kernel(int *out) { *out = LSW_S3_WG; }

// ---- variant 3, top-1 in half tiles (flag S3_F_HALF; session 46) ---------------------------------------------------
// Why: r64 top-1 with two groups holds a 4-strip A block (66.5 KB) and two 24 KB stages per group, so while a group
// computes one 64 x 128 tile only the next one (16 KB of W0) is in flight; the copy probe keeps three per group and
// moves 92-93 % of copy against the SGMM's 84 % (H200).  Here a group computes each tile as two 32-row halves, all 8
// warps on one half (16 x 32 per warp), and the stages hold half tiles (8 KB of W0 + 32 LoRA-B rows): the same shared
// memory holds 4 of them, so 3 half tiles (24 KB of W0) are in flight while one is computed.  Each warp loads its
// LoRA-A fragments once per half instead of once per tile, and the group meets at a barrier twice per tile.  Same
// products in the same order (ascending 16-rank steps from zero, then one fmaf from W0): the same bits.
constexpr int S3_HALF_W0 = 32 * S3_C * 2;  // a half tile's W0
__host__ __device__ inline int s3_half_stage(int rank) { return S3_HALF_W0 + 32 * s3_ldb(rank) * 2; }
// Plan: two groups (one only where two do not fit), the widest super-strip that leaves >= 3 half stages, and at most
// `def_ns` stages unless the harness caps them: the launcher passes 4 on GPUs with more than 4 TB/s of peak memory
// bandwidth, 3 below (more bytes in flight where the memory system needs them).  Session 46 (all 64 q,v weights of
// Llama-2-7B, % of copy, harness processes on one H200 and four H100s; bench/results/2026-12-05-h100-session46): H200
// 4 stages: r64 85.3-86.3 (whole tiles 84.2-84.5), r32 89.7-89.9 (86.9-87.0), r16 90.0-90.5 (88.8-89.1); 3 stages:
// 82.4-84.9 / 88.6-88.8 / 89.0-89.1.  H100 3 stages: r64 87.3-87.8 (whole 87.4-88.0), r32 91.1-91.8 (91.1-91.6), r16
// 91.5-92.3 (90.6-91.3); 4 stages: 86.4-86.9 / 91.0-91.2 / 91.5-91.6.  One group of 8 stages: 86.6-88.7 on the H100,
// 61-82 on the H200.
__host__ __device__ inline S3Plan s3_plan_half(int smem, int rank, int cfg_groups, int cfg_maxst, int cfg_strip,
                                               int def_ns) {
  const bool fs = cfg_strip == 1 || cfg_strip == 2 || cfg_strip == 4 || cfg_strip == 8;
  const int maxst = cfg_maxst >= 2 && cfg_maxst <= S3_MAXNS ? cfg_maxst : def_ns;
  S3Plan p{1, 0, 0, 0, 1};
  if (rank > 128) return p;  // B rows of more than 2 chunks per thread: not this path
  for (int g = 2; g >= 1 && !p.resident; g--) {
    if ((cfg_groups == 1 || cfg_groups == 2) && g != cfg_groups) continue;
    p.groups = g;
    p.per = ((smem - S3_HDR) / g) & ~127;
    for (int st = 8; st >= 1; st >>= 1) {
      if (fs && st != cfg_strip) continue;
      const long long n = (long long)p.per - (long long)rank * s3_alds(st) * 2;
      const int ns = n <= 0 ? 0 : (int)(n / s3_half_stage(rank));
      if (ns >= 3) { p.resident = 1; p.ns = ns > maxst ? maxst : ns; p.strip = st; break; }
    }
  }
  if (!p.resident) p.ns = 0;
  return p;
}

// one 16-row block of a top-1 product: c = B rows (aop) x A fragments (bop), ascending 16-rank steps from zero
template <typename T, int KS>
__device__ __forceinline__ void s3_top1_mma16(float (&c)[4][4], uint32_t aop, uint32_t bop, int alds, int a_hi, int a_sw,
                                              int ks_rt) {
  auto step = [&](int s, bool first) {
    const int kk = s * 16;
    const uint32_t ach = (uint32_t)((((kk >> 3) + a_hi) ^ a_sw) << 4);
    uint32_t a0[4], b0[4], b1[4];
    s3_ldsm_t(bop + kk * alds * 2, b0);
    s3_ldsm_t(bop + kk * alds * 2 + 32, b1);
    s3_ldsm(aop + ach, a0);
    auto mma = [&](float (&acc)[4], uint32_t x, uint32_t y) {
      if (first) s3_hmma0<T>(acc, a0, x, y);
      else s3_hmma<T>(acc, a0, x, y);
    };
    mma(c[0], b0[0], b0[1]);
    mma(c[1], b0[2], b0[3]);
    mma(c[2], b1[0], b1[1]);
    mma(c[3], b1[2], b1[3]);
  };
  step(0, true);
  if constexpr (KS > 0) {
#pragma unroll
    for (int s = 1; s < KS; s++) step(s, false);
  } else {
#pragma unroll 1
    for (int s = 1; s < ks_rt; s++) step(s, false);
  }
}

template <typename T>
__device__ __forceinline__ void s3_top1_half(const SgmmDesc *__restrict__ descs, int n_descs, int t_beg, int t_end,
                                             const int *__restrict__ experts, const float *__restrict__ gates,
                                             unsigned char *gsm, int rmax, int ns, int S, int bar_id, int gt) {
  const int warp = gt >> 5, lane = gt & 31, wm = warp >> 2, wn = warp & 3, g = lane >> 2, q = lane & 3;
  const int ldb = s3_ldb(rmax), stage_bytes = s3_half_stage(rmax), alds = s3_alds(S);
  const S3Bswz bz = s3_bswz(rmax);
  auto b_off = [&](int r, int c) {  // half-stage byte offset of B row r (0..31), logical 16-byte chunk c
    return (uint32_t)(S3_HALF_W0 + r * ldb * 2 + ((c ^ ((r >> bz.sh) & bz.mask)) << 4));
  };
  uint32_t *As = reinterpret_cast<uint32_t *>(gsm);  // A block, 32-bit words (alds / 2 per row)
  const uint32_t a_u32 = s3_smem_u32(As);
  const unsigned char *st0 = gsm + rmax * alds * 2;
  const uint32_t st0_u32 = a_u32 + rmax * alds * 2;

  // ---- producer: half tile (p, hp) into stage ps: W0 rows hp*32 + gt/16 + 16 i (i = 0, 1), 16-byte chunk gt%16
  // (swizzled by row parity), and the half's 32 B rows of the selected expert (chunks gt + 256 u)
  const int pr = gt >> 4, pv = gt & 15;
  const uint32_t w_off = (uint32_t)(pr * S3_C + ((pv ^ ((pr & 1) << 2)) * 8)) * 2;
  S3Cur P_ = s3_cur_at(descs, n_descs, t_beg, S);
  int p = t_beg, hp = 0, ps = 0, pnch = 0, prank = 16;
  const T *pBe = nullptr, *pW0 = nullptr;
  uint32_t sbr[2];  // chunk gt + 256 u of the half's B rows: stage offset | row << 24
  auto pload = [&]() {
    const SgmmDesc *D = descs + P_.d;
    prank = D->rank;
    pBe = static_cast<const T *>(D->B) + (size_t)__ldg(experts + D->slot) * P_.rows * prank;
    pW0 = static_cast<const T *>(D->W0);
    const int per = prank >> 3;
    pnch = 32 * per;
#pragma unroll
    for (int u = 0; u < 2; u++) {
      const int qq = gt + 256 * u, r = qq / per, j8 = qq - r * per;
      sbr[u] = qq < pnch ? b_off(r, j8) | (uint32_t)r << 24 : 0u;
    }
  };
  pload();
  auto issue = [&]() {
    if (p < t_end) {
      const uint32_t st = st0_u32 + ps * stage_bytes;
      const int r0 = P_.r0 + hp * 32, c = P_.c0 + pv * 8;
      const T *src = pW0 + (size_t)(r0 + pr) * P_.cols + c;
      const size_t step = (size_t)16 * P_.cols;
      if (r0 + 32 <= P_.rows && P_.c0 + S3_C <= P_.cols) {
#pragma unroll
        for (int i = 0; i < 2; i++) s3_cp16(st + w_off + i * 16 * S3_C * 2, src + i * step, true);
      } else {
#pragma unroll
        for (int i = 0; i < 2; i++) {
          const bool ok = r0 + pr + 16 * i < P_.rows && c < P_.cols;
          s3_cp16(st + w_off + i * 16 * S3_C * 2, ok ? src + i * step : pW0, ok);
        }
      }
      const T *bt = pBe + (size_t)r0 * prank;  // rows r0 .. r0 + 31 of B_e: 32 * rank contiguous elements
#pragma unroll
      for (int u = 0; u < 2; u++)
        if (gt + 256 * u < pnch) {
          const bool ok = r0 + (int)(sbr[u] >> 24) < P_.rows;
          s3_cp16(st + (sbr[u] & 0xffffffu), ok ? bt + (gt + 256 * u) * 8 : pBe, ok);
        }
      if (hp == 0) {
        hp = 1;
      } else {
        hp = 0;
        p++;
        const int d0 = P_.d;
        s3_cur_next(P_, descs, n_descs, S);
        if (P_.d != d0 && p < t_end) pload();
      }
    }
    s3_commit();
    ps = ps + 1 == ns ? 0 : ps + 1;
  };
  for (int i = 0; i < ns - 1; i++) issue();

  // ---- consumer: warp (wm, wn) computes rows wm*16 .. +15 of the half, columns wn*32 .. +31 of the strip
  const uint32_t a_lane = (uint32_t)((lane & 15) * ldb * 2);
  const int a_hi = lane >> 4, a_sw = ((lane & 15) >> bz.sh) & bz.mask;
  const uint32_t b_lane = (uint32_t)(((((lane >> 3) & 1) * 8 + (lane & 7)) * alds + wn * 32 + (lane >> 4) * 8) * 2);
  const int chunk = wn * 4 + q, lrow = wm * 16 + g;
  const int w0_lane = (lrow * S3_C + ((chunk ^ ((g & 1) << 2)) * 8)) * 2;  // row lrow + 8 keeps the parity of g
  S3Cur C = s3_cur_at(descs, n_descs, t_beg, S);
  int cst = 0, a_d = -1, a_cb = -1, crank = 16;
  T *cW = nullptr;
  float gk = 0.f;
  for (int t = t_beg; t < t_end; t++) {
#pragma unroll 1
    for (int h = 0; h < 2; h++) {
      s3_wait(ns - 2);  // this thread's copies of the half have landed
      s3_bar(bar_id);   // everyone's have; everyone is done with the previous half (its stage, the A block)
      issue();          // the half ns - 1 ahead into the stage the previous half used
      if (h == 0 && (C.d != a_d || C.cb != a_cb)) {  // new super-strip: its A rows, words transposed (s3_resident)
        const SgmmDesc *D = descs + C.d;
        crank = D->rank;
        cW = static_cast<T *>(D->W);
        const int e = __ldg(experts + D->slot);
        gk = __ldg(gates + D->slot) * D->scale;
        s3_stage_a(As, alds, static_cast<const T *>(D->A), crank, C.cols, C.cb, S, gt,
                   [&](int row) { return (size_t)e * crank + row; });
        s3_bar(bar_id);
        a_d = C.d;
        a_cb = C.cb;
      }
      const uint32_t st = st0_u32 + cst * stage_bytes;
      const uint32_t bop = a_u32 + b_lane + C.si * (S3_C * 2);
      const uint32_t aop = st + S3_HALF_W0 + a_lane + wm * 16 * ldb * 2;
      float c[4][4];
      if (crank == 64) s3_top1_mma16<T, 4>(c, aop, bop, alds, a_hi, a_sw, 4);
      else if (crank == 32) s3_top1_mma16<T, 2>(c, aop, bop, alds, a_hi, a_sw, 2);
      else if (crank == 16) s3_top1_mma16<T, 1>(c, aop, bop, alds, a_hi, a_sw, 1);
      else s3_top1_mma16<T, 0>(c, aop, bop, alds, a_hi, a_sw, crank >> 4);
      const unsigned char *w0p = st0 + cst * stage_bytes + w0_lane;
      const int row0 = C.r0 + h * 32 + lrow;  // rows row0, row0 + 8
      T *wq = cW + (size_t)row0 * C.cols + C.c0 + chunk * 8;
      const bool cok = C.c0 + chunk * 8 < C.cols;
#pragma unroll
      for (int m = 0; m < 2; m++) {  // row lrow + 8 m: accumulator elements 2 m, 2 m + 1
        const uint4 w0 = *reinterpret_cast<const uint4 *>(w0p + m * 8 * S3_C * 2);
        float f[8];
        unpack16<T>(w0, f);
#pragma unroll
        for (int j = 0; j < 4; j++) {  // W = round(fmaf(g, tmp, W0)): one FFMA per element
          f[2 * j] = fmaf(gk, c[j][2 * m], f[2 * j]);
          f[2 * j + 1] = fmaf(gk, c[j][2 * m + 1], f[2 * j + 1]);
        }
        if (cok && row0 + 8 * m < C.rows) st_stream(wq + (size_t)m * 8 * C.cols, pack16<T>(f));
      }
      cst = cst + 1 == ns ? 0 : cst + 1;
    }
    s3_cur_next(C, descs, n_descs, S);
  }
  s3_wait(0);
}

template <typename T>
__device__ __noinline__ void s3_run_call(const SgmmDesc *__restrict__ descs, int n_descs, int total_tiles,
                                         const int *__restrict__ experts, const float *__restrict__ gates,
                                         unsigned char *s3_smem, int smem_bytes, int rmax, int cfg_groups, int cfg_maxst,
                                         int cfg_strip, int cfg_flags) {
  s3_run<T>(descs, n_descs, total_tiles, 1, experts, gates, s3_smem, smem_bytes, rmax, cfg_groups, cfg_maxst, cfg_strip,
            cfg_flags);
}

// The launcher's kernel for top-1 launches with S3_F_HALF: s3_top1_half where its plan fits (rank <= 128), else
// variant 3's own plan (s3_run).
template <typename T>
__global__ void __launch_bounds__(512, 1) sgmm_tc_stream_half_kernel(const SgmmDesc *__restrict__ descs, int n_descs,
                                                                    int total_tiles, const int *__restrict__ experts,
                                                                    const float *__restrict__ gates, const int *skip,
                                                                    int smem_bytes, int cfg_groups, int cfg_maxst,
                                                                    int cfg_strip, int cfg_flags, int def_ns) {
  if (skip && *skip) return;
  extern __shared__ __align__(128) unsigned char s3_smem[];
  const int rmax = s3_max_rank(descs, n_descs, reinterpret_cast<int *>(s3_smem));
  const S3Plan pl = s3_plan_half(smem_bytes, rmax, cfg_groups, cfg_maxst, cfg_strip, def_ns);
  if (!pl.resident) {  // (not inlined: its registers would crowd s3_top1_half's)
    s3_run_call<T>(descs, n_descs, total_tiles, experts, gates, s3_smem, smem_bytes, rmax, cfg_groups, cfg_maxst,
                   cfg_strip, cfg_flags);
    return;
  }
  const int grp = threadIdx.x >> 8;
  if (grp >= pl.groups) return;
  const int bar_id = 1 + grp, gt = threadIdx.x & 255;
  const int nr = gridDim.x * pl.groups, id = blockIdx.x * pl.groups + grp;
  const int t_beg = (int)((long long)total_tiles * id / nr), t_end = (int)((long long)total_tiles * (id + 1) / nr);
  if (t_beg >= t_end) return;
  s3_top1_half<T>(descs, n_descs, t_beg, t_end, experts, gates, s3_smem + S3_HDR + grp * pl.per, rmax, pl.ns,
                  pl.strip, bar_id, gt);
}

// The copy probes' walk (harness diagnostics, no math): each 256-thread group of a block copies a contiguous range of
// the tiles, 3 tiles in flight in registers.  tile(t): tile t's description; ld(x, i, v) loads 16-byte chunk i (0..3)
// of this thread in tile x into v, st(x, i, v) stores it.
template <typename TileF, typename LdF, typename StF>
__device__ __forceinline__ void copy_probe_walk(int total_tiles, TileF tile, LdF ld, StF st) {
  const int grp = threadIdx.x >> 8;
  const int nr = gridDim.x * 2, id = blockIdx.x * 2 + grp;
  const int t_beg = (int)((long long)total_tiles * id / nr), t_end = (int)((long long)total_tiles * (id + 1) / nr);
  if (t_beg >= t_end) return;
  using Tl = decltype(tile(0));
  constexpr int P = 3;
  uint4 buf[P][4];
  Tl tl[P];
  auto load = [&](int t, uint4 (&b)[4], Tl &x) {
    if (t >= t_end) return;
    x = tile(t);
#pragma unroll
    for (int i = 0; i < 4; i++) ld(x, i, b[i]);
  };
#pragma unroll
  for (int s = 0; s < P; s++) load(t_beg + s, buf[s], tl[s]);
  for (int t0 = t_beg; t0 < t_end; t0 += P) {
#pragma unroll
    for (int s = 0; s < P; s++) {
      const int t = t0 + s;
      if (t < t_end) {
#pragma unroll
        for (int i = 0; i < 4; i++) st(tl[s], i, buf[s][i]);
        load(t + P, buf[s], tl[s]);
      }
    }
  }
}

// Harness diagnostic: W = W0 over the 64 x 128 tiles in variant 3's geometry (one block of 2 x 256 threads per SM,
// each group a contiguous range of the strip-major tile order, 16-byte loads of 3 tiles in flight in registers), no
// math.  Its per-tile descriptor search and bounds checks cost it 1-1.5 points (91.0-91.2 % of copy on the H200,
// against 92.2-92.8 % for sgmm_copy_probe_shape in the same geometry, session 36).
// ACC (pattern 4, session 46): each thread copies the chunks the top-1 epilogue owns instead (rows wm*32 + g + 8 i,
// 16-byte chunk wn*4 + q: a warp instruction covers 8 rows x 64 bytes, a row's 256 bytes come from 4 warps).  On an H100
// it moved 86.2-86.6 % of copy against pattern 3's 92.8-93.4 % (bench/results/2026-12-05-h100-session46): loading W0
// straight into the epilogue's registers costs the SGMM 7 points before anything else, one reason why W0 in registers
// (s3_top1_w0r there, 64 % against 89 % through shared memory) was dropped.
template <bool ACC>
__global__ void __launch_bounds__(512, 1) sgmm_copy_tiles_kernel(const SgmmDesc *__restrict__ descs, int n_descs,
                                                                 int total_tiles) {
  const int gt = threadIdx.x & 255;
  const int w = gt >> 5, ln = gt & 31;
  auto rc = [&](int i, int &r, int &c) {  // this thread's chunk i of a tile: row, column
    if (ACC) { r = (w >> 2) * 32 + (ln >> 2) + 8 * i; c = ((w & 3) * 4 + (ln & 3)) * 8; }
    else { const int qq = gt + i * 256; r = qq >> 4; c = (qq & 15) * 8; }
  };
  struct Tl { const uint4 *src; uint4 *dst; int rows, cols, r0, c0; };
  copy_probe_walk(
      total_tiles,
      [&](int t) {
        const int di = find_desc(descs, n_descs, t);
        const SgmmDesc &d = descs[di];
        const int tiles_r = (d.rows + S3_R - 1) / S3_R, local = t - d.tile0, cs = local / tiles_r;
        return Tl{static_cast<const uint4 *>(d.W0), static_cast<uint4 *>(d.W), d.rows, d.cols,
                  (local - cs * tiles_r) * S3_R, cs * S3_C};
      },
      [&](const Tl &x, int i, uint4 &v) {
        int r, c;
        rc(i, r, c);
        r += x.r0;
        c += x.c0;
        if (r < x.rows && c < x.cols) v = ld_stream(x.src + ((size_t)r * x.cols + c) / 8);
      },
      [&](const Tl &x, int i, const uint4 &v) {
        int r, c;
        rc(i, r, c);
        r += x.r0;
        c += x.c0;
        if (r < x.rows && c < x.cols) st_stream(x.dst + ((size_t)r * x.cols + c) / 8, v);
      });
}

// Harness diagnostic (session 36): W = W0 in other tile geometries, to see whether the walk's 256-byte row segments
// (64 x 128 tiles) are what holds the copy probe above at ~91 % of copy.  Tiles of 8192 elements, C columns x 8192 / C
// rows (16-byte chunk qq of a tile: row qq / (C / 8), chunk qq % (C / 8)); per matrix, bands of S tiles side by side
// (S = 1: strip-major as above; S = cols / C: row-major), the row blocks of a band in order, the band's S tiles of a
// row block back to back (the streaming SGMM's super-strip order for C = 128).  The same walk as
// sgmm_copy_tiles_kernel (copy_probe_walk), without a descriptor search or bounds checks: every descriptor must have the
// same rows x cols, multiples of the tile's rows and of S * C (the launcher checks).
template <int C>
__global__ void __launch_bounds__(512, 1) sgmm_copy_shape_kernel(const SgmmDesc *__restrict__ descs, int rows, int cols,
                                                                 int S, int total_tiles) {
  constexpr int R = 8192 / C, CPR = C / 8;
  const int gt = threadIdx.x & 255;
  const int tr = rows / R, tpm = tr * (cols / C), tpb = tr * S;  // tiles per matrix, per band
  struct Tl { const uint4 *src; uint4 *dst; int r0, c0; };
  auto at = [&](const Tl &x, int i) {  // this thread's chunk i of tile x, in 16-byte units
    const int qq = gt + i * 256;
    return ((size_t)(x.r0 + qq / CPR) * cols + x.c0 + (qq % CPR) * 8) / 8;
  };
  copy_probe_walk(
      total_tiles,
      [&](int t) {
        const int d = t / tpm, local = t - d * tpm, band = local / tpb, rem = local - band * tpb, rb = rem / S;
        return Tl{static_cast<const uint4 *>(descs[d].W0), static_cast<uint4 *>(descs[d].W), rb * R,
                  (band * S + (rem - rb * S)) * C};
      },
      [&](const Tl &x, int i, uint4 &v) { v = ld_stream(x.src + at(x, i)); },
      [&](const Tl &x, int i, const uint4 &v) { st_stream(x.dst + at(x, i), v); });
}

// 16-bit outputs of every descriptor -> one order-independent 64-bit hash (autotune_sgmm's bit-identity check)
__device__ __forceinline__ unsigned long long s3_mix(unsigned long long z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__global__ void sgmm_checksum_kernel(const SgmmDesc *__restrict__ descs, unsigned long long *out) {
  const SgmmDesc &d = descs[blockIdx.y];
  const size_t nv = (size_t)d.rows * d.cols / 8;  // tensor-core descriptors: 16-bit, cols % 8 == 0, 16-byte aligned
  const uint4 *w = static_cast<const uint4 *>(d.W);
  unsigned long long h = 0;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < nv; i += (size_t)gridDim.x * blockDim.x) {
    const uint4 v = w[i];
    const unsigned long long key = s3_mix(((unsigned long long)blockIdx.y << 40) ^ i);
    h += s3_mix((((unsigned long long)v.x << 32) | v.y) ^ key) + s3_mix((((unsigned long long)v.z << 32) | v.w) ^ ~key);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) h += __shfl_xor_sync(0xffffffffu, h, o);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, h);
}

// 0: one-shot tensor-core kernel, 1: persistent, 3: streaming (same results; autotune_sgmm times 0 and 3,
// checked bit for bit on the real descriptors); 2: the exact register-tiled SIMT kernel on the same tiling
// (bit-identical to the SIMT kernel / the CPU).
// LSW_CUDA_SGMM_VARIANT=v (0..3): forced tensor-core variant (the initial choice; autotune_sgmm keeps it without
// timing; lsw_op_sgmm reads it per call); -1 when unset
int sgmm_env_variant() {
  const char *ev = getenv("LSW_CUDA_SGMM_VARIANT");
  if (!ev || !*ev || ev[1] || ev[0] < '0' || ev[0] > '3') return -1;
  return ev[0] - '0';
}
static int g_sgmm_tc_variant = std::max(0, sgmm_env_variant());
void sgmm_set_tc_variant(int v) { g_sgmm_tc_variant = v >= 0 && v <= 3 ? v : 0; }
int sgmm_tc_variant() { return g_sgmm_tc_variant; }

static int g_s3_groups = 0, g_s3_stages = 0, g_s3_grid = 0, g_s3_strip = 0;
void sgmm_set_stream_cfg(int groups, int max_stages, int grid_blocks, int strip) {
  g_s3_groups = groups == 1 || groups == 2 ? groups : 0;
  g_s3_stages = max_stages >= 2 && max_stages <= S3_MAXNS ? max_stages : 0;
  g_s3_grid = grid_blocks > 0 ? grid_blocks : 0;
  g_s3_strip = strip == 1 || strip == 2 || strip == 4 || strip == 8 ? strip : 0;
}

// the top-1 consumer (s3_top1_mma): on by default; the model reads LSW_CUDA_SGMM_TOP1, the harness switches it per call
static int g_s3_flags = S3_F_TOP1 | S3_F_HALF | S3_F_LOCK | S3_F_WG;
void sgmm_set_stream_top1(bool on) { g_s3_flags = on ? (g_s3_flags | S3_F_TOP1) : (g_s3_flags & ~S3_F_TOP1); }
// top-1 launches in half tiles (s3_top1_half)
void sgmm_set_stream_half(bool on) { g_s3_flags = on ? (g_s3_flags | S3_F_HALF) : (g_s3_flags & ~S3_F_HALF); }
bool sgmm_stream_half() { return (g_s3_flags & S3_F_HALF) != 0; }
// the wgmma consumer (s3_wg_*) where the device runs sm_90a code: 0 off, 1 launches with top_k * max rank = 128, 2 also 64
void sgmm_set_stream_wgmma(int mode) {
  g_s3_flags = (g_s3_flags & ~(S3_F_WG | S3_F_WG64)) | (mode == 1 ? S3_F_WG : mode == 2 ? S3_F_WG | S3_F_WG64 : 0);
}
static int g_s3_diag = 0;
void sgmm_set_stream_diag(int mode) { g_s3_diag = mode == 1 || mode == 2 ? mode : 0; }
int sgmm_stream_wgmma() { return g_s3_flags & S3_F_WG64 ? 2 : g_s3_flags & S3_F_WG ? 1 : 0; }
int sgmm_wgmma_built() {
  static std::atomic<int> built[64];  // per device: 0 unknown, 1 yes, 2 no (two threads may both probe: same answer)
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return 0;
  }
  if (built[dev] == 0) {
    int *d = nullptr, h = 0;
    bool ok = cudaMalloc(&d, sizeof(int)) == cudaSuccess;
    if (ok) {
      sgmm_wg_probe_kernel<<<1, 1>>>(d);
      ok = cudaGetLastError() == cudaSuccess && cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
      cudaFree(d);
    }
    if (!ok) cudaGetLastError();
    built[dev] = ok && h == 1 ? 1 : 2;
  }
  return built[dev] == 1;
}
// the lockstep schedule over same-shape matrices (s3_segments): 0 off, 1 where it pays (s3_lock_pays), 2 wherever it
// applies
void sgmm_set_stream_lock(int mode) {
  g_s3_flags = (g_s3_flags & ~(S3_F_LOCK | S3_F_LOCK_ALL)) | (mode == 1 ? S3_F_LOCK : mode == 2 ? S3_F_LOCK_ALL : 0);
}
int sgmm_stream_lock() { return g_s3_flags & S3_F_LOCK_ALL ? 2 : g_s3_flags & S3_F_LOCK ? 1 : 0; }

static int persist_grid(int total_tiles) { return std::max(1, std::min(total_tiles, 2 * sm_count())); }

// Variant 3 needs more than 48 KB of dynamic shared memory: cudaFuncSetAttribute once per device and template
// instance.  Done outside stream capture only (sgmm_prepare, autotune_sgmm, or the first non-capturing sgmm());
// a launch that finds the device not set up while its stream is capturing runs variant 0 instead (bit-identical).
struct S3Dev {
  int state = 0;  // 0: not tried, 1: ready, -1: unavailable (too little shared memory or an error)
  int sms = 0, smem = 0;
  int half_ns = 3;  // s3_plan_half's stage cap: 4 above 4 TB/s of peak memory bandwidth
};
static std::mutex g_s3_mu;
static S3Dev g_s3_dev[64];

static const S3Dev *s3_device(bool may_setup) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return nullptr;
  }
  std::lock_guard<std::mutex> lk(g_s3_mu);
  S3Dev &sd = g_s3_dev[dev];
  if (sd.state == 0 && may_setup) {
    int sms = 0, optin = 0;
    bool ok = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
              cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
              sms > 0 && optin >= S3_MIN_SMEM;
    if (ok)
      ok = cudaFuncSetAttribute(sgmm_tc_stream_kernel<__half, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_kernel<__nv_bfloat16, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_kernel<__half, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_kernel<__nv_bfloat16, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_kernel<__half, S3_WG_NOMMA>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_kernel<__half, S3_WG_NOB>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_half_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess &&
           cudaFuncSetAttribute(sgmm_tc_stream_half_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess;
    if (!ok) cudaGetLastError();
    sd.sms = sms;
    sd.smem = optin;
    int mclk = 0, bus = 0;  // kHz, bits
    if (cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess)
      sd.half_ns = 2.0 * mclk * 1e3 * bus / 8 > 4e12 ? 4 : 3;  // H200: 4.9 TB/s, H100 SXM: 3.35
    else
      cudaGetLastError();
    sd.state = ok ? 1 : -1;
    if (cuda_verbose())
      fprintf(stderr, "lswc: sgmm streaming kernel %s (device %d: %d SMs, %d bytes of shared memory per block, top-1 half "
              "tiles with up to %d stages)\n", ok ? "ready" : "unavailable", dev, sms, optin, sd.half_ns);
  }
  return sd.state == 1 ? &sd : nullptr;
}

int sgmm_stream_plan(int top_k, int max_rank, int *groups, int *stages, int *strip) {
  const S3Dev *sd = s3_device(false);
  if (!sd) return 0;
  if (top_k == 1 && (g_s3_flags & S3_F_HALF)) {
    const S3Plan w = s3_plan_half(sd->smem, max_rank, g_s3_groups, g_s3_stages, g_s3_strip, sd->half_ns);
    if (w.resident) {
      if (groups) *groups = w.groups;
      if (stages) *stages = w.ns;
      if (strip) *strip = w.strip;
      return 3;
    }
  }
  const S3Plan p = s3_plan(sd->smem, top_k * max_rank, g_s3_groups, g_s3_stages, g_s3_strip);
  if (p.ns < 2) return 0;
  if (groups) *groups = p.groups;
  if (stages) *stages = p.ns;
  if (strip) *strip = p.strip;
  return p.resident ? 1 : 2;
}

bool sgmm_tc_ok(int dtype, const SgmmDesc &d) {
  return (dtype == LSW_DTYPE_F16 || dtype == LSW_DTYPE_BF16) && d.rank % 16 == 0 && d.rank > 0 && d.cols % 8 == 0 &&
         aligned16(d.W0) && aligned16(d.W) && aligned16(d.A) && aligned16(d.B);
}

int sgmm_prepare(SgmmDesc *descs, int n, bool tc, int *max_rank) {
  int tiles = 0;
  if (max_rank) *max_rank = 0;
  for (int i = 0; i < n; i++) {
    if (max_rank) *max_rank = std::max(*max_rank, descs[i].rank);
    descs[i].tile0 = tiles;
    const int tr = tc ? TC_R : ST_R, tcc = tc ? TC_C : ST_C;
    tiles += cdiv(descs[i].rows, tr) * cdiv(descs[i].cols, tcc);
  }
  if (tc && n > 0) s3_device(true);  // host side, before any capture: set the streaming kernel's smem limit
  return tiles;
}

cudaError_t sgmm(int dtype, const SgmmDesc *descs, int n_descs, int total_tiles, bool tc, int top_k,
                 const int *experts, const float *gates, const int *skip, cudaStream_t s, int max_rank) {
  if (n_descs <= 0 || total_tiles <= 0) return cudaSuccess;
  int variant = g_sgmm_tc_variant;
  const S3Dev *sd = nullptr;
  if (tc && variant == 3) {
    sd = s3_device(false);
    if (!sd) {  // first use on this device: set it up unless the stream is being captured
      cudaStreamCaptureStatus cs = cudaStreamCaptureStatusActive;
      const bool failed = cudaStreamIsCapturing(s, &cs) != cudaSuccess;
      if (failed) cudaGetLastError();
      if (!failed && cs == cudaStreamCaptureStatusNone) sd = s3_device(true);
    }
    if (!sd) variant = 0;
  }
  if (tc && variant == 3) {
    int grid = g_s3_grid > 0 ? std::min(g_s3_grid, sd->sms) : sd->sms;
    grid = std::max(1, std::min(grid, total_tiles));
    if (top_k == 1 && (g_s3_flags & S3_F_HALF)) {
      if (dtype == LSW_DTYPE_F16)
        sgmm_tc_stream_half_kernel<__half><<<grid, 512, sd->smem, s>>>(descs, n_descs, total_tiles, experts, gates, skip,
                                                                       sd->smem, g_s3_groups, g_s3_stages, g_s3_strip,
                                                                       g_s3_flags, sd->half_ns);
      else if (dtype == LSW_DTYPE_BF16)
        sgmm_tc_stream_half_kernel<__nv_bfloat16><<<grid, 512, sd->smem, s>>>(descs, n_descs, total_tiles, experts, gates,
                                                                              skip, sd->smem, g_s3_groups, g_s3_stages,
                                                                              g_s3_strip, g_s3_flags, sd->half_ns);
      else return cudaErrorInvalidValue;
    } else {
      const bool wg = (g_s3_flags & S3_F_WG) && max_rank > 0 && s3_wg_takes(top_k * max_rank, g_s3_flags);
      auto launch = [&](auto kern) {
        kern<<<grid, 512, sd->smem, s>>>(descs, n_descs, total_tiles, top_k, experts, gates, skip, sd->smem, g_s3_groups,
                                         g_s3_stages, g_s3_strip, g_s3_flags);
      };
      if (dtype == LSW_DTYPE_F16 && wg && g_s3_diag)
        launch(g_s3_diag == 1 ? sgmm_tc_stream_kernel<__half, S3_WG_NOMMA> : sgmm_tc_stream_kernel<__half, S3_WG_NOB>);
      else if (dtype == LSW_DTYPE_F16) launch(wg ? sgmm_tc_stream_kernel<__half, 1> : sgmm_tc_stream_kernel<__half, 0>);
      else if (dtype == LSW_DTYPE_BF16)
        launch(wg ? sgmm_tc_stream_kernel<__nv_bfloat16, 1> : sgmm_tc_stream_kernel<__nv_bfloat16, 0>);
      else return cudaErrorInvalidValue;
    }
  } else if (tc && variant == 2) {
    if (dtype == LSW_DTYPE_F16) sgmm_exact_tiled_kernel<__half><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip);
    else if (dtype == LSW_DTYPE_BF16) sgmm_exact_tiled_kernel<__nv_bfloat16><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip);
    else return cudaErrorInvalidValue;
  } else if (tc && variant == 1) {
    const int grid = persist_grid(total_tiles);
    if (dtype == LSW_DTYPE_F16) sgmm_tc_persist_kernel<__half><<<grid, 256, 0, s>>>(descs, n_descs, total_tiles, top_k, experts, gates, skip);
    else if (dtype == LSW_DTYPE_BF16) sgmm_tc_persist_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(descs, n_descs, total_tiles, top_k, experts, gates, skip);
    else return cudaErrorInvalidValue;
  } else if (tc) {
    if (dtype == LSW_DTYPE_F16) sgmm_tc_kernel<__half><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip);
    else if (dtype == LSW_DTYPE_BF16) sgmm_tc_kernel<__nv_bfloat16><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip);
    else return cudaErrorInvalidValue;
  } else {
    switch (dtype) {
      case LSW_DTYPE_F32: sgmm_simt_kernel<float><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip); break;
      case LSW_DTYPE_F16: sgmm_simt_kernel<__half><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip); break;
      case LSW_DTYPE_BF16: sgmm_simt_kernel<__nv_bfloat16><<<total_tiles, 256, 0, s>>>(descs, n_descs, top_k, experts, gates, skip); break;
      default: return cudaErrorInvalidValue;
    }
  }
  LSWC_LAUNCH_RET();
}

cudaError_t sgmm_copy_probe(int pattern, int dtype, const SgmmDesc *descs, int n_descs, int total_tiles, cudaStream_t s) {
  if (n_descs <= 0 || total_tiles <= 0) return cudaSuccess;
  if (dtype != LSW_DTYPE_F16 && dtype != LSW_DTYPE_BF16) return cudaErrorInvalidValue;
  const int sms = sm_count();  // (grid size only)
  if (pattern == 3 || pattern == 4) {
    const int grid = std::max(1, std::min(sms, total_tiles));
    if (pattern == 3) sgmm_copy_tiles_kernel<false><<<grid, 512, 0, s>>>(descs, n_descs, total_tiles);
    else sgmm_copy_tiles_kernel<true><<<grid, 512, 0, s>>>(descs, n_descs, total_tiles);
  } else {
    return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

cudaError_t sgmm_copy_probe_shape(int dtype, const SgmmDesc *descs, int n_descs, int rows, int cols, int C, int S,
                                  cudaStream_t s) {
  if (n_descs <= 0) return cudaSuccess;
  if (dtype != LSW_DTYPE_F16 && dtype != LSW_DTYPE_BF16) return cudaErrorInvalidValue;
  if (C != 128 && C != 256 && C != 512 && C != 1024 && C != 4096) return cudaErrorInvalidValue;
  const int R = 8192 / C;
  if (S < 1 || rows <= 0 || cols <= 0 || rows % R || cols % (S * C)) return cudaErrorInvalidValue;
  const int sms = sm_count();  // (grid size only)
  const long long tiles = (long long)n_descs * (rows / R) * (cols / C);
  if (tiles > (1LL << 30)) return cudaErrorInvalidValue;
  const int grid = (int)std::max(1LL, std::min((long long)sms, tiles));
  switch (C) {
    case 128: sgmm_copy_shape_kernel<128><<<grid, 512, 0, s>>>(descs, rows, cols, S, (int)tiles); break;
    case 256: sgmm_copy_shape_kernel<256><<<grid, 512, 0, s>>>(descs, rows, cols, S, (int)tiles); break;
    case 512: sgmm_copy_shape_kernel<512><<<grid, 512, 0, s>>>(descs, rows, cols, S, (int)tiles); break;
    case 1024: sgmm_copy_shape_kernel<1024><<<grid, 512, 0, s>>>(descs, rows, cols, S, (int)tiles); break;
    default: sgmm_copy_shape_kernel<4096><<<grid, 512, 0, s>>>(descs, rows, cols, S, (int)tiles); break;
  }
  LSWC_LAUNCH_RET();
}

}  // namespace lswc

namespace lswc {
int autotune_sgmm(int dtype, const SgmmDesc *descs, int n_descs, int total_tiles, int top_k, const int *experts,
                  const float *gates, cudaStream_t s, int max_rank) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (n_descs <= 0 || total_tiles <= 0 || cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    return g_sgmm_tc_variant;
  }
  const int forced = sgmm_env_variant();
  if (forced >= 0) {
    if (forced == 3) s3_device(true);
    g_sgmm_tc_variant = forced;
    if (cuda_verbose()) fprintf(stderr, "lswc: sgmm tensor-core kernel -> variant %d (LSW_CUDA_SGMM_VARIANT)\n", forced);
    return forced;
  }
  const int saved = g_sgmm_tc_variant;
  if (saved == 2) return saved;  // exact kernel chosen on purpose (different semantics): nothing to tune
  // variant 3 is autotuned again since the H200 run of 2026-12-01 05:00 UTC: without the L2 cache-hint copies its
  // mixed-descriptor tests (32-256 tiles per group, 2-8 stages, resident and chunked) pass bit-identical to
  // variant 0 and compute-sanitizer memcheck is clean (bench/results/2026-12-01-h200-session3); the first run had
  // died with an illegal instruction once a group copied inside its loop (the cache-hinted cp.async).
  const bool have3 = s3_device(true) != nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  // candidates: variants 0 (the reference of the checksum) and 3.  Variant 1 (persistent) is not timed: it never won
  // on the H200 (3.2 ms against 3.1 for variant 0 and 1.2 for variant 3, 64 q,v weights r16 top-2), and timing it
  // cost ~30 ms of every q,v merge model's load (~100 ms all-linear); LSW_CUDA_SGMM_VARIANT=1 still selects it.
  constexpr int NC = 2;
  unsigned long long *dsum = nullptr;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess ||
      cudaMalloc(&dsum, NC * sizeof(unsigned long long)) != cudaSuccess) {  // one per candidate
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaGetLastError();
    return saved;
  }
  // each candidate: 1 warm-up + 3 timed runs; then a checksum of every W it wrote.  Variant 3 is kept only when
  // that checksum equals variant 0's (bit-identical merge on these descriptors).
  const int cand[NC] = {0, 3};
  float best[NC] = {1e30f, 1e30f};
  unsigned long long sum[NC] = {0, 0};
  bool ran[NC] = {false, false};
  const int sms = sm_count();
  bool ok = cudaMemsetAsync(dsum, 0, NC * sizeof(unsigned long long), s) == cudaSuccess && n_descs <= 65535;
  for (int c = 0; c < NC && ok; c++) {
    if (cand[c] == 3 && !have3) continue;
    g_sgmm_tc_variant = cand[c];
    for (int rep = 0; rep < 4 && ok; rep++) {
      cudaEventRecord(e0, s);
      ok = sgmm(dtype, descs, n_descs, total_tiles, true, top_k, experts, gates, nullptr, s, max_rank) == cudaSuccess;
      cudaEventRecord(e1, s);
      if (!ok || cudaEventSynchronize(e1) != cudaSuccess) { ok = false; break; }
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      if (rep > 0) best[c] = std::min(best[c], ms);  // rep 0 is the warm-up
    }
    if (!ok) break;
    sgmm_checksum_kernel<<<dim3(2 * sms, n_descs), 256, 0, s>>>(descs, dsum + c);
    ok = cudaGetLastError() == cudaSuccess;
    ran[c] = ok;
  }
  if (ok) ok = cudaMemcpyAsync(sum, dsum, sizeof sum, cudaMemcpyDeviceToHost, s) == cudaSuccess &&
               cudaStreamSynchronize(s) == cudaSuccess;
  int pick = 0;
  if (ok) {
    for (int c = 1; c < NC; c++) {
      if (!ran[c]) continue;
      if (sum[c] != sum[0]) {  // never expected: the harness checks it; refuse the kernel rather than merge differently
        fprintf(stderr, "lswc: sgmm tensor-core variant %d differs from the one-shot kernel on this model: not used\n", cand[c]);
        continue;
      }
      if (best[c] < best[pick]) pick = c;
    }
    g_sgmm_tc_variant = cand[pick];
    // W must end up holding a valid merge: run the chosen kernel last
    ok = sgmm(dtype, descs, n_descs, total_tiles, true, top_k, experts, gates, nullptr, s, max_rank) == cudaSuccess &&
         cudaStreamSynchronize(s) == cudaSuccess;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(dsum);
  if (!ok) {
    cudaGetLastError();
    g_sgmm_tc_variant = saved;
    // the merge may be half-done: leave W holding the saved kernel's merge (best effort)
    if (sgmm(dtype, descs, n_descs, total_tiles, true, top_k, experts, gates, nullptr, s, max_rank) != cudaSuccess ||
        cudaStreamSynchronize(s) != cudaSuccess)
      cudaGetLastError();
    return saved;
  }
  if (cuda_verbose())
    fprintf(stderr, "lswc: sgmm tensor-core kernel -> variant %d (one-shot %.3f ms, streaming %s%.3f ms, %d tiles)\n",
            g_sgmm_tc_variant, best[0], have3 ? "" : "unavailable ", have3 ? best[1] : 0.f, total_tiles);
  return g_sgmm_tc_variant;
}
}  // namespace lswc

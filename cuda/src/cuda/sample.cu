// Router (softmax + top-k + renormalise) and token sampling on the device.
// Sampling follows the CPU algorithm (cuda/src/cpu.cpp, lsw.h "Sampling") step by step:
//   greedy when temperature <= 0 or top_k == 1 (argmax, lowest id on ties);
//   1. top-k on the logits, order (logit desc, id asc)   2. p = softmax(l/T) in fp64 over the kept ids
//   3. top-p: smallest prefix of (p desc, id asc) whose running sum reaches top_p (summed in that order)
//   4. min-p: keep p >= min_p * max p   5. u = (splitmix(seed ^ splitmix(step)) >> 11) * 2^-53,
//      walk the kept ids ascending until the running sum exceeds u * total.
// Paths: at most 1,024 candidates after top-k (generate's default top-k 40 included): sample_compact in one block, or
// sample_mb_kernel on vocabularies of at least two 1,024-id slices; every sum is taken in the CPU's order by one
// thread.  Top-p without top-k: sample_mb_kernel's nucleus mode where the nucleus lies among the 1,024 largest logits
// (the softmax denominator a parallel fp64 sum), else the general path, one block, where sums other than the top-p
// running sum are parallel fp64 reductions (top-k by radix passes, top-p by binning the kept ids by p and walking the
// bins from the top in sorted groups: topp_nucleus).  exp() may differ from the host libm by an ulp, so the draw equals
// the CPU's except when u * total falls within ~1e-15 of a boundary.
#include "kernels.cuh"
#include "../topp.h"
#include <math_constants.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace lswc {

// ---- router --------------------------------------------------------------------------------------
// One block per token, route_block (kernels.cuh) for the logits and the steps after them: since session 64 the wide
// layout (a thread per 16-byte chunk of every expert's row; up to 8 experts, the selection in registers by thread 0),
// LSW_CUDA_ROUTE_WIDE=0 the warp per expert.  fold (kernels.cuh route_n): x is h ⊙ w and every logit is scaled by
// rs = 1 / sqrt(Σ in_part / dim + eps).  The CPU's steps: fp64 softmax, stable selection, renormalised gates.
// Programmatic dependent launch (route_set_pdl, while gemv_pdl() is on; the model's default since session 25,
// LSW_CUDA_PDL_ROUTER=0 switches it off): the rows of R, a weight, are requested into L2 before griddepcontrol.wait,
// x and the fold's partials (the previous kernel's) only after it, and the kernel lets its own dependents (the LoRA
// GEMV launch that reads the experts) launch at its start.  Off, the kernel is as before: no trigger, no prefetch
// (the wait is a no-op in a plain launch).
template <typename T>
__global__ void __launch_bounds__(256) route_kernel(int n_experts, int dim, int top_k, const T *__restrict__ R,
                                                    const float *__restrict__ x, int ldx, int *__restrict__ experts,
                                                    float *__restrict__ gates, int ldo, int vec, RouteFold fold,
                                                    int pdl, int wide) {
  extern __shared__ double lsh[];  // [n_experts] exp, then [n_experts] float logits
  float *lg = reinterpret_cast<float *>(lsh + n_experts);
  __shared__ float s_rs;
  __shared__ double s_mx;
  x += (size_t)blockIdx.x * ldx;  // one block per token
  experts += (size_t)blockIdx.x * ldo;
  gates += (size_t)blockIdx.x * ldo;
  if (pdl) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // let the dependents launch
  if (pdl && blockIdx.x == 0) route_prefetch_l2(R, n_experts, dim);  // once per launch (prefetch: no data used)
  asm volatile("griddepcontrol.wait;" ::: "memory");
  route_block<T>(n_experts, dim, top_k, R, x, vec, fold, lg, lsh, &s_rs, &s_mx, experts, gates, wide);
}

static bool g_route_pdl = false;
cudaError_t route_n(int dtype, int n, int n_experts, int dim, int top_k, const void *R, const float *x, int ldx,
                    int *experts, float *gates, int ldo, cudaStream_t s, const RouteFold &fold) {
  if (n <= 0) return cudaSuccess;
  if (dtype_bytes(dtype) == 0 || n_experts <= 0 || top_k <= 0 || top_k > n_experts || (n > 1 && ldo < top_k) ||
      (fold.in_part && n != 1) || (fold.in_part && fold.in_n <= 0))
    return cudaErrorInvalidValue;
  const size_t sh = (sizeof(double) + sizeof(float)) * n_experts;
  const int vec = route_vec(dtype, R, dim);  // and the token's row 16-byte aligned (in the kernel)
  const bool pdl = gemv_pdl() && g_route_pdl;
  with_dtype(dtype, [&](auto tag) {
    using T = LSWC_DT(tag);
    launch_pdl_smem(route_kernel<T>, dim3(n), dim3(256), sh, s, pdl, n_experts, dim, top_k, (const T *)R, x, ldx, experts,
                    gates, ldo, vec, fold, (int)pdl, route_wide());
  });
  LSWC_LAUNCH_RET();
}
void route_set_pdl(bool on) { g_route_pdl = on; }
int route_wide() {
  static const bool wide = env_flag("LSW_CUDA_ROUTE_WIDE", true);
  return wide;
}
cudaError_t route(int dtype, int n_experts, int dim, int top_k, const void *R, const float *x, int *experts,
                  float *gates, cudaStream_t s) {
  return route_n(dtype, 1, n_experts, dim, top_k, R, x, 0, experts, gates, top_k, s);
}

// ---- block reductions (1024 threads) -------------------------------------------------------------
constexpr int SB = 1024;

template <typename V, typename Op>
__device__ V block_reduce(V v, Op op, V *sh /* [32] */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  v = sh[0];
  for (int w = 1; w < (int)(blockDim.x >> 5); w++) v = op(v, sh[w]);
  __syncthreads();
  return v;
}

// argmax with (value desc, id asc), packed so that a max-reduction of the 64-bit key picks it
__device__ __forceinline__ uint32_t fkey(float f) {
  if (f == 0.f) f = 0.f;  // -0 == +0
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ unsigned long long amax_key(float v, int id) {
  return ((unsigned long long)fkey(v) << 32) | (uint32_t)(0x7fffffff - id);
}

__global__ void __launch_bounds__(SB) argmax_kernel(int vocab, const float *__restrict__ l, int *__restrict__ token) {
  __shared__ unsigned long long sh[32];
  unsigned long long best = 0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const unsigned long long k = amax_key(l[i], i);
    best = k > best ? k : best;
  }
  best = block_reduce(best, [](unsigned long long a, unsigned long long b) { return a > b ? a : b; }, sh);
  if (threadIdx.x == 0) *token = 0x7fffffff - (int)(uint32_t)(best & 0xffffffffu);
}

// greedy_advance (kernels.cuh).  GA_T threads per block, GA_U float4 per thread in flight: a block covers GA_T * GA_U *
// 4 logits per round, and the grid is sized so that one round covers the vocabulary (at most GA_MAXB blocks).
// Session 38: this replaced argmax_kernel (one block of 1,024 threads, 32 dependent load rounds at 32k tokens, 126 at
// 128k), advance_kernel and the DevBlk copy node at the end of every greedy decode step.
constexpr int GA_T = 256, GA_U = 4, GA_MAXB = 128;
__global__ void __launch_bounds__(GA_T) greedy_advance_kernel(int vocab, const float *__restrict__ l,
                                                              GreedyState *gs, int *io, int *sampled,
                                                              int *nonfinite, unsigned long long *step,
                                                              const unsigned *blk, unsigned *host_blk, int blk_words) {
  __shared__ unsigned long long sh[32];
  __shared__ bool last;
  asm volatile("griddepcontrol.wait;" ::: "memory");  // the logits (and the step's scalars) are the kernels' before us
  unsigned long long best = 0;
  bool bad = false;  // a NaN or infinite logit seen (nothing can be sampled from such logits: the host reports it)
  const int nv = vocab >> 2, stride = gridDim.x * GA_T;
  const float4 *l4 = reinterpret_cast<const float4 *>(l);  // (the launcher checks 16-byte alignment)
  for (int i0 = blockIdx.x * GA_T + threadIdx.x; i0 < nv; i0 += stride * GA_U) {
    float4 v[GA_U];
#pragma unroll
    for (int u = 0; u < GA_U; u++)
      if (i0 + u * stride < nv) v[u] = __ldcg(l4 + i0 + u * stride);
#pragma unroll
    for (int u = 0; u < GA_U; u++) {
      const int i = i0 + u * stride;
      if (i < nv) {
        const int id = 4 * i;
        bad |= !(isfinite(v[u].x) && isfinite(v[u].y) && isfinite(v[u].z) && isfinite(v[u].w));
        const unsigned long long k0 = amax_key(v[u].x, id), k1 = amax_key(v[u].y, id + 1);
        const unsigned long long k2 = amax_key(v[u].z, id + 2), k3 = amax_key(v[u].w, id + 3);
        const unsigned long long a = k0 > k1 ? k0 : k1, b = k2 > k3 ? k2 : k3, c = a > b ? a : b;
        best = c > best ? c : best;
      }
    }
  }
  if (blockIdx.x == 0)  // the ids past the last whole float4
    for (int id = 4 * nv + threadIdx.x; id < vocab; id += GA_T) {
      const float v = __ldcg(l + id);
      bad |= !isfinite(v);
      const unsigned long long k = amax_key(v, id);
      best = k > best ? k : best;
    }
  bad = __syncthreads_or(bad);
  best = block_reduce(best, [](unsigned long long a, unsigned long long b) { return a > b ? a : b; }, sh);
  if (threadIdx.x == 0) {
    atomicMax(&gs->key, best);
    if (bad) atomicOr(&gs->nonfinite, 1u);
    __threadfence();
    last = atomicAdd(&gs->done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last || threadIdx.x != 0) return;
  __threadfence();
  best = atomicExch(&gs->key, 0ull);  // every block's max is in: read it and re-arm for the next step
  const unsigned nf = atomicExch(&gs->nonfinite, 0u);
  gs->done = 0;
  const int token = 0x7fffffff - (int)(uint32_t)(best & 0xffffffffu);
  *sampled = token;
  *nonfinite = nf ? 1 : 0;
  io[0] = token;  // advance_kernel's bookkeeping
  io[1] += 1;
  io[2] += 1;
  *step += 1;
  __threadfence();
  for (int w = 0; w < blk_words; w++) host_blk[w] = __ldcg(blk + w);
  __threadfence_system();
}

cudaError_t greedy_advance(int vocab, const float *logits, GreedyState *gs, int *io, int *sampled, int *nonfinite,
                           unsigned long long *step, const void *blk, void *host_blk, int blk_bytes, bool pdl,
                           cudaStream_t s) {
  if (vocab <= 0 || !aligned16(logits) || blk_bytes < 0 || blk_bytes % 4 || (blk_bytes && (!blk || !host_blk)))
    return cudaErrorInvalidValue;
  const int blocks = std::max(1, std::min(GA_MAXB, cdiv(vocab, GA_T * GA_U * 4)));
  launch_pdl(greedy_advance_kernel, dim3(blocks), dim3(GA_T), s, pdl, vocab, logits, gs, io, sampled, nonfinite, step,
             static_cast<const unsigned *>(blk), static_cast<unsigned *>(host_blk), blk_bytes / 4);
  LSWC_LAUNCH_RET();
}

cudaError_t argmax(int vocab, const float *logits, int *token, cudaStream_t s) {
  if (vocab <= 0) return cudaErrorInvalidValue;
  argmax_kernel<<<1, SB, 0, s>>>(vocab, logits, token);
  LSWC_LAUNCH_RET();
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---- the compact sampler: top-k (or a whole vocabulary) of at most SK_MAX candidates --------------------------------
// Until session 50 every sampling step ran the general path below over the whole vocabulary: top-k by 32 bit-by-bit
// counting passes plus a binary search over the ties, three softmax passes, top-p by extracting one candidate per
// pass (two block reductions each), a chunked scan for the draw.  One block did all of it: on an H100, 0.238 ms per
// token at 32,000 ids and 1.625 ms at 151,936 with generate's defaults (T 0.8, top-k 40, top-p 0.95, min-p 0.05).
// When the candidates after top-k are at most SK_MAX, this path selects them with four 8-bit radix passes (the
// threshold key tau of the k-th largest logit and how many ties at tau to keep), gathers them in ascending id order
// (two passes over warp-contiguous ranges: counts, then ranked writes), and runs the rest of the algorithm on that
// short list in shared memory.  The sums that the CPU takes in order (softmax, top-p's running sum, the total and the
// walk of the draw) are taken in the same order by one thread, so only exp() can differ from the host's by an ulp.
// H100 (bench/results/2026-12-06-h100-session50, run 5): 0.057 ms at 32,000 ids, 0.222 ms at 151,936 (general path
// 0.237 / 1.364 ms).  Session 51 spread it over several blocks (sample_mb_kernel below): 0.037 / 0.042 ms.
constexpr int SK_MAX = 1024;
constexpr int SU = 8;  // logits each thread loads before it uses any (the passes are latency-bound)

// hist[bin] += 1 for each active lane, one shared-memory atomic per distinct bin of the warp; every lane calls it
__device__ __forceinline__ void hist_add(int *hist, unsigned bin, bool active) {
  const unsigned act = __ballot_sync(0xffffffffu, active);
  if (!active) return;
  const unsigned peers = __match_any_sync(act, bin);
  if ((int)(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
}

// select_gather's shared state (file scope: its 32- and 64-bit instantiations share it, and topp_nucleus borrows
// sg_wgt for its scan; a block runs one of them at a time)
__shared__ int sg_hist[256];
__shared__ int sg_wgt[32], sg_wtie[32], sg_wtie0[32], sg_wsel0[32];
__shared__ int sg_krem, sg_nsel;

// Top-K selection over n keys by (key desc, position asc), then the selected written in position order: key(i) is
// the key of position i (0 .. n-1; every pass calls it again; larger key, earlier), with 0 meaning "not a candidate"
// (never selected); out(at, i, k) receives the at-th selected one (position i, key k).  Returns how many were
// selected: min(K, the candidates).  Every thread of the block calls it; it ends with a block barrier.
// 1. the threshold: the key tau of the K-th largest and `need`, how many keys equal to tau are kept (the lowest
//    positions first), by 8-bit radix passes from the top (4 for 32-bit keys, 8 for 64-bit ones);
// 2. the gather in position order: warp w owns positions [w R, (w + 1) R); counts first, then ranked writes.
template <typename Key, typename KeyF, typename OutF>
__device__ int select_gather(int n, int K, KeyF key, OutF out) {
  __shared__ Key s_prefix;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
  const unsigned lt = (1u << lane) - 1u;
  const bool all = K >= n;
  Key tau = 0;
  int need = 0;
  if (!all) {
    Key prefix = 0, mask = 0;
    int krem = K;
    for (int shift = 8 * (int)sizeof(Key) - 8; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += blockDim.x) sg_hist[b] = 0;
      __syncthreads();
      for (int i0 = 0; i0 < n; i0 += blockDim.x * SU) {  // (uniform trip count: every lane reaches hist_add)
        Key k[SU];
#pragma unroll
        for (int u = 0; u < SU; u++) {
          const int i = i0 + u * blockDim.x + tid;
          k[u] = i < n ? key(i) : Key(0);
        }
#pragma unroll
        for (int u = 0; u < SU; u++)
          hist_add(sg_hist, (unsigned)(k[u] >> shift) & 255u,
                   i0 + u * (int)blockDim.x + tid < n && k[u] != 0 && (k[u] & mask) == prefix);
      }
      __syncthreads();
      if (warp == 0) {  // the first bin from the top whose running count reaches krem: lane L sums bins 255 - 8 L - q
        int c[8], sum = 0;
#pragma unroll
        for (int q = 0; q < 8; q++) sum += (c[q] = sg_hist[255 - 8 * lane - q]);
        int incl = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int y = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += y;
        }
        const int tot = __shfl_sync(0xffffffffu, incl, 31);
        if (tot < krem) {  // fewer candidates than K (only keys of 0 are left): every candidate is kept
          if (lane == 0) { s_prefix = 0; sg_krem = 0; }
        } else if (incl - sum < krem && krem <= incl) {  // exactly one lane
          int cum = incl - sum, q = 0;
          for (; q < 7 && cum + c[q] < krem; q++) cum += c[q];
          s_prefix = prefix | ((Key)(255 - 8 * lane - q) << shift);
          sg_krem = krem - cum;
        }
      }
      __syncthreads();
      prefix = s_prefix;
      krem = sg_krem;
      mask |= (Key)255 << shift;
      __syncthreads();
      if (krem == 0) break;  // (uniform) fewer candidates than K: tau 0 selects every one
    }
    tau = prefix;
    need = krem;
  }
  const int R = ((n + nwarps - 1) / nwarps + 31) & ~31;
  const int w0 = min(n, warp * R), w1 = min(n, w0 + R);
  auto load_keys = [&](int j0, Key (&k)[SU]) {  // this warp's keys of positions j0 + lane + 32 u (0 past w1)
#pragma unroll
    for (int u = 0; u < SU; u++) {
      const int i = j0 + 32 * u + lane;
      k[u] = i < w1 ? key(i) : Key(0);
    }
  };
  int gt = 0, ties = 0;
  for (int j0 = w0; j0 < w1; j0 += 32 * SU) {
    Key k[SU];
    load_keys(j0, k);
#pragma unroll
    for (int u = 0; u < SU; u++) {
      const bool in = j0 + 32 * u + lane < w1 && k[u] != 0;
      gt += __popc(__ballot_sync(0xffffffffu, in && (all || k[u] > tau)));
      ties += __popc(__ballot_sync(0xffffffffu, in && !all && k[u] == tau));
    }
  }
  if (lane == 0) { sg_wgt[warp] = gt; sg_wtie[warp] = ties; }
  __syncthreads();
  if (tid == 0) {
    int t0 = 0, s0 = 0;
    for (int w = 0; w < nwarps; w++) {
      sg_wtie0[w] = t0;
      sg_wsel0[w] = s0;
      s0 += sg_wgt[w] + max(0, min(need - t0, sg_wtie[w]));
      t0 += sg_wtie[w];
    }
    sg_nsel = s0;
  }
  __syncthreads();
  {
    int rt = sg_wtie0[warp], rs = sg_wsel0[warp];
    for (int j0 = w0; j0 < w1; j0 += 32 * SU) {
      Key k[SU];
      load_keys(j0, k);
#pragma unroll
      for (int u = 0; u < SU; u++) {  // in position order: chunk u holds positions j0 + 32 u .. + 31
        const int i = j0 + 32 * u + lane;
        const bool in = i < w1 && k[u] != 0;
        const bool tie = in && !all && k[u] == tau;
        const unsigned tb = __ballot_sync(0xffffffffu, tie);
        const bool sel = in && (all || k[u] > tau || (tie && rt + __popc(tb & lt) < need));
        const unsigned sb = __ballot_sync(0xffffffffu, sel);
        if (sel) out(rs + __popc(sb & lt), i, k[u]);
        rt += __popc(tb);
        rs += __popc(sb);
      }
    }
  }
  const int nsel = sg_nsel;
  __syncthreads();
  return nsel;
}

// fkey's inverse (for the finite values it is applied to; -0 comes back as +0, which every use treats alike)
__device__ __forceinline__ float fkey_inv(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Top-K selection over n float values by (value desc, position asc) (select_gather on fkey): val(i) is value i,
// out(at, i, v) receives the at-th selected one.  K >= n keeps all n.
template <typename ValF, typename OutF>
__device__ void topk_gather(int n, int K, ValF val, OutF out) {
  select_gather<uint32_t>(n, K, [&](int i) { return fkey(val(i)); },
                          [&](int at, int i, uint32_t k) { out(at, i, fkey_inv(k)); });
}

// Sort buffers of sample_tail and of the general path's top-p chunks (file scope: one block runs one of them at a time)
__shared__ double sg_sp[SK_MAX];
__shared__ int sg_ord[SK_MAX];

// Sorts n <= SK_MAX pairs (key[j] >= 0, val[j]) in shared memory by (key desc, val asc): a bitonic sort over the next
// power of two, the padding (key -1) after every pair.  Every thread of the block calls it; it ends with a barrier.
__device__ void bitonic_desc(int n, double *key, int *val) {
  const int tid = threadIdx.x;
  int n2 = 1;
  while (n2 < n) n2 <<= 1;
  for (int c = n + tid; c < n2; c += blockDim.x) {
    key[c] = -1.0;
    val[c] = 0x7fffffff;
  }
  __syncthreads();
  for (int k = 2; k <= n2; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = tid; i < n2; i += blockDim.x) {
        const int x = i ^ j;
        if (x > i) {
          const double pa = key[i], pb = key[x];
          const int ia = val[i], ib = val[x];
          const bool b_first = pb > pa || (pb == pa && ib < ia);  // (key desc, val asc): x before i
          if (b_first == ((i & k) == 0)) {
            key[i] = pb;
            key[x] = pa;
            val[i] = ib;
            val[x] = ia;
          }
        }
      }
      __syncthreads();
    }
}

// Steps 3-6 below (the CPU's softmax, top-p, min-p and draw) on nc <= SK_MAX candidates in ascending id order (shared
// memory: ids cid, logits cl).  Writes *token (thread 0) and returns true.
// nucleus (top-k off, top-p on; sample_mb_kernel): the candidates are the nc largest logits of the vocabulary, and
// softmax is over the whole vocabulary: p = exp(l / T - ext_mx) / ext_sum, the vocabulary's maximum and sum (as the
// general path computes p).  If the running sum of top-p does not reach top_p within the candidates, the nucleus is
// larger than they are: nothing is written and it returns false (the caller takes the general path).
__device__ bool sample_tail(int nc, const int *cid, const float *cl, float temperature, float top_p, float min_p,
                            uint64_t seed, uint64_t step, int *__restrict__ token, bool nucleus = false,
                            double ext_mx = 0.0, double ext_sum = 1.0) {
  __shared__ int kl[SK_MAX], w_n[32];
  __shared__ double cp[SK_MAX];
  __shared__ unsigned char ck[SK_MAX];
  __shared__ int s_keep, s_nk;
  __shared__ double s_sum, shd[32];
  int *ord = sg_ord;  // (p desc, position asc) order of the candidates
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
  // 3. softmax(l / T) in fp64 over the candidates; the sum in ascending id order (the CPU's)
  const double T = temperature;
  double mx = ext_mx;
  if (!nucleus) {
    mx = -CUDART_INF;
    for (int c = tid; c < nc; c += blockDim.x) mx = fmax(mx, (double)cl[c] / T);
    mx = block_reduce(mx, [](double a, double b) { return fmax(a, b); }, shd);
  }
  for (int c = tid; c < nc; c += blockDim.x) {
    cp[c] = exp((double)cl[c] / T - mx);
    ck[c] = 1;
  }
  __syncthreads();
  if (tid == 0) {
    double sum = ext_sum;
    if (!nucleus) {
      sum = 0;
      for (int c = 0; c < nc; c++) sum += cp[c];
    }
    s_sum = sum;
  }
  __syncthreads();
  for (int c = tid; c < nc; c += blockDim.x) cp[c] /= s_sum;
  __syncthreads();
  // 4. top-p: each candidate's rank in (p desc, id asc), then the shortest prefix of that order whose running sum
  //    (summed in that order) reaches top_p
  if (top_p < 1.f) {
    if (nc <= 128) {  // each candidate counts those before it: O(nc^2), cheap for short lists (top-k 40)
      for (int c = tid; c < nc; c += blockDim.x) {
        const double pc = cp[c];
        int r = 0;
        for (int j = 0; j < nc; j++) r += cp[j] > pc || (cp[j] == pc && j < c);
        ord[r] = c;
      }
    } else {  // a bitonic sort of (p, position) (1,024 candidates: 55 steps instead of the 1 M comparisons of
              // counting, which cost ~50 us of the nucleus mode's first version)
      for (int c = tid; c < nc; c += blockDim.x) {
        sg_sp[c] = cp[c];
        ord[c] = c;
      }
      bitonic_desc(nc, sg_sp, ord);
    }
    __syncthreads();
    if (tid == 0) {
      double cum = 0;
      int keep = nucleus ? -1 : nc;  // (nucleus: not reached within the candidates)
      for (int j = 0; j < nc; j++) {
        cum += cp[ord[j]];
        if (cum >= (double)top_p) { keep = j + 1; break; }
      }
      // nucleus: an id outside the candidates has a logit <= the last candidate's, so p <= its p; only when the
      // nucleus's last p is above that is no outside id in it or tied with one of it (the CPU orders ties by id)
      if (nucleus && keep > 0 && !(cp[ord[keep - 1]] > cp[ord[nc - 1]])) keep = -1;
      s_keep = keep;
    }
    __syncthreads();
    if (s_keep < 0) return false;  // (uniform)
    for (int r = tid; r < nc; r += blockDim.x) ck[ord[r]] = r < s_keep;
    __syncthreads();
  }
  // 5. min-p: keep p >= min_p * (the largest kept p)
  if (min_p > 0.f) {
    double pm = 0;
    for (int c = tid; c < nc; c += blockDim.x)
      if (ck[c]) pm = fmax(pm, cp[c]);
    pm = block_reduce(pm, [](double a, double b) { return fmax(a, b); }, shd);
    const double thr = (double)min_p * pm;
    for (int c = tid; c < nc; c += blockDim.x)
      if (ck[c] && !(cp[c] >= thr)) ck[c] = 0;
    __syncthreads();
  }
  // 6. the draw, as the CPU walks it: total of the kept p in ascending id order, then the first kept id whose running
  //    sum exceeds u * total (the last kept one if rounding leaves none).  The kept positions are listed first, in
  //    order (kl), so that thread 0's two sums run over them only.
  if (tid == 0) s_nk = 0;
  __syncthreads();
  for (int c0 = 0; c0 < nc; c0 += blockDim.x) {
    const int c = c0 + tid;
    const bool kept = c < nc && ck[c];
    const unsigned b = __ballot_sync(0xffffffffu, kept);
    if (lane == 0) w_n[warp] = __popc(b);
    __syncthreads();
    int off = s_nk;
    for (int w = 0; w < warp; w++) off += w_n[w];
    if (kept) kl[off + __popc(b & ((1u << lane) - 1u))] = c;
    __syncthreads();
    if (tid == 0) {
      int t = s_nk;
      for (int w = 0; w < nwarps; w++) t += w_n[w];
      s_nk = t;
    }
    __syncthreads();
  }
  if (tid == 0) {
    const int nk = s_nk;
    double total = 0;
    for (int q = 0; q < nk; q++) total += cp[kl[q]];
    const double u = (double)(splitmix64(seed ^ splitmix64(step)) >> 11) * (1.0 / 9007199254740992.0);
    const double target = u * total;
    double cum = 0;
    int pick = -1, last = 0;
    for (int q = 0; q < nk && pick < 0; q++) {
      const int c = kl[q];
      last = cid[c];
      cum += cp[c];
      if (cum > target) pick = cid[c];
    }
    *token = pick >= 0 ? pick : last;
  }
  return true;
}

// K = the candidates to keep (top_k, or the whole vocabulary when top_k is 0 or >= vocab), K <= SK_MAX; the logits
// are finite (checked before).  One block.  Writes *token.
__device__ void sample_compact(int vocab, const float *__restrict__ l, int K, float temperature, float top_p,
                               float min_p, uint64_t seed, uint64_t step, int *__restrict__ token) {
  __shared__ int cid[SK_MAX];
  __shared__ float cl[SK_MAX];
  topk_gather(vocab, K, [&](int i) { return l[i]; }, [&](int at, int i, float v) {
    cid[at] = i;
    cl[at] = v;
  });
  sample_tail(min(K, vocab), cid, cl, temperature, top_p, min_p, seed, step, token);
}

// ---- the general path's top-p ------------------------------------------------------------------------------------
// Until session 55 it took one id per pass over the vocabulary (two block reductions each): ~30 us per nucleus member
// at 151,936 ids on an H100, so ~1.8 s for a nucleus of 60,000.  Now the kept ids are binned by p (counts, then a
// scatter into a list: two passes), and the bins are walked from the top in groups of at most SK_MAX ids, each group
// sorted in shared memory by (p desc, id asc) and summed in that order by thread 0 until the running sum reaches top_p.
// Bins are 1/64 of a binary order of magnitude wide, over the 32 below the largest p.  A bin of more than SK_MAX ids
// whose ids all share one p (logits on a few levels, a flat distribution) is summed by lsw_repeat_add (topp.h:
// the loop's exact result in a few steps per binary order of magnitude of the sum), and its last id taken found by one
// select_gather on the ids; any other bin of more than SK_MAX ids (values very close together) is walked SK_MAX at a
// time by select_gather on unique keys (p's low bits and the id), and the ids below the bins by select_gather over
// the vocabulary.  A 60,768-id nucleus at 151,936 ids: 4.9 ms (H100, bench/results/2026-12-06-h100-session55).
constexpr int TP_BINS = kTopPBins;            // 32 binary orders of magnitude, 64 bins each (lsw_topp_bin)
static_assert(TP_BINS == 2 * SB, "topp_nucleus's scan of the bins' starts gives each thread two bins");
constexpr int TP_MAX_ID = (1 << 18) - 1;      // the big bins' keys hold 18 bits of id (larger vocabularies: no bins)
__shared__ int sg_bin[TP_BINS + 1];           // counts, then each bin's end in the list
__shared__ double s_lastp, s_cum;             // the last id taken (p, id), the running sum
__shared__ int s_lastid, s_done, s_take;      // (s_done: the running sum reached top_p)

// Thread 0 carries the running sum over the m entries of sg_sp / sg_ord, sorted (8 loads ahead of the adds); ends
// with a barrier.
__device__ void topp_walk(int m, float top_p) {
  if (threadIdx.x == 0) {
    const double tp = top_p;
    double cum = s_cum;
    int j = m;  // the entry whose add reached top_p (m: none did)
    for (int j0 = 0; j0 < m && j == m; j0 += 8) {
      double v[8];
#pragma unroll
      for (int u = 0; u < 8; u++) v[u] = j0 + u < m ? sg_sp[j0 + u] : 0.0;
#pragma unroll
      for (int u = 0; u < 8; u++)
        if (j == m && j0 + u < m) {
          cum += v[u];
          if (cum >= tp) j = j0 + u;
        }
    }
    const int at = min(j, m - 1);
    s_lastp = sg_sp[at];
    s_lastid = sg_ord[at];
    s_cum = cum;
    s_done = j < m;
  }
  __syncthreads();
}

// The ids at positions 0 .. n-1 (id_of(pos); -1: none there) after the last one taken, in (p desc, id asc) order,
// SK_MAX at a time, until the running sum reaches top_p or they run out.  skey(v, id) is select_gather's key of an id
// (nonzero; its order must be (p desc, id asc) where positions do not follow ids).
template <typename IdF, typename SKeyF>
__device__ void topp_chunks(int n, const double *p, float top_p, IdF id_of, SKeyF skey) {
  for (;;) {
    const double last_p = s_lastp;
    const int last_id = s_lastid;
    const int m = select_gather<unsigned long long>(
        n, SK_MAX,
        [&](int pos) -> unsigned long long {
          const int i = id_of(pos);
          if (i < 0) return 0ull;
          const double v = p[i];
          if (!(v < last_p || (v == last_p && i > last_id))) return 0ull;  // taken already
          return skey(v, i);
        },
        [&](int at, int pos, unsigned long long) {
          const int i = id_of(pos);
          sg_ord[at] = i;
          sg_sp[at] = p[i];
        });
    if (m == 0) return;  // (uniform)
    bitonic_desc(m, sg_sp, sg_ord);
    topp_walk(m, top_p);
    if (s_done || m < SK_MAX) return;
  }
}

// A bin of nb > SK_MAX ids (ids[0 .. nb-1]) walked at once when every one of them has the same p (logits on a few
// levels, a flat distribution): the running sum by lsw_repeat_add (the loop's bits, a few steps per binary order of
// magnitude of the sum), the last id taken by one select_gather on the ids (the lowest come first).  Returns false,
// having changed nothing, when the bin's p differ.  Every thread calls it; it ends with a barrier.  (Not inlined: the
// general path's registers stay as they were.)
__device__ __noinline__ bool topp_tied_bin(int nb, const int *ids, const double *p, float top_p) {
  __shared__ double shd[32];
  __shared__ int shi[32];
  double lo = CUDART_INF, hi = 0;
  int imax = -1;
  for (int c = threadIdx.x; c < nb; c += blockDim.x) {
    const int i = ids[c];
    lo = fmin(lo, p[i]);
    hi = fmax(hi, p[i]);
    imax = max(imax, i);
  }
  lo = block_reduce(lo, [](double a, double c) { return fmin(a, c); }, shd);
  hi = block_reduce(hi, [](double a, double c) { return fmax(a, c); }, shd);
  if (lo != hi) return false;  // (uniform)
  imax = block_reduce(imax, [](int a, int c) { return max(a, c); }, shi);
  if (threadIdx.x == 0) {
    double cum = s_cum;
    const int take = (int)lsw_repeat_add(cum, lo, nb, (double)top_p);
    s_take = take;
    s_cum = cum;
    s_done = cum >= (double)top_p;
    s_lastp = lo;
    s_lastid = take < nb ? -1 : imax;
  }
  __syncthreads();
  const int take = s_take;
  if (take < nb)  // the last id taken: the largest of the `take` lowest ids (select_gather ends with a barrier)
    select_gather<uint32_t>(nb, take, [&](int pos) { return (uint32_t)(TP_MAX_ID + 1 - ids[pos]); },
                            [&](int, int pos, uint32_t) { atomicMax(&s_lastid, ids[pos]); });
  __syncthreads();
  return true;
}

// Step 3 of the general path: keep [vocab] flags (kept ids 1), p [vocab] their probabilities, then [vocab] ints of
// scratch (the list).  Clears the flags of the kept ids outside the nucleus.  Every thread calls it.
__device__ void topp_nucleus(int vocab, unsigned char *keep, double *p, float top_p) {
  __shared__ double shd[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const unsigned lt = (1u << lane) - 1u;
  int *list = reinterpret_cast<int *>(p + vocab);
  if (tid == 0) {
    s_lastp = CUDART_INF;
    s_lastid = -1;
    s_cum = 0;
    s_done = 0;
  }
  double pm = 0;
  for (int i = tid; i < vocab; i += blockDim.x)
    if (keep[i]) pm = fmax(pm, p[i]);
  pm = block_reduce(pm, [](double a, double b) { return fmax(a, b); }, shd);
  const int emax = (int)((unsigned long long)__double_as_longlong(pm) >> 52);
  auto bin_of = [&](int i) -> int { return keep[i] ? lsw_topp_bin(p[i], emax) : -1; };  // (-1: not kept)
  // f(i, bin of id i) for every id, SU per thread at a time with their bins loaded first (-1 past the vocabulary: every
  // lane calls f the same number of times, as hist_add's and the scatter's warp votes need)
  auto each_bin = [&](auto f) {
    for (int i0 = 0; i0 < vocab; i0 += blockDim.x * SU) {
      int bn[SU];
#pragma unroll
      for (int u = 0; u < SU; u++) {
        const int i = i0 + u * blockDim.x + tid;
        bn[u] = i < vocab ? bin_of(i) : -1;
      }
#pragma unroll
      for (int u = 0; u < SU; u++) f(i0 + u * (int)blockDim.x + tid, bn[u]);
    }
  };
  const bool bins = vocab > SK_MAX && vocab <= TP_MAX_ID;  // (at most SK_MAX ids: one chunk below)
  if (bins) {
    for (int b = tid; b <= TP_BINS; b += blockDim.x) sg_bin[b] = 0;
    __syncthreads();
    each_bin([&](int, int bn) { hist_add(sg_bin, (unsigned)max(bn, 0), bn >= 0); });  // counts
    __syncthreads();
    {  // each bin's start in the list (thread t: bins 2t, 2t + 1), the ids below the bins not listed
      const int c0 = sg_bin[2 * tid], c1 = sg_bin[2 * tid + 1];
      int incl = c0 + c1;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
      }
      if (lane == 31) sg_wgt[warp] = incl;
      __syncthreads();
      if (tid == 0)
        for (int w = 0, run = 0; w < (int)(blockDim.x >> 5); w++) {
          const int t = sg_wgt[w];
          sg_wgt[w] = run;
          run += t;
        }
      __syncthreads();
      const int ex = sg_wgt[warp] + incl - c0 - c1;
      sg_bin[2 * tid] = ex;
      sg_bin[2 * tid + 1] = ex + c0;
      __syncthreads();
    }
    each_bin([&](int i, int bn) {  // the scatter: a bin's ids in any order (sorted later)
      const bool in = bn >= 0 && bn < TP_BINS;
      const unsigned act = __ballot_sync(0xffffffffu, in);
      if (in) {
        const unsigned peers = __match_any_sync(act, bn);
        const int leader = __ffs(peers) - 1;
        int base = 0;
        if (lane == leader) base = atomicAdd(&sg_bin[bn], __popc(peers));
        base = __shfl_sync(peers, base, leader);
        list[base + __popc(peers & lt)] = i;
      }
    });
    __syncthreads();  // sg_bin[b]: the end of bin b (the start of b + 1)
    for (int b = 0; b < TP_BINS && !s_done;) {  // (uniform)
      const int st = b ? sg_bin[b - 1] : 0;
      if (sg_bin[b] - st > SK_MAX) {  // a big bin
        const int nb = sg_bin[b] - st;
        if (!topp_tied_bin(nb, list + st, p, top_p))  // unique keys, (p's bits below the bin's) desc, id asc
          topp_chunks(nb, p, top_p, [&](int pos) { return list[st + pos]; },
                      [](double v, int i) {
                        return (((unsigned long long)__double_as_longlong(v) & ((1ull << 46) - 1)) << 18) |
                               (unsigned long long)(TP_MAX_ID - i);
                      });
        b++;
        continue;
      }
      int e = b + 1, hi = TP_BINS;  // whole bins while they fit: the first e with sg_bin[e] - st > SK_MAX (the ends
      while (e < hi) {               // are non-decreasing), by bisection
        const int mid = (e + hi) >> 1;
        if (sg_bin[mid] - st > SK_MAX) hi = mid; else e = mid + 1;
      }
      const int m = sg_bin[e - 1] - st;
      if (m > 0) {
        for (int c = tid; c < m; c += blockDim.x) {
          const int i = list[st + c];
          sg_ord[c] = i;
          sg_sp[c] = p[i];
        }
        bitonic_desc(m, sg_sp, sg_ord);
        topp_walk(m, top_p);
      }
      b = e;
    }
  }
  __syncthreads();
  if (!s_done)  // the ids below the bins (or every id without bins), in id order: p's bits are the key
    topp_chunks(vocab, p, top_p,
                [&](int i) { return bins ? (bin_of(i) == TP_BINS ? i : -1) : (keep[i] ? i : -1); },
                [](double v, int) { return (unsigned long long)__double_as_longlong(v) | (1ull << 63); });
  const double last_p = s_lastp;
  const int last_id = s_lastid;
  if (last_id >= 0)
    for (int i = tid; i < vocab; i += blockDim.x)
      if (keep[i]) keep[i] = p[i] > last_p || (p[i] == last_p && i <= last_id);
  __syncthreads();
}

// The general path (more than SK_MAX candidates: top-k off or above SK_MAX on a larger vocabulary, or a nucleus the
// multi-block kernel's 1,024 candidates do not hold), one block: keep [vocab] flags and p [vocab] doubles of scratch;
// the logits are finite.  Writes *token.
__device__ __noinline__ void sample_general(int vocab, const float *__restrict__ l, float temperature, int top_k, float top_p,
                               float min_p, uint64_t seed, uint64_t step, unsigned char *__restrict__ keep,
                               double *__restrict__ p, int *__restrict__ token) {
  __shared__ double shd[32];
  __shared__ int shi[32];
  auto dsum = [](double a, double b) { return a + b; };
  auto dmax = [](double a, double b) { return fmax(a, b); };
  const int tid = threadIdx.x;
  // 1. top-k: the k largest logits by (logit desc, id asc) flagged (select_gather: 4 radix passes and 2 gather passes)
  const bool topk = top_k > 0 && top_k < vocab;
  for (int i = tid; i < vocab; i += blockDim.x) keep[i] = !topk;
  __syncthreads();
  if (topk)
    select_gather<uint32_t>(vocab, top_k, [&](int i) { return fkey(l[i]); }, [&](int, int i, uint32_t) { keep[i] = 1; });
  // 2. softmax(l/T) in fp64 over kept ids
  const double T = temperature;
  double mx = -CUDART_INF;
  for (int i = tid; i < vocab; i += blockDim.x)
    if (keep[i]) mx = fmax(mx, (double)l[i] / T);
  mx = block_reduce(mx, dmax, shd);
  double sum = 0;
  for (int i = tid; i < vocab; i += blockDim.x) {
    const double v = keep[i] ? exp((double)l[i] / T - mx) : 0.0;
    p[i] = v;
    sum += v;
  }
  sum = block_reduce(sum, dsum, shd);
  for (int i = tid; i < vocab; i += blockDim.x) p[i] /= sum;
  __syncthreads();
  // 3. top-p (topp_nucleus): the shortest prefix of (p desc, id asc) whose running sum reaches top_p stays kept
  if (top_p < 1.f) topp_nucleus(vocab, keep, p, top_p);
  // 4. min-p
  if (min_p > 0.f) {
    double pm = 0;
    for (int i = tid; i < vocab; i += blockDim.x)
      if (keep[i]) pm = fmax(pm, p[i]);
    pm = block_reduce(pm, dmax, shd);
    const double thr = (double)min_p * pm;
    for (int i = tid; i < vocab; i += blockDim.x)
      if (keep[i] && !(p[i] >= thr)) keep[i] = 0;
    __syncthreads();
  }
  // 5. draw: walk kept ids ascending; chunked scan so the running sum follows id order.  Per chunk of blockDim.x ids:
  // each warp's inclusive scan, thread 0's running sum over the warps' totals (the offsets, and the chunk's total as
  // the last), and one __syncthreads_or for a hit; the lowest hit's id by a block reduction in the last chunk only.
  double total = 0;
  for (int i = tid; i < vocab; i += blockDim.x)
    if (keep[i]) total += p[i];
  total = block_reduce(total, dsum, shd);
  const double u = (double)(splitmix64(seed ^ splitmix64(step)) >> 11) * (1.0 / 9007199254740992.0);
  const double target = u * total;
  __shared__ double s_off[33];  // the warps' offsets in the chunk, then the chunk's total
  const int lane = tid & 31, warp = tid >> 5, nw = (int)(blockDim.x >> 5);
  double base = 0;
  int last_kept = -1;
  for (int c0 = 0; c0 < vocab; c0 += blockDim.x) {
    const int i = c0 + tid;
    const bool kept = i < vocab && keep[i];
    const double v = kept ? p[i] : 0.0;
    if (kept) last_kept = i;
    double x = v;  // inclusive scan of v over the warp
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) shd[warp] = x;
    __syncthreads();
    if (tid == 0) {
      double run = 0;
      for (int w = 0; w < nw; w++) {
        const double t = shd[w];
        s_off[w] = run;
        run += t;
      }
      s_off[nw] = run;
    }
    __syncthreads();
    const double cum = base + s_off[warp] + x;
    const bool hit = kept && cum > target;
    const double chunk_total = s_off[nw];
    if (__syncthreads_or(hit)) {  // (uniform) the first kept i with cum > target
      const int first = block_reduce(hit ? i : 0x7fffffff, [](int a, int b) { return a < b ? a : b; }, shi);
      if (tid == 0) *token = first;
      return;
    }
    base += chunk_total;
  }
  last_kept = block_reduce(last_kept, [](int a, int b) { return a > b ? a : b; }, shi);
  if (tid == 0) *token = last_kept >= 0 ? last_kept : 0;
}

// ---- the multi-block compact sampler (session 51) -------------------------------------------------------------------
// The compact sampler above is one block: at 151,936 ids its passes over the vocabulary took 0.222 ms on an H100
// (load latency of one SM).  Here G blocks each take a slice of the vocabulary (ids [vocab b / G, vocab (b+1) / G),
// at least K of them) and select the slice's top K by (logit desc, id asc) into the candidate list, K entries per
// block in ascending id order; the last block to finish (a counter in ctl[0]) selects the top K of the G K
// candidates and runs the tail.  The list is in ascending id order, so positions compare as ids do, and each of the
// K best ids of the vocabulary is among its slice's K best: the same K ids, gathered in the same order, as the
// one-block path, hence the same draw.  A NaN or infinite logit anywhere sets ctl[1]: the last block reports it
// (token 0, *nonfinite = 1) instead of sampling.  ctl is zeroed by the launcher before each launch.
constexpr int SMB_MAXG = 128;   // blocks at most
constexpr int SMB_SLICE = 1024; // ids per block at least
constexpr int SMB_CANDS = 16384;  // candidates (G K) at most: the last block's passes run over them
//
// Nucleus mode (top-k off, top-p on; `nucleus`): K = SK_MAX, the candidates are the K largest logits of the vocabulary
// and each block also writes its slice's maximum of l / T and its sum of exp(l / T - that maximum) (bm, bs: ctl + 2
// on, doubles); the last block combines them into the vocabulary's maximum and sum (p as the general path computes
// it, up to the order of the fp64 sums) and runs the tail on the candidates.  Where the nucleus is not within them
// (sample_tail returns false) the last block runs the general path over the whole vocabulary (keep and p scratch are
// free by then: the candidates are in shared memory, the slices' sums in registers).
__global__ void __launch_bounds__(SB) sample_mb_kernel(int vocab, const float *__restrict__ l, int K, float temperature,
                                                       int top_k, float top_p, float min_p, uint64_t seed,
                                                       const unsigned long long *__restrict__ step_dev,
                                                       unsigned long long step_host, float *cv, int *ci,
                                                       unsigned *ctl, int *__restrict__ token,
                                                       int *__restrict__ nonfinite, int nucleus, unsigned char *keep,
                                                       double *p) {  // (cv, ci in p; ctl in keep: no __restrict__)
  __shared__ int cid[SK_MAX];
  __shared__ float cl[SK_MAX];
  __shared__ double shd[32];
  __shared__ bool last;
  const int G = gridDim.x, b = blockIdx.x, tid = threadIdx.x;
  double *bm = reinterpret_cast<double *>(ctl + 2), *bs = bm + G;  // (nucleus)
  const int b0 = (int)((long long)vocab * b / G), b1 = (int)((long long)vocab * (b + 1) / G);
  bool bad = false;
  float *ocv = cv + (size_t)b * K;
  int *oci = ci + (size_t)b * K;
  topk_gather(b1 - b0, K,
              [&](int i) {
                const float v = l[b0 + i];
                bad |= !isfinite(v);
                return v;
              },
              [&](int at, int i, float v) {
                ocv[at] = v;
                oci[at] = b0 + i;
              });
  bad = __syncthreads_or(bad);
  if (nucleus && !bad) {  // the slice's maximum of l / T and its sum of exp(l / T - maximum)
    const double T = temperature;
    double mx = -CUDART_INF;
    for (int i = b0 + tid; i < b1; i += blockDim.x) mx = fmax(mx, (double)l[i] / T);
    mx = block_reduce(mx, [](double x, double y) { return fmax(x, y); }, shd);
    double sm = 0;
    for (int i = b0 + tid; i < b1; i += blockDim.x) sm += exp((double)l[i] / T - mx);
    sm = block_reduce(sm, [](double x, double y) { return x + y; }, shd);
    if (tid == 0) {
      bm[b] = mx;
      bs[b] = sm;
    }
  }
  __threadfence();  // this thread's candidates (and sums), before the block's arrival is counted
  __syncthreads();
  if (tid == 0) {
    if (bad) atomicOr(ctl + 1, 1u);
    __threadfence();
    last = atomicAdd(ctl, 1u) == (unsigned)G - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  if (__ldcg(ctl + 1) != 0u) {
    if (tid == 0) {
      *token = 0;
      *nonfinite = 1;
    }
    return;
  }
  if (tid == 0) *nonfinite = 0;
  double mx = 0, sum = 1;
  if (nucleus) {  // (every thread, the same order)
    mx = -CUDART_INF;
    for (int j = 0; j < G; j++) mx = fmax(mx, __ldcg(bm + j));
    sum = 0;
    for (int j = 0; j < G; j++) sum += __ldcg(bs + j) * exp(__ldcg(bm + j) - mx);
  }
  topk_gather(G * K, K, [&](int i) { return __ldcg(cv + i); }, [&](int at, int i, float v) {
    cid[at] = __ldcg(ci + i);
    cl[at] = v;
  });
  const uint64_t step = step_dev ? *step_dev : step_host;
  if (!sample_tail(K, cid, cl, temperature, top_p, min_p, seed, step, token, nucleus != 0, mx, sum))
    sample_general(vocab, l, temperature, top_k, top_p, min_p, seed, step, keep, p, token);
}

// keep: per-id flag scratch [vocab]; p: [vocab] fp64 scratch.  step read from device (graph replay).
__global__ void __launch_bounds__(SB) sample_kernel(int vocab, const float *__restrict__ l, float temperature,
                                                    int top_k, float top_p, float min_p, uint64_t seed,
                                                    const unsigned long long *__restrict__ step_dev,
                                                    unsigned long long step_host, unsigned char *__restrict__ keep,
                                                    double *__restrict__ p, int *__restrict__ token,
                                                    int *__restrict__ nonfinite, int general) {
  __shared__ unsigned long long shu[32];
  auto umax = [](unsigned long long a, unsigned long long b) { return a > b ? a : b; };
  const int tid = threadIdx.x;

  bool bad = false;  // a NaN or infinite logit: flagged, nothing sampled (the host reports it)
  if (sampler_greedy(temperature, top_k)) {  // greedy
    unsigned long long best = 0;
    for (int i = tid; i < vocab; i += blockDim.x) {
      const float v = l[i];
      bad |= !isfinite(v);
      best = umax(best, amax_key(v, i));
    }
    bad = __syncthreads_or(bad);
    best = block_reduce(best, umax, (unsigned long long *)shu);
    if (tid == 0) {
      *token = 0x7fffffff - (int)(uint32_t)(best & 0xffffffffu);
      *nonfinite = bad ? 1 : 0;
    }
    return;
  }
  for (int i0 = tid; i0 < vocab; i0 += blockDim.x * SU)
#pragma unroll
    for (int u = 0; u < SU; u++)
      if (i0 + u * (int)blockDim.x < vocab) bad |= !isfinite(l[i0 + u * blockDim.x]);
  if (__syncthreads_or(bad)) {
    if (tid == 0) {
      *token = 0;
      *nonfinite = 1;
    }
    return;
  }
  if (tid == 0) *nonfinite = 0;
  const int K = top_k > 0 && top_k < vocab ? top_k : vocab;
  if (K <= SK_MAX && !general) {
    sample_compact(vocab, l, K, temperature, top_p, min_p, seed, step_dev ? *step_dev : step_host, token);
    return;
  }
  // the general path (more than SK_MAX candidates: top-k off or above SK_MAX on a larger vocabulary)
  sample_general(vocab, l, temperature, top_k, top_p, min_p, seed, step_dev ? *step_dev : step_host, keep, p, token);
}

// LSW_CUDA_SAMPLE_GENERAL=1: every sampling step takes the general path (the only one before session 50), for A-B runs
static bool g_sample_general = env_flag("LSW_CUDA_SAMPLE_GENERAL", false);
void sample_set_general(bool on) { g_sample_general = on; }

// LSW_CUDA_SAMPLE_MB=0: compact steps in one block (sample_compact) instead of sample_mb_kernel, for A-B runs
static bool g_sample_mb = env_flag("LSW_CUDA_SAMPLE_MB", true);
void sample_set_multiblock(bool on) { g_sample_mb = on; }

// candidates per block: top_k where it keeps at most SK_MAX of the vocabulary; SK_MAX in nucleus mode (top-k off,
// top-p on); 0: neither
static int sample_mb_k(int vocab, const lsw_sampler_params &sp) {
  if (vocab <= 0 || sampler_greedy(sp.temperature, sp.top_k)) return 0;
  if (sp.top_k > 0 && sp.top_k < vocab) return sp.top_k <= SK_MAX ? sp.top_k : 0;
  return sp.top_p < 1.f ? SK_MAX : 0;
}
int sample_blocks(int vocab, const lsw_sampler_params &sp) {
  const int K = g_sample_general || !g_sample_mb ? 0 : sample_mb_k(vocab, sp);
  if (K <= 0 || K >= vocab) return 1;
  return std::max(1, std::min({SMB_MAXG, vocab / std::max(K, SMB_SLICE), SMB_CANDS / K}));
}

cudaError_t sample(int vocab, const float *logits, const lsw_sampler_params &sp, const unsigned long long *step_dev,
                   unsigned long long step_host, unsigned char *keep, double *p, int *token, int *nonfinite,
                   cudaStream_t s) {
  if (vocab <= 0) return cudaErrorInvalidValue;
  // G K <= vocab: the candidates (G K floats and ids) fit p; ctl (2 words) and the nucleus mode's 2 G doubles fit keep
  // (G <= vocab / 1,024)
  if (const int G = sample_blocks(vocab, sp); G >= 2) {
    const int K = sample_mb_k(vocab, sp);
    const bool nucleus = !(sp.top_k > 0 && sp.top_k < vocab);
    unsigned *ctl = reinterpret_cast<unsigned *>(keep);
    if (const cudaError_t e = cudaMemsetAsync(ctl, 0, 2 * sizeof(unsigned), s); e != cudaSuccess) return e;
    float *cv = reinterpret_cast<float *>(p);
    sample_mb_kernel<<<G, SB, 0, s>>>(vocab, logits, K, sp.temperature, sp.top_k, sp.top_p, sp.min_p, sp.seed,
                                      step_dev, step_host, cv, reinterpret_cast<int *>(cv + (size_t)G * K), ctl,
                                      token, nonfinite, nucleus ? 1 : 0, keep, p);
    LSWC_LAUNCH_RET();
  }
  sample_kernel<<<1, SB, 0, s>>>(vocab, logits, sp.temperature, sp.top_k, sp.top_p, sp.min_p, sp.seed, step_dev,
                                 step_host, keep, p, token, nonfinite, (int)g_sample_general);
  LSWC_LAUNCH_RET();
}

}  // namespace lswc

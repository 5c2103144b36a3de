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
#include <vector>

namespace lswc {

// Rows [r0, r0+R) per row group, KS warps of the block share one row group (split over the columns,
// interleaved 16-byte chunks, partial sums combined in shared memory in a fixed order: deterministic),
// U 16-byte chunks per lane in flight per row before they are consumed.
//
// Programmatic dependent launch (no-ops unless launched with the PDL attribute, see gemv_set_pdl):
// the kernel lets its own dependents begin launching at once, loads its FIRST batch of weights into
// registers (weights never depend on the kernel before it; see kernels.cuh for the one rule) and only
// then waits (griddepcontrol.wait) for the producer of X (and of Y when accumulating, and of the LoRA t).
template <typename T, int NX, int R, int U, int KS, bool LORA>
__global__ void __launch_bounds__(256) gemv_kernel(const T *__restrict__ W, int rows, int cols,
                                                   const float *__restrict__ X, int ldx, float *__restrict__ Y,
                                                   int ldy, const float *__restrict__ bias, int accumulate,
                                                   LoraEpilogue lora) {
  constexpr int VEC = Tr<T>::VEC;
  constexpr int WPB = 8, GPB = WPB / KS, S = 32 * KS;  // warps per block, row groups per block, chunk stride
  const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
  const int grp = wib / KS, part = wib - grp * KS;
  const int r0 = (blockIdx.x * GPB + grp) * R;
  const bool active = r0 < rows;
  if (KS == 1 && !active) return;
  const int nvec = active ? cols / VEC : 0;  // cols % VEC == 0 (checked by the launcher)
  const uint4 *wrow[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    int rr = min(r0 + r, rows - 1);  // rows past the end re-read the last row, not stored
    wrow[r] = reinterpret_cast<const uint4 *>(W + (size_t)rr * cols);
  }
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  int c0 = lane + 32 * part;
  uint4 w[U][R];
  if (c0 + S * (U - 1) < nvec) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < R; r++) w[u][r] = ld_stream(wrow[r] + c0 + S * u);
  }
  asm volatile("griddepcontrol.wait;" ::: "memory");

  // LoRA epilogue operands (NX == 1), loaded before the main loop so that their latency hides under it:
  // this row's B values (QB per lane) and the matching t values.
  constexpr int QB = LORA ? 4 : 1;
  float lb[R][QB], lt[R][QB];
  const T *lB[R];
  const float *lT[R];
  const int *lE[R];
  int lrank[R], lkr[R];
  size_t lstr[R];  // elements between experts in B: rows * rank
  if constexpr (LORA) {
#pragma unroll
    for (int r = 0; r < R; r++) {
      const int row = r0 + r;
      lkr[r] = 0; lrank[r] = 1; lB[r] = nullptr; lT[r] = nullptr; lE[r] = nullptr; lstr[r] = 0;
#pragma unroll
      for (int sgi = 0; sgi < 3; sgi++)
        if (active && sgi < lora.nseg && row < rows && row >= lora.seg[sgi].row0 &&
            row < lora.seg[sgi].row0 + lora.seg[sgi].rows) {
          lrank[r] = lora.seg[sgi].rank;
          lkr[r] = lora.top_k * lora.seg[sgi].rank;
          lB[r] = static_cast<const T *>(lora.seg[sgi].B) + (size_t)(row - lora.seg[sgi].row0) * lora.seg[sgi].rank;
          lT[r] = lora.seg[sgi].t;
          lE[r] = lora.seg[sgi].experts;
          lstr[r] = (size_t)lora.seg[sgi].rows * lora.seg[sgi].rank;
        }
#pragma unroll
      for (int q = 0; q < QB; q++) {
        lb[r][q] = 0.f; lt[r][q] = 0.f;
        const int idx = lane + 32 * part + S * q;
        if (idx < lkr[r]) {
          const int k = idx / lrank[r], j = idx - k * lrank[r];
          const int e = __ldg(lE[r] + k);
          lb[r][q] = Tr<T>::to_f(lB[r][(size_t)e * lstr[r] + j]);
          lt[r][q] = __ldg(lT[r] + idx);
        }
      }
    }
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
  // main loop: U x R independent 16-byte loads in flight (the first batch was issued before the wait)
  while (c0 + S * (U - 1) < nvec) {
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
  // tail: one chunk at a time
  for (; c0 < nvec; c0 += S) {
    uint4 wt[R];
#pragma unroll
    for (int r = 0; r < R; r++) wt[r] = ld_stream(wrow[r] + c0);
    consume(wt, c0);
  }
  if constexpr (LORA) {  // NX == 1: add Σ_k B[e_k][row][:] · t_k, spread over the lanes before the reduction
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int q = 0; q < QB; q++) acc[r][0] = fmaf(lb[r][q], lt[r][q], acc[r][0]);
      if (lkr[r] > S * QB) {  // ranks beyond the prefetched part (top_k * rank > 128 * KS)
        for (int idx = lane + 32 * part + S * QB; idx < lkr[r]; idx += S) {
          const int k = idx / lrank[r], j = idx - k * lrank[r];
          const int e = __ldg(lE[r] + k);
          acc[r][0] = fmaf(Tr<T>::to_f(lB[r][(size_t)e * lstr[r] + j]), __ldg(lT[r] + idx), acc[r][0]);
        }
      }
    }
  }
  float v[R][NX];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int t = 0; t < NX; t++) v[r][t] = warp_sum(acc[r][t]);
  if constexpr (KS > 1) {
    __shared__ float red[WPB][R][NX];
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NX; t++) red[wib][r][t] = v[r][t];
    __syncthreads();
    if (part != 0 || !active) return;
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
#pragma unroll
  for (int r = 0; r < R; r++) {
#pragma unroll
    for (int t = 0; t < NX; t++) {
      float vv = v[r][t];
      const int row = r0 + r;
      if (lane == 0 && row < rows) {
        if (bias) vv += bias[row];
        float *y = Y + (size_t)t * ldy + row;
        if (accumulate) vv += *y;
        *y = vv;
      }
    }
  }
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
};
static constexpr int kDefaultVariant = 2;
int gemv_variants() { return (int)(sizeof(kVariants) / sizeof(kVariants[0])); }
const char *gemv_variant_name(int v) { return v >= 0 && v < gemv_variants() ? kVariants[v].name : "?"; }

static bool g_pdl = false;
void gemv_set_pdl(bool on) { g_pdl = on; }
bool gemv_pdl() { return g_pdl; }

// ---- per-shape choice (autotune_gemv fills it; gemv(..., variant 0) reads it) ---------------------
static std::mutex g_tune_mu;
static std::map<std::tuple<int, int, int>, int> g_tuned;
static std::string g_tune_report;

int gemv_tuned_variant(int dtype, int rows, int cols) {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  auto it = g_tuned.find(std::make_tuple(dtype, rows, cols));
  return it == g_tuned.end() ? 0 : it->second;
}
void gemv_set_variant(int dtype, int rows, int cols, int variant) {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  if (variant <= 0) g_tuned.erase(std::make_tuple(dtype, rows, cols));
  else g_tuned[std::make_tuple(dtype, rows, cols)] = variant;
}
void gemv_tune_clear() {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  g_tuned.clear();
  g_tune_report.clear();
}
std::string gemv_tune_report() {
  std::lock_guard<std::mutex> lk(g_tune_mu);
  return g_tune_report;
}
static int resolve_variant(int dtype, int rows, int cols, int variant) {
  if (variant > 0 && variant < gemv_variants()) return variant;
  if (variant != 0) return -1;
  const char *ev = getenv("LSW_CUDA_GEMV_VARIANT");  // force one kernel everywhere (debugging / A-B runs)
  if (ev && *ev) {
    const int v = atoi(ev);
    if (v > 0 && v < gemv_variants()) return v;
  }
  const int t = gemv_tuned_variant(dtype, rows, cols);
  return t > 0 ? t : kDefaultVariant;
}

template <typename... KArgs, typename... Args>
static void launch_k(void (*kern)(KArgs...), dim3 grid, int threads, cudaStream_t s, Args... args) {
  if (g_pdl) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kern, args...);
  } else {
    kern<<<grid, threads, 0, s>>>(args...);
  }
}

template <typename T, int NX, int R, int U, int KS>
static cudaError_t launch_gemv_t(const void *W, int rows, int cols, const float *X, int ldx, float *Y, int ldy,
                                 const float *bias, bool accumulate, const LoraEpilogue *lora, cudaStream_t s) {
  const int threads = 256, groups_per_block = threads / 32 / KS;
  const int groups = cdiv(rows, R);
  dim3 grid(cdiv(groups, groups_per_block));
  if (lora && lora->nseg > 0) {
    if constexpr (NX == 1)
      launch_k(gemv_kernel<T, NX, R, U, KS, true>, grid, threads, s, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
               (int)accumulate, *lora);
    else
      return cudaErrorInvalidValue;
  } else {
    launch_k(gemv_kernel<T, NX, R, U, KS, false>, grid, threads, s, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
             (int)accumulate, LoraEpilogue{});
  }
  LSWC_LAUNCH_RET();
}

template <typename T, int R, int U, int KS>
static cudaError_t launch_gemv_n(int n, const void *W, int rows, int cols, const float *X, int ldx, float *Y, int ldy,
                                 const float *bias, bool acc, const LoraEpilogue *lora, cudaStream_t s) {
  switch (n) {
    case 1: return launch_gemv_t<T, 1, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 2: return launch_gemv_t<T, 2, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 3: return launch_gemv_t<T, 3, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 4: return launch_gemv_t<T, 4, R, U, KS>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
  }
  return cudaErrorInvalidValue;
}

template <typename T>
static cudaError_t gemv_dispatch(int variant, int n, const void *W, int rows, int cols, const float *X, int ldx,
                                 float *Y, int ldy, const float *bias, bool acc, const LoraEpilogue *lora,
                                 cudaStream_t s) {
  // n = 5..8 run as 4 + (n-4): keeps register pressure of the NX=8 instantiation away.
  if (n > 4) {
    cudaError_t e = gemv_dispatch<T>(variant, 4, W, rows, cols, X, ldx, Y, ldy, bias, acc, nullptr, s);
    if (e != cudaSuccess) return e;
    return gemv_dispatch<T>(variant, n - 4, W, rows, cols, X + (size_t)4 * ldx, ldx, Y + (size_t)4 * ldy, ldy, bias,
                            acc, nullptr, s);
  }
  switch (variant) {
    case 1: return launch_gemv_n<T, 1, 8, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 2: return launch_gemv_n<T, 1, 4, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 3: return launch_gemv_n<T, 2, 4, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 4: return launch_gemv_n<T, 4, 2, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 5: return launch_gemv_n<T, 1, 16, 1>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 6: return launch_gemv_n<T, 1, 4, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 7: return launch_gemv_n<T, 1, 8, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 8: return launch_gemv_n<T, 1, 4, 4>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 9: return launch_gemv_n<T, 2, 4, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 10: return launch_gemv_n<T, 4, 2, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
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
__global__ void lora_epilogue_kernel(int rows, float *Y, LoraEpilogue lora) {
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

cudaError_t gemv(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                 const float *bias, bool accumulate, const LoraEpilogue *lora, cudaStream_t s, int variant) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  if (n > 8) return cudaErrorInvalidValue;
  if (lora && lora->nseg > 0 && n != 1) return cudaErrorInvalidValue;
  const int vec = dtype == LSW_DTYPE_F32 ? 4 : 8;
  const bool fast = cols % vec == 0 && aligned16(W) && aligned16(X) && ldx % 4 == 0 && cols > 0;
  if (!fast) {
    cudaError_t e = gemv_simple(dtype, W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, s);
    if (e != cudaSuccess || !lora || lora->nseg == 0) return e;
    switch (dtype) {
      case LSW_DTYPE_F32: lora_epilogue_kernel<float><<<cdiv(rows, 256), 256, 0, s>>>(rows, Y, *lora); break;
      case LSW_DTYPE_F16: lora_epilogue_kernel<__half><<<cdiv(rows, 256), 256, 0, s>>>(rows, Y, *lora); break;
      case LSW_DTYPE_BF16: lora_epilogue_kernel<__nv_bfloat16><<<cdiv(rows, 256), 256, 0, s>>>(rows, Y, *lora); break;
      default: return cudaErrorInvalidValue;
    }
    LSWC_LAUNCH_RET();
  }
  if (variant == 0 && lora && lora->nseg > 0) {  // fused-LoRA launches: optional override (A-B runs)
    const char *ev = getenv("LSW_CUDA_GEMV_LORA_VARIANT");
    if (ev && *ev && atoi(ev) > 0 && atoi(ev) < gemv_variants()) variant = atoi(ev);
  }
  variant = resolve_variant(dtype, rows, cols, variant);
  if (variant < 0) return cudaErrorInvalidValue;
  switch (dtype) {
    case LSW_DTYPE_F32: return gemv_dispatch<float>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s);
    case LSW_DTYPE_F16: return gemv_dispatch<__half>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s);
    case LSW_DTYPE_BF16: return gemv_dispatch<__nv_bfloat16>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s);
  }
  return cudaErrorInvalidValue;
}

// ---- LoRA shrink: BLOCK per gathered A row (many CTAs, every lane has <= a few 16-byte loads, all in
// flight at once), all jobs of a batch in one launch, fixed-order block reduction (deterministic) -------
template <int NT>
__device__ __forceinline__ float block_sum(float v, float *red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) red[wid] = v;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < NT / 32; i++) s += red[i];
  __syncthreads();
  return s;
}

template <typename T>
__global__ void __launch_bounds__(128) lora_shrink_kernel(ShrinkBatch b) {
  __shared__ float red[4];
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int tid = threadIdx.x;
  int row = blockIdx.x;
  int j = 0;
  for (; j < b.njobs; j++) {
    const int nr = b.top_k * b.job[j].rank;
    if (row < nr) break;
    row -= nr;
  }
  if (j >= b.njobs) return;  // whole block: uniform
  const ShrinkJob &jb = b.job[j];
  const int k = row / jb.rank, i = row - k * jb.rank;
  const int e = b.experts[k];
  const T *a = static_cast<const T *>(jb.A) + ((size_t)e * jb.rank + i) * jb.cols;
  float acc = 0.f;
  constexpr int VEC = Tr<T>::VEC;
  if (jb.cols % VEC == 0 && (reinterpret_cast<uintptr_t>(a) & 15) == 0 && (reinterpret_cast<uintptr_t>(jb.x) & 15) == 0) {
    const int nvec = jb.cols / VEC;
#pragma unroll 4
    for (int c = tid; c < nvec; c += 128) {
      float wf[VEC];
      unpack16<T>(ld_stream(reinterpret_cast<const uint4 *>(a) + c), wf);
      const float4 *xp = reinterpret_cast<const float4 *>(jb.x + (size_t)c * VEC);
#pragma unroll
      for (int q = 0; q < VEC / 4; q++) {
        float4 v = __ldg(xp + q);
        acc = fmaf(wf[4 * q], v.x, acc); acc = fmaf(wf[4 * q + 1], v.y, acc);
        acc = fmaf(wf[4 * q + 2], v.z, acc); acc = fmaf(wf[4 * q + 3], v.w, acc);
      }
    }
  } else {
    for (int c = tid; c < jb.cols; c += 128) acc = fmaf(Tr<T>::to_f(a[c]), jb.x[c], acc);
  }
  acc = block_sum<128>(acc, red);
  if (tid == 0) jb.t[row] = b.gates[k] * acc;
}

cudaError_t lora_shrink(int dtype, const ShrinkBatch &b, cudaStream_t s) {
  int total = 0;
  for (int j = 0; j < b.njobs; j++) total += b.top_k * b.job[j].rank;
  if (total == 0) return cudaSuccess;
  dim3 grid(total);
  switch (dtype) {
    case LSW_DTYPE_F32: lora_shrink_kernel<float><<<grid, 128, 0, s>>>(b); break;
    case LSW_DTYPE_F16: lora_shrink_kernel<__half><<<grid, 128, 0, s>>>(b); break;
    case LSW_DTYPE_BF16: lora_shrink_kernel<__nv_bfloat16><<<grid, 128, 0, s>>>(b); break;
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
// No shared copy of v, no serial per-warp row loop: with 8 x 16-byte chunks per thread at most, the whole
// launch costs about one memory latency.  Blocks with no shrink row (njobs == 0) only build v.
template <typename T>
__global__ void __launch_bounds__(256) prologue_shrink_kernel(int mode, int D, const float *__restrict__ x,
                                                              const float *__restrict__ w, float eps,
                                                              float *__restrict__ out, ShrinkBatch b) {
  __shared__ float red[8];
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int tid = threadIdx.x;
  int row = blockIdx.x, j = 0;
  for (; j < b.njobs; j++) {
    const int nr = b.top_k * b.job[j].rank;
    if (row < nr) break;
    row -= nr;
  }
  const bool has_row = j < b.njobs;  // uniform over the block
  const T *a = nullptr;
  int k = 0;
  if (has_row) {
    const ShrinkJob &jb = b.job[j];
    k = row / jb.rank;
    const int i = row - k * jb.rank;
    a = static_cast<const T *>(jb.A) + ((size_t)b.experts[k] * jb.rank + i) * D;
  }
  constexpr int VEC = Tr<T>::VEC;
  float ss = 0.f, dot = 0.f;
  const bool vec = D % VEC == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
                   (mode == 1 || (reinterpret_cast<uintptr_t>(w) & 15) == 0) &&
                   (!has_row || (reinterpret_cast<uintptr_t>(a) & 15) == 0);
  if (vec) {
    const int nvec = D / VEC;
#pragma unroll 2
    for (int c = tid; c < nvec; c += 256) {
      float af[VEC];
      if (has_row) unpack16<T>(ld_stream(reinterpret_cast<const uint4 *>(a) + c), af);
      const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)c * VEC);
      float xv[VEC], vv[VEC];
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
      if (has_row)
#pragma unroll
        for (int q = 0; q < VEC; q++) dot = fmaf(af[q], vv[q], dot);
    }
  } else {
    for (int c = tid; c < D; c += 256) {
      const float xc = x[c];
      float v;
      if (mode == 0) { ss = fmaf(xc, xc, ss); v = xc * w[c]; }
      else v = xc / (1.f + expf(-xc)) * x[D + c];
      if (has_row) dot = fmaf(Tr<T>::to_f(a[c]), v, dot);
    }
  }
  float inv = 1.f;
  if (mode == 0) {
    ss = block_sum<256>(ss, red);
    inv = 1.f / sqrtf(ss / (float)D + eps);
  }
  if (has_row) {
    dot = block_sum<256>(dot, red);
    if (tid == 0) b.job[j].t[row] = b.gates[k] * (mode == 0 ? dot * inv : dot);
  }
  for (int i = blockIdx.x * 256 + tid; i < D; i += gridDim.x * 256) {
    const float xi = x[i];
    out[i] = mode == 0 ? xi * inv * w[i] : xi / (1.f + expf(-xi)) * x[D + i];
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
    case LSW_DTYPE_F32: prologue_shrink_kernel<float><<<blocks, 256, 0, s>>>(mode, D, x, w, eps, out, b); break;
    case LSW_DTYPE_F16: prologue_shrink_kernel<__half><<<blocks, 256, 0, s>>>(mode, D, x, w, eps, out, b); break;
    case LSW_DTYPE_BF16: prologue_shrink_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>(mode, D, x, w, eps, out, b); break;
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
bool cuda_verbose() {
  const char *ev = getenv("LSW_CUDA_VERBOSE");
  return ev && *ev && strcmp(ev, "0") != 0;
}

int autotune_gemv(int dtype, int rows, int cols, const void *const *Ws, int nW, const float *X, float *Y,
                  cudaStream_t s, float *best_us) {
  if (rows <= 0 || cols <= 0 || nW <= 0 || !Ws || !X || !Y) return 0;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return 0;
  const int vec = dtype == LSW_DTYPE_F32 ? 4 : 8;
  for (int i = 0; i < nW; i++)
    if (!aligned16(Ws[i])) return 0;
  if (cols % vec != 0 || !aligned16(X)) return 0;  // scalar fallback: nothing to choose
  const size_t esz = dtype == LSW_DTYPE_F32 ? 4 : 2;
  const double mat_bytes = (double)rows * cols * esz;
  // passes so that one timed pass streams at least ~256 MB (weights not L2-resident between passes)
  int per_pass = nW;
  while ((double)per_pass * mat_bytes < 256e6 && per_pass < 64 * nW) per_pass += nW;
  const bool saved_pdl = g_pdl;
  g_pdl = false;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
    if (e0) cudaEventDestroy(e0);
    g_pdl = saved_pdl;
    cudaGetLastError();
    return 0;
  }
  const int nv = gemv_variants();
  std::vector<float> us(nv, 0.f);
  int best = 0;
  cudaError_t err = cudaSuccess;
  for (int v = 1; v < nv && err == cudaSuccess; v++) {
    auto pass = [&]() {
      for (int i = 0; i < per_pass && err == cudaSuccess; i++)
        err = gemv(dtype, Ws[i % nW], rows, cols, X, cols, 1, Y, rows, nullptr, false, nullptr, s, v);
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
  if (best > 0) gemv_set_variant(dtype, rows, cols, best);
  if (best_us && best > 0) *best_us = us[best];
  char line[512];
  int o = snprintf(line, sizeof line, "lswc: gemv %s %dx%d -> v%d (%.2f us, %.0f GB/s); tried",
                   dtype == LSW_DTYPE_F32 ? "f32" : dtype == LSW_DTYPE_F16 ? "f16" : "bf16", rows, cols, best,
                   best > 0 ? us[best] : 0.f, best > 0 ? mat_bytes / (us[best] * 1e-6) / 1e9 : 0.0);
  for (int v = 1; v < nv && o < (int)sizeof line - 16; v++) o += snprintf(line + o, sizeof line - o, " v%d %.2f", v, us[v]);
  {
    std::lock_guard<std::mutex> lk(g_tune_mu);
    g_tune_report += line;
    g_tune_report += "\n";
  }
  if (cuda_verbose()) fprintf(stderr, "%s\n", line);
  return best;
}

}  // namespace lswc

namespace lswc {
int autotune_gemv_all(const GemvTuneItem *items, int n, const float *X, float *Y, cudaStream_t s) {
  if (getenv("LSW_CUDA_AUTOTUNE") && !strcmp(getenv("LSW_CUDA_AUTOTUNE"), "0")) return 0;
  std::map<std::tuple<int, int, int>, std::vector<const void *>> groups;
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
    if (gemv_tuned_variant(std::get<0>(key), std::get<1>(key), std::get<2>(key)) > 0) { tuned++; continue; }
    auto &g = groups[key];
    if (autotune_gemv(std::get<0>(key), std::get<1>(key), std::get<2>(key), g.data(), (int)g.size(), X, Y, s) > 0) tuned++;
  }
  return tuned;
}
}  // namespace lswc

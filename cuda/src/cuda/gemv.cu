// Decode GEMV (n <= 8 tokens), fused-LoRA epilogue, LoRA shrink/expand.
#include "kernels.cuh"

namespace lswc {

// Rows [r*R, r*R+R) per warp, U 16-byte chunks per lane in flight per row before they are consumed.
template <typename T, int NX, int R, int U, bool LORA>
__global__ void __launch_bounds__(256) gemv_kernel(const T *__restrict__ W, int rows, int cols,
                                                   const float *__restrict__ X, int ldx, float *__restrict__ Y,
                                                   int ldy, const float *__restrict__ bias, int accumulate,
                                                   LoraEpilogue lora) {
  constexpr int VEC = Tr<T>::VEC;
  const int lane = threadIdx.x & 31;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int r0 = warp * R;
  if (r0 >= rows) return;
  const int nvec = cols / VEC;  // cols % VEC == 0 (checked by the launcher)
  const uint4 *wrow[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    int rr = min(r0 + r, rows - 1);  // rows past the end re-read the last row, not stored
    wrow[r] = reinterpret_cast<const uint4 *>(W + (size_t)rr * cols);
  }
  // Programmatic dependent launch (no-ops unless launched with the PDL attribute, see gemv_set_pdl): let the
  // next kernel begin launching, warm L2 with this warp's first weight chunks (weights never depend on the
  // previous kernel), then wait until the producer of X (and Y when accumulating) has completed.
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int u = 0; u < U; u++)
      if (lane + 32 * u < nvec) asm volatile("prefetch.global.L2 [%0];" ::"l"(wrow[r] + lane + 32 * u));
  asm volatile("griddepcontrol.wait;" ::: "memory");
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
  int c0 = lane;
  // main loop: U x R independent 16-byte loads issued before any is consumed (no predicates)
  for (; c0 + 32 * (U - 1) < nvec; c0 += 32 * U) {
    uint4 w[U][R];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < R; r++) w[u][r] = ld_stream(wrow[r] + c0 + 32 * u);
#pragma unroll
    for (int u = 0; u < U; u++) consume(w[u], c0 + 32 * u);
  }
  // tail: one chunk at a time
  for (; c0 < nvec; c0 += 32) {
    uint4 w[R];
#pragma unroll
    for (int r = 0; r < R; r++) w[r] = ld_stream(wrow[r] + c0);
    consume(w, c0);
  }
  if (LORA) {  // NX == 1: add Σ_k B[e_k][row][:] · t_k, spread over the lanes before the reduction
#pragma unroll
    for (int r = 0; r < R; r++) {
      const int row = r0 + r;
      if (row >= rows) continue;
      for (int sgi = 0; sgi < lora.nseg; sgi++) {
        const LoraSeg &sg = lora.seg[sgi];
        if (row < sg.row0 || row >= sg.row0 + sg.rows) continue;
        const T *B = static_cast<const T *>(sg.B);
        const int kr = lora.top_k * sg.rank;
        for (int idx = lane; idx < kr; idx += 32) {
          const int k = idx / sg.rank, j = idx - k * sg.rank;
          const int e = __ldg(sg.experts + k);
          const float b = Tr<T>::to_f(B[((size_t)e * sg.rows + (row - sg.row0)) * sg.rank + j]);
          acc[r][0] = fmaf(b, __ldg(sg.t + idx), acc[r][0]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
#pragma unroll
    for (int t = 0; t < NX; t++) {
      float v = warp_sum(acc[r][t]);
      const int row = r0 + r;
      if (lane == 0 && row < rows) {
        if (bias) v += bias[row];
        float *y = Y + (size_t)t * ldy + row;
        if (accumulate) v += *y;
        *y = v;
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

struct GemvVariant { int R, U; const char *name; };
static const GemvVariant kVariants[] = {
    {1, 8, "warp/row, 8 x 16B in flight"},  // 0: production (see README: chosen from the H200 run)
    {1, 4, "warp/row, 4 x 16B in flight"},
    {2, 4, "2 rows/warp, 4 x 16B in flight per row"},
    {4, 2, "4 rows/warp, 2 x 16B in flight per row"},
    {1, 16, "warp/row, 16 x 16B in flight"},
};
int gemv_variants() { return (int)(sizeof(kVariants) / sizeof(kVariants[0])); }
const char *gemv_variant_name(int v) { return v >= 0 && v < gemv_variants() ? kVariants[v].name : "?"; }

static bool g_pdl = false;
void gemv_set_pdl(bool on) { g_pdl = on; }
bool gemv_pdl() { return g_pdl; }

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

template <typename T, int NX, int R, int U>
static cudaError_t launch_gemv_t(const void *W, int rows, int cols, const float *X, int ldx, float *Y, int ldy,
                                 const float *bias, bool accumulate, const LoraEpilogue *lora, cudaStream_t s) {
  const int threads = 256, warps_per_block = threads / 32;
  const int warps = cdiv(rows, R);
  dim3 grid(cdiv(warps, warps_per_block));
  if (lora && lora->nseg > 0) {
    if constexpr (NX == 1)
      launch_k(gemv_kernel<T, NX, R, U, true>, grid, threads, s, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
               (int)accumulate, *lora);
    else
      return cudaErrorInvalidValue;
  } else {
    launch_k(gemv_kernel<T, NX, R, U, false>, grid, threads, s, (const T *)W, rows, cols, X, ldx, Y, ldy, bias,
             (int)accumulate, LoraEpilogue{});
  }
  LSWC_LAUNCH_RET();
}

template <typename T, int R, int U>
static cudaError_t launch_gemv_n(int n, const void *W, int rows, int cols, const float *X, int ldx, float *Y, int ldy,
                                 const float *bias, bool acc, const LoraEpilogue *lora, cudaStream_t s) {
  switch (n) {
    case 1: return launch_gemv_t<T, 1, R, U>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 2: return launch_gemv_t<T, 2, R, U>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 3: return launch_gemv_t<T, 3, R, U>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 4: return launch_gemv_t<T, 4, R, U>(W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
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
    case 0: return launch_gemv_n<T, 1, 8>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 1: return launch_gemv_n<T, 1, 4>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 2: return launch_gemv_n<T, 2, 4>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 3: return launch_gemv_n<T, 4, 2>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
    case 4: return launch_gemv_n<T, 1, 16>(n, W, rows, cols, X, ldx, Y, ldy, bias, acc, lora, s);
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
  switch (dtype) {
    case LSW_DTYPE_F32: return gemv_dispatch<float>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s);
    case LSW_DTYPE_F16: return gemv_dispatch<__half>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s);
    case LSW_DTYPE_BF16: return gemv_dispatch<__nv_bfloat16>(variant, n, W, rows, cols, X, ldx, Y, ldy, bias, accumulate, lora, s);
  }
  return cudaErrorInvalidValue;
}

// ---- LoRA shrink: warp per gathered A row, all jobs of a batch in one launch ---------------------
template <typename T>
__global__ void __launch_bounds__(256) lora_shrink_kernel(ShrinkBatch b) {
  const int lane = threadIdx.x & 31;
  int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  int j = 0;
  for (; j < b.njobs; j++) {
    const int nr = b.top_k * b.job[j].rank;
    if (row < nr) break;
    row -= nr;
  }
  if (j >= b.njobs) return;
  const ShrinkJob &jb = b.job[j];
  const int k = row / jb.rank, i = row - k * jb.rank;
  const int e = b.experts[k];
  const T *a = static_cast<const T *>(jb.A) + ((size_t)e * jb.rank + i) * jb.cols;
  float acc = 0.f;
  constexpr int VEC = Tr<T>::VEC;
  if (jb.cols % VEC == 0 && (reinterpret_cast<uintptr_t>(a) & 15) == 0 && (reinterpret_cast<uintptr_t>(jb.x) & 15) == 0) {
    const int nvec = jb.cols / VEC;
    for (int c = lane; c < nvec; c += 32) {
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
    for (int c = lane; c < jb.cols; c += 32) acc = fmaf(Tr<T>::to_f(a[c]), jb.x[c], acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) jb.t[row] = b.gates[k] * acc;
}

cudaError_t lora_shrink(int dtype, const ShrinkBatch &b, cudaStream_t s) {
  int total = 0;
  for (int j = 0; j < b.njobs; j++) total += b.top_k * b.job[j].rank;
  if (total == 0) return cudaSuccess;
  dim3 grid(cdiv(total, 8));
  switch (dtype) {
    case LSW_DTYPE_F32: lora_shrink_kernel<float><<<grid, 256, 0, s>>>(b); break;
    case LSW_DTYPE_F16: lora_shrink_kernel<__half><<<grid, 256, 0, s>>>(b); break;
    case LSW_DTYPE_BF16: lora_shrink_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(b); break;
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
// Every block builds the input vector v in shared memory:
//   mode 0 (RMSNorm): v = x / sqrt(mean(x^2) + eps) * w        mode 1 (SwiGLU): v = silu(x[i]) * x[D + i]
// writes its slice of v to `out` (the input of the following GEMV), then its warps compute shrink rows
//   t_j[k*rank + i] = gates[k] * dot(A_j[experts[k]][i], v)  (4 x 16-byte loads in flight per lane).
template <typename T>
__global__ void __launch_bounds__(256) prologue_shrink_kernel(int mode, int D, const float *__restrict__ x,
                                                              const float *__restrict__ w, float eps,
                                                              float *__restrict__ out, ShrinkBatch b) {
  extern __shared__ float4 v4[];
  float *v = reinterpret_cast<float *>(v4);
  __shared__ float red[32];
  const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
  if (mode == 0) {
    float ss = 0.f;
    for (int i = tid; i < D; i += blockDim.x) ss = fmaf(x[i], x[i], ss);
    ss = warp_sum(ss);
    if (lane == 0) red[wid] = ss;
    __syncthreads();
    if (tid < 32) {
      float s2 = tid < (int)(blockDim.x >> 5) ? red[tid] : 0.f;
      s2 = warp_sum(s2);
      if (tid == 0) red[0] = 1.f / sqrtf(s2 / (float)D + eps);
    }
    __syncthreads();
    const float inv = red[0];
    for (int i = tid; i < D; i += blockDim.x) v[i] = x[i] * inv * w[i];
  } else {
    for (int i = tid; i < D; i += blockDim.x) {
      const float g = x[i];
      v[i] = g / (1.f + expf(-g)) * x[D + i];
    }
  }
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + tid; i < D; i += gridDim.x * blockDim.x) out[i] = v[i];

  int row = blockIdx.x * (blockDim.x >> 5) + wid;
  int j = 0;
  for (; j < b.njobs; j++) {
    const int nr = b.top_k * b.job[j].rank;
    if (row < nr) break;
    row -= nr;
  }
  if (j >= b.njobs) return;
  const ShrinkJob &jb = b.job[j];
  const int k = row / jb.rank, i = row - k * jb.rank;
  const int e = b.experts[k];
  const T *a = static_cast<const T *>(jb.A) + ((size_t)e * jb.rank + i) * jb.cols;
  constexpr int VEC = Tr<T>::VEC, U = 4;
  float acc = 0.f;
  if (jb.cols == D && D % VEC == 0 && (reinterpret_cast<uintptr_t>(a) & 15) == 0) {
    const int nvec = D / VEC;
    const uint4 *ap = reinterpret_cast<const uint4 *>(a);
    int c0 = lane;
    for (; c0 + 32 * (U - 1) < nvec; c0 += 32 * U) {
      uint4 wv[U];
#pragma unroll
      for (int u = 0; u < U; u++) wv[u] = ld_stream(ap + c0 + 32 * u);
#pragma unroll
      for (int u = 0; u < U; u++) {
        float f[VEC];
        unpack16<T>(wv[u], f);
        const float *vp = v + (size_t)(c0 + 32 * u) * VEC;
#pragma unroll
        for (int q = 0; q < VEC; q++) acc = fmaf(f[q], vp[q], acc);
      }
    }
    for (; c0 < nvec; c0 += 32) {
      float f[VEC];
      unpack16<T>(ld_stream(ap + c0), f);
      const float *vp = v + (size_t)c0 * VEC;
#pragma unroll
      for (int q = 0; q < VEC; q++) acc = fmaf(f[q], vp[q], acc);
    }
  } else {
    for (int c = lane; c < jb.cols && c < D; c += 32) acc = fmaf(Tr<T>::to_f(a[c]), v[c], acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) jb.t[row] = b.gates[k] * acc;
}

cudaError_t prologue_shrink(int dtype, int mode, int D, const float *x, const float *w, float eps, float *out,
                            const ShrinkBatch &b, cudaStream_t s) {
  if (D <= 0) return cudaSuccess;
  int total = 0;
  for (int j = 0; j < b.njobs; j++) {
    if (b.job[j].cols != D) return cudaErrorInvalidValue;  // every job reads v
    total += b.top_k * b.job[j].rank;
  }
  int blocks = cdiv(total, 8);
  if (blocks < 1) blocks = 1;
  const size_t sh = sizeof(float) * (size_t)D;
  cudaError_t e = cudaSuccess;
  auto go = [&](auto kern) {
    if (sh > 48 * 1024) e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sh);
    if (e == cudaSuccess) kern<<<blocks, 256, sh, s>>>(mode, D, x, w, eps, out, b);
  };
  switch (dtype) {
    case LSW_DTYPE_F32: go(prologue_shrink_kernel<float>); break;
    case LSW_DTYPE_F16: go(prologue_shrink_kernel<__half>); break;
    case LSW_DTYPE_BF16: go(prologue_shrink_kernel<__nv_bfloat16>); break;
    default: return cudaErrorInvalidValue;
  }
  if (e != cudaSuccess) return e;
  LSWC_LAUNCH_RET();
}

}  // namespace lswc

// lswc_op_*: host pointers in/out around the production kernels (tests compare them with the CPU backend
// through the same C ABI).  Each call: check device, allocate, copy in, launch, copy out, free.
#include "kernels.cuh"
#include "../backend_cuda.h"
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace lsw {  // engine (cpu.cpp): the same rope frequencies as the CPU backend
void rope_inv_freq(const lsw_model_config *cfg, std::vector<double> &inv_freq);
}

namespace {

struct DevBuf {
  void *p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  DevBuf(const DevBuf &) = delete;
  DevBuf &operator=(const DevBuf &) = delete;
  ~DevBuf() { if (p) cudaFree(p); }
  lsw_status alloc(size_t bytes) {
    n = bytes;
    LSWC_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
    return LSW_OK;
  }
  lsw_status upload(const void *h, size_t bytes) {
    lsw_status st = alloc(bytes);
    if (st) return st;
    if (bytes) LSWC_CHECK(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
    return LSW_OK;
  }
  lsw_status download(void *h, size_t bytes) const {
    if (bytes) LSWC_CHECK(cudaMemcpy(h, p, bytes, cudaMemcpyDeviceToHost));
    return LSW_OK;
  }
  template <typename T> T *as() const { return static_cast<T *>(p); }
};

lsw_status ready() {
  if (!lswc_available()) { lsw_set_error("no usable CUDA device (compute capability >= 9.0)"); return LSW_E_BACKEND_UNAVAILABLE; }
  return LSW_OK;
}

}  // namespace

#define TRY(x)                          \
  do {                                  \
    lsw_status st_ = (x);               \
    if (st_ != LSW_OK) return st_;      \
  } while (0)
#define BAD(...) (lsw_set_error(__VA_ARGS__), LSW_E_INVALID_ARGUMENT)
// finish: launch error, then completion (asynchronous faults surface here)
#define FINISH(launch)                                      \
  do {                                                      \
    LSWC_CHECK(launch);                                     \
    LSWC_CHECK(cudaDeviceSynchronize());                    \
  } while (0)

lsw_status lswc_op_matmul(int32_t dtype, int32_t rows, int32_t cols, int32_t n, const void *W, const float *X, float *Y) {
  if (!lswc::dtype_bytes(dtype) || rows <= 0 || cols <= 0 || n <= 0 || !W || !X || !Y)
    return BAD("lsw_op_matmul: bad arguments (dtype %d, rows %d, cols %d, n %d)", dtype, rows, cols, n);
  TRY(ready());
  DevBuf dW, dX, dY, xb;
  TRY(dW.upload(W, (size_t)rows * cols * lswc::dtype_bytes(dtype)));
  TRY(dX.upload(X, (size_t)n * cols * 4));
  TRY(dY.alloc((size_t)n * rows * 4));
  if (n <= 8) {
    FINISH(lswc::gemv(dtype, dW.p, rows, cols, dX.as<float>(), cols, n, dY.as<float>(), rows, nullptr, false, nullptr, 0));
  } else {
    TRY(xb.alloc(lswc::gemm_xbuf_bytes(n, cols)));
    FINISH(lswc::gemm(dtype, dW.p, rows, cols, dX.as<float>(), cols, n, dY.as<float>(), rows, nullptr, false,
                      /*precise=*/true, xb.p, 0));
  }
  return dY.download(Y, (size_t)n * rows * 4);
}

lsw_status lswc_op_rmsnorm(int32_t n, int32_t dim, const float *X, const float *w, float eps, float *Y) {
  if (n <= 0 || dim <= 0 || !X || !w || !Y) return BAD("lsw_op_rmsnorm: bad arguments (n %d, dim %d)", n, dim);
  TRY(ready());
  DevBuf dX, dw, dY;
  TRY(dX.upload(X, (size_t)n * dim * 4));
  TRY(dw.upload(w, (size_t)dim * 4));
  TRY(dY.alloc((size_t)n * dim * 4));
  FINISH(lswc::rmsnorm(n, dim, dX.as<float>(), dim, dw.as<float>(), eps, dY.as<float>(), dim, 0));
  return dY.download(Y, (size_t)n * dim * 4);
}

lsw_status lswc_op_rope(const lsw_model_config *cfg, int32_t n, int32_t n_heads, const int32_t *positions, float *X) {
  if (!cfg || n <= 0 || n_heads <= 0 || cfg->head_dim <= 0 || cfg->head_dim % 2 || !positions || !X)
    return BAD("lsw_op_rope: bad arguments");
  TRY(ready());
  std::vector<double> inv;
  lsw::rope_inv_freq(cfg, inv);
  const int hd = cfg->head_dim;
  if ((int)inv.size() != hd / 2) return BAD("lsw_op_rope: rope table has %d entries, expected %d", (int)inv.size(), hd / 2);
  DevBuf dX, dp, di;
  TRY(dX.upload(X, (size_t)n * n_heads * hd * 4));
  TRY(dp.upload(positions, (size_t)n * 4));
  TRY(di.upload(inv.data(), inv.size() * 8));
  FINISH(lswc::rope(n, n_heads, hd, n_heads * hd, dp.as<int>(), di.as<double>(), dX.as<float>(), 0));
  return dX.download(X, (size_t)n * n_heads * hd * 4);
}

lsw_status lswc_op_attention(int32_t kv_dtype, int32_t n, int32_t n_ctx, int32_t n_heads, int32_t n_kv_heads,
                             int32_t head_dim, const float *Q, const void *K, const void *V, float *O) {
  const size_t es = lswc::dtype_bytes(kv_dtype);
  if (n <= 0 || n_ctx < n || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || head_dim <= 0 ||
      head_dim > 256 || !es || !Q || !K || !V || !O)
    return BAD("lsw_op_attention: bad arguments (kv_dtype %d, n %d, n_ctx %d, heads %d/%d, head_dim %d; CUDA needs "
               "head_dim <= 256)", kv_dtype, n, n_ctx, n_heads, n_kv_heads, head_dim);
  TRY(ready());
  const size_t q = (size_t)n * n_heads * head_dim, kv = (size_t)n_ctx * n_kv_heads * head_dim;
  DevBuf dQ, dK, dV, dO, sc;
  TRY(dQ.upload(Q, q * 4));
  TRY(dK.upload(K, kv * es));
  TRY(dV.upload(V, kv * es));
  TRY(dO.alloc(q * 4));
  TRY(sc.alloc(lswc::attn_scratch_floats(n_heads, head_dim) * 4));
  if (cudaError_t e = lswc::attn_scratch_clear(sc.as<float>(), n_heads, head_dim, 0)) return lswc_cuda_fail(e, "clearing the attention scratch", __FILE__, __LINE__);
  FINISH(lswc::attention(n, n_ctx, nullptr, n_heads, n_kv_heads, head_dim, dQ.as<float>(), n_heads * head_dim,
                         kv_dtype, dK.as<void>(), dV.as<void>(), n_kv_heads * head_dim, dO.as<float>(),
                         n_heads * head_dim, sc.as<float>(), 0));
  return dO.download(O, q * 4);
}

lsw_status lswc_op_swiglu(int32_t n, int32_t inter, const float *GU, float *Out) {
  if (n <= 0 || inter <= 0 || !GU || !Out) return BAD("lsw_op_swiglu: bad arguments");
  TRY(ready());
  DevBuf dG, dO;
  TRY(dG.upload(GU, (size_t)n * 2 * inter * 4));
  TRY(dO.alloc((size_t)n * inter * 4));
  FINISH(lswc::swiglu(n, inter, dG.as<float>(), 2 * inter, dO.as<float>(), inter, 0));
  return dO.download(Out, (size_t)n * inter * 4);
}

lsw_status lswc_op_sgmm(int32_t dtype, int32_t n_mats, int32_t rows, int32_t cols, int32_t rank, int32_t top_k,
                        const void *W0, void *W, const void *A, const void *B, const float *gates) {
  if (!lswc::dtype_bytes(dtype) || n_mats <= 0 || rows <= 0 || cols <= 0 || rank <= 0 || top_k <= 0 || !W0 || !W || !A || !B || !gates)
    return BAD("lsw_op_sgmm: bad arguments");
  TRY(ready());
  const size_t es = lswc::dtype_bytes(dtype), wn = (size_t)n_mats * rows * cols, an = (size_t)n_mats * top_k * rank * cols,
               bn = (size_t)n_mats * top_k * rows * rank;
  DevBuf dW0, dW, dA, dB, dg, de, dd;
  TRY(dW0.upload(W0, wn * es));
  TRY(dW.alloc(wn * es));
  TRY(dA.upload(A, an * es));
  TRY(dB.upload(B, bn * es));
  TRY(dg.upload(gates, (size_t)top_k * 4));
  std::vector<int> ex(top_k);
  for (int k = 0; k < top_k; k++) ex[k] = k;  // expert k of matrix m is the k-th stacked A/B
  TRY(de.upload(ex.data(), (size_t)top_k * 4));
  std::vector<lswc::SgmmDesc> d(n_mats);
  // default: the SIMT kernel, bit-identical to the CPU (docs/FORMAT.md arithmetic); LSW_CUDA_SGMM_TC=1 runs
  // the production tensor-core kernel instead (within 1 ulp of the output dtype); LSW_CUDA_SGMM_VARIANT=v (0..3)
  // runs tensor-core variant v for this call (0 one-shot, 1 persistent, 3 streaming: within 1 ulp, the same bits
  // as each other; 2 exact tiled: bit-identical to the CPU)
  bool tc = lswc::env_flag("LSW_CUDA_SGMM_TC", false);
  const int variant = lswc::sgmm_env_variant();
  if (variant >= 0) tc = true;
  for (int m = 0; m < n_mats; m++) {
    d[m].W0 = dW0.as<char>() + (size_t)m * rows * cols * es;
    d[m].W = dW.as<char>() + (size_t)m * rows * cols * es;
    d[m].A = dA.as<char>() + (size_t)m * top_k * rank * cols * es;
    d[m].B = dB.as<char>() + (size_t)m * top_k * rows * rank * es;
    d[m].rows = rows; d[m].cols = cols; d[m].rank = rank; d[m].slot = 0;
    tc = tc && lswc::sgmm_tc_ok(dtype, d[m]);
  }
  const int tiles = lswc::sgmm_prepare(d.data(), n_mats, tc);
  TRY(dd.upload(d.data(), d.size() * sizeof(lswc::SgmmDesc)));
  const int saved = lswc::sgmm_tc_variant();
  if (tc && variant >= 0) lswc::sgmm_set_tc_variant(variant);
  const cudaError_t e = lswc::sgmm(dtype, dd.as<lswc::SgmmDesc>(), n_mats, tiles, tc, top_k, de.as<int>(), dg.as<float>(),
                                   nullptr, 0, rank);
  lswc::sgmm_set_tc_variant(saved);
  FINISH(e);
  return dW.download(W, wn * es);
}

lsw_status lswc_op_lora_fused(int32_t dtype, int32_t rows, int32_t cols, int32_t rank, int32_t top_k, const void *W,
                              const void *A, const void *B, const float *gates, const float *x, float *Y) {
  if (!lswc::dtype_bytes(dtype) || rows <= 0 || cols <= 0 || rank <= 0 || top_k <= 0 || !W || !A || !B || !gates || !x || !Y)
    return BAD("lsw_op_lora_fused: bad arguments");
  TRY(ready());
  const size_t es = lswc::dtype_bytes(dtype);
  DevBuf dW, dA, dB, dg, de, dx, dt, dY;
  TRY(dW.upload(W, (size_t)rows * cols * es));
  TRY(dA.upload(A, (size_t)top_k * rank * cols * es));
  TRY(dB.upload(B, (size_t)top_k * rows * rank * es));
  TRY(dg.upload(gates, (size_t)top_k * 4));
  std::vector<int> ex(top_k);
  for (int k = 0; k < top_k; k++) ex[k] = k;
  TRY(de.upload(ex.data(), (size_t)top_k * 4));
  TRY(dx.upload(x, (size_t)cols * 4));
  TRY(dt.alloc((size_t)top_k * rank * 4));
  TRY(dY.alloc((size_t)rows * 4));
  DevBuf sync;
  TRY(sync.alloc(2 * sizeof(int)));
  LSWC_CHECK(cudaMemset(sync.p, 0, 2 * sizeof(int)));
  // as the fused decode runs it: the shrink inside the GEMV launch (LoraSeg::A; gemv() falls back to a separate
  // shrink launch where the vector kernel cannot run)
  lswc::LoraEpilogue ep;
  ep.nseg = 1; ep.top_k = top_k;
  ep.seg[0] = {0, rows, rank, dB.p, dt.as<float>(), de.as<int>(), dA.p, dg.as<float>()};
  ep.sync = sync.as<int>();
  ep.n_experts = top_k;  // the A rows requested before the launch's wait, as in the decode
  FINISH(lswc::gemv(dtype, dW.p, rows, cols, dx.as<float>(), cols, 1, dY.as<float>(), rows, nullptr, false, &ep, 0));
  return dY.download(Y, (size_t)rows * 4);
}

lsw_status lswc_op_route(int32_t dtype, int32_t n_experts, int32_t dim, int32_t top_k, const void *R, const float *x,
                         int32_t *experts, float *gates) {
  if (!lswc::dtype_bytes(dtype) || n_experts <= 0 || dim <= 0 || top_k <= 0 || top_k > n_experts || !R || !x || !experts || !gates)
    return BAD("lsw_op_route: bad arguments");
  TRY(ready());
  DevBuf dR, dx, de, dg;
  TRY(dR.upload(R, (size_t)n_experts * dim * lswc::dtype_bytes(dtype)));
  TRY(dx.upload(x, (size_t)dim * 4));
  TRY(de.alloc((size_t)top_k * 4));
  TRY(dg.alloc((size_t)top_k * 4));
  FINISH(lswc::route(dtype, n_experts, dim, top_k, dR.p, dx.as<float>(), de.as<int>(), dg.as<float>(), 0));
  TRY(de.download(experts, (size_t)top_k * 4));
  return dg.download(gates, (size_t)top_k * 4);
}

lsw_status lswc_op_sample(int32_t vocab, const float *logits, const lsw_sampler_params *p, uint64_t step, int32_t *token,
                          int32_t *nonfinite) {
  if (vocab <= 0 || !logits || !p || !token || !nonfinite) return BAD("lsw_op_sample: bad arguments");
  TRY(ready());
  DevBuf dl, keep, pd, dt;
  TRY(dl.upload(logits, (size_t)vocab * 4));
  TRY(dt.alloc(8));  // token, nonfinite
  LSWC_CHECK(cudaMemset(dt.p, 0xff, 8));  // neither kernel may leave them unwritten
  if (lswc::sampler_greedy(p->temperature, p->top_k)) {  // greedy: the decode step's tail kernel, with its bookkeeping on
    struct Scratch { lswc::GreedyState g; int io[4]; unsigned long long step; };  // the bookkeeping it also does
    DevBuf ds;
    TRY(ds.alloc(sizeof(Scratch)));
    LSWC_CHECK(cudaMemset(ds.p, 0, sizeof(Scratch)));
    Scratch *sc = ds.as<Scratch>();
    FINISH(lswc::greedy_advance(vocab, dl.as<float>(), &sc->g, sc->io, dt.as<int>(), dt.as<int>() + 1, &sc->step,
                                nullptr, nullptr, 0, false, 0));
  } else {
    TRY(keep.alloc((size_t)vocab));
    TRY(pd.alloc(lswc::sample_scratch_doubles(vocab) * 8));
    FINISH(lswc::sample(vocab, dl.as<float>(), *p, nullptr, step, keep.as<unsigned char>(), pd.as<double>(),
                        dt.as<int>(), dt.as<int>() + 1, 0));
  }
  int32_t out[2];
  TRY(dt.download(out, 8));
  *token = out[0];
  *nonfinite = out[1];
  return LSW_OK;
}

// Matmul rate of the prefill GEMM as the model forward runs it with prefill_precision FAST: lswc::gemm(precise =
// false), i.e. the rounding of X to the weight dtype plus one tensor-core GEMM (cuBLAS with LSW_HAVE_CUBLAS, else
// the WMMA kernel; F32 weights / cols % 8 != 0: the SIMT kernel).  Fresh seeded random W and X on the device
// (random_fill: never zero); 3 warm-up runs (cuBLAS handle, heuristics, clocks), then 10 runs each between two
// CUDA events on a private stream; median.
lsw_status lswc_measure_matmul(int32_t dtype, int32_t rows, int32_t cols, int32_t n, double *tflops) {
  if (!lswc::dtype_bytes(dtype) || rows <= 0 || cols <= 0 || n <= 0 || !tflops)
    return BAD("lsw_measure_matmul: bad arguments (dtype %d, %d x %d x %d)", dtype, rows, cols, n);
  TRY(ready());
  DevBuf dW, dX, dY, xb;
  TRY(dW.alloc((size_t)rows * cols * lswc::dtype_bytes(dtype)));
  TRY(dX.alloc((size_t)n * cols * 4));
  TRY(dY.alloc((size_t)n * rows * 4));
  TRY(xb.alloc(lswc::gemm_xbuf_bytes(n, cols)));
  static std::atomic<unsigned long long> calls{0};
  const unsigned long long seed = 0x6d61746d756cull + 7919ull * calls.fetch_add(1);
  cudaStream_t s = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  lsw_status status = LSW_OK;
  auto chk = [&](cudaError_t e, const char *what) {
    if (e != cudaSuccess && status == LSW_OK) status = lswc_cuda_fail(e, what, __FILE__, __LINE__);
    return status == LSW_OK;
  };
  std::vector<float> times;
  if (chk(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate") &&
      chk(cudaEventCreate(&e0), "cudaEventCreate") && chk(cudaEventCreate(&e1), "cudaEventCreate") &&
      chk(lswc::random_fill(dtype, dW.p, (long long)rows * cols, seed, 0.02f, 0, s), "random_fill (W)") &&
      chk(lswc::random_fill(LSW_DTYPE_F32, dX.p, (long long)n * cols, seed + 1, 1.f, 0, s), "random_fill (X)")) {
    for (int r = 0; r < 13 && status == LSW_OK; r++) {  // 3 warm-up + 10 timed
      chk(cudaEventRecord(e0, s), "cudaEventRecord");
      chk(lswc::gemm(dtype, dW.p, rows, cols, dX.as<float>(), cols, n, dY.as<float>(), rows, nullptr, false,
                     /*precise=*/false, xb.p, s), "lswc::gemm");
      chk(cudaEventRecord(e1, s), "cudaEventRecord");
      chk(cudaEventSynchronize(e1), "cudaEventSynchronize");
      float ms = 0;
      chk(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
      if (r >= 3) times.push_back(ms);
    }
  }
  // a sample of Y: finite numbers (a GEMM that did not run would leave garbage or NaN)
  std::vector<float> ys(std::min<size_t>((size_t)n * rows, 4096));
  if (status == LSW_OK) chk(cudaMemcpyAsync(ys.data(), dY.p, ys.size() * 4, cudaMemcpyDeviceToHost, s), "cudaMemcpy (Y)");
  if (s) chk(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (s) cudaStreamDestroy(s);
  if (status != LSW_OK) return status;
  for (float y : ys)
    if (!std::isfinite(y)) { lsw_set_error("lsw_measure_matmul: the GEMM gave a non-finite result"); return LSW_E_INTERNAL; }
  std::sort(times.begin(), times.end());
  const double med = (times[4] + times[5]) / 2;
  if (!(med > 0)) { lsw_set_error("lsw_measure_matmul: the timed GEMM took %g ms", med); return LSW_E_INTERNAL; }
  *tflops = 2.0 * rows * cols * n / (med * 1e-3) / 1e12;
  return LSW_OK;
}

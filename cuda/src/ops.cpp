// lsw_op_*: every kernel of the engine callable with host buffers on either backend.
// CPU: the same production kernels the model forward uses.  CUDA: lswc_op_* (backend_cuda.h).
#include <cmath>
#include <vector>

#include "backend_cuda.h"
#include "engine.h"

using namespace lsw;

#ifdef LSW_HAVE_CUDA
#define CUDA_CALL(call)                                                                                       \
  do {                                                                                                        \
    if (!lswc_available()) return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "CUDA backend: no usable CUDA device"); \
    return call;                                                                                              \
  } while (0)
#else
#define CUDA_CALL(call) \
  return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "the CUDA backend is not built into this library (nvcc was not found)")
#endif

#define CHECK_BACKEND(b)                                                                              \
  if ((b) != LSW_BACKEND_CPU && (b) != LSW_BACKEND_CUDA)                                              \
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "unknown backend %d", (int)(b));
#define CHECK_DTYPE(d) \
  if (dtype_size(d) == 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "unknown dtype %d", (int)(d));
#define CHECK_POS(v) \
  if ((v) <= 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, #v " must be positive (got %d)", (int)(v));
#define CHECK_NN(p) \
  if (!(p)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, #p " is NULL");

extern "C" {

LSW_API lsw_status lsw_op_matmul(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t n, const void *W,
                                 const float *X, float *Y) {
  CHECK_BACKEND(backend) CHECK_DTYPE(dtype) CHECK_POS(rows) CHECK_POS(cols) CHECK_POS(n) CHECK_NN(W) CHECK_NN(X)
  CHECK_NN(Y)
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(lswc_op_matmul(dtype, rows, cols, n, W, X, Y));
  LSW_GUARD_BEGIN
  matmul(&default_pool(), dtype, W, rows, cols, X, cols, n, Y, rows, false);
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_op_rmsnorm(int32_t backend, int32_t n, int32_t dim, const float *X, const float *w, float eps,
                                  float *Y) {
  CHECK_BACKEND(backend) CHECK_POS(n) CHECK_POS(dim) CHECK_NN(X) CHECK_NN(w) CHECK_NN(Y)
  if (!(eps >= 0)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "eps must be >= 0");
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(lswc_op_rmsnorm(n, dim, X, w, eps, Y));
  rmsnorm(n, dim, X, w, eps, Y);
  return LSW_OK;
}

LSW_API lsw_status lsw_op_rope(int32_t backend, const lsw_model_config *cfg, int32_t n, int32_t n_heads,
                               const int32_t *positions, float *X) {
  CHECK_BACKEND(backend) CHECK_NN(cfg) CHECK_POS(n) CHECK_POS(n_heads) CHECK_NN(positions) CHECK_NN(X)
  if (cfg->head_dim <= 0 || cfg->head_dim % 2)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "cfg->head_dim must be positive and even (got %d)", cfg->head_dim);
  if (!(cfg->rope_theta > 0)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "cfg->rope_theta must be positive");
  if (cfg->rope_type < 0 || cfg->rope_type > 2)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "unknown rope_type %d", cfg->rope_type);
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(lswc_op_rope(cfg, n, n_heads, positions, X));
  LSW_GUARD_BEGIN
  std::vector<double> inv;
  rope_inv_freq(cfg, inv);
  const int64_t half = cfg->head_dim / 2;
  std::vector<float> c((size_t)n * half), s((size_t)n * half);
  rope_tables(inv, n, positions, c.data(), s.data());
  rope_apply(n, n_heads, cfg->head_dim, (int64_t)n_heads * cfg->head_dim, c.data(), s.data(), X);
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_op_attention(int32_t backend, int32_t kv_dtype, int32_t n, int32_t n_ctx, int32_t n_heads,
                                    int32_t n_kv_heads, int32_t head_dim, const float *Q, const void *K, const void *V,
                                    float *O) {
  CHECK_BACKEND(backend) CHECK_POS(n) CHECK_POS(n_ctx) CHECK_POS(n_heads) CHECK_POS(n_kv_heads) CHECK_POS(head_dim)
  CHECK_NN(Q) CHECK_NN(K) CHECK_NN(V) CHECK_NN(O)
  if (kv_dtype < LSW_DTYPE_F32 || kv_dtype > LSW_DTYPE_BF16)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "unknown kv_dtype %d (0 f32, 1 f16, 2 bf16)", kv_dtype);
  if (n > n_ctx) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "n (%d) > n_ctx (%d)", n, n_ctx);
  if (n_heads % n_kv_heads)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "n_heads (%d) is not a multiple of n_kv_heads (%d)", n_heads, n_kv_heads);
  if (backend == LSW_BACKEND_CUDA)
    CUDA_CALL(lswc_op_attention(kv_dtype, n, n_ctx, n_heads, n_kv_heads, head_dim, Q, K, V, O));
  LSW_GUARD_BEGIN
  ThreadPool &p = default_pool();
  std::vector<float> work(attention_scratch_floats(p.size(), n, n_ctx, n_heads, head_dim));
  const int64_t ldq = (int64_t)n_heads * head_dim, ldkv = (int64_t)n_kv_heads * head_dim;
  attention(&p, n, n_ctx, n_heads, n_kv_heads, head_dim, Q, ldq, kv_dtype, K, V, ldkv, O, ldq, work.data());
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_op_swiglu(int32_t backend, int32_t n, int32_t inter, const float *GU, float *Out) {
  CHECK_BACKEND(backend) CHECK_POS(n) CHECK_POS(inter) CHECK_NN(GU) CHECK_NN(Out)
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(lswc_op_swiglu(n, inter, GU, Out));
  swiglu(n, inter, GU, 2 * (int64_t)inter, Out, inter);
  return LSW_OK;
}

LSW_API lsw_status lsw_op_sgmm(int32_t backend, int32_t dtype, int32_t n_mats, int32_t rows, int32_t cols,
                               int32_t rank, int32_t top_k, const void *W0, void *W, const void *A, const void *B,
                               const float *gates) {
  CHECK_BACKEND(backend) CHECK_DTYPE(dtype) CHECK_POS(n_mats) CHECK_POS(rows) CHECK_POS(cols) CHECK_NN(W0)
  CHECK_NN(W)
  if (rank < 0 || top_k < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "rank and top_k must be >= 0");
  if (rank > 0 && top_k > 0 && (!A || !B || !gates))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "A, B and gates must not be NULL when rank and top_k are positive");
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(lswc_op_sgmm(dtype, n_mats, rows, cols, rank, top_k, W0, W, A, B, gates));
  LSW_GUARD_BEGIN
  sgmm(&default_pool(), dtype, n_mats, rows, cols, rank, (rank > 0 ? top_k : 0), W0, W, A, B, gates);
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_op_lora_fused(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t rank,
                                     int32_t top_k, const void *W, const void *A, const void *B, const float *gates,
                                     const float *x, float *Y) {
  CHECK_BACKEND(backend) CHECK_DTYPE(dtype) CHECK_POS(rows) CHECK_POS(cols) CHECK_NN(W) CHECK_NN(x) CHECK_NN(Y)
  if (rank < 0 || top_k < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "rank and top_k must be >= 0");
  if (rank > 0 && top_k > 0 && (!A || !B || !gates))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "A, B and gates must not be NULL when rank and top_k are positive");
  if (backend == LSW_BACKEND_CUDA)
    CUDA_CALL(lswc_op_lora_fused(dtype, rows, cols, rank, top_k, W, A, B, gates, x, Y));
  LSW_GUARD_BEGIN
  lora_fused(&default_pool(), dtype, rows, cols, rank, (rank > 0 ? top_k : 0), W, A, B, gates, x, Y);
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_op_route(int32_t backend, int32_t dtype, int32_t n_experts, int32_t dim, int32_t top_k,
                                const void *R, const float *x, int32_t *experts, float *gates) {
  CHECK_BACKEND(backend) CHECK_DTYPE(dtype) CHECK_POS(n_experts) CHECK_POS(dim) CHECK_POS(top_k) CHECK_NN(R)
  CHECK_NN(x) CHECK_NN(experts) CHECK_NN(gates)
  if (top_k > n_experts)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "top_k (%d) > n_experts (%d)", top_k, n_experts);
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(lswc_op_route(dtype, n_experts, dim, top_k, R, x, experts, gates));
  LSW_GUARD_BEGIN
  route(dtype, n_experts, dim, top_k, R, x, experts, gates);
  return LSW_OK;
  LSW_GUARD_END
}

#ifdef LSW_HAVE_CUDA
// The CUDA sampler flags non-finite logits (a token is written all the same); the host counts them for the message.
static lsw_status cuda_sample(int32_t vocab, const float *logits, const lsw_sampler_params *p, uint64_t step,
                              int32_t *token) {
  int32_t tok = 0, nonfinite = 0;
  if (lsw_status st = lswc_op_sample(vocab, logits, p, step, &tok, &nonfinite)) return st;
  if (nonfinite) {
    if (lsw_status st = check_logits(vocab, logits, -1)) return st;
    return LSW_FAIL(LSW_E_INTERNAL, "lsw_op_sample: the CUDA sampler flagged finite logits as non-finite");
  }
  *token = tok;
  return LSW_OK;
}
#endif

LSW_API lsw_status lsw_op_sample(int32_t backend, int32_t vocab, const float *logits, const lsw_sampler_params *p,
                                 uint64_t step, int32_t *token) {
  CHECK_BACKEND(backend) CHECK_POS(vocab) CHECK_NN(logits) CHECK_NN(p) CHECK_NN(token)
  if (!(p->temperature >= 0) || !std::isfinite(p->temperature))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "temperature must be a finite number >= 0");
  if (p->top_k < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "top_k must be >= 0");
  if (!(p->top_p > 0 && p->top_p <= 1)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "top_p must be in (0, 1]");
  if (!(p->min_p >= 0 && p->min_p <= 1)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "min_p must be in [0, 1]");
  if (backend == LSW_BACKEND_CUDA) CUDA_CALL(cuda_sample(vocab, logits, p, step, token));
  LSW_GUARD_BEGIN
  if (lsw_status st = check_logits(vocab, logits, -1)) return st;
  static thread_local SampleWork w;  // (reused, as a model's is: no allocation per call)
  *token = sample(vocab, logits, *p, step, w);
  return LSW_OK;
  LSW_GUARD_END
}

}  // extern "C"

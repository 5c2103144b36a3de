// Internal interface between the engine (cuda/src/*.cpp, always built) and the CUDA backend
// (cuda/src/cuda/*.cu, built only where nvcc exists; LSW_HAVE_CUDA is then defined).
// The op entries mirror lsw_op_* in lsw.h without the backend argument; they take HOST pointers,
// copy to the device, run the production kernel, copy back.  They set the thread's last error
// through lsw_set_error (engine.h) and return an lsw_status.
#pragma once
#include "lsw.h"

#ifdef LSW_HAVE_CUDA
extern "C++" {
int lswc_available();  // 1 when a device is usable
lsw_status lswc_op_matmul(int32_t dtype, int32_t rows, int32_t cols, int32_t n, const void *W, const float *X, float *Y);
lsw_status lswc_op_rmsnorm(int32_t n, int32_t dim, const float *X, const float *w, float eps, float *Y);
lsw_status lswc_op_rope(const lsw_model_config *cfg, int32_t n, int32_t n_heads, const int32_t *positions, float *X);
lsw_status lswc_op_attention(int32_t kv_dtype, int32_t n, int32_t n_ctx, int32_t n_heads, int32_t n_kv_heads,
                             int32_t head_dim, const float *Q, const void *K, const void *V, float *O);
lsw_status lswc_op_swiglu(int32_t n, int32_t inter, const float *GU, float *Out);
lsw_status lswc_op_sgmm(int32_t dtype, int32_t n_mats, int32_t rows, int32_t cols, int32_t rank, int32_t top_k,
                        const void *W0, void *W, const void *A, const void *B, const float *gates);
lsw_status lswc_op_lora_fused(int32_t dtype, int32_t rows, int32_t cols, int32_t rank, int32_t top_k, const void *W,
                              const void *A, const void *B, const float *gates, const float *x, float *Y);
lsw_status lswc_op_route(int32_t dtype, int32_t n_experts, int32_t dim, int32_t top_k, const void *R, const float *x,
                         int32_t *experts, float *gates);
// *nonfinite: 1 when a logit is NaN or infinite (the kernels flag it; *token is still written), else 0
lsw_status lswc_op_sample(int32_t vocab, const float *logits, const lsw_sampler_params *p, uint64_t step, int32_t *token,
                          int32_t *nonfinite);
// lsw_measure_matmul(LSW_BACKEND_CUDA) (ops.cu): lswc::gemm in its fast precision on fresh random device data,
// median of 10 CUDA-event-timed runs after 3 warm-ups; arguments already checked by api.cpp.
lsw_status lswc_measure_matmul(int32_t dtype, int32_t rows, int32_t cols, int32_t n, double *tflops);

// The CUDA model forward (cuda/src/cuda/model.cu), contract in engine.h "CUDA hook".
#define LSW_CUDA_MODEL 1
struct lsw_model;
lsw_status lswc_model_finalize(lsw_model *m);
lsw_status lswc_model_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits);
void lswc_model_reset(lsw_model *m);
void lswc_model_free(lsw_model *m);
int lswc_model_graph_nodes(const lsw_model *m);  // kernel/memcpy nodes of the captured decode step (0: none yet)
#define LSW_CUDA_STEP 1       // api.cpp routes lsw_model_step / get_stats / bench_decode of CUDA models here
#define LSW_CUDA_BANDWIDTH 1  // and lsw_measure_bandwidth(LSW_BACKEND_CUDA)
// Append one token and sample the next with m->sampler at step m->sample_step, on the device inside the decode
// graph (one graph launch + one sync).  Advances m->n_past; the caller increments m->sample_step on success.
lsw_status lswc_model_step(lsw_model *m, int32_t token, int32_t *next_token);
// The decode step leaves its logits on the device; this copies them into m->logits when they are newer than it
// (lsw_model_get_logits calls it; a forward calls it itself before returning).
lsw_status lswc_model_fetch_logits(lsw_model *m);
// CUDA fields of lsw_model_stats: launches_per_token (graph nodes; captures the step if needed), graph_captured,
// device_bytes_peak, merge_steps/merge_skipped.  The caller fills the rest.
lsw_status lswc_model_stats(lsw_model *m, lsw_model_stats *out);
// n greedy steps from the current state through the decode graph, host wall time per step (ms).
// forced: NULL for greedy steps, else step i appends forced[i] (lsw_model_bench_decode_tokens)
lsw_status lswc_model_bench_decode(lsw_model *m, int32_t first_token, int32_t n_tokens, double *ms_per_token,
                                   const int32_t *forced = nullptr);
// Device-to-device copy bandwidth (bytes read + written per second, GB/s), median of 10 copies of bytes/2.
lsw_status lswc_measure_bandwidth(uint64_t bytes, double *gb_per_s);

}
#endif

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
lsw_status lswc_op_attention(int32_t n, int32_t n_ctx, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                             const float *Q, const float *K, const float *V, float *O);
lsw_status lswc_op_swiglu(int32_t n, int32_t inter, const float *GU, float *Out);
lsw_status lswc_op_sgmm(int32_t dtype, int32_t n_mats, int32_t rows, int32_t cols, int32_t rank, int32_t top_k,
                        const void *W0, void *W, const void *A, const void *B, const float *gates);
lsw_status lswc_op_lora_fused(int32_t dtype, int32_t rows, int32_t cols, int32_t rank, int32_t top_k, const void *W,
                              const void *A, const void *B, const float *gates, const float *x, float *Y);
lsw_status lswc_op_route(int32_t dtype, int32_t n_experts, int32_t dim, int32_t top_k, const void *R, const float *x,
                         int32_t *experts, float *gates);
lsw_status lswc_op_sample(int32_t vocab, const float *logits, const lsw_sampler_params *p, uint64_t step, int32_t *token);

// The CUDA model forward (cuda/src/cuda/model.cu), contract in engine.h "CUDA hook".
#define LSW_CUDA_MODEL 1
struct lsw_model;
lsw_status lswc_model_finalize(lsw_model *m);
lsw_status lswc_model_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits);
void lswc_model_reset(lsw_model *m);
void lswc_model_free(lsw_model *m);
int lswc_model_graph_nodes(const lsw_model *m);  // kernel/memcpy nodes of the captured decode step (0: none yet)
}
#endif

/*
 * lora-switch native engine: the whole C ABI.
 *
 * One flat header.  Every function that can fail returns lsw_status; on a
 * non-zero status lsw_last_error() returns a human-readable message describing
 * the most recent failure in the process, on ANY thread (so a call that ran on
 * a worker thread, e.g. an FFI async call, can be explained from the main
 * thread).  The returned pointer is a thread-local copy, valid until the same
 * thread calls lsw_last_error again.  With concurrent failing calls on several
 * threads the message is the last one set.
 *
 * Object model: an lsw_model owns the weights (memory-mapped from .lsw files
 * on the CPU backend, uploaded on the CUDA backend), the adapters, one KV cache
 * and the sampler state.  One model = one sequence.
 *
 * Tensor names and layouts are documented in docs/FORMAT.md.
 */
#ifndef LSW_H
#define LSW_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LSW_API __declspec(dllexport)
#else
#define LSW_API __attribute__((visibility("default")))
#endif

/* 2: lsw_model_config.prefill_precision (the struct grew), lsw_measure_matmul
 * 3: lsw_model_config.merge_prompt (the struct grew)
 * 6: lsw_model_bench_decode_tokens
 * 7: LSW_E_NUMERIC (the samplers refuse non-finite logits) */
#define LSW_ABI_VERSION 7

typedef enum lsw_status {
  LSW_OK = 0,
  LSW_E_INVALID_ARGUMENT = 1, /* bad argument, bad call order */
  LSW_E_IO = 2,               /* open/mmap/read failed */
  LSW_E_FORMAT = 3,           /* a tensor is missing, has the wrong shape/dtype, or lies outside its file */
  LSW_E_UNSUPPORTED = 4,      /* valid request the engine cannot do (e.g. mode/adapter combination) */
  LSW_E_OUT_OF_MEMORY = 5,    /* host or device allocation failed */
  LSW_E_BACKEND_UNAVAILABLE = 6, /* CUDA backend not built, or no usable GPU */
  LSW_E_DEVICE = 7,           /* a CUDA runtime error */
  LSW_E_CONTEXT_FULL = 8,     /* the KV cache cannot hold more tokens */
  LSW_E_INTERNAL = 9,
  LSW_E_NUMERIC = 10          /* a token was to be sampled from logits that are not all finite (NaN or infinity):
                                 the weights or an adapter hold non-finite values, or the activations overflowed */
} lsw_status;

typedef enum lsw_dtype { LSW_DTYPE_F32 = 0, LSW_DTYPE_F16 = 1, LSW_DTYPE_BF16 = 2 } lsw_dtype;
typedef enum lsw_backend { LSW_BACKEND_CPU = 0, LSW_BACKEND_CUDA = 1 } lsw_backend;
typedef enum lsw_rope_type { LSW_ROPE_DEFAULT = 0, LSW_ROPE_LINEAR = 1, LSW_ROPE_LLAMA3 = 2 } lsw_rope_type;

/* Arithmetic of the prompt (prefill) matmuls of the CUDA backend, which run on tensor cores with 16-bit inputs:
 *   PRECISE: fp32 activations split into hi + lo halves of the weight dtype, two tensor-core GEMMs
 *            (~fp32-accurate activations; matches the CPU backend closely; about half the FLOP rate)
 *   FAST:    activations rounded once to the weight dtype, one GEMM (what PyTorch / cuBLAS-based engines do)
 * Decode steps (GEMV, fp32 activations) and F32 weights are the same either way.  The CPU backend computes
 * every matmul with fp32 activations and fp32 accumulation whatever this says. */
typedef enum lsw_precision { LSW_PRECISION_PRECISE = 0, LSW_PRECISION_FAST = 1 } lsw_precision;

/* How merge mode (LSW_MODE_MERGE with adapters) evaluates n > 1 tokens in one lsw_model_eval / lsw_model_prefill
 * (docs/FORMAT.md, "Prompts in merge mode"):
 *   TOKENWISE: one token at a time through the single-token path (an SGMM merge of that token's experts, then the
 *              bare backbone): bit for bit the logits, routes and merge counters of feeding the tokens one at a
 *              time; time to first token grows with the prompt (one decode step per prompt token).
 *   BATCHED:   in chunks, computed as LSW_MODE_FUSED computes a prompt: each token's experts applied as low-rank
 *              deltas next to the pristine backbone, no weight writes (close to TOKENWISE, which rounds the merged
 *              weights to the weight dtype; not bit for bit).  Only single tokens (decode steps, one-token evals)
 *              merge; the skip of an unchanged merge compares with what the working weights hold, and the merge
 *              counters count only those steps (the tokens of a batched prompt are not counted).
 * Other modes, and single tokens, are the same either way. */
typedef enum lsw_merge_prompt { LSW_MERGE_PROMPT_TOKENWISE = 0, LSW_MERGE_PROMPT_BATCHED = 1 } lsw_merge_prompt;

/* Adapted linear modules of a decoder layer. */
typedef enum lsw_module {
  LSW_MOD_Q = 0, LSW_MOD_K = 1, LSW_MOD_V = 2, LSW_MOD_O = 3,
  LSW_MOD_GATE = 4, LSW_MOD_UP = 5, LSW_MOD_DOWN = 6, LSW_MOD_COUNT = 7
} lsw_module;

typedef enum lsw_router_kind {
  LSW_ROUTER_STATIC = 0,    /* plain LoRA: one always-on expert, gate 1 */
  LSW_ROUTER_PREGATED = 1,  /* LoRA-Switch: one router in layer 0, gates serve every layer */
  LSW_ROUTER_LAYERWISE = 2  /* a router per layer (MixLoRA, MoLA-style) */
} lsw_router_kind;

typedef enum lsw_mode {
  LSW_MODE_MERGE = 0,   /* SGMM: merge current experts into working weights, run bare backbone */
  LSW_MODE_UNFUSED = 1, /* per layer, per expert separate LoRA ops (the baseline) */
  LSW_MODE_FUSED = 2,   /* expert deltas computed alongside the base matmul, no weight writes */
  LSW_MODE_BASE = 3     /* adapters ignored: the bare backbone (bench baseline) */
} lsw_mode;

typedef struct lsw_model_config {
  int32_t vocab_size;
  int32_t hidden_size;
  int32_t intermediate_size;
  int32_t num_layers;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t max_context;          /* KV cache capacity in tokens */
  int32_t qkv_bias;             /* 1: layers.{L}.attn.bqkv.bias present (Qwen2) */
  int32_t tie_embeddings;       /* 1: no lm_head.weight, use tok_embeddings.weight */
  float rms_norm_eps;
  float rope_theta;
  int32_t rope_type;            /* lsw_rope_type */
  float rope_factor;            /* linear / llama3 */
  float rope_low_freq_factor;   /* llama3 */
  float rope_high_freq_factor;  /* llama3 */
  int32_t rope_original_max_position; /* llama3 */
  int32_t backend;              /* lsw_backend */
  int32_t n_threads;            /* CPU backend: worker threads, 0 = all cores */
  int32_t device;               /* CUDA backend: device ordinal */
  int32_t prefill_precision;    /* lsw_precision (0 = PRECISE, the default of a zero-initialised config); read at
                                   lsw_model_finalize.  Developer override on CUDA: env LSW_CUDA_FAST_GEMM=1 (fast)
                                   or =0 (precise) */
  int32_t merge_prompt;         /* lsw_merge_prompt (0 = TOKENWISE, the default of a zero-initialised config) */
  int32_t kv_dtype;             /* lsw_dtype of the KV cache (0 = F32, the default of a zero-initialised config; F16 /
                                   BF16 halve its memory and the bytes decode attention reads).  K and V are computed
                                   in fp32 and rounded once, to nearest even, when stored; attention reads the
                                   rounded values (the new position's too) and computes in fp32 */
} lsw_model_config;

typedef struct lsw_sampler_params {
  float temperature;            /* 0 = greedy (argmax, lowest id on ties) */
  int32_t top_k;                /* 0 = off */
  float top_p;                  /* 1 = off */
  float min_p;                  /* 0 = off */
  uint64_t seed;
} lsw_sampler_params;

typedef struct lsw_adapter_desc {
  int32_t router_kind;          /* lsw_router_kind */
  int32_t num_experts;          /* 1 for STATIC */
  int32_t top_k;                /* 1 for STATIC */
  int32_t router_input;         /* PREGATED: lsw_module in layer 0 whose input the router reads.  Ignored for
                                   LAYERWISE: each layer's router reads the input of that layer's first adapted
                                   module (docs/FORMAT.md, "Layer-wise adapters") */
  int32_t ffn_experts;          /* LAYERWISE MixLoRA: each expert is a whole FFN (gate/up/down sharing the base
                                   weights); the router reads the MLP input.  merge mode: top_k 1 only */
} lsw_adapter_desc;

typedef struct lsw_model_stats {
  uint64_t weight_bytes;        /* backbone weight bytes read per decoded token */
  uint64_t adapter_bytes;       /* adapter bytes read/written per decoded token in the current mode (estimate) */
  uint64_t device_bytes_peak;   /* CUDA: peak device memory in use; CPU: resident engine allocations */
  int32_t launches_per_token;   /* CUDA: kernel launches per decode step (graph nodes); CPU: 0 */
  int32_t graph_captured;       /* CUDA: decode step runs as a CUDA graph */
  int32_t n_threads;            /* CPU threads in use */
  int32_t simd_level;           /* CPU: 0 scalar, 1 avx2+fma+f16c, 2 avx512 */
  int64_t merge_steps;          /* merge mode: SGMM steps run since load (BATCHED prompts: none for their tokens) */
  int64_t merge_skipped;        /* merge mode: steps skipped (same experts and gates as the working weights hold) */
} lsw_model_stats;

typedef struct lsw_model lsw_model;

/* --- library ----------------------------------------------------------- */
/* The most recent error message of the process (see the top of this file). */
LSW_API const char *lsw_last_error(void);
LSW_API const char *lsw_version(void);
LSW_API int32_t lsw_abi_version(void);
/* 1 when the CUDA backend is compiled in and at least one device is usable. */
LSW_API int32_t lsw_cuda_available(void);
/* Description of the CPU features chosen at run time, e.g. "avx512". */
LSW_API const char *lsw_cpu_features(void);

/* --- building a model ---------------------------------------------------- */
LSW_API lsw_status lsw_model_create(const lsw_model_config *cfg, lsw_model **out);
/* Memory-map a file whose tensor data starts at data_offset (safetensors: 8 + header length). */
LSW_API lsw_status lsw_model_map_file(lsw_model *m, const char *path, uint64_t data_offset, int32_t *file_id);
/* Register a tensor lying in a mapped file at data_offset + offset (bytes). Names: docs/FORMAT.md. */
LSW_API lsw_status lsw_model_add_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim,
                                        const int64_t *shape, int32_t file_id, uint64_t offset);
/* Register a tensor the engine allocates itself and fills with seeded pseudo-random values uniform in
 * [-scale, scale] (never zero; 1-D F32 tensors get 1 + uniform[-scale, scale]): synthetic models for bench,
 * generated directly in host or device memory without a file. Same seed -> same values on every backend. */
LSW_API lsw_status lsw_model_add_random_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim,
                                               const int64_t *shape, uint64_t seed, float scale);
/* Register an adapter; its tensors are then added by name "adapters.{id}.…". */
LSW_API lsw_status lsw_model_add_adapter(lsw_model *m, const lsw_adapter_desc *desc, int32_t *adapter_id);
/* Validate every tensor against the config, upload (CUDA), allocate the KV cache. */
LSW_API lsw_status lsw_model_finalize(lsw_model *m);
LSW_API void lsw_model_free(lsw_model *m);

/* --- running ------------------------------------------------------------- */
/* LSW_E_UNSUPPORTED for LSW_MODE_MERGE with a MixLoRA adapter (ffn_experts) of top_k > 1 (a gated sum of FFNs is
 * not one FFN); evaluating in that mode (the default) fails the same way. */
LSW_API lsw_status lsw_model_set_mode(lsw_model *m, int32_t mode);
LSW_API lsw_status lsw_model_set_sampler(lsw_model *m, const lsw_sampler_params *p);
/* Forget the sequence (KV cache, routing history); merge mode unmerges. */
LSW_API lsw_status lsw_model_reset(lsw_model *m);
/* Number of tokens in the KV cache. */
LSW_API int32_t lsw_model_n_past(const lsw_model *m);
/* Evaluate n tokens appended to the sequence. logits (nullable): all_logits ? n*vocab : vocab floats. */
LSW_API lsw_status lsw_model_eval(lsw_model *m, const int32_t *tokens, int32_t n, float *logits, int32_t all_logits);
/* Evaluate the prompt and sample the next token.
 * Sampling (here, lsw_model_step, lsw_model_decode, lsw_op_sample) fails with LSW_E_NUMERIC when any logit is NaN or
 * infinite, on both backends; the tokens evaluated stay in the sequence (n_past counts them), the sampler's step does
 * not advance, and nothing is written to next_token. */
LSW_API lsw_status lsw_model_prefill(lsw_model *m, const int32_t *tokens, int32_t n, int32_t *next_token);
/* Append one token and sample the next: the only call per decoded token. */
LSW_API lsw_status lsw_model_step(lsw_model *m, int32_t token, int32_t *next_token);
/* Up to n decode steps in one call: step i appends the previous token (`token` for i = 0, else tokens_out[i-1]) and
 * samples tokens_out[i]; the run ends early after a sampled token that is one of stop_tokens (that token is written
 * and counted).  Same tokens and the same state as *n_out lsw_model_step calls, with one call across the language
 * boundary instead of one per token.  n_out receives the steps done, also when a step fails (its error is returned;
 * tokens_out[0 .. *n_out) are the tokens of the steps before it).  stop_tokens may be NULL when n_stop is 0. */
LSW_API lsw_status lsw_model_decode(lsw_model *m, int32_t token, int32_t n, const int32_t *stop_tokens, int32_t n_stop,
                                    int32_t *tokens_out, int32_t *n_out);
/* Logits of the last evaluated position (vocab floats). */
LSW_API lsw_status lsw_model_get_logits(lsw_model *m, float *logits);
/* Routing of positions [pos, pos+n) for adapter id: experts/gates laid out [n][rows][top_k], rows = num_layers
 * for LAYERWISE (expert -1, gate 0 in layers the adapter does not adapt), 1 otherwise.  BASE mode records -1 / 0. */
LSW_API lsw_status lsw_model_get_routes(lsw_model *m, int32_t adapter_id, int32_t pos, int32_t n,
                                        int32_t *experts, float *gates);
LSW_API lsw_status lsw_model_get_stats(lsw_model *m, lsw_model_stats *out);
/* Timed decode loop inside the engine: n_tokens greedy steps from the current state.
 * ms_per_token receives n_tokens per-step wall times in milliseconds. */
LSW_API lsw_status lsw_model_bench_decode(lsw_model *m, int32_t first_token, int32_t n_tokens, double *ms_per_token);
/* The same loop fed a given token stream (ABI 6): step i appends tokens[i], whatever the step before picked; each
 * step still computes its logits and greedy pick (the same work as lsw_model_bench_decode), which is then dropped.
 * A benchmark on random weights uses it so that the router sees a new token every step, as in real text (a greedy
 * random model tends to repeat one token, and merge mode skips the merge of a repeated route). */
LSW_API lsw_status lsw_model_bench_decode_tokens(lsw_model *m, const int32_t *tokens, int32_t n_tokens,
                                                 double *ms_per_token);

/* Measured copy bandwidth of the backend's memory (bytes read + bytes written per second, in GB/s),
 * copying a buffer of `bytes` several times and taking the median. */
LSW_API lsw_status lsw_measure_bandwidth(int32_t backend, uint64_t bytes, double *gb_per_s);

/* Measured matmul rate of the backend's own prefill GEMM, in TFLOP/s (2 * rows * cols * n FLOPs per matmul):
 * Y[n][rows] = X[n][cols] · W[rows][cols]^T with W in `dtype` and X, Y F32 (as lsw_op_matmul), on fresh seeded
 * random data allocated by the call; the median of several timed runs after warm-up runs.
 *   CUDA: the prompt GEMM of the model forward in its FAST precision (one GEMM on activations rounded to the
 *         weight dtype, the rounding pass included; cuBLAS when the library was built with it, else the WMMA
 *         kernel; F32 weights or cols % 8 != 0: the SIMT fp32 kernel), timed with CUDA events.  n_threads ignored.
 *   CPU:  the CPU backend's matmul (fp32 activations and accumulation) on n_threads threads (0 = all cores).
 * LSW_E_INVALID_ARGUMENT: unknown backend or dtype, rows/cols/n <= 0, n_threads < 0, tflops NULL, or more than
 * 16 GiB of buffers. */
LSW_API lsw_status lsw_measure_matmul(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t n,
                                      int32_t n_threads, double *tflops);

/* --- single operations -------------------------------------------------------
 * Every kernel the engine runs, callable on either backend with host buffers, so
 * that tests check the CUDA kernels against the CPU ones through this same ABI
 * (the CUDA backend copies in, runs the production kernel, copies out).
 * Weights (W, A, B) are in `dtype`; activations are F32 unless stated.       */

/* Y[n][rows] = X[n][cols] · W[rows][cols]^T  (n = 1: decode GEMV; n > 1: prefill GEMM) */
LSW_API lsw_status lsw_op_matmul(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t n,
                                 const void *W, const float *X, float *Y);
/* Y[n][dim] = X / rms(X) * w */
LSW_API lsw_status lsw_op_rmsnorm(int32_t backend, int32_t n, int32_t dim, const float *X, const float *w,
                                  float eps, float *Y);
/* In place on X[n][n_heads][head_dim], HF rotate-half convention, rope fields of cfg, positions[n]. */
LSW_API lsw_status lsw_op_rope(int32_t backend, const lsw_model_config *cfg, int32_t n, int32_t n_heads,
                               const int32_t *positions, float *X);
/* Causal GQA attention. Q[n][nh][hd]; K,V[n_ctx][nkv][hd] (elements of kv_dtype, an lsw_dtype) hold positions
 * 0..n_ctx-1; query i sits at position n_ctx - n + i.  O[n][nh][hd].  Scale 1/sqrt(hd); fp32 arithmetic. */
LSW_API lsw_status lsw_op_attention(int32_t backend, int32_t kv_dtype, int32_t n, int32_t n_ctx, int32_t n_heads,
                                    int32_t n_kv_heads, int32_t head_dim, const float *Q, const void *K, const void *V,
                                    float *O);
/* Out[n][I] = silu(GU[n][0:I]) * GU[n][I:2I] */
LSW_API lsw_status lsw_op_swiglu(int32_t backend, int32_t n, int32_t inter, const float *GU, float *Out);
/* SGMM merge over n_mats same-shape matrices in one step:
 * W[m] = W0[m] + Σ_k gates[k] · B[m][k] · A[m][k]   (computed in fp32 from the pristine W0, rounded once)
 * W0,W: [n_mats][rows][cols]; A: [n_mats][top_k][rank][cols]; B: [n_mats][top_k][rows][rank]. */
LSW_API lsw_status lsw_op_sgmm(int32_t backend, int32_t dtype, int32_t n_mats, int32_t rows, int32_t cols,
                               int32_t rank, int32_t top_k, const void *W0, void *W, const void *A, const void *B,
                               const float *gates);
/* Fused: Y[rows] = W·x + Σ_k gates[k] · B[k] (A[k] x).  A: [top_k][rank][cols]; B: [top_k][rows][rank]. */
LSW_API lsw_status lsw_op_lora_fused(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t rank,
                                     int32_t top_k, const void *W, const void *A, const void *B,
                                     const float *gates, const float *x, float *Y);
/* Router: softmax(R · x) over n_experts, top_k kept (ties: lower index), renormalised to sum 1. R in dtype. */
LSW_API lsw_status lsw_op_route(int32_t backend, int32_t dtype, int32_t n_experts, int32_t dim, int32_t top_k,
                                const void *R, const float *x, int32_t *experts, float *gates);
/* Sample one token from logits[vocab] with params at step `step` (the random draw is a pure function
 * of seed and step, identical on both backends). */
LSW_API lsw_status lsw_op_sample(int32_t backend, int32_t vocab, const float *logits, const lsw_sampler_params *p,
                                 uint64_t step, int32_t *token);

#ifdef __cplusplus
}
#endif
#endif /* LSW_H */

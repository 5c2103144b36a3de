// Engine internals shared by the CPU backend (cuda/src/*.cpp) and the CUDA backend (cuda/src/cuda/*.cu).
//
// The model object (struct lsw_model) holds the configuration, the memory-mapped files, the registered
// tensors (host pointers into the mappings), the per-layer weight views, the KV cache, the sampler state
// and the scratch buffers of the CPU forward.  A backend-specific state pointer (`cuda`) is owned by the
// CUDA backend; see "CUDA hook" below.
#pragma once
#include "lsw.h"

#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------------------------
// Errors: thread-local last-error message.  Every failing path sets it and returns a status.
extern "C++" {
void lsw_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
}
#define LSW_FAIL(status, ...) (lsw_set_error(__VA_ARGS__), (status))

// Wraps a body that may throw (std::bad_alloc -> LSW_E_OUT_OF_MEMORY, others -> LSW_E_INTERNAL).
#define LSW_GUARD_BEGIN try {
#define LSW_GUARD_END                                                                  \
  }                                                                                    \
  catch (const std::bad_alloc &) {                                                     \
    return LSW_FAIL(LSW_E_OUT_OF_MEMORY, "out of host memory");                        \
  }                                                                                    \
  catch (const std::exception &e) {                                                    \
    return LSW_FAIL(LSW_E_INTERNAL, "internal error: %s", e.what());                   \
  }

namespace lsw {

size_t dtype_size(int dtype);              // 4 / 2 / 2, 0 for an unknown dtype
const char *dtype_name(int dtype);

// ---------------------------------------------------------------------------------------------
// Thread pool: n threads including the caller.  run(fn, ctx) calls fn(ctx, tid, n) on the caller and on every
// worker that shows up while the job is open; it returns when the caller's call and all joined workers are
// done.  Participation of workers is optional (a descheduled worker never holds the caller up), so job bodies
// must claim their work dynamically: use parallel_for.  Workers spin briefly between jobs, then sleep.
class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  int size() const { return n_; }
  void run(void (*fn)(void *, int, int), void *ctx);
  // f(tid, b, e) over [0, total) in aligned chunks.  Thread t starts on its own contiguous share (cache- and
  // prefetch-friendly streams) and then helps with the others' remaining chunks.
  template <class F>
  void parallel_for(int64_t total, int64_t align, F &&f) {
    if (total <= 0) return;
    if (n_ == 1 || total <= align) {
      f(0, (int64_t)0, total);
      return;
    }
    struct Range {
      alignas(64) std::atomic<int64_t> next;
      int64_t end, chunk;
    };
    std::unique_ptr<Range[]> r(new Range[n_]);
    for (int t = 0; t < n_; t++) {
      int64_t b = (int64_t)t * total / n_ / align * align, e = t + 1 == n_ ? total : (int64_t)(t + 1) * total / n_ / align * align;
      r[t].next.store(b, std::memory_order_relaxed);
      r[t].end = e;
      int64_t c = (e - b + 3) / 4;
      r[t].chunk = std::max<int64_t>(align, (c + align - 1) / align * align);
    }
    using Fn = typename std::remove_reference<F>::type;
    struct Ctx {
      Fn *f;
      Range *r;
      int n;
    } ctx{&f, r.get(), n_};
    run(
        [](void *p, int tid, int) {
          Ctx &c = *static_cast<Ctx *>(p);
          for (int k = 0; k < c.n; k++) {
            Range &R = c.r[(tid + k) % c.n];
            for (;;) {
              int64_t b = R.next.fetch_add(R.chunk, std::memory_order_relaxed);
              if (b >= R.end) break;
              (*c.f)(tid, b, std::min(b + R.chunk, R.end));
            }
          }
        },
        &ctx);
  }

 private:
  void worker(int tid);
  int n_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> active_{0};
  std::atomic<bool> closed_{true};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> busy_{false};
  void (*fn_)(void *, int, int) = nullptr;
  void *ctx_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
};
ThreadPool &default_pool();  // all cores; used by the lsw_op_* entries

// ---------------------------------------------------------------------------------------------
// CPU kernels ("production kernels": the model forward and the lsw_op_* entries use the same ones).
// Activations F32; weights in any lsw_dtype.  All take a pool (nullable = single thread).
int simd_level();  // 0 scalar, 1 avx2+fma+f16c, 2 avx512
const char *simd_name();

// Y[t*ldy + r] (= or +=) dot(W[r][0:cols], X[t*ldx + 0:cols]),  r in [0,rows), t in [0,n)
void matmul(ThreadPool *pool, int dtype, const void *W, int64_t rows, int64_t cols, const float *X, int64_t ldx,
            int64_t n, float *Y, int64_t ldy, bool accumulate);
void rmsnorm(int64_t n, int64_t dim, const float *X, const float *w, float eps, float *Y);
// RoPE tables: cos/sin[n][head_dim/2] for the given positions (angles in fp64, HF rope scaling rules).
void rope_inv_freq(const lsw_model_config *cfg, std::vector<double> &inv_freq);
void rope_tables(const std::vector<double> &inv_freq, int64_t n, const int32_t *positions, float *cos_t, float *sin_t);
// X[t][h][hd] rotated with table row t (stride between tokens: ld floats).
void rope_apply(int64_t n, int64_t n_heads, int64_t head_dim, int64_t ld, const float *cos_t, const float *sin_t,
                float *X);
// Causal GQA attention; Q row t at stride ldq, O row t at stride ldo; K/V [n_ctx][nkv*hd] at stride ldkv (elements
// of kv_dtype, an lsw_dtype: F16 / BF16 rows are widened to fp32 as they are read; the arithmetic is fp32 throughout).
void attention(ThreadPool *pool, int64_t n, int64_t n_ctx, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
               const float *Q, int64_t ldq, int kv_dtype, const void *K, const void *V, int64_t ldkv, float *O,
               int64_t ldo, float *scratch /* attention_scratch_floats(pool size, n, n_ctx, n_heads, head_dim) */);
// floats of attention()'s scratch for n queries at n_ctx positions on n_threads threads (n = 1: decode's per-chunk
// partials and scores); a buffer sized for more queries or positions serves fewer
size_t attention_scratch_floats(int n_threads, int64_t n, int64_t n_ctx, int64_t n_heads, int64_t head_dim);
void swiglu(int64_t n, int64_t inter, const float *GU, int64_t ldgu, float *Out, int64_t ldo);
// columns [b, e) only (the up half still starts at GU + inter)
void swiglu_range(int64_t n, int64_t inter, int64_t b, int64_t e, const float *GU, int64_t ldgu, float *Out,
                  int64_t ldo);
void to_f32(int dtype, const void *src, float *dst, int64_t n);
void from_f32(int dtype, const float *src, void *dst, int64_t n);  // round to nearest even
// SGMM: W = round(W0 + Σ_k g_k B_k A_k), fp32 from pristine W0 (exact order: docs/FORMAT.md)
void sgmm(ThreadPool *pool, int dtype, int64_t n_mats, int64_t rows, int64_t cols, int64_t rank, int64_t top_k,
          const void *W0, void *W, const void *A, const void *B, const float *gates);
void lora_fused(ThreadPool *pool, int dtype, int64_t rows, int64_t cols, int64_t rank, int64_t top_k, const void *W,
                const void *A, const void *B, const float *gates, const float *x, float *Y);
// softmax(R x) top-k (ties: lower index), renormalised.
void route(int dtype, int64_t n_experts, int64_t dim, int64_t top_k, const void *R, const float *x, int32_t *experts,
           float *gates);
// Sampler (documented in docs/FORMAT.md, "Sampling").  work: scratch reused between calls.
struct SampleWork {
  std::vector<double> pd;
  std::vector<int32_t> idx, list;        // list: top-p's 64 best, or its candidates by bin
  std::vector<int64_t> bin_start, bin_at;
  std::vector<uint16_t> bin_of;
  std::vector<std::pair<double, int32_t>> pairs;
};
int32_t sample(int64_t vocab, const float *logits, const lsw_sampler_params &p, uint64_t step, SampleWork &w);
// LSW_E_NUMERIC, with a message that names the position (or "lsw_op_sample" when position < 0), the count and the
// first id, when any of logits[vocab] is NaN or infinite (nothing can be sampled from them); LSW_OK otherwise.  Both
// backends' samplers refuse such logits (the CUDA kernels flag them; the host then counts them here for the message).
lsw_status check_logits(int64_t vocab, const float *logits, int64_t position);
uint64_t sample_hash(uint64_t seed, uint64_t step);

}  // namespace lsw

// ---------------------------------------------------------------------------------------------
// The model object.
enum lsw_mat { LSW_MAT_QKV = 0, LSW_MAT_O = 1, LSW_MAT_GATE_UP = 2, LSW_MAT_DOWN = 3, LSW_MAT_COUNT = 4 };

struct lsw_file {
  std::string path;
  int fd = -1;
  void *base = nullptr;  // mmap of the whole file
  uint64_t size = 0;
  uint64_t data_offset = 0;
};

struct lsw_tensor {
  std::string name;
  int dtype = 0;
  std::vector<int64_t> shape;
  int file_id = -1;
  uint64_t offset = 0;     // relative to the file's data_offset (file_id -1: engine-allocated)
  const void *data = nullptr;  // host pointer into the mapping
  uint64_t nbytes = 0;
};

struct lsw_weight {  // a view of a registered tensor
  const void *data = nullptr;
  int dtype = 0;
  int64_t rows = 0, cols = 0;
  const lsw_tensor *t = nullptr;
};

struct lsw_layer {
  const float *attn_norm = nullptr, *ffn_norm = nullptr, *bqkv = nullptr;
  lsw_weight mat[LSW_MAT_COUNT];  // wqkv, wo, w_gate_up, w_down
};

// Row range of module m inside its fused matrix (q/k/v in wqkv, gate/up in w_gate_up).
struct lsw_module_range {
  int mat;
  int64_t row0, rows, cols;
};

// One adapted module of one layer: experts stacked, A [E][rank][in], B [E][out][rank].  scale: the module's LoRA
// scaling from its lora_scale tensor ([1] F32), applied in fp32 as the coefficient fl(g_k * scale) of each selected
// expert; 1 without one (files converted before 2026-12-04 fold the scaling into B).
struct lsw_adapter_mod {
  const lsw_tensor *A = nullptr, *B = nullptr, *S = nullptr;
  int64_t rank = 0;
  float scale = 1.f;
};

// An adapter (adapters.cpp).  Routing rows per token: 1 (STATIC, PREGATED) or num_layers (LAYERWISE); routes are laid
// out [token][row][top_k].  LAYERWISE semantics (router input, MixLoRA whole-FFN experts, per-layer merge) are
// documented in docs/FORMAT.md, "Layer-wise adapters".
struct lsw_adapter {
  lsw_adapter_desc desc{};
  int32_t id = 0;
  int32_t rows = 1;                                // routing rows per token (num_layers for LAYERWISE)
  std::vector<std::vector<lsw_adapter_mod>> mods;  // [layer][lsw_module]; A == nullptr: not adapted
  const lsw_tensor *router = nullptr;              // PREGATED: [E, in(router_input)]
  // LAYERWISE: per layer, the router [E, in(router_mat)] and the fused matrix (lsw_mat) whose input it reads:
  // the layer's first adapted matrix in forward order (ffn_experts: always LSW_MAT_GATE_UP, the MLP input).
  // nullptr / -1 where the adapter adapts nothing in that layer (its routes there are -1 / 0).
  std::vector<const lsw_tensor *> layer_router;
  std::vector<int32_t> router_mat;
  std::vector<int32_t> hist_e;                     // routing history [pos][rows][top_k]
  std::vector<float> hist_g;
  std::vector<int32_t> cur_e;                      // routes of the tokens being evaluated [n][rows][top_k]
  std::vector<float> cur_g;
  bool routed = false;                             // cur_* valid for the current forward chunk (LAYERWISE: the
                                                   // rows of the layers whose router has run in this chunk)
  std::vector<float> ffn_h, ffn_tmp;               // ffn_experts scratch: h_k [n][top_k][I], one gate/up row [2I]
};
// A LoRA term of an SGMM merge: W[rows][cols] += gate * B[rows][rank] · A[rank][cols] (B row stride = rank).
struct lsw_sgmm_term {
  const void *A, *B;
  int dtype;
  int64_t rank;
  float gate;
};
// One matrix of a batched SGMM: W = round(W0 + Σ_terms gate · B A) (terms[0 .. n_terms), kept alive by the caller).
struct lsw_sgmm_job {
  int dtype;
  int64_t rows, cols;
  const void *W0;
  void *W;
  const lsw_sgmm_term *terms;
  int64_t n_terms;
};
namespace lsw {
// For each job, W = round(W0 + Σ_terms gate · B A) in fp32 from the pristine W0, terms applied in order (see
// docs/FORMAT.md); all jobs in one pass over the thread pool (a decode step's whole merge).
void sgmm_jobs(ThreadPool *pool, const lsw_sgmm_job *jobs, int64_t n_jobs);
}

struct lsw_model {
  lsw_model_config cfg{};
  bool finalized = false;
  std::vector<lsw_file> files;
  std::map<std::string, lsw_tensor> tensors;
  std::vector<std::unique_ptr<uint8_t[]>> owned;  // engine-allocated tensors (lsw_model_add_random_tensor)
  // CUDA models: random tensors are generated on the device at upload (cuda/src/random.h); their host buffers
  // are allocated but never written (untouched pages cost no memory).  name -> (seed, scale, one_plus)
  struct random_spec { uint64_t seed; float scale; int one_plus; };
  std::map<std::string, random_spec> random_dev;

  // views, valid after finalize
  lsw_weight tok_emb, lm_head;
  const float *norm = nullptr;
  std::vector<lsw_layer> layers;
  int64_t q_dim = 0, kv_dim = 0, qkv_dim = 0;
  lsw_module_range module_range(int layer, int module) const;

  // sequence state
  int32_t n_past = 0;
  // [layer][max_context][kv_dim], elements of cfg.kv_dtype (rounded from fp32 when stored)
  std::vector<uint8_t> k_cache, v_cache;
  size_t kv_off(int layer, int64_t pos) const {
    return (size_t)(((int64_t)layer * cfg.max_context + pos) * kv_dim) * lsw::dtype_size(cfg.kv_dtype);
  }
  void *k_at(int layer, int64_t pos) { return k_cache.data() + kv_off(layer, pos); }
  void *v_at(int layer, int64_t pos) { return v_cache.data() + kv_off(layer, pos); }
  std::vector<float> logits;  // [vocab] of the last evaluated position
  bool have_logits = false;

  // sampler
  lsw_sampler_params sampler{0.f, 0, 1.f, 0.f, 0};
  uint64_t sample_step = 0;  // number of tokens sampled since set_sampler/reset
  lsw::SampleWork sample_work;

  // CPU forward
  std::unique_ptr<lsw::ThreadPool> pool;
  std::vector<double> inv_freq;
  struct Scratch {
    int64_t cap = 0;  // tokens
    std::vector<float> x, xn, qkv, att, gu, act, cos_t, sin_t, att_work;
    std::vector<int32_t> pos;
  } scratch;
  // a prompt chunk's adapter deltas grouped by expert (adapters.cpp group_pairs / grouped_delta): the (token, slot)
  // pairs sorted by expert (start per expert, token, slot and scale per pair, the used experts), the gathered inputs
  // and shrinks, and for MixLoRA experts the pairs' gate/up rows and their destination rows
  struct PromptDeltaScratch {
    std::vector<float> x, u, c, gu;
    std::vector<int64_t> start, tok, slot, used, idx;
  } prompt_delta;

  // adapters (issue 3)
  std::vector<std::unique_ptr<lsw_adapter>> adapters;
  int32_t mode = LSW_MODE_MERGE;
  // merge mode: pristine weights and working copies of the fused matrices that some adapter targets
  std::vector<std::vector<const void *>> pristine;      // [layer][mat]
  std::vector<std::vector<std::vector<uint8_t>>> work;  // [layer][mat], empty when not adapted
  bool merged = false;                                  // working copies hold a merge (else equal W0)
  std::vector<int32_t> merged_e;                        // experts/gates merged now, all adapters concatenated
  std::vector<float> merged_g;
  int64_t merge_steps = 0, merge_skipped = 0;
  // With a LAYERWISE adapter merging is per layer, per fused matrix, just before that matrix runs (its
  // routers have spoken by then): mat_e/mat_g[layer][mat] hold what the working copy holds now (key of all
  // adapters adapting it), mat_merged[layer][mat] whether it holds a merge.  One SGMM step per layer per token
  // is counted in merge_steps (merge_skipped when none of the layer's matrices changed).
  bool layerwise = false;                               // some adapter is LAYERWISE
  int32_t ffn_adapter = -1;                             // the ffn_experts (MixLoRA) adapter, at most one
  std::vector<std::vector<std::vector<int32_t>>> mat_e; // [layer][mat]
  std::vector<std::vector<std::vector<float>>> mat_g;
  std::vector<std::vector<char>> mat_merged;
  std::vector<char> layer_step;                         // this token: 0 layer not reached, 1 skipped, 2 merged

  // CUDA hook.  When backend_cuda.h defines LSW_CUDA_MODEL and declares
  //   lsw_status lswc_model_finalize(lsw_model *m);   // after CPU-side validation: upload, allocate, set m->cuda
  //   lsw_status lswc_model_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits);
  //        (same contract as lsw_cpu_forward: reads/advances m->n_past, writes m->logits host copy)
  //   lsw_status lswc_model_sample(lsw_model *m, int32_t *token); // optional device-side sampling, see api.cpp
  //   void lswc_model_reset(lsw_model *m);  void lswc_model_free(lsw_model *m);
  // then api.cpp routes cfg.backend == LSW_BACKEND_CUDA models through them.  Without it a CUDA model
  // fails at lsw_model_finalize with LSW_E_BACKEND_UNAVAILABLE / LSW_E_UNSUPPORTED (clear message).
  void *cuda = nullptr;

  uint64_t host_bytes = 0;  // resident engine allocations (stats)
};

// Forward on the CPU: evaluate n tokens at positions n_past.., append to the KV cache, write logits of
// the last position to m->logits (and all n positions to all_logits when non-null: [n][vocab]).
lsw_status lsw_cpu_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits);

// The C ABI (cuda/include/lsw.h): argument checking, backend routing, model lifecycle.
#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>
#include <cmath>
#include <cstring>
#include <new>

#include "backend_cuda.h"
#include "engine.h"
#include "random.h"

using namespace lsw;

lsw_status lsw_validate_config(const lsw_model_config *c);
lsw_status lsw_map_file(lsw_model *m, const char *path, uint64_t data_offset, int32_t *file_id);
void lsw_unmap_files(lsw_model *m);
lsw_status lsw_register_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                               int32_t file_id, uint64_t offset, bool check_name);
lsw_status lsw_cpu_finalize(lsw_model *m);
lsw_status lsw_adapter_add(lsw_model *m, const lsw_adapter_desc *d, int32_t *id);
lsw_status lsw_adapter_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                              int32_t file_id, uint64_t offset);
lsw_status lsw_adapters_finalize(lsw_model *m);
void lsw_adapters_reset(lsw_model *m);
lsw_status lsw_adapters_get_routes(lsw_model *m, int32_t id, int32_t pos, int32_t n, int32_t *experts, float *gates);
uint64_t lsw_adapters_bytes_per_token(const lsw_model *m);
lsw_status lsw_adapters_check_mode(const lsw_model *m, int32_t mode);
lsw_status lsw_add_random_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                                 uint64_t seed, float scale);

#if defined(LSW_HAVE_CUDA) && defined(LSW_CUDA_MODEL)
#define LSW_CUDA_FORWARD 1
#else
#define LSW_CUDA_FORWARD 0
#endif

#define CHECK_MODEL(m)                                                               \
  if (!(m)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is NULL");
#define CHECK_FINAL(m)                                                               \
  CHECK_MODEL(m)                                                                     \
  if (!(m)->finalized) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is not finalized (call lsw_model_finalize)");

extern "C" {

LSW_API const char *lsw_version(void) { return "0.1.0"; }
LSW_API int32_t lsw_abi_version(void) { return LSW_ABI_VERSION; }
LSW_API int32_t lsw_cuda_available(void) {
#ifdef LSW_HAVE_CUDA
  return lswc_available() ? 1 : 0;
#else
  return 0;
#endif
}
LSW_API const char *lsw_cpu_features(void) { return simd_name(); }

// ---------------------------------------------------------------------------------------------
LSW_API lsw_status lsw_model_create(const lsw_model_config *cfg, lsw_model **out) {
  if (!out) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "out is NULL");
  *out = nullptr;
  lsw_status st = lsw_validate_config(cfg);
  if (st) return st;
  if (cfg->backend == LSW_BACKEND_CUDA) {
#ifndef LSW_HAVE_CUDA
    return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "the CUDA backend is not built into this library (nvcc was not found)");
#else
    if (!lswc_available()) return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "no usable CUDA device");
#if !LSW_CUDA_FORWARD
    return LSW_FAIL(LSW_E_UNSUPPORTED, "the CUDA model forward is not implemented yet (CUDA ops are available)");
#endif
#endif
  }
  LSW_GUARD_BEGIN
  lsw_model *m = new lsw_model();
  m->cfg = *cfg;
  m->q_dim = (int64_t)cfg->num_heads * cfg->head_dim;
  m->kv_dim = (int64_t)cfg->num_kv_heads * cfg->head_dim;
  m->qkv_dim = m->q_dim + 2 * m->kv_dim;
  *out = m;
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_model_map_file(lsw_model *m, const char *path, uint64_t data_offset, int32_t *file_id) {
  CHECK_MODEL(m)
  if (!path || !file_id) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "path and file_id must not be NULL");
  if (m->finalized) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is already finalized");
  LSW_GUARD_BEGIN
  return lsw_map_file(m, path, data_offset, file_id);
  LSW_GUARD_END
}

LSW_API lsw_status lsw_model_add_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim,
                                        const int64_t *shape, int32_t file_id, uint64_t offset) {
  CHECK_MODEL(m)
  if (!name || !shape) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "name and shape must not be NULL");
  if (m->finalized) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is already finalized");
  LSW_GUARD_BEGIN
  if (!std::strncmp(name, "adapters.", 9)) return lsw_adapter_tensor(m, name, dtype, ndim, shape, file_id, offset);
  return lsw_register_tensor(m, name, dtype, ndim, shape, file_id, offset, true);
  LSW_GUARD_END
}

LSW_API lsw_status lsw_model_add_random_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim,
                                               const int64_t *shape, uint64_t seed, float scale) {
  CHECK_MODEL(m)
  if (!name || !shape) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "name and shape must not be NULL");
  if (m->finalized) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is already finalized");
  LSW_GUARD_BEGIN
  return lsw_add_random_tensor(m, name, dtype, ndim, shape, seed, scale);
  LSW_GUARD_END
}

LSW_API lsw_status lsw_model_add_adapter(lsw_model *m, const lsw_adapter_desc *desc, int32_t *adapter_id) {
  CHECK_MODEL(m)
  if (m->finalized) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is already finalized");
  LSW_GUARD_BEGIN
  return lsw_adapter_add(m, desc, adapter_id);
  LSW_GUARD_END
}

LSW_API lsw_status lsw_model_finalize(lsw_model *m) {
  CHECK_MODEL(m)
  if (m->finalized) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "model is already finalized");
  LSW_GUARD_BEGIN
  lsw_status st = lsw_cpu_finalize(m);
  if (st) return st;
  if ((st = lsw_adapters_finalize(m))) return st;
#if LSW_CUDA_FORWARD
  if (m->cfg.backend == LSW_BACKEND_CUDA && (st = lswc_model_finalize(m))) return st;
#endif
  m->finalized = true;
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API void lsw_model_free(lsw_model *m) {
  if (!m) return;
#if LSW_CUDA_FORWARD
  if (m->cuda) lswc_model_free(m);
#endif
  m->pool.reset();
  lsw_unmap_files(m);
  delete m;
}

// ---------------------------------------------------------------------------------------------
LSW_API lsw_status lsw_model_set_mode(lsw_model *m, int32_t mode) {
  CHECK_MODEL(m)
  if (mode < LSW_MODE_MERGE || mode > LSW_MODE_BASE) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "unknown mode %d", mode);
  if (lsw_status st = lsw_adapters_check_mode(m, mode)) return st;
  m->mode = mode;  // merge mode merges lazily at the next decode step (from the pristine weights)
  return LSW_OK;
}

LSW_API lsw_status lsw_model_set_sampler(lsw_model *m, const lsw_sampler_params *p) {
  CHECK_MODEL(m)
  if (!p) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "sampler params are NULL");
  if (!(p->temperature >= 0) || !std::isfinite(p->temperature))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "temperature must be a finite number >= 0");
  if (p->top_k < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "top_k must be >= 0");
  if (!(p->top_p > 0 && p->top_p <= 1)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "top_p must be in (0, 1]");
  if (!(p->min_p >= 0 && p->min_p <= 1)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "min_p must be in [0, 1]");
  m->sampler = *p;
  m->sample_step = 0;
  return LSW_OK;
}

LSW_API lsw_status lsw_model_reset(lsw_model *m) {
  CHECK_FINAL(m)
  m->n_past = 0;
  m->have_logits = false;
  m->sample_step = 0;
  lsw_adapters_reset(m);
#if LSW_CUDA_FORWARD
  if (m->cuda) lswc_model_reset(m);
#endif
  return LSW_OK;
}

LSW_API int32_t lsw_model_n_past(const lsw_model *m) { return m ? m->n_past : 0; }

static lsw_status run_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits) {
  if (!tokens || n <= 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "no tokens to evaluate (n = %d)", n);
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
      return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "token %d at index %d is outside the vocabulary (size %d)", tokens[i],
                      i, m->cfg.vocab_size);
  if ((int64_t)m->n_past + n > m->cfg.max_context)
    return LSW_FAIL(LSW_E_CONTEXT_FULL, "context full: %d tokens in the cache + %d new > max_context %d", m->n_past,
                    n, m->cfg.max_context);
  if (lsw_status st = lsw_adapters_check_mode(m, m->mode)) return st;
  LSW_GUARD_BEGIN
#if LSW_CUDA_FORWARD
  if (m->cfg.backend == LSW_BACKEND_CUDA) return lswc_model_forward(m, tokens, n, all_logits);
#endif
  return lsw_cpu_forward(m, tokens, n, all_logits);
  LSW_GUARD_END
}

static lsw_status sample_next(lsw_model *m, int32_t *next) {
  LSW_GUARD_BEGIN
  if (lsw_status st = check_logits(m->cfg.vocab_size, m->logits.data(), m->n_past - 1)) return st;
  *next = sample(m->cfg.vocab_size, m->logits.data(), m->sampler, m->sample_step, m->sample_work);
  m->sample_step++;
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_model_eval(lsw_model *m, const int32_t *tokens, int32_t n, float *logits, int32_t all_logits) {
  CHECK_FINAL(m)
  if (logits && all_logits) return run_forward(m, tokens, n, logits);
  lsw_status st = run_forward(m, tokens, n, nullptr);
  if (st) return st;
  if (logits) std::memcpy(logits, m->logits.data(), sizeof(float) * m->cfg.vocab_size);
  return LSW_OK;
}

LSW_API lsw_status lsw_model_prefill(lsw_model *m, const int32_t *tokens, int32_t n, int32_t *next_token) {
  CHECK_FINAL(m)
  if (!next_token) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "next_token is NULL");
  lsw_status st = run_forward(m, tokens, n, nullptr);
  if (st) return st;
  return sample_next(m, next_token);
}

LSW_API lsw_status lsw_model_step(lsw_model *m, int32_t token, int32_t *next_token) {
  CHECK_FINAL(m)
  if (!next_token) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "next_token is NULL");
#if LSW_CUDA_FORWARD && defined(LSW_CUDA_STEP)
  if (m->cfg.backend == LSW_BACKEND_CUDA) {  // forward + sampler on the device: one graph launch, one sync
    if (token < 0 || token >= m->cfg.vocab_size)
      return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "token %d at index 0 is outside the vocabulary (size %d)", token,
                      m->cfg.vocab_size);
    if ((int64_t)m->n_past + 1 > m->cfg.max_context)
      return LSW_FAIL(LSW_E_CONTEXT_FULL, "context full: %d tokens in the cache + 1 new > max_context %d", m->n_past,
                      m->cfg.max_context);
    if (lsw_status st = lsw_adapters_check_mode(m, m->mode)) return st;
    LSW_GUARD_BEGIN
    lsw_status st = lswc_model_step(m, token, next_token);
    if (!st) m->sample_step++;
    return st;
    LSW_GUARD_END
  }
#endif
  lsw_status st = run_forward(m, &token, 1, nullptr);
  if (st) return st;
  return sample_next(m, next_token);
}

LSW_API lsw_status lsw_model_decode(lsw_model *m, int32_t token, int32_t n, const int32_t *stop_tokens, int32_t n_stop,
                                    int32_t *tokens_out, int32_t *n_out) {
  CHECK_FINAL(m)
  if (!n_out) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "n_out is NULL");
  *n_out = 0;
  if (n < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "n = %d is negative", n);
  if (n > 0 && !tokens_out) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "tokens_out is NULL");
  if (n_stop < 0 || (n_stop > 0 && !stop_tokens))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "stop_tokens: %d tokens at %p", n_stop, (const void *)stop_tokens);
  int32_t prev = token;
  for (int32_t i = 0; i < n; i++) {
    int32_t next = 0;
    if (lsw_status st = lsw_model_step(m, prev, &next)) return st;
    tokens_out[i] = next;
    *n_out = i + 1;
    if (std::find(stop_tokens, stop_tokens + n_stop, next) != stop_tokens + n_stop) break;
    prev = next;
  }
  return LSW_OK;
}

LSW_API lsw_status lsw_model_get_logits(lsw_model *m, float *logits) {
  CHECK_FINAL(m)
  if (!logits) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "logits is NULL");
  if (!m->have_logits) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "no position has been evaluated yet");
#if LSW_CUDA_FORWARD && defined(LSW_CUDA_STEP)
  if (m->cuda)  // the decode step leaves its logits on the device until they are asked for
    if (lsw_status st = lswc_model_fetch_logits(m)) return st;
#endif
  std::memcpy(logits, m->logits.data(), sizeof(float) * m->cfg.vocab_size);
  return LSW_OK;
}

LSW_API lsw_status lsw_model_get_routes(lsw_model *m, int32_t adapter_id, int32_t pos, int32_t n, int32_t *experts,
                                        float *gates) {
  CHECK_FINAL(m)
  return lsw_adapters_get_routes(m, adapter_id, pos, n, experts, gates);
}

LSW_API lsw_status lsw_model_get_stats(lsw_model *m, lsw_model_stats *out) {
  CHECK_FINAL(m)
  if (!out) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "out is NULL");
  std::memset(out, 0, sizeof *out);
  uint64_t wb = 0;
  for (const auto &ly : m->layers)
    for (const auto &w : ly.mat) wb += w.t->nbytes;
  wb += m->lm_head.t->nbytes;
  wb += (uint64_t)m->cfg.hidden_size * dtype_size(m->tok_emb.dtype);  // one embedding row
  out->weight_bytes = wb;
  out->adapter_bytes = lsw_adapters_bytes_per_token(m);
  const auto &s = m->scratch;
  out->device_bytes_peak = m->k_cache.size() + m->v_cache.size() +  // bytes: elements of cfg.kv_dtype
                           sizeof(float) * (m->logits.size() + s.x.size() + s.xn.size() + s.qkv.size() + s.att.size() +
                                            s.gu.size() + s.act.size() + s.att_work.size()) +
                           m->host_bytes;
  out->launches_per_token = 0;
  out->graph_captured = 0;
#if LSW_CUDA_FORWARD
  if (m->cuda) {
    out->launches_per_token = lswc_model_graph_nodes(m);
    out->graph_captured = out->launches_per_token > 0;
#ifdef LSW_CUDA_STEP
    lsw_status st = lswc_model_stats(m, out);  // graph nodes (captured on demand), device memory, merge counters
    if (st) return st;
#endif
  }
#endif
  out->n_threads = m->pool ? m->pool->size() : 1;
  out->simd_level = simd_level();
  out->merge_steps = m->merge_steps;
  out->merge_skipped = m->merge_skipped;
  return LSW_OK;
}

// The timed decode loops: greedy (forced NULL: each step appends the previous step's pick, the first one first_token)
// or fed a token stream (step i appends forced[i]; the pick is computed all the same and dropped).
static lsw_status bench_decode(lsw_model *m, int32_t first_token, const int32_t *forced, int32_t n_tokens, double *ms) {
  CHECK_FINAL(m)
  if (n_tokens <= 0 || !ms) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "n_tokens must be positive and ms non-NULL");
  if ((int64_t)m->n_past + n_tokens > m->cfg.max_context)
    return LSW_FAIL(LSW_E_CONTEXT_FULL, "context full: %d tokens in the cache + %d > max_context %d", m->n_past,
                    n_tokens, m->cfg.max_context);
  for (int32_t i = 0; i < (forced ? n_tokens : 1); i++) {
    const int32_t t = forced ? forced[i] : first_token;
    if (t < 0 || t >= m->cfg.vocab_size)
      return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "%s %d is outside the vocabulary (size %d)",
                      forced ? "a token of the stream" : "first_token", t, m->cfg.vocab_size);
  }
#if LSW_CUDA_FORWARD && defined(LSW_CUDA_STEP)
  if (m->cfg.backend == LSW_BACKEND_CUDA) {  // steps through the decode graph, no FFI per step
    if (lsw_status st = lsw_adapters_check_mode(m, m->mode)) return st;
    LSW_GUARD_BEGIN
    return lswc_model_bench_decode(m, forced ? forced[0] : first_token, n_tokens, ms, forced);
    LSW_GUARD_END
  }
#endif
  int32_t tok = forced ? forced[0] : first_token;
  for (int32_t i = 0; i < n_tokens; i++) {
    auto t0 = std::chrono::steady_clock::now();
    lsw_status st = run_forward(m, &tok, 1, nullptr);
    if (st) return st;
    const float *l = m->logits.data();
    int32_t best = 0;
    for (int32_t v = 1; v < m->cfg.vocab_size; v++)
      if (l[v] > l[best]) best = v;
    tok = forced && i + 1 < n_tokens ? forced[i + 1] : best;
    ms[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  return LSW_OK;
}

LSW_API lsw_status lsw_model_bench_decode(lsw_model *m, int32_t first_token, int32_t n_tokens, double *ms) {
  return bench_decode(m, first_token, nullptr, n_tokens, ms);
}

LSW_API lsw_status lsw_model_bench_decode_tokens(lsw_model *m, const int32_t *tokens, int32_t n_tokens, double *ms) {
  if (!tokens) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "tokens is NULL");
  return bench_decode(m, 0, tokens, n_tokens, ms);
}

LSW_API lsw_status lsw_measure_bandwidth(int32_t backend, uint64_t bytes, double *gb_per_s) {
  if (!gb_per_s) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "gb_per_s is NULL");
  if (bytes < 4096 || bytes > ((uint64_t)1 << 36))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "bytes must be in [4 KiB, 64 GiB] (got %llu)", (unsigned long long)bytes);
  if (backend == LSW_BACKEND_CUDA) {
#if defined(LSW_HAVE_CUDA) && defined(LSW_CUDA_BANDWIDTH)
    return lswc_measure_bandwidth(bytes, gb_per_s);
#elif defined(LSW_HAVE_CUDA)
    return LSW_FAIL(LSW_E_UNSUPPORTED, "bandwidth measurement is not implemented for the CUDA backend yet");
#else
    return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "the CUDA backend is not built into this library (nvcc was not found)");
#endif
  }
  if (backend != LSW_BACKEND_CPU) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "unknown backend %d", backend);
  LSW_GUARD_BEGIN
  // Parallel copy over all cores (each thread its own contiguous share), median of 7 after a warm-up.
  std::unique_ptr<char[]> a(new char[bytes]), b(new char[bytes]);
  std::memset(a.get(), 1, bytes);
  std::memset(b.get(), 2, bytes);
  ThreadPool &p = default_pool();
  std::vector<double> t;
  for (int rep = 0; rep < 8; rep++) {
    auto t0 = std::chrono::steady_clock::now();
    p.parallel_for((int64_t)bytes, 1 << 16, [&](int, int64_t s, int64_t e) { std::memcpy(b.get() + s, a.get() + s, e - s); });
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep) t.push_back(sec);
  }
  std::sort(t.begin(), t.end());
  *gb_per_s = 2.0 * (double)bytes / t[t.size() / 2] / 1e9;
  return LSW_OK;
  LSW_GUARD_END
}

LSW_API lsw_status lsw_measure_matmul(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t n,
                                      int32_t n_threads, double *tflops) {
  if (!tflops) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "lsw_measure_matmul: tflops is NULL");
  if (backend != LSW_BACKEND_CPU && backend != LSW_BACKEND_CUDA)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "lsw_measure_matmul: unknown backend %d", backend);
  if (dtype_size(dtype) == 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "lsw_measure_matmul: unknown dtype %d", dtype);
  if (rows <= 0 || cols <= 0 || n <= 0)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "lsw_measure_matmul: rows, cols and n must be positive (got %d x %d x %d)",
                    rows, cols, n);
  if (n_threads < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "lsw_measure_matmul: n_threads must be >= 0 (got %d)", n_threads);
  // W + X + Y (+ the CUDA GEMM's 16-bit copies of X): refuse what would not be a benchmark but an allocation failure
  const double bytes = (double)rows * cols * dtype_size(dtype) + (double)n * cols * 4 + (double)n * rows * 4 +
                       (backend == LSW_BACKEND_CUDA ? (double)n * cols * 4 : 0);
  if (bytes > (double)((uint64_t)16 << 30))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "lsw_measure_matmul: %d x %d x %d needs %.1f GiB of buffers (at most 16 GiB)",
                    rows, cols, n, bytes / (1u << 30));
  if (backend == LSW_BACKEND_CUDA) {
#if defined(LSW_HAVE_CUDA)
    if (!lswc_available()) return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "CUDA backend: no usable CUDA device");
    LSW_GUARD_BEGIN
    return lswc_measure_matmul(dtype, rows, cols, n, tflops);
    LSW_GUARD_END
#else
    return LSW_FAIL(LSW_E_BACKEND_UNAVAILABLE, "the CUDA backend is not built into this library (nvcc was not found)");
#endif
  }
  LSW_GUARD_BEGIN
  // fresh seeded random operands (random.h: never zero), W rounded to its dtype as a model's weights are
  const size_t es = dtype_size(dtype), nw = (size_t)rows * cols, nx = (size_t)n * cols;
  std::unique_ptr<uint8_t[]> W(new uint8_t[nw * es]);
  std::vector<float> X(nx), Y((size_t)n * rows), tmp(std::min<size_t>(nw, (size_t)1 << 20));
  static std::atomic<uint64_t> calls{0};
  const uint64_t seed = lsw_splitmix64(0x6d61746d756cull + calls.fetch_add(1));
  for (size_t b = 0; b < nw; b += tmp.size()) {
    const size_t e = std::min(nw, b + tmp.size());
    for (size_t i = b; i < e; i++) tmp[i - b] = lsw_random_value(seed, i, 0.02f, 0);
    from_f32(dtype, tmp.data(), W.get() + b * es, (int64_t)(e - b));
  }
  for (size_t i = 0; i < nx; i++) X[i] = lsw_random_value(seed + 1, i, 1.f, 0);
  std::unique_ptr<ThreadPool> own;
  ThreadPool *pool = &default_pool();
  if (n_threads > 0 && n_threads != pool->size()) {
    own.reset(new ThreadPool(n_threads));
    pool = own.get();
  }
  auto once = [&] {
    auto t0 = std::chrono::steady_clock::now();
    matmul(pool, dtype, W.get(), rows, cols, X.data(), cols, n, Y.data(), rows, false);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // warm-up (pages, caches, thread wake-up), then an odd number of timed runs: about 0.5 s in all, 3 to 15 runs
  const double warm = std::max(once(), 1e-7);
  const int reps = std::max(3, std::min(15, (int)(0.5 / warm) | 1));
  std::vector<double> t;
  for (int r = 0; r < reps; r++) t.push_back(once());
  std::sort(t.begin(), t.end());
  const double med = t[t.size() / 2];
  // the result must be a number the matmul produced (a Y that stayed garbage would show as NaN / huge)
  for (size_t i = 0; i < Y.size(); i += std::max<size_t>(1, Y.size() / 64))
    if (!std::isfinite(Y[i])) return LSW_FAIL(LSW_E_INTERNAL, "lsw_measure_matmul: non-finite result");
  *tflops = 2.0 * rows * cols * n / med / 1e12;
  return LSW_OK;
  LSW_GUARD_END
}

}  // extern "C"

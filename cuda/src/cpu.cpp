// CPU backend: errors, thread pool, SIMD dispatch and the backend-neutral kernels built on the SIMD table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine.h"
#include "kernels.h"
#include "topp.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LSW_PAUSE() _mm_pause()
#else
#define LSW_PAUSE() ((void)0)
#endif

// ---------------------------------------------------------------------------------------------
// Errors: the failing thread's own message (thread-local) and a process-wide copy of the most recent one, so that
// a caller whose failing call ran on another thread (koffi's async calls run on a worker thread) still reads it.
// lsw_last_error returns the most recent message set on ANY thread, copied into a thread-local buffer (the
// pointer stays valid until this thread calls lsw_last_error again).
static thread_local char g_err[1024] = "";
static std::mutex g_err_mu;
static char g_err_last[1024] = "";

void lsw_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lk(g_err_mu);
  std::memcpy(g_err_last, g_err, sizeof g_err_last);
}
extern "C" LSW_API const char *lsw_last_error(void) {
  static thread_local char out[1024];
  std::lock_guard<std::mutex> lk(g_err_mu);
  std::memcpy(out, g_err_last, sizeof out);
  return out;
}

namespace lsw {

size_t dtype_size(int dtype) {
  switch (dtype) {
    case LSW_DTYPE_F32: return 4;
    case LSW_DTYPE_F16: return 2;
    case LSW_DTYPE_BF16: return 2;
    default: return 0;
  }
}
const char *dtype_name(int dtype) {
  switch (dtype) {
    case LSW_DTYPE_F32: return "F32";
    case LSW_DTYPE_F16: return "F16";
    case LSW_DTYPE_BF16: return "BF16";
    default: return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------
// SIMD dispatch
static const KernelTable *choose_kernels() {
  int max_level = 2;
  if (const char *e = std::getenv("LSW_SIMD")) {  // "scalar" | "avx2" | "avx512": cap the level (tests, benchmarks)
    if (!std::strcmp(e, "scalar")) max_level = 0;
    else if (!std::strcmp(e, "avx2")) max_level = 1;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (max_level >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return kernels_level2();
  if (max_level >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return kernels_level1();
#endif
  return kernels_level0();
}
const KernelTable &K() {
  static const KernelTable *t = choose_kernels();
  return *t;
}
int simd_level() { return K().level; }
const char *simd_name() {
  switch (K().level) {
    case 2: return "avx512";
    case 1: return "avx2+fma+f16c";
    default: return "scalar";
  }
}

// ---------------------------------------------------------------------------------------------
// Thread pool
ThreadPool::ThreadPool(int n) : n_(n < 1 ? 1 : n) {
  for (int t = 1; t < n_; t++) threads_.emplace_back([this, t] { worker(t); });
}
ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    gen_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto &th : threads_) th.join();
}
void ThreadPool::run(void (*fn)(void *, int, int), void *ctx) {
  // Single thread, or the pool is busy (a concurrent caller or a nested call): run inline.
  if (n_ == 1 || busy_.exchange(true, std::memory_order_acquire)) {
    fn(ctx, 0, n_);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  closed_.store(false, std::memory_order_seq_cst);
  gen_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  fn(ctx, 0, n_);
  // Close the job: a worker that has not joined yet will skip it; wait for those that joined.
  closed_.store(true, std::memory_order_seq_cst);
  for (int it = 1; active_.load(std::memory_order_seq_cst) != 0; it++) {
    LSW_PAUSE();
    if ((it & 1023) == 0) std::this_thread::yield();
  }
  busy_.store(false, std::memory_order_release);
}
void ThreadPool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    // Spin (hot between the ops of a forward pass), then sleep.
    auto t0 = std::chrono::steady_clock::now();
    uint64_t g;
    int it = 0;
    for (;;) {
      g = gen_.load(std::memory_order_acquire);
      if (g != seen) break;
      LSW_PAUSE();
      if (++it == 256) {
        it = 0;
        std::this_thread::yield();
        if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(3000)) {
          std::unique_lock<std::mutex> lk(mu_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          cv_.wait(lk, [&] { return gen_.load(std::memory_order_seq_cst) != seen; });
          sleepers_.fetch_sub(1);
          t0 = std::chrono::steady_clock::now();
        }
      }
    }
    seen = g;
    if (stop_.load()) return;
    active_.fetch_add(1, std::memory_order_seq_cst);
    if (!closed_.load(std::memory_order_seq_cst)) fn_(ctx_, tid, n_);
    active_.fetch_sub(1, std::memory_order_seq_cst);
  }
}
static int hw_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? (int)n : 1;
}
ThreadPool &default_pool() {
  static ThreadPool p(hw_threads());
  return p;
}


// ---------------------------------------------------------------------------------------------
// Kernels
void matmul(ThreadPool *pool, int dtype, const void *W, int64_t rows, int64_t cols, const float *X, int64_t ldx,
            int64_t n, float *Y, int64_t ldy, bool accumulate) {
  const KernelTable &k = K();
  // Small problems stay on the calling thread.
  if (!pool || pool->size() == 1 || rows * cols * std::max<int64_t>(n, 1) < 32768) {
    k.matmul_rows(dtype, W, cols, X, ldx, n, Y, ldy, 0, rows, accumulate);
    return;
  }
  pool->parallel_for(rows, 16, [&](int, int64_t b, int64_t e) {
    k.matmul_rows(dtype, W, cols, X, ldx, n, Y, ldy, b, e, accumulate);
  });
}

void rmsnorm(int64_t n, int64_t dim, const float *X, const float *w, float eps, float *Y) {
  const KernelTable &k = K();
  for (int64_t t = 0; t < n; t++) {
    const float *x = X + t * dim;
    float *y = Y + t * dim;
    float ss = k.dot(x, x, dim);
    float r = 1.0f / std::sqrt(ss / (float)dim + eps);
    for (int64_t i = 0; i < dim; i++) y[i] = x[i] * r * w[i];
  }
}

void rope_inv_freq(const lsw_model_config *cfg, std::vector<double> &inv) {
  const int64_t hd = cfg->head_dim, half = hd / 2;
  inv.assign(half, 0.0);
  const double theta = cfg->rope_theta > 0 ? cfg->rope_theta : 10000.0;
  for (int64_t i = 0; i < half; i++) inv[i] = 1.0 / std::pow(theta, (double)(2 * i) / (double)hd);
  if (cfg->rope_type == LSW_ROPE_LINEAR && cfg->rope_factor > 0) {
    for (auto &f : inv) f /= cfg->rope_factor;
  } else if (cfg->rope_type == LSW_ROPE_LLAMA3) {
    // transformers' _compute_llama3_parameters
    const double factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
    const double old = cfg->rope_original_max_position;
    const double lo_wl = old / lo, hi_wl = old / hi;
    for (auto &f : inv) {
      const double wl = 2.0 * M_PI / f;
      if (wl < hi_wl) continue;  // high frequency: unchanged
      if (wl > lo_wl) {
        f = f / factor;
      } else {
        const double s = (old / wl - lo) / (hi - lo);
        f = (1.0 - s) * f / factor + s * f;
      }
    }
  }
}

void rope_tables(const std::vector<double> &inv, int64_t n, const int32_t *pos, float *cos_t, float *sin_t) {
  const int64_t half = (int64_t)inv.size();
  for (int64_t t = 0; t < n; t++)
    for (int64_t i = 0; i < half; i++) {
      const double a = (double)pos[t] * inv[i];
      cos_t[t * half + i] = (float)std::cos(a);
      sin_t[t * half + i] = (float)std::sin(a);
    }
}

void rope_apply(int64_t n, int64_t n_heads, int64_t hd, int64_t ld, const float *cos_t, const float *sin_t,
                float *X) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < n; t++) {
    const float *c = cos_t + t * half, *s = sin_t + t * half;
    for (int64_t h = 0; h < n_heads; h++) {
      float *x = X + t * ld + h * hd;
      for (int64_t i = 0; i < half; i++) {
        const float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

// positions per work item of the decode attention (>= 16; at most 32 items)
static int64_t attn_decode_chunk(int64_t n_ctx) { return std::max<int64_t>(16, (n_ctx + 31) / 32); }
// decode's scratch: partials (max, sum, o[hd]) per (item, head) for at most 32 items, scores [nh][CH] per thread
static size_t attn_decode_floats(int n_threads, int64_t n_ctx, int64_t nh, int64_t hd) {
  return (size_t)(32 * nh * (hd + 2)) + (size_t)n_threads * nh * attn_decode_chunk(n_ctx);
}

// One query (decode) against all n_ctx positions.  Work items are chunks of CH consecutive positions for all heads:
// each reads its K and V rows whole and in order, and writes unnormalised partials (max, sum of exponentials, output)
// per head; they are merged per head afterwards in chunk order, so the result does not depend on which thread ran
// which item.  The chunk length depends on n_ctx only.  An F16 / BF16 cache is read as stored and widened in registers
// (attn_chunk), with the F32 path's arithmetic: the result is the F32 path's on the rounded values.
static void attention_decode(ThreadPool *pool, int64_t n_ctx, int64_t nh, int64_t nkv, int64_t hd, const float *q,
                             int kv_dtype, const void *Kc, const void *Vc, int64_t ldkv, float *o, float *scratch) {
  const KernelTable &k = K();
  const int64_t G = nh / nkv;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int64_t CH = attn_decode_chunk(n_ctx);
  const int64_t nch = (n_ctx + CH - 1) / CH;  // <= 32
  const int nt = pool ? pool->size() : 1;
  const size_t es = dtype_size(kv_dtype);
  const size_t np = (size_t)(nch * nh);  // partials [chunk][head]
  // scratch: attn_decode_floats(nt, n_ctx, nh, hd)
  float *pm = scratch, *pl = pm + np, *po = pl + np, *sc = po + np * hd;
  auto body = [&](int tid, int64_t b, int64_t e) {
    float *s = sc + (int64_t)tid * nh * CH;
    for (int64_t c = b; c < e; c++) {
      const int64_t j0 = c * CH, T = std::min(CH, n_ctx - j0);
      const size_t off = (size_t)(j0 * ldkv) * es;
      k.attn_chunk(kv_dtype, q, nh, G, hd, (const char *)Kc + off, (const char *)Vc + off, ldkv, T, n_ctx - j0, scale,
                   s, pm + c * nh, pl + c * nh, po + c * nh * hd);
    }
  };
  if (pool && nt > 1 && nch > 1)
    pool->parallel_for(nch, 1, body);
  else
    body(0, 0, nch);
  for (int64_t h = 0; h < nh; h++) {
    float *out = o + h * hd;
    if (nch == 1) {
      const float inv = 1.0f / pl[h];
      for (int64_t i = 0; i < hd; i++) out[i] = po[h * hd + i] * inv;
      continue;
    }
    float mx = -INFINITY;
    for (int64_t c = 0; c < nch; c++) mx = std::max(mx, pm[c * nh + h]);
    float sum = 0.f;
    std::fill(out, out + hd, 0.f);
    for (int64_t c = 0; c < nch; c++) {
      const float w = std::exp(pm[c * nh + h] - mx);
      sum += w * pl[c * nh + h];
      k.axpy(w, po + (c * nh + h) * hd, out, hd);
    }
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < hd; i++) out[i] *= inv;
  }
}

static constexpr int64_t kAttnBQ = 32;  // queries per block of the prompt attention
// kh [n_ctx][hd] + vt [hd][n_ctx], then per thread: S / P [BQ][n_ctx], O^T [hd][BQ], row sums [BQ], one V row [hd]
static size_t attn_per_thread(int64_t bq, int64_t n_ctx, int64_t hd) { return (size_t)(bq * n_ctx + hd * bq + bq + hd); }
size_t attention_scratch_floats(int n_threads, int64_t n, int64_t n_ctx, int64_t n_heads, int64_t head_dim) {
  const size_t dec = attn_decode_floats(n_threads, n_ctx, n_heads, head_dim);
  if (n <= 1) return dec;
  return std::max(dec, (size_t)(2 * n_ctx * head_dim) +
                           (size_t)n_threads * attn_per_thread(std::min(n, kAttnBQ), n_ctx, head_dim));
}

void attention(ThreadPool *pool, int64_t n, int64_t n_ctx, int64_t nh, int64_t nkv, int64_t hd, const float *Q,
               int64_t ldq, int kv_dtype, const void *Kv, const void *Vv, int64_t ldkv, float *O, int64_t ldo,
               float *scratch) {
  if (n == 1) return attention_decode(pool, n_ctx, nh, nkv, hd, Q, kv_dtype, Kv, Vv, ldkv, O, scratch);
  // Prompts: one KV head at a time, its K columns gathered (and widened) into kh [n_ctx][hd] and its V columns into
  // vt [hd][n_ctx] (transposed), fp32.  Then work items of (block of up to BQ queries, query head of the group):
  //   S[t][j] = q_t . k_j for the block's keys j < L (its last query's position + 1): matmul_rows over kh;
  //   per query row: scale, causal mask (j past its own position), max, exp, sum: unnormalised probabilities P;
  //   O^T[d][t] = sum_j P[t][j] vt[d][j]: matmul_rows with P as the rows; o = O^T / sum.
  // The matmul kernels keep the accumulators in registers, so each K / V row is read once per query block instead of
  // once per query.  An F16 / BF16 cache is widened when gathered: the result is the F32 path's on the rounded values.
  const KernelTable &k = K();
  const int64_t group = nh / nkv, BQ = std::min(n, kAttnBQ), nqb = (n + BQ - 1) / BQ;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int nt = pool ? pool->size() : 1;
  const size_t es = dtype_size(kv_dtype), per_thread = attn_per_thread(BQ, n_ctx, hd);
  float *kh = scratch, *vt = kh + n_ctx * hd, *tmp = vt + n_ctx * hd;  // attention_scratch_floats(nt, n, n_ctx, nh, hd)
  for (int64_t g = 0; g < nkv; g++) {
    auto gather = [&](int tid, int64_t b, int64_t e) {  // rows [b, e) of KV head g
      float *row = tmp + (size_t)tid * per_thread + BQ * n_ctx + hd * BQ + BQ;
      for (int64_t j = b; j < e; j++) {
        const size_t off = (size_t)(j * ldkv + g * hd) * es;
        k.to_f32(kv_dtype, (const char *)Kv + off, kh + j * hd, hd);
        k.to_f32(kv_dtype, (const char *)Vv + off, row, hd);
        for (int64_t d = 0; d < hd; d++) vt[d * n_ctx + j] = row[d];
      }
    };
    if (pool && nt > 1)
      pool->parallel_for(n_ctx, 64, gather);
    else
      gather(0, 0, n_ctx);
    auto body = [&](int tid, int64_t b, int64_t e) {
      float *S = tmp + (size_t)tid * per_thread, *OT = S + BQ * n_ctx, *sums = OT + hd * BQ;
      for (int64_t task = b; task < e; task++) {
        const int64_t qb = task / group, h = g * group + task % group;
        const int64_t t0 = qb * BQ, bq = std::min(BQ, n - t0), L = n_ctx - n + t0 + bq;
        k.matmul_rows(LSW_DTYPE_F32, kh, hd, Q + t0 * ldq + h * hd, ldq, bq, S, L, 0, L, false);
        for (int64_t t = 0; t < bq; t++) {
          float *s = S + t * L, mx;
          const int64_t last = n_ctx - n + t0 + t;  // inclusive
          for (int64_t j = 0; j <= last; j++) s[j] *= scale;
          sums[t] = k.exp_shift(s, last + 1, &mx);
          for (int64_t j = last + 1; j < L; j++) s[j] = 0.f;
        }
        k.matmul_rows(LSW_DTYPE_F32, S, L, vt, n_ctx, hd, OT, bq, 0, bq, false);
        for (int64_t t = 0; t < bq; t++) {
          float *o = O + (t0 + t) * ldo + h * hd;
          const float inv = 1.0f / sums[t];
          for (int64_t d = 0; d < hd; d++) o[d] = OT[d * bq + t] * inv;
        }
      }
    };
    if (pool && nt > 1 && nqb * group > 1)
      pool->parallel_for(nqb * group, 1, body);
    else
      body(0, 0, nqb * group);
  }
}

void swiglu_range(int64_t n, int64_t inter, int64_t b, int64_t e, const float *GU, int64_t ldgu, float *Out,
                  int64_t ldo) {
  const KernelTable &k = K();
  for (int64_t t = 0; t < n; t++) {
    const float *g = GU + t * ldgu;
    k.swiglu(g + b, g + inter + b, Out + t * ldo + b, e - b);
  }
}
void swiglu(int64_t n, int64_t inter, const float *GU, int64_t ldgu, float *Out, int64_t ldo) {
  swiglu_range(n, inter, 0, inter, GU, ldgu, Out, ldo);
}

void to_f32(int dtype, const void *src, float *dst, int64_t n) { K().to_f32(dtype, src, dst, n); }

void from_f32(int dtype, const float *src, void *dst, int64_t n) { K().from_f32(dtype, src, dst, n); }

// SGMM (docs/FORMAT.md, "SGMM arithmetic").  For each row i, in fp32:
//   acc[j] = W0[i][j]
//   for each term (in order), for r in 0..rank-1:  c = gate * B[i][r];  acc[j] = fmaf(c, A[r][j], acc[j])
//   W[i][j] = round_to_nearest_even(acc[j])
// W depends only on (W0, terms): merging from the pristine W0 never drifts.  A batch of matrices runs in two passes
// over the thread pool: every job's A rows widened into one fp32 block ([K_j][cols_j] per job, K_j = its terms' ranks
// summed), then the rows of all jobs, each thread widening its rows' coefficients c and running the register-blocked
// kernel (KernelTable::sgmm_rows).  One pass per step instead of one per matrix: on SmolLM-135M's 60 q,v matrices the
// per-matrix passes (pool wake-up, the A widening on one thread, each pass's tail) cost a third of the merge.
void sgmm_jobs(ThreadPool *pool, const lsw_sgmm_job *jobs, int64_t n_jobs) {
  const KernelTable &k = K();
  struct JobInfo {
    int64_t kt, a_off, row0;
  };
  struct ARow {
    const void *src;
    int dtype;
    int64_t cols;
    float *dst;
  };
  static thread_local std::vector<JobInfo> info;
  static thread_local std::vector<ARow> arows;
  static thread_local std::vector<float> a32;
  info.resize((size_t)n_jobs);
  int64_t a_total = 0, rows_total = 0, work = 0, n_arows = 0;
  for (int64_t j = 0; j < n_jobs; j++) {
    const lsw_sgmm_job &J = jobs[j];
    int64_t kt = 0;
    for (int64_t t = 0; t < J.n_terms; t++) kt += J.terms[t].rank;
    info[j] = {kt, a_total, rows_total};
    a_total += kt * J.cols;
    rows_total += J.rows;
    work += J.rows * J.cols * (kt + 1);
    n_arows += kt;
  }
  a32.resize((size_t)a_total);
  arows.clear();
  for (int64_t j = 0; j < n_jobs; j++) {
    const lsw_sgmm_job &J = jobs[j];
    float *dst = a32.data() + info[j].a_off;
    for (int64_t t = 0; t < J.n_terms; t++) {
      const lsw_sgmm_term &T = J.terms[t];
      const size_t tes = dtype_size(T.dtype);
      for (int64_t r = 0; r < T.rank; r++, dst += J.cols)
        arows.push_back({(const char *)T.A + (size_t)(r * J.cols) * tes, T.dtype, J.cols, dst});
    }
  }
  const bool par = pool && pool->size() > 1 && work >= 16384;
  // (the lambdas run on the pool's threads: they see this thread's buffers through these pointers, never by the
  // thread_local names, which would name each worker's own)
  const JobInfo *inf = info.data();
  const ARow *ar = arows.data();
  const float *a32p = a32.data();
  auto widen = [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) k.to_f32(ar[i].dtype, ar[i].src, ar[i].dst, ar[i].cols);
  };
  if (par) pool->parallel_for(n_arows, 4, widen);
  else widen(0, 0, n_arows);
  // rows [b, e) of the batch (global row numbers; a range may span jobs)
  auto body = [&](int, int64_t b, int64_t e) {
    constexpr int64_t RB = 16;  // rows per kernel call: their coefficients in a small block
    thread_local std::vector<float> c, brow;
    int64_t j = std::upper_bound(inf, inf + n_jobs, b, [](int64_t v, const JobInfo &x) { return v < x.row0; }) - inf - 1;
    for (int64_t g = b; g < e; j++) {
      const lsw_sgmm_job &J = jobs[j];
      const int64_t kt = inf[j].kt, lb = g - inf[j].row0, le = std::min(J.rows, e - inf[j].row0);
      const size_t es = dtype_size(J.dtype);
      c.resize((size_t)(RB * std::max<int64_t>(kt, 1)));
      for (int64_t i0 = lb; i0 < le; i0 += RB) {
        const int64_t n = std::min(RB, le - i0);
        for (int64_t i = 0; i < n; i++) {
          float *ci = c.data() + i * kt;
          for (int64_t t = 0; t < J.n_terms; t++) {
            const lsw_sgmm_term &T = J.terms[t];
            brow.resize((size_t)T.rank);
            k.to_f32(T.dtype, (const char *)T.B + (size_t)((i0 + i) * T.rank) * dtype_size(T.dtype), brow.data(), T.rank);
            for (int64_t r = 0; r < T.rank; r++) *ci++ = T.gate * brow[r];  // c = fl(gate · B[i][r])
          }
        }
        k.sgmm_rows(J.dtype, (const char *)J.W0 + (size_t)(i0 * J.cols) * es, (char *)J.W + (size_t)(i0 * J.cols) * es,
                    J.cols, n, c.data(), kt, kt, a32p + inf[j].a_off);
      }
      g = inf[j].row0 + le;
    }
  };
  if (par) pool->parallel_for(rows_total, 4, body);
  else body(0, 0, rows_total);
}

void sgmm(ThreadPool *pool, int dtype, int64_t n_mats, int64_t rows, int64_t cols, int64_t rank, int64_t top_k,
          const void *W0, void *W, const void *A, const void *B, const float *gates) {
  const size_t es = dtype_size(dtype);
  std::vector<lsw_sgmm_term> terms((size_t)(n_mats * top_k));
  std::vector<lsw_sgmm_job> jobs((size_t)n_mats);
  for (int64_t m = 0; m < n_mats; m++) {
    for (int64_t kk = 0; kk < top_k; kk++)
      terms[m * top_k + kk] = {(const char *)A + (size_t)((m * top_k + kk) * rank * cols) * es,
                               (const char *)B + (size_t)((m * top_k + kk) * rows * rank) * es, dtype, rank, gates[kk]};
    const size_t off = (size_t)(m * rows * cols) * es;
    jobs[m] = {dtype, rows, cols, (const char *)W0 + off, (char *)W + off, terms.data() + m * top_k, top_k};
  }
  sgmm_jobs(pool, jobs.data(), n_mats);
}

// Y = W x + Σ_k gates[k] · B[k] (A[k] x); u[k][r] = gates[k] * (A[k][r] · x) in fp32, then Y += B[k] u[k].
void lora_fused(ThreadPool *pool, int dtype, int64_t rows, int64_t cols, int64_t rank, int64_t top_k, const void *W,
                const void *A, const void *B, const float *gates, const float *x, float *Y) {
  const size_t es = dtype_size(dtype);
  std::vector<float> u((size_t)(top_k * rank));
  K().matmul_rows(dtype, A, cols, x, cols, 1, u.data(), top_k * rank, 0, top_k * rank, false);
  for (int64_t kk = 0; kk < top_k; kk++)
    for (int64_t r = 0; r < rank; r++) u[kk * rank + r] *= gates[kk];
  matmul(pool, dtype, W, rows, cols, x, cols, 1, Y, rows, false);
  for (int64_t kk = 0; kk < top_k; kk++)
    matmul(pool, dtype, (const char *)B + (size_t)(kk * rows * rank) * es, rows, rank, u.data() + kk * rank, rank,
           1, Y, rows, true);
}

void route(int dtype, int64_t n_experts, int64_t dim, int64_t top_k, const void *R, const float *x,
           int32_t *experts, float *gates) {
  std::vector<float> lg((size_t)n_experts);
  K().matmul_rows(dtype, R, dim, x, dim, 1, lg.data(), n_experts, 0, n_experts, false);
  double mx = -INFINITY;
  for (float v : lg) mx = std::max(mx, (double)v);
  std::vector<double> p((size_t)n_experts);
  double sum = 0;
  for (int64_t e = 0; e < n_experts; e++) sum += (p[e] = std::exp((double)lg[e] - mx));
  std::vector<char> used((size_t)n_experts, 0);
  double ksum = 0;
  for (int64_t j = 0; j < top_k; j++) {
    int64_t best = -1;
    for (int64_t e = 0; e < n_experts; e++)
      if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
    used[best] = 1;
    experts[j] = (int32_t)best;
    ksum += p[best] / sum;
  }
  for (int64_t j = 0; j < top_k; j++) gates[j] = (float)(p[experts[j]] / sum / ksum);
}

// ---------------------------------------------------------------------------------------------
// Sampler (the algorithm is specified in lsw.h, "Sampling").
static inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t sample_hash(uint64_t seed, uint64_t step) { return splitmix64(seed ^ splitmix64(step)); }

lsw_status check_logits(int64_t vocab, const float *l, int64_t position) {
  uint32_t any = 0;  // exponent bits all ones: NaN or infinity (an integer OR reduction, which vectorises)
  for (int64_t i = 0; i < vocab; i++) {
    uint32_t u;
    std::memcpy(&u, l + i, 4);
    any |= (u & 0x7f800000u) == 0x7f800000u;
  }
  if (!any) return LSW_OK;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < vocab; i++)
    if (!std::isfinite(l[i]) && bad++ == 0) first = i;
  char where[32] = "lsw_op_sample";  // (formatted only here: the pass above is all a healthy step pays)
  if (position >= 0) std::snprintf(where, sizeof where, "position %lld", (long long)position);
  return LSW_FAIL(LSW_E_NUMERIC,
                  "%s: %lld of %lld logits are not finite (NaN or infinity; the first at token id %lld, %g), so no "
                  "token can be sampled: the weights or an adapter hold non-finite values, or the activations overflowed",
                  where, (long long)bad, (long long)vocab, (long long)first, (double)l[first]);
}

static int32_t argmax(int64_t vocab, const float *l) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; i++)
    if (l[i] > l[best]) best = i;
  return (int32_t)best;
}

// Step 3's nucleus when it is not among the 64 most likely (idx[0 .. nc) ascending, p their probabilities): the number of
// them kept, the shortest prefix of the (p desc, id asc) order whose running fp64 sum reaches top_p, summed in that
// order.  The candidates are binned by p, 64 bins per binary order of magnitude over the 32 below the largest p and
// one bin below those (a stable counting sort, so each bin is in ascending id order); the bins are walked from the
// top, each sorted by (p desc, id asc) only when reached, and a bin whose ids all share one p is summed at once by
// lsw_repeat_add (the same bits as adding them one by one).  The same order and the same additions as sorting every
// candidate (the reference algorithm, test_ops), in O(nc) plus the sorts of the bins the nucleus reaches.  On return
// (last_p, last_id) is the last candidate kept.
static int64_t nucleus_binned(int64_t nc, const int32_t *idx, const double *p, double top_p, SampleWork &w,
                              double &last_p, int32_t &last_id) {
  constexpr int kBins = kTopPBins;  // + 1: below them
  double pm = 0;
  for (int64_t c = 0; c < nc; c++) pm = std::max(pm, p[idx[c]]);
  uint64_t pmb;
  std::memcpy(&pmb, &pm, 8);
  const int emax = (int)(pmb >> 52);
  std::vector<int64_t> &start = w.bin_start;
  std::vector<uint16_t> &bin = w.bin_of;
  start.assign(kBins + 2, 0);
  bin.resize((size_t)nc);
  for (int64_t c = 0; c < nc; c++) {
    bin[c] = (uint16_t)lsw_topp_bin(p[idx[c]], emax);
    start[bin[c] + 1]++;
  }
  for (int b = 0; b <= kBins; b++) start[b + 1] += start[b];
  std::vector<int32_t> &list = w.list;
  list.resize((size_t)nc);
  {
    std::vector<int64_t> &at = w.bin_at;
    at.assign(start.begin(), start.end() - 1);
    for (int64_t c = 0; c < nc; c++) list[(size_t)at[bin[c]]++] = idx[c];
  }
  std::vector<std::pair<double, int32_t>> &pr = w.pairs;
  double cum = 0;
  int64_t taken = 0;
  for (int b = 0; b <= kBins; b++) {
    const int64_t b0 = start[b], n = start[b + 1] - b0;
    if (n == 0) continue;
    const int32_t *l = list.data() + b0;
    double lo = p[l[0]], hi = lo;
    for (int64_t j = 1; j < n; j++) {
      lo = std::min(lo, p[l[j]]);
      hi = std::max(hi, p[l[j]]);
    }
    if (lo == hi) {  // one p: ascending ids already; the sum at once
      const int64_t t = lsw_repeat_add(cum, lo, n, top_p);
      taken += t;
      last_p = lo;
      last_id = l[t - 1];
      if (cum >= top_p) return taken;
      continue;
    }
    pr.resize((size_t)n);
    for (int64_t j = 0; j < n; j++) pr[(size_t)j] = {p[l[j]], l[j]};
    std::sort(pr.begin(), pr.end(), [](const std::pair<double, int32_t> &a, const std::pair<double, int32_t> &c) {
      return a.first > c.first || (a.first == c.first && a.second < c.second);
    });
    for (int64_t j = 0; j < n; j++) {
      cum += pr[(size_t)j].first;
      if (cum >= top_p) {
        last_p = pr[(size_t)j].first;
        last_id = pr[(size_t)j].second;
        return taken + j + 1;
      }
    }
    taken += n;
    last_p = pr[(size_t)n - 1].first;
    last_id = pr[(size_t)n - 1].second;
  }
  return taken;
}

// The k best of the ids id_at(0 .. n-1), given in ascending id order, under `better` (a strict order whose ties go to
// the lower id), into h as a heap whose front is the worst of them: one pass, most ids costing one test beats(i, worst)
// (a key strictly above the worst's: an equal key comes with a higher id, so it is not better).
template <typename IdAt, typename Better, typename Beats>
static void best_k(int64_t n, int64_t k, IdAt id_at, Better better, Beats beats, std::vector<int32_t> &h) {
  h.clear();
  for (int64_t c = 0; c < k; c++) h.push_back(id_at(c));
  std::make_heap(h.begin(), h.end(), better);
  for (int64_t c = k; c < n; c++) {
    const int32_t i = id_at(c);
    if (beats(i, h.front())) {
      std::pop_heap(h.begin(), h.end(), better);
      h.back() = i;
      std::push_heap(h.begin(), h.end(), better);
    }
  }
}

int32_t sample(int64_t vocab, const float *logits, const lsw_sampler_params &sp, uint64_t step, SampleWork &w) {
  if (!(sp.temperature > 0.f) || sp.top_k == 1) return argmax(vocab, logits);
  auto &idx = w.idx;
  int64_t nc = vocab;
  // 1. top-k on the logits (order: logit desc, id asc), kept in ascending id order.  Up to kTopKHeap: one pass with a
  // heap of the k best (its top the worst of them, so most ids cost one comparison); larger k: nth_element
  constexpr int64_t kTopKHeap = 1024;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (sp.top_k > 0 && sp.top_k < vocab && sp.top_k <= kTopKHeap) {
    nc = sp.top_k;
    best_k(vocab, nc, [](int64_t c) { return (int32_t)c; }, by_logit,
           [&](int32_t i, int32_t worst) { return logits[i] > logits[worst]; }, idx);
    std::sort(idx.begin(), idx.end());
  } else {
    idx.resize((size_t)vocab);
    for (int64_t i = 0; i < vocab; i++) idx[i] = (int32_t)i;
    if (sp.top_k > 0 && sp.top_k < vocab) {
      nc = sp.top_k;
      std::nth_element(idx.begin(), idx.begin() + (nc - 1), idx.end(), by_logit);
      std::sort(idx.begin(), idx.begin() + nc);  // back to ascending id
    }
  }
  // 2. temperature + softmax in fp64: p_i = exp(l_i/T - max_j l_j/T) / Σ
  std::vector<double> &p = w.pd;
  p.resize((size_t)vocab);
  const double T = sp.temperature;
  double mx = -INFINITY;
  for (int64_t c = 0; c < nc; c++) mx = std::max(mx, (double)logits[idx[c]] / T);
  double sum = 0;
  for (int64_t c = 0; c < nc; c++) sum += (p[idx[c]] = std::exp((double)logits[idx[c]] / T - mx));
  for (int64_t c = 0; c < nc; c++) p[idx[c]] /= sum;
  // 3. top-p: smallest prefix of (p desc, id asc) whose sum reaches top_p.  First the 64 most likely (a heap pass that
  // leaves idx as it is): most steps' nucleus lies among them.  Else by bins (nucleus_binned).  The kept ids end in
  // ascending order.
  if (sp.top_p < 1.f) {
    auto by_p = [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); };
    std::vector<int32_t> &hp = w.list;
    const int64_t k0 = std::min<int64_t>(nc, 64);
    best_k(nc, k0, [&](int64_t c) { return idx[c]; }, by_p, [&](int32_t i, int32_t worst) { return p[i] > p[worst]; },
           hp);
    std::sort(hp.begin(), hp.end(), by_p);
    double cum = 0;
    int64_t j = 0;
    for (; j < k0; j++) {
      cum += p[hp[j]];
      if (cum >= (double)sp.top_p) break;
    }
    if (j < k0 || k0 == nc) {  // reached within the 64 (or they are every candidate)
      nc = std::min(j + 1, k0);
      std::sort(hp.begin(), hp.begin() + nc);
      std::copy(hp.begin(), hp.begin() + nc, idx.begin());
    } else {  // binned, then the kept ids filtered in id order
      double last_p = 0;
      int32_t last_id = -1;
      const int64_t keep = nucleus_binned(nc, idx.data(), p.data(), (double)sp.top_p, w, last_p, last_id);
      if (keep < nc) {
        int64_t o = 0;
        for (int64_t c = 0; c < nc; c++) {
          const int32_t i = idx[c];
          if (p[i] > last_p || (p[i] == last_p && i <= last_id)) idx[o++] = i;
        }
        nc = o;
      }
    }
  }
  // 4. min-p: keep p_i >= min_p * max p
  if (sp.min_p > 0.f) {
    double pmax = 0;
    for (int64_t c = 0; c < nc; c++) pmax = std::max(pmax, p[idx[c]]);
    const double thr = (double)sp.min_p * pmax;
    int64_t o = 0;
    for (int64_t c = 0; c < nc; c++)
      if (p[idx[c]] >= thr) idx[o++] = idx[c];
    nc = o;
  }
  // 5. renormalise and draw: u in [0,1) from the hash, walk kept ids ascending.
  double total = 0;
  for (int64_t c = 0; c < nc; c++) total += p[idx[c]];
  const double u = (double)(sample_hash(sp.seed, step) >> 11) * (1.0 / 9007199254740992.0);
  const double target = u * total;
  double cum = 0;
  for (int64_t c = 0; c < nc; c++) {
    cum += p[idx[c]];
    if (cum > target) return idx[c];
  }
  return idx[nc - 1];
}

}  // namespace lsw

// CUDA backend vs CPU backend through the C ABI (lsw.h).  Built only when the CUDA backend is built; run by ctest.
//   - every lsw_op_* on LSW_BACKEND_CUDA against LSW_BACKEND_CPU with fresh random inputs (f32/f16/bf16, odd sizes);
//     lsw_op_sample with greedy parameters runs the decode step's greedy tail kernel (greedy_advance): vocab sizes
//     around its blocks, ties across blocks, -0 / +0, the float4 tail, against the CPU and the expected id
//   - end to end: tiny random models (lsw_model_add_random_tensor, same values on both backends) with adapters
//     (STATIC, PREGATED, LAYERWISE when the CPU engine has it, two adapters at once) in every mode: greedy tokens
//     CUDA == CPU, logits close, routes equal, prompt (one eval) == token by token (merge mode too: a merge-mode
//     prompt runs token by token; CUDA vs CPU merged weights within 1 ulp: tensor-core SGMM, LSW_CUDA_SGMM_EXACT=1
//     for exact),
//     merge counters, device sampler == CPU sampler on the same logits, stats, bench_decode, bandwidth
//   - prefill_precision: FAST prompt logits close to the CPU but less so than PRECISE; lsw_measure_matmul
//   - merge_prompt BATCHED: batched merge-mode prompts between graph-replayed decode steps, CUDA vs CPU (logits, routes,
//     merge counters), the prompt == CUDA fused prompt bit for bit, chunks of 4 (no lone last token)
//   - merge drift: thousands of expert switches in merge mode, then reset: logits bit-identical to a fresh model
// Without a usable GPU it prints "no CUDA device: skipped" and exits 77 (ctest: skipped), or 1 when LSW_REQUIRE_GPU=1.
// LSW_SANITIZER_SMALL=1: reduced sizes/iterations (compute-sanitizer runs).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "lsw.h"

static int g_pass = 0, g_fail = 0;
static bool g_small = false;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      g_pass++;                                            \
    } else {                                               \
      g_fail++;                                            \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)
#define OKC(call) CHECK((call) == LSW_OK, "%s -> %s", #call, lsw_last_error())

static std::mt19937_64 rng(0x5eed2026);
static float nz(float s = 1.f) {  // random, never zero
  float v = std::uniform_real_distribution<float>(0.05f, 1.f)(rng) * s;
  return (rng() & 1) ? v : -v;
}
static uint16_t f2h(float f) {  // round to nearest even (test values are in the normal range)
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int e = (int)((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (e <= 0) return (uint16_t)sign;
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}
static uint16_t f2b(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}
static float h2f(uint16_t h) {  // exact
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const float v = e == 0 ? std::ldexp((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((float)(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}
static float b2f(uint16_t b) {
  const uint32_t x = (uint32_t)b << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}
static size_t esz(int dt) { return dt == LSW_DTYPE_F32 ? 4 : 2; }
static const char *dname(int dt) { return dt == LSW_DTYPE_F32 ? "f32" : dt == LSW_DTYPE_F16 ? "f16" : "bf16"; }
// random weights in dtype dt (bytes), never zero
static std::vector<uint8_t> rand_w(int dt, size_t n, float s) {
  std::vector<uint8_t> b(n * esz(dt));
  for (size_t i = 0; i < n; i++) {
    const float v = nz(s);
    if (dt == LSW_DTYPE_F32) memcpy(&b[i * 4], &v, 4);
    else { uint16_t u = dt == LSW_DTYPE_F16 ? f2h(v) : f2b(v); memcpy(&b[i * 2], &u, 2); }
  }
  return b;
}
static std::vector<float> rand_f(size_t n, float s = 1.f) {
  std::vector<float> v(n);
  for (auto &x : v) x = nz(s);
  return v;
}
static double maxdiff(const float *a, const float *b, size_t n, double *ref = nullptr) {
  double mx = 0, r = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - b[i]);
    mx = d > mx || d != d ? d : mx;
    r = fmax(r, fabs((double)a[i]));
  }
  if (ref) *ref = r;
  return mx;
}
static bool close(const float *cpu, const float *gpu, size_t n, double rel, const char *what) {
  double ref;
  const double d = maxdiff(cpu, gpu, n, &ref);
  const bool ok = d <= rel * fmax(ref, 1.0);
  CHECK(ok, "%s: max |cpu - cuda| %.3g (max |cpu| %.3g, tolerance %.1g relative)", what, d, ref, rel);
  return ok;
}

// ---- ops --------------------------------------------------------------------------------------
static void test_ops() {
  printf("-- ops: CUDA vs CPU --\n");
  const int dts[3] = {LSW_DTYPE_F32, LSW_DTYPE_F16, LSW_DTYPE_BF16};
  for (int dt : dts) {
    const int shapes[][3] = {{37, 77, 1}, {64, 128, 1}, {129, 256, 3}, {100, 96, 8}, {61, 200, 17}, {130, 264, 41}};
    for (auto &sh : shapes) {
      const int rows = sh[0], cols = sh[1], n = sh[2];
      auto W = rand_w(dt, (size_t)rows * cols, 0.5f);
      auto X = rand_f((size_t)n * cols);
      std::vector<float> y0((size_t)n * rows), y1((size_t)n * rows, NAN);
      OKC(lsw_op_matmul(LSW_BACKEND_CPU, dt, rows, cols, n, W.data(), X.data(), y0.data()));
      OKC(lsw_op_matmul(LSW_BACKEND_CUDA, dt, rows, cols, n, W.data(), X.data(), y1.data()));
      char what[96];
      snprintf(what, sizeof what, "matmul %s %dx%d n=%d", dname(dt), rows, cols, n);
      close(y0.data(), y1.data(), y0.size(), n > 8 ? 2e-4 : 2e-5, what);
    }
    // sgmm: bit-identical (exact-order SIMT kernel)
    {
      const int nm = 3, rows = 45, cols = 72, rank = 8, K = 2;
      auto W0 = rand_w(dt, (size_t)nm * rows * cols, 0.5f);
      auto A = rand_w(dt, (size_t)nm * K * rank * cols, 0.3f), B = rand_w(dt, (size_t)nm * K * rows * rank, 0.3f);
      auto g = rand_f(K, 1.f);
      for (auto &v : g) v = fabsf(v);
      std::vector<uint8_t> w0(W0.size()), w1(W0.size(), 0xff);
      OKC(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, K, W0.data(), w0.data(), A.data(), B.data(), g.data()));
      OKC(lsw_op_sgmm(LSW_BACKEND_CUDA, dt, nm, rows, cols, rank, K, W0.data(), w1.data(), A.data(), B.data(), g.data()));
      CHECK(w0 == w1, "sgmm %s: CUDA result is not bit-identical to the CPU", dname(dt));
    }
    // sgmm tensor-core variants through the C ABI (LSW_CUDA_SGMM_VARIANT, ops.cu): 0 one-shot, 1 persistent and
    // 3 streaming within the bound below of the CPU's exact merge and bit-identical to each other; 2 (exact tiled)
    // bit-identical to the CPU.  Rows not a multiple of 64, cols not of 128, rank 48 / 80 (rank chunks), top-3.
    // The bound: both backends compute the same exact value v = W0 + Σ_k g_k Σ_j B A in fp32, in different orders (CPU:
    // one fmaf chain of K·rank steps with c = fl(g·B); GPU: per expert a tensor-core fp32 sum over the rank, then
    // acc = fmaf(g, tmp, acc) from acc = W0).  With S = |W0| + Σ_k |g_k| Σ_j |B||A| and u = 2^-24, the CPU result is within
    // (K·rank + 1)·u·S of v (one rounding per step, Higham's γ_n).  Tensor cores add the exact products of a block to
    // the accumulator with the significands aligned to the largest one and the shifted-out bits TRUNCATED (Fasi, Higham,
    // Mikaitis, Pranesh 2021), so each of the k+1 addends of a block step may lose up to 2u of the largest (<= the sum
    // so far): over the rank <= 2(k+1)/k·rank·u·S <= 4·rank·u·S for any block size k, + K·u·S for the gate fmafs
    // (the margin covers a final normalisation of each block).  Hence before the
    // final rounding |x_cuda - x_cpu| <= δ = (K·rank + 4·rank + 8)·u·S, and the two 16-bit results differ by at most one
    // output ulp + δ.  δ is ~0.03 ulp where the terms do not cancel; where they do (|v| << S), one ulp of the small
    // output is below the fp32 rounding of the big terms and δ takes over: "1 ulp" alone is not a valid claim there (it
    // failed for 3 of the 130x264 r80 top-2 f16 values on the H200, for every tensor-core variant alike).
    if (dt != LSW_DTYPE_F32) {
      const char *env0 = getenv("LSW_CUDA_SGMM_VARIANT");  // restored afterwards (it also steers the model tests)
      const std::string saved_env = env0 ? env0 : "";
      // rows, cols, rank, top_k; the top-1 shapes run variant 3's half-tile path (sgmm.cu s3_top1_half)
      const int shp[][4] = {{100, 136, 48, 3}, {130, 264, 80, 2}, {130, 264, 64, 1}, {100, 136, 48, 1}};
      for (auto &sh : shp) {
        const int nm = 2, rows = sh[0], cols = sh[1], rank = sh[2], K = sh[3];
        auto W0 = rand_w(dt, (size_t)nm * rows * cols, 0.5f);
        auto A = rand_w(dt, (size_t)nm * K * rank * cols, 0.3f), B = rand_w(dt, (size_t)nm * K * rows * rank, 0.3f);
        auto g = rand_f(K, 1.f);
        for (auto &v : g) v = fabsf(v);
        std::vector<uint8_t> cpu(W0.size()), v0;
        OKC(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, K, W0.data(), cpu.data(), A.data(), B.data(), g.data()));
        auto dec = [&](const std::vector<uint8_t> &b, size_t i) {
          uint16_t u;
          memcpy(&u, &b[2 * i], 2);
          return (double)(dt == LSW_DTYPE_F16 ? h2f(u) : b2f(u));
        };
        auto ulp16 = [&](double x) {  // spacing of the 16-bit format at |x| (normal range; subnormal spacing below)
          const int mant = dt == LSW_DTYPE_F16 ? 10 : 7, emin = dt == LSW_DTYPE_F16 ? -14 : -126;
          const int lg = x == 0 ? emin : std::ilogb(x), e = lg < emin ? emin : lg;
          return std::ldexp(1.0, e - mant);
        };
        // δ per element (see above): S = |W0| + Σ_k |g_k| Σ_j |B[m][k][i][j]| |A[m][k][j][c]| from the decoded inputs
        const size_t n_el = (size_t)nm * rows * cols;
        std::vector<double> delta(n_el);
        for (int m = 0; m < nm; m++)
          for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++) {
              double S = std::fabs(dec(W0, ((size_t)m * rows + i) * cols + c));
              for (int k = 0; k < K; k++) {
                double t = 0;
                for (int j = 0; j < rank; j++)
                  t += std::fabs(dec(B, (((size_t)m * K + k) * rows + i) * rank + j)) *
                       std::fabs(dec(A, (((size_t)m * K + k) * rank + j) * cols + c));
                S += std::fabs(g[k]) * t;
              }
              delta[((size_t)m * rows + i) * cols + c] = (double)(K * rank + 4 * rank + 8) * std::ldexp(S, -24);
            }
        // values of `got` beyond max(ulp(got), ulp(cpu)) + δ from the CPU (*beyond_1ulp: beyond one ulp alone)
        auto beyond = [&](const std::vector<uint8_t> &got, size_t *beyond_1ulp) {
          size_t n = 0, n1 = 0;
          for (size_t i = 0; i < n_el; i++) {
            const double a = dec(got, i), b = dec(cpu, i), u = std::fmax(ulp16(a), ulp16(b)), d = std::fabs(a - b);
            n += !(d <= u + delta[i]);
            n1 += !(d <= u);
          }
          if (beyond_1ulp) *beyond_1ulp = n1;
          return n;
        };
        {  // negative control: a merge with the last gate 0.25 off (~0.05 on typical values) must fail the bound mostly
          std::vector<float> g2 = g;
          g2[K - 1] += 0.25f;
          std::vector<uint8_t> off(W0.size());
          OKC(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, K, W0.data(), off.data(), A.data(), B.data(), g2.data()));
          const size_t nf = beyond(off, nullptr);
          CHECK(nf * 2 > n_el, "sgmm %s %dx%d r%d top%d: the CPU-vs-CUDA bound flags a merge with one gate 0.25 off (%zu of %zu "
                "values flagged, want > half)", dname(dt), rows, cols, rank, K, nf, n_el);
        }
        for (int v = 0; v <= 3; v++) {
          const char vs[2] = {(char)('0' + v), 0};
          setenv("LSW_CUDA_SGMM_VARIANT", vs, 1);
          std::vector<uint8_t> out(W0.size(), 0xff);
          OKC(lsw_op_sgmm(LSW_BACKEND_CUDA, dt, nm, rows, cols, rank, K, W0.data(), out.data(), A.data(), B.data(), g.data()));
          if (v == 2) {
            CHECK(out == cpu, "sgmm %s %dx%d r%d top%d, exact tiled kernel: not bit-identical to the CPU", dname(dt), rows, cols,
                  rank, K);
            continue;
          }
          size_t beyond1 = 0;
          const size_t far = beyond(out, &beyond1);
          CHECK(far == 0, "sgmm %s %dx%d r%d top%d, tensor-core variant %d: %zu values beyond 1 ulp + the fp32 accumulation "
                "bound from the CPU (%zu beyond 1 ulp alone)", dname(dt), rows, cols, rank, K, v, far, beyond1);
          if (v == 0) v0 = out;
          else
            CHECK(out == v0, "sgmm %s %dx%d r%d top%d: tensor-core variant %d not bit-identical to variant 0", dname(dt), rows,
                  cols, rank, K, v);
        }
      }
      if (env0) setenv("LSW_CUDA_SGMM_VARIANT", saved_env.c_str(), 1);
      else unsetenv("LSW_CUDA_SGMM_VARIANT");
    }
    // lora_fused
    {
      const int rows = 83, cols = 136, rank = 16, K = 3;
      auto W = rand_w(dt, (size_t)rows * cols, 0.5f);
      auto A = rand_w(dt, (size_t)K * rank * cols, 0.3f), B = rand_w(dt, (size_t)K * rows * rank, 0.3f);
      auto g = rand_f(K), x = rand_f(cols);
      std::vector<float> y0(rows), y1(rows, NAN);
      OKC(lsw_op_lora_fused(LSW_BACKEND_CPU, dt, rows, cols, rank, K, W.data(), A.data(), B.data(), g.data(), x.data(), y0.data()));
      OKC(lsw_op_lora_fused(LSW_BACKEND_CUDA, dt, rows, cols, rank, K, W.data(), A.data(), B.data(), g.data(), x.data(), y1.data()));
      char what[64];
      snprintf(what, sizeof what, "lora_fused %s", dname(dt));
      close(y0.data(), y1.data(), rows, 2e-5, what);
    }
    // route
    for (int rep = 0; rep < 20; rep++) {
      const int E = 3 + rep % 9, dim = 40 + 8 * rep, K = 1 + rep % 3 < E ? 1 + rep % 3 : E;
      auto R = rand_w(dt, (size_t)E * dim, 0.5f);
      auto x = rand_f(dim);
      std::vector<int32_t> e0(K), e1(K, -7);
      std::vector<float> g0(K), g1(K, NAN);
      OKC(lsw_op_route(LSW_BACKEND_CPU, dt, E, dim, K, R.data(), x.data(), e0.data(), g0.data()));
      OKC(lsw_op_route(LSW_BACKEND_CUDA, dt, E, dim, K, R.data(), x.data(), e1.data(), g1.data()));
      CHECK(e0 == e1, "route %s E=%d K=%d: experts differ", dname(dt), E, K);
      CHECK(maxdiff(g0.data(), g1.data(), K) <= 1e-6, "route %s E=%d K=%d: gates differ", dname(dt), E, K);
    }
  }
  // f32-only ops
  {
    const int n = 5, dim = 197;
    auto X = rand_f((size_t)n * dim, 2.f), w = rand_f(dim);
    std::vector<float> y0(X.size()), y1(X.size(), NAN);
    OKC(lsw_op_rmsnorm(LSW_BACKEND_CPU, n, dim, X.data(), w.data(), 1e-5f, y0.data()));
    OKC(lsw_op_rmsnorm(LSW_BACKEND_CUDA, n, dim, X.data(), w.data(), 1e-5f, y1.data()));
    close(y0.data(), y1.data(), y0.size(), 1e-5, "rmsnorm");
    const int inter = 333;
    auto GU = rand_f((size_t)n * 2 * inter, 3.f);
    std::vector<float> s0((size_t)n * inter), s1((size_t)n * inter, NAN);
    OKC(lsw_op_swiglu(LSW_BACKEND_CPU, n, inter, GU.data(), s0.data()));
    OKC(lsw_op_swiglu(LSW_BACKEND_CUDA, n, inter, GU.data(), s1.data()));
    close(s0.data(), s1.data(), s0.size(), 1e-5, "swiglu");
  }
  for (int rt = 0; rt < 3; rt++) {
    lsw_model_config c{};
    c.head_dim = 64; c.rope_theta = 10000.f; c.rope_type = rt; c.rope_factor = rt ? 4.f : 1.f;
    c.rope_low_freq_factor = 1.f; c.rope_high_freq_factor = 4.f; c.rope_original_max_position = 64;
    const int n = 7, nh = 3;
    std::vector<int32_t> pos(n);
    for (int i = 0; i < n; i++) pos[i] = 3 + 57 * i;
    auto X = rand_f((size_t)n * nh * c.head_dim);
    auto X1 = X;
    OKC(lsw_op_rope(LSW_BACKEND_CPU, &c, n, nh, pos.data(), X.data()));
    OKC(lsw_op_rope(LSW_BACKEND_CUDA, &c, n, nh, pos.data(), X1.data()));
    close(X.data(), X1.data(), X.size(), 1e-5, rt == 0 ? "rope default" : rt == 1 ? "rope linear" : "rope llama3");
  }
  {
    // every KV cache type (the same K/V bytes to both backends); hd 12 in 16 bits: CUDA's two-kernel decode path
    // 16 / 1 heads: more than 8 query heads per KV head, decode by a block per query head
    const int cases[][5] = {{1, 37, 4, 2, 64}, {1, 300, 8, 8, 128}, {6, 19, 4, 1, 32}, {9, 9, 2, 2, 96}, {1, 70, 4, 2, 12},
                            {1, 300, 16, 1, 64}};
    for (auto &cs : cases)
      for (int kt : {LSW_DTYPE_F32, LSW_DTYPE_F16, LSW_DTYPE_BF16}) {
        const int n = cs[0], nctx = cs[1], nh = cs[2], nkv = cs[3], hd = cs[4];
        auto Q = rand_f((size_t)n * nh * hd);
        auto K = rand_w(kt, (size_t)nctx * nkv * hd, 1.f), V = rand_w(kt, (size_t)nctx * nkv * hd, 1.f);
        std::vector<float> o0(Q.size()), o1(Q.size(), NAN);
        OKC(lsw_op_attention(LSW_BACKEND_CPU, kt, n, nctx, nh, nkv, hd, Q.data(), K.data(), V.data(), o0.data()));
        OKC(lsw_op_attention(LSW_BACKEND_CUDA, kt, n, nctx, nh, nkv, hd, Q.data(), K.data(), V.data(), o1.data()));
        char what[96];
        snprintf(what, sizeof what, "attention %s KV n=%d ctx=%d heads %d/%d hd %d",
                 kt == LSW_DTYPE_F32 ? "f32" : kt == LSW_DTYPE_F16 ? "f16" : "bf16", n, nctx, nh, nkv, hd);
        close(o0.data(), o1.data(), o0.size(), 2e-5, what);
      }
  }
  // sampler: greedy and with every filter, many steps.  Vocabularies from one block of the device's compact sampler
  // to its multi-block kernel (top-k <= 1,024 on a vocabulary of at least two slices of 1,024 ids), with ties at the
  // top and, in the larger ones, 300 ids sharing the 40th-largest logit so that top-k cuts through a tie that spans
  // several blocks' slices
  for (int V : {1000, 5000, 32000, 151936}) {
    if (g_small && V > 40000) continue;  // (compute-sanitizer runs)
    auto l = rand_f((size_t)V, 4.f);
    l[17] = l[901] = 9.f;  // tie at the top: lowest id
    if (V > 1000) {
      for (int i = 0; i < 39; i++) l[(size_t)(rng() % (uint64_t)V)] = 8.f + 0.01f * (float)i;
      for (int i = 0; i < 300; i++) l[(size_t)(rng() % (uint64_t)V)] = 7.5f;
    }
    int bad = 0, n = 0;
    const lsw_sampler_params ps[] = {{0.f, 0, 1.f, 0.f, 1}, {0.8f, 40, 1.f, 0.f, 7}, {1.1f, 0, 0.9f, 0.f, 9},
                                     {0.7f, 100, 0.95f, 0.05f, 3}, {1.f, 0, 1.f, 0.1f, 11}, {3.f, 60, 1.f, 0.f, 12},
                                     {2.f, 1024, 0.99f, 0.f, 13}};
    for (auto &p : ps) {
      for (uint64_t step = 0; step < (g_small ? 3u : V > 5000 ? 12u : 40u); step++) {
        int32_t t0 = -1, t1 = -2;
        OKC(lsw_op_sample(LSW_BACKEND_CPU, V, l.data(), &p, step, &t0));
        OKC(lsw_op_sample(LSW_BACKEND_CUDA, V, l.data(), &p, step, &t1));
        bad += t0 != t1;
        n++;
      }
    }
    CHECK(bad == 0, "sample, vocab %d: %d of %d draws differ between CPU and CUDA", V, bad, n);
  }
  // top-p without top-k on large vocabularies (the multi-block kernel's nucleus mode): peaked logits, a nucleus of tens
  // of ids among its 1,024 candidates; 1,500 ids tied at the top, a nucleus larger than the candidates (the general
  // path after the multi-block pass, its top-p by bins); logits on 13 levels, so that bins of thousands of ids tied at
  // one p are summed at once (lowest ids first), and all logits equal (one bin of the whole vocabulary), also under
  // top-k 5,000 and top-k 2,000
  for (int V : {5000, 32000, 151936})
    for (int kind = 0; kind < 4; kind++) {
      if (g_small && V > 40000) continue;
      auto l = rand_f((size_t)V, 2.f);
      if (kind == 3)
        l.assign((size_t)V, 0.375f);
      else if (kind == 2)
        for (auto &x : l) x = std::round(2.f * x) * 0.5f;
      else
        for (int i = 0; i < (kind ? 1500 : 40); i++) l[(size_t)(rng() % (uint64_t)V)] = kind ? 9.f : 10.f + 0.05f * (float)(i % 20);
      const lsw_sampler_params ps[] = {{0.8f, 0, 0.95f, 0.05f, 21}, {1.f, 0, 0.9f, 0.f, 22}, {0.6f, 0, 0.99f, 0.02f, 23},
                                       {1.5f, 5000, 0.97f, 0.f, 24}, {2.f, 2000, 0.9f, 0.f, 25}};
      int bad = 0, n = 0;
      for (auto &p : ps)
        for (uint64_t step = 0; step < (g_small ? 2u : 6u); step++) {
          int32_t t0 = -1, t1 = -2;
          OKC(lsw_op_sample(LSW_BACKEND_CPU, V, l.data(), &p, step, &t0));
          OKC(lsw_op_sample(LSW_BACKEND_CUDA, V, l.data(), &p, step, &t1));
          bad += t0 != t1;
          n++;
        }
      CHECK(bad == 0, "sample, top-p without top-k or with a large one, vocab %d, %s: %d of %d draws differ between CPU "
            "and CUDA", V, kind == 3 ? "all logits equal" : kind == 2 ? "logits on 13 levels" : kind ? "1,500 ids tied at the top" : "peaked",
            bad, n);
      if (kind < 2) continue;
      // steps whose draw lands at the very end of the kept ids (u > 1 - 1 / (2 V): the sampler's hash, as lsw_op_sample
      // takes it), so that one id more or less in the nucleus changes the token.  All logits equal: the token is the
      // nucleus's last id, nkeep - 1, from the running sum of p = 1 / K taken here
      auto mix = [](uint64_t z) {
        z += 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
      };
      int edge = 0, edge_bad = 0;
      for (auto &p : ps) {
        const int K = p.top_k > 0 && p.top_k < V ? p.top_k : V;
        const double pk = 1.0 / (double)K;
        double cum = 0;
        int nkeep = 0;
        while (nkeep < K) {
          cum += pk;
          nkeep++;
          if (cum >= (double)p.top_p) break;
        }
        int found = 0;
        for (uint64_t step = 0; step < 50000000u && found < (g_small ? 1 : 2); step++) {
          const double u = (double)(mix(p.seed ^ mix(step)) >> 11) * (1.0 / 9007199254740992.0);
          if (u <= 1.0 - 0.5 / (double)V) continue;
          found++;
          int32_t t0 = -1, t1 = -2;
          OKC(lsw_op_sample(LSW_BACKEND_CPU, V, l.data(), &p, step, &t0));
          OKC(lsw_op_sample(LSW_BACKEND_CUDA, V, l.data(), &p, step, &t1));
          edge++;
          if (t0 != t1 || (kind == 3 && t0 != nkeep - 1)) {
            edge_bad++;
            fprintf(stderr, "  vocab %d %s T %.1f top-k %d top-p %.2f step %llu: CPU %d, CUDA %d%s%d\n", V,
                    kind == 3 ? "all equal" : "13 levels", p.temperature, p.top_k, p.top_p, (unsigned long long)step, t0,
                    t1, kind == 3 ? ", the nucleus's last id " : "", kind == 3 ? nkeep - 1 : 0);
          }
        }
      }
      CHECK(edge_bad == 0 && edge > 0, "sample, vocab %d, %s, draws at the end of the nucleus: %d of %d differ%s", V,
            kind == 3 ? "all logits equal" : "logits on 13 levels", edge_bad, edge,
            kind == 3 ? " (between CPU and CUDA, or from the nucleus's last id)" : " between CPU and CUDA");
    }
  // greedy: the decode step's multi-block argmax (greedy_advance) against the CPU and against the expected id.  Vocab
  // sizes around its blocks (4,096 logits each) and float4 tails; the top value tied at a low id in the last block's
  // share and a higher one, -0 against +0, a maximum in the float4 tail, all logits equal
  {
    const lsw_sampler_params g = {0.f, 0, 1.f, 0.f, 1};
    for (int V : {1, 3, 7, 1000, 4097, 32000, 128259}) {
      for (int c = 0; c < 5; c++) {
        std::vector<float> l = c == 4 ? std::vector<float>((size_t)V, 0.25f) : rand_f((size_t)V, 4.f);
        int want = -1;
        if (c == 1 && V > 2) {  // tie at the top: the lower id wins wherever the two sit
          const int a = V / 3 * 2, b = V - 1;
          l[a] = l[b] = 11.f;
          want = a;
        } else if (c == 2) {  // the maximum in the last (possibly partial) float4
          l[(size_t)V - 1] = 12.f;
          want = V - 1;
        } else if (c == 3 && V > 1) {  // every logit negative but two zeros of opposite sign: -0 == +0, lower id
          for (auto &x : l) x = -fabsf(x) - 1.f;
          l[(size_t)V / 2] = -0.f;
          l[(size_t)V - 1] = 0.f;
          want = V / 2;
        } else if (c == 4) {
          want = 0;
        }
        int32_t t0 = -1, t1 = -2;
        OKC(lsw_op_sample(LSW_BACKEND_CPU, V, l.data(), &g, 0, &t0));
        OKC(lsw_op_sample(LSW_BACKEND_CUDA, V, l.data(), &g, 0, &t1));
        CHECK(t0 == t1 && (want < 0 || t1 == want), "greedy sample, vocab %d case %d: CPU %d, CUDA %d, expected %d", V,
              c, t0, t1, want);
      }
    }
  }
  // non-finite logits (NaN, +inf, -inf) at a random id, at the last id and at the first id of the float4 tail, in
  // vocabularies of one and of several greedy_advance blocks; greedy and sampling: both backends refuse them with
  // LSW_E_NUMERIC and the same message, and leave the token alone
  {
    const float nonfinite[3] = {NAN, INFINITY, -INFINITY};
    const lsw_sampler_params nps[2] = {{0.f, 0, 1.f, 0.f, 1}, {0.8f, 40, 0.95f, 0.05f, 2}};
    int bad = 0, n = 0;
    for (int V : {7, 1000, 32003})
      for (int b = 0; b < 3; b++)
        for (int at : {(int)(rng() % (uint64_t)V), V - 1, V % 4 ? V & ~3 : 0})
          for (const auto &np : nps) {
            auto l = rand_f((size_t)V, 4.f);
            l[at] = nonfinite[b];
            int32_t t0 = -7, t1 = -7;
            const lsw_status s0 = lsw_op_sample(LSW_BACKEND_CPU, V, l.data(), &np, 0, &t0);
            const std::string m0 = lsw_last_error();
            const lsw_status s1 = lsw_op_sample(LSW_BACKEND_CUDA, V, l.data(), &np, 0, &t1);
            const std::string m1 = lsw_last_error();
            n++;
            if (s0 != LSW_E_NUMERIC || s1 != LSW_E_NUMERIC || t0 != -7 || t1 != -7 || m0 != m1) {
              bad++;
              fprintf(stderr, "  non-finite logit %g at %d of %d (T %g): CPU %d (%s), CUDA %d (%s), tokens %d %d\n",
                      l[at], at, V, np.temperature, (int)s0, m0.c_str(), (int)s1, m1.c_str(), t0, t1);
            }
          }
    CHECK(bad == 0, "non-finite logits: %d of %d samples not refused alike by both backends", bad, n);
  }
}

// ---- models -----------------------------------------------------------------------------------
struct AdSpec {
  int kind, E, K, router_input, ffn;
  std::vector<int> mods;  // lsw_module targets
  int rank;
};
struct ModelSpec {
  int dtype;
  int nh, nkv;
  int max_ctx;
  std::vector<AdSpec> ads;
  int nan_norm = -1;  // >= 0: the final norm weight is 1 everywhere but NaN at this index (from a file), else random
  int vocab = 301;
};

static uint64_t name_seed(const std::string &s, uint64_t salt) {
  uint64_t h = 1469598103934665603ull ^ salt;
  for (char c : s) h = (h ^ (uint8_t)c) * 1099511628211ull;
  return h;
}

static int g_precision = LSW_PRECISION_PRECISE;  // prefill_precision of the models build() makes
static int g_merge_prompt = LSW_MERGE_PROMPT_TOKENWISE;  // merge_prompt of the models build() makes

static lsw_model_config base_cfg(const ModelSpec &ms, int backend) {
  lsw_model_config c{};
  c.prefill_precision = g_precision;
  c.merge_prompt = g_merge_prompt;
  c.vocab_size = ms.vocab; c.hidden_size = 128; c.intermediate_size = 200; c.num_layers = 3;
  c.num_heads = ms.nh; c.num_kv_heads = ms.nkv; c.head_dim = 32; c.max_context = ms.max_ctx;
  c.rms_norm_eps = 1e-5f; c.rope_theta = 10000.f; c.rope_type = LSW_ROPE_DEFAULT; c.rope_factor = 1.f;
  c.rope_low_freq_factor = 1.f; c.rope_high_freq_factor = 4.f; c.rope_original_max_position = 64;
  c.backend = backend; c.n_threads = 2;
  return c;
}

// Tensors that cannot be random (a scaling, a NaN): the values go to a temporary file that the model maps (the engine
// keeps its mapping, so the file is removed at once); *fid is the file id for lsw_model_add_tensor.
static lsw_status map_floats(lsw_model *m, const std::vector<float> &vals, int32_t *fid) {
  static int n_files = 0;
  char path[96];
  snprintf(path, sizeof path, "/tmp/lsw_test_cuda_%d_%d.bin", (int)getpid(), n_files++);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(vals.data(), 4, vals.size(), f) != vals.size()) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(2);
  }
  fclose(f);
  const lsw_status st = lsw_model_map_file(m, path, 0, fid);
  remove(path);
  return st;
}

// Returns the status of the first failing call (message in lsw_last_error()).
static lsw_status build(const ModelSpec &ms, int backend, lsw_model **out) {
  const lsw_model_config c = base_cfg(ms, backend);
  lsw_model *m = nullptr;
  lsw_status st = lsw_model_create(&c, &m);
  if (st) return st;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = (int64_t)c.num_heads * c.head_dim, kvd = (int64_t)c.num_kv_heads * c.head_dim;
  auto add = [&](const std::string &name, int dt, std::vector<int64_t> shape, float scale) {
    if (st) return;
    st = lsw_model_add_random_tensor(m, name.c_str(), dt, (int)shape.size(), shape.data(), name_seed(name, 1), scale);
  };
  add("tok_embeddings.weight", ms.dtype, {V, H}, 1.f);
  for (int L = 0; L < c.num_layers; L++) {
    const std::string p = "layers." + std::to_string(L) + ".";
    add(p + "attn_norm.weight", LSW_DTYPE_F32, {H}, 0.2f);
    add(p + "attn.wqkv.weight", ms.dtype, {qd + 2 * kvd, H}, 0.15f);
    add(p + "attn.wo.weight", ms.dtype, {H, qd}, 0.1f);
    add(p + "ffn_norm.weight", LSW_DTYPE_F32, {H}, 0.2f);
    add(p + "ffn.w_gate_up.weight", ms.dtype, {2 * I, H}, 0.12f);
    add(p + "ffn.w_down.weight", ms.dtype, {H, I}, 0.08f);
  }
  if (ms.nan_norm < 0) add("norm.weight", LSW_DTYPE_F32, {H}, 0.2f);
  add("lm_head.weight", ms.dtype, {V, H}, 0.3f);
  const int64_t in_[LSW_MOD_COUNT] = {H, H, H, qd, H, H, I};
  const int64_t out_[LSW_MOD_COUNT] = {qd, kvd, kvd, H, I, I, H};
  // every adapted module's LoRA scaling (lora_scale, [1] F32, read by the engine from a file: a scaling cannot be a
  // random tensor), a function of its name in [0.5, 1.5), the same on both backends
  std::vector<std::string> sc_names;
  std::vector<float> sc_vals;
  for (size_t a = 0; a < ms.ads.size() && !st; a++) {
    const AdSpec &s = ms.ads[a];
    lsw_adapter_desc d{s.kind, s.E, s.K, s.router_input, s.ffn};
    int32_t id = -1;
    st = lsw_model_add_adapter(m, &d, &id);
    if (st) break;
    const std::string p = "adapters." + std::to_string(id) + ".";
    if (s.kind == LSW_ROUTER_PREGATED) add(p + "router.weight", ms.dtype, {s.E, in_[s.router_input]}, 0.6f);
    for (int L = 0; L < c.num_layers; L++) {
      if (s.kind == LSW_ROUTER_LAYERWISE) {
        int first = -1;
        for (int mod : s.mods) first = first < 0 || mod < first ? mod : first;
        const int64_t rin = s.ffn ? H : in_[first];
        add(p + "layers." + std::to_string(L) + ".router.weight", ms.dtype, {s.E, rin}, 0.6f);
      }
      for (int mod : s.mods) {
        static const char *MN[LSW_MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
        const std::string q = p + "layers." + std::to_string(L) + "." + MN[mod] + ".";
        add(q + "lora_A", ms.dtype, {s.E, s.rank, in_[mod]}, 0.25f);
        add(q + "lora_B", ms.dtype, {s.E, out_[mod], s.rank}, 0.25f);
        sc_names.push_back(q + "lora_scale");
        sc_vals.push_back(0.5f + (float)(name_seed(q + "lora_scale", 7) % 1000) / 1000.f);
      }
    }
  }
  int32_t fid = -1;
  if (!st && !sc_vals.empty() && !(st = map_floats(m, sc_vals, &fid))) {
    const int64_t one = 1;
    for (size_t i = 0; i < sc_names.size() && !st; i++)
      st = lsw_model_add_tensor(m, sc_names[i].c_str(), LSW_DTYPE_F32, 1, &one, fid, 4 * i);
  }
  if (!st && ms.nan_norm >= 0) {  // every logit NaN (each sums lm_head . a NaN element)
    std::vector<float> w((size_t)H, 1.f);
    w[(size_t)ms.nan_norm % H] = NAN;
    if (!(st = map_floats(m, w, &fid))) st = lsw_model_add_tensor(m, "norm.weight", LSW_DTYPE_F32, 1, &H, fid, 0);
  }
  if (!st) st = lsw_model_finalize(m);
  if (st) {
    lsw_model_free(m);
    return st;
  }
  *out = m;
  return LSW_OK;
}

static const char *MODE_NAMES[4] = {"merge", "unfused", "fused", "base"};

static void routes_equal(lsw_model *a, lsw_model *b, int nad, int rows_of[], int K_of[], int npos, const char *what) {
  for (int id = 0; id < nad; id++) {
    const size_t cnt = (size_t)npos * rows_of[id] * K_of[id];
    std::vector<int32_t> e0(cnt), e1(cnt, -9);
    std::vector<float> g0(cnt), g1(cnt, NAN);
    OKC(lsw_model_get_routes(a, id, 0, npos, e0.data(), g0.data()));
    OKC(lsw_model_get_routes(b, id, 0, npos, e1.data(), g1.data()));
    size_t diff = 0;
    for (size_t i = 0; i < cnt; i++) diff += e0[i] != e1[i];
    CHECK(diff == 0, "%s: adapter %d: %zu of %zu routed experts differ", what, id, diff, cnt);
    // gates are softmax outputs of router logits that the two backends sum in different orders (and, on the GPU,
    // in a GEMV order the autotuner picks per run): 1e-4 absolute, far below what a wrong expert or gate formula
    // moves (~0.1); 2e-5 failed once on the H200 (layer-wise merge, 2026-12-01 session 5) after passing before
    const double gd = maxdiff(g0.data(), g1.data(), cnt);
    CHECK(gd <= 1e-4, "%s: adapter %d: gates differ (max %.3g)", what, id, gd);
  }
}

// CPU vs CUDA in every mode for one model spec
static void test_model(const char *name, const ModelSpec &ms) {
  printf("-- model %s (%s) --\n", name, dname(ms.dtype));
  lsw_model *m[2] = {nullptr, nullptr};
  lsw_status s0 = build(ms, LSW_BACKEND_CPU, &m[0]);
  if (s0 == LSW_E_UNSUPPORTED) {
    printf("   CPU engine: %s -- not testable on either backend yet\n", lsw_last_error());
    return;
  }
  CHECK(s0 == LSW_OK, "%s: CPU model: %s", name, lsw_last_error());
  if (s0) return;
  lsw_status s1 = build(ms, LSW_BACKEND_CUDA, &m[1]);
  CHECK(s1 == LSW_OK, "%s: CUDA model: %s", name, lsw_last_error());
  if (s1) { lsw_model_free(m[0]); return; }
  const int V = ms.vocab, NL = 3;
  const int nad = (int)ms.ads.size();
  int rows_of[8], K_of[8];
  for (int i = 0; i < nad; i++) { rows_of[i] = ms.ads[i].kind == LSW_ROUTER_LAYERWISE ? NL : 1; K_of[i] = ms.ads[i].K; }
  const double tol = ms.dtype == LSW_DTYPE_F32 ? 1e-4 : 3e-4;
  // merge mode: the CUDA model merges with the tensor-core SGMM where it can (model.cu), within 1 ulp of the CPU's
  // exact SGMM per merged weight; LSW_CUDA_SGMM_EXACT=1 runs the exact kernel (bit-identical weights: tight again)
  const char *ex_ = getenv("LSW_CUDA_SGMM_EXACT");
  const bool exact_sgmm = ex_ && *ex_ && strcmp(ex_, "0");
  const double mtol = exact_sgmm || ms.dtype == LSW_DTYPE_F32 ? tol : 4e-3;
  std::vector<int32_t> prompt(13);
  for (size_t i = 0; i < prompt.size(); i++) prompt[i] = (int32_t)((i * 89 + 7) % V);
  const int steps = g_small ? 6 : 24;
  for (int mode = 0; mode < 4; mode++) {
    char what[128];
    lsw_status sm[2];
    for (int b = 0; b < 2; b++) {
      sm[b] = lsw_model_set_mode(m[b], mode);
      if (!sm[b]) sm[b] = lsw_model_reset(m[b]);
    }
    snprintf(what, sizeof what, "%s %s", name, MODE_NAMES[mode]);
    CHECK(sm[0] == sm[1], "%s: set_mode status CPU %d, CUDA %d (%s)", what, sm[0], sm[1], lsw_last_error());
    if (sm[0] || sm[1]) { printf("   %-9s refused (both backends)\n", MODE_NAMES[mode]); continue; }
    // prompt with all logits, then greedy steps
    std::vector<float> l0((size_t)prompt.size() * V), l1((size_t)prompt.size() * V, NAN);
    lsw_status e0 = lsw_model_eval(m[0], prompt.data(), (int)prompt.size(), l0.data(), 1);
    lsw_status e1 = lsw_model_eval(m[1], prompt.data(), (int)prompt.size(), l1.data(), 1);
    CHECK(e0 == e1, "%s: eval status CPU %d, CUDA %d (%s)", what, e0, e1, lsw_last_error());
    if (e0 || e1) continue;
    char w2[256];
    snprintf(w2, sizeof w2, "%s: prompt logits (13 positions)", what);
    // merge mode: the prompt runs token by token through the merged weights (within 1 ulp between backends)
    const double dtol = mode == LSW_MODE_MERGE ? mtol : tol;
    close(l0.data(), l1.data(), l0.size(), dtol, w2);
    int mism = 0;
    double worst = 0;
    int32_t tok[2];
    const lsw_sampler_params greedy{0.f, 0, 1.f, 0.f, 0};
    for (int b = 0; b < 2; b++) {
      OKC(lsw_model_set_sampler(m[b], &greedy));
      OKC(lsw_model_reset(m[b]));
      OKC(lsw_model_prefill(m[b], prompt.data(), (int)prompt.size(), &tok[b]));
    }
    std::vector<float> a(V), c(V);
    // decode steps (and the prompt's pick): merge mode within mtol (merged weights within 1 ulp); a different greedy
    // pick counts as a mismatch unless the CPU's logits of the two picks are within that tolerance (a near tie)
    int ties = 0;
    if (tok[0] != tok[1]) {
      lsw_model_get_logits(m[0], a.data());
      lsw_model_get_logits(m[1], c.data());
      double ref;
      maxdiff(a.data(), c.data(), V, &ref);
      if (mode == LSW_MODE_MERGE && fabs((double)a[tok[0]] - a[tok[1]]) <= dtol * fmax(ref, 1.0)) ties++;
      else mism++;
    }
    for (int s = 0; s < steps; s++) {
      const int32_t in = tok[0];
      lsw_status r0 = lsw_model_step(m[0], in, &tok[0]), r1 = lsw_model_step(m[1], in, &tok[1]);
      CHECK(!r0 && !r1, "%s: step %d: %s", what, s, lsw_last_error());
      if (r0 || r1) break;
      lsw_model_get_logits(m[0], a.data());
      lsw_model_get_logits(m[1], c.data());
      double ref;
      const double d = maxdiff(a.data(), c.data(), V, &ref);
      worst = fmax(worst, d / fmax(ref, 1.0));
      if (tok[0] != tok[1]) {
        if (fabs((double)a[tok[0]] - a[tok[1]]) <= dtol * fmax(ref, 1.0)) ties++;
        else mism++;
      }
    }
    CHECK(mism == 0 && worst <= dtol, "%s: greedy decode %d steps: %d token mismatches, worst relative logit diff %.3g",
          what, steps, mism, worst);
    printf("   %-9s greedy %d steps: %d mismatches (%d near ties), worst rel logit diff %.2g\n", MODE_NAMES[mode], steps,
           mism, ties, worst);
    const int npos = (int)prompt.size() + steps;
    if (nad) routes_equal(m[0], m[1], nad, rows_of, K_of, npos, what);
    // stats
    lsw_model_stats st{};
    OKC(lsw_model_get_stats(m[1], &st));
    CHECK(st.graph_captured == 1 && st.launches_per_token > 0 && st.device_bytes_peak > 0,
          "%s: CUDA stats: graph_captured %d, launches %d, device bytes %llu", what, st.graph_captured,
          st.launches_per_token, (unsigned long long)st.device_bytes_peak);
    lsw_model_stats sc{};
    OKC(lsw_model_get_stats(m[0], &sc));
    CHECK(sc.weight_bytes == st.weight_bytes && sc.adapter_bytes == st.adapter_bytes,
          "%s: weight/adapter bytes per token differ between backends", what);
    if (mode == LSW_MODE_MERGE && nad)
      CHECK(st.merge_steps == sc.merge_steps && st.merge_skipped == sc.merge_skipped,
            "%s: merge steps CPU %lld/%lld skipped, CUDA %lld/%lld", what, (long long)sc.merge_steps,
            (long long)sc.merge_skipped, (long long)st.merge_steps, (long long)st.merge_skipped);
    printf("   %-9s CUDA graph nodes per token %d\n", MODE_NAMES[mode], st.launches_per_token);
    // prompt in one eval vs token by token: CUDA prompt == CUDA token by token (same routes, logits within tol), in
    // every mode.  Merge mode (docs/FORMAT.md): a prompt runs token by token through the merged weights, so the two
    // are the same computation; both are also checked against the CPU's (merged weights within 1 ulp: mtol).
    {
      const bool mg = mode == LSW_MODE_MERGE && nad;
      const size_t P = prompt.size();
      std::vector<float> one[2], seq[2];
      std::vector<int32_t> re1[2], re2[2];
      std::vector<float> rg1[2], rg2[2];
      for (int b = mg ? 0 : 1; b < 2; b++) {
        one[b].assign(V, NAN);
        seq[b].assign(V, NAN);
        re1[b].assign(P * 64, -9); re2[b].assign(P * 64, -9);
        rg1[b].assign(P * 64, 0.f); rg2[b].assign(P * 64, 0.f);
        OKC(lsw_model_reset(m[b]));
        OKC(lsw_model_eval(m[b], prompt.data(), (int)P, one[b].data(), 0));
        for (int id = 0; id < nad; id++)
          OKC(lsw_model_get_routes(m[b], id, 0, (int)P, re1[b].data() + id * 8 * P, rg1[b].data() + id * 8 * P));
        OKC(lsw_model_reset(m[b]));
        for (size_t i = 0; i < P; i++) OKC(lsw_model_eval(m[b], &prompt[i], 1, seq[b].data(), 0));
        for (int id = 0; id < nad; id++)
          OKC(lsw_model_get_routes(m[b], id, 0, (int)P, re2[b].data() + id * 8 * P, rg2[b].data() + id * 8 * P));
      }
      snprintf(w2, sizeof w2, "%s: CUDA prompt == token by token (last logits)", what);
      close(one[1].data(), seq[1].data(), V, tol, w2);
      CHECK(re1[1] == re2[1] && maxdiff(rg1[1].data(), rg2[1].data(), rg1[1].size()) <= 2e-5,
            "%s: CUDA prompt routes != token-by-token routes", what);
      if (mg) {
        snprintf(w2, sizeof w2, "%s: CPU prompt == token by token (last logits)", what);
        close(one[0].data(), seq[0].data(), V, tol, w2);
        CHECK(re1[0] == re2[0], "%s: CPU prompt routes != token-by-token routes", what);
        snprintf(w2, sizeof w2, "%s: prompt (merged weights, last logits) CUDA == CPU", what);
        close(one[0].data(), one[1].data(), V, mtol, w2);
        snprintf(w2, sizeof w2, "%s: token by token (merged weights, last logits) CUDA == CPU", what);
        close(seq[0].data(), seq[1].data(), V, mtol, w2);
        CHECK(re1[0] == re1[1] && maxdiff(rg1[0].data(), rg1[1].data(), rg1[0].size()) <= 2e-5,
              "%s: prompt routes CUDA != CPU", what);
        CHECK(re2[0] == re2[1] && maxdiff(rg2[0].data(), rg2[1].data(), rg2[0].size()) <= 2e-5,
              "%s: token-by-token routes CUDA != CPU", what);
      }
    }
    // device sampler inside the decode graph == CPU sampler on the same logits
    {
      const lsw_sampler_params sp{0.9f, 50, 0.95f, 0.02f, 1234};
      OKC(lsw_model_set_sampler(m[1], &sp));
      OKC(lsw_model_reset(m[1]));
      int32_t t = 0;
      OKC(lsw_model_prefill(m[1], prompt.data(), (int)prompt.size(), &t));
      int bad = 0;
      for (int s = 0; s < 8; s++) {
        int32_t next = -1, ref = -2;
        if (lsw_model_step(m[1], t, &next)) { CHECK(false, "%s: sampled step: %s", what, lsw_last_error()); break; }
        lsw_model_get_logits(m[1], c.data());
        OKC(lsw_op_sample(LSW_BACKEND_CPU, V, c.data(), &sp, (uint64_t)s + 1, &ref));
        bad += next != ref;
        t = next;
      }
      CHECK(bad == 0, "%s: device sampler differs from the CPU sampler on the same logits in %d of 8 steps", what, bad);
      OKC(lsw_model_set_sampler(m[1], &greedy));
    }
  }
  // bench_decode on CUDA
  {
    if (lsw_model_set_mode(m[1], nad ? LSW_MODE_MERGE : LSW_MODE_BASE))  // refused: MixLoRA top_k > 1
      OKC(lsw_model_set_mode(m[1], LSW_MODE_FUSED));
    OKC(lsw_model_reset(m[1]));
    const int n = 16;
    std::vector<double> ms_(n, -1);
    lsw_status st = lsw_model_bench_decode(m[1], 5, n, ms_.data());
    CHECK(st == LSW_OK, "%s: bench_decode: %s", name, lsw_last_error());
    bool pos = true;
    for (double v : ms_) pos = pos && v > 0 && v < 1e4;
    CHECK(pos && lsw_model_n_past(m[1]) == n, "%s: bench_decode times / n_past (%d)", name, lsw_model_n_past(m[1]));
    // bench_decode_tokens (ABI 6): both backends append the same stream, whatever their greedy picks; the logits after
    // it agree as the greedy steps' do, and so do the merge counters (a new token every step: a merge every step)
    int mode = -1;
    for (int md : {LSW_MODE_MERGE, LSW_MODE_FUSED})
      if (mode < 0 && lsw_model_set_mode(m[0], md) == LSW_OK && lsw_model_set_mode(m[1], md) == LSW_OK) mode = md;
    if (mode >= 0) {
      OKC(lsw_model_reset(m[0]));
      OKC(lsw_model_reset(m[1]));
      std::vector<int32_t> stream(n);
      for (int i = 0; i < n; i++) stream[i] = (int32_t)((i * 131 + 17) % V);
      lsw_model_stats a0{}, a1{}, b0{}, b1{};
      OKC(lsw_model_get_stats(m[0], &a0));
      OKC(lsw_model_get_stats(m[1], &a1));
      std::vector<double> t0(n, -1), t1(n, -1);
      const lsw_status r0 = lsw_model_bench_decode_tokens(m[0], stream.data(), n, t0.data());
      const lsw_status r1 = lsw_model_bench_decode_tokens(m[1], stream.data(), n, t1.data());
      CHECK(r0 == LSW_OK && r1 == LSW_OK, "%s: bench_decode_tokens CPU %d, CUDA %d: %s", name, r0, r1, lsw_last_error());
      if (r0 == LSW_OK && r1 == LSW_OK) {
        CHECK(lsw_model_n_past(m[0]) == n && lsw_model_n_past(m[1]) == n, "%s: bench_decode_tokens n_past %d / %d",
              name, lsw_model_n_past(m[0]), lsw_model_n_past(m[1]));
        std::vector<float> la(V), lb(V);
        lsw_model_get_logits(m[0], la.data());
        lsw_model_get_logits(m[1], lb.data());
        char w3[160];
        snprintf(w3, sizeof w3, "%s %s: logits after bench_decode_tokens", name, MODE_NAMES[mode]);
        close(la.data(), lb.data(), (size_t)V, mode == LSW_MODE_MERGE ? mtol : tol, w3);
        OKC(lsw_model_get_stats(m[0], &b0));
        OKC(lsw_model_get_stats(m[1], &b1));
        if (mode == LSW_MODE_MERGE)
          CHECK(b0.merge_steps - a0.merge_steps == b1.merge_steps - a1.merge_steps &&
                    b1.merge_skipped - a1.merge_skipped == b0.merge_skipped - a0.merge_skipped,
                "%s: bench_decode_tokens merges CPU %lld (%lld skipped), CUDA %lld (%lld skipped)", name,
                (long long)(b0.merge_steps - a0.merge_steps), (long long)(b0.merge_skipped - a0.merge_skipped),
                (long long)(b1.merge_steps - a1.merge_steps), (long long)(b1.merge_skipped - a1.merge_skipped));
      }
    }
  }
  lsw_model_free(m[0]);
  lsw_model_free(m[1]);
}

// The decode graph's sampler where the device samples in several blocks (sample_mb_kernel: a vocabulary of 6,000 ids
// in 5 slices; top-k 40, 300 and 1,000, and top-p alone in nucleus mode, whose nucleus on this model's flat logits is
// larger than its 1,024 candidates, so the general path runs after it), greedy and one-block settings in between (the
// graph is captured again for each): every step's token equals the CPU sampler's on that step's logits, in fused and
// merge mode
static void test_sampler_vocab() {
  ModelSpec ms{LSW_DTYPE_F16, 4, 2, 64, {{LSW_ROUTER_PREGATED, 4, 2, LSW_MOD_Q, 0, {LSW_MOD_Q, LSW_MOD_V}, 16}}};
  ms.vocab = 6000;
  const int V = ms.vocab, steps = 6;
  lsw_model *m = nullptr;
  if (build(ms, LSW_BACKEND_CUDA, &m)) { CHECK(false, "sampler, vocab %d: CUDA build: %s", V, lsw_last_error()); return; }
  const lsw_sampler_params sps[] = {{0.9f, 40, 0.95f, 0.05f, 1234}, {0.f, 0, 1.f, 0.f, 1}, {1.3f, 1000, 0.99f, 0.f, 77},
                                    {0.8f, 0, 1.f, 0.1f, 5}, {2.5f, 300, 1.f, 0.f, 9}, {0.7f, 0, 0.9f, 0.f, 31}};
  const int32_t toks[5] = {3, 1414, 5926, 535, 8};
  std::vector<float> lg((size_t)V);
  for (int mode : {LSW_MODE_FUSED, LSW_MODE_MERGE}) {
    OKC(lsw_model_set_mode(m, mode));
    int bad = 0, n = 0;
    for (const auto &sp : sps) {
      OKC(lsw_model_set_sampler(m, &sp));
      OKC(lsw_model_reset(m));
      int32_t t = 0;
      OKC(lsw_model_prefill(m, toks, 5, &t));
      for (int s = 0; s < steps; s++) {
        int32_t next = -1, ref = -2;
        if (lsw_model_step(m, t, &next)) { CHECK(false, "sampler, vocab %d: step: %s", V, lsw_last_error()); break; }
        OKC(lsw_model_get_logits(m, lg.data()));
        OKC(lsw_op_sample(LSW_BACKEND_CPU, V, lg.data(), &sp, (uint64_t)s + 1, &ref));
        bad += next != ref;
        n++;
        t = next;
      }
    }
    const int want = (int)(sizeof sps / sizeof sps[0]) * steps;
    CHECK(bad == 0 && n == want, "sampler in the decode graph, vocab %d (%s): %d of %d steps differ from the CPU sampler "
          "(%d of %d ran)", V, MODE_NAMES[mode], bad, n, n, want);
  }
  lsw_model_free(m);
}

// merge mode: many switches, then reset -> the backbone is bit-identical to the pristine one.  rank 8: the exact-order
// SGMM; rank 16: the tensor-core SGMM (model.cu's default where it applies)
// A model whose logits are all NaN (a NaN in the final norm weight), on both backends and through every CUDA sampling
// path: the decode graph with the greedy tail kernel or with the sampler kernel, the sampler kernel without the greedy
// tail (LSW_CUDA_GREEDY_TAIL=0) and eager steps (LSW_CUDA_GRAPH=0).  prefill, step and decode fail with LSW_E_NUMERIC
// and the CPU's message; the tokens are appended all the same; eval returns the NaN logits.
static void test_nonfinite() {
  ModelSpec ms{LSW_DTYPE_F16, 4, 2, 32, {{LSW_ROUTER_PREGATED, 4, 2, LSW_MOD_Q, 0, {LSW_MOD_Q, LSW_MOD_V}, 8}}};
  ms.nan_norm = (int)(rng() % 128);
  const char *envs[3][2] = {{nullptr, nullptr}, {"LSW_CUDA_GREEDY_TAIL", "0"}, {"LSW_CUDA_GRAPH", "0"}};
  lsw_model *cpu = nullptr;
  if (build(ms, LSW_BACKEND_CPU, &cpu)) { CHECK(false, "non-finite: CPU build: %s", lsw_last_error()); return; }
  const lsw_sampler_params sps[2] = {{0.f, 0, 1.f, 0.f, 1}, {0.9f, 0, 0.95f, 0.f, 5}};
  const int32_t toks[4] = {3, 14, 15, 92};
  for (auto &env : envs) {
    if (env[0]) setenv(env[0], env[1], 1);
    lsw_model *gpu = nullptr;
    const lsw_status bs = build(ms, LSW_BACKEND_CUDA, &gpu);
    if (env[0]) unsetenv(env[0]);
    if (bs) { CHECK(false, "non-finite: CUDA build (%s): %s", env[0] ? env[0] : "default", lsw_last_error()); continue; }
    for (int mode : {LSW_MODE_FUSED, LSW_MODE_MERGE})
      for (const auto &sp : sps) {
        char what[128];
        snprintf(what, sizeof what, "non-finite logits (%s%s%s, %s, T %g)", env[0] ? env[0] : "default",
                 env[0] ? "=" : "", env[0] ? env[1] : "", MODE_NAMES[mode], sp.temperature);
        std::string msg[2][3];
        lsw_status sts[2][3];
        int32_t outs[2][3], n_out[2] = {-1, -1}, n_past[2][3];
        lsw_model *ms2[2] = {cpu, gpu};
        for (int b = 0; b < 2; b++) {
          lsw_model *m = ms2[b];
          OKC(lsw_model_set_mode(m, mode));
          OKC(lsw_model_set_sampler(m, &sp));
          OKC(lsw_model_reset(m));
          outs[b][0] = outs[b][1] = outs[b][2] = -7;
          sts[b][0] = lsw_model_prefill(m, toks, 4, &outs[b][0]);
          msg[b][0] = lsw_last_error();
          n_past[b][0] = lsw_model_n_past(m);
          for (int i = 0; i < 3; i++) {  // several steps: the graph is captured, then replayed
            sts[b][1] = lsw_model_step(m, 5 + i, &outs[b][1]);
            if (i == 0) msg[b][1] = lsw_last_error();
          }
          n_past[b][1] = lsw_model_n_past(m);
          sts[b][2] = lsw_model_decode(m, 9, 3, nullptr, 0, &outs[b][2], &n_out[b]);
          msg[b][2] = lsw_last_error();
          n_past[b][2] = lsw_model_n_past(m);
        }
        for (int c = 0; c < 3; c++)
          CHECK(sts[0][c] == LSW_E_NUMERIC && sts[1][c] == LSW_E_NUMERIC && outs[0][c] == -7 && outs[1][c] == -7 &&
                    msg[0][c] == msg[1][c] && n_past[0][c] == n_past[1][c] && msg[1][c].find("not finite") != std::string::npos,
                "%s, call %d: CPU %d (%s), CUDA %d (%s), outputs %d %d, n_past %d %d", what, c, (int)sts[0][c],
                msg[0][c].c_str(), (int)sts[1][c], msg[1][c].c_str(), outs[0][c], outs[1][c], n_past[0][c], n_past[1][c]);
        CHECK(n_past[1][0] == 4 && n_past[1][1] == 7 && n_past[1][2] == 8 && n_out[0] == 0 && n_out[1] == 0,
              "%s: n_past %d / %d / %d, decode's n_out %d %d", what, n_past[1][0], n_past[1][1], n_past[1][2], n_out[0],
              n_out[1]);
      }
    // eval is not sampling: the NaN logits come back
    std::vector<float> lg((size_t)ms.vocab);
    OKC(lsw_model_reset(gpu));
    OKC(lsw_model_eval(gpu, toks, 4, lg.data(), 0));
    int nan = 0;
    for (float x : lg) nan += std::isnan(x);
    CHECK(nan == ms.vocab, "non-finite (%s): eval gave %d of %d NaN logits", env[0] ? env[0] : "default", nan, ms.vocab);
    lsw_model_free(gpu);
  }
  lsw_model_free(cpu);
}

static void test_drift(int rank) {
  const int N = g_small ? 300 : 10000;
  printf("-- merge drift: %d switches (rank %d) --\n", N, rank);
  ModelSpec ms{LSW_DTYPE_BF16, 4, 2, N + 64, {{LSW_ROUTER_PREGATED, 8, 2, LSW_MOD_Q, 0, {LSW_MOD_Q, LSW_MOD_V, LSW_MOD_DOWN}, rank}}};
  lsw_model *a = nullptr, *b = nullptr;
  if (build(ms, LSW_BACKEND_CUDA, &a) || build(ms, LSW_BACKEND_CUDA, &b)) {
    CHECK(false, "drift: model: %s", lsw_last_error());
    if (a) lsw_model_free(a);
    return;
  }
  OKC(lsw_model_set_mode(a, LSW_MODE_MERGE));
  OKC(lsw_model_set_mode(b, LSW_MODE_MERGE));
  int32_t t = 1;
  for (int i = 0; i < N; i++) {  // tokens cycle through the vocabulary: the pre-gated experts switch constantly
    int32_t next;
    if (lsw_model_step(a, (int32_t)((i * 37 + 11) % ms.vocab), &next)) { CHECK(false, "drift step %d: %s", i, lsw_last_error()); break; }
    t = next;
  }
  (void)t;
  lsw_model_stats st{};
  OKC(lsw_model_get_stats(a, &st));
  CHECK(st.merge_steps + st.merge_skipped == N && st.merge_steps > N / 2,
        "drift: %lld merges + %lld skipped for %d steps", (long long)st.merge_steps, (long long)st.merge_skipped, N);
  OKC(lsw_model_reset(a));
  // after reset: merge-mode and base-mode logits bit-identical to a model that never merged
  for (int mode : {LSW_MODE_BASE, LSW_MODE_MERGE}) {
    OKC(lsw_model_set_mode(a, mode));
    OKC(lsw_model_set_mode(b, mode));
    OKC(lsw_model_reset(a));
    OKC(lsw_model_reset(b));
    std::vector<float> la((size_t)ms.vocab), lb((size_t)ms.vocab);
    int same = 1;
    for (int i = 0; i < 6; i++) {
      int32_t na, nb;
      const int32_t in = (int32_t)((i * 53 + 2) % ms.vocab);
      OKC(lsw_model_step(a, in, &na));
      OKC(lsw_model_step(b, in, &nb));
      lsw_model_get_logits(a, la.data());
      lsw_model_get_logits(b, lb.data());
      same &= memcmp(la.data(), lb.data(), la.size() * sizeof(float)) == 0;
    }
    CHECK(same, "drift: after %d switches and reset, %s-mode logits are not bit-identical to a fresh model's", N,
          MODE_NAMES[mode]);
  }
  lsw_model_free(a);
  lsw_model_free(b);
}

// merge_prompt BATCHED (docs/FORMAT.md "Prompts in merge mode"): batched prompts and segments (delta path, no merge,
// nothing counted) between decode steps that replay the captured graph and merge.  The scenario -- prompt ending with
// X | X Y Y | segment ending with Z | Z Y | segment | Y -- makes a skip decided on anything but what the working copies
// hold run stale weights (X after X: nothing is merged after the reset; Z after Z: Y is merged) or merge needlessly
// (the last Y).  CUDA vs CPU: every logit row (prompt rows: delta path, tol; decode rows: merged weights, mtol), routes,
// merge counters after every call; the CUDA prompt == the CUDA fused prompt bit for bit (the same code path: Fwd::alin
// merges only for c == 1).  Run with the default prompt chunk and with LSW_CUDA_PREFILL_CHUNK=4 (chunks 4 4 3 2 for 13
// tokens: never a lone last token, which would merge; the GEMV path for c <= 8).
static void test_merge_prompt(const char *name, const ModelSpec &ms, bool token_routed) {
  printf("-- merge_prompt batched: %s (%s) --\n", name, dname(ms.dtype));
  const int V = ms.vocab, NL = 3, nad = (int)ms.ads.size();
  const double tol = ms.dtype == LSW_DTYPE_F32 ? 1e-4 : 3e-4;
  const char *ex_ = getenv("LSW_CUDA_SGMM_EXACT");
  const double mtol = (ex_ && *ex_ && strcmp(ex_, "0")) || ms.dtype == LSW_DTYPE_F32 ? tol : 4e-3;
  std::vector<int32_t> prompt(13), seg1(5), seg2(3);
  for (size_t i = 0; i < prompt.size(); i++) prompt[i] = (int32_t)((i * 89 + 7) % V);
  for (size_t i = 0; i < seg1.size(); i++) seg1[i] = (int32_t)((i * 53 + 21) % V);
  for (size_t i = 0; i < seg2.size(); i++) seg2[i] = (int32_t)((i * 71 + 150) % V);
  const int32_t X = prompt.back(), Y = (X + 11) % V, Z = seg1.back();
  struct Call { const std::vector<int32_t> *toks; int32_t tok; };  // toks: batched eval, else a decode step of tok
  const std::vector<Call> calls = {{&prompt, 0}, {nullptr, X}, {nullptr, Y}, {nullptr, Y}, {&seg1, 0},
                                   {nullptr, Z}, {nullptr, Y}, {&seg2, 0}, {nullptr, Y}};
  int n = 0;
  for (auto &c : calls) n += c.toks ? (int)c.toks->size() : 1;
  int rows_of[8], K_of[8];
  for (int i = 0; i < nad; i++) { rows_of[i] = ms.ads[i].kind == LSW_ROUTER_LAYERWISE ? NL : 1; K_of[i] = ms.ads[i].K; }
  const char *ch0 = getenv("LSW_CUDA_PREFILL_CHUNK");
  const std::string saved_ch = ch0 ? ch0 : "";
  for (int variant = 0; variant < 2; variant++) {
    if (variant) setenv("LSW_CUDA_PREFILL_CHUNK", "4", 1);  // read at finalize
    lsw_model *m[3] = {};  // CPU merge, CUDA merge, CUDA fused; all BATCHED
    g_merge_prompt = LSW_MERGE_PROMPT_BATCHED;
    lsw_status bs[3];
    for (int i = 0; i < 3; i++) bs[i] = build(ms, i == 0 ? LSW_BACKEND_CPU : LSW_BACKEND_CUDA, &m[i]);
    g_merge_prompt = LSW_MERGE_PROMPT_TOKENWISE;
    if (variant) {
      if (ch0) setenv("LSW_CUDA_PREFILL_CHUNK", saved_ch.c_str(), 1);
      else unsetenv("LSW_CUDA_PREFILL_CHUNK");
    }
    CHECK(!bs[0] && !bs[1] && !bs[2], "%s: models: %s", name, lsw_last_error());
    if (bs[0] || bs[1] || bs[2]) {
      for (auto *x : m)
        if (x) lsw_model_free(x);
      return;
    }
    const lsw_sampler_params greedy{0.f, 0, 1.f, 0.f, 0};
    for (int i = 0; i < 3; i++) {
      OKC(lsw_model_set_mode(m[i], i == 2 ? LSW_MODE_FUSED : LSW_MODE_MERGE));
      OKC(lsw_model_set_sampler(m[i], &greedy));
    }
    char what[160];
    // the prompt: CUDA merge (batched) == CUDA fused, bit for bit; close to the CPU
    std::vector<float> pf(prompt.size() * V, NAN);
    OKC(lsw_model_eval(m[2], prompt.data(), (int)prompt.size(), pf.data(), 1));
    int worst_call = -1;
    double worst = 0;
    int pos = 0;
    for (size_t ci = 0; ci < calls.size(); ci++) {
      const Call &c = calls[ci];
      const int len = c.toks ? (int)c.toks->size() : 1;
      std::vector<float> l[2];
      lsw_model_stats s0[2], s1[2];
      for (int b = 0; b < 2; b++) {
        OKC(lsw_model_get_stats(m[b], &s0[b]));
        l[b].assign((size_t)len * V, NAN);
        if (c.toks) {
          OKC(lsw_model_eval(m[b], c.toks->data(), len, l[b].data(), 1));
        } else {
          int32_t next;
          OKC(lsw_model_step(m[b], c.tok, &next));  // CUDA: the captured decode graph
          OKC(lsw_model_get_logits(m[b], l[b].data()));
        }
        OKC(lsw_model_get_stats(m[b], &s1[b]));
      }
      snprintf(what, sizeof what, "%s (chunk %s): call %zu (%s, %d tokens at %d)", name, variant ? "4" : "default", ci,
               c.toks ? "batched eval" : "decode step", len, pos);
      double ref;
      const double d = maxdiff(l[0].data(), l[1].data(), l[0].size(), &ref) / fmax(ref, 1.0);
      if (d > worst) worst = d, worst_call = (int)ci;
      // the first prompt: the delta path on both (tol); later rows attend to merged positions (mtol)
      close(l[0].data(), l[1].data(), l[0].size(), ci == 0 ? tol : mtol, what);
      if (ci == 0 && !variant)  // (chunks of 4: fused mode splits 13 tokens 4 4 4 1, the merge prompt 4 4 3 2)
        CHECK(memcmp(l[1].data(), pf.data(), pf.size() * sizeof(float)) == 0, "%s: CUDA batched merge prompt != CUDA fused prompt", what);
      if (ci == 0 && variant) close(pf.data(), l[1].data(), pf.size(), tol, what);
      CHECK(s1[0].merge_steps == s1[1].merge_steps && s1[0].merge_skipped == s1[1].merge_skipped,
            "%s: merge counters CPU %lld/%lld, CUDA %lld/%lld", what, (long long)s1[0].merge_steps,
            (long long)s1[0].merge_skipped, (long long)s1[1].merge_steps, (long long)s1[1].merge_skipped);
      if (c.toks)
        CHECK(s1[1].merge_steps == s0[1].merge_steps && s1[1].merge_skipped == s0[1].merge_skipped,
              "%s: CUDA counted a batched eval (%lld/%lld -> %lld/%lld)", what, (long long)s0[1].merge_steps,
              (long long)s0[1].merge_skipped, (long long)s1[1].merge_steps, (long long)s1[1].merge_skipped);
      else
        CHECK(s1[1].merge_steps + s1[1].merge_skipped > s0[1].merge_steps + s0[1].merge_skipped,
              "%s: CUDA decode step neither merged nor skipped", what);
      pos += len;
    }
    // token-routed adapters (router on the q input): the second Y of "Y Y" and the last Y are skipped (layer 0 at least)
    lsw_model_stats st{};
    OKC(lsw_model_get_stats(m[1], &st));
    if (token_routed) CHECK(st.merge_skipped >= 2, "%s: the scenario skipped %lld merges on CUDA", name, (long long)st.merge_skipped);
    snprintf(what, sizeof what, "%s (chunk %s)", name, variant ? "4" : "default");
    routes_equal(m[0], m[1], nad, rows_of, K_of, n, what);
    CHECK(lsw_model_n_past(m[0]) == n && lsw_model_n_past(m[1]) == n, "%s: n_past", what);
    printf("   chunk %-7s %d calls, worst rel logit diff %.2g (call %d), merges %lld, skipped %lld\n",
           variant ? "4" : "default", (int)calls.size(), worst, worst_call, (long long)st.merge_steps,
           (long long)st.merge_skipped);
    for (auto *x : m) lsw_model_free(x);
  }
}

// prefill_precision reaches the CUDA prompt GEMM: a 40-token prompt (GEMM path, n > 8) in FAST precision stays close to
// the CPU (activations rounded once to bf16) and further from it than PRECISE (hi + lo split); the CPU ignores it.
// Then lsw_measure_matmul on the device: argument checks and a plausible rate.
static void test_precision() {
  printf("-- prefill precision (bf16) --\n");
  const char *ev = getenv("LSW_CUDA_FAST_GEMM");
  const ModelSpec ms{LSW_DTYPE_BF16, 4, 2, 96, {}};
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); i++) prompt[i] = (int32_t)((i * 131 + 11) % ms.vocab);
  const size_t nl = prompt.size() * ms.vocab;
  std::vector<float> l[3];  // CPU, CUDA precise, CUDA fast
  const int backend[3] = {LSW_BACKEND_CPU, LSW_BACKEND_CUDA, LSW_BACKEND_CUDA};
  const int prec[3] = {LSW_PRECISION_FAST, LSW_PRECISION_PRECISE, LSW_PRECISION_FAST};
  for (int i = 0; i < 3; i++) {
    g_precision = prec[i];
    lsw_model *m = nullptr;
    lsw_status st = build(ms, backend[i], &m);
    g_precision = LSW_PRECISION_PRECISE;
    CHECK(st == LSW_OK, "precision model %d: %s", i, lsw_last_error());
    if (st) return;
    l[i].assign(nl, NAN);
    OKC(lsw_model_set_mode(m, LSW_MODE_BASE));
    OKC(lsw_model_eval(m, prompt.data(), (int)prompt.size(), l[i].data(), 1));
    lsw_model_free(m);
  }
  double ref;
  const double dp = maxdiff(l[0].data(), l[1].data(), nl, &ref), df = maxdiff(l[0].data(), l[2].data(), nl);
  printf("   max |cpu - cuda| precise %.3g, fast %.3g (max |logit| %.3g)\n", dp, df, ref);
  close(l[0].data(), l[1].data(), nl, 3e-4, "precise prompt logits");
  close(l[0].data(), l[2].data(), nl, 2e-2, "fast prompt logits");
  if (ev && *ev) {
    printf("   LSW_CUDA_FAST_GEMM=%s overrides prefill_precision: precise-vs-fast comparison skipped\n", ev);
  } else {
    CHECK(df > 2 * dp && df > 0, "fast precision is not less precise than precise (%.3g vs %.3g): not applied?", df, dp);
  }
  // lsw_measure_matmul(CUDA)
  double tf = -1;
  CHECK(lsw_measure_matmul(LSW_BACKEND_CUDA, LSW_DTYPE_BF16, 0, 64, 64, 0, &tf) == LSW_E_INVALID_ARGUMENT && tf == -1, "rows 0 accepted");
  CHECK(lsw_measure_matmul(LSW_BACKEND_CUDA, 7, 64, 64, 64, 0, &tf) == LSW_E_INVALID_ARGUMENT && tf == -1, "dtype 7 accepted");
  const int dts[3] = {LSW_DTYPE_BF16, LSW_DTYPE_F16, LSW_DTYPE_F32};
  for (int dt : dts) {
    double r = -1;
    OKC(lsw_measure_matmul(LSW_BACKEND_CUDA, dt, 1000, 1024, 264, 0, &r));
    CHECK(std::isfinite(r) && r > 0.1 && r < 5000, "%s 1000x1024x264: %g TFLOP/s", dname(dt), r);
  }
  if (!g_small) {
    double r = -1;
    OKC(lsw_measure_matmul(LSW_BACKEND_CUDA, LSW_DTYPE_BF16, 4096, 4096, 2048, 0, &r));
    CHECK(std::isfinite(r) && r > 10 && r < 5000, "bf16 4096x4096x2048: %g TFLOP/s", r);
    printf("   matmul bf16 4096x4096x2048 (fast GEMM path): %.1f TFLOP/s\n", r);
  }
}

int main() {
  g_small = getenv("LSW_SANITIZER_SMALL") && atoi(getenv("LSW_SANITIZER_SMALL"));
  const bool require = getenv("LSW_REQUIRE_GPU") && atoi(getenv("LSW_REQUIRE_GPU"));
  if (!lsw_cuda_available()) {
    printf("no CUDA device: skipped%s\n", require ? " (LSW_REQUIRE_GPU=1: failure)" : "");
    return require ? 1 : 77;  // 77: ctest's SKIP_RETURN_CODE, so a skip is reported as one, not as a pass
  }
  test_ops();
  const std::vector<int> ALL = {LSW_MOD_Q, LSW_MOD_K, LSW_MOD_V, LSW_MOD_O, LSW_MOD_GATE, LSW_MOD_UP, LSW_MOD_DOWN};
  test_model("backbone only", {LSW_DTYPE_F16, 4, 2, 96, {}});
  test_model("static all-linear r8", {LSW_DTYPE_BF16, 4, 2, 96, {{LSW_ROUTER_STATIC, 1, 1, 0, 0, ALL, 8}}});
  test_model("pregated q,v E8 top2 r16", {LSW_DTYPE_F16, 4, 4, 96, {{LSW_ROUTER_PREGATED, 8, 2, LSW_MOD_Q, 0, {LSW_MOD_Q, LSW_MOD_V}, 16}}});
  // multi-query attention with 12 query heads (q width 384 > hidden 128): the decode attention's block per query head
  test_model("MQA 12/1 heads, pregated all E4 top2 r8", {LSW_DTYPE_BF16, 12, 1, 96, {{LSW_ROUTER_PREGATED, 4, 2, LSW_MOD_Q, 0, ALL, 8}}});
  if (!g_small) {
    test_model("pregated all E4 top3 r8 f32", {LSW_DTYPE_F32, 4, 2, 96, {{LSW_ROUTER_PREGATED, 4, 3, LSW_MOD_Q, 0, ALL, 8}}});
    test_model("pregated router@gate, gate/up/down E6 top1", {LSW_DTYPE_BF16, 4, 1, 96, {{LSW_ROUTER_PREGATED, 6, 1, LSW_MOD_GATE, 0, {LSW_MOD_GATE, LSW_MOD_UP, LSW_MOD_DOWN}, 16}}});
    test_model("static + pregated(router@gate)", {LSW_DTYPE_F16, 4, 2, 96, {{LSW_ROUTER_STATIC, 1, 1, 0, 0, {LSW_MOD_Q, LSW_MOD_V, LSW_MOD_UP}, 8},
                                                                             {LSW_ROUTER_PREGATED, 5, 2, LSW_MOD_GATE, 0, {LSW_MOD_UP, LSW_MOD_DOWN}, 8}}});
    test_model("layerwise q,v E4 top2", {LSW_DTYPE_F16, 4, 2, 96, {{LSW_ROUTER_LAYERWISE, 4, 2, 0, 0, {LSW_MOD_Q, LSW_MOD_V}, 8}}});
    test_model("MixLoRA ffn E4 top2 + static attention", {LSW_DTYPE_BF16, 4, 2, 96, {{LSW_ROUTER_STATIC, 1, 1, 0, 0, {LSW_MOD_Q, LSW_MOD_V}, 8},
                                                                                      {LSW_ROUTER_LAYERWISE, 4, 2, 0, 1, {LSW_MOD_GATE, LSW_MOD_UP, LSW_MOD_DOWN}, 8}}});
    test_model("MixLoRA ffn E3 top1", {LSW_DTYPE_F16, 4, 2, 96, {{LSW_ROUTER_LAYERWISE, 3, 1, 0, 1, {LSW_MOD_GATE, LSW_MOD_UP, LSW_MOD_DOWN}, 8}}});
  }
  test_nonfinite();
  test_sampler_vocab();
  test_drift(8);
  test_drift(16);
  test_merge_prompt("pregated q,v E8 top2 r16", {LSW_DTYPE_F16, 4, 4, 96, {{LSW_ROUTER_PREGATED, 8, 2, LSW_MOD_Q, 0, {LSW_MOD_Q, LSW_MOD_V}, 16}}}, true);
  if (!g_small) {
    test_merge_prompt("static + pregated(router@gate)", {LSW_DTYPE_BF16, 4, 2, 96, {{LSW_ROUTER_STATIC, 1, 1, 0, 0, {LSW_MOD_Q, LSW_MOD_V, LSW_MOD_UP}, 8},
                                                                                    {LSW_ROUTER_PREGATED, 5, 2, LSW_MOD_GATE, 0, {LSW_MOD_UP, LSW_MOD_DOWN}, 8}}}, false);
    test_merge_prompt("layerwise q,v E4 top2", {LSW_DTYPE_F16, 4, 2, 96, {{LSW_ROUTER_LAYERWISE, 4, 2, 0, 0, {LSW_MOD_Q, LSW_MOD_V}, 8}}}, true);
    test_merge_prompt("MixLoRA ffn E3 top1 + static attention", {LSW_DTYPE_BF16, 4, 2, 96, {{LSW_ROUTER_STATIC, 1, 1, 0, 0, {LSW_MOD_Q, LSW_MOD_V}, 8},
                                                                                           {LSW_ROUTER_LAYERWISE, 3, 1, 0, 1, {LSW_MOD_GATE, LSW_MOD_UP, LSW_MOD_DOWN}, 8}}}, false);
  }
  test_precision();
  double gbps = 0;
  OKC(lsw_measure_bandwidth(LSW_BACKEND_CUDA, (uint64_t)1 << 28, &gbps));
  CHECK(gbps > 100, "bandwidth %.1f GB/s", gbps);
  printf("device copy bandwidth: %.0f GB/s\n", gbps);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

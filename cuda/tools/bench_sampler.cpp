// CPU sampler timing through the C ABI (lsw_op_sample, whose scratch is reused between calls as a model's is):
// ms per draw at 32,000 and 151,936 ids for generate's defaults, top-p alone on flat, 13-level and peaked logits, and
// top-k 5,000 with top-p.  Logits: uniform in [-3, 3) from a fixed seed (13-level: rounded to halves; peaked: 40 ids
// at 11 and above).  Usage: lsw_bench_sampler [draws per case, default 20]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "lsw.h"

int main(int argc, char **argv) {
  const int n = argc > 1 ? std::max(1, atoi(argv[1])) : 20;
  std::mt19937_64 r(1);
  for (int V : {32000, 151936}) {
    std::vector<float> flat((size_t)V), lev((size_t)V), peak((size_t)V);
    for (int i = 0; i < V; i++) {
      flat[i] = std::uniform_real_distribution<float>(-3, 3)(r);
      lev[i] = std::round(2 * flat[i]) * 0.5f;
      peak[i] = flat[i];
    }
    for (int i = 0; i < 40; i++) peak[r() % (uint64_t)V] = 11.f + 0.05f * (float)i;
    struct Case {
      const char *name;
      const std::vector<float> *l;
      lsw_sampler_params p;
    } cases[] = {
        {"generate's defaults: T 0.8, top-k 40, top-p 0.95, min-p 0.05", &flat, {0.8f, 40, 0.95f, 0.05f, 1}},
        {"flat, T 0.8, top-p 0.95", &flat, {0.8f, 0, 0.95f, 0.f, 1}},
        {"13 levels, T 1.5, top-p 0.99", &lev, {1.5f, 0, 0.99f, 0.f, 1}},
        {"peaked, T 0.8, top-p 0.95", &peak, {0.8f, 0, 0.95f, 0.f, 1}},
        {"flat, T 1.0, top-k 5000, top-p 0.95", &flat, {1.f, 5000, 0.95f, 0.f, 1}},
    };
    for (const Case &c : cases) {
      int32_t t = 0;
      if (lsw_op_sample(LSW_BACKEND_CPU, V, c.l->data(), &c.p, 0, &t) != LSW_OK) {
        fprintf(stderr, "lsw_op_sample: %s\n", lsw_last_error());
        return 1;
      }
      const auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < n; s++) lsw_op_sample(LSW_BACKEND_CPU, V, c.l->data(), &c.p, (uint64_t)s, &t);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
      printf("vocab %6d  %-62s %9.3f ms\n", V, c.name, ms);
    }
  }
  return 0;
}

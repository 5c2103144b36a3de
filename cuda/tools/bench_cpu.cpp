// CPU decode benchmark: builds a random-weight model file in the engine layout (or reuses one it built
// before), loads it through the C ABI, prefills a prompt and times greedy decode steps inside the engine.
//
//   lsw_bench [--preset smollm135|tiny] [--dtype f16|bf16|f32] [--threads N] [--tokens N] [--prompt N]
//             [--kv f32|f16|bf16] [--file PATH] [--reps N]
// Prints ms/token (median, p10, p90) and tokens/s.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lsw.h"

struct Spec {
  std::string name;
  int64_t shape[2];
  int ndim;
  int dtype;
  uint64_t offset;
};

static uint16_t f2h(float f) {  // round to nearest (random data: no special cases needed)
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
  if (ax < 0x38800000) return (uint16_t)sign;  // flush tiny values
  ax += 0xc8000fff + ((ax >> 13) & 1);
  return (uint16_t)(sign | (ax >> 13));
}

static void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, lsw_last_error());
  exit(1);
}

int main(int argc, char **argv) {
  std::string preset = "smollm135", dtype_s = "f16", kv_s = "f32", file;
  int threads = 0, tokens = 128, prompt = 32, reps = 3;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char * {
      if (i + 1 >= argc) {
        fprintf(stderr, "missing value for %s\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--preset") preset = next();
    else if (a == "--dtype") dtype_s = next();
    else if (a == "--threads") threads = atoi(next());
    else if (a == "--tokens") tokens = atoi(next());
    else if (a == "--prompt") prompt = atoi(next());
    else if (a == "--kv") kv_s = next();
    else if (a == "--file") file = next();
    else if (a == "--reps") reps = atoi(next());
    else {
      fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  lsw_model_config c{};
  if (preset == "smollm135") {
    c.vocab_size = 49152; c.hidden_size = 576; c.intermediate_size = 1536; c.num_layers = 30;
    c.num_heads = 9; c.num_kv_heads = 3; c.head_dim = 64; c.tie_embeddings = 1;
    c.rope_theta = 10000.f;
  } else if (preset == "tiny") {
    c.vocab_size = 4096; c.hidden_size = 256; c.intermediate_size = 704; c.num_layers = 4;
    c.num_heads = 4; c.num_kv_heads = 2; c.head_dim = 64; c.tie_embeddings = 0;
    c.rope_theta = 10000.f;
  } else {
    fprintf(stderr, "unknown preset %s\n", preset.c_str());
    return 2;
  }
  c.max_context = 2048; c.rms_norm_eps = 1e-5f; c.rope_type = LSW_ROPE_DEFAULT; c.rope_factor = 1.f;
  c.backend = LSW_BACKEND_CPU; c.n_threads = threads;
  if (kv_s != "f32" && kv_s != "f16" && kv_s != "bf16") {
    fprintf(stderr, "unknown --kv %s (f32, f16, bf16)\n", kv_s.c_str());
    return 2;
  }
  c.kv_dtype = kv_s == "f16" ? LSW_DTYPE_F16 : kv_s == "bf16" ? LSW_DTYPE_BF16 : LSW_DTYPE_F32;
  const int dtype = dtype_s == "f32" ? LSW_DTYPE_F32 : dtype_s == "bf16" ? LSW_DTYPE_BF16 : LSW_DTYPE_F16;
  const size_t es = dtype == LSW_DTYPE_F32 ? 4 : 2;

  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size;
  const int64_t qkv = (int64_t)(c.num_heads + 2 * c.num_kv_heads) * c.head_dim, qd = (int64_t)c.num_heads * c.head_dim;
  std::vector<Spec> specs;
  uint64_t off = 0;
  auto add = [&](const std::string &n, int64_t a, int64_t b, int dt) {
    Spec s{n, {a, b}, b ? 2 : 1, dt, off};
    specs.push_back(s);
    uint64_t bytes = (uint64_t)a * (b ? b : 1) * (dt == LSW_DTYPE_F32 ? 4 : 2);
    off += (bytes + 255) / 256 * 256;
  };
  add("tok_embeddings.weight", V, H, dtype);
  for (int L = 0; L < c.num_layers; L++) {
    std::string p = "layers." + std::to_string(L) + ".";
    add(p + "attn_norm.weight", H, 0, LSW_DTYPE_F32);
    add(p + "attn.wqkv.weight", qkv, H, dtype);
    add(p + "attn.wo.weight", H, qd, dtype);
    add(p + "ffn_norm.weight", H, 0, LSW_DTYPE_F32);
    add(p + "ffn.w_gate_up.weight", 2 * I, H, dtype);
    add(p + "ffn.w_down.weight", H, I, dtype);
  }
  add("norm.weight", H, 0, LSW_DTYPE_F32);
  if (!c.tie_embeddings) add("lm_head.weight", V, H, dtype);
  const uint64_t total = off;

  if (file.empty()) file = "/tmp/lsw_bench_" + preset + "_" + dtype_s + ".bin";
  FILE *f = fopen(file.c_str(), "rb");
  bool ok = false;
  if (f) {
    fseek(f, 0, SEEK_END);
    ok = (uint64_t)ftell(f) == total;
    fclose(f);
  }
  if (!ok) {
    fprintf(stderr, "writing %s (%.1f MB of random weights)\n", file.c_str(), total / 1e6);
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.f, 0.05f);
    f = fopen(file.c_str(), "wb");
    if (!f) {
      perror(file.c_str());
      return 1;
    }
    std::vector<char> buf;
    for (auto &s : specs) {
      uint64_t count = (uint64_t)s.shape[0] * (s.ndim == 2 ? s.shape[1] : 1);
      buf.assign((size_t)((count * (s.dtype == LSW_DTYPE_F32 ? 4 : 2) + 255) / 256 * 256), 0);
      for (uint64_t i = 0; i < count; i++) {
        float v = s.dtype == LSW_DTYPE_F32 && s.ndim == 1 ? 1.f + 0.1f * nd(rng) : nd(rng);
        if (s.dtype == LSW_DTYPE_F32) std::memcpy(&buf[i * 4], &v, 4);
        else {
          uint16_t h;
          if (s.dtype == LSW_DTYPE_F16) h = f2h(v);
          else {
            uint32_t x;
            std::memcpy(&x, &v, 4);
            h = (uint16_t)(x >> 16);
          }
          std::memcpy(&buf[i * 2], &h, 2);
        }
      }
      fwrite(buf.data(), 1, buf.size(), f);
    }
    fclose(f);
  }

  lsw_model *m;
  if (lsw_model_create(&c, &m)) die("create");
  int32_t fid;
  if (lsw_model_map_file(m, file.c_str(), 0, &fid)) die("map");
  for (auto &s : specs)
    if (lsw_model_add_tensor(m, s.name.c_str(), s.dtype, s.ndim, s.shape, fid, s.offset)) die("add_tensor");
  if (lsw_model_finalize(m)) die("finalize");
  lsw_model_stats st;
  lsw_model_get_stats(m, &st);

  std::vector<int32_t> pr(prompt);
  for (int i = 0; i < prompt; i++) pr[i] = (i * 7919 + 13) % c.vocab_size;
  std::vector<double> all;
  double prefill_tps = 0;
  for (int r = 0; r < reps; r++) {
    lsw_model_reset(m);
    int32_t next;
    auto t0 = std::chrono::steady_clock::now();
    if (lsw_model_prefill(m, pr.data(), prompt, &next)) die("prefill");
    double pms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    prefill_tps = std::max(prefill_tps, prompt / (pms / 1000.0));
    std::vector<double> ms(tokens);
    if (lsw_model_bench_decode(m, next, tokens, ms.data())) die("bench_decode");
    if (r > 0 || reps == 1) all.insert(all.end(), ms.begin(), ms.end());  // first repetition is warm-up
  }
  std::sort(all.begin(), all.end());
  auto q = [&](double p) { return all[(size_t)std::min<double>(all.size() - 1, p * all.size())]; };
  double med = q(0.5);
  printf("preset=%s dtype=%s kv=%s threads=%d simd=%s weights=%.1f MB\n", preset.c_str(), dtype_s.c_str(), kv_s.c_str(), st.n_threads,
         lsw_cpu_features(), st.weight_bytes / 1e6);
  printf("prefill: %d tokens, %.1f tokens/s\n", prompt, prefill_tps);
  printf("decode: %d tokens x %d reps: median %.3f ms/token (p10 %.3f, p90 %.3f) = %.1f tokens/s, %.1f GB/s\n",
         tokens, reps, med, q(0.1), q(0.9), 1000.0 / med, st.weight_bytes / (med / 1000.0) / 1e9);
  lsw_model_free(m);
  return 0;
}

// End-to-end check of the CUDA model forward against the CPU backend through the public C ABI (lsw.h):
// tiny random Llama-shaped models (F32/F16/BF16; GQA; Qwen2 bias; tied embeddings; llama3 rope) written to a
// raw tensor file, loaded twice (CPU, CUDA); prompt logits (all positions: GEMM path for > 8 tokens), then greedy
// decode through lsw_model_step (CUDA graph path) -- logits compared every step, tokens must be identical.
//
//   bash cuda/dev/build.sh   (builds it when build/native/liblsw.so exists)
//   LD_LIBRARY_PATH=build/native ./build/dev/test_forward
#include "lsw.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <unistd.h>

static int g_fail = 0, g_pass = 0;
static uint64_t g_s = 42;
static float urand() {
  uint64_t z = (g_s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)((z >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f;
}
static uint16_t f2h(float f) {  // round to nearest even, normal range only (test values are small)
  uint32_t x; memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int e = (int)((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (e <= 0) return (uint16_t)sign;  // flush tiny values (never produced here: |w| >= 2^-14 or exactly 0)
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}
static uint16_t f2b(float f) {
  uint32_t x; memcpy(&x, &f, 4);
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

struct Variant { const char *name; int dtype, qkv_bias, tie, rope_type, nh, nkv, kv_dtype; };

struct Writer {
  std::vector<uint8_t> data;
  struct T { std::string name; int dtype; std::vector<int64_t> shape; uint64_t off; };
  std::vector<T> ts;
  void add(const std::string &name, int dtype, std::vector<int64_t> shape, float scale, float bias = 0.f) {
    size_t n = 1;
    for (auto d : shape) n *= (size_t)d;
    while (data.size() % 256) data.push_back(0);
    const uint64_t off = data.size();
    const size_t es = dtype == LSW_DTYPE_F32 ? 4 : 2;
    data.resize(off + n * es);
    for (size_t i = 0; i < n; i++) {
      float v = bias + scale * urand();
      if (fabsf(v) < 1e-3f) v = 1e-3f;  // keep F16 values normal
      if (dtype == LSW_DTYPE_F32) memcpy(&data[off + i * 4], &v, 4);
      else { uint16_t u = dtype == LSW_DTYPE_F16 ? f2h(v) : f2b(v); memcpy(&data[off + i * 2], &u, 2); }
    }
    ts.push_back({name, dtype, shape, off});
  }
};

static bool run(const Variant &v) {
  printf("== %s ==\n", v.name);
  lsw_model_config c{};
  c.vocab_size = 301; c.hidden_size = 128; c.intermediate_size = 344; c.num_layers = 3;
  c.num_heads = v.nh; c.num_kv_heads = v.nkv; c.head_dim = 32; c.max_context = 96;
  c.qkv_bias = v.qkv_bias; c.tie_embeddings = v.tie; c.rms_norm_eps = 1e-5f; c.rope_theta = 10000.f;
  c.rope_type = v.rope_type; c.rope_factor = v.rope_type ? 8.f : 1.f; c.rope_low_freq_factor = 1.f;
  c.rope_high_freq_factor = 4.f; c.rope_original_max_position = 16;
  c.kv_dtype = v.kv_dtype;
  const int H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int qkvd = (c.num_heads + 2 * c.num_kv_heads) * hd;
  Writer w;
  w.add("tok_embeddings.weight", v.dtype, {c.vocab_size, H}, 1.0f);
  for (int L = 0; L < c.num_layers; L++) {
    const std::string p = "layers." + std::to_string(L) + ".";
    w.add(p + "attn_norm.weight", LSW_DTYPE_F32, {H}, 0.2f, 1.f);
    w.add(p + "attn.wqkv.weight", v.dtype, {qkvd, H}, 0.15f);
    if (v.qkv_bias) w.add(p + "attn.bqkv.bias", LSW_DTYPE_F32, {qkvd}, 0.2f);
    w.add(p + "attn.wo.weight", v.dtype, {H, c.num_heads * hd}, 0.1f);
    w.add(p + "ffn_norm.weight", LSW_DTYPE_F32, {H}, 0.2f, 1.f);
    w.add(p + "ffn.w_gate_up.weight", v.dtype, {2 * I, H}, 0.12f);
    w.add(p + "ffn.w_down.weight", v.dtype, {H, I}, 0.08f);
  }
  w.add("norm.weight", LSW_DTYPE_F32, {H}, 0.2f, 1.f);
  if (!v.tie) w.add("lm_head.weight", v.dtype, {c.vocab_size, H}, 0.3f);
  char path[] = "/tmp/lsw_test_forward_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, w.data.data(), w.data.size()) != (ssize_t)w.data.size()) { perror("tmp file"); exit(2); }
  close(fd);

  lsw_model *m[2] = {nullptr, nullptr};
  for (int b = 0; b < 2; b++) {
    lsw_model_config cb = c;
    cb.backend = b;
    cb.n_threads = 2;
    int fid = 0;
    lsw_status st = lsw_model_create(&cb, &m[b]);
    if (!st) st = lsw_model_map_file(m[b], path, 0, &fid);
    for (auto &t : w.ts)
      if (!st) st = lsw_model_add_tensor(m[b], t.name.c_str(), t.dtype, (int)t.shape.size(), t.shape.data(), fid, t.off);
    if (!st) st = lsw_model_finalize(m[b]);
    if (st) { printf("  FAIL %s model: status %d: %s\n", b ? "CUDA" : "CPU", (int)st, lsw_last_error()); g_fail++; unlink(path); return false; }
  }
  unlink(path);
  // 1. prompt of 21 tokens, all logits (GEMM path), then greedy decode 40 steps (graph path)
  const int n = 21, V = c.vocab_size;
  std::vector<int32_t> prompt(n);
  for (int i = 0; i < n; i++) prompt[i] = (int32_t)((i * 97 + 13) % V);
  std::vector<float> lg[2] = {std::vector<float>((size_t)n * V), std::vector<float>((size_t)n * V)};
  for (int b = 0; b < 2; b++)
    if (lsw_model_eval(m[b], prompt.data(), n, lg[b].data(), 1)) { printf("  FAIL eval: %s\n", lsw_last_error()); g_fail++; return false; }
  auto cmp = [&](const float *a, const float *b, size_t cnt, const char *what, double tol) {
    double mx = 0, ref = 0;
    for (size_t i = 0; i < cnt; i++) { mx = fmax(mx, fabs((double)a[i] - b[i])); ref = fmax(ref, fabs((double)a[i])); }
    const bool ok = mx <= tol * fmax(ref, 1.0) && mx == mx;
    printf("  %s %-40s max |diff| %.3g (max |logit| %.3g)\n", ok ? "ok  " : "FAIL", what, mx, ref);
    ok ? g_pass++ : g_fail++;
    return ok;
  };
  // fp32 accumulation order + tensor-core prompt GEMM (precise split); a 16-bit KV cache: a k element computed a few
  // fp32 ulps apart on the two backends can round to neighbouring 16-bit values
  const double tol = v.kv_dtype == LSW_DTYPE_F32 ? 2e-4 : 1e-3;
  cmp(lg[0].data(), lg[1].data(), lg[0].size(), "prompt logits, all 21 positions", tol);
  int32_t tok[2];
  lsw_model_reset(m[0]); lsw_model_reset(m[1]);
  for (int b = 0; b < 2; b++)
    if (lsw_model_prefill(m[b], prompt.data(), 5, &tok[b])) { printf("  FAIL prefill: %s\n", lsw_last_error()); g_fail++; return false; }
  int mism = 0;
  double worst = 0;
  std::vector<float> l0(V), l1(V);
  for (int step = 0; step < 40; step++) {
    if (tok[0] != tok[1]) { mism++; printf("  step %d: CPU token %d, CUDA token %d\n", step, tok[0], tok[1]); tok[1] = tok[0]; }
    const int32_t in = tok[0];
    for (int b = 0; b < 2; b++)
      if (lsw_model_step(m[b], in, &tok[b])) { printf("  FAIL step: %s\n", lsw_last_error()); g_fail++; return false; }
    lsw_model_get_logits(m[0], l0.data());
    lsw_model_get_logits(m[1], l1.data());
    double mx = 0, ref = 1;
    for (int i = 0; i < V; i++) { mx = fmax(mx, fabs((double)l0[i] - l1[i])); ref = fmax(ref, fabs((double)l0[i])); }
    worst = fmax(worst, mx / ref);
  }
  const bool ok = mism == 0 && worst <= tol;
  printf("  %s greedy decode 40 steps: %d token mismatches, worst relative logit diff %.3g\n", ok ? "ok  " : "FAIL", mism, worst);
  ok ? g_pass++ : g_fail++;
  lsw_model_free(m[0]);
  lsw_model_free(m[1]);
  return ok;
}

int main() {
  if (!lsw_cuda_available()) { printf("no usable CUDA device: nothing to test\n"); return 2; }
  const Variant vs[] = {
      {"llama f32, MHA", LSW_DTYPE_F32, 0, 0, LSW_ROPE_DEFAULT, 4, 4},
      {"llama f16, GQA 4/2", LSW_DTYPE_F16, 0, 0, LSW_ROPE_DEFAULT, 4, 2},
      {"llama3 bf16, GQA 4/1, llama3 rope", LSW_DTYPE_BF16, 0, 0, LSW_ROPE_LLAMA3, 4, 1},
      {"qwen2 bf16, qkv bias, tied embeddings", LSW_DTYPE_BF16, 1, 1, LSW_ROPE_DEFAULT, 4, 2},
      {"mistral f16, linear rope", LSW_DTYPE_F16, 0, 0, LSW_ROPE_LINEAR, 4, 4},
      {"llama f16, MHA, f16 KV cache", LSW_DTYPE_F16, 0, 0, LSW_ROPE_DEFAULT, 4, 4, LSW_DTYPE_F16},
      {"llama3 bf16, GQA 4/1, llama3 rope, bf16 KV cache", LSW_DTYPE_BF16, 0, 0, LSW_ROPE_LLAMA3, 4, 1, LSW_DTYPE_BF16},
      {"qwen2 bf16, qkv bias, f16 KV cache", LSW_DTYPE_BF16, 1, 1, LSW_ROPE_DEFAULT, 4, 2, LSW_DTYPE_F16},
  };
  for (const auto &v : vs) run(v);
  setenv("LSW_CUDA_GRAPH", "0", 1);
  printf("(LSW_CUDA_GRAPH=0: eager decode)\n");
  run(vs[1]);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

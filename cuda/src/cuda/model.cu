// The CUDA model forward (engine.h "CUDA hook"): weights uploaded once at finalize, persistent device buffers,
// the single-token decode step captured once as a CUDA graph and replayed (token / position / n_ctx are read
// from device memory that the graph's first node fills from pinned host memory; the logits come back through a
// memcpy node into pinned memory).  Prompts run eagerly in chunks (GEMM path for > 8 tokens).
// Same contract as lsw_cpu_forward: reads/advances m->n_past, writes m->logits (and all_logits rows).
// Adapters are not supported on the GPU yet (finalize fails with LSW_E_UNSUPPORTED, one clear message).
#include "kernels.cuh"
#include "../engine.h"
#include "../backend_cuda.h"
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

namespace {

constexpr int kChunk = 256;  // prompt tokens per eager chunk

struct DLayer {
  const float *attn_norm = nullptr, *ffn_norm = nullptr, *bqkv = nullptr;
  const void *w[LSW_MAT_COUNT] = {};
  int dt[LSW_MAT_COUNT] = {};
  int rows[LSW_MAT_COUNT] = {}, cols[LSW_MAT_COUNT] = {};
};

struct State {
  int device = 0;
  cudaStream_t s = nullptr;
  std::vector<void *> allocs;
  std::map<const void *, void *> uploaded;  // host mapping -> device copy (tied embeddings upload once)
  std::vector<DLayer> layers;
  const void *emb = nullptr, *lm = nullptr;
  int emb_dt = 0, lm_dt = 0;
  const float *norm = nullptr;
  float *kc = nullptr, *vc = nullptr;  // [layers][max_ctx][kv_dim]
  float *x = nullptr, *xn = nullptr, *qkv = nullptr, *att = nullptr, *gu = nullptr, *act = nullptr, *logits = nullptr;
  int *tokens = nullptr, *pos = nullptr;
  int *io = nullptr;       // device [token, pos, n_ctx] for the graph
  int *h_io = nullptr;     // pinned
  float *h_logits = nullptr;  // pinned [vocab]
  double *inv_freq = nullptr;
  float *attn_scratch = nullptr;
  void *xbuf = nullptr;
  bool precise = true;
  bool use_graph = true;
  cudaGraphExec_t graph = nullptr;
  int graph_nodes = 0;
  bool broken = false;
};

State *S(lsw_model *m) { return static_cast<State *>(m->cuda); }

#define TRY(x)                                  \
  do {                                          \
    lsw_status st_ = (x);                       \
    if (st_ != LSW_OK) return st_;              \
  } while (0)

lsw_status dalloc(State *st, void **p, size_t bytes) {
  LSWC_CHECK(cudaMalloc(p, bytes ? bytes : 16));
  st->allocs.push_back(*p);
  return LSW_OK;
}
template <typename T> lsw_status dalloc(State *st, T **p, size_t n) { return dalloc(st, (void **)p, n * sizeof(T)); }

lsw_status upload(State *st, const void *host, size_t bytes, const void **dev) {
  auto it = st->uploaded.find(host);
  if (it != st->uploaded.end()) { *dev = it->second; return LSW_OK; }
  void *p = nullptr;
  TRY(dalloc(st, &p, bytes));
  LSWC_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  st->uploaded[host] = p;
  *dev = p;
  return LSW_OK;
}

// One forward of c tokens whose ids/positions are in device memory (tok, pos; n_ctx_dev for the graph).
// want: rows of the final logits to compute: 0 = only the last row, 1 = all c rows (into st->logits [c][V]).
cudaError_t forward_body(lsw_model *m, State *st, int c, const int *tok, const int *pos, int n_ctx_host,
                         const int *n_ctx_dev, bool all_rows, cudaStream_t s) {
  const lsw_model_config &cf = m->cfg;
  const int H = cf.hidden_size, I = cf.intermediate_size, hd = cf.head_dim, V = cf.vocab_size;
  const int qd = (int)m->q_dim, kvd = (int)m->kv_dim, qkvd = (int)m->qkv_dim;
  const float eps = cf.rms_norm_eps;
  auto lin = [&](int dt, const void *W, int rows, int cols, const float *X, int n, float *Y, int ldy,
                 const float *bias, bool acc) -> cudaError_t {
    if (n <= 8) return lswc::gemv(dt, W, rows, cols, X, cols, n, Y, ldy, bias, acc, nullptr, s);
    return lswc::gemm(dt, W, rows, cols, X, cols, n, Y, ldy, bias, acc, st->precise, st->xbuf, s);
  };
  cudaError_t e;
#define K_(x) if ((e = (x)) != cudaSuccess) return e
  K_(lswc::embed(st->emb_dt, st->emb, H, c, tok, st->x, s));
  for (int L = 0; L < cf.num_layers; L++) {
    const DLayer &ly = st->layers[L];
    float *kc = st->kc + (size_t)L * cf.max_context * kvd, *vc = st->vc + (size_t)L * cf.max_context * kvd;
    K_(lswc::rmsnorm(c, H, st->x, H, ly.attn_norm, eps, st->xn, H, s));
    K_(lin(ly.dt[LSW_MAT_QKV], ly.w[LSW_MAT_QKV], qkvd, H, st->xn, c, st->qkv, qkvd, ly.bqkv, false));
    // q and k heads are contiguous in the fused output: one RoPE launch over nh + nkv heads
    K_(lswc::rope(c, cf.num_heads + cf.num_kv_heads, hd, qkvd, pos, st->inv_freq, st->qkv, s));
    K_(lswc::kv_store(c, kvd, st->qkv, qkvd, qd, pos, kc, vc, s));
    K_(lswc::attention(c, n_ctx_host, n_ctx_dev, cf.num_heads, cf.num_kv_heads, hd, st->qkv, qkvd, kc, vc, kvd,
                       st->att, qd, c == 1 ? st->attn_scratch : nullptr, s));
    K_(lin(ly.dt[LSW_MAT_O], ly.w[LSW_MAT_O], H, qd, st->att, c, st->x, H, nullptr, true));  // x += Wo att
    K_(lswc::rmsnorm(c, H, st->x, H, ly.ffn_norm, eps, st->xn, H, s));
    K_(lin(ly.dt[LSW_MAT_GATE_UP], ly.w[LSW_MAT_GATE_UP], 2 * I, H, st->xn, c, st->gu, 2 * I, nullptr, false));
    K_(lswc::swiglu(c, I, st->gu, 2 * I, st->act, I, s));
    K_(lin(ly.dt[LSW_MAT_DOWN], ly.w[LSW_MAT_DOWN], H, I, st->act, c, st->x, H, nullptr, true));  // x += Wdown act
  }
  if (all_rows) {
    K_(lswc::rmsnorm(c, H, st->x, H, st->norm, eps, st->xn, H, s));
    K_(lin(st->lm_dt, st->lm, V, H, st->xn, c, st->logits, V, nullptr, false));
  } else {
    K_(lswc::rmsnorm(1, H, st->x + (size_t)(c - 1) * H, H, st->norm, eps, st->xn, H, s));
    K_(lswc::gemv(st->lm_dt, st->lm, V, H, st->xn, H, 1, st->logits, V, nullptr, false, nullptr, s));
  }
#undef K_
  return cudaSuccess;
}

lsw_status broken_fail() {
  lsw_set_error("the CUDA model is unusable after an earlier device error; free it and load again");
  return LSW_E_DEVICE;
}

lsw_status capture_decode(lsw_model *m, State *st) {
  cudaGraph_t g = nullptr;
  LSWC_CHECK(cudaStreamBeginCapture(st->s, cudaStreamCaptureModeThreadLocal));
  cudaError_t e = cudaMemcpyAsync(st->io, st->h_io, 3 * sizeof(int), cudaMemcpyHostToDevice, st->s);
  if (e == cudaSuccess)
    e = forward_body(m, st, 1, st->io, st->io + 1, m->cfg.max_context, st->io + 2, false, st->s);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(st->h_logits, st->logits, sizeof(float) * m->cfg.vocab_size, cudaMemcpyDeviceToHost, st->s);
  cudaError_t e2 = cudaStreamEndCapture(st->s, &g);
  if (e != cudaSuccess) { if (g) cudaGraphDestroy(g); return lswc_cuda_fail(e, "capturing the decode step", __FILE__, __LINE__); }
  LSWC_CHECK(e2);
  size_t nn = 0;
  cudaGraphGetNodes(g, nullptr, &nn);
  e = cudaGraphInstantiate(&st->graph, g, 0);
  cudaGraphDestroy(g);
  LSWC_CHECK(e);
  st->graph_nodes = (int)nn;
  return LSW_OK;
}

}  // namespace

lsw_status lswc_model_finalize(lsw_model *m) {
  const lsw_model_config &cf = m->cfg;
  if (!m->adapters.empty()) {
    lsw_set_error("the CUDA backend does not run adapters yet (use --backend cpu)");
    return LSW_E_UNSUPPORTED;
  }
  if (cf.head_dim > 256 || cf.head_dim % 2) {
    lsw_set_error("the CUDA backend supports head_dim <= 256 (even); this model has %d", cf.head_dim);
    return LSW_E_UNSUPPORTED;
  }
  State *st = new (std::nothrow) State();
  if (!st) { lsw_set_error("out of host memory"); return LSW_E_OUT_OF_MEMORY; }
  m->cuda = st;  // lswc_model_free releases whatever was allocated, also on failure below
  st->device = cf.device;
  const char *ev = getenv("LSW_CUDA_FAST_GEMM");
  st->precise = !(ev && *ev && strcmp(ev, "0"));
  ev = getenv("LSW_CUDA_GRAPH");
  st->use_graph = !(ev && !strcmp(ev, "0"));
  ev = getenv("LSW_CUDA_PDL");  // programmatic dependent launch for the GEMVs (validated in cuda/dev)
  if (ev && *ev && strcmp(ev, "0")) lswc::gemv_set_pdl(true);
  LSWC_CHECK(cudaSetDevice(cf.device));
  LSWC_CHECK(cudaStreamCreateWithFlags(&st->s, cudaStreamNonBlocking));

  const int H = cf.hidden_size, I = cf.intermediate_size, V = cf.vocab_size;
  const size_t kvd = (size_t)m->kv_dim;
  st->layers.resize(cf.num_layers);
  for (int L = 0; L < cf.num_layers; L++) {
    const lsw_layer &ly = m->layers[L];
    DLayer &d = st->layers[L];
    const void *p;
    TRY(upload(st, ly.attn_norm, sizeof(float) * H, &p)); d.attn_norm = (const float *)p;
    TRY(upload(st, ly.ffn_norm, sizeof(float) * H, &p)); d.ffn_norm = (const float *)p;
    if (ly.bqkv) { TRY(upload(st, ly.bqkv, sizeof(float) * m->qkv_dim, &p)); d.bqkv = (const float *)p; }
    for (int k = 0; k < LSW_MAT_COUNT; k++) {
      const lsw_weight &w = ly.mat[k];
      TRY(upload(st, w.data, w.t->nbytes, &d.w[k]));
      d.dt[k] = w.dtype; d.rows[k] = (int)w.rows; d.cols[k] = (int)w.cols;
    }
  }
  TRY(upload(st, m->tok_emb.data, m->tok_emb.t->nbytes, &st->emb));
  st->emb_dt = m->tok_emb.dtype;
  TRY(upload(st, m->lm_head.data, m->lm_head.t->nbytes, &st->lm));
  st->lm_dt = m->lm_head.dtype;
  {
    const void *p;
    TRY(upload(st, m->norm, sizeof(float) * H, &p));
    st->norm = (const float *)p;
  }
  const size_t kvn = (size_t)cf.num_layers * cf.max_context * kvd;
  TRY(dalloc(st, &st->kc, kvn));
  TRY(dalloc(st, &st->vc, kvn));
  const size_t T = kChunk;
  TRY(dalloc(st, &st->x, T * H));
  TRY(dalloc(st, &st->xn, T * H));
  TRY(dalloc(st, &st->qkv, T * m->qkv_dim));
  TRY(dalloc(st, &st->att, T * m->q_dim));
  TRY(dalloc(st, &st->gu, T * 2 * I));
  TRY(dalloc(st, &st->act, T * I));
  TRY(dalloc(st, &st->logits, T * V));
  TRY(dalloc(st, &st->tokens, T));
  TRY(dalloc(st, &st->pos, T));
  TRY(dalloc(st, &st->io, 4));
  TRY(dalloc(st, &st->attn_scratch, lswc::attn_scratch_floats(cf.num_heads, cf.head_dim)));
  int maxk = H > I ? H : I;
  if ((int)m->q_dim > maxk) maxk = (int)m->q_dim;
  TRY(dalloc(st, &st->xbuf, lswc::gemm_xbuf_bytes((int)T, maxk)));
  TRY(dalloc(st, &st->inv_freq, m->inv_freq.size()));
  LSWC_CHECK(cudaMemcpy(st->inv_freq, m->inv_freq.data(), m->inv_freq.size() * sizeof(double), cudaMemcpyHostToDevice));
  LSWC_CHECK(cudaMallocHost(&st->h_io, 4 * sizeof(int)));
  LSWC_CHECK(cudaMallocHost(&st->h_logits, sizeof(float) * V));
  return LSW_OK;
}

lsw_status lswc_model_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits) {
  State *st = S(m);
  if (!st) { lsw_set_error("CUDA model state missing (finalize failed?)"); return LSW_E_INTERNAL; }
  if (st->broken) return broken_fail();
  const lsw_model_config &cf = m->cfg;
  const int V = cf.vocab_size;
  lsw_status status = LSW_OK;
  auto fail = [&](cudaError_t e, const char *what) {
    st->broken = e != cudaErrorMemoryAllocation;
    status = lswc_cuda_fail(e, what, __FILE__, __LINE__);
    return status;
  };
  LSWC_CHECK(cudaSetDevice(st->device));
  if (n == 1 && !all_logits && st->use_graph) {
    if (!st->graph) TRY(capture_decode(m, st));
    st->h_io[0] = tokens[0];
    st->h_io[1] = m->n_past;
    st->h_io[2] = m->n_past + 1;
    cudaError_t e = cudaGraphLaunch(st->graph, st->s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st->s);
    if (e != cudaSuccess) return fail(e, "decode step (CUDA graph)");
    memcpy(m->logits.data(), st->h_logits, sizeof(float) * V);
    m->n_past += 1;
    m->have_logits = true;
    return LSW_OK;
  }
  std::vector<int> pos(kChunk);
  for (int32_t c0 = 0; c0 < n; c0 += kChunk) {
    const int c = n - c0 < kChunk ? n - c0 : kChunk;
    for (int t = 0; t < c; t++) pos[t] = m->n_past + t;
    cudaError_t e = cudaMemcpyAsync(st->tokens, tokens + c0, sizeof(int) * c, cudaMemcpyHostToDevice, st->s);
    if (e == cudaSuccess) e = cudaMemcpyAsync(st->pos, pos.data(), sizeof(int) * c, cudaMemcpyHostToDevice, st->s);
    if (e == cudaSuccess)
      e = forward_body(m, st, c, st->tokens, st->pos, m->n_past + c, nullptr, all_logits != nullptr, st->s);
    if (e != cudaSuccess) return fail(e, "forward");
    if (all_logits)
      e = cudaMemcpyAsync(all_logits + (size_t)c0 * V, st->logits, sizeof(float) * V * c, cudaMemcpyDeviceToHost, st->s);
    else if (c0 + c == n)
      e = cudaMemcpyAsync(m->logits.data(), st->logits, sizeof(float) * V, cudaMemcpyDeviceToHost, st->s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st->s);  // also: pos[] is reused by the next chunk
    if (e != cudaSuccess) return fail(e, "forward");
    m->n_past += c;
  }
  if (all_logits) memcpy(m->logits.data(), all_logits + (size_t)(n - 1) * V, sizeof(float) * V);
  m->have_logits = true;
  return status;
}

void lswc_model_reset(lsw_model *m) {
  (void)m;  // the KV cache is overwritten position by position; nothing to clear
}

void lswc_model_free(lsw_model *m) {
  State *st = S(m);
  if (!st) return;
  cudaSetDevice(st->device);
  if (st->s) cudaStreamSynchronize(st->s);
  if (st->graph) cudaGraphExecDestroy(st->graph);
  for (void *p : st->allocs) cudaFree(p);
  if (st->h_io) cudaFreeHost(st->h_io);
  if (st->h_logits) cudaFreeHost(st->h_logits);
  if (st->s) cudaStreamDestroy(st->s);
  cudaGetLastError();
  delete st;
  m->cuda = nullptr;
}

int lswc_model_graph_nodes(const lsw_model *m) {
  const State *st = static_cast<const State *>(m->cuda);
  return st ? st->graph_nodes : 0;
}

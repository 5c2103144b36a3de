// The CUDA model forward (engine.h "CUDA hook"): weights uploaded once at finalize (synthetic random tensors are
// generated on the device), persistent device buffers, adapters in every mode, and the single-token decode step
// (forward + sampler + bookkeeping) captured as a CUDA graph per mode and replayed: the sampled token is written
// into the device input of the next step and copied to pinned host memory, so lsw_model_step is one graph launch
// and one synchronisation.  Prompts run eagerly in chunks (GEMM path for > 8 tokens), each token with its own
// experts (adapter deltas token-wise); in merge mode with adapters a prompt runs token by token through the decode
// step instead (lswc_model_forward), as the CPU does, unless merge_prompt is BATCHED (chunks, delta path).
// Adapter semantics mirror the CPU engine (adapters.cpp): routing where the router input is computed (pre-gated:
// the input of router_input in layer 0), merge mode only for single-token steps once every router has spoken
// (SGMM of all adapted modules of all layers from the pristine weights into working copies, one launch -- the
// tensor-core kernel where it applies, else the exact-order one; LSW_CUDA_SGMM_EXACT=1 forces exact -- skipped
// through a device flag when experts and gates are unchanged, counted once per token), delta path otherwise (unfused: per expert shrink and
// expand launches; fused: one shrink launch and the GEMV epilogue), routing history appended to the adapter.
#include "kernels.cuh"
#include "../engine.h"
#include "../backend_cuda.h"
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>
#include <sys/mman.h>

namespace {

// Prompt tokens per eager chunk: min(max_context, 2048) (LSW_CUDA_PREFILL_CHUNK overrides).  Prefill GEMMs need
// long chunks to fill the GPU (at 256 tokens a 4096x4096 GEMM has 64 128x128 tiles for 132 SMs); when every
// row's logits are wanted the chunk is capped at kLogitRows so the [chunk][vocab] buffer stays small.
constexpr int kMaxChunk = 2048, kLogitRows = 256;
// in-kernel shrink counter pairs: one per 128-byte line (the GEMV blocks poll a pair while its shrink blocks count
// themselves in it; neighbouring graph nodes' pairs then never share a line)
constexpr int kSyncStride = 32;

struct DLayer {
  const float *attn_norm = nullptr, *ffn_norm = nullptr, *bqkv = nullptr;
  const void *w[LSW_MAT_COUNT] = {};
  void *work[LSW_MAT_COUNT] = {};  // merge mode: working copy (nullptr: not adapted)
  int dt[LSW_MAT_COUNT] = {};
  int rows[LSW_MAT_COUNT] = {}, cols[LSW_MAT_COUNT] = {};
  size_t bytes[LSW_MAT_COUNT] = {};
};

struct DMod {
  const void *A = nullptr, *B = nullptr;
  int rank = 0, row0 = 0, rows = 0, cols = 0, mat = 0;
  float scale = 1.f;  // lsw_adapter_mod::scale
};

struct DAdapter {
  int kind = 0, K = 1, E = 1, slots = 1, router_mat = -1;
  bool ffn = false;        // MixLoRA whole-FFN experts
  const void *router = nullptr;
  int router_dt = 0, router_dim = 0;
  std::vector<const void *> lrouter;  // LAYERWISE: per layer (nullptr: nothing adapted there)
  std::vector<int> lrouter_mat, lrouter_dim, lrouter_dt;
  std::vector<DMod> mods;  // [layer * LSW_MOD_COUNT + module]
  int *re = nullptr;       // [chunk][slots][K]
  float *rg = nullptr;
  int *h_e = nullptr;      // pinned [slots][K] (decode step copy)
  float *h_g = nullptr;
  float *t[LSW_MOD_COUNT] = {};  // shrink outputs [chunk][K][rank] per module
  bool routed = false;     // host-side, while building one forward
  int slot(int L) const { return kind == LSW_ROUTER_LAYERWISE ? L : 0; }
  lswc::RouteRef ref(int L, bool gated = true) const { return {re, gated ? rg : nullptr, slots * K, slot(L), K}; }
  const int *ex(int L) const { return re + (size_t)slot(L) * K; }
  const float *gt(int L) const { return rg + (size_t)slot(L) * K; }
};

struct DevBlk {                 // device scalars of the decode step (one memcpy back to the host)
  int io[4];                    // token in, pos, n_ctx, -
  unsigned long long step;      // sampler step
  long long counters[2];        // merge steps run / skipped
  int sampled, merged, skip;
  int nonfinite;                // the sampler saw a NaN or infinite logit (lswc_model_step reports LSW_E_NUMERIC)
};

// decode attention: the K/V tile kernel from this many positions on (0: never, the default for one query head per KV
// head since session 42; see lswc_model_finalize)
constexpr int kAttnLong = 0;
// ... and for grouped-query attention with a 16-bit cache at head_dim <= 128 and <= 8 query heads per KV head, where
// the tile kernel runs its wide tiles (session 54; see lswc_model_finalize): up to 4 query heads per KV head, and more
constexpr int kAttnLongGqa4 = 4096, kAttnLongGqa8 = 7168;

struct State {
  int device = 0;
  cudaStream_t s = nullptr;
  std::vector<void *> allocs;
  std::map<const void *, void *> uploaded;  // host mapping -> device copy (tied embeddings upload once)
  struct Rnd { const lsw_tensor *t; lsw_model::random_spec r; };
  std::map<const void *, Rnd> random_dev;   // host buffer -> random spec (generated on the device)
  std::vector<DLayer> layers;
  const void *emb = nullptr, *lm = nullptr;
  int emb_dt = 0, lm_dt = 0;
  const float *norm = nullptr;
  unsigned char *kc = nullptr, *vc = nullptr;  // [layers][max_ctx][kv_dim] of cfg.kv_dtype
  float *x = nullptr, *xn = nullptr, *qkv = nullptr, *att = nullptr, *gu = nullptr, *act = nullptr, *logits = nullptr;
  int *tokens = nullptr, *pos = nullptr;
  DevBlk *blk = nullptr;       // device
  DevBlk *h_in = nullptr, *h_out = nullptr;  // pinned
  float *h_logits = nullptr;   // pinned (when m->logits could not be registered)
  bool logits_registered = false;
  // decode step (lsw_model_step, bench_decode): the step's logits stay in st->logits until the host asks for them
  // (lswc_model_fetch_logits: lsw_model_get_logits, or a forward whose caller reads m->logits), so the graph copies
  // no [vocab] floats to the host per token (128 KB at 32k tokens, 513 KB at Llama 3's 128k).  logits_on_dev: m->logits
  // is stale, st->logits holds the last step's.  LSW_CUDA_STEP_LOGITS=copy: the graph copies them every step (the
  // path before session 38, kept for A-B runs)
  bool logits_lazy = true;
  bool logits_on_dev = false;
  // greedy decode steps end in ONE launch (lswc::greedy_advance: a multi-block argmax, the bookkeeping, the DevBlk
  // written into h_out through its mapped address) instead of argmax + advance + a copy node.  LSW_CUDA_GREEDY_TAIL=0:
  // the sampler kernel, advance and the copy, as before session 38 (and as every sampling step still does)
  bool greedy_tail = true;
  lswc::GreedyState *gstate = nullptr;  // device: greedy_advance's key and block count (zero between steps)
  DevBlk *h_out_dev = nullptr;         // h_out's device address (null: the tail keeps its copy node)
  bool dev_valid = false;      // blk->io / step hold what the host expects for the next step
  unsigned char *keep = nullptr;
  double *pd = nullptr;
  double *inv_freq = nullptr;
  float *attn_scratch = nullptr;
  // fused decode: the LoRA shrinks run inside the GEMV launch that consumes them (LoraSeg::A, one sync pair per
  // (layer, fused matrix) node, zeroed once); LSW_CUDA_FUSED_SHRINK=separate: one shrink launch per matrix (o) or
  // folded into the RMSNorm / SwiGLU before it (prologue_shrink), the path before 2026-12-01
  bool shrink_in_gemv = true;
  // in-kernel shrink blocks read their A rows before griddepcontrol.wait (LoraEpilogue::n_experts);
  // LSW_CUDA_FUSED_SHRINK=late: after it (session 14's form, kept for A-B runs)
  bool shrink_early = true;
  int *shr_sync = nullptr;  // [layer][mat] pairs, kSyncStride ints apart (a 128-byte line each)
  // fused decode, one adapter on q/k/v with in-kernel shrinks and the one-launch decode attention: the qkv GEMV defers
  // its LoRA expand (LoraEpilogue::defer): its shrink blocks write B·t for every qkv row into qkv_dy and the attention
  // adds it to q / k / v as it reads them, so the GEMV blocks run the plain kernel with no epilogue and no wait on t.
  // LSW_CUDA_QKV_DEFER=0: the LoRA epilogue in the GEMV (the path before session 23)
  bool qkv_defer = true;
  float *qkv_dy = nullptr;  // [qkv_dim]
  // decode: a router whose input is a folded RMSNorm's output reads x ⊙ w and the norm's partial sums (RouteFold)
  // instead of the norm being launched for it; LSW_CUDA_ROUTE_FOLD=0 launches the norm (the path before session 23)
  bool route_fold = true;
  // decode, fused mode: a layer-wise router whose input is a deferring q,k,v launch's (folded) X runs in that launch's
  // shrink blocks (lswc::LoraRoute) instead of its own launch before it, so the launch's GEMV blocks no longer wait for
  // a router; LSW_CUDA_ROUTE_IN_SHRINK=0 launches it (the path before session 62)
  bool route_in_shrink = true;
  // decode: the RMSNorms before q,k,v / gate,up / lm_head folded into the GEMVs around them (lswc::NormFold): the
  // o_proj / down GEMV writes x ⊙ w into xn and its blocks' Σ x² into nf_part, the next GEMV scales by the rms.
  // LSW_CUDA_NORM_FOLD=0: a RMSNorm launch each (the path before 2026-12-01 session 16)
  bool norm_fold = true;
  float *nf_part = nullptr;  // [gemv_fold_parts(hidden_size)]
  // decode, fused mode, with the router in the q,k,v launch's shrink blocks and the norm folded: the GEMV that writes
  // the router's input (the down GEMV of the layer before) also writes its blocks' partial logits of that
  // router (NormFold::out_R, <= 8 experts, 16-bit weights), and the shrink blocks sum them instead of computing R · x
  // (RouteFold::lg_part).  Session 68 (H100): layer-wise q,v r16 fused 1.076 -> 1.057 x; LSW_CUDA_ROUTE_PARTS=0: the
  // shrink blocks' own dots
  bool route_parts = false;
  float *lg_part = nullptr;  // [gemv_fold_parts(hidden_size)][kRoutePartE]
  // decode: the SwiGLU folded into the gate,up GEMV (NormFold::act_out); LSW_CUDA_SWIGLU_FOLD=0: a launch per layer
  bool swiglu_fold = true;
  void *xbuf = nullptr;
  float2 *rope_cs = nullptr;  // [max_context][head_dim/2] (cos, sin) for the decode attention's RoPE
  float *tall = nullptr;  // prompt deltas: [chunk][max E*rank] shrinks of every expert (Fwd::delta_gemm)
  int tall_w = 0;
  bool precise = true, use_graph = true, sgmm_tc = false;
  bool delta_gemm = true;  // read once at finalize: LSW_CUDA_PROMPT_DELTA_GEMM=0 keeps F16 prompt deltas on SIMT
  int chunk = 256;  // prompt tokens per eager chunk (finalize)
  // decode graphs per mode and decode attention kernel (decode_attn_variant): 0 below attn_long positions, 1 (the
  // K/V tile kernel) from there on.  attn_long 0: kernel 0 only (the default, kAttnLong; the graphs are captured
  // per kernel on first use, so a second one only when the tile kernel runs).  LSW_CUDA_ATTN_LONG=N sets it (0:
  // never); LSW_CUDA_ATTN_VARIANT / attn_decode_set_variant force one kernel for every context.
  int attn_long = kAttnLong;
  cudaGraphExec_t graph[4][2] = {};
  int graph_nodes[4][2] = {};
  lsw_sampler_params graph_sp[4][2];
  int last_nodes = 0;
  bool broken = false;
  // adapters
  std::vector<DAdapter> ad;
  lswc::MergeCheck mc;
  lswc::SgmmTermsDesc *sg_descs = nullptr;  // device
  int sg_n = 0, sg_tiles = 0, sg_dt = 0;
  lswc::SgmmDesc *tc_descs = nullptr;       // device (tensor-core kernel, single adapter)
  int tc_n = 0, tc_tiles = 0, tc_maxr = 0;  // (tc_maxr: the largest rank, for the SGMM's choice of consumer)
  bool merged_this = false;    // host-side, while building one forward
  // LAYERWISE models: merge per layer and fused matrix, just before it runs (adapters.cpp ensure_merged_mat)
  bool layerwise = false;
  int ffn = -1;                // the MixLoRA adapter
  std::vector<lswc::MergeCheck> lm_mc;         // [layer * LSW_MAT_COUNT + mat]
  std::vector<int> lm_off, lm_n, lm_tiles;     // ranges of lm_descs
  lswc::SgmmTermsDesc *lm_descs = nullptr;     // device
  // one adapter, tensor-core SGMM eligible: per (layer, mat) ranges of lm_tc_descs (same order as lm_descs), each
  // range's tiles numbered from 0; merged with the layer's routes (slot 0 of ex(L) / gt(L))
  bool lm_tc = false;
  std::vector<int> lm_tc_tiles, lm_tc_maxr;
  lswc::SgmmDesc *lm_tc_descs = nullptr;       // device
  int *lm_flags = nullptr;     // device [layer][mat][merged, skip]
  int *layer_step = nullptr;   // device [layer]
  float *guk = nullptr, *hk = nullptr;  // MixLoRA: per-expert gate/up pre-activations [T][K][2I], SwiGLU [T][K][I]
  int mode = 0;
  size_t dev_bytes = 0;
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
  st->dev_bytes += bytes ? bytes : 16;
  return LSW_OK;
}
template <typename T> lsw_status dalloc(State *st, T **p, size_t n) { return dalloc(st, (void **)p, n * sizeof(T)); }

lsw_status upload(lsw_model *m, State *st, const void *host, size_t bytes, const void **dev) {
  auto it = st->uploaded.find(host);
  if (it != st->uploaded.end()) { *dev = it->second; return LSW_OK; }
  void *p = nullptr;
  TRY(dalloc(st, &p, bytes));
  auto rt = st->random_dev.find(host);
  if (rt != st->random_dev.end()) {  // lsw_model_add_random_tensor: same values as the CPU engine (random.h)
    const lsw_tensor *t = rt->second.t;
    LSWC_CHECK(lswc::random_fill(t->dtype, p, (long long)(t->nbytes / lswc::dtype_bytes(t->dtype)), rt->second.r.seed,
                                 rt->second.r.scale, rt->second.r.one_plus, st->s));
    LSWC_CHECK(cudaStreamSynchronize(st->s));
  } else {
    LSWC_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  }
  st->uploaded[host] = p;
  *dev = p;
  return LSW_OK;
}

bool adapters_active(const lsw_model *m, const State *st) { return !st->ad.empty() && st->mode != LSW_MODE_BASE; }

// Forward-building context: launches for one forward of c tokens (eagerly or into a graph capture).
struct Fwd {
  lsw_model *m;
  State *st;
  int c;
  cudaStream_t s;
  int attn_variant = -1;  // decode attention kernel for this forward (-1: attention_decode's own choice)
  bool preshrunk = false;  // fused decode: the shrinks of the next alin already ran in prologue_shrink
  // RMSNorm fold (State::norm_fold), decode only.  out_w: the next alin's GEMV is the last writer of x and should also
  // write x ⊙ out_w and its Σ x² partials (the norm after it); xw_ready: the last GEMV did (xw_n partials);
  // pend_w: the norm before the next alin was skipped, xn holds x ⊙ pend_w, not the normalised x.
  const float *out_w = nullptr, *pend_w = nullptr;
  bool xw_ready = false;
  int xw_n = 0;
  // router partials (State::route_parts): lg_want, the router whose partial logits the next out-side GEMV should
  // write (lg_E experts); lg_have, the router whose partials the last GEMV wrote into lg_part (nullptr: none)
  const void *lg_want = nullptr, *lg_have = nullptr;
  int lg_E = 0;
  // SwiGLU fold (decode): act_req: the next alin's GEMV (gate,up) should also write act = swiglu(gu); act_ready: it
  // did; follows: the SwiGLU launch was skipped, the next GEMV reads the previous GEMV's output (launch hint)
  bool act_req = false, act_ready = false, follows = false;

  // the skipped norm, launched after all (a path that cannot fold): xn = rmsnorm(x) ⊙ pend_w
  cudaError_t unfold() {
    if (!pend_w) return cudaSuccess;
    const float *w = pend_w;
    pend_w = nullptr;
    return lswc::rmsnorm(c, m->cfg.hidden_size, st->x, m->cfg.hidden_size, w, m->cfg.rms_norm_eps, st->xn,
                         m->cfg.hidden_size, s);
  }
  // fold: this GEMV may take the pending norm (in side, X = xn) and the requested out side; it is the last writer of Y
  // and every LoRA delta it adds is computed from this X inside or right before it (rs scales them alike)
  cudaError_t lin(int dt, const void *W, int rows, int cols, const float *X, int n, float *Y, int ldy, const float *bias,
                  bool acc, const lswc::LoraEpilogue *ep = nullptr, bool fold = false) {
    lswc::NormFold nf;
    const int I = m->cfg.intermediate_size;
    const bool in = fold && pend_w && X == st->xn && !acc, out = fold && out_w && Y == st->x && acc;
    const bool act = fold && act_req && Y == st->gu && !acc && rows == 2 * I;
    if ((in || out || act) && lswc::gemv_fold_ok(dt, W, cols, X, cols, n, ep)) {
      if (act) {
        nf.act_out = st->act;
        nf.act_half = I;
      }
      if (in) {
        nf.in_part = st->nf_part;
        nf.in_n = xw_n;
        nf.in_dim = m->cfg.hidden_size;
        nf.in_eps = m->cfg.rms_norm_eps;
        pend_w = nullptr;
      }
      if (out) {
        nf.out_xw = st->xn;
        nf.out_w = out_w;
        nf.out_part = st->nf_part;
        if (lg_want) {
          nf.out_R = lg_want;
          nf.out_E = lg_E;
          nf.out_lpart = st->lg_part;
        }
      }
    }
    nf.follows_gemv = follows && n == 1;
    out_w = nullptr;
    lg_want = nullptr;
    act_req = follows = false;
    cudaError_t e = unfold();  // not taken above: the norm runs after all
    if (e != cudaSuccess) return e;
    const bool any = nf.in_part || nf.out_xw || nf.act_out || nf.follows_gemv;
    e = n <= 8 ? lswc::gemv(dt, W, rows, cols, X, cols, n, Y, ldy, bias, acc, ep, s, 0, any ? &nf : nullptr)
               : lswc::gemm(dt, W, rows, cols, X, cols, n, Y, ldy, bias, acc, st->precise, st->xbuf, s);
    xw_ready = nf.out_xw != nullptr;
    xw_n = nf.out_n;
    lg_have = any && nf.out_lp ? nf.out_R : nullptr;
    act_ready = nf.act_out != nullptr;
    return e;
  }

  // does a's router read (L, mat)'s input in this forward?  Layer-wise: every layer with a router, at its first
  // adapted matrix; pre-gated: layer 0's router input, once
  static bool reads_input(const DAdapter &a, int L, int mat) {
    if (a.kind == LSW_ROUTER_LAYERWISE) return a.lrouter_mat[L] == mat;
    return !a.routed && a.kind == LSW_ROUTER_PREGATED && L == 0 && a.router_mat == mat;
  }
  // State::route_parts: the down GEMV before layer L (weights of type dt) also writes the partial logits of the router
  // that layer L's q,k,v launch will run in its shrink blocks (shrink_router), where it has <= kRoutePartE experts of
  // type dt
  void want_parts(int L, int dt) {
    if (!st->route_parts || !adapters_active(m, st)) return;
    const DLayer &ly = st->layers[L];
    const DAdapter *a = shrink_router(L, LSW_MAT_QKV, ly.dt[LSW_MAT_QKV], ly.cols[LSW_MAT_QKV]);
    if (a && a->E <= lswc::kRoutePartE && a->lrouter_dt[L] == dt) {
      lg_want = a->lrouter[L];
      lg_E = a->E;
    }
  }
  bool router_at(int L, int mat) const {
    for (auto &a : st->ad)
      if (reads_input(a, L, mat)) return true;
    return false;
  }
  // a layer-wise adapter's router in layer L, one launch for the chunk: token t's routes at ((t * slots + L) * K)
  cudaError_t route_layer(DAdapter &a, int L, const float *X, int ldx, const lswc::RouteFold &fold) {
    const size_t o = (size_t)L * a.K;
    return lswc::route_n(a.lrouter_dt[L], c, a.E, a.lrouter_dim[L], a.K, a.lrouter[L], X, ldx, a.re + o, a.rg + o,
                         a.slots * a.K, s, fold);
  }
  // routing of the chunk for every adapter whose router input is (L, mat); X = that input
  // fold: X is h ⊙ w of a folded RMSNorm (pend_w), the routers scale by its rs themselves (lswc::RouteFold)
  // skip (nullable): a layer-wise adapter whose router the caller leaves to its GEMV's shrink blocks (marked routed)
  cudaError_t route_at(int L, int mat, const float *X, int ldx, const lswc::RouteFold &fold = lswc::RouteFold{},
                       DAdapter *skip = nullptr) {
    for (auto &a : st->ad) {
      if (a.kind == LSW_ROUTER_LAYERWISE) {
        if (!reads_input(a, L, mat)) continue;
        a.routed = true;
        if (&a == skip) continue;
        cudaError_t e = route_layer(a, L, X, ldx, fold);
        if (e != cudaSuccess) return e;
        continue;
      }
      if (a.routed) continue;
      if (a.kind == LSW_ROUTER_STATIC) {
        a.routed = true;  // experts 0 / gates 1 filled at finalize for every chunk row
      } else if (reads_input(a, L, mat)) {
        cudaError_t e = lswc::route_n(a.router_dt, c, a.E, a.router_dim, a.K, a.router, X, ldx, a.re, a.rg, a.K, s, fold);
        if (e != cudaSuccess) return e;
        a.routed = true;
      }
    }
    return cudaSuccess;
  }
  // the one adapter routing at (L, mat) when its router can run in the shrink blocks of this matrix's deferring
  // launch (lswc::LoraRoute): decode, fused mode, a layer-wise router of the weights' dtype reading the whole X, at
  // most kRouteShrinkMaxE experts and top-k <= kDeferMaxK, no other adapter adapting this matrix; else nullptr
  static bool adapts(const DAdapter &a, int L, int mat) {  // a module of a in layer L lies in matrix mat
    for (int k = 0; k < LSW_MOD_COUNT; k++) {
      const DMod &d = a.mods[(size_t)L * LSW_MOD_COUNT + k];
      if (d.A && d.mat == mat) return true;
    }
    return false;
  }
  DAdapter *shrink_router(int L, int mat, int dt, int cols) {
    if (!st->route_in_shrink || st->mode != LSW_MODE_FUSED || c != 1 || !st->shrink_in_gemv) return nullptr;
    DAdapter *one = nullptr;
    for (auto &a : st->ad) {
      if (!reads_input(a, L, mat) && !adapts(a, L, mat)) continue;
      if (one) return nullptr;
      one = &a;
    }
    // (adapting mat, the fused branch of alin runs and decides; otherwise its routes would be needed elsewhere)
    if (!one || one->kind != LSW_ROUTER_LAYERWISE || one->ffn || !reads_input(*one, L, mat) || !adapts(*one, L, mat))
      return nullptr;
    if (one->lrouter_dt[L] != dt || one->lrouter_dim[L] != cols || one->E > lswc::kRouteShrinkMaxE || one->K > lswc::kDeferMaxK)
      return nullptr;
    return one;
  }
  bool all_routed() const {
    for (auto &a : st->ad)
      if (!a.routed) return false;
    return true;
  }

  cudaError_t ensure_merged() {
    if (st->merged_this) return cudaSuccess;
    st->merged_this = true;
    cudaError_t e = lswc::merge_check(st->mc, s);
    if (e != cudaSuccess) return e;
    int *skip = &st->blk->skip;
    if (st->sgmm_tc)
      e = lswc::sgmm(st->sg_dt, st->tc_descs, st->tc_n, st->tc_tiles, true, st->ad[0].K, st->ad[0].re, st->ad[0].rg,
                     skip, s, st->tc_maxr);
    else
      e = lswc::sgmm_terms(st->sg_dt, st->sg_descs, st->sg_n, st->sg_tiles, skip, s);
    if (e == cudaSuccess && lswc::gemv_pdl()) e = lswc::noop(s);
    return e;
  }
  // LAYERWISE models: (L, mat) merged just before it runs, skipped when its adapters' routes are unchanged
  cudaError_t ensure_merged_mat(int L, int mat) {
    if (!st->layers[L].work[mat]) return cudaSuccess;
    const int i = L * LSW_MAT_COUNT + mat;
    cudaError_t e = lswc::merge_check(st->lm_mc[i], s);
    if (e == cudaSuccess && st->lm_tc)
      e = lswc::sgmm(st->sg_dt, st->lm_tc_descs + st->lm_off[i], st->lm_n[i], st->lm_tc_tiles[i], true, st->ad[0].K,
                     st->ad[0].ex(L), st->ad[0].gt(L), st->lm_mc[i].skip, s, st->lm_tc_maxr[i]);
    else if (e == cudaSuccess)
      e = lswc::sgmm_terms(st->sg_dt, st->lm_descs + st->lm_off[i], st->lm_n[i], st->lm_tiles[i], st->lm_mc[i].skip, s);
    if (e == cudaSuccess && lswc::gemv_pdl()) e = lswc::noop(s);
    return e;
  }

  // Prompt chunk (c > 1), 16-bit weights: one module's low-rank deltas on tensor cores instead of per-token SIMT
  // shrink/expand.  T = X A_cat^T for ALL E experts (A is [E][rank][cols] = an [E*rank][cols] matrix), each token
  // keeps its selected experts' rows times their gates (gate_experts), then Y += T_e B_e^T per expert e.  E/K times
  // the needed FLOPs, but GEMM-shaped: the 7B all-linear r64 prompt was 17x slower than the bare model.
  cudaError_t delta_gemm(int dt, const DMod &d, DAdapter &a, int L, const float *X, float *Y, int ldy) {
    const int ER = a.E * d.rank;
    cudaError_t e = lswc::gemm(dt, d.A, ER, d.cols, X, d.cols, c, st->tall, ER, nullptr, false, st->precise, st->xbuf, s);
    if (e == cudaSuccess) e = lswc::gate_experts(c, a.E, d.rank, a.ref(L), d.scale, st->tall, ER, s);
    const size_t esz = dt == LSW_DTYPE_F32 ? 4 : 2;
    for (int x = 0; x < a.E && e == cudaSuccess; x++)
      e = lswc::gemm(dt, static_cast<const char *>(d.B) + (size_t)x * d.rows * d.rank * esz, d.rows, d.rank,
                     st->tall + (size_t)x * d.rank, ER, c, Y + d.row0, ldy, nullptr, true, st->precise, st->xbuf, s);
    return e;
  }
  bool delta_gemm_ok(int dt, const DMod &d, const DAdapter &a) const {
    // F16 only: the precise GEMM splits X into two 16-bit halves, which for BF16 (8-bit mantissas) leaves ~2^-17
    // relative error per term; on the H200 that moved a MixLoRA router's gates by > 2e-5 between a BF16 prompt and
    // the same tokens one at a time, so BF16 prompts keep the exact fp32 SIMT shrink/expand kernels.
    return c > 1 && st->tall && dt == LSW_DTYPE_F16 && a.E * d.rank <= st->tall_w && st->delta_gemm;
  }

  // The adapter-aware linear (CPU: lsw_linear_adapted).  X: [c][cols] contiguous, Y: [c][ldy].
  // defer (nullable; the qkv matrix, State::qkv_defer): the consumer after this GEMV adds a deferred LoRA expand from
  // there; *deferred says whether the GEMV wrote it there instead of into Y
  cudaError_t alin(int L, int mat, const float *X, float *Y, int ldy, const float *bias, bool acc,
                   float *defer = nullptr, bool *deferred = nullptr) {
    if (deferred) *deferred = false;
    const DLayer &ly = st->layers[L];
    const int dt = ly.dt[mat], rows = ly.rows[mat], cols = ly.cols[mat];
    const bool pre = preshrunk;
    preshrunk = false;
    if (!adapters_active(m, st)) return lin(dt, ly.w[mat], rows, cols, X, c, Y, ldy, bias, acc, nullptr, true);
    // a router reads the normalised X: from the folded norm's partials (decode: X = x ⊙ w, the norm stays folded into
    // the GEMV), else after the norm is launched after all
    lswc::RouteFold rf;
    cudaError_t e = cudaSuccess;
    // a router left to this launch's shrink blocks (State::route_in_shrink): set on the launch below once it is known
    // to defer, else launched there after all
    DAdapter *rsk = nullptr;
    if (router_at(L, mat)) {
      if (st->route_fold && pend_w && c == 1 && X == st->xn) {
        rf.in_part = st->nf_part;
        rf.in_n = xw_n;
        rf.eps = m->cfg.rms_norm_eps;
      } else {
        e = unfold();
      }
      if (defer && deferred && rf.in_part) rsk = shrink_router(L, mat, dt, cols);
      if (rsk && lg_have && lg_have == rsk->lrouter[L]) {  // the producer's partial logits of this router
        rf.lg_part = st->lg_part;
        rf.lg_R = lg_have;
      }
    }
    if (e == cudaSuccess) e = route_at(L, mat, X, cols, rf, rsk);
    if (e != cudaSuccess) return e;
    // rsk's router as its own launch (the launch below does not take it): before anything reads its routes
    auto route_late = [&]() -> cudaError_t {
      if (!rsk) return cudaSuccess;
      DAdapter &a = *rsk;
      rsk = nullptr;
      return route_layer(a, L, X, cols, pend_w ? rf : lswc::RouteFold{});
    };
    const int mode = st->mode;
    if (mode == LSW_MODE_MERGE && c == 1 && (st->layerwise || all_routed())) {
      if ((e = st->layerwise ? ensure_merged_mat(L, mat) : ensure_merged()) != cudaSuccess) return e;
      return lin(dt, ly.work[mat] ? ly.work[mat] : ly.w[mat], rows, cols, X, c, Y, ldy, bias, acc, nullptr, true);
    }
    // delta path: segments = (adapter, module) adapted inside this matrix, routed by now
    struct Seg { DAdapter *a; int k; const DMod *d; };
    Seg segs[lswc::kMaxAdapters * 3];
    int ns = 0;
    for (auto &a : st->ad) {
      if (!a.routed || a.ffn) continue;  // whole-FFN experts: ffn_experts()
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        const DMod &d = a.mods[(size_t)L * LSW_MOD_COUNT + k];
        if (d.A && d.mat == mat) segs[ns++] = {&a, k, &d};
      }
    }
    if (ns == 0) return lin(dt, ly.w[mat], rows, cols, X, c, Y, ldy, bias, acc, nullptr, true);
    if (mode == LSW_MODE_FUSED && c == 1) {
      // one shrink launch per adapter (all its modules reading X), then the GEMV with the LoRA epilogue; or, with one
      // adapter, the shrinks inside that GEMV launch (st->shrink_in_gemv)
      bool epi = ns <= 3;
      for (int i = 0; i < ns && epi; i++) epi = segs[i].a->K == segs[0].a->K;
      bool inside = epi && !pre && st->shrink_in_gemv;
      for (int i = 0; i < ns && inside; i++) inside = segs[i].a == segs[0].a;
      lswc::LoraEpilogue ep;  // the GEMV's LoRA epilogue (epi)
      if (epi) {
        ep.nseg = ns;
        ep.top_k = segs[0].a->K;
        for (int i = 0; i < ns; i++) {
          DAdapter &a = *segs[i].a;
          ep.seg[i] = {segs[i].d->row0, segs[i].d->rows, segs[i].d->rank, segs[i].d->B, a.t[segs[i].k], a.ex(L)};
          if (inside) {  // the shrinks run in this GEMV launch
            ep.seg[i].A = segs[i].d->A;
            ep.seg[i].gates = a.gt(L);
            ep.seg[i].scale = segs[i].d->scale;
          }
        }
        if (inside) {
          ep.sync = st->shr_sync + kSyncStride * ((size_t)L * LSW_MAT_COUNT + mat);
          if (st->shrink_early) ep.n_experts = segs[0].a->E;  // one adapter: one E
          if (defer && deferred) {  // the consumer adds B·t (see State::qkv_defer)
            ep.defer = defer;
            *deferred = lswc::gemv_defer_ok(dt, ly.w[mat], rows, cols, X, cols, 1, &ep);
            if (!*deferred) ep.defer = nullptr;
          }
        }
      }
      // the norm fold's in side needs every t computed from this X (the shrink launches below or the GEMV's own), so
      // that rs scales the deltas with W x: not with prologue-shrunk t (pre: from the normalised vector), expand
      // launches after the GEMV, or a GEMV that cannot fold -- the norm then runs before the shrinks read X
      const bool unf = pend_w && (!epi || pre || !lswc::gemv_fold_ok(dt, ly.w[mat], cols, X, cols, 1, &ep));
      if (rsk && !unf && inside && deferred && *deferred) {  // the router in this launch's shrink blocks
        DAdapter &a = *rsk;
        ep.route.R = a.lrouter[L];
        ep.route.n_experts = a.E;
        ep.route.vec = lswc::route_vec(dt, a.lrouter[L], cols);
        ep.route.experts = a.re + (size_t)L * a.K;
        ep.route.gates = a.rg + (size_t)L * a.K;
        ep.route.fold = rf;
        if (lswc::gemv_defer_ok(dt, ly.w[mat], rows, cols, X, cols, 1, &ep)) rsk = nullptr;
        else ep.route = lswc::LoraRoute{};
      }
      if ((e = route_late()) != cudaSuccess) return e;
      if (unf && (e = unfold()) != cudaSuccess) return e;
      for (int i = 0; i < ns && !pre && !inside;) {
        lswc::ShrinkBatch sb;
        DAdapter *a = segs[i].a;
        sb.top_k = a->K;
        sb.experts = a->ex(L);
        sb.gates = a->gt(L);
        sb.n_experts = a->E;  // PDL: the shrink may read its A rows before waiting on X
        for (; i < ns && segs[i].a == a; i++)
          sb.job[sb.njobs++] = {segs[i].d->A, segs[i].d->rank, cols, X, a->t[segs[i].k], segs[i].d->scale};
        if ((e = lswc::lora_shrink(dt, sb, s)) != cudaSuccess) return e;
      }
      if (epi) return lin(dt, ly.w[mat], rows, cols, X, c, Y, ldy, bias, acc, &ep, true);
      // (lin without fold: no fold sides; expand launches write Y after the GEMV)
      if ((e = lin(dt, ly.w[mat], rows, cols, X, c, Y, ldy, bias, acc)) != cudaSuccess) return e;
      for (int i = 0; i < ns; i++) {
        const DMod &d = *segs[i].d;
        DAdapter &a = *segs[i].a;
        if ((e = lswc::expand_tok(dt, d.B, d.rows, d.rank, 1, a.ref(L), 0, a.K, a.t[segs[i].k], Y, ldy, d.row0, s)))
          return e;
      }
      return cudaSuccess;
    }
    // lin without fold launches the pending norm first and drops the fold requests: delta launches write Y after it
    if ((e = lin(dt, ly.w[mat], rows, cols, X, c, Y, ldy, bias, acc)) != cudaSuccess) return e;
    for (int i = 0; i < ns; i++) {
      const DMod &d = *segs[i].d;
      DAdapter &a = *segs[i].a;
      float *t = a.t[segs[i].k];
      if (delta_gemm_ok(dt, d, a)) {  // prompt chunk on tensor cores (every mode: the deltas are the same sums)
        if ((e = delta_gemm(dt, d, a, L, X, Y, ldy)) != cudaSuccess) return e;
        continue;
      }
      if (mode == LSW_MODE_UNFUSED) {  // the baseline: per expert, a shrink and an expand launch
        for (int k = 0; k < a.K; k++) {
          if ((e = lswc::shrink_tok(dt, d.A, d.rank, cols, X, cols, 0, c, a.ref(L), k, 1, d.scale, t, s))) return e;
          if ((e = lswc::expand_tok(dt, d.B, d.rows, d.rank, c, a.ref(L), k, 1, t, Y, ldy, d.row0, s))) return e;
        }
      } else {  // fused prompt / merge-mode prompt: all experts of the token in one shrink and one expand
        if ((e = lswc::shrink_tok(dt, d.A, d.rank, cols, X, cols, 0, c, a.ref(L), 0, a.K, d.scale, t, s))) return e;
        if ((e = lswc::expand_tok(dt, d.B, d.rows, d.rank, c, a.ref(L), 0, a.K, t, Y, ldy, d.row0, s))) return e;
      }
    }
    return cudaSuccess;
  }

  // Fused decode: can (L, mat)'s LoRA shrinks run inside the RMSNorm / SwiGLU that produces its input
  // (prologue_shrink, one launch instead of two)?  Only when no router runs at (L, mat) now and one adapter
  // (not MixLoRA) adapts it with <= 3 modules; then the batch is returned.
  bool fold(int L, int mat, lswc::ShrinkBatch *sb) {
    if (st->mode != LSW_MODE_FUSED || c != 1 || !adapters_active(m, st) || st->shrink_in_gemv) return false;
    DAdapter *one = nullptr;
    int ns = 0;
    for (auto &a : st->ad) {
      if (reads_input(a, L, mat) || (!a.routed && a.kind == LSW_ROUTER_STATIC)) return false;
      if (!a.routed || a.ffn) continue;
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        const DMod &d = a.mods[(size_t)L * LSW_MOD_COUNT + k];
        if (!d.A || d.mat != mat) continue;
        if (one && one != &a) return false;
        one = &a;
        ns++;
      }
    }
    if (!one || ns > 3) return false;
    *sb = lswc::ShrinkBatch{};
    sb->top_k = one->K;
    sb->experts = one->ex(L);
    sb->gates = one->gt(L);
    sb->n_experts = one->E;  // PDL: the prologue may read its A rows before waiting on x
    for (int k = 0; k < LSW_MOD_COUNT; k++) {
      const DMod &d = one->mods[(size_t)L * LSW_MOD_COUNT + k];
      if (d.A && d.mat == mat) sb->job[sb->njobs++] = {d.A, d.rank, d.cols, nullptr, one->t[k], d.scale};
    }
    return true;
  }
  // RMSNorm of x (mode 0) or SwiGLU of gu (mode 1) into out, with (L, mat)'s shrinks folded in when possible
  cudaError_t norm_or_act(int L, int mat, int mode, const float *w, float *out) {
    const lsw_model_config &cf = m->cfg;
    const bool xw = xw_ready, actr = act_ready;
    xw_ready = act_ready = false;
    lswc::ShrinkBatch sb;
    const bool pro = fold(L, mat, &sb);  // the shrinks of (L, mat) run in this launch
    if (mode == 1 && actr && out == st->act && !pro) {
      follows = true;  // the gate,up GEMV wrote act (SwiGLU fold): the down GEMV follows it directly
      return cudaSuccess;
    }
    if (mode == 0 && xw && out == st->xn && !pro) {
      pend_w = w;  // the next alin's GEMV normalises (alin / lin launch the norm after all on a path that cannot)
      return cudaSuccess;
    }
    if (pro) {
      for (int j = 0; j < sb.njobs; j++) sb.job[j].x = out;
      preshrunk = true;
      const int D = mode == 0 ? cf.hidden_size : cf.intermediate_size;
      return lswc::prologue_shrink(st->layers[L].dt[mat], mode, D, mode == 0 ? st->x : st->gu, w, cf.rms_norm_eps,
                                   out, sb, s);
    }
    if (mode == 0) return lswc::rmsnorm(c, cf.hidden_size, st->x, cf.hidden_size, w, cf.rms_norm_eps, out, cf.hidden_size, s);
    return lswc::swiglu(c, cf.intermediate_size, st->gu, 2 * cf.intermediate_size, out, cf.intermediate_size, s);
  }

  bool ffn_active(int L) const {
    if (st->ffn < 0 || st->mode == LSW_MODE_BASE || (st->mode == LSW_MODE_MERGE && c == 1)) return false;
    return st->ad[st->ffn].lrouter_mat[L] >= 0;
  }
  // MixLoRA (docs/FORMAT.md "Layer-wise adapters"): x += W_d (Σ_k g_k h_k) + Σ_k g_k ΔD_k h_k,
  // h_k = silu(W_g x + ΔG_k x) ⊙ (W_u x + ΔU_k x); the base gate/up (with other adapters' deltas) runs once.
  cudaError_t ffn_experts(int L) {
    DAdapter &a = st->ad[st->ffn];
    const int H = m->cfg.hidden_size, I = m->cfg.intermediate_size, K = a.K;
    const DLayer &ly = st->layers[L];
    cudaError_t e;
    if ((e = alin(L, LSW_MAT_GATE_UP, st->xn, st->gu, 2 * I, nullptr, false)) != cudaSuccess) return e;  // routes a
    if ((e = lswc::bcast_rows(c, K, 2 * I, st->gu, 2 * I, st->guk, s)) != cudaSuccess) return e;
    for (int k : {LSW_MOD_GATE, LSW_MOD_UP}) {
      const DMod &d = a.mods[(size_t)L * LSW_MOD_COUNT + k];
      if (!d.A) continue;
      const int dt = ly.dt[LSW_MAT_GATE_UP];
      if ((e = lswc::shrink_tok(dt, d.A, d.rank, H, st->xn, H, 0, c, a.ref(L, false), 0, K, d.scale, a.t[k], s))) return e;
      if ((e = lswc::expand_each(dt, d.B, d.rows, d.rank, c, a.ref(L, false), a.t[k], st->guk, 2 * I, d.row0, s)))
        return e;
    }
    if ((e = lswc::mix_act(c, I, a.ref(L), st->guk, st->hk, st->act, s)) != cudaSuccess) return e;
    if ((e = alin(L, LSW_MAT_DOWN, st->act, st->x, H, nullptr, true)) != cudaSuccess) return e;
    const DMod &d = a.mods[(size_t)L * LSW_MOD_COUNT + LSW_MOD_DOWN];
    if (!d.A) return cudaSuccess;
    const int dt = ly.dt[LSW_MAT_DOWN];
    if ((e = lswc::shrink_tok(dt, d.A, d.rank, I, st->hk, K * I, I, c, a.ref(L), 0, K, d.scale, a.t[LSW_MOD_DOWN], s))) return e;
    return lswc::expand_tok(dt, d.B, d.rows, d.rank, c, a.ref(L), 0, K, a.t[LSW_MOD_DOWN], st->x, H, d.row0, s);
  }

  // One forward of c tokens whose ids/positions are in device memory (tok, pos; n_ctx_dev for the graph).
  cudaError_t body(const int *tok, const int *pos, int n_ctx_host, const int *n_ctx_dev, bool all_rows) {
    const lsw_model_config &cf = m->cfg;
    const int H = cf.hidden_size, I = cf.intermediate_size, hd = cf.head_dim, V = cf.vocab_size;
    const int qd = (int)m->q_dim, kvd = (int)m->kv_dim, qkvd = (int)m->qkv_dim;
    const float eps = cf.rms_norm_eps;
    for (auto &a : st->ad) a.routed = false;
    st->merged_this = false;
    out_w = pend_w = nullptr;
    lg_want = lg_have = nullptr;
    xw_ready = act_req = act_ready = follows = false;
    const bool nfold = st->norm_fold && c == 1;  // RMSNorm fold (State::norm_fold): decode steps
    cudaError_t e;
#define K_(x) if ((e = (x)) != cudaSuccess) return e
    K_(lswc::embed(st->emb_dt, st->emb, H, c, tok, st->x, s));
    for (int L = 0; L < cf.num_layers; L++) {
      const DLayer &ly = st->layers[L];
      const size_t kv_off = (size_t)L * cf.max_context * kvd * lswc::dtype_bytes(cf.kv_dtype);
      void *kc = st->kc + kv_off, *vc = st->vc + kv_off;
      const int kvt = cf.kv_dtype;
      K_(norm_or_act(L, LSW_MAT_QKV, 0, ly.attn_norm, st->xn));
      const bool att1 = c == 1 && lswc::attention_decode_ok(cf.num_heads, cf.num_kv_heads, hd, kvd, kvt, st->qkv, kc, vc);
      bool deferred = false;  // (the decode attention below can add the qkv GEMV's LoRA expand: State::qkv_defer)
      K_(alin(L, LSW_MAT_QKV, st->xn, st->qkv, qkvd, ly.bqkv, false, att1 && st->qkv_defer ? st->qkv_dy : nullptr,
              &deferred));
      if (att1) {
        // one launch: RoPE of q and the new k, the new k/v row into the cache, attention, split merge (+ the qkv
        // GEMV's deferred LoRA expand)
        const float *dy = deferred ? st->qkv_dy : nullptr;
        K_(lswc::attention_decode(n_ctx_host, n_ctx_dev, pos, cf.num_heads, cf.num_kv_heads, hd, st->qkv,
                                  st->qkv + qd, st->qkv + qd + kvd, st->inv_freq, kvt, kc, vc, kvd, st->att,
                                  st->attn_scratch, s, st->rope_cs, attn_variant, dy, dy ? dy + qd : nullptr,
                                  dy ? dy + qd + kvd : nullptr));
      } else {
        // q and k heads are contiguous in the fused output: one RoPE launch over nh + nkv heads
        K_(lswc::rope(c, cf.num_heads + cf.num_kv_heads, hd, qkvd, pos, st->inv_freq, st->qkv, s));
        K_(lswc::kv_store(c, kvd, st->qkv, qkvd, qd, pos, kvt, kc, vc, s));
        K_(lswc::attention(c, n_ctx_host, n_ctx_dev, cf.num_heads, cf.num_kv_heads, hd, st->qkv, qkvd, kvt, kc, vc, kvd,
                           st->att, qd, c == 1 ? st->attn_scratch : nullptr, s));
      }
      if (nfold && !ffn_active(L)) out_w = ly.ffn_norm;
      K_(alin(L, LSW_MAT_O, st->att, st->x, H, nullptr, true));  // x += Wo att
      if (ffn_active(L)) {  // MixLoRA whole-FFN experts: x += the gated sum of FFNs
        K_(lswc::rmsnorm(c, H, st->x, H, ly.ffn_norm, eps, st->xn, H, s));
        K_(ffn_experts(L));
        continue;
      }
      K_(norm_or_act(L, LSW_MAT_GATE_UP, 0, ly.ffn_norm, st->xn));
      act_req = st->swiglu_fold && c == 1;
      K_(alin(L, LSW_MAT_GATE_UP, st->xn, st->gu, 2 * I, nullptr, false));
      K_(norm_or_act(L, LSW_MAT_DOWN, 1, nullptr, st->act));
      if (nfold) {
        out_w = L + 1 < cf.num_layers ? st->layers[L + 1].attn_norm : st->norm;
        if (L + 1 < cf.num_layers) want_parts(L + 1, ly.dt[LSW_MAT_DOWN]);
      }
      K_(alin(L, LSW_MAT_DOWN, st->act, st->x, H, nullptr, true));  // x += Wdown act
    }
    if (st->layerwise && adapters_active(m, st) && st->mode == LSW_MODE_MERGE && c == 1)
      K_(lswc::layer_count(cf.num_layers, st->layer_step, st->blk->counters, s));
    out_w = nullptr;
    if (xw_ready) {  // (decode) the last down GEMV wrote x ⊙ norm: the lm_head GEMV normalises
      xw_ready = false;
      pend_w = st->norm;
      K_(lin(st->lm_dt, st->lm, V, H, st->xn, 1, st->logits, V, nullptr, false, nullptr, true));
    } else if (all_rows) {
      K_(lswc::rmsnorm(c, H, st->x, H, st->norm, eps, st->xn, H, s));
      K_(lin(st->lm_dt, st->lm, V, H, st->xn, c, st->logits, V, nullptr, false));
    } else {
      K_(lswc::rmsnorm(1, H, st->x + (size_t)(c - 1) * H, H, st->norm, eps, st->xn, H, s));
      K_(lswc::gemv(st->lm_dt, st->lm, V, H, st->xn, H, 1, st->logits, V, nullptr, false, nullptr, s));
    }
#undef K_
    return cudaSuccess;
  }
};

lsw_status broken_fail() {
  lsw_set_error("the CUDA model is unusable after an earlier device error; free it and load again");
  return LSW_E_DEVICE;
}

// Decode attention kernel of the step at n_past: the forced one, else by context length (State::attn_long)
// ... of a step that appends position n_past
int decode_attn_variant_at(const State *st, int n_past) {
  const int forced = lswc::attn_decode_forced_variant();
  if (forced >= 0) return forced != 0;  // attention_decode runs the tile kernel for any variant but 0
  return st->attn_long > 0 && n_past + 1 >= st->attn_long;
}
int decode_attn_variant(const lsw_model *m, const State *st) { return decode_attn_variant_at(st, m->n_past); }

// The decode step: forward of blk->io[0] at blk->io[1], sampler, advance, copies to pinned host memory.
cudaError_t step_body(lsw_model *m, State *st, int attn_variant) {
  Fwd f{m, st, 1, st->s};
  f.attn_variant = attn_variant;
  DevBlk *b = st->blk;
  const int V = m->cfg.vocab_size;
  cudaError_t e = f.body(b->io, b->io + 1, m->cfg.max_context, b->io + 2, false);
  // greedy exactly when the sampler kernel takes its argmax branch (sampler_greedy): the same token either way
  const bool greedy = lswc::sampler_greedy(m->sampler.temperature, m->sampler.top_k);
  const bool tail = greedy && st->greedy_tail && st->h_out_dev;
  if (e == cudaSuccess && tail)
    e = lswc::greedy_advance(V, st->logits, st->gstate, b->io, &b->sampled, &b->nonfinite, &b->step, b, st->h_out_dev,
                             (int)sizeof(DevBlk), lswc::gemv_pdl(), st->s);
  if (e == cudaSuccess && !tail)
    e = lswc::sample(V, st->logits, m->sampler, &b->step, 0, st->keep, st->pd, &b->sampled, &b->nonfinite, st->s);
  if (e == cudaSuccess && !tail) e = lswc::advance(b->io, &b->sampled, &b->step, st->s);
  if (e == cudaSuccess && !st->logits_lazy)
    e = cudaMemcpyAsync(st->logits_registered ? (void *)m->logits.data() : (void *)st->h_logits, st->logits,
                        sizeof(float) * V, cudaMemcpyDeviceToHost, st->s);
  if (adapters_active(m, st))
    for (auto &a : st->ad) {
      if (e == cudaSuccess) e = cudaMemcpyAsync(a.h_e, a.re, sizeof(int) * a.slots * a.K, cudaMemcpyDeviceToHost, st->s);
      if (e == cudaSuccess) e = cudaMemcpyAsync(a.h_g, a.rg, sizeof(float) * a.slots * a.K, cudaMemcpyDeviceToHost, st->s);
    }
  if (e == cudaSuccess && !tail) e = cudaMemcpyAsync(st->h_out, b, sizeof(DevBlk), cudaMemcpyDeviceToHost, st->s);
  return e;
}

lsw_status capture_step(lsw_model *m, State *st, int mode, int av) {
  cudaGraph_t g = nullptr;
  LSWC_CHECK(cudaStreamBeginCapture(st->s, cudaStreamCaptureModeThreadLocal));
  cudaError_t e = step_body(m, st, av);
  cudaError_t e2 = cudaStreamEndCapture(st->s, &g);
  if (e != cudaSuccess) { if (g) cudaGraphDestroy(g); return lswc_cuda_fail(e, "capturing the decode step", __FILE__, __LINE__); }
  LSWC_CHECK(e2);
  size_t nn = 0;
  cudaGraphGetNodes(g, nullptr, &nn);
  e = cudaGraphInstantiate(&st->graph[mode][av], g, 0);
  cudaGraphDestroy(g);
  LSWC_CHECK(e);
  st->graph_nodes[mode][av] = (int)nn;
  st->graph_sp[mode][av] = m->sampler;
  if (lswc::cuda_verbose())
    fprintf(stderr, "lswc: decode graph captured: mode %d, %d nodes, decode attention kernel %d (from %d positions)\n",
            mode, (int)nn, av, m->n_past + 1);
  return LSW_OK;
}

void append_history(lsw_model *m, State *st, int c, const std::vector<int> *he, const std::vector<float> *hg) {
  for (size_t i = 0; i < st->ad.size(); i++) {
    lsw_adapter &a = *m->adapters[i];
    const DAdapter &d = st->ad[i];
    const size_t n = (size_t)c * d.slots * d.K;
    if (st->mode == LSW_MODE_BASE) {  // adapters.cpp: base mode records -1 / 0
      a.hist_e.insert(a.hist_e.end(), n, -1);
      a.hist_g.insert(a.hist_g.end(), n, 0.f);
    } else if (he) {
      a.hist_e.insert(a.hist_e.end(), he[i].begin(), he[i].begin() + n);
      a.hist_g.insert(a.hist_g.end(), hg[i].begin(), hg[i].begin() + n);
    } else {
      a.hist_e.insert(a.hist_e.end(), d.h_e, d.h_e + n);
      a.hist_g.insert(a.hist_g.end(), d.h_g, d.h_g + n);
    }
  }
}

bool same_sampler(const lsw_sampler_params &a, const lsw_sampler_params &b) {
  return a.temperature == b.temperature && a.top_k == b.top_k && a.top_p == b.top_p && a.min_p == b.min_p &&
         a.seed == b.seed;
}

// The host's bookkeeping after n decode steps have completed on the stream (the device's outputs are those of the
// last one: its logits and counters; each step's routing is read from the same pinned buffers)
void steps_done(lsw_model *m, State *st, int n) {
  st->dev_valid = true;
  if (st->logits_lazy) st->logits_on_dev = true;
  else if (!st->logits_registered) memcpy(m->logits.data(), st->h_logits, sizeof(float) * m->cfg.vocab_size);
  m->have_logits = true;
  m->n_past += n;
  m->merge_steps = st->h_out->counters[0];
  m->merge_skipped = st->h_out->counters[1];
  for (int i = 0; i < n; i++) append_history(m, st, 1, nullptr, nullptr);
}

// The sampler kernel flagged the step's logits: the token is appended (the step is done), nothing was sampled.  The
// logits come to the host, where lsw::check_logits counts them for the message (as the CPU backend reports it).
// Only lsw_model_step samples: the steps a merge-mode prompt runs per token, a single-token eval and bench_decode
// drop their picks (their callers see the logits), so they do not fail on the flag.
lsw_status nonfinite_fail(lsw_model *m) {
  if (lsw_status st = lswc_model_fetch_logits(m)) return st;
  if (lsw_status st = lsw::check_logits(m->cfg.vocab_size, m->logits.data(), m->n_past - 1)) return st;
  lsw_set_error("position %d: the CUDA sampler flagged finite logits as non-finite", m->n_past - 1);
  return LSW_E_INTERNAL;
}

// One decode step through the graph (or eagerly with LSW_CUDA_GRAPH=0): returns the sampled token.
// ev0 / ev1 (bench_decode with LSW_CUDA_BENCH_EVENTS): recorded on the stream before the step's first copy and after
// its graph, so that their interval is the step's device time without the host's launch and synchronisation.
lsw_status run_step(lsw_model *m, State *st, int32_t token, int32_t *next, cudaEvent_t ev0 = nullptr,
                    cudaEvent_t ev1 = nullptr) {
  const int mode = st->mode;
  auto fail = [&](cudaError_t e, const char *what) {
    st->broken = e != cudaErrorMemoryAllocation;
    return lswc_cuda_fail(e, what, __FILE__, __LINE__);
  };
  cudaError_t e = ev0 ? cudaEventRecord(ev0, st->s) : cudaSuccess;
  if (e != cudaSuccess) return fail(e, "decode step event");
  if (!(st->dev_valid && st->h_out->io[0] == token && st->h_out->io[1] == m->n_past &&
        st->h_out->step == m->sample_step)) {
    st->h_in->io[0] = token;
    st->h_in->io[1] = m->n_past;
    st->h_in->io[2] = m->n_past + 1;
    st->h_in->io[3] = 0;
    st->h_in->step = m->sample_step;
    e = cudaMemcpyAsync(st->blk, st->h_in, offsetof(DevBlk, counters), cudaMemcpyHostToDevice, st->s);
    if (e != cudaSuccess) return fail(e, "decode step input");
  }
  const int av = decode_attn_variant(m, st);
  if (st->use_graph) {
    cudaGraphExec_t &gx = st->graph[mode][av];
    if (gx && !same_sampler(st->graph_sp[mode][av], m->sampler)) {
      cudaGraphExecDestroy(gx);
      gx = nullptr;
    }
    if (!gx) TRY(capture_step(m, st, mode, av));
    st->last_nodes = st->graph_nodes[mode][av];
    e = cudaGraphLaunch(gx, st->s);
  } else {
    e = step_body(m, st, av);
  }
  if (e == cudaSuccess && ev1) e = cudaEventRecord(ev1, st->s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st->s);
  if (e != cudaSuccess) return fail(e, "decode step");
  steps_done(m, st, 1);
  *next = st->h_out->sampled;  // (nonfinite flags a pick from NaN / infinite logits: lswc_model_step reports it)
  return LSW_OK;
}

}  // namespace

using lswc::env_flag;  // (common.cu)
using lswc::env_mode012;

// Merge mode, one adapter: pick the faster tensor-core SGMM variant (autotune_sgmm) on these very descriptors before
// any capture.  Synthetic routes (experts 0..K-1, gates 1/K) are merged into the working copies meanwhile; the merge
// flags are still 0, so the first real step merges again.  LSW_CUDA_AUTOTUNE=0 skips.
static lsw_status autotune_merge(State *st, const lswc::SgmmDesc *descs, int n, int tiles, int max_rank) {
  if (!env_flag("LSW_CUDA_AUTOTUNE", true)) return LSW_OK;
  const int K = st->ad[0].K, E = st->ad[0].E;
  std::vector<int> he(K);
  std::vector<float> hg(K, 1.f / K);
  for (int k = 0; k < K; k++) he[k] = k % E;
  int *de = nullptr;
  float *dg = nullptr;
  TRY(dalloc(st, &de, (size_t)K));
  TRY(dalloc(st, &dg, (size_t)K));
  LSWC_CHECK(cudaMemcpy(de, he.data(), sizeof(int) * K, cudaMemcpyHostToDevice));
  LSWC_CHECK(cudaMemcpy(dg, hg.data(), sizeof(float) * K, cudaMemcpyHostToDevice));
  lswc::autotune_sgmm(st->sg_dt, descs, n, tiles, K, de, dg, st->s, max_rank);
  LSWC_CHECK(cudaStreamSynchronize(st->s));
  return LSW_OK;
}

lsw_status lswc_model_finalize(lsw_model *m) {
  const lsw_model_config &cf = m->cfg;
  if (cf.head_dim > 256 || cf.head_dim % 2) {
    lsw_set_error("the CUDA backend supports head_dim <= 256 (even); this model has %d", cf.head_dim);
    return LSW_E_UNSUPPORTED;
  }
  if ((int)m->adapters.size() > lswc::kMaxTerms) {
    lsw_set_error("the CUDA backend runs at most %d adapters at once (%d registered)", lswc::kMaxTerms,
                  (int)m->adapters.size());
    return LSW_E_UNSUPPORTED;
  }
  for (auto &ap : m->adapters) {
    for (int L = 0; L < cf.num_layers; L++)
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        const lsw_adapter_mod &am = ap->mods[L][k];
        if (!am.A) continue;
        const int wdt = m->layers[L].mat[m->module_range(L, k).mat].dtype;
        if (am.A->dtype != wdt || am.B->dtype != wdt) {
          lsw_set_error("adapter %d: layers.%d module %d: LoRA tensors must have the model's dtype on the CUDA backend",
                        ap->id, L, k);
          return LSW_E_UNSUPPORTED;
        }
      }
  }
  State *st = new (std::nothrow) State();
  if (!st) { lsw_set_error("out of host memory"); return LSW_E_OUT_OF_MEMORY; }
  m->cuda = st;  // lswc_model_free releases whatever was allocated, also on failure below
  st->device = cf.device;
  st->mode = m->mode;
  st->precise = !env_flag("LSW_CUDA_FAST_GEMM", cf.prefill_precision == LSW_PRECISION_FAST);  // env overrides the config
  st->use_graph = env_flag("LSW_CUDA_GRAPH", true);
  {
    const char *el = getenv("LSW_CUDA_STEP_LOGITS");
    st->logits_lazy = !(el && !strcmp(el, "copy"));
  }
  st->greedy_tail = env_flag("LSW_CUDA_GREEDY_TAIL", true);
  st->delta_gemm = env_flag("LSW_CUDA_PROMPT_DELTA_GEMM", true);
  // programmatic dependent launch for the GEMVs and LoRA shrinks (validated in cuda/dev; on the H200 the 7B base
  // decode went 4.55 -> 4.45 ms/token with it): on by default, LSW_CUDA_PDL=0 switches it off
  lswc::gemv_set_pdl(env_flag("LSW_CUDA_PDL", true));
  // the GEMV tuner times its chains launched as the decode launches them (gemv.cu g_tune_pdl, session 26: 7B q,k,v
  // v4 -> v10, base -2.1 to -2.4 %); LSW_CUDA_GEMV_TUNE_PDL=0: plain launches, as before
  lswc::gemv_set_tune_pdl(env_flag("LSW_CUDA_GEMV_TUNE_PDL", true));
  // ... and takes v11 where it timed within 3 % of the fastest (gemv.cu kTunePreferred, session 38);
  // LSW_CUDA_GEMV_PREFER=0: the fastest alone
  lswc::gemv_set_tune_prefer(env_flag("LSW_CUDA_GEMV_PREFER", true));
  // a GEMV folding a RMSNorm in computes its rs right after its wait (session 27; gemv.cu g_fold_rs_early);
  // LSW_CUDA_FOLD_RS=late: after its main loop, as before
  {
    const char *ef = getenv("LSW_CUDA_FOLD_RS");
    lswc::gemv_set_fold_rs_early(!(ef && !strcmp(ef, "late")));
  }
  {  // PDL scope beyond the GEMVs.  LSW_CUDA_PDL_NORM=1 launches the RMSNorm + SwiGLU with PDL too (off: slower on the
     // H200, bench/results session 8).  The decode attention launches with PDL by default since session 26
     // (LSW_CUDA_PDL_ATTN=0: plainly): neutral while the q,k,v GEMV before it ran as one wave of v4 blocks (sessions
     // 15, 21), but with the PDL tuner's v10 there 7B base went 3.655 / 3.664 -> 3.621 / 3.648 ms/token and all-linear
     // r64 fused 4.222 / 4.228 -> 4.188 / 4.188 in two interleaved rounds (bench/results/2026-12-02-h200-session26
     // run 5); run 6 passed test_cuda, test_forward x3 and end to end 153/153 with it
    lswc::pdl_set_scope(env_flag("LSW_CUDA_PDL_NORM", false), env_flag("LSW_CUDA_PDL_ATTN", true));
    // the GEMVs that fold a RMSNorm in (right after the GEMV that produced x) with PDL too, and plain GEMVs letting
    // their dependents launch at their start, LoRA GEMVs after their main loop (session 24, gemv.cu g_trigger_late:
    // q,v r16 fused 1.02 -> 1.00 x and layer-wise q,v r16 fused 1.10 -> 1.08 x base on two H200s; base itself -1.8 %
    // on one, +0.6 % on the other).  LSW_CUDA_PDL_FOLD_IN=0: the folding GEMVs launch plainly (the default before);
    // LSW_CUDA_GEMV_TRIGGER=late | start: every GEMV triggers late (the default before) / at its start
    lswc::pdl_set_fold_in(env_flag("LSW_CUDA_PDL_FOLD_IN", true));
    // the decode-time routers launch with PDL too (sample.cu; session 25 runs 1-2 on H200s: layer-wise q,v r16
    // merge 5.91 -> 5.87 ms in three interleaved pairs, the other benches unchanged); LSW_CUDA_PDL_ROUTER=0: plainly
    // (the default until session 25)
    lswc::route_set_pdl(env_flag("LSW_CUDA_PDL_ROUTER", true));
    const char *et = getenv("LSW_CUDA_GEMV_TRIGGER");
    const bool all_late = et && !strcmp(et, "late"), all_start = et && !strcmp(et, "start");
    lswc::gemv_set_trigger(all_late, !all_start);
    // in-kernel-shrink LoRA GEMVs past one wave: variant 10 unless LSW_CUDA_GEMV_LORA_DEFAULT=N (0: the plain choice)
    const char *elv = getenv("LSW_CUDA_GEMV_LORA_DEFAULT");
    lswc::gemv_set_lora_default(elv && *elv ? atoi(elv) : lswc::kGemvLoraWaveVariant);
  }
  // decode attention: the K/V tile kernel from this many positions on (0: never, the default).  Session 18 had
  // Llama-2-7B base gain 1.2-2.9 % with it from 1,024 positions; since the register kernel runs in one wave (session
  // 33) and serves GQA with a block per query head (session 39) it loses at every context in the whole decode.
  //  - GQA (bench/results/2026-12-04-h200-session39/run2-gqa-long-context): llama3-8b with 1,024 / 2,048 / 3,968-token
  //    prompts 4.502 / 4.621 / 4.822 ms/token with it against 3.966 / 4.040 / 4.239 without; qwen2.5-7b 4.817 / 5.193
  //    against 3.787 / 3.883 at 2,048 / 3,968.
  //  - MHA (bench/results/2026-12-05-h200-session42/run2-long-context, two interleaved rounds): llama2-7b at 1,024 /
  //    2,048 / 3,968 prompt tokens 3.918-3.925 / 4.103 / 4.374-4.377 ms/token with it, 3.596-3.605 / 3.737 /
  //    3.966-3.974 without.  Longer GQA contexts as well: llama3-8b after 8,000 tokens 5.423 against 4.747,
  //    qwen2.5-7b after 16,000 8.285 against 4.839.
  //  - Session 54 (bench/results/2026-12-06-h100-session54, H100s, base ms/token, two rounds of alternating
  //    processes): the tile kernel's wide tiles (8 warps, 32-row tiles, the merge spread over the group's heads) for
  //    grouped-query attention with a 16-bit cache, against the register kernel throughout.  From 1,024 positions:
  //    llama3-8b (G 4) after 3,000 / 4,096 / 5,000 / 6,144 / 8,000 prompt tokens +0.7 / -0.4 / 0 / -2.8 / -2.9 %;
  //    qwen2.5-7b (G 7) +1.9 / +1.8 / +0.7 / +0.7 / -1.8 %, and after 16,000 6.05 -> 5.59 ms (-7.6 %).  So such
  //    models switch at 4,096 positions (G <= 4) or 7,168 (G 5..8: between its losing 6,144 and winning 8,000).
  {
    const int G = cf.num_heads / cf.num_kv_heads;  // (lsw_validate_config: a whole number)
    const bool kv16 = cf.kv_dtype == LSW_DTYPE_F16 || cf.kv_dtype == LSW_DTYPE_BF16;
    if (G > 1 && G <= 8 && kv16 && cf.head_dim <= 128)
      st->attn_long = G <= 4 ? kAttnLongGqa4 : kAttnLongGqa8;
  }
  if (const char *ev = getenv("LSW_CUDA_ATTN_LONG"); ev && *ev) st->attn_long = std::max(0, atoi(ev));
  // decode attention with 8 positions in flight per warp (MHA, head_dim <= 128)
  lswc::attn_decode_set_p8(env_flag("LSW_CUDA_ATTN_P8", false));
  // merge mode: the tensor-core SGMM by default where it applies (one adapter, F16/BF16, rank % 16 == 0: sgmm_tc_ok;
  // layer-wise routers: one launch per layer and fused matrix); still recomputed from the pristine weights
  // (drift-free), within 1 ulp of the exact-order kernel.  LSW_CUDA_SGMM_EXACT=1 (or LSW_CUDA_SGMM_TC=0) keeps the
  // exact SIMT kernel (bit-identical to the CPU).
  const bool want_tc = !env_flag("LSW_CUDA_SGMM_EXACT", false) && env_flag("LSW_CUDA_SGMM_TC", true);
  // the streaming SGMM's top-1 consumer (sgmm.cu s3_top1_mma, session 26: r64 top-1 82.4 -> 84.1-84.5 % of copy);
  // LSW_CUDA_SGMM_TOP1=0: the general consumer for top-1 too (same bits)
  lswc::sgmm_set_stream_top1(env_flag("LSW_CUDA_SGMM_TOP1", true));
  // top-1 SGMMs in 32-row half tiles (sgmm.cu s3_top1_half, session 46): LSW_CUDA_SGMM_HALF=0 for whole tiles (same bits)
  lswc::sgmm_set_stream_half(env_flag("LSW_CUDA_SGMM_HALF", true));
  // the streaming SGMM's wgmma consumer (sgmm.cu s3_wg_*, session 61; sm_90a): LSW_CUDA_SGMM_WGMMA=0 off, 1 (default)
  // where top_k x max rank is 128 (r64 top-2), 2 where it is 64 too (same bits in every mode)
  lswc::sgmm_set_stream_wgmma(env_mode012("LSW_CUDA_SGMM_WGMMA", 1));
  // LSW_CUDA_SGMM_LOCK=0 / 1 / 2: the streaming SGMM's lockstep schedule off / where it pays (default) / wherever the
  // matrices have one shape (sgmm.cu s3_segments, session 51; same bits)
  lswc::sgmm_set_stream_lock(env_mode012("LSW_CUDA_SGMM_LOCK", 1));
  LSWC_CHECK(cudaSetDevice(cf.device));
  LSWC_CHECK(cudaStreamCreateWithFlags(&st->s, cudaStreamNonBlocking));
  for (auto &kv : m->random_dev) {
    auto it = m->tensors.find(kv.first);
    if (it != m->tensors.end()) st->random_dev[it->second.data] = {&it->second, kv.second};
  }

  const int H = cf.hidden_size, I = cf.intermediate_size, V = cf.vocab_size;
  const size_t kvd = (size_t)m->kv_dim;
  st->layers.resize(cf.num_layers);
  for (int L = 0; L < cf.num_layers; L++) {
    const lsw_layer &ly = m->layers[L];
    DLayer &d = st->layers[L];
    const void *p;
    TRY(upload(m, st, ly.attn_norm, sizeof(float) * H, &p)); d.attn_norm = (const float *)p;
    TRY(upload(m, st, ly.ffn_norm, sizeof(float) * H, &p)); d.ffn_norm = (const float *)p;
    if (ly.bqkv) { TRY(upload(m, st, ly.bqkv, sizeof(float) * m->qkv_dim, &p)); d.bqkv = (const float *)p; }
    for (int k = 0; k < LSW_MAT_COUNT; k++) {
      const lsw_weight &w = ly.mat[k];
      TRY(upload(m, st, w.data, w.t->nbytes, &d.w[k]));
      d.dt[k] = w.dtype; d.rows[k] = (int)w.rows; d.cols[k] = (int)w.cols; d.bytes[k] = w.t->nbytes;
    }
  }
  TRY(upload(m, st, m->tok_emb.data, m->tok_emb.t->nbytes, &st->emb));
  st->emb_dt = m->tok_emb.dtype;
  TRY(upload(m, st, m->lm_head.data, m->lm_head.t->nbytes, &st->lm));
  st->lm_dt = m->lm_head.dtype;
  {
    const void *p;
    TRY(upload(m, st, m->norm, sizeof(float) * H, &p));
    st->norm = (const float *)p;
  }
  // bytes (kv_dtype checked by lsw_validate_config at lsw_model_create)
  const size_t kvn = (size_t)cf.num_layers * cf.max_context * kvd * lswc::dtype_bytes(cf.kv_dtype);
  TRY(dalloc(st, &st->kc, kvn));
  TRY(dalloc(st, &st->vc, kvn));
  {
    const char *ch = getenv("LSW_CUDA_PREFILL_CHUNK");
    const long v = ch && *ch ? strtol(ch, nullptr, 10) : kMaxChunk;
    st->chunk = (int)std::max(1L, std::min<long>(v > 0 ? v : kMaxChunk, cf.max_context));
  }
  const size_t T = st->chunk;
  TRY(dalloc(st, &st->x, T * H));
  TRY(dalloc(st, &st->xn, T * H));
  TRY(dalloc(st, &st->qkv, T * m->qkv_dim));
  TRY(dalloc(st, &st->att, T * m->q_dim));
  TRY(dalloc(st, &st->gu, T * 2 * I));
  TRY(dalloc(st, &st->act, T * I));
  TRY(dalloc(st, &st->logits, std::min<size_t>(T, kLogitRows) * V));
  TRY(dalloc(st, &st->tokens, T));
  TRY(dalloc(st, &st->pos, T));
  TRY(dalloc(st, &st->blk, 1));
  LSWC_CHECK(cudaMemset(st->blk, 0, sizeof(DevBlk)));
  TRY(dalloc(st, &st->keep, (size_t)V));
  TRY(dalloc(st, &st->pd, lswc::sample_scratch_doubles(V)));
  TRY(dalloc(st, &st->attn_scratch, lswc::attn_scratch_floats(cf.num_heads, cf.head_dim)));
  LSWC_CHECK(lswc::attn_scratch_clear(st->attn_scratch, cf.num_heads, cf.head_dim, st->s));
  {
    const char *fs = getenv("LSW_CUDA_FUSED_SHRINK");
    st->shrink_in_gemv = !(fs && !strcmp(fs, "separate"));
    st->shrink_early = !(fs && !strcmp(fs, "late"));
    const size_t n = (size_t)cf.num_layers * LSW_MAT_COUNT * kSyncStride;
    if (!m->adapters.empty()) {  // only the fused decode of an adapter uses them
      TRY(dalloc(st, &st->shr_sync, n));
      LSWC_CHECK(cudaMemset(st->shr_sync, 0, n * sizeof(int)));
      st->qkv_defer = env_flag("LSW_CUDA_QKV_DEFER", true);
      if (st->qkv_defer) TRY(dalloc(st, &st->qkv_dy, (size_t)m->qkv_dim));
    }
    st->route_fold = env_flag("LSW_CUDA_ROUTE_FOLD", true);
    st->route_in_shrink = env_flag("LSW_CUDA_ROUTE_IN_SHRINK", true);
    st->norm_fold = env_flag("LSW_CUDA_NORM_FOLD", true);
    st->swiglu_fold = env_flag("LSW_CUDA_SWIGLU_FOLD", true);
    if (st->norm_fold) TRY(dalloc(st, &st->nf_part, (size_t)lswc::gemv_fold_parts(H)));
    st->route_parts = st->norm_fold && st->route_fold && st->route_in_shrink && env_flag("LSW_CUDA_ROUTE_PARTS", true);
    if (st->route_parts) TRY(dalloc(st, &st->lg_part, (size_t)lswc::gemv_fold_parts(H) * lswc::kRoutePartE));
  }
  int maxk = H > I ? H : I;
  if ((int)m->q_dim > maxk) maxk = (int)m->q_dim;
  TRY(dalloc(st, &st->xbuf, lswc::gemm_xbuf_bytes((int)T, maxk)));
  TRY(dalloc(st, &st->inv_freq, m->inv_freq.size()));
  LSWC_CHECK(cudaMemcpy(st->inv_freq, m->inv_freq.data(), m->inv_freq.size() * sizeof(double), cudaMemcpyHostToDevice));
  if ((int)m->inv_freq.size() == cf.head_dim / 2 && cf.head_dim % 2 == 0) {
    TRY(dalloc(st, &st->rope_cs, (size_t)cf.max_context * (cf.head_dim / 2)));
    LSWC_CHECK(lswc::rope_table(cf.max_context, cf.head_dim, st->inv_freq, st->rope_cs, st->s));
  }
  LSWC_CHECK(cudaMallocHost(&st->h_in, sizeof(DevBlk)));
  LSWC_CHECK(cudaMallocHost(&st->h_out, sizeof(DevBlk)));
  memset(st->h_in, 0, sizeof(DevBlk));
  memset(st->h_out, 0, sizeof(DevBlk));
  {  // the greedy tail writes h_out through its device address (page-locked memory is mapped under unified addressing)
    void *dp = nullptr;
    if (cudaHostGetDevicePointer(&dp, st->h_out, 0) == cudaSuccess) st->h_out_dev = static_cast<DevBlk *>(dp);
    else cudaGetLastError();  // no mapping: the copy node stays
    TRY(dalloc(st, &st->gstate, (size_t)1));
    LSWC_CHECK(cudaMemset(st->gstate, 0, sizeof(lswc::GreedyState)));
  }
  // the graph copies the logits straight into m->logits when it can be page-locked in place
  if (cudaHostRegister(m->logits.data(), sizeof(float) * V, cudaHostRegisterDefault) == cudaSuccess) {
    st->logits_registered = true;
  } else {
    cudaGetLastError();
    LSWC_CHECK(cudaMallocHost(&st->h_logits, sizeof(float) * V));
  }

  // ---- adapters ----
  const int NA = (int)m->adapters.size();
  st->ad.resize(NA);
  int sumK = 0;
  for (int i = 0; i < NA; i++) {
    const lsw_adapter &a = *m->adapters[i];
    DAdapter &d = st->ad[i];
    d.kind = a.desc.router_kind;
    d.K = a.desc.top_k;
    d.E = a.desc.num_experts;
    d.slots = d.kind == LSW_ROUTER_LAYERWISE ? cf.num_layers : 1;
    d.ffn = a.desc.ffn_experts != 0;
    if (d.ffn) st->ffn = i;
    sumK += d.K;
    if (d.kind == LSW_ROUTER_LAYERWISE) {
      st->layerwise = true;
      d.lrouter.assign(cf.num_layers, nullptr);
      d.lrouter_mat.assign(cf.num_layers, -1);
      d.lrouter_dim.assign(cf.num_layers, 0);
      d.lrouter_dt.assign(cf.num_layers, 0);
      for (int L = 0; L < cf.num_layers; L++) {
        if (a.router_mat[L] < 0 || !a.layer_router[L]) continue;
        TRY(upload(m, st, a.layer_router[L]->data, a.layer_router[L]->nbytes, &d.lrouter[L]));
        d.lrouter_mat[L] = a.router_mat[L];
        d.lrouter_dim[L] = (int)a.layer_router[L]->shape[1];
        d.lrouter_dt[L] = a.layer_router[L]->dtype;
      }
    }
    if (d.kind == LSW_ROUTER_PREGATED) {
      d.router_mat = m->module_range(0, a.desc.router_input).mat;
      TRY(upload(m, st, a.router->data, a.router->nbytes, &d.router));
      d.router_dt = a.router->dtype;
      d.router_dim = (int)a.router->shape[1];
    }
    d.mods.assign((size_t)cf.num_layers * LSW_MOD_COUNT, DMod{});
    int maxr[LSW_MOD_COUNT] = {};
    for (int L = 0; L < cf.num_layers; L++)
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        const lsw_adapter_mod &am = a.mods[L][k];
        if (!am.A) continue;
        const lsw_module_range r = m->module_range(L, k);
        DMod &dm = d.mods[(size_t)L * LSW_MOD_COUNT + k];
        TRY(upload(m, st, am.A->data, am.A->nbytes, &dm.A));
        TRY(upload(m, st, am.B->data, am.B->nbytes, &dm.B));
        dm.rank = (int)am.rank; dm.row0 = (int)r.row0; dm.rows = (int)r.rows; dm.cols = (int)r.cols; dm.mat = r.mat;
        dm.scale = am.scale;
        if (dm.rank > maxr[k]) maxr[k] = dm.rank;
        DLayer &ly = st->layers[L];
        if (!ly.work[r.mat]) {  // working copy of the fused matrix (merge mode), initially W0
          TRY(dalloc(st, &ly.work[r.mat], ly.bytes[r.mat]));
          LSWC_CHECK(cudaMemcpy(ly.work[r.mat], ly.w[r.mat], ly.bytes[r.mat], cudaMemcpyDeviceToDevice));
        }
      }
    for (int k = 0; k < LSW_MOD_COUNT; k++)
      if (maxr[k]) TRY(dalloc(st, &d.t[k], T * d.K * maxr[k]));
    const size_t nr = T * d.slots * d.K;
    TRY(dalloc(st, &d.re, nr));
    TRY(dalloc(st, &d.rg, nr));
    // STATIC: expert 0, gate 1 for every row (never rewritten); LAYERWISE: -1 / 0 in layers without a router
    const bool lw = d.kind == LSW_ROUTER_LAYERWISE;
    std::vector<int> e0(nr, lw ? -1 : 0);
    std::vector<float> g0(nr, lw ? 0.f : 1.f);
    LSWC_CHECK(cudaMemcpy(d.re, e0.data(), nr * sizeof(int), cudaMemcpyHostToDevice));
    LSWC_CHECK(cudaMemcpy(d.rg, g0.data(), nr * sizeof(float), cudaMemcpyHostToDevice));
    LSWC_CHECK(cudaMallocHost(&d.h_e, sizeof(int) * d.slots * d.K));
    LSWC_CHECK(cudaMallocHost(&d.h_g, sizeof(float) * d.slots * d.K));
  }
  {  // prompt-delta GEMM scratch: [chunk][max over adapters and modules of E * rank]
    int w = 0;
    for (auto &d : st->ad)
      if (!d.ffn)
        for (auto &dm : d.mods)
          if (dm.A) w = std::max(w, d.E * dm.rank);
    if (w > 0 && st->chunk > 1) {
      TRY(dalloc(st, &st->tall, (size_t)st->chunk * w));
      st->tall_w = w;
    }
  }
  if (NA) {
    // merge mode: the merge check and the SGMM descriptors (one per adapted module of every layer)
    st->mc.n = NA;
    for (int i = 0; i < NA; i++) {
      st->mc.experts[i] = st->ad[i].re;
      st->mc.gates[i] = st->ad[i].rg;
      st->mc.top_k[i] = st->ad[i].K;
    }
    TRY(dalloc(st, &st->mc.prev_e, (size_t)sumK));
    TRY(dalloc(st, &st->mc.prev_g, (size_t)sumK));
    st->mc.merged = &st->blk->merged;
    st->mc.skip = &st->blk->skip;
    st->mc.counters = st->blk->counters;
    std::vector<lswc::SgmmTermsDesc> ds;
    std::vector<lswc::SgmmDesc> tcs;
    std::vector<int> ds_lm;  // (layer, mat) of each descriptor
    bool tc = want_tc && NA == 1;
    st->sg_dt = -1;
    bool mixed_dt = false;
    for (int L = 0; L < cf.num_layers; L++)
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        lswc::SgmmTermsDesc d{};
        const lsw_module_range r = m->module_range(L, k);
        const DLayer &ly = st->layers[L];
        const size_t es = lswc::dtype_bytes(ly.dt[r.mat]);
        for (int i = 0; i < NA; i++) {
          const DMod &dm = st->ad[i].mods[(size_t)L * LSW_MOD_COUNT + k];
          if (!dm.A) continue;
          d.term[d.nterm++] = {dm.A, dm.B, st->ad[i].ex(L), st->ad[i].gt(L), dm.rank, st->ad[i].K, dm.scale};
        }
        if (!d.nterm) continue;
        if (st->sg_dt >= 0 && st->sg_dt != ly.dt[r.mat]) mixed_dt = true;
        st->sg_dt = ly.dt[r.mat];
        d.W0 = (const char *)ly.w[r.mat] + (size_t)r.row0 * r.cols * es;
        d.W = (char *)ly.work[r.mat] + (size_t)r.row0 * r.cols * es;
        d.rows = (int)r.rows;
        d.cols = (int)r.cols;
        ds.push_back(d);
        ds_lm.push_back(L * LSW_MAT_COUNT + r.mat);
        lswc::SgmmDesc t{};
        t.W0 = d.W0; t.W = d.W; t.A = d.term[0].A; t.B = d.term[0].B;
        t.rows = d.rows; t.cols = d.cols; t.rank = d.term[0].rank; t.slot = 0; t.scale = d.term[0].scale;
        tc = tc && lswc::sgmm_tc_ok(ly.dt[r.mat], t);
        tcs.push_back(t);
      }
    if (mixed_dt) {
      lsw_set_error("the CUDA backend needs one weight dtype for all adapted matrices (merge mode)");
      return LSW_E_UNSUPPORTED;
    }
    if (st->layerwise) {  // per (layer, mat) ranges of the same descriptors, each with its own merge check
      const int NM = cf.num_layers * LSW_MAT_COUNT;
      std::vector<lswc::SgmmTermsDesc> lds = ds;
      st->lm_off.assign(NM, 0); st->lm_n.assign(NM, 0); st->lm_tiles.assign(NM, 0);
      st->lm_mc.assign(NM, lswc::MergeCheck{});
      TRY(dalloc(st, &st->lm_flags, (size_t)NM * 2));
      TRY(dalloc(st, &st->layer_step, (size_t)cf.num_layers));
      LSWC_CHECK(cudaMemset(st->lm_flags, 0, sizeof(int) * NM * 2));
      LSWC_CHECK(cudaMemset(st->layer_step, 0, sizeof(int) * cf.num_layers));
      size_t q = 0;
      for (int L = 0; L < cf.num_layers; L++)
        for (int mat = 0; mat < LSW_MAT_COUNT; mat++) {
          const int i = L * LSW_MAT_COUNT + mat;
          st->lm_off[i] = (int)q;
          while (q < lds.size() && ds_lm[q] == i) q++;
          st->lm_n[i] = (int)q - st->lm_off[i];
          st->lm_tiles[i] = lswc::sgmm_terms_prepare(lds.data() + st->lm_off[i], st->lm_n[i]);
          lswc::MergeCheck &mc = st->lm_mc[i];
          mc.n = 0;
          for (int a = 0; a < NA; a++) {
            bool on = false;
            for (int k = 0; k < LSW_MOD_COUNT && !on; k++)
              on = st->ad[a].mods[(size_t)L * LSW_MOD_COUNT + k].A && m->module_range(L, k).mat == mat;
            if (!on) continue;
            mc.experts[mc.n] = st->ad[a].ex(L);
            mc.gates[mc.n] = st->ad[a].gt(L);
            mc.top_k[mc.n] = st->ad[a].K;
            mc.n++;
          }
          if (!st->lm_n[i]) continue;
          TRY(dalloc(st, &mc.prev_e, (size_t)sumK));
          TRY(dalloc(st, &mc.prev_g, (size_t)sumK));
          mc.merged = st->lm_flags + 2 * i;
          mc.skip = st->lm_flags + 2 * i + 1;
          mc.counters = st->blk->counters;
          mc.layer_step = st->layer_step + L;
        }
      TRY(dalloc(st, (void **)&st->lm_descs, lds.size() * sizeof(lswc::SgmmTermsDesc)));
      LSWC_CHECK(cudaMemcpy(st->lm_descs, lds.data(), lds.size() * sizeof(lswc::SgmmTermsDesc), cudaMemcpyHostToDevice));
      if (tc) {  // the tensor-core kernel per (layer, mat): the same ranges of tcs (pushed with ds), tiles per range
        st->lm_tc_tiles.assign(NM, 0);
        st->lm_tc_maxr.assign(NM, 0);
        for (int i = 0; i < NM; i++)
          if (st->lm_n[i])
            st->lm_tc_tiles[i] = lswc::sgmm_prepare(tcs.data() + st->lm_off[i], st->lm_n[i], true, &st->lm_tc_maxr[i]);
        TRY(dalloc(st, (void **)&st->lm_tc_descs, tcs.size() * sizeof(lswc::SgmmDesc)));
        LSWC_CHECK(cudaMemcpy(st->lm_tc_descs, tcs.data(), tcs.size() * sizeof(lswc::SgmmDesc), cudaMemcpyHostToDevice));
        st->lm_tc = true;
        // autotuned on the first non-empty range
        int i0 = 0;
        while (i0 < NM && !st->lm_n[i0]) i0++;
        if (i0 < NM)
          TRY(autotune_merge(st, st->lm_tc_descs + st->lm_off[i0], st->lm_n[i0], st->lm_tc_tiles[i0], st->lm_tc_maxr[i0]));
      }
      tc = false;  // (the all-layer tensor-core merge below is for pre-gated / static routes)
    }
    if (st->ffn >= 0) {
      const int K = st->ad[st->ffn].K;
      TRY(dalloc(st, &st->guk, T * K * 2 * I));
      TRY(dalloc(st, &st->hk, T * K * I));
    }
    st->sg_n = (int)ds.size();
    st->sg_tiles = lswc::sgmm_terms_prepare(ds.data(), st->sg_n);
    TRY(dalloc(st, (void **)&st->sg_descs, ds.size() * sizeof(lswc::SgmmTermsDesc)));
    LSWC_CHECK(cudaMemcpy(st->sg_descs, ds.data(), ds.size() * sizeof(lswc::SgmmTermsDesc), cudaMemcpyHostToDevice));
    if (tc) {
      // one launch merges every descriptor, in any order: the matrices of one shape side by side, so that the streaming
      // SGMM's lockstep schedule sees runs of one shape (q then v of a GQA model instead of q, v, q, v, ...)
      std::stable_sort(tcs.begin(), tcs.end(), [](const lswc::SgmmDesc &a, const lswc::SgmmDesc &b) {
        return a.rows != b.rows ? a.rows > b.rows : a.cols > b.cols;
      });
      st->tc_n = (int)tcs.size();
      st->tc_tiles = lswc::sgmm_prepare(tcs.data(), st->tc_n, true, &st->tc_maxr);
      TRY(dalloc(st, (void **)&st->tc_descs, tcs.size() * sizeof(lswc::SgmmDesc)));
      LSWC_CHECK(cudaMemcpy(st->tc_descs, tcs.data(), tcs.size() * sizeof(lswc::SgmmDesc), cudaMemcpyHostToDevice));
      st->sgmm_tc = true;
      // pick the faster tensor-core SGMM variant (0 or 3) on these very descriptors before any capture (variant 3
      // is only eligible when its output equals variant 0's bit for bit); see autotune_merge
      TRY(autotune_merge(st, st->tc_descs, st->tc_n, st->tc_tiles, st->tc_maxr));
    }
  }
  {  // pick the fastest GEMV kernel for every weight shape on these very buffers, before any graph is captured
     // (LSW_CUDA_AUTOTUNE=0 skips; LSW_CUDA_VERBOSE=1 prints the choices)
    std::vector<lswc::GemvTuneItem> items;
    int max_rows = cf.vocab_size, max_cols = H;
    for (auto &d : st->layers)
      for (int k = 0; k < LSW_MAT_COUNT; k++)
        if (d.w[k]) {
          items.push_back({d.dt[k], d.rows[k], d.cols[k], d.w[k]});
          max_rows = std::max(max_rows, d.rows[k]);
          max_cols = std::max(max_cols, d.cols[k]);
        }
    items.push_back({st->lm_dt, cf.vocab_size, H, st->lm});
    float *tx = nullptr, *ty = nullptr;
    LSWC_CHECK(cudaMalloc(&tx, sizeof(float) * max_cols));
    LSWC_CHECK(cudaMalloc(&ty, sizeof(float) * max_rows));
    LSWC_CHECK(cudaMemset(tx, 0, sizeof(float) * max_cols));
    lswc::autotune_gemv_all(items.data(), (int)items.size(), tx, ty, st->s);
    cudaError_t e = cudaStreamSynchronize(st->s);
    cudaFree(tx);
    cudaFree(ty);
    LSWC_CHECK(e);
  }
  LSWC_CHECK(cudaDeviceSynchronize());
  return LSW_OK;
}

lsw_status lswc_model_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits) {
  State *st = S(m);
  if (!st) { lsw_set_error("CUDA model state missing (finalize failed?)"); return LSW_E_INTERNAL; }
  if (st->broken) return broken_fail();
  st->mode = m->mode;
  const lsw_model_config &cf = m->cfg;
  const int V = cf.vocab_size;
  LSWC_CHECK(cudaSetDevice(st->device));
  if (n == 1 && !all_logits) {  // (the caller reads m->logits: lsw_model_eval / prefill sample on the host)
    int32_t next;
    TRY(run_step(m, st, tokens[0], &next));
    return lswc_model_fetch_logits(m);
  }
  // merge mode with adapters, merge_prompt TOKENWISE (the default): every prompt token runs the decode step (its
  // experts merged by one SGMM step, then the bare backbone; the sampled token is discarded), exactly as when the
  // tokens are fed one at a time, so a prompt == token by token bit for bit (docs/FORMAT.md; the CPU does the same).
  // run_step records routes and counters.  A single token takes this path with BATCHED too.
  const bool merge = adapters_active(m, st) && st->mode == LSW_MODE_MERGE;
  if (merge && (cf.merge_prompt == LSW_MERGE_PROMPT_TOKENWISE || n == 1)) {
    for (int32_t t = 0; t < n; t++) {
      int32_t next;
      TRY(run_step(m, st, tokens[t], &next));
      if (all_logits || t == n - 1) TRY(lswc_model_fetch_logits(m));
      if (all_logits) memcpy(all_logits + (size_t)t * V, m->logits.data(), sizeof(float) * V);
    }
    return LSW_OK;
  }
  // BATCHED merge-mode prompts (n > 1) run the chunks below as fused mode does: Fwd::alin merges only when c == 1, so
  // chunks of c > 1 tokens take the delta path next to the pristine weights and never run merge_check: the working
  // copies, MergeCheck::prev_e/prev_g and the merged flags (blk->merged, lm_flags) keep describing the last merge, and
  // the next decode step's merge_check compares its routes with what the working copies hold.  No counters change.
  st->dev_valid = false;
  st->logits_on_dev = false;  // st->logits is overwritten below; m->logits gets the last position's
  auto fail = [&](cudaError_t e, const char *what) {
    st->broken = e != cudaErrorMemoryAllocation;
    return lswc_cuda_fail(e, what, __FILE__, __LINE__);
  };
  const bool adapters = adapters_active(m, st);
  const size_t NA = st->ad.size();
  std::vector<std::vector<int>> he(NA);
  std::vector<std::vector<float>> hg(NA);
  const int CH = all_logits ? std::min(st->chunk, kLogitRows) : st->chunk;
  std::vector<int> pos(CH);
  for (int32_t c0 = 0, c; c0 < n; c0 += c) {
    c = n - c0 < CH ? n - c0 : CH;
    // merge mode: a prompt's last chunk never holds a single token (c == 1 would merge like a decode step); only a
    // chunk size below 3 (LSW_CUDA_PREFILL_CHUNK) can leave one, which then merges and is counted (read back below)
    if (merge && n - c0 - c == 1 && c > 2) c--;
    for (int t = 0; t < c; t++) pos[t] = m->n_past + t;
    Fwd f{m, st, c, st->s};
    cudaError_t e = cudaMemcpyAsync(st->tokens, tokens + c0, sizeof(int) * c, cudaMemcpyHostToDevice, st->s);
    if (e == cudaSuccess) e = cudaMemcpyAsync(st->pos, pos.data(), sizeof(int) * c, cudaMemcpyHostToDevice, st->s);
    if (e == cudaSuccess) e = f.body(st->tokens, st->pos, m->n_past + c, nullptr, all_logits != nullptr);
    if (e != cudaSuccess) return fail(e, "forward");
    if (all_logits)
      e = cudaMemcpyAsync(all_logits + (size_t)c0 * V, st->logits, sizeof(float) * V * c, cudaMemcpyDeviceToHost, st->s);
    else if (c0 + c == n)
      e = cudaMemcpyAsync(m->logits.data(), st->logits, sizeof(float) * V, cudaMemcpyDeviceToHost, st->s);
    if (adapters)
      for (size_t i = 0; i < NA && e == cudaSuccess; i++) {
        const DAdapter &d = st->ad[i];
        const size_t nr = (size_t)c * d.slots * d.K;
        he[i].resize(nr);
        hg[i].resize(nr);
        e = cudaMemcpyAsync(he[i].data(), d.re, nr * sizeof(int), cudaMemcpyDeviceToHost, st->s);
        if (e == cudaSuccess) e = cudaMemcpyAsync(hg[i].data(), d.rg, nr * sizeof(float), cudaMemcpyDeviceToHost, st->s);
      }
    if (e == cudaSuccess) e = cudaStreamSynchronize(st->s);  // also: pos[] is reused by the next chunk
    if (e != cudaSuccess) return fail(e, "forward");
    append_history(m, st, c, he.data(), hg.data());
    // a single-token chunk in merge mode merged: read the counters back
    if (adapters && c == 1) {
      DevBlk b;
      if ((e = cudaMemcpy(&b, st->blk, sizeof b, cudaMemcpyDeviceToHost)) != cudaSuccess) return fail(e, "forward");
      m->merge_steps = b.counters[0];
      m->merge_skipped = b.counters[1];
    }
    m->n_past += c;
  }
  if (all_logits) memcpy(m->logits.data(), all_logits + (size_t)(n - 1) * V, sizeof(float) * V);
  m->have_logits = true;
  return LSW_OK;
}

lsw_status lswc_model_fetch_logits(lsw_model *m) {
  State *st = S(m);
  if (!st || !st->logits_on_dev) return LSW_OK;
  if (st->broken) return broken_fail();
  LSWC_CHECK(cudaSetDevice(st->device));
  cudaError_t e = cudaMemcpyAsync(m->logits.data(), st->logits, sizeof(float) * m->cfg.vocab_size,
                                  cudaMemcpyDeviceToHost, st->s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st->s);
  if (e != cudaSuccess) {
    st->broken = e != cudaErrorMemoryAllocation;
    return lswc_cuda_fail(e, "copying the logits to the host", __FILE__, __LINE__);
  }
  st->logits_on_dev = false;
  return LSW_OK;
}

lsw_status lswc_model_step(lsw_model *m, int32_t token, int32_t *next_token) {
  State *st = S(m);
  if (!st) { lsw_set_error("CUDA model state missing (finalize failed?)"); return LSW_E_INTERNAL; }
  if (st->broken) return broken_fail();
  st->mode = m->mode;
  LSWC_CHECK(cudaSetDevice(st->device));
  int32_t next = 0;
  TRY(run_step(m, st, token, &next));
  if (st->h_out->nonfinite) return nonfinite_fail(m);
  *next_token = next;
  return LSW_OK;
}

void lswc_model_reset(lsw_model *m) {
  State *st = S(m);
  if (!st || st->broken) return;
  // unmerge: working copies = pristine weights (a copy: bit for bit), and the next merge check merges anew
  cudaSetDevice(st->device);
  for (auto &ly : st->layers)
    for (int k = 0; k < LSW_MAT_COUNT; k++)
      if (ly.work[k]) cudaMemcpyAsync(ly.work[k], ly.w[k], ly.bytes[k], cudaMemcpyDeviceToDevice, st->s);
  cudaMemsetAsync(&st->blk->merged, 0, sizeof(int), st->s);
  if (st->lm_flags) cudaMemsetAsync(st->lm_flags, 0, sizeof(int) * 2 * st->lm_mc.size(), st->s);
  if (st->layer_step) cudaMemsetAsync(st->layer_step, 0, sizeof(int) * m->cfg.num_layers, st->s);
  if (cudaStreamSynchronize(st->s) != cudaSuccess) {
    cudaGetLastError();
    st->broken = true;
  }
  st->dev_valid = false;
  st->logits_on_dev = false;
}

void lswc_model_free(lsw_model *m) {
  State *st = S(m);
  if (!st) return;
  cudaSetDevice(st->device);
  if (st->s) cudaStreamSynchronize(st->s);
  for (auto &gm : st->graph)
    for (auto &g : gm)
      if (g) cudaGraphExecDestroy(g);
  for (void *p : st->allocs) cudaFree(p);
  if (st->h_in) cudaFreeHost(st->h_in);
  if (st->h_out) cudaFreeHost(st->h_out);
  if (st->h_logits) cudaFreeHost(st->h_logits);
  if (st->logits_registered) cudaHostUnregister(m->logits.data());
  for (auto &a : st->ad) {
    if (a.h_e) cudaFreeHost(a.h_e);
    if (a.h_g) cudaFreeHost(a.h_g);
  }
  if (st->s) cudaStreamDestroy(st->s);
  cudaGetLastError();
  delete st;
  m->cuda = nullptr;
}

int lswc_model_graph_nodes(const lsw_model *m) {
  const State *st = static_cast<const State *>(m->cuda);
  if (!st) return 0;
  return st->graph_nodes[st->mode >= 0 && st->mode < 4 ? st->mode : 0][decode_attn_variant(m, st)];
}

lsw_status lswc_model_stats(lsw_model *m, lsw_model_stats *out) {
  State *st = S(m);
  if (!st) { lsw_set_error("CUDA model state missing (finalize failed?)"); return LSW_E_INTERNAL; }
  st->mode = m->mode;
  const int av = decode_attn_variant(m, st);
  if (st->use_graph && !st->graph[st->mode][av] && !st->broken) {  // capture now so the node count is known
    cudaSetDevice(st->device);
    TRY(capture_step(m, st, st->mode, av));
  }
  out->launches_per_token = lswc_model_graph_nodes(m);
  out->graph_captured = st->use_graph ? 1 : 0;
  out->device_bytes_peak = st->dev_bytes;  // every device allocation of the model (weights, caches, scratch)
  out->merge_steps = m->merge_steps;
  out->merge_skipped = m->merge_skipped;
  return LSW_OK;
}

// bench_decode with LSW_CUDA_BENCH_AHEAD=1 (see there): step 0 ordinary, steps 1 .. n-1 launched back to back.
static lsw_status bench_decode_ahead(lsw_model *m, State *st, int32_t first_token, int32_t n_tokens, double *ms,
                                     const lsw_sampler_params &saved, uint64_t saved_step) {
  auto restore = [&]() {
    m->sampler = saved;
    m->sample_step = saved_step;
    st->dev_valid = false;
  };
  int32_t next = 0;
  const auto t0 = std::chrono::steady_clock::now();
  lsw_status status = run_step(m, st, first_token, &next);
  if (status != LSW_OK) { restore(); return status; }
  ms[0] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  m->sample_step++;
  const int av = decode_attn_variant(m, st);
  cudaGraphExec_t gx = st->graph[st->mode][av];
  std::vector<cudaEvent_t> ev((size_t)n_tokens, nullptr);
  cudaError_t e = cudaSuccess;
  for (auto &x : ev)
    if (e == cudaSuccess) e = cudaEventCreate(&x);
  // ev[i] before step i's graph (i >= 1), ev[0] after the last one
  for (int32_t i = 1; i < n_tokens && e == cudaSuccess; i++) {
    e = cudaEventRecord(ev[i], st->s);
    if (e == cudaSuccess) e = cudaGraphLaunch(gx, st->s);
  }
  if (e == cudaSuccess) e = cudaEventRecord(ev[0], st->s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st->s);
  for (int32_t i = 1; i < n_tokens && e == cudaSuccess; i++) {
    float dm = 0.f;
    e = cudaEventElapsedTime(&dm, ev[i], ev[i + 1 < n_tokens ? i + 1 : 0]);
    ms[i] = dm;
  }
  for (auto x : ev)
    if (x) cudaEventDestroy(x);
  if (e != cudaSuccess) {
    st->broken = e != cudaErrorMemoryAllocation;
    restore();
    return lswc_cuda_fail(e, "decode steps launched ahead", __FILE__, __LINE__);
  }
  steps_done(m, st, n_tokens - 1);  // (the route history of these steps repeats the last one's)
  restore();
  return LSW_OK;
}

lsw_status lswc_model_bench_decode(lsw_model *m, int32_t first_token, int32_t n_tokens, double *ms,
                                   const int32_t *forced) {
  State *st = S(m);
  if (!st) { lsw_set_error("CUDA model state missing (finalize failed?)"); return LSW_E_INTERNAL; }
  if (st->broken) return broken_fail();
  st->mode = m->mode;
  LSWC_CHECK(cudaSetDevice(st->device));
  // greedy regardless of the sampler settings: a private params set, restored afterwards
  const lsw_sampler_params saved = m->sampler;
  const uint64_t saved_step = m->sample_step;
  m->sampler = lsw_sampler_params{0.f, 0, 1.f, 0.f, 0};
  lsw_status status = LSW_OK;
  int32_t tok = first_token;
  // LSW_CUDA_BENCH_EVENTS=1 (a diagnostic): CUDA events around each step's stream work as well, and one line on stderr
  // with the median host and device time per step; their difference is what the host adds (graph launch, the
  // synchronisation, the bookkeeping), which a decode loop running a step ahead could hide
  const bool evt = env_flag("LSW_CUDA_BENCH_EVENTS", false);
  std::vector<cudaEvent_t> ev;
  if (evt) {
    ev.assign(2 * (size_t)n_tokens, nullptr);
    for (auto &e : ev)
      if (cudaEventCreate(&e) != cudaSuccess) {
        cudaGetLastError();
        e = nullptr;
      }
  }
  // LSW_CUDA_BENCH_AHEAD=1 (a timing diagnostic, off by default): after a first ordinary step, the remaining steps'
  // graphs are launched back to back with no host synchronisation between them (each greedy step advances the
  // device's own input block), timed by CUDA events recorded between the launches, and synchronised once at the end.
  // The difference to the ordinary loop is the most a decode loop that launches the next step before waiting for
  // the current one could gain.  What it does not do: per-step host bookkeeping from the device's outputs (the route
  // history of those steps repeats the last step's routing; nothing reads it in a benchmark).
  const bool ahead = !forced && env_flag("LSW_CUDA_BENCH_AHEAD", false) && st->use_graph && n_tokens > 1 &&
                     decode_attn_variant(m, st) == decode_attn_variant_at(st, m->n_past + n_tokens - 1);
  if (ahead) return bench_decode_ahead(m, st, first_token, n_tokens, ms, saved, saved_step);
  for (int32_t i = 0; i < n_tokens && status == LSW_OK; i++) {
    // host timer around the whole step (graph launch ... sync): what a caller of lsw_model_step sees
    const auto t0 = std::chrono::steady_clock::now();
    int32_t next = 0;
    status = evt ? run_step(m, st, tok, &next, ev[2 * i], ev[2 * i + 1]) : run_step(m, st, tok, &next);
    if (status == LSW_OK) {
      ms[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      m->sample_step++;
      // a token stream (lsw_model_bench_decode_tokens): the next step appends its token, not this step's pick, so
      // run_step copies the input block to the device (a few bytes; the greedy loop's device already holds it)
      tok = forced && i + 1 < n_tokens ? forced[i + 1] : next;
    }
  }
  if (evt) {
    std::vector<double> h, d, x;
    for (int32_t i = 0; i < n_tokens && status == LSW_OK; i++) {
      float dm = 0.f;
      if (ev[2 * i] && ev[2 * i + 1] && cudaEventElapsedTime(&dm, ev[2 * i], ev[2 * i + 1]) == cudaSuccess) {
        h.push_back(ms[i]);
        d.push_back(dm);
        x.push_back(ms[i] - dm);
      }
    }
    cudaGetLastError();
    for (auto e : ev)
      if (e) cudaEventDestroy(e);
    if (!h.empty()) {
      std::sort(h.begin(), h.end());
      std::sort(d.begin(), d.end());
      std::sort(x.begin(), x.end());
      fprintf(stderr,
              "lswc: bench_decode: %d steps, median host %.4f ms, median device %.4f ms, median host - device %.4f ms "
              "per step\n",
              (int)h.size(), h[h.size() / 2], d[d.size() / 2], x[x.size() / 2]);
    }
  }
  m->sampler = saved;
  m->sample_step = saved_step;
  st->dev_valid = false;
  return status;
}

lsw_status lswc_measure_bandwidth(uint64_t bytes, double *gb_per_s) {
  if (bytes < (1u << 20)) bytes = 1u << 20;
  void *a = nullptr, *b = nullptr;
  cudaStream_t s = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  lsw_status status = LSW_OK;
  auto chk = [&](cudaError_t e, const char *what) {
    if (e != cudaSuccess && status == LSW_OK) status = lswc_cuda_fail(e, what, __FILE__, __LINE__);
    return status == LSW_OK;
  };
  const size_t half = (size_t)(bytes / 2) & ~(size_t)255;
  std::vector<float> times;
  if (chk(cudaMalloc(&a, half), "cudaMalloc (bandwidth buffer)") && chk(cudaMalloc(&b, half), "cudaMalloc (bandwidth buffer)") &&
      chk(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate") &&
      chk(cudaEventCreate(&e0), "cudaEventCreate") && chk(cudaEventCreate(&e1), "cudaEventCreate") &&
      chk(cudaMemsetAsync(a, 1, half, s), "cudaMemset") && chk(cudaMemsetAsync(b, 2, half, s), "cudaMemset")) {
    for (int r = 0; r < 12 && status == LSW_OK; r++) {  // 2 warm-up + 10 timed
      chk(cudaEventRecord(e0, s), "cudaEventRecord");
      chk(cudaMemcpyAsync(r & 1 ? a : b, r & 1 ? b : a, half, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
      chk(cudaEventRecord(e1, s), "cudaEventRecord");
      chk(cudaEventSynchronize(e1), "cudaEventSynchronize");
      float ms = 0;
      chk(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
      if (r >= 2) times.push_back(ms);
    }
  }
  if (a) cudaFree(a);
  if (b) cudaFree(b);
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (s) cudaStreamDestroy(s);
  if (status != LSW_OK) return status;
  std::sort(times.begin(), times.end());
  const double med = (times[4] + times[5]) / 2;
  *gb_per_s = 2.0 * half / (med * 1e-3) / 1e9;  // bytes read + bytes written
  return LSW_OK;
}

// Adapters on the CPU backend: registration and validation, routing (STATIC, PREGATED), and the three
// execution modes (merge: SGMM into working copies; unfused: per expert LoRA ops; fused: one pass per module).
#include <algorithm>
#include <cstring>

#include "engine.h"
#include "kernels.h"

using namespace lsw;

lsw_status lsw_register_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                               int32_t file_id, uint64_t offset, bool check_name);

static const char *MOD_NAMES[LSW_MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

lsw_status lsw_adapter_add(lsw_model *m, const lsw_adapter_desc *d, int32_t *id) {
  if (!d || !id) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter desc and adapter_id must not be NULL");
  if (d->router_kind == LSW_ROUTER_LAYERWISE)
    return LSW_FAIL(LSW_E_UNSUPPORTED, "layer-wise adapters (router per layer) are not implemented yet");
  if (d->router_kind != LSW_ROUTER_STATIC && d->router_kind != LSW_ROUTER_PREGATED)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: unknown router_kind %d", d->router_kind);
  if (d->num_experts < 1 || d->top_k < 1 || d->top_k > d->num_experts)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: need 1 <= top_k (%d) <= num_experts (%d)", d->top_k,
                    d->num_experts);
  if (d->router_kind == LSW_ROUTER_STATIC && (d->num_experts != 1 || d->top_k != 1))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "static adapter: num_experts and top_k must be 1");
  if (d->router_kind == LSW_ROUTER_PREGATED && (d->router_input < 0 || d->router_input >= LSW_MOD_COUNT))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: router_input %d is not a module", d->router_input);
  if (d->ffn_experts) return LSW_FAIL(LSW_E_UNSUPPORTED, "FFN experts (MixLoRA) are not implemented yet");
  std::unique_ptr<lsw_adapter> a(new lsw_adapter());
  a->desc = *d;
  a->id = (int32_t)m->adapters.size();
  a->mods.assign(m->cfg.num_layers, std::vector<lsw_adapter_mod>(LSW_MOD_COUNT));
  m->adapters.push_back(std::move(a));
  *id = (int32_t)m->adapters.size() - 1;
  return LSW_OK;
}

static bool parse_int(const std::string &s, size_t &p, int64_t &v) {
  size_t q = p;
  v = 0;
  while (q < s.size() && s[q] >= '0' && s[q] <= '9' && q - p < 9) v = v * 10 + (s[q++] - '0');
  if (q == p || (q < s.size() && s[q] != '.')) return false;
  p = q;
  return true;
}

static std::string shape_s(int32_t ndim, const int64_t *s) {
  std::string r = "[";
  for (int i = 0; i < ndim; i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Validates an adapter tensor name/shape, registers it (file_id -1: engine-allocated, data set by the caller).
lsw_status lsw_adapter_tensor(lsw_model *m, const char *cname, int32_t dtype, int32_t ndim, const int64_t *shape,
                              int32_t file_id, uint64_t offset) {
  const std::string name = cname;
  size_t p = 9;  // after "adapters."
  int64_t aid;
  if (!parse_int(name, p, aid) || aid >= (int64_t)m->adapters.size())
    return LSW_FAIL(LSW_E_FORMAT, "tensor %s: no adapter registered with that id", cname);
  lsw_adapter &a = *m->adapters[aid];
  const std::string rest = name.substr(p + 1);
  const int64_t E = a.desc.num_experts;
  if (rest == "router.weight") {
    if (a.desc.router_kind != LSW_ROUTER_PREGATED)
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: adapter %lld has no pre-gated router", cname, (long long)aid);
    const lsw_module_range r = m->module_range(0, a.desc.router_input);
    if (ndim != 2 || shape[0] != E || shape[1] != r.cols)
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: shape %s, expected [%lld, %lld] (num_experts, in_features of %s)",
                      cname, shape_s(ndim, shape).c_str(), (long long)E, (long long)r.cols,
                      MOD_NAMES[a.desc.router_input]);
    lsw_status st = lsw_register_tensor(m, cname, dtype, ndim, shape, file_id, offset, false);
    if (st) return st;
    a.router = &m->tensors.at(name);
    return LSW_OK;
  }
  // layers.{L}.{m}.lora_A|lora_B
  int64_t L;
  size_t q = 7;
  if (rest.compare(0, 7, "layers.") != 0 || !parse_int(rest, q, L) || L >= m->cfg.num_layers)
    return LSW_FAIL(LSW_E_FORMAT, "tensor %s: unknown adapter tensor name", cname);
  const std::string tail = rest.substr(q + 1);
  int mod = -1;
  bool isA = false;
  for (int k = 0; k < LSW_MOD_COUNT; k++) {
    const std::string mn = MOD_NAMES[k];
    if (tail == mn + ".lora_A") mod = k, isA = true;
    if (tail == mn + ".lora_B") mod = k, isA = false;
  }
  if (mod < 0) return LSW_FAIL(LSW_E_FORMAT, "tensor %s: unknown adapter tensor name", cname);
  const lsw_module_range r = m->module_range((int)L, mod);
  if (ndim != 3 || shape[0] != E || shape[isA ? 2 : 1] != (isA ? r.cols : r.rows))
    return LSW_FAIL(LSW_E_FORMAT, "tensor %s: shape %s, expected [%lld, %s] (base shapes disagree with the model)",
                    cname, shape_s(ndim, shape).c_str(), (long long)E,
                    isA ? ("r, " + std::to_string(r.cols)).c_str() : (std::to_string(r.rows) + ", r").c_str());
  lsw_status st = lsw_register_tensor(m, cname, dtype, ndim, shape, file_id, offset, false);
  if (st) return st;
  lsw_adapter_mod &am = a.mods[L][mod];
  (isA ? am.A : am.B) = &m->tensors.at(name);
  return LSW_OK;
}

lsw_status lsw_adapters_finalize(lsw_model *m) {
  if (m->adapters.empty()) return LSW_OK;
  const int NL = m->cfg.num_layers;
  std::vector<std::vector<char>> adapted(NL, std::vector<char>(LSW_MAT_COUNT, 0));
  for (auto &ap : m->adapters) {
    lsw_adapter &a = *ap;
    int n_adapted = 0;
    for (int L = 0; L < NL; L++)
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        lsw_adapter_mod &am = a.mods[L][k];
        if (!am.A && !am.B) continue;
        if (!am.A || !am.B)
          return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s has lora_%s but no lora_%s", a.id, L, MOD_NAMES[k],
                          am.A ? "A" : "B", am.A ? "B" : "A");
        if (am.A->shape[1] != am.B->shape[2])
          return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s: rank mismatch (lora_A rank %lld, lora_B rank %lld)",
                          a.id, L, MOD_NAMES[k], (long long)am.A->shape[1], (long long)am.B->shape[2]);
        am.rank = am.A->shape[1];
        adapted[L][m->module_range(L, k).mat] = 1;
        n_adapted++;
      }
    if (!n_adapted) return LSW_FAIL(LSW_E_FORMAT, "adapter %d has no LoRA tensors", a.id);
    if (a.desc.router_kind == LSW_ROUTER_PREGATED) {
      if (!a.router) return LSW_FAIL(LSW_E_FORMAT, "adapter %d: tensor adapters.%d.router.weight is missing", a.id, a.id);
      // every adapted linear of layer 0 must run at or after the router input (forward order q,k,v < o < gate,up < down)
      const int rmat = m->module_range(0, a.desc.router_input).mat;
      for (int k = 0; k < LSW_MOD_COUNT; k++)
        if (a.mods[0][k].A && m->module_range(0, k).mat < rmat)
          return LSW_FAIL(LSW_E_UNSUPPORTED,
                          "adapter %d: layers.0.%s is adapted but runs before the router input (%s) in layer 0", a.id,
                          MOD_NAMES[k], MOD_NAMES[a.desc.router_input]);
    }
  }
  // working copies for merge mode
  m->pristine.assign(NL, std::vector<const void *>(LSW_MAT_COUNT, nullptr));
  m->work.assign(NL, std::vector<std::vector<uint8_t>>(LSW_MAT_COUNT));
  for (int L = 0; L < NL; L++)
    for (int x = 0; x < LSW_MAT_COUNT; x++) {
      const lsw_weight &w = m->layers[L].mat[x];
      m->pristine[L][x] = w.data;
      if (adapted[L][x]) {
        m->work[L][x].assign((const uint8_t *)w.data, (const uint8_t *)w.data + w.t->nbytes);
        m->host_bytes += w.t->nbytes;
      }
    }
  return LSW_OK;
}

void lsw_adapters_reset(lsw_model *m) {
  for (auto &a : m->adapters) {
    a->hist_e.clear();
    a->hist_g.clear();
    a->routed = false;
  }
  m->merged = false;  // unmerged: the bare backbone runs from the pristine weights
  m->merged_e.clear();
  m->merged_g.clear();
}

// Routes of the n tokens of this chunk for every adapter whose router input is (L, mat); X = that input.
static void route_at(lsw_model *m, int L, int mat, const float *X, int64_t ldx, int64_t n) {
  for (auto &ap : m->adapters) {
    lsw_adapter &a = *ap;
    if (a.routed) continue;
    const int K = a.desc.top_k;
    a.cur_e.resize((size_t)n * K);
    a.cur_g.resize((size_t)n * K);
    if (a.desc.router_kind == LSW_ROUTER_STATIC) {
      std::fill(a.cur_e.begin(), a.cur_e.end(), 0);
      std::fill(a.cur_g.begin(), a.cur_g.end(), 1.f);
      a.routed = true;
    } else if (L == 0 && m->module_range(0, a.desc.router_input).mat == mat) {
      const lsw_tensor &R = *a.router;
      for (int64_t t = 0; t < n; t++)
        route(R.dtype, R.shape[0], R.shape[1], K, R.data, X + t * ldx, &a.cur_e[t * K], &a.cur_g[t * K]);
      a.routed = true;
    }
  }
}

static bool all_routed(const lsw_model *m) {
  for (auto &a : m->adapters)
    if (!a->routed) return false;
  return true;
}

// Merge mode: make the working copies hold W0 + Σ g B A for the current token's experts (one SGMM step over
// every adapted weight of every layer), unless the experts and gates are unchanged.
static void ensure_merged(lsw_model *m) {
  std::vector<int32_t> e;
  std::vector<float> g;
  for (auto &a : m->adapters) {
    e.insert(e.end(), a->cur_e.begin(), a->cur_e.begin() + a->desc.top_k);
    g.insert(g.end(), a->cur_g.begin(), a->cur_g.begin() + a->desc.top_k);
  }
  if (m->merged && e == m->merged_e && g == m->merged_g) {
    m->merge_skipped++;
    return;
  }
  std::vector<lsw_sgmm_term> terms;
  for (int L = 0; L < m->cfg.num_layers; L++)
    for (int k = 0; k < LSW_MOD_COUNT; k++) {
      const lsw_module_range r = m->module_range(L, k);
      if (m->work[L][r.mat].empty()) continue;
      terms.clear();
      for (auto &ap : m->adapters) {
        const lsw_adapter_mod &am = ap->mods[L][k];
        if (!am.A) continue;
        const size_t es = dtype_size(am.A->dtype);
        for (int j = 0; j < ap->desc.top_k; j++) {
          const int64_t ex = ap->cur_e[j];
          terms.push_back({(const char *)am.A->data + (size_t)(ex * am.rank * r.cols) * es,
                           (const char *)am.B->data + (size_t)(ex * r.rows * am.rank) * dtype_size(am.B->dtype),
                           am.A->dtype == am.B->dtype ? am.A->dtype : LSW_DTYPE_F32, am.rank, ap->cur_g[j]});
        }
      }
      if (terms.empty()) continue;
      const lsw_weight &w = m->layers[L].mat[r.mat];
      const size_t es = dtype_size(w.dtype), off = (size_t)(r.row0 * r.cols) * es;
      sgmm_terms(m->pool.get(), w.dtype, r.rows, r.cols, (const char *)m->pristine[L][r.mat] + off,
                 m->work[L][r.mat].data() + off, terms.data(), (int64_t)terms.size());
    }
  m->merged = true;
  m->merged_e = e;
  m->merged_g = g;
  m->merge_steps++;
}

// Y[t][row0 + i] += Σ_k g_k B_k[i] · (A_k x_t)  for one adapted module
static void apply_delta(lsw_model *m, const lsw_adapter &a, const lsw_adapter_mod &am, const lsw_module_range &r,
                        const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy, bool fused) {
  const KernelTable &kt = K();
  const int K = a.desc.top_k;
  const int64_t rank = am.rank;
  const size_t esA = dtype_size(am.A->dtype), esB = dtype_size(am.B->dtype);
  std::vector<float> u((size_t)K * rank);
  for (int64_t t = 0; t < n; t++) {
    const int32_t *ex = &a.cur_e[t * K];
    const float *g = &a.cur_g[t * K];
    const float *x = X + t * ldx;
    float *y = Y + t * ldy + r.row0;
    for (int k = 0; k < K; k++) {
      const char *A = (const char *)am.A->data + (size_t)(ex[k] * rank * r.cols) * esA;
      kt.matmul_rows(am.A->dtype, A, r.cols, x, r.cols, 1, &u[k * rank], rank, 0, rank, false);
      for (int64_t j = 0; j < rank; j++) u[k * rank + j] *= g[k];
      if (!fused) {  // unfused: one LoRA up-projection per expert
        const char *B = (const char *)am.B->data + (size_t)(ex[k] * r.rows * rank) * esB;
        matmul(m->pool.get(), am.B->dtype, B, r.rows, rank, &u[k * rank], rank, 1, y, r.rows, true);
      }
    }
    if (fused) {  // fused: all selected experts' up-projections in one pass over the rows
      m->pool->parallel_for(r.rows, 16, [&](int, int64_t b, int64_t e) {
        for (int k = 0; k < K; k++) {
          const char *B = (const char *)am.B->data + (size_t)(ex[k] * r.rows * rank) * esB;
          kt.matmul_rows(am.B->dtype, B, rank, &u[k * rank], rank, 1, y, r.rows, b, e, true);
        }
      });
    }
  }
}

// The adapter-aware linear: Y (=|+=) W x (+ adapter deltas).  Called for every linear of the forward.
void lsw_linear_adapted(lsw_model *m, int L, int mat, const float *X, int64_t n, float *Y, int64_t ldy, bool acc) {
  const lsw_weight &w = m->layers[L].mat[mat];
  if (m->mode == LSW_MODE_BASE) {  // adapters ignored: the bare backbone, no routing (routes recorded as -1 / 0)
    matmul(m->pool.get(), w.dtype, w.data, w.rows, w.cols, X, w.cols, n, Y, ldy, acc);
    return;
  }
  route_at(m, L, mat, X, w.cols, n);
  // merge mode runs the merged backbone for single-token steps once every router has spoken; a prompt
  // (each token its own experts) and the linears of layer 0 before the router input take the delta path.
  const bool merge = m->mode == LSW_MODE_MERGE && n == 1 && all_routed(m);
  const void *W = w.data;
  if (merge) {
    ensure_merged(m);
    if (!m->work[L][mat].empty()) W = m->work[L][mat].data();
  }
  matmul(m->pool.get(), w.dtype, W, w.rows, w.cols, X, w.cols, n, Y, ldy, acc);
  if (merge) return;
  for (auto &ap : m->adapters)
    for (int k = 0; k < LSW_MOD_COUNT; k++) {
      const lsw_adapter_mod &am = ap->mods[L][k];
      if (!am.A || !ap->routed) continue;  // unrouted here = not adapted here (checked at finalize)
      const lsw_module_range r = m->module_range(L, k);
      if (r.mat != mat) continue;
      apply_delta(m, *ap, am, r, X, w.cols, n, Y, ldy, m->mode == LSW_MODE_FUSED);
    }
}

// After a forward chunk: append the chunk's routes to the history.
void lsw_adapters_end_chunk(lsw_model *m, int64_t n) {
  for (auto &ap : m->adapters) {
    lsw_adapter &a = *ap;
    const size_t K = a.desc.top_k;
    if (m->mode == LSW_MODE_BASE || !a.routed) {
      a.cur_e.assign(n * K, -1);
      a.cur_g.assign(n * K, 0.f);
    }
    a.hist_e.insert(a.hist_e.end(), a.cur_e.begin(), a.cur_e.begin() + n * K);
    a.hist_g.insert(a.hist_g.end(), a.cur_g.begin(), a.cur_g.begin() + n * K);
    a.routed = false;
  }
}

lsw_status lsw_adapters_get_routes(lsw_model *m, int32_t id, int32_t pos, int32_t n, int32_t *experts,
                                   float *gates) {
  if (id < 0 || id >= (int32_t)m->adapters.size())
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "no adapter with id %d", id);
  const lsw_adapter &a = *m->adapters[id];
  const int64_t K = a.desc.top_k, have = (int64_t)a.hist_e.size() / K;
  if (pos < 0 || n < 0 || pos + (int64_t)n > have)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "routes [%d, %d) requested but %lld positions are routed", pos, pos + n,
                    (long long)have);
  if (n && (!experts || !gates)) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "experts and gates must not be NULL");
  std::memcpy(experts, &a.hist_e[pos * K], sizeof(int32_t) * n * K);
  std::memcpy(gates, &a.hist_g[pos * K], sizeof(float) * n * K);
  return LSW_OK;
}

uint64_t lsw_adapters_bytes_per_token(const lsw_model *m) {
  uint64_t b = 0;
  if (m->mode == LSW_MODE_BASE) return 0;
  for (auto &ap : m->adapters)
    for (int L = 0; L < m->cfg.num_layers; L++)
      for (int k = 0; k < LSW_MOD_COUNT; k++) {
        const lsw_adapter_mod &am = ap->mods[L][k];
        if (!am.A) continue;
        const uint64_t ab = am.A->nbytes / ap->desc.num_experts, bb = am.B->nbytes / ap->desc.num_experts;
        b += (ab + bb) * ap->desc.top_k;
        if (m->mode == LSW_MODE_MERGE) {  // SGMM reads W0 rows and writes W rows of the module (when it runs)
          const lsw_module_range r = m->module_range(L, k);
          b += 2 * (uint64_t)r.rows * r.cols * dtype_size(m->layers[L].mat[r.mat].dtype);
        }
      }
  return b;
}

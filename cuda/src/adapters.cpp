// Adapters on the CPU backend: registration and validation, routing (STATIC, PREGATED, LAYERWISE incl. MixLoRA
// whole-FFN experts), and the three
// execution modes (merge: SGMM into working copies; unfused: per expert LoRA ops; fused: a decode step's linear in two
// pool dispatches, every shrink of the fused matrix then its rows with their up-projections (fused_decode); a prompt's
// deltas grouped by expert, each expert's shrink and up-projection a matrix product over its tokens (fused_prompt)).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine.h"
#include "kernels.h"

using namespace lsw;

lsw_status lsw_register_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                               int32_t file_id, uint64_t offset, bool check_name);

static const char *MOD_NAMES[LSW_MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

lsw_status lsw_adapter_add(lsw_model *m, const lsw_adapter_desc *d, int32_t *id) {
  if (!d || !id) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter desc and adapter_id must not be NULL");
  if (d->router_kind != LSW_ROUTER_STATIC && d->router_kind != LSW_ROUTER_PREGATED &&
      d->router_kind != LSW_ROUTER_LAYERWISE)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: unknown router_kind %d", d->router_kind);
  if (d->num_experts < 1 || d->top_k < 1 || d->top_k > d->num_experts)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: need 1 <= top_k (%d) <= num_experts (%d)", d->top_k,
                    d->num_experts);
  if (d->router_kind == LSW_ROUTER_STATIC && (d->num_experts != 1 || d->top_k != 1))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "static adapter: num_experts and top_k must be 1");
  if (d->router_kind == LSW_ROUTER_PREGATED && (d->router_input < 0 || d->router_input >= LSW_MOD_COUNT))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: router_input %d is not a module", d->router_input);
  if (d->ffn_experts && d->router_kind != LSW_ROUTER_LAYERWISE)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "adapter: ffn_experts (MixLoRA) needs a layer-wise router");
  if (d->ffn_experts && m->ffn_adapter >= 0)
    return LSW_FAIL(LSW_E_UNSUPPORTED, "adapter: at most one adapter with FFN experts (MixLoRA) per model");
  std::unique_ptr<lsw_adapter> a(new lsw_adapter());
  a->desc = *d;
  a->desc.ffn_experts = d->ffn_experts ? 1 : 0;
  a->id = (int32_t)m->adapters.size();
  a->mods.assign(m->cfg.num_layers, std::vector<lsw_adapter_mod>(LSW_MOD_COUNT));
  if (d->router_kind == LSW_ROUTER_LAYERWISE) {
    a->rows = m->cfg.num_layers;
    a->layer_router.assign(m->cfg.num_layers, nullptr);
    a->router_mat.assign(m->cfg.num_layers, -1);
    m->layerwise = true;
    if (d->ffn_experts) m->ffn_adapter = a->id;
  }
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
  if (tail == "router.weight") {  // LAYERWISE; the width is checked at finalize (it depends on the adapted modules)
    if (a.desc.router_kind != LSW_ROUTER_LAYERWISE)
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: adapter %lld has no layer-wise routers", cname, (long long)aid);
    const auto &c = m->cfg;
    if (ndim != 2 || shape[0] != E ||
        (shape[1] != c.hidden_size && shape[1] != c.intermediate_size && shape[1] != m->q_dim))
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: shape %s, expected [%lld, in_features of the layer's first adapted module]",
                      cname, shape_s(ndim, shape).c_str(), (long long)E);
    lsw_status st = lsw_register_tensor(m, cname, dtype, ndim, shape, file_id, offset, false);
    if (st) return st;
    a.layer_router[L] = &m->tensors.at(name);
    return LSW_OK;
  }
  int mod = -1;
  bool isA = false, isS = false;
  for (int k = 0; k < LSW_MOD_COUNT; k++) {
    const std::string mn = MOD_NAMES[k];
    if (tail == mn + ".lora_A") mod = k, isA = true;
    if (tail == mn + ".lora_B") mod = k, isA = false;
    if (tail == mn + ".lora_scale") mod = k, isS = true;
  }
  if (mod < 0) return LSW_FAIL(LSW_E_FORMAT, "tensor %s: unknown adapter tensor name", cname);
  if (isS) {  // the module's LoRA scaling: one F32 value, read on the host at finalize, so it must come from a file
    if (dtype != LSW_DTYPE_F32 || ndim != 1 || shape[0] != 1)
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: %s %s, expected F32 [1]", cname, dtype_name(dtype),
                      shape_s(ndim, shape).c_str());
    if (file_id < 0)  // engine-allocated (random) tensors have no host value on a CUDA model
      return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "tensor %s: a LoRA scaling must come from a mapped file", cname);
    lsw_status st = lsw_register_tensor(m, cname, dtype, ndim, shape, file_id, offset, false);
    if (st) return st;
    a.mods[L][mod].S = &m->tensors.at(name);
    return LSW_OK;
  }
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
        if (am.S && !am.A)
          return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s has lora_scale but no lora_A / lora_B", a.id, L,
                          MOD_NAMES[k]);
        if (!am.A && !am.B) continue;
        if (!am.A || !am.B)
          return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s has lora_%s but no lora_%s", a.id, L, MOD_NAMES[k],
                          am.A ? "A" : "B", am.A ? "B" : "A");
        if (am.A->shape[1] != am.B->shape[2])
          return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s: rank mismatch (lora_A rank %lld, lora_B rank %lld)",
                          a.id, L, MOD_NAMES[k], (long long)am.A->shape[1], (long long)am.B->shape[2]);
        am.rank = am.A->shape[1];
        if (am.S) {  // file-backed (lsw_adapter_tensor): data points into the mapping
          float v;
          std::memcpy(&v, am.S->data, sizeof v);
          if (!std::isfinite(v))
            return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s.lora_scale is not finite", a.id, L, MOD_NAMES[k]);
          am.scale = v;
        }
        adapted[L][m->module_range(L, k).mat] = 1;
        n_adapted++;
      }
    if (!n_adapted) return LSW_FAIL(LSW_E_FORMAT, "adapter %d has no LoRA tensors", a.id);
    if (a.desc.router_kind == LSW_ROUTER_LAYERWISE) {
      static const char *MAT_INPUT[LSW_MAT_COUNT] = {"the attention input (q/k/v)", "the attention output (o)",
                                                     "the MLP input (gate/up)", "the SwiGLU output (down)"};
      for (int L = 0; L < NL; L++) {
        int first = -1;
        for (int k = 0; k < LSW_MOD_COUNT; k++) {
          if (!a.mods[L][k].A) continue;
          if (a.desc.ffn_experts && k < LSW_MOD_GATE)
            return LSW_FAIL(LSW_E_FORMAT, "adapter %d: layers.%d.%s: FFN experts (MixLoRA) adapt only gate/up/down", a.id,
                            L, MOD_NAMES[k]);
          const int mat = m->module_range(L, k).mat;
          if (first < 0 || mat < first) first = mat;
        }
        if (first >= 0 && a.desc.ffn_experts) first = LSW_MAT_GATE_UP;  // whole-FFN experts: the MLP input
        const lsw_tensor *R = a.layer_router[L];
        if (first < 0) {
          if (R)
            return LSW_FAIL(LSW_E_FORMAT, "adapter %d: tensor adapters.%d.layers.%d.router.weight is present but the "
                            "adapter adapts nothing in layer %d", a.id, a.id, L, L);
          continue;
        }
        if (!R)
          return LSW_FAIL(LSW_E_FORMAT, "adapter %d: tensor adapters.%d.layers.%d.router.weight is missing", a.id, a.id, L);
        const int64_t width = m->layers[L].mat[first].cols;
        if (R->shape[1] != width)
          return LSW_FAIL(LSW_E_FORMAT, "tensor adapters.%d.layers.%d.router.weight: shape [%lld, %lld], expected [%lld, %lld] "
                          "(the router reads %s, the layer's first adapted module)", a.id, L, (long long)R->shape[0],
                          (long long)R->shape[1], (long long)R->shape[0], (long long)width, MAT_INPUT[first]);
        a.router_mat[L] = first;
      }
    }
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
  m->mat_e.assign(NL, std::vector<std::vector<int32_t>>(LSW_MAT_COUNT));
  m->mat_g.assign(NL, std::vector<std::vector<float>>(LSW_MAT_COUNT));
  m->mat_merged.assign(NL, std::vector<char>(LSW_MAT_COUNT, 0));
  m->layer_step.assign(NL, 0);
  // working copies for merge mode (host: CPU backend only; a CUDA model keeps its working copies on the device)
  const bool host_work = m->cfg.backend == LSW_BACKEND_CPU;
  m->pristine.assign(NL, std::vector<const void *>(LSW_MAT_COUNT, nullptr));
  m->work.assign(NL, std::vector<std::vector<uint8_t>>(LSW_MAT_COUNT));
  for (int L = 0; L < NL; L++)
    for (int x = 0; x < LSW_MAT_COUNT; x++) {
      const lsw_weight &w = m->layers[L].mat[x];
      m->pristine[L][x] = w.data;
      if (adapted[L][x] && host_work) {
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
  for (auto &v : m->mat_merged) std::fill(v.begin(), v.end(), 0);
  std::fill(m->layer_step.begin(), m->layer_step.end(), 0);
}

static const char *MERGE_FFN_MSG =
    "merge mode cannot represent MixLoRA's per-expert FFNs exactly for top_k > 1; use --mode fused or unfused";

// Can the model run in `mode` with its adapters?  (set_mode, and every evaluation: merge is the default mode)
lsw_status lsw_adapters_check_mode(const lsw_model *m, int32_t mode) {
  if (mode == LSW_MODE_MERGE && m->ffn_adapter >= 0 && m->adapters[m->ffn_adapter]->desc.top_k > 1)
    return LSW_FAIL(LSW_E_UNSUPPORTED, "%s", MERGE_FFN_MSG);
  return LSW_OK;
}

// Before a forward chunk of n tokens: LAYERWISE routes start as -1 / 0 (layers without a router keep them).
void lsw_adapters_begin_chunk(lsw_model *m, int64_t n) {
  for (auto &ap : m->adapters) {
    lsw_adapter &a = *ap;
    a.routed = false;
    if (a.desc.router_kind != LSW_ROUTER_LAYERWISE) continue;
    const size_t sz = (size_t)n * a.rows * a.desc.top_k;
    a.cur_e.assign(sz, -1);
    a.cur_g.assign(sz, 0.f);
  }
}

// Routes of the n tokens of this chunk for every adapter whose router input is (L, mat); X = that input.
static void route_at(lsw_model *m, int L, int mat, const float *X, int64_t ldx, int64_t n) {
  for (auto &ap : m->adapters) {
    lsw_adapter &a = *ap;
    const int K = a.desc.top_k;
    if (a.desc.router_kind != LSW_ROUTER_LAYERWISE) {
      if (a.routed) continue;
      a.cur_e.resize((size_t)n * K);
      a.cur_g.resize((size_t)n * K);
    }
    if (a.desc.router_kind == LSW_ROUTER_STATIC) {
      std::fill(a.cur_e.begin(), a.cur_e.end(), 0);
      std::fill(a.cur_g.begin(), a.cur_g.end(), 1.f);
      a.routed = true;
    } else if (a.desc.router_kind == LSW_ROUTER_LAYERWISE) {
      if (a.router_mat[L] != mat) continue;
      const lsw_tensor &R = *a.layer_router[L];
      const int64_t rows = a.rows;
      for (int64_t t = 0; t < n; t++)
        route(R.dtype, R.shape[0], R.shape[1], K, R.data, X + t * ldx, &a.cur_e[(t * rows + L) * K],
              &a.cur_g[(t * rows + L) * K]);
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

// The merges of one SGMM batch (lsw::sgmm_jobs: one pass over the thread pool): add() appends module k of layer L
// -- each adapter's current experts on it (the layer's route for a LAYERWISE adapter, the token's otherwise), its
// rows of the working copy from the pristine weights -- and run() merges all of them.
struct MergeBatch {
  std::vector<lsw_sgmm_term> terms;
  std::vector<lsw_sgmm_job> jobs;
  std::vector<size_t> first;  // jobs[i]'s terms start at terms[first[i]] (pointers set in run(), once terms is built)
  void add(lsw_model *m, int L, int k) {
    const lsw_module_range r = m->module_range(L, k);
    if (m->work[L][r.mat].empty()) return;
    const size_t t0 = terms.size();
    for (auto &ap : m->adapters) {
      const lsw_adapter_mod &am = ap->mods[L][k];
      if (!am.A) continue;
      const int K = ap->desc.top_k;
      const int64_t row = ap->desc.router_kind == LSW_ROUTER_LAYERWISE ? L : 0;
      for (int j = 0; j < K; j++) {
        const int64_t ex = ap->cur_e[row * K + j];
        terms.push_back({(const char *)am.A->data + (size_t)(ex * am.rank * r.cols) * dtype_size(am.A->dtype),
                         (const char *)am.B->data + (size_t)(ex * r.rows * am.rank) * dtype_size(am.B->dtype),
                         am.A->dtype == am.B->dtype ? am.A->dtype : LSW_DTYPE_F32, am.rank,
                         ap->cur_g[row * K + j] * am.scale});
      }
    }
    if (terms.size() == t0) return;
    const lsw_weight &w = m->layers[L].mat[r.mat];
    const size_t es = dtype_size(w.dtype), off = (size_t)(r.row0 * r.cols) * es;
    jobs.push_back({w.dtype, r.rows, r.cols, (const char *)m->pristine[L][r.mat] + off,
                    m->work[L][r.mat].data() + off, nullptr, (int64_t)(terms.size() - t0)});
    first.push_back(t0);
  }
  void run(ThreadPool *pool) {
    for (size_t i = 0; i < jobs.size(); i++) jobs[i].terms = terms.data() + first[i];
    lsw::sgmm_jobs(pool, jobs.data(), (int64_t)jobs.size());
  }
};

// Merge mode: make the working copies hold W0 + Σ g B A for the current token's experts (one SGMM step over
// every adapted weight of every layer), unless the experts and gates equal those the working copies hold: merged_e/g
// are written only here, with the merge (reset clears `merged`), so a BATCHED prompt in between -- which routes its
// tokens but merges nothing -- leaves them describing the working copies.
// Counted once per token (FORMAT.md): layer_step[0] records this forward's outcome (2 merged, 1 skipped), counted
// in lsw_adapters_end_chunk; the later linears of the same token find it set and use the working copies as they are.
static void ensure_merged(lsw_model *m) {
  if (m->layer_step[0]) return;
  std::vector<int32_t> e;
  std::vector<float> g;
  for (auto &a : m->adapters) {
    e.insert(e.end(), a->cur_e.begin(), a->cur_e.begin() + a->desc.top_k);
    g.insert(g.end(), a->cur_g.begin(), a->cur_g.begin() + a->desc.top_k);
  }
  if (m->merged && e == m->merged_e && g == m->merged_g) {
    m->layer_step[0] = 1;
    return;
  }
  // every adapted module of every layer in one batch (one pass over the thread pool for the whole step)
  MergeBatch batch;
  for (int L = 0; L < m->cfg.num_layers; L++)
    for (int k = 0; k < LSW_MOD_COUNT; k++) batch.add(m, L, k);
  batch.run(m->pool.get());
  m->merged = true;
  m->merged_e = e;
  m->merged_g = g;
  m->layer_step[0] = 2;
}

// Merge mode with a LAYERWISE adapter: the working copy of (L, mat) holds W0 + Σ g B A for the experts of every
// adapter on it (their routes for layer L), merged just before the matrix runs; skipped when the key mat_e/g (written
// only with the merge, as merged_e/g above) equals the current routes.
static void ensure_merged_mat(lsw_model *m, int L, int mat) {
  if (m->work[L][mat].empty()) return;
  std::vector<int32_t> &ke = m->mat_e[L][mat];
  std::vector<float> &kg = m->mat_g[L][mat];
  // The key: adapters in order, each adapting this matrix with its top_k experts / gates for this layer (the first
  // and the one-past-last of them in cur_e / cur_g).
  auto for_each_key_part = [&](auto fn) {
    for (auto &ap : m->adapters) {
      const lsw_adapter &a = *ap;
      bool on = false;
      for (int k = 0; k < LSW_MOD_COUNT && !on; k++) on = a.mods[L][k].A && m->module_range(L, k).mat == mat;
      if (!on) continue;
      const int K = a.desc.top_k;
      const int64_t row = a.desc.router_kind == LSW_ROUTER_LAYERWISE ? L : 0;
      fn(a, row * K, (row + 1) * K);
    }
  };
  // compare the current key with the merged one without building it
  bool same = m->mat_merged[L][mat] != 0;
  size_t pos = 0;
  for_each_key_part([&](const lsw_adapter &a, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j++, pos++)
      if (same && (pos >= ke.size() || ke[pos] != a.cur_e[j] || kg[pos] != a.cur_g[j])) same = false;
  });
  if (same && pos == ke.size()) {
    m->layer_step[L] = std::max<char>(m->layer_step[L], 1);
    return;
  }
  ke.clear();
  kg.clear();
  // the modules of this matrix (q, k, v of wqkv; gate, up of w_gate_up) in one batch
  MergeBatch batch;
  for (int k = 0; k < LSW_MOD_COUNT; k++)
    if (m->module_range(L, k).mat == mat) batch.add(m, L, k);
  batch.run(m->pool.get());
  for_each_key_part([&](const lsw_adapter &a, int64_t j0, int64_t j1) {  // the key, as compared above
    ke.insert(ke.end(), a.cur_e.begin() + j0, a.cur_e.begin() + j1);
    kg.insert(kg.end(), a.cur_g.begin() + j0, a.cur_g.begin() + j1);
  });
  m->mat_merged[L][mat] = 1;
  m->layer_step[L] = 2;
}

// y[row0 + i] += Σ_k c_k B_k[i] · (A_k x) for one token and one adapted module (experts ex[0..K), gates g), with
// c_k = fl(g_k · scale) (the module's LoRA scaling).  unfused: per expert a separate LoRA down- and up-projection;
// fused: the up-projections of all experts in one pass over the rows.  The up-projections run on `pool` (nullptr: on
// the calling thread, e.g. inside a pool job); the same bits either way.
static void add_lora(lsw_model *m, const lsw_adapter_mod &am, const lsw_module_range &r, const int32_t *ex,
                     const float *g, int nk, const float *x, float *y, bool fused, float *u, ThreadPool *pool) {
  const KernelTable &kt = K();
  const int64_t rank = am.rank;
  const size_t esA = dtype_size(am.A->dtype), esB = dtype_size(am.B->dtype);
  y += r.row0;
  for (int k = 0; k < nk; k++) {
    const char *A = (const char *)am.A->data + (size_t)(ex[k] * rank * r.cols) * esA;
    kt.matmul_rows(am.A->dtype, A, r.cols, x, r.cols, 1, &u[k * rank], rank, 0, rank, false);
    const float c = g[k] * am.scale;
    for (int64_t j = 0; j < rank; j++) u[k * rank + j] *= c;
    if (!fused) {  // unfused: one LoRA up-projection per expert
      const char *B = (const char *)am.B->data + (size_t)(ex[k] * r.rows * rank) * esB;
      matmul(pool, am.B->dtype, B, r.rows, rank, &u[k * rank], rank, 1, y, r.rows, true);
    }
  }
  if (fused) {  // fused: all selected experts' up-projections in one pass over the rows
    auto up = [&](int, int64_t b, int64_t e) {
      for (int k = 0; k < nk; k++) {
        const char *B = (const char *)am.B->data + (size_t)(ex[k] * r.rows * rank) * esB;
        kt.matmul_rows(am.B->dtype, B, rank, &u[k * rank], rank, 1, y, r.rows, b, e, true);
      }
    };
    if (pool) pool->parallel_for(r.rows, 16, up);
    else up(0, 0, r.rows);
  }
}

// f(adapter, module, range) for every adapted module of fused matrix `mat` of layer L, adapters and modules in order
// (whole-FFN experts and adapters not routed in this chunk excluded: lsw_ffn_experts / not adapted here)
template <class F>
static void for_each_mat_module(lsw_model *m, int L, int mat, F &&f) {
  for (auto &ap : m->adapters) {
    if (ap->desc.ffn_experts || !ap->routed) continue;
    for (int k = 0; k < LSW_MOD_COUNT; k++) {
      const lsw_adapter_mod &am = ap->mods[L][k];
      if (!am.A) continue;
      const lsw_module_range r = m->module_range(L, k);
      if (r.mat == mat) f(*ap, am, r);
    }
  }
}

// Y[t][row0 + i] += Σ_k g_k B_k[i] · (A_k x_t)  for one adapted module of layer L, every token of the chunk, one
// expert at a time (unfused mode, and merge mode's linears that take the delta path; fused mode: fused_decode /
// fused_prompt)
static void apply_delta(lsw_model *m, const lsw_adapter &a, int L, const lsw_adapter_mod &am,
                        const lsw_module_range &r, const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy) {
  const int K = a.desc.top_k;
  const int64_t row = a.desc.router_kind == LSW_ROUTER_LAYERWISE ? L : 0;
  std::vector<float> u((size_t)K * am.rank);
  for (int64_t t = 0; t < n; t++) {
    const size_t o = (size_t)(t * a.rows + row) * K;
    add_lora(m, am, r, &a.cur_e[o], &a.cur_g[o], K, X + t * ldx, Y + t * ldy, false, u.data(), m->pool.get());
  }
}

// Fused mode, one token: every adapted module of fused matrix `mat` in two pool dispatches instead of 1 + 2 per
// module and expert.  1. All shrinks u_j = c_j (A_j x) (every adapter, module and selected expert j, row by row)
// split over the threads.  2. Each thread's rows of W x, then, for those rows, every job's B_j u_j added in the order
// of the per-module path (adapters, modules, experts), so each row sees the same operations in the same order as
// add_lora's fused path: the same bits, with the rows' outputs still in cache.
namespace {
struct FusedJob {
  const char *A, *B;
  int32_t dA, dB;
  int64_t rank, row0, rows, cols, uoff;
  float c;
};
}  // namespace
static void fused_decode(lsw_model *m, int L, int mat, const void *W, const lsw_weight &w, const float *x, float *Y,
                         bool acc) {
  static thread_local std::vector<FusedJob> jobs;
  static thread_local std::vector<float> u;
  jobs.clear();
  int64_t T = 0;
  for_each_mat_module(m, L, mat, [&](const lsw_adapter &a, const lsw_adapter_mod &am, const lsw_module_range &r) {
    const int K = a.desc.top_k;
    const int64_t o = (a.desc.router_kind == LSW_ROUTER_LAYERWISE ? L : 0) * K;  // one token: routes [row][top_k]
    const size_t esA = dtype_size(am.A->dtype), esB = dtype_size(am.B->dtype);
    for (int kk = 0; kk < K; kk++) {
      const int32_t e = a.cur_e[o + kk];
      jobs.push_back({(const char *)am.A->data + (size_t)(e * am.rank * r.cols) * esA,
                      (const char *)am.B->data + (size_t)(e * r.rows * am.rank) * esB, am.A->dtype, am.B->dtype,
                      am.rank, r.row0, r.rows, r.cols, T, a.cur_g[o + kk] * am.scale});
      T += am.rank;
    }
  });
  const KernelTable &kt = K();
  const int64_t cols = w.cols;
  if (u.size() < (size_t)T) u.resize((size_t)T);
  float *uu = u.data();
  const FusedJob *J = jobs.data();
  const size_t nj = jobs.size();
  auto shrink = [&](int, int64_t b, int64_t e) {
    for (size_t j = 0; j < nj; j++) {
      const int64_t lo = std::max(b, J[j].uoff), hi = std::min(e, J[j].uoff + J[j].rank);
      if (lo >= hi) continue;
      float *uj = uu + J[j].uoff;
      kt.matmul_rows(J[j].dA, J[j].A, J[j].cols, x, J[j].cols, 1, uj, J[j].rank, lo - J[j].uoff, hi - J[j].uoff, false);
      for (int64_t i = lo - J[j].uoff; i < hi - J[j].uoff; i++) uj[i] *= J[j].c;
    }
  };
  ThreadPool *pool = m->pool.get();
  if (pool->size() == 1 || T * cols < 32768) shrink(0, 0, T);  // small problems stay on the calling thread (as matmul)
  else pool->parallel_for(T, 8, shrink);
  auto rows = [&](int, int64_t b, int64_t e) {
    kt.matmul_rows(w.dtype, W, cols, x, cols, 1, Y, w.rows, b, e, acc);
    for (size_t j = 0; j < nj; j++) {
      const int64_t lo = std::max(b, J[j].row0), hi = std::min(e, J[j].row0 + J[j].rows);
      if (lo >= hi) continue;
      kt.matmul_rows(J[j].dB, J[j].B, J[j].rank, uu + J[j].uoff, J[j].rank, 1, Y + J[j].row0, J[j].rows,
                     lo - J[j].row0, hi - J[j].row0, true);
    }
  };
  if (pool->size() == 1 || w.rows * cols < 32768) rows(0, 0, w.rows);
  else pool->parallel_for(w.rows, 16, rows);
}

// A prompt chunk's (token, slot) pairs for one routing row of an adapter, sorted by expert: the pairs
// [start[e], start[e+1]) chose expert e, tokens in order; tok / slot per pair; used: the experts with pairs.  Returns
// the number of pairs.
static int64_t group_pairs(const lsw_adapter &a, int64_t row, int64_t n, lsw_model::PromptDeltaScratch &ps) {
  const int K = a.desc.top_k, E = a.desc.num_experts;
  ps.start.assign((size_t)E + 1, 0);
  for (int64_t t = 0; t < n; t++)
    for (int k = 0; k < K; k++) {
      const int32_t e = a.cur_e[(size_t)(t * a.rows + row) * K + k];
      if (e >= 0 && e < E) ps.start[(size_t)e + 1]++;
    }
  for (int e = 0; e < E; e++) ps.start[(size_t)e + 1] += ps.start[(size_t)e];
  const int64_t np = ps.start[(size_t)E];
  ps.tok.resize((size_t)np);
  ps.slot.resize((size_t)np);
  std::vector<int64_t> fill(ps.start.begin(), ps.start.end() - 1);
  for (int64_t t = 0; t < n; t++)
    for (int k = 0; k < K; k++) {
      const int32_t e = a.cur_e[(size_t)(t * a.rows + row) * K + k];
      if (e < 0 || e >= E) continue;
      const int64_t j = fill[(size_t)e]++;
      ps.tok[(size_t)j] = t;
      ps.slot[(size_t)j] = k;
    }
  ps.used.clear();
  for (int e = 0; e < E; e++)
    if (ps.start[(size_t)e + 1] > ps.start[(size_t)e]) ps.used.push_back(e);
  return np;
}

// One adapted module's LoRA deltas for the grouped pairs of ps (group_pairs), expert by expert:
//   Y[dst[p] * ldy + r.row0 + i] += B_e (c[p] · (A_e X[src[p] * ldx + :]))  for every pair p of every used expert e.
// The inputs are gathered per expert; one pool dispatch runs every used expert's shrink as a matrix product over its
// pairs (matmul_rows, so its long dot products run as the backbone's prefill does), one dispatch over the module's
// rows adds each expert's up-projection in ascending expert id (KernelTable::lora_up: fma chains along the rank, no
// horizontal sums, scattered back).  So each expert's A and B are read and widened once per tile of pairs instead of
// once per token, and the arithmetic of every element depends on the routes only, not on the thread count.
static void grouped_delta(lsw_model *m, const lsw_adapter_mod &am, const lsw_module_range &r,
                          lsw_model::PromptDeltaScratch &ps, const int64_t *src, const float *X, int64_t ldx,
                          const float *c, const int64_t *dst, float *Y, int64_t ldy) {
  const int64_t rank = am.rank, cols = r.cols, np = (int64_t)ps.tok.size(), nu = (int64_t)ps.used.size();
  if (np == 0 || rank == 0) return;
  if (ps.x.size() < (size_t)(np * cols)) ps.x.resize((size_t)(np * cols));
  if (ps.u.size() < (size_t)(np * rank)) ps.u.resize((size_t)(np * rank));
  for (int64_t j = 0; j < np; j++) std::memcpy(&ps.x[(size_t)(j * cols)], X + src[j] * ldx, (size_t)cols * sizeof(float));
  const KernelTable &kt = K();
  ThreadPool *pool = m->pool.get();
  const size_t esA = dtype_size(am.A->dtype), esB = dtype_size(am.B->dtype);
  const int64_t *st = ps.start.data(), *ur = ps.used.data();
  const float *xp = ps.x.data();
  float *up_ = ps.u.data();
  auto shrink = [&](int, int64_t b, int64_t e_) {
    for (int64_t q = b / rank; q * rank < e_; q++) {
      const int e = (int)ur[q];
      const int64_t j0 = st[e], ne = st[e + 1] - j0;
      const int64_t lo = std::max(b, q * rank) - q * rank, hi = std::min(e_, (q + 1) * rank) - q * rank;
      const char *A = (const char *)am.A->data + (size_t)(e * rank * cols) * esA;
      float *u = up_ + j0 * rank;
      kt.matmul_rows(am.A->dtype, A, cols, xp + j0 * cols, cols, ne, u, rank, lo, hi, false);
      for (int64_t j = 0; j < ne; j++)
        for (int64_t i = lo; i < hi; i++) u[j * rank + i] *= c[j0 + j];
    }
  };
  if (pool->size() == 1 || rank * cols * np < 32768) shrink(0, 0, nu * rank);
  else pool->parallel_for(nu * rank, 8, shrink);
  auto up = [&](int, int64_t b, int64_t e_) {
    for (int64_t q = 0; q < nu; q++) {
      const int e = (int)ur[q];
      const int64_t j0 = st[e], ne = st[e + 1] - j0;
      const char *B = (const char *)am.B->data + (size_t)(e * r.rows * rank) * esB;
      kt.lora_up(am.B->dtype, B, rank, up_ + j0 * rank, rank, ne, Y + r.row0, ldy, dst + j0, b, e_);
    }
  };
  if (pool->size() == 1 || r.rows * rank * np < 32768) up(0, 0, r.rows);
  else pool->parallel_for(r.rows, 16, up);
}

// Fused mode (and BATCHED merge-mode prompts), a chunk of n > 1 tokens: the adapter deltas of fused matrix `mat`,
// each adapted module (adapters, then modules, in order) through grouped_delta with c = fl(g · scale) per pair, as
// add_lora.
static void fused_prompt(lsw_model *m, int L, int mat, const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy) {
  auto &ps = m->prompt_delta;
  for_each_mat_module(m, L, mat, [&](const lsw_adapter &a, const lsw_adapter_mod &am, const lsw_module_range &r) {
    const int K = a.desc.top_k;
    const int64_t row = a.desc.router_kind == LSW_ROUTER_LAYERWISE ? L : 0;
    const int64_t np = group_pairs(a, row, n, ps);
    ps.c.resize((size_t)np);
    for (int64_t j = 0; j < np; j++)
      ps.c[(size_t)j] = a.cur_g[(size_t)(ps.tok[(size_t)j] * a.rows + row) * K + ps.slot[(size_t)j]] * am.scale;
    grouped_delta(m, am, r, ps, ps.tok.data(), X, ldx, ps.c.data(), ps.tok.data(), Y, ldy);
  });
}

// The adapter-aware linear: Y (=|+=) W x (+ adapter deltas).  Called for every linear of the forward.
void lsw_linear_adapted(lsw_model *m, int L, int mat, const float *X, int64_t n, float *Y, int64_t ldy, bool acc) {
  const lsw_weight &w = m->layers[L].mat[mat];
  if (m->mode == LSW_MODE_BASE) {  // adapters ignored: the bare backbone, no routing (routes recorded as -1 / 0)
    matmul(m->pool.get(), w.dtype, w.data, w.rows, w.cols, X, w.cols, n, Y, ldy, acc);
    return;
  }
  route_at(m, L, mat, X, w.cols, n);
  // merge mode runs the merged backbone for single-token steps once every router has spoken (a TOKENWISE merge-mode
  // prompt is fed one token at a time: lsw_cpu_forward); the linears of layer 0 before the router input take the delta
  // path.  With a LAYERWISE adapter every matrix is merged just before it runs (its routers have spoken by then).
  // Chunks of n > 1 tokens (BATCHED merge-mode prompts) take the delta path as fused mode does and leave the working
  // copies and their merge keys (merged_e/g, mat_e/g) alone: the next single token's skip test compares its routes
  // with what the working copies hold.
  const bool merge = m->mode == LSW_MODE_MERGE && n == 1 && (m->layerwise || all_routed(m));
  const bool fused = m->mode == LSW_MODE_FUSED || (m->mode == LSW_MODE_MERGE && n > 1);
  const void *W = w.data;
  if (merge) {
    if (m->layerwise) ensure_merged_mat(m, L, mat);
    else ensure_merged(m);
    if (!m->work[L][mat].empty()) W = m->work[L][mat].data();
  }
  if (fused && n == 1) {
    fused_decode(m, L, mat, W, w, X, Y, acc);
    return;
  }
  matmul(m->pool.get(), w.dtype, W, w.rows, w.cols, X, w.cols, n, Y, ldy, acc);
  if (merge) return;
  if (fused) {
    fused_prompt(m, L, mat, X, w.cols, n, Y, ldy);
    return;
  }
  for_each_mat_module(m, L, mat, [&](const lsw_adapter &a, const lsw_adapter_mod &am, const lsw_module_range &r) {
    apply_delta(m, a, L, am, r, X, w.cols, n, Y, ldy);
  });
}

// Does layer L's MLP run as MixLoRA whole-FFN experts (lsw_ffn_experts) in this chunk?  Not in BASE mode, and not
// for merge-mode single tokens (top_k 1: the merged FFN is the expert's FFN; top_k > 1 cannot run in merge mode).
bool lsw_ffn_experts_active(const lsw_model *m, int L, int64_t n) {
  if (m->ffn_adapter < 0 || m->mode == LSW_MODE_BASE || (m->mode == LSW_MODE_MERGE && n == 1)) return false;
  return m->adapters[m->ffn_adapter]->router_mat[L] >= 0;
}

// The MLP of layer L with MixLoRA experts (docs/FORMAT.md "Layer-wise adapters"), for the n tokens of XN (the MLP
// input): x[t] += W_d (Σ_k g_k h_k) + Σ_k g_k ΔD_k h_k,  h_k = silu(W_g x + ΔG_k x) ⊙ (W_u x + ΔU_k x).
// gu [n][2I] and act [n][I] are scratch.  The base gate/up matmul (with other adapters' deltas) runs once.
void lsw_ffn_experts(lsw_model *m, int L, const float *XN, int64_t n, float *gu, float *act, float *x) {
  lsw_adapter &a = *m->adapters[m->ffn_adapter];
  const int64_t H = m->cfg.hidden_size, I = m->cfg.intermediate_size;
  const int K = a.desc.top_k;
  const bool fused = m->mode == LSW_MODE_FUSED || (m->mode == LSW_MODE_MERGE && n > 1);  // BATCHED merge prompts
  lsw_linear_adapted(m, L, LSW_MAT_GATE_UP, XN, n, gu, 2 * I, false);  // routes a (and others) on XN
  const lsw_adapter_mod &mg = a.mods[L][LSW_MOD_GATE], &mu = a.mods[L][LSW_MOD_UP], &md = a.mods[L][LSW_MOD_DOWN];
  const lsw_module_range rg = m->module_range(L, LSW_MOD_GATE), ru = m->module_range(L, LSW_MOD_UP),
                         rd = m->module_range(L, LSW_MOD_DOWN);
  int64_t rmax = std::max(std::max(mg.rank, mu.rank), md.rank);
  a.ffn_h.resize((size_t)n * K * I);
  if (fused && n > 1) {  // a prompt chunk: the experts' deltas grouped by expert (group_pairs, grouped_delta)
    auto &ps = m->prompt_delta;
    const int64_t np = group_pairs(a, L, n, ps);
    // each pair's gate/up row: its token's base gate/up (with other adapters' deltas) plus the expert's gate/up deltas
    // (c = fl(1 · scale), as add_lora with gate 1)
    ps.gu.resize((size_t)(np * 2 * I));
    ps.idx.resize((size_t)np);
    for (int64_t j = 0; j < np; j++) {
      std::memcpy(&ps.gu[(size_t)(j * 2 * I)], gu + ps.tok[(size_t)j] * 2 * I, sizeof(float) * 2 * I);
      ps.idx[(size_t)j] = j;
    }
    if (mg.A) {
      ps.c.assign((size_t)np, 1.f * mg.scale);
      grouped_delta(m, mg, rg, ps, ps.tok.data(), XN, H, ps.c.data(), ps.idx.data(), ps.gu.data(), 2 * I);
    }
    if (mu.A) {
      ps.c.assign((size_t)np, 1.f * mu.scale);
      grouped_delta(m, mu, ru, ps, ps.tok.data(), XN, H, ps.c.data(), ps.idx.data(), ps.gu.data(), 2 * I);
    }
    // h of each pair -> ffn_h[t][k]
    const float *pg = ps.gu.data();
    const int64_t *ptok = ps.tok.data(), *pslot = ps.slot.data();
    float *fh = a.ffn_h.data();
    m->pool->parallel_for(np, 1, [&](int, int64_t b, int64_t e) {
      for (int64_t j = b; j < e; j++) swiglu(1, I, pg + j * 2 * I, 2 * I, fh + (ptok[j] * K + pslot[j]) * I, I);
    });
    // act[t] = Σ_k g_k h_k, slots in order (as below)
    for (int64_t t = 0; t < n; t++) {
      const float *g = &a.cur_g[(t * a.rows + L) * K];
      float *hs = act + t * I;
      std::fill(hs, hs + I, 0.f);
      for (int k = 0; k < K; k++) {
        const float *h = &a.ffn_h[((size_t)t * K + k) * I];
        for (int64_t i = 0; i < I; i++) hs[i] += g[k] * h[i];
      }
    }
    lsw_linear_adapted(m, L, LSW_MAT_DOWN, act, n, x, H, true);  // x += W_d Σ g h (+ other adapters on down)
    if (!md.A) return;
    // x[t] += Σ_k fl(g_k · scale) ΔD_k h_k: the pairs' h rows (t K + k of ffn_h) through the down deltas
    ps.c.resize((size_t)np);
    for (int64_t j = 0; j < np; j++) {
      const int64_t t = ps.tok[(size_t)j], k = ps.slot[(size_t)j];
      ps.idx[(size_t)j] = t * K + k;
      ps.c[(size_t)j] = a.cur_g[(size_t)(t * a.rows + L) * K + k] * md.scale;
    }
    grouped_delta(m, md, rd, ps, ps.idx.data(), a.ffn_h.data(), I, ps.c.data(), ps.tok.data(), x, H);
    return;
  }
  a.ffn_tmp.resize((size_t)2 * I);
  std::vector<float> u((size_t)std::max<int64_t>(rmax, 1));
  float *tmp = a.ffn_tmp.data();
  const float one = 1.f;
  for (int64_t t = 0; t < n; t++) {
    const int32_t *ex = &a.cur_e[(t * a.rows + L) * K];
    const float *g = &a.cur_g[(t * a.rows + L) * K];
    float *hs = act + t * I;
    std::fill(hs, hs + I, 0.f);
    for (int k = 0; k < K; k++) {
      std::memcpy(tmp, gu + t * 2 * I, sizeof(float) * 2 * I);
      if (mg.A) add_lora(m, mg, rg, &ex[k], &one, 1, XN + t * H, tmp, fused, u.data(), m->pool.get());
      if (mu.A) add_lora(m, mu, ru, &ex[k], &one, 1, XN + t * H, tmp, fused, u.data(), m->pool.get());
      float *h = &a.ffn_h[((size_t)t * K + k) * I];
      swiglu(1, I, tmp, 2 * I, h, I);
      for (int64_t i = 0; i < I; i++) hs[i] += g[k] * h[i];
    }
  }
  lsw_linear_adapted(m, L, LSW_MAT_DOWN, act, n, x, H, true);  // x += W_d Σ g h (+ other adapters on down)
  if (!md.A) return;
  for (int64_t t = 0; t < n; t++) {
    const int32_t *ex = &a.cur_e[(t * a.rows + L) * K];
    const float *g = &a.cur_g[(t * a.rows + L) * K];
    for (int k = 0; k < K; k++)
      add_lora(m, md, rd, &ex[k], &g[k], 1, &a.ffn_h[((size_t)t * K + k) * I], x + t * H, fused, u.data(), m->pool.get());
  }
}

// After a forward chunk: append the chunk's routes to the history; merge mode counts its steps (one per token, or
// with a LAYERWISE adapter one per layer per token; chunks of n > 1 tokens -- BATCHED prompts -- merge nothing and
// count nothing).
void lsw_adapters_end_chunk(lsw_model *m, int64_t n) {
  for (auto &ap : m->adapters) {
    lsw_adapter &a = *ap;
    const size_t K = a.desc.top_k, c = (size_t)n * a.rows * K;
    if (m->mode == LSW_MODE_BASE || !a.routed) {
      a.cur_e.assign(c, -1);
      a.cur_g.assign(c, 0.f);
    }
    a.hist_e.insert(a.hist_e.end(), a.cur_e.begin(), a.cur_e.begin() + c);
    a.hist_g.insert(a.hist_g.end(), a.cur_g.begin(), a.cur_g.begin() + c);
    a.routed = false;
  }
  for (char &st : m->layer_step) {
    if (st == 2) m->merge_steps++;
    else if (st == 1) m->merge_skipped++;
    st = 0;
  }
}

lsw_status lsw_adapters_get_routes(lsw_model *m, int32_t id, int32_t pos, int32_t n, int32_t *experts,
                                   float *gates) {
  if (id < 0 || id >= (int32_t)m->adapters.size())
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "no adapter with id %d", id);
  const lsw_adapter &a = *m->adapters[id];
  const int64_t K = (int64_t)a.desc.top_k * a.rows, have = (int64_t)a.hist_e.size() / K;
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

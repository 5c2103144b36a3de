// Model building (mapping, tensor registration and validation) and the CPU forward.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine.h"
#include "kernels.h"
#include "random.h"

using namespace lsw;

lsw_module_range lsw_model::module_range(int layer, int module) const {
  (void)layer;
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  switch (module) {
    case LSW_MOD_Q: return {LSW_MAT_QKV, 0, q_dim, H};
    case LSW_MOD_K: return {LSW_MAT_QKV, q_dim, kv_dim, H};
    case LSW_MOD_V: return {LSW_MAT_QKV, q_dim + kv_dim, kv_dim, H};
    case LSW_MOD_O: return {LSW_MAT_O, 0, H, q_dim};
    case LSW_MOD_GATE: return {LSW_MAT_GATE_UP, 0, I, H};
    case LSW_MOD_UP: return {LSW_MAT_GATE_UP, I, I, H};
    default: return {LSW_MAT_DOWN, 0, H, I};
  }
}

// ---------------------------------------------------------------------------------------------
lsw_status lsw_validate_config(const lsw_model_config *c) {
  if (!c) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config is NULL");
#define POS(f)                                                                                  \
  if (c->f <= 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: " #f " must be positive (got %d)", (int)c->f);
  POS(vocab_size) POS(hidden_size) POS(intermediate_size) POS(num_layers) POS(num_heads) POS(num_kv_heads)
  POS(head_dim) POS(max_context)
#undef POS
  if (c->num_heads % c->num_kv_heads)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: num_heads (%d) is not a multiple of num_kv_heads (%d)",
                    c->num_heads, c->num_kv_heads);
  if (c->head_dim % 2) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: head_dim (%d) must be even", c->head_dim);
  if (!(c->rms_norm_eps >= 0) || !std::isfinite(c->rms_norm_eps))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: rms_norm_eps must be a finite non-negative number");
  if (!(c->rope_theta > 0) || !std::isfinite(c->rope_theta))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: rope_theta must be positive");
  if (c->rope_type < LSW_ROPE_DEFAULT || c->rope_type > LSW_ROPE_LLAMA3)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: unknown rope_type %d", c->rope_type);
  if (c->rope_type != LSW_ROPE_DEFAULT && !(c->rope_factor > 0))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: rope_factor must be positive for rope scaling");
  if (c->rope_type == LSW_ROPE_LLAMA3 &&
      (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || !(c->rope_low_freq_factor > 0) ||
       c->rope_original_max_position <= 0))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT,
                    "config: llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor and "
                    "original_max_position > 0");
  if (c->backend != LSW_BACKEND_CPU && c->backend != LSW_BACKEND_CUDA)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: unknown backend %d", c->backend);
  if (c->n_threads < 0) return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: n_threads must be >= 0");
  // the CPU backend computes in fp32 either way (lsw.h, lsw_precision); the value is still checked on every backend
  if (c->prefill_precision != LSW_PRECISION_PRECISE && c->prefill_precision != LSW_PRECISION_FAST)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: unknown prefill_precision %d (0 precise, 1 fast)",
                    c->prefill_precision);
  if (c->merge_prompt != LSW_MERGE_PROMPT_TOKENWISE && c->merge_prompt != LSW_MERGE_PROMPT_BATCHED)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: unknown merge_prompt %d (0 tokenwise, 1 batched)", c->merge_prompt);
  if (c->kv_dtype < LSW_DTYPE_F32 || c->kv_dtype > LSW_DTYPE_BF16)
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "config: unknown kv_dtype %d (0 f32, 1 f16, 2 bf16)", c->kv_dtype);
  return LSW_OK;
}

// CPU backend: a copy of the file in anonymous memory backed by transparent huge pages, used instead of the file
// mapping (file-backed huge pages need CONFIG_READ_ONLY_THP_FOR_FS, which common kernels lack).  With 4 KiB pages
// the decode weight stream takes a TLB miss (a page walk) every 4 KiB.  Only when THP is enabled ("always" or
// "madvise"), the file fits in half of MemAvailable and LSW_HUGEPAGES is not 0; nullptr (use the mapping) otherwise
// or on any failure.  Read-only like the mapping.
static void *read_into_huge_pages(int fd, uint64_t size) {
  if (const char *e = std::getenv("LSW_HUGEPAGES"))
    if (!std::strcmp(e, "0")) return nullptr;
  char buf[256] = "";
  if (FILE *f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
    if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
    std::fclose(f);
  }
  if (!std::strstr(buf, "[always]") && !std::strstr(buf, "[madvise]")) return nullptr;
  uint64_t avail_kb = 0;
  if (FILE *f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", (unsigned long long *)&avail_kb) == 1) break;
    std::fclose(f);
  }
  if (size > avail_kb * 1024 / 2) return nullptr;
  const uint64_t huge = 2u << 20, len = (size + 4095) / 4096 * 4096;
  void *raw = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  char *r = (char *)raw, *a = (char *)(((uintptr_t)r + huge - 1) & ~(uintptr_t)(huge - 1));
  if (a > r) munmap(r, a - r);
  if (r + len + huge > a + len) munmap(a + len, r + len + huge - (a + len));
  madvise(a, len, MADV_HUGEPAGE);
  for (uint64_t off = 0; off < size;) {
    const ssize_t k = pread(fd, a + off, (size_t)std::min<uint64_t>(size - off, 64u << 20), (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      munmap(a, len);
      return nullptr;
    }
    off += (uint64_t)k;
  }
  mprotect(a, len, PROT_READ);
  return a;
}

lsw_status lsw_map_file(lsw_model *m, const char *path, uint64_t data_offset, int32_t *file_id) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return LSW_FAIL(LSW_E_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return LSW_FAIL(LSW_E_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  const uint64_t size = (uint64_t)st.st_size;
  if (data_offset > size) {
    ::close(fd);
    return LSW_FAIL(LSW_E_FORMAT, "%s: data offset %llu lies past the end of the file (%llu bytes)", path,
                    (unsigned long long)data_offset, (unsigned long long)size);
  }
  void *base = nullptr;
  if (size > 0 && m->cfg.backend == LSW_BACKEND_CPU && (base = read_into_huge_pages(fd, size))) {
    m->host_bytes += size;
  } else if (size > 0) {
    base = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return LSW_FAIL(LSW_E_IO, "%s: mmap failed: %s", path, strerror(e));
    }
  }
  lsw_file f;
  f.path = path;
  f.fd = fd;
  f.base = base;
  f.size = size;
  f.data_offset = data_offset;
  m->files.push_back(f);
  *file_id = (int32_t)m->files.size() - 1;
  return LSW_OK;
}

void lsw_unmap_files(lsw_model *m) {
  for (auto &f : m->files) {
    if (f.base) munmap(f.base, f.size);
    if (f.fd >= 0) ::close(f.fd);
    f.base = nullptr;
    f.fd = -1;
  }
}

// Expected shape/dtype class of a backbone tensor name. Returns false for an unknown name.
static bool expected_shape(const lsw_model *m, const std::string &name, std::vector<int64_t> &shape, bool &is_f32_1d,
                           int &layer) {
  const auto &c = m->cfg;
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size;
  const int64_t qd = (int64_t)c.num_heads * c.head_dim, kvd = (int64_t)c.num_kv_heads * c.head_dim;
  layer = -1;
  is_f32_1d = false;
  if (name == "tok_embeddings.weight" || name == "lm_head.weight") {
    shape = {V, H};
    return true;
  }
  if (name == "norm.weight") {
    shape = {H};
    is_f32_1d = true;
    return true;
  }
  if (name.compare(0, 7, "layers.") != 0) return false;
  size_t p = 7, q = name.find('.', p);
  if (q == std::string::npos || q == p || q - p > 9) return false;
  for (size_t i = p; i < q; i++)
    if (name[i] < '0' || name[i] > '9') return false;
  layer = std::stoi(name.substr(p, q - p));
  if (layer >= c.num_layers) return false;
  const std::string rest = name.substr(q + 1);
  if (rest == "attn_norm.weight" || rest == "ffn_norm.weight") {
    shape = {H};
    is_f32_1d = true;
  } else if (rest == "attn.wqkv.weight") {
    shape = {qd + 2 * kvd, H};
  } else if (rest == "attn.bqkv.bias") {
    shape = {qd + 2 * kvd};
    is_f32_1d = true;
  } else if (rest == "attn.wo.weight") {
    shape = {H, qd};
  } else if (rest == "ffn.w_gate_up.weight") {
    shape = {2 * I, H};
  } else if (rest == "ffn.w_down.weight") {
    shape = {H, I};
  } else {
    return false;
  }
  return true;
}

static std::string shape_str(int32_t ndim, const int64_t *s) {
  std::string r = "[";
  for (int i = 0; i < ndim; i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Seeded values for synthetic tensors: lsw_random_value (random.h, shared with the CUDA backend), rounded to
// the dtype to nearest even.
static void fill_random(int dtype, bool one_plus, uint64_t seed, float scale, uint64_t count, uint8_t *dst) {
  default_pool().parallel_for((int64_t)count, 4096, [&](int, int64_t b, int64_t e) {
    float buf[1024];
    for (int64_t i0 = b; i0 < e; i0 += 1024) {
      const int64_t k = std::min<int64_t>(1024, e - i0);
      for (int64_t j = 0; j < k; j++) buf[j] = lsw_random_value(seed, (uint64_t)(i0 + j), scale, one_plus ? 1 : 0);
      from_f32(dtype, buf, dst + (size_t)i0 * dtype_size(dtype), k);
    }
  });
}

lsw_status lsw_register_tensor(lsw_model *m, const char *cname, int32_t dtype, int32_t ndim, const int64_t *shape,
                               int32_t file_id, uint64_t offset, bool check_name);

lsw_status lsw_adapter_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                              int32_t file_id, uint64_t offset);

lsw_status lsw_add_random_tensor(lsw_model *m, const char *cname, int32_t dtype, int32_t ndim, const int64_t *shape,
                                 uint64_t seed, float scale) {
  if (!(scale > 0) || !std::isfinite(scale))
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "tensor %s: random scale must be positive", cname);
  lsw_status st = std::strncmp(cname, "adapters.", 9) == 0 ? lsw_adapter_tensor(m, cname, dtype, ndim, shape, -1, 0)
                                                             : lsw_register_tensor(m, cname, dtype, ndim, shape, -1, 0, true);
  if (st) return st;
  lsw_tensor &t = m->tensors.at(cname);
  std::unique_ptr<uint8_t[]> buf(new uint8_t[t.nbytes]);
  if (m->cfg.backend == LSW_BACKEND_CUDA)  // generated on the device at upload (no host copy of a 7B model)
    m->random_dev[cname] = {seed, scale, ndim == 1 && dtype == LSW_DTYPE_F32 ? 1 : 0};
  else
    fill_random(dtype, ndim == 1 && dtype == LSW_DTYPE_F32, seed, scale, t.nbytes / dtype_size(dtype), buf.get());
  t.data = buf.get();
  m->host_bytes += t.nbytes;
  m->owned.push_back(std::move(buf));
  return LSW_OK;
}

lsw_status lsw_register_tensor(lsw_model *m, const char *cname, int32_t dtype, int32_t ndim, const int64_t *shape,
                               int32_t file_id, uint64_t offset, bool check_name) {
  const std::string name = cname;
  if (m->tensors.count(name)) return LSW_FAIL(LSW_E_FORMAT, "tensor %s: registered twice", cname);
  if (dtype_size(dtype) == 0) return LSW_FAIL(LSW_E_FORMAT, "tensor %s: unknown dtype %d", cname, dtype);
  if (ndim < 1 || ndim > 4 || !shape) return LSW_FAIL(LSW_E_FORMAT, "tensor %s: bad rank %d", cname, ndim);
  uint64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] <= 0 || shape[i] > (int64_t)1 << 40)
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: bad dimension %lld", cname, (long long)shape[i]);
    count *= (uint64_t)shape[i];
    if (count > ((uint64_t)1 << 46)) return LSW_FAIL(LSW_E_FORMAT, "tensor %s: too large", cname);
  }
  if (check_name) {
    std::vector<int64_t> exp;
    bool f32_1d;
    int layer;
    if (!expected_shape(m, name, exp, f32_1d, layer))
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: unknown tensor name for this model (num_layers %d)", cname,
                      m->cfg.num_layers);
    if ((int)exp.size() != ndim || !std::equal(exp.begin(), exp.end(), shape))
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: shape %s contradicts the config (expected %s)", cname,
                      shape_str(ndim, shape).c_str(), shape_str((int)exp.size(), exp.data()).c_str());
    if (f32_1d && dtype != LSW_DTYPE_F32)
      return LSW_FAIL(LSW_E_FORMAT, "tensor %s: dtype %s, expected F32", cname, dtype_name(dtype));
  }
  const uint64_t nbytes = count * dtype_size(dtype);
  if (file_id == -1) {  // engine-allocated (the caller sets data)
    lsw_tensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape.assign(shape, shape + ndim);
    t.nbytes = nbytes;
    m->tensors.emplace(name, std::move(t));
    return LSW_OK;
  }
  if (file_id < 0 || file_id >= (int32_t)m->files.size())
    return LSW_FAIL(LSW_E_INVALID_ARGUMENT, "tensor %s: no mapped file with id %d", cname, file_id);
  const lsw_file &f = m->files[file_id];
  const uint64_t avail = f.size - f.data_offset;
  if (offset > avail || nbytes > avail - offset)
    return LSW_FAIL(LSW_E_FORMAT, "%s: tensor %s: bytes [%llu, %llu) of the data section lie past the end of the file "
                    "(data section is %llu bytes)", f.path.c_str(), cname, (unsigned long long)offset,
                    (unsigned long long)(offset + nbytes), (unsigned long long)avail);
  lsw_tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape.assign(shape, shape + ndim);
  t.file_id = file_id;
  t.offset = offset;
  t.data = (const char *)f.base + f.data_offset + offset;
  t.nbytes = nbytes;
  m->tensors.emplace(name, std::move(t));
  return LSW_OK;
}

static lsw_status need(lsw_model *m, const std::string &name, lsw_weight *w) {
  auto it = m->tensors.find(name);
  if (it == m->tensors.end()) return LSW_FAIL(LSW_E_FORMAT, "tensor %s is missing", name.c_str());
  const lsw_tensor &t = it->second;
  w->data = t.data;
  w->dtype = t.dtype;
  w->rows = t.shape[0];
  w->cols = t.shape.size() > 1 ? t.shape[1] : 1;
  w->t = &t;
  return LSW_OK;
}

void lsw_scratch_reserve(lsw_model *m, int64_t n) {
  auto &s = m->scratch;
  if (n <= s.cap) return;
  const auto &c = m->cfg;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  s.x.resize(n * H);
  s.xn.resize(n * std::max(H, I));
  s.qkv.resize(n * m->qkv_dim);
  s.att.resize(n * m->q_dim);
  s.gu.resize(n * 2 * I);
  s.act.resize(n * I);
  s.cos_t.resize(n * c.head_dim / 2);
  s.sin_t.resize(n * c.head_dim / 2);
  s.pos.resize(n);
  s.cap = n;
}

lsw_status lsw_cpu_finalize(lsw_model *m) {
  const auto &c = m->cfg;
  lsw_status st;
  m->q_dim = (int64_t)c.num_heads * c.head_dim;
  m->kv_dim = (int64_t)c.num_kv_heads * c.head_dim;
  m->qkv_dim = m->q_dim + 2 * m->kv_dim;
  if ((st = need(m, "tok_embeddings.weight", &m->tok_emb))) return st;
  lsw_weight nw;
  if ((st = need(m, "norm.weight", &nw))) return st;
  m->norm = (const float *)nw.data;
  if (c.tie_embeddings) {
    if (m->tensors.count("lm_head.weight"))
      return LSW_FAIL(LSW_E_FORMAT, "tensor lm_head.weight is present but tie_embeddings is set");
    m->lm_head = m->tok_emb;
  } else if ((st = need(m, "lm_head.weight", &m->lm_head))) {
    return st;
  }
  m->layers.assign(c.num_layers, lsw_layer{});
  for (int L = 0; L < c.num_layers; L++) {
    const std::string p = "layers." + std::to_string(L) + ".";
    lsw_layer &ly = m->layers[L];
    if ((st = need(m, p + "attn_norm.weight", &nw))) return st;
    ly.attn_norm = (const float *)nw.data;
    if ((st = need(m, p + "ffn_norm.weight", &nw))) return st;
    ly.ffn_norm = (const float *)nw.data;
    if ((st = need(m, p + "attn.wqkv.weight", &ly.mat[LSW_MAT_QKV]))) return st;
    if ((st = need(m, p + "attn.wo.weight", &ly.mat[LSW_MAT_O]))) return st;
    if ((st = need(m, p + "ffn.w_gate_up.weight", &ly.mat[LSW_MAT_GATE_UP]))) return st;
    if ((st = need(m, p + "ffn.w_down.weight", &ly.mat[LSW_MAT_DOWN]))) return st;
    if (c.qkv_bias) {
      if ((st = need(m, p + "attn.bqkv.bias", &nw))) return st;
      ly.bqkv = (const float *)nw.data;
    } else if (m->tensors.count(p + "attn.bqkv.bias")) {
      return LSW_FAIL(LSW_E_FORMAT, "tensor %sattn.bqkv.bias is present but qkv_bias is not set", p.c_str());
    }
  }
  int nt = c.n_threads > 0 ? c.n_threads : (int)std::max(1u, std::thread::hardware_concurrency());
  m->pool.reset(new ThreadPool(nt));
  rope_inv_freq(&m->cfg, m->inv_freq);
  m->logits.assign(c.vocab_size, 0.f);
  if (c.backend != LSW_BACKEND_CPU) return LSW_OK;  // the CUDA backend keeps its own KV cache and scratch
  const size_t kvb = (size_t)((int64_t)c.num_layers * c.max_context * m->kv_dim) * dtype_size(c.kv_dtype);
  m->k_cache.assign(kvb, 0);
  m->v_cache.assign(kvb, 0);
  lsw_scratch_reserve(m, 1);
  m->scratch.att_work.resize(attention_scratch_floats(nt, c.max_context, c.max_context, c.num_heads, c.head_dim));
  return LSW_OK;
}

// ---------------------------------------------------------------------------------------------
// Forward.  Every linear goes through linear(): adapters (issue 3) hook in here.
void lsw_linear_adapted(lsw_model *m, int L, int mat, const float *X, int64_t n, float *Y, int64_t ldy, bool acc);
void lsw_adapters_end_chunk(lsw_model *m, int64_t n);
void lsw_adapters_begin_chunk(lsw_model *m, int64_t n);
bool lsw_ffn_experts_active(const lsw_model *m, int L, int64_t n);
void lsw_ffn_experts(lsw_model *m, int L, const float *XN, int64_t n, float *gu, float *act, float *x);

static inline void linear(lsw_model *m, int L, int mat, const float *X, int64_t n, float *Y, int64_t ldy, bool acc) {
  if (!m->adapters.empty()) return lsw_linear_adapted(m, L, mat, X, n, Y, ldy, acc);
  const lsw_weight &w = m->layers[L].mat[mat];
  matmul(m->pool.get(), w.dtype, w.data, w.rows, w.cols, X, w.cols, n, Y, ldy, acc);
}

// gate/up projection fused with SwiGLU: each thread computes the same row range [b, e) of the gate half and
// of the up half, then act[:, b:e] -- no serial SwiGLU pass and one dispatch less per layer.
static void gate_up_swiglu(lsw_model *m, int L, const float *X, int64_t n, float *gu, float *act) {
  const lsw_weight &w = m->layers[L].mat[LSW_MAT_GATE_UP];
  const int64_t I = m->cfg.intermediate_size, H = w.cols;
  const KernelTable &k = K();
  m->pool->parallel_for(I, 16, [&](int, int64_t b, int64_t e) {
    k.matmul_rows(w.dtype, w.data, H, X, H, n, gu, 2 * I, b, e, false);
    k.matmul_rows(w.dtype, w.data, H, X, H, n, gu, 2 * I, I + b, I + e, false);
    swiglu_range(n, I, b, e, gu, 2 * I, act, I);
  });
}

template <class F>
static inline void par_tokens(lsw_model *m, int64_t n, F &&f) {  // f(t0, t1)
  if (n == 1 || m->pool->size() == 1) {
    f(0, n);
    return;
  }
  m->pool->parallel_for(n, 1, [&](int, int64_t b, int64_t e) { f(b, e); });
}

static void forward_chunk(lsw_model *m, const int32_t *tokens, int64_t n, float *all_logits) {
  const auto &c = m->cfg;
  auto &s = m->scratch;
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = m->q_dim, kvd = m->kv_dim, qkvd = m->qkv_dim;
  const int64_t pos0 = m->n_past;
  ThreadPool *pool = m->pool.get();
  lsw_scratch_reserve(m, n);

  int32_t *pos = s.pos.data();
  for (int64_t t = 0; t < n; t++) pos[t] = (int32_t)(pos0 + t);
  rope_tables(m->inv_freq, n, pos, s.cos_t.data(), s.sin_t.data());
  const size_t es = dtype_size(m->tok_emb.dtype);
  for (int64_t t = 0; t < n; t++)
    to_f32(m->tok_emb.dtype, (const char *)m->tok_emb.data + (size_t)tokens[t] * H * es, s.x.data() + t * H, H);

  float *x = s.x.data(), *xn = s.xn.data(), *qkv = s.qkv.data();
  if (!m->adapters.empty()) lsw_adapters_begin_chunk(m, n);
  for (int L = 0; L < c.num_layers; L++) {
    const lsw_layer &ly = m->layers[L];
    par_tokens(m, n, [&](int64_t a, int64_t b) { rmsnorm(b - a, H, x + a * H, ly.attn_norm, c.rms_norm_eps, xn + a * H); });
    linear(m, L, LSW_MAT_QKV, xn, n, qkv, qkvd, false);
    par_tokens(m, n, [&](int64_t a, int64_t b) {
      for (int64_t t = a; t < b; t++) {
        float *r = qkv + t * qkvd;
        if (ly.bqkv)
          for (int64_t i = 0; i < qkvd; i++) r[i] += ly.bqkv[i];
        rope_apply(1, c.num_heads, hd, qkvd, s.cos_t.data() + t * (hd / 2), s.sin_t.data() + t * (hd / 2), r);
        rope_apply(1, c.num_kv_heads, hd, qkvd, s.cos_t.data() + t * (hd / 2), s.sin_t.data() + t * (hd / 2), r + qd);
        // rounded once to the cache's dtype (nearest even); attention reads this position back from the cache too
        from_f32(c.kv_dtype, r + qd, m->k_at(L, pos0 + t), kvd);
        from_f32(c.kv_dtype, r + qd + kvd, m->v_at(L, pos0 + t), kvd);
      }
    });
    attention(pool, n, pos0 + n, c.num_heads, c.num_kv_heads, hd, qkv, qkvd, c.kv_dtype, m->k_at(L, 0), m->v_at(L, 0),
              kvd, s.att.data(), qd, s.att_work.data());
    linear(m, L, LSW_MAT_O, s.att.data(), n, x, H, true);  // residual fused: x += Wo att
    par_tokens(m, n, [&](int64_t a, int64_t b) { rmsnorm(b - a, H, x + a * H, ly.ffn_norm, c.rms_norm_eps, xn + a * H); });
    if (m->adapters.empty()) {
      gate_up_swiglu(m, L, xn, n, s.gu.data(), s.act.data());
    } else if (lsw_ffn_experts_active(m, L, n)) {  // MixLoRA whole-FFN experts: x += the gated sum of FFNs
      lsw_ffn_experts(m, L, xn, n, s.gu.data(), s.act.data(), x);
      continue;
    } else {
      linear(m, L, LSW_MAT_GATE_UP, xn, n, s.gu.data(), 2 * I, false);
      par_tokens(m, n, [&](int64_t a, int64_t b) { swiglu(b - a, I, s.gu.data() + a * 2 * I, 2 * I, s.act.data() + a * I, I); });
    }
    linear(m, L, LSW_MAT_DOWN, s.act.data(), n, x, H, true);  // x += Wdown act
  }
  m->n_past = (int32_t)(pos0 + n);
  if (!m->adapters.empty()) lsw_adapters_end_chunk(m, n);
  const lsw_weight &lm = m->lm_head;
  if (all_logits) {
    par_tokens(m, n, [&](int64_t a, int64_t b) { rmsnorm(b - a, H, x + a * H, m->norm, c.rms_norm_eps, xn + a * H); });
    matmul(pool, lm.dtype, lm.data, lm.rows, lm.cols, xn, H, n, all_logits, c.vocab_size, false);
    std::memcpy(m->logits.data(), all_logits + (n - 1) * c.vocab_size, c.vocab_size * sizeof(float));
  } else {
    rmsnorm(1, H, x + (n - 1) * H, m->norm, c.rms_norm_eps, xn);
    matmul(pool, lm.dtype, lm.data, lm.rows, lm.cols, xn, H, 1, m->logits.data(), c.vocab_size, false);
  }
  m->have_logits = true;
}

lsw_status lsw_cpu_forward(lsw_model *m, const int32_t *tokens, int32_t n, float *all_logits) {
  const bool merge = m->mode == LSW_MODE_MERGE && !m->adapters.empty();
  // merge mode with adapters, merge_prompt TOKENWISE (the default): every token -- prompt tokens too -- runs the
  // single-token path (its experts merged into the weights by one SGMM step, then the bare backbone), so a prompt
  // gives bit for bit the result of feeding its tokens one at a time (docs/FORMAT.md).  Time to first token then
  // grows with the prompt length.
  if (merge && n > 1 && m->cfg.merge_prompt == LSW_MERGE_PROMPT_TOKENWISE) {
    for (int32_t t = 0; t < n; t++)
      forward_chunk(m, tokens + t, 1, all_logits ? all_logits + (int64_t)t * m->cfg.vocab_size : nullptr);
    return LSW_OK;
  }
  // BATCHED (and the other modes): chunks of n > 1 tokens run the delta path next to the pristine weights (adapters.cpp
  // lsw_linear_adapted merges only single tokens), leaving the working copies and their merge state alone
  const int64_t CH = 256;  // prefill chunk (bounds scratch memory)
  for (int64_t t0 = 0, k; t0 < n; t0 += k) {
    k = std::min<int64_t>(CH, n - t0);
    // merge mode: a prompt's last chunk never holds a single token (it would merge like a decode step)
    if (merge && n - t0 - k == 1) k--;
    forward_chunk(m, tokens + t0, k, all_logits ? all_logits + t0 * m->cfg.vocab_size : nullptr);
  }
  return LSW_OK;
}

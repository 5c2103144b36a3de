/**
 * THE table declaring the C ABI of cuda/include/lsw.h for koffi. Keep in step with the header:
 * test/cli/abi.test.ts checks that every LSW_API function of the header is declared here.
 */
import koffi from 'koffi';
import { loadNativeLibrary } from './loader.js';
import { nativeError } from '../errors.js';

export const LSW_ABI_VERSION = 7;

export const STRUCTS: Record<string, Record<string, string>> = {
  lsw_model_config: {
    vocab_size: 'int32_t',
    hidden_size: 'int32_t',
    intermediate_size: 'int32_t',
    num_layers: 'int32_t',
    num_heads: 'int32_t',
    num_kv_heads: 'int32_t',
    head_dim: 'int32_t',
    max_context: 'int32_t',
    qkv_bias: 'int32_t',
    tie_embeddings: 'int32_t',
    rms_norm_eps: 'float',
    rope_theta: 'float',
    rope_type: 'int32_t',
    rope_factor: 'float',
    rope_low_freq_factor: 'float',
    rope_high_freq_factor: 'float',
    rope_original_max_position: 'int32_t',
    backend: 'int32_t',
    n_threads: 'int32_t',
    device: 'int32_t',
    prefill_precision: 'int32_t',
    merge_prompt: 'int32_t',
    kv_dtype: 'int32_t',
  },
  lsw_sampler_params: {
    temperature: 'float',
    top_k: 'int32_t',
    top_p: 'float',
    min_p: 'float',
    seed: 'uint64_t',
  },
  lsw_adapter_desc: {
    router_kind: 'int32_t',
    num_experts: 'int32_t',
    top_k: 'int32_t',
    router_input: 'int32_t',
    ffn_experts: 'int32_t',
  },
  lsw_model_stats: {
    weight_bytes: 'uint64_t',
    adapter_bytes: 'uint64_t',
    device_bytes_peak: 'uint64_t',
    launches_per_token: 'int32_t',
    graph_captured: 'int32_t',
    n_threads: 'int32_t',
    simd_level: 'int32_t',
    merge_steps: 'int64_t',
    merge_skipped: 'int64_t',
  },
};

/** Every function of lsw.h. `status` functions return lsw_status (checked, thrown as typed errors). */
export const FUNCTIONS = {
  lsw_last_error: 'const char *lsw_last_error(void)',
  lsw_version: 'const char *lsw_version(void)',
  lsw_abi_version: 'int32_t lsw_abi_version(void)',
  lsw_cuda_available: 'int32_t lsw_cuda_available(void)',
  lsw_cpu_features: 'const char *lsw_cpu_features(void)',

  lsw_model_create: 'lsw_status lsw_model_create(const lsw_model_config *cfg, _Out_ lsw_model **out)',
  lsw_model_map_file: 'lsw_status lsw_model_map_file(lsw_model *m, const char *path, uint64_t data_offset, int32_t *file_id)',
  lsw_model_add_tensor: 'lsw_status lsw_model_add_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape, int32_t file_id, uint64_t offset)',
  lsw_model_add_random_tensor: 'lsw_status lsw_model_add_random_tensor(lsw_model *m, const char *name, int32_t dtype, int32_t ndim, const int64_t *shape, uint64_t seed, float scale)',
  lsw_model_add_adapter: 'lsw_status lsw_model_add_adapter(lsw_model *m, const lsw_adapter_desc *desc, int32_t *adapter_id)',
  lsw_model_finalize: 'lsw_status lsw_model_finalize(lsw_model *m)',
  lsw_model_free: 'void lsw_model_free(lsw_model *m)',

  lsw_model_set_mode: 'lsw_status lsw_model_set_mode(lsw_model *m, int32_t mode)',
  lsw_model_set_sampler: 'lsw_status lsw_model_set_sampler(lsw_model *m, const lsw_sampler_params *p)',
  lsw_model_reset: 'lsw_status lsw_model_reset(lsw_model *m)',
  lsw_model_n_past: 'int32_t lsw_model_n_past(const lsw_model *m)',
  lsw_model_eval: 'lsw_status lsw_model_eval(lsw_model *m, const int32_t *tokens, int32_t n, float *logits, int32_t all_logits)',
  lsw_model_prefill: 'lsw_status lsw_model_prefill(lsw_model *m, const int32_t *tokens, int32_t n, int32_t *next_token)',
  lsw_model_step: 'lsw_status lsw_model_step(lsw_model *m, int32_t token, int32_t *next_token)',
  lsw_model_decode: 'lsw_status lsw_model_decode(lsw_model *m, int32_t token, int32_t n, const int32_t *stop_tokens, int32_t n_stop, int32_t *tokens_out, int32_t *n_out)',
  lsw_model_get_logits: 'lsw_status lsw_model_get_logits(lsw_model *m, float *logits)',
  lsw_model_get_routes: 'lsw_status lsw_model_get_routes(lsw_model *m, int32_t adapter_id, int32_t pos, int32_t n, int32_t *experts, float *gates)',
  lsw_model_get_stats: 'lsw_status lsw_model_get_stats(lsw_model *m, _Out_ lsw_model_stats *out)',
  lsw_model_bench_decode: 'lsw_status lsw_model_bench_decode(lsw_model *m, int32_t first_token, int32_t n_tokens, double *ms_per_token)',
  lsw_model_bench_decode_tokens: 'lsw_status lsw_model_bench_decode_tokens(lsw_model *m, const int32_t *tokens, int32_t n_tokens, double *ms_per_token)',
  lsw_measure_bandwidth: 'lsw_status lsw_measure_bandwidth(int32_t backend, uint64_t bytes, double *gb_per_s)',
  lsw_measure_matmul: 'lsw_status lsw_measure_matmul(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t n, int32_t n_threads, double *tflops)',

  lsw_op_matmul: 'lsw_status lsw_op_matmul(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t n, const void *W, const float *X, float *Y)',
  lsw_op_rmsnorm: 'lsw_status lsw_op_rmsnorm(int32_t backend, int32_t n, int32_t dim, const float *X, const float *w, float eps, float *Y)',
  lsw_op_rope: 'lsw_status lsw_op_rope(int32_t backend, const lsw_model_config *cfg, int32_t n, int32_t n_heads, const int32_t *positions, float *X)',
  lsw_op_attention: 'lsw_status lsw_op_attention(int32_t backend, int32_t kv_dtype, int32_t n, int32_t n_ctx, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const float *Q, const void *K, const void *V, float *O)',
  lsw_op_swiglu: 'lsw_status lsw_op_swiglu(int32_t backend, int32_t n, int32_t inter, const float *GU, float *Out)',
  lsw_op_sgmm: 'lsw_status lsw_op_sgmm(int32_t backend, int32_t dtype, int32_t n_mats, int32_t rows, int32_t cols, int32_t rank, int32_t top_k, const void *W0, void *W, const void *A, const void *B, const float *gates)',
  lsw_op_lora_fused: 'lsw_status lsw_op_lora_fused(int32_t backend, int32_t dtype, int32_t rows, int32_t cols, int32_t rank, int32_t top_k, const void *W, const void *A, const void *B, const float *gates, const float *x, float *Y)',
  lsw_op_route: 'lsw_status lsw_op_route(int32_t backend, int32_t dtype, int32_t n_experts, int32_t dim, int32_t top_k, const void *R, const float *x, int32_t *experts, float *gates)',
  lsw_op_sample: 'lsw_status lsw_op_sample(int32_t backend, int32_t vocab, const float *logits, const lsw_sampler_params *p, uint64_t step, int32_t *token)',
} as const;

export type FnName = keyof typeof FUNCTIONS;

/** Functions returning lsw_status. */
const STATUS_FNS = new Set<FnName>((Object.keys(FUNCTIONS) as FnName[]).filter((k) => FUNCTIONS[k].startsWith('lsw_status ')));

export const DTYPE = { F32: 0, F16: 1, BF16: 2 } as const;
export const BACKEND = { CPU: 0, CUDA: 1 } as const;
export const ROPE = { default: 0, linear: 1, llama3: 2 } as const;
/** lsw_mode */
export const MODE = { merge: 0, unfused: 1, fused: 2, base: 3 } as const;
/** lsw_precision: arithmetic of the CUDA prompt GEMM (lsw_model_config.prefill_precision; the CPU is fp32 either way) */
export const PRECISION = { precise: 0, fast: 1 } as const;
/** lsw_merge_prompt: how merge mode evaluates a prompt (lsw_model_config.merge_prompt; docs/FORMAT.md "Prompts in merge mode") */
export const MERGE_PROMPT = { tokenwise: 0, batched: 1 } as const;

let typesDefined = false;
function defineTypes(): void {
  if (typesDefined) return;
  koffi.alias('lsw_status', 'int32_t');
  koffi.opaque('lsw_model');
  for (const [name, fields] of Object.entries(STRUCTS)) koffi.struct(name, fields);
  typesDefined = true;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFn = ((...args: any[]) => any) & { async: (...args: any[]) => void };

export interface Native {
  path: string;
  raw: Record<FnName, AnyFn>;
  /** call a function; a non-zero lsw_status throws the matching NativeError subclass */
  call(fn: FnName, ...args: unknown[]): number;
  /** the same on a worker thread, so that the event loop (and the Ink view) stays live */
  callAsync(fn: FnName, ...args: unknown[]): Promise<number>;
  lastError(): string;
}

let native: Native | null = null;

export function getNative(): Native {
  if (native) return native;
  const { lib, path } = loadNativeLibrary();
  defineTypes();
  const raw = {} as Record<FnName, AnyFn>;
  for (const [name, proto] of Object.entries(FUNCTIONS) as Array<[FnName, string]>) {
    try {
      raw[name] = lib.func(proto) as unknown as AnyFn;
    } catch (e) {
      // a library older than the header: everything else still works; this function fails when called
      const why = `${path}: missing or incompatible symbol ${name} (${(e as Error).message.split('\n')[0]}); rebuild the engine with \`npm run build:native\``;
      const missing = (() => {
        throw nativeError(name, 9, why);
      }) as unknown as AnyFn;
      missing.async = (...args: unknown[]) => (args[args.length - 1] as (e: unknown) => void)(nativeError(name, 9, why));
      raw[name] = missing;
    }
  }
  const lastError = (): string => String(raw.lsw_last_error() ?? '');
  const check = (fn: FnName, r: number): number => {
    if (STATUS_FNS.has(fn) && r !== 0) throw nativeError(fn, r, lastError());
    return r;
  };
  native = {
    path,
    raw,
    lastError,
    call: (fn, ...args) => check(fn, raw[fn](...args)),
    callAsync: (fn, ...args) =>
      new Promise((resolve, reject) => {
        raw[fn].async(...args, (err: unknown, r: number) => {
          if (err) return reject(err);
          if (!STATUS_FNS.has(fn) || r === 0) return resolve(r);
          // lsw_last_error() returns the most recent error of the process, whichever thread set it (lsw.h), so
          // the message of this call, which failed on a worker thread, is readable here
          reject(nativeError(fn, r, lastError()));
        });
      }),
  };
  const abi = raw.lsw_abi_version();
  if (abi !== LSW_ABI_VERSION) throw nativeError('lsw_abi_version', 4, `${path}: ABI version ${abi}, this CLI expects ${LSW_ABI_VERSION}; rebuild with npm run build:native`);
  return native;
}

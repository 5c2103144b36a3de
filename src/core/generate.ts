/**
 * The generation loop: prompt -> prefill -> one native step per token, stop strings, EOS,
 * Ctrl-C. It updates a plain state object and notifies listeners; views only render that state.
 */
import { UserError, NonFiniteLogitsError, fileError } from './errors.js';
import { checkOutputPath } from './outpath.js';
import { loadAdapterSpec } from './adapters/spec.js';
import {
  Model, openModelFile, closeModelFile, checkPrecision, checkMergePrompt, checkKvCache, checkBackend, MODE_NAMES, type BackendName, type ModeName,
  type PrecisionName, type MergePromptName, type KvCacheName, type KvCacheOption,
} from './model.js';
import type { ChatMessage } from './tokenizer.js';
import type { AdapterSpec, ConvertEvent } from './convert.js';
import { TraceWriter, traceAdapters, type RouteBlock, type TokenInfo } from './trace.js';

export interface GenerateOptions {
  model: string;
  prompt: string;
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  stop?: string[];
  ignoreEos?: boolean;
  chat?: boolean;
  system?: string;
  backend?: BackendName;
  threads?: number;
  /** adapter folders (`path` or `path:scale`) run on top of the model's own adapters */
  adapters?: Array<string | AdapterSpec>;
  /** execution mode of the adapters (default: fused) */
  mode?: ModeName;
  /** prompt matmul arithmetic on the CUDA backend (default: precise); the CPU computes in fp32 either way */
  precision?: PrecisionName;
  /** how merge mode evaluates the prompt: tokenwise (default; bit for bit one token at a time) or batched (fast) */
  mergePrompt?: MergePromptName;
  /** element type of the KV cache: auto (default: the attention weights' 16-bit type, else f32), f32, f16 or bf16 */
  kvCache?: KvCacheOption;
  /** write a routing trace (docs/TRACE.md) to this file */
  trace?: string;
}

/** An adapter as the JSON result lists it. */
export interface GenerateAdapterInfo {
  id: number;
  name: string;
  peft_type: string;
  router_kind: string;
  num_experts: number;
  top_k: number;
  scale: number;
}

export type Phase = 'loading' | 'converting' | 'prefill' | 'decoding' | 'done';
export type StopReason = 'eos' | 'stop' | 'max_tokens' | 'interrupted' | 'context_full';

export interface GenerateState {
  phase: Phase;
  model: string;
  backend: string;
  /** text emitted so far (final: never retracted) */
  text: string;
  /** generated token ids (EOS excluded) */
  tokens: number[];
  promptTokens: number;
  maxTokens: number;
  loadMs: number;
  prefillMs: number;
  decodeMs: number;
  tokensPerS: number;
  stopReason: StopReason | null;
  convert: { done: number; total: number } | null;
  /** adapter execution mode ('' until the model is loaded) */
  mode: string;
  /** names of the engine's adapters, in id order */
  adapters: string[];
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  prompt_tokens: number;
  stop_reason: StopReason;
  backend: string;
  mode: ModeName;
  /** prompt matmul arithmetic (--precision); the CPU backend computes in fp32 either way */
  precision: PrecisionName;
  /** how merge mode evaluated the prompt (--merge-prompt); other modes ignore it */
  merge_prompt: MergePromptName;
  /** element type of the KV cache (--kv-cache) */
  kv_cache: KvCacheName;
  adapters: GenerateAdapterInfo[];
  /** the trace file written (--trace), with the number of token records */
  trace?: { file: string; tokens: number };
  timings: { load_ms: number; prefill_ms: number; decode_ms: number; prefill_tokens_per_s: number; tokens_per_s: number; total_ms: number };
}

export type GenerateListener = (state: GenerateState, delta: string) => void;

/** Ask a running generation to stop after the current token (Ctrl-C). */
export class AbortFlag {
  aborted = false;
  abort(): void {
    this.aborted = true;
  }
}

export function newState(model: string, maxTokens: number): GenerateState {
  return {
    phase: 'loading', model, backend: '', text: '', tokens: [], promptTokens: 0, maxTokens,
    loadMs: 0, prefillMs: 0, decodeMs: 0, tokensPerS: 0, stopReason: null, convert: null, mode: '', adapters: [],
  };
}

/**
 * Holds back text that could be the start of a stop string; cuts at the first stop string.
 * Returns the text that may be emitted now and whether a stop string was hit.
 */
export class StopMatcher {
  private pending = '';
  constructor(private readonly stops: string[]) {}
  push(delta: string): { emit: string; stopped: boolean } {
    this.pending += delta;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const emit = this.pending.slice(0, cut);
      this.pending = '';
      return { emit, stopped: true };
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    const emit = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { emit, stopped: false };
  }
  flush(): string {
    const p = this.pending;
    this.pending = '';
    return p;
  }
}

/** decode chunks: at most this long (ms, from the last chunk's time per token) and this many steps */
const DECODE_CHUNK_MS = 50;
const DECODE_CHUNK_MAX = 64;

function validate(o: GenerateOptions): void {
  const bad = (flag: string, why: string) => new UserError(`${flag}: ${why}`);
  if (o.maxTokens !== undefined && (!Number.isInteger(o.maxTokens) || o.maxTokens < 0)) throw bad('--max-tokens', 'must be an integer >= 0');
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) throw bad('--temperature', 'must be >= 0');
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw bad('--top-k', 'must be an integer >= 0');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw bad('--top-p', 'must be in (0, 1]');
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) throw bad('--min-p', 'must be in [0, 1]');
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || o.threads < 0)) throw bad('--threads', 'must be an integer >= 0');
  if (o.system !== undefined && !o.chat) throw bad('--system', 'only applies with --chat');
  if (o.stop?.some((s) => s === '')) throw bad('--stop', 'must not be empty');
  if (o.mode !== undefined && !MODE_NAMES.includes(o.mode)) throw bad('--mode', `must be one of ${MODE_NAMES.join(', ')}`);
  checkPrecision(o.precision);
  checkMergePrompt(o.mergePrompt);
  checkKvCache(o.kvCache);
  if (o.trace !== undefined && o.trace === '') throw bad('--trace', 'must not be empty');
  if (o.trace !== undefined) checkOutputPath(o.trace, [o.model, ...(o.adapters ?? []).map(adapterPath)]);
}

/** The folder of an adapter argument (a malformed `path:scale` is reported where the adapters are loaded). */
function adapterPath(a: string | AdapterSpec): string {
  if (typeof a !== 'string') return a.path;
  try {
    return loadAdapterSpec(a).path;
  } catch {
    return a;
  }
}

export async function generate(opts: GenerateOptions, listener: GenerateListener = () => {}, abort = new AbortFlag()): Promise<GenerateResult> {
  validate(opts);
  checkBackend(opts.backend);
  const maxTokens = opts.maxTokens ?? 256;
  const state = newState(opts.model, maxTokens);
  const emit = (delta = '') => listener(state, delta);
  const t0 = performance.now();
  emit();

  const onConvertProgress = (e: ConvertEvent) => {
    if (e.type === 'start') state.convert = { done: 0, total: e.tensors };
    else if (e.type === 'tensor') state.convert = { done: e.index + 1, total: e.total };
    state.phase = 'converting';
    emit();
  };
  const mf = await openModelFile(opts.model, { onConvertProgress, adapters: opts.adapters });
  let promptIds: number[];
  try {
    promptIds = promptTokens(opts, mf.tokenizer);
    const maxPos = mf.config.max_position_embeddings;
    if (promptIds.length >= maxPos) throw new UserError(`prompt: ${promptIds.length} tokens do not fit the model's context of ${maxPos}`);
  } catch (e) {
    closeModelFile(mf);
    throw e;
  }
  const tok = mf.tokenizer;
  const maxContext = Math.min(mf.config.max_position_embeddings, promptIds.length + maxTokens + 1);
  const model = await Model.fromFile(mf, { backend: opts.backend, threads: opts.threads, maxContext, mode: opts.mode, precision: opts.precision, mergePrompt: opts.mergePrompt, kvCache: opts.kvCache ?? 'auto' });
  let trace: TraceWriter | null = null;
  try {
    if (opts.trace !== undefined) {
      trace = TraceWriter.open(opts.trace, {
        model: opts.model, mode: model.mode, backend: model.backend, num_layers: model.config.num_layers,
        adapters: traceAdapters(model.adapters, model.config.num_layers),
      });
    }
    state.backend = model.backend;
    state.mode = model.mode;
    state.adapters = model.adapters.map((a) => a.name);
    state.promptTokens = promptIds.length;
    state.loadMs = performance.now() - t0;
    model.setSampler({ temperature: opts.temperature ?? 0.8, topK: opts.topK ?? 40, topP: opts.topP ?? 0.95, minP: opts.minP ?? 0.05, seed: opts.seed ?? Date.now() % 2 ** 32 });
    const eos = new Set(opts.ignoreEos ? [] : tok.eosTokenIds);
    const stops = new StopMatcher(opts.stop ?? []);
    const dec = tok.streamDecoder();

    state.phase = 'prefill';
    emit();
    let stopReason: StopReason | null = null;
    let next = 0;
    const tp = performance.now();
    if (maxTokens > 0) next = await model.prefill(promptIds);
    else model.eval(promptIds);
    // tokens in the KV cache once the tokens taken so far are appended (the engine may have run ahead of them)
    let past = promptIds.length;
    // decoded in chunks (model.decode: one native call for several steps, ending at an EOS token): `chunk` steps per
    // call, doubled after each call up to what fits in DECODE_CHUNK_MS, so the first token comes as soon as with
    // single steps, tokens still stream steadily, and an interrupt or a --stop string waits for one chunk at most
    let queue: number[] = [];
    let chunk = 1;
    const eosIds = [...eos];
    // the next chunk, started as soon as the previous one came back, so that the engine decodes while this thread
    // delivers (detokenizes, matches stop strings); drained before the model is used for anything else
    let pending: Promise<number[]> | null = null;
    const decodeChunk = (token: number, n: number): Promise<number[]> => {
      const t = performance.now();
      const p = model.decode(token, n, eosIds).then((toks) => {
        const msPerToken = (performance.now() - t) / Math.max(1, toks.length);
        chunk = Math.max(1, Math.min(2 * chunk, DECODE_CHUNK_MAX, Math.floor(DECODE_CHUNK_MS / Math.max(msPerToken, 1e-3))));
        return toks;
      });
      p.catch(() => {});  // handled where it is awaited (or dropped when generation has already ended)
      return p;
    };
    // steps of the next chunk when `ahead` decoded tokens are still to be delivered: the chunk size, bounded by the
    // token budget and by the context
    const steps = (ahead: number) => Math.min(chunk, maxTokens - state.tokens.length - ahead, model.maxContext - past - ahead);
    state.prefillMs = performance.now() - tp;
    state.phase = 'decoding';
    const td = performance.now();
    const deliver = (text: string) => {
      const r = stops.push(text);
      if (r.emit) {
        state.text += r.emit;
        emit(r.emit);
      }
      return r.stopped;
    };
    if (maxTokens === 0) stopReason = 'max_tokens';
    try {
      while (stopReason === null) {
        if (eos.has(next)) {
          stopReason = 'eos';
          break;
        }
        state.tokens.push(next);
        if (deliver(dec.push(next))) {
          stopReason = 'stop';
          break;
        }
        state.decodeMs = performance.now() - td;
        state.tokensPerS = state.tokens.length > 1 ? ((state.tokens.length - 1) * 1000) / state.decodeMs : 0;
        if (state.tokens.length >= maxTokens) {
          stopReason = 'max_tokens';
          break;
        }
        if (abort.aborted) {
          stopReason = 'interrupted';
          break;
        }
        if (past >= model.maxContext) {
          stopReason = 'context_full';
          break;
        }
        if (queue.length === 0) {
          const p = pending ?? decodeChunk(next, steps(0));
          pending = null;
          queue = await p;
          // the next chunk, unless this one ended at an EOS token, the token budget or the context
          const last = queue[queue.length - 1];
          const more = steps(queue.length);
          if (queue.length > 0 && !eos.has(last) && more > 0) pending = decodeChunk(last, more);
        }
        next = queue.shift()!;
        past++;
      }
    } finally {
      // a chunk still running when generation ends (a --stop string, Ctrl-C, an error): its tokens are not used, and
      // the model is not touched again before it returns
      if (pending) await (pending as Promise<number[]>).catch(() => []);
    }
    if (stopReason !== 'stop') {
      // text held back by the detokenizer and the stop matcher
      const r = stops.push(dec.flush());
      const text = r.emit + (r.stopped ? '' : stops.flush());
      if (r.stopped) stopReason = 'stop';
      if (text) {
        state.text += text;
        emit(text);
      }
    }
    state.decodeMs = performance.now() - td;
    // decode speed: tokens produced by decode steps over their time (the first comes from prefill)
    state.tokensPerS = state.tokens.length > 1 ? ((state.tokens.length - 1) * 1000) / state.decodeMs : 0;
    state.stopReason = stopReason;
    let traced: GenerateResult['trace'];
    if (trace) {
      writeTrace(model, trace, promptIds, state.tokens);
      trace.close();
      traced = { file: trace.file, tokens: trace.tokensWritten };
    }
    state.phase = 'done';
    emit();
    return {
      text: state.text,
      tokens: state.tokens,
      prompt_tokens: state.promptTokens,
      stop_reason: stopReason,
      backend: model.backend,
      mode: model.mode,
      precision: model.precision,
      merge_prompt: model.mergePrompt,
      kv_cache: model.kvCache,
      adapters: model.adapters.map((a) => ({
        id: a.id, name: a.name, peft_type: a.peft_type, router_kind: a.router_kind, num_experts: a.num_experts, top_k: a.top_k, scale: a.scale,
      })),
      ...(traced ? { trace: traced } : {}),
      timings: {
        load_ms: round(state.loadMs),
        prefill_ms: round(state.prefillMs),
        decode_ms: round(state.decodeMs),
        prefill_tokens_per_s: round((promptIds.length * 1000) / Math.max(state.prefillMs, 1e-6)),
        tokens_per_s: round(state.tokensPerS),
        total_ms: round(performance.now() - t0),
      },
    };
  } catch (e) {
    trace?.abort();
    // the model (with its adapters) produced NaN or infinite logits: the engine's message, under the model's name
    if (e instanceof NonFiniteLogitsError) throw fileError(opts.model, e.nativeMessage);
    throw e;
  } finally {
    model.free();
  }
}

function promptTokens(opts: GenerateOptions, tok: Model['tokenizer']): number[] {
  let ids: number[];
  if (opts.chat) {
    const msgs: ChatMessage[] = [];
    if (opts.system !== undefined) msgs.push({ role: 'system', content: opts.system });
    msgs.push({ role: 'user', content: opts.prompt });
    ids = tok.encodeChat(msgs);
  } else {
    ids = tok.encode(opts.prompt, true);
  }
  if (ids.length === 0) throw new UserError('prompt: empty after tokenization (give a non-empty prompt)');
  return ids;
}

/**
 * Write the trace records of the prompt and the generated tokens. The engine keeps the routing of every evaluated
 * position, so the routes are fetched once here rather than per token. The last generated token was sampled but
 * not yet evaluated: it is evaluated now (one extra forward, only when tracing) so that it has routes too.
 */
function writeTrace(model: Model, trace: TraceWriter, promptIds: number[], generated: number[]): void {
  const seq = [...promptIds, ...generated];
  const evaluated = model.nPast;
  if (evaluated < seq.length) {
    const room = Math.max(0, model.maxContext - evaluated);
    const pending = seq.slice(evaluated, evaluated + room);
    if (pending.length > 0) model.eval(pending, false);
  }
  const n = Math.min(model.nPast, seq.length);
  const tok = model.tokenizer;
  const tokens: TokenInfo[] = seq.slice(0, n).map((id, pos) => ({
    pos, token: id, text: tok.decode([id], false), phase: pos < promptIds.length ? 'prompt' : 'generated',
  }));
  const blocks: RouteBlock[] = model.adapters.filter((a) => a.router_kind !== 'static').map((a) => model.routes(a.id, 0, n));
  trace.write(tokens, blocks);
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

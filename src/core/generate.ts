/**
 * The generation loop: prompt -> prefill -> one native step per token, stop strings, EOS,
 * Ctrl-C. It updates a plain state object and notifies listeners; views only render that state.
 */
import { UserError } from './errors.js';
import { Model, openModelFile, type BackendName } from './model.js';
import type { ChatMessage } from './tokenizer.js';
import type { ConvertEvent } from './convert.js';

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
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  prompt_tokens: number;
  stop_reason: StopReason;
  backend: string;
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
    loadMs: 0, prefillMs: 0, decodeMs: 0, tokensPerS: 0, stopReason: null, convert: null,
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
}

export async function generate(opts: GenerateOptions, listener: GenerateListener = () => {}, abort = new AbortFlag()): Promise<GenerateResult> {
  validate(opts);
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
  const mf = await openModelFile(opts.model, { onConvertProgress });
  const tok = mf.tokenizer;
  let promptIds: number[];
  if (opts.chat) {
    const msgs: ChatMessage[] = [];
    if (opts.system !== undefined) msgs.push({ role: 'system', content: opts.system });
    msgs.push({ role: 'user', content: opts.prompt });
    promptIds = tok.encodeChat(msgs);
  } else {
    promptIds = tok.encode(opts.prompt, true);
  }
  if (promptIds.length === 0) throw new UserError('prompt: empty after tokenization (give a non-empty prompt)');
  const maxPos = mf.config.max_position_embeddings;
  if (promptIds.length >= maxPos) throw new UserError(`prompt: ${promptIds.length} tokens do not fit the model's context of ${maxPos}`);
  const maxContext = Math.min(maxPos, promptIds.length + maxTokens + 1);
  const model = await Model.fromFile(mf, { backend: opts.backend, threads: opts.threads, maxContext });
  try {
    state.backend = model.backend;
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
      if (model.nPast >= model.maxContext) {
        stopReason = 'context_full';
        break;
      }
      next = await model.step(next);
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
    // decode speed: tokens produced by step() calls over their time (the first comes from prefill)
    state.tokensPerS = state.tokens.length > 1 ? ((state.tokens.length - 1) * 1000) / state.decodeMs : 0;
    state.stopReason = stopReason;
    state.phase = 'done';
    emit();
    return {
      text: state.text,
      tokens: state.tokens,
      prompt_tokens: state.promptTokens,
      stop_reason: stopReason,
      backend: model.backend,
      timings: {
        load_ms: round(state.loadMs),
        prefill_ms: round(state.prefillMs),
        decode_ms: round(state.decodeMs),
        prefill_tokens_per_s: round((promptIds.length * 1000) / Math.max(state.prefillMs, 1e-6)),
        tokens_per_s: round(state.tokensPerS),
        total_ms: round(performance.now() - t0),
      },
    };
  } finally {
    model.free();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

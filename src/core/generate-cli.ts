/** `lora-switch generate`: Ink view (TTY), plain streaming text (piped) or one JSON object (--json). */
import fs from 'node:fs';
import { UserError } from './errors.js';
import { generate, AbortFlag, newState, type GenerateState } from './generate.js';
import type { BackendName, ModeName, PrecisionName, MergePromptName, KvCacheOption } from './model.js';
import { loadAdapterSpec } from './adapters/index.js';
import { outputMode, LiveView } from './views/render.js';
import { GenerateView } from './views/generate-view.js';

export interface GenerateCliOptions {
  model: string;
  prompt?: string;
  maxTokens?: number;
  temperature?: string | number;
  topK?: number;
  topP?: string | number;
  minP?: string | number;
  seed?: number;
  stop?: string[];
  ignoreEos?: boolean;
  chat?: boolean;
  system?: string;
  backend?: BackendName;
  threads?: number;
  json?: boolean;
  /** `path` or `path:scale`, repeatable */
  adapter?: string[];
  mode?: ModeName;
  precision?: PrecisionName;
  mergePrompt?: MergePromptName;
  kvCache?: KvCacheOption;
  trace?: string;
}

function num(flag: string, v: string | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = typeof v === 'number' ? v : Number(v);
  if (typeof v === 'string' && v.trim() === '') throw new UserError(`${flag}: expected a number, got ""`);
  if (!Number.isFinite(x)) throw new UserError(`${flag}: expected a number, got ${JSON.stringify(v)}`);
  return x;
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UserError('prompt: give one with -p/--prompt or on standard input');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** The model named by the MODEL argument or by -m/--model: one of them, or both naming the same path. */
export function pickModel(arg: string | undefined, flag: string | undefined): string {
  if (arg !== undefined && flag !== undefined && arg !== flag)
    throw new UserError(`model: given twice, as ${JSON.stringify(arg)} and as -m ${JSON.stringify(flag)}; give one`);
  const m = arg ?? flag;
  if (m === undefined || m === '') throw new UserError('model: give a .lsw file or a Hugging Face model folder (lora-switch generate MODEL, or -m MODEL)');
  return m;
}

export async function runGenerate(o: GenerateCliOptions): Promise<void> {
  const temperature = num('--temperature', o.temperature);
  const topP = num('--top-p', o.topP);
  const minP = num('--min-p', o.minP);
  if (!fs.existsSync(o.model)) throw new UserError(`${o.model}: no such file or directory`);
  const adapters = (o.adapter ?? []).map((a) => loadAdapterSpec(a));
  const prompt = o.prompt ?? (await readStdin());
  if (prompt === '') throw new UserError('prompt: empty prompt');
  const mode = outputMode(!!o.json);
  const abort = new AbortFlag();
  let interrupted = 0;
  const onSigint = () => {
    interrupted++;
    if (interrupted > 1) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  let view: LiveView<GenerateState> | null = null;
  let shown: GenerateState | null = null;
  const out = process.stdout;
  const listener = (s: GenerateState, delta: string) => {
    if (mode === 'ink') {
      if (!view) {
        shown = s;
        view = new LiveView(GenerateView, s);
      }
      view.update(s.phase === 'done');
    } else if (mode === 'plain' && delta) {
      out.write(delta);
    }
  };
  try {
    const r = await generate(
      {
        model: o.model, prompt, maxTokens: o.maxTokens, temperature, topK: o.topK, topP, minP, seed: o.seed,
        stop: o.stop, ignoreEos: o.ignoreEos, chat: o.chat, system: o.system, backend: o.backend, threads: o.threads,
        adapters, mode: o.mode, precision: o.precision, mergePrompt: o.mergePrompt, kvCache: o.kvCache,
        trace: o.trace,
      },
      listener,
      abort,
    );
    if (view) await (view as LiveView<GenerateState>).done();
    if (mode === 'json') out.write(`${JSON.stringify(r)}\n`);
    else if (mode === 'plain') out.write('\n');
    if (r.stop_reason === 'interrupted') process.exitCode = 130;
  } catch (e) {
    if (view) await (view as LiveView<GenerateState>).done().catch(() => {});
    void shown;
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

export { newState };

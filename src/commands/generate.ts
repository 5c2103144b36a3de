import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../base-command.js';
import { runGenerate, pickModel } from '../core/generate-cli.js';

export default class Generate extends BaseCommand {
  static override summary = 'Generate text from a .lsw model (or a Hugging Face folder, converted on the fly).';
  static override examples = [
    '<%= config.bin %> generate model.lsw -p "Hello"',
    'echo "Tell me a story" | <%= config.bin %> generate -m model.lsw --max-tokens 64 --temperature 0',
    '<%= config.bin %> generate -m model.lsw --chat --system "Be brief." -p "What is LoRA?" --json',
    '<%= config.bin %> generate -m model.lsw --adapter ./my-switch --mode merge --trace trace.jsonl -p "Hello" --temperature 0',
    '<%= config.bin %> generate -m ./Llama-3.2-1B --adapter ./style-lora:0.7 --adapter ./code-lora:0.3 -p "def fib(n):"',
  ];
  static override args = {
    model: Args.string({ ignoreStdin: true, description: '.lsw file or Hugging Face model folder (or -m)' }),  // stdin is the prompt
  };
  static override flags = {
    model: Flags.string({ char: 'm', description: '.lsw file or Hugging Face model folder (or the MODEL argument)' }),
    prompt: Flags.string({ char: 'p', description: 'prompt (default: read standard input)' }),
    'max-tokens': Flags.integer({ char: 'n', default: 256, min: 0, description: 'tokens to generate at most' }),
    temperature: Flags.string({ default: '0.8', description: 'sampling temperature; 0 = greedy' }),
    'top-k': Flags.integer({ default: 40, min: 0, description: 'keep the k most likely tokens; 0 = off' }),
    'top-p': Flags.string({ default: '0.95', description: 'nucleus sampling threshold; 1 = off' }),
    'min-p': Flags.string({ default: '0.05', description: 'drop tokens below min-p x the top probability; 0 = off' }),
    seed: Flags.integer({ min: 0, description: 'random seed (default: from the clock)' }),
    stop: Flags.string({ multiple: true, description: 'stop when this string is generated (repeatable)' }),
    'ignore-eos': Flags.boolean({ description: 'keep generating past end-of-sequence tokens' }),
    chat: Flags.boolean({ description: 'wrap the prompt in the model\'s chat template' }),
    system: Flags.string({ description: 'system message (with --chat)' }),
    backend: Flags.string({ options: ['cpu', 'cuda', 'auto'], default: 'auto', description: 'engine backend' }),
    threads: Flags.integer({ char: 't', min: 0, default: 0, description: 'CPU threads; 0 = all cores' }),
    adapter: Flags.string({ char: 'a', multiple: true, description: 'adapter folder to run on top of the model, path or path:scale (repeatable; LoRA-Switch, PEFT LoRA, MixLoRA)' }),
    mode: Flags.string({ options: ['merge', 'unfused', 'fused'], default: 'fused', description: 'adapter execution mode: merge (SGMM into the weights per token), unfused (per-expert LoRA ops) or fused' }),
    precision: Flags.string({ options: ['precise', 'fast'], default: 'precise', description: 'prompt matmuls on the CUDA backend: precise (fp32 activations as hi + lo halves, two tensor-core GEMMs, close to the CPU) or fast (activations rounded once to the weight dtype, one GEMM, about twice the prefill speed); the CPU computes in fp32 either way' }),
    'merge-prompt': Flags.string({ options: ['tokenwise', 'batched'], default: 'tokenwise', description: 'how --mode merge evaluates the prompt: tokenwise (each prompt token merged and run alone: the same result as feeding it one token at a time, but time to first token grows with the prompt) or batched (in chunks with the experts as deltas next to the weights, as fused mode; only generated tokens merge)' }),
    'kv-cache': Flags.string({ options: ['auto', 'f32', 'f16', 'bf16'], default: 'auto', description: 'KV cache element type: auto is the weights\' own type for f16/bf16 weights (as transformers keeps it), f32 for f32 weights; f16/bf16 halve the memory of f32 and the bytes each decode step reads, K/V rounded once when stored' }),
    trace: Flags.string({ description: 'write the routing of every token to this JSON Lines file (docs/TRACE.md)' }),
    json: Flags.boolean({ description: 'print one JSON object: text, tokens, prompt_tokens, stop_reason, backend, mode, precision, merge_prompt, kv_cache, adapters, timings (and trace with --trace)' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Generate);
    await runGenerate({
      model: pickModel(args.model, flags.model),
      prompt: flags.prompt,
      maxTokens: flags['max-tokens'],
      temperature: flags.temperature,
      topK: flags['top-k'],
      topP: flags['top-p'],
      minP: flags['min-p'],
      seed: flags.seed,
      stop: flags.stop,
      ignoreEos: flags['ignore-eos'],
      chat: flags.chat,
      system: flags.system,
      backend: flags.backend as 'cpu' | 'cuda' | 'auto',
      threads: flags.threads,
      json: flags.json,
      adapter: flags.adapter,
      mode: flags.mode as 'merge' | 'unfused' | 'fused',
      precision: flags.precision as 'precise' | 'fast',
      mergePrompt: flags['merge-prompt'] as 'tokenwise' | 'batched',
      kvCache: flags['kv-cache'] as 'auto' | 'f32' | 'f16' | 'bf16',
      trace: flags.trace,
    });
  }
}

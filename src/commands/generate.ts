import { Flags } from '@oclif/core';
import { BaseCommand } from '../base-command.js';
import { runGenerate } from '../core/generate-cli.js';

export default class Generate extends BaseCommand {
  static override summary = 'Generate text from a .lsw model (or a Hugging Face folder, converted on the fly).';
  static override examples = [
    '<%= config.bin %> generate -m model.lsw -p "Hello"',
    'echo "Tell me a story" | <%= config.bin %> generate -m model.lsw --max-tokens 64 --temperature 0',
    '<%= config.bin %> generate -m model.lsw --chat --system "Be brief." -p "What is LoRA?" --json',
  ];
  static override flags = {
    model: Flags.string({ char: 'm', required: true, description: '.lsw file or Hugging Face model folder' }),
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
    json: Flags.boolean({ description: 'print one JSON object: text, tokens, prompt_tokens, timings' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Generate);
    await runGenerate({
      model: flags.model,
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
    });
  }
}

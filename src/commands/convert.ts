import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../base-command.js';
import { runConvert } from '../core/convert-cli.js';

export default class Convert extends BaseCommand {
  static override summary = 'Convert a Hugging Face model folder into one aligned .lsw file (a valid safetensors file).';
  static override description = 'Reads config.json, model.safetensors or a sharded model.safetensors.index.json, tokenizer.json, tokenizer_config.json, chat_template.jinja and generation_config.json; fuses q/k/v and gate/up; writes the engine layout with config, tokenizer and provenance in the metadata. With --adapter, the adapters (LoRA-Switch, PEFT LoRA, MixLoRA folders) are validated against the model and written alongside (docs/FORMAT.md).';
  static override examples = [
    '<%= config.bin %> convert ./SmolLM-135M -o smollm.lsw',
    '<%= config.bin %> convert ./Llama-3.2-1B -o llama.lsw --dtype bf16 --json',
    '<%= config.bin %> convert ./SmolLM-135M --adapter ./my-switch --adapter ./style-lora:0.5 -o smollm-adapted.lsw',
  ];
  static override args = {
    folder: Args.string({ required: true, description: 'Hugging Face model folder' }),
  };
  static override flags = {
    output: Flags.string({ char: 'o', required: true, description: 'output .lsw file' }),
    dtype: Flags.string({ options: ['f32', 'f16', 'bf16'], description: 'weight dtype (default: the checkpoint\'s torch_dtype)' }),
    adapter: Flags.string({ char: 'a', multiple: true, description: 'adapter folder to include, path or path:scale (repeatable; LoRA-Switch, PEFT LoRA, MixLoRA)' }),
    json: Flags.boolean({ description: 'print one JSON object with the result (no progress)' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Convert);
    await runConvert({ folder: args.folder, output: flags.output, dtype: flags.dtype as 'f32' | 'f16' | 'bf16' | undefined, json: flags.json, adapter: flags.adapter });
  }
}

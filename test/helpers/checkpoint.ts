// Tiny, real-layout Hugging Face checkpoints and adapter folders with seeded random weights (never zeros).
// Independent of src/: own safetensors writer, own tokenizer.json builder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from './prng.js';
import { writeSafetensors, type StDtype, type StTensorIn } from './safetensors.js';
import { buildTokenizer, type TokenizerFixture } from './tokenizer-fixture.js';

export type Arch = 'llama' | 'mistral' | 'qwen2';
export type WeightDtype = 'f32' | 'f16' | 'bf16';
export type ModuleName = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
export const ALL_MODULES: ModuleName[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
export const ATTN_MODULES: ModuleName[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
export const MLP_MODULES: ModuleName[] = ['gate_proj', 'up_proj', 'down_proj'];

export interface RopeOptions {
  type: 'default' | 'linear' | 'llama3';
  theta?: number;
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPosition?: number;
}

export interface CheckpointOptions {
  arch?: Arch;
  hidden?: number;
  intermediate?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** head dimension; written to config.json when `explicitHeadDim` (default: only when != hidden/heads) */
  headDim?: number;
  explicitHeadDim?: boolean;
  /** extra rows of the embedding/lm_head beyond the tokenizer's vocabulary (config vocab_size > tokenizer size) */
  vocabPad?: number;
  dtype?: WeightDtype;
  tie?: boolean;
  /** q/k/v biases (default: true for qwen2, false otherwise) */
  qkvBias?: boolean;
  rope?: RopeOptions;
  /** 'legacy': rope_theta + rope_scaling (transformers 4 files); 'v5': rope_parameters (transformers 5) */
  configStyle?: 'legacy' | 'v5';
  /** number of shard files (1 = model.safetensors) */
  shards?: number;
  seed?: number;
  rmsNormEps?: number;
  maxPositionEmbeddings?: number;
  numMerges?: number;
}

export interface CheckpointInfo {
  dir: string;
  config: any; // config.json as written
  opts: Required<Omit<CheckpointOptions, 'rope' | 'explicitHeadDim' | 'qkvBias'>> & { rope: RopeOptions; qkvBias: boolean };
  tokenizer: TokenizerFixture;
  vocabSize: number;
  /** HF tensor names -> shape (for adapters) */
  shapes: Map<string, number[]>;
  moduleShape(m: ModuleName): { out: number; in: number };
}

const DT: Record<WeightDtype, StDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
const TORCH_DT: Record<WeightDtype, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

export function makeTinyCheckpoint(dir: string, o: CheckpointOptions = {}): CheckpointInfo {
  const arch = o.arch ?? 'llama';
  const hidden = o.hidden ?? 48;
  const heads = o.heads ?? 4;
  const kvHeads = o.kvHeads ?? heads;
  const headDim = o.headDim ?? hidden / heads;
  if (!Number.isInteger(headDim)) throw new Error('headDim must be an integer');
  const explicitHeadDim = o.explicitHeadDim ?? headDim !== hidden / heads;
  const intermediate = o.intermediate ?? 80;
  const layers = o.layers ?? 2;
  const dtype = o.dtype ?? 'f32';
  const tie = o.tie ?? false;
  const qkvBias = o.qkvBias ?? arch === 'qwen2';
  const rope: RopeOptions = { theta: 10000, ...(o.rope ?? { type: 'default' }) };
  const configStyle = o.configStyle ?? 'legacy';
  const shards = o.shards ?? 1;
  const seed = o.seed ?? 1234;
  const eps = o.rmsNormEps ?? (arch === 'qwen2' ? 1e-6 : 1e-5);
  const maxPos = o.maxPositionEmbeddings ?? 512;
  const vocabPad = o.vocabPad ?? 0;
  const rng = new Rng(seed);

  const tok =
    arch === 'qwen2'
      ? buildTokenizer({ specials: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'], bos: null, eos: '<|im_end|>', numMerges: o.numMerges })
      : buildTokenizer({ specials: ['<s>', '</s>'], bos: '<s>', eos: '</s>', numMerges: o.numMerges });
  const vocabSize = tok.size + vocabPad;

  fs.mkdirSync(dir, { recursive: true });

  // ---- weights
  const tensors: StTensorIn[] = [];
  const dt = DT[dtype];
  const lin = (name: string, out: number, inn: number, gain = 1) =>
    tensors.push({ name, dtype: dt, shape: [out, inn], data: rng.normals(out * inn, gain / Math.sqrt(inn)) });
  const vec = (name: string, n: number, std: number, mean: number) =>
    tensors.push({ name, dtype: dt, shape: [n], data: rng.normals(n, std, mean) });
  tensors.push({ name: 'model.embed_tokens.weight', dtype: dt, shape: [vocabSize, hidden], data: rng.normals(vocabSize * hidden, tie ? 0.4 : 1) });
  for (let L = 0; L < layers; L++) {
    const p = `model.layers.${L}`;
    vec(`${p}.input_layernorm.weight`, hidden, 0.2, 1);
    lin(`${p}.self_attn.q_proj.weight`, heads * headDim, hidden, 1.5);
    if (qkvBias) vec(`${p}.self_attn.q_proj.bias`, heads * headDim, 0.3, 0);
    lin(`${p}.self_attn.k_proj.weight`, kvHeads * headDim, hidden, 1.5);
    if (qkvBias) vec(`${p}.self_attn.k_proj.bias`, kvHeads * headDim, 0.3, 0);
    lin(`${p}.self_attn.v_proj.weight`, kvHeads * headDim, hidden);
    if (qkvBias) vec(`${p}.self_attn.v_proj.bias`, kvHeads * headDim, 0.3, 0);
    lin(`${p}.self_attn.o_proj.weight`, hidden, heads * headDim, 1.5);
    vec(`${p}.post_attention_layernorm.weight`, hidden, 0.2, 1);
    lin(`${p}.mlp.gate_proj.weight`, intermediate, hidden);
    lin(`${p}.mlp.up_proj.weight`, intermediate, hidden);
    lin(`${p}.mlp.down_proj.weight`, hidden, intermediate, 1.5);
  }
  vec('model.norm.weight', hidden, 0.2, 1);
  if (!tie) lin('lm_head.weight', vocabSize, hidden, 3);

  const shapes = new Map(tensors.map((t) => [t.name, t.shape]));
  if (shards <= 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  } else {
    const per = Math.ceil(tensors.length / shards);
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let s = 0; s < shards; s++) {
      const part = tensors.slice(s * per, (s + 1) * per);
      const fname = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      writeSafetensors(path.join(dir, fname), part);
      for (const t of part) {
        weightMap[t.name] = fname;
        total += t.data.length * (dtype === 'f32' ? 4 : 2);
      }
    }
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
    );
  }

  // ---- config.json
  const archName = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[arch];
  const config: any = {
    architectures: [archName],
    model_type: arch,
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    hidden_act: 'silu',
    max_position_embeddings: maxPos,
    rms_norm_eps: eps,
    tie_word_embeddings: tie,
    vocab_size: vocabSize,
    initializer_range: 0.02,
    use_cache: true,
    attention_dropout: 0.0,
  };
  if (explicitHeadDim) config.head_dim = headDim;
  if (arch === 'llama') Object.assign(config, { attention_bias: qkvBias, mlp_bias: false, pretraining_tp: 1 });
  if (arch === 'mistral') Object.assign(config, { sliding_window: 4096 });
  if (arch === 'qwen2') Object.assign(config, { use_sliding_window: false, sliding_window: 4096, max_window_layers: layers });
  if (arch === 'llama' && qkvBias) throw new Error('llama with attention_bias also biases o_proj: not modelled');
  if (tok.bosId !== undefined) config.bos_token_id = tok.bosId;
  else config.bos_token_id = tok.vocab.get('<|endoftext|>');
  config.eos_token_id = tok.eosId;
  const ropeExtra: any = {};
  if (rope.type === 'linear') Object.assign(ropeExtra, { factor: rope.factor ?? 4 });
  if (rope.type === 'llama3')
    Object.assign(ropeExtra, {
      factor: rope.factor ?? 8,
      low_freq_factor: rope.lowFreqFactor ?? 1,
      high_freq_factor: rope.highFreqFactor ?? 4,
      original_max_position_embeddings: rope.originalMaxPosition ?? 64,
    });
  if (configStyle === 'legacy') {
    config.rope_theta = rope.theta;
    config.rope_scaling = rope.type === 'default' ? null : { rope_type: rope.type, ...ropeExtra };
    config.torch_dtype = TORCH_DT[dtype];
    config.transformers_version = '4.46.0';
  } else {
    config.rope_parameters = { rope_type: rope.type, rope_theta: rope.theta, ...ropeExtra };
    config.dtype = TORCH_DT[dtype];
    config.transformers_version = '5.0.0';
  }
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));

  // ---- tokenizer files
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.json));
  const tokCfg: any = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    model_max_length: maxPos,
    clean_up_tokenization_spaces: false,
    eos_token: tok.eosToken,
    added_tokens_decoder: Object.fromEntries(
      tok.specials.map((s) => [String(s.id), { content: s.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]),
    ),
  };
  if (arch === 'qwen2') {
    tokCfg.bos_token = null;
    tokCfg.pad_token = '<|endoftext|>';
    tokCfg.chat_template = CHATML_TEMPLATE;
  } else {
    tokCfg.bos_token = tok.bosToken;
    tokCfg.chat_template = LLAMA2_TEMPLATE;
  }
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokCfg, null, 2));
  fs.writeFileSync(
    path.join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: config.bos_token_id, eos_token_id: tok.eosId, do_sample: false, transformers_version: config.transformers_version }, null, 2),
  );

  const moduleShape = (m: ModuleName) => {
    const s = shapes.get(`model.layers.0.${m.endsWith('proj') && MLP_MODULES.includes(m) ? 'mlp' : 'self_attn'}.${m}.weight`)!;
    return { out: s[0], in: s[1] };
  };
  return {
    dir,
    config,
    opts: {
      arch, hidden, intermediate, layers, heads, kvHeads, headDim, vocabPad, dtype, tie, qkvBias, rope, configStyle,
      shards, seed, rmsNormEps: eps, maxPositionEmbeddings: maxPos, numMerges: o.numMerges ?? 40,
    },
    tokenizer: tok,
    vocabSize,
    shapes,
    moduleShape,
  };
}

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export const LLAMA2_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";

/** Expected rendering of the two templates above (hand-written, independent of jinja). */
export function expectedChat(
  arch: Arch,
  messages: { role: string; content: string }[],
  addGenerationPrompt: boolean,
): string {
  if (arch === 'qwen2') {
    let s = '';
    for (const m of messages) s += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
    if (addGenerationPrompt) s += '<|im_start|>assistant\n';
    return s;
  }
  let s = '<s>';
  for (const m of messages) {
    if (m.role === 'system') s += `<<SYS>>\n${m.content}\n<</SYS>>\n\n`;
    else if (m.role === 'user') s += `[INST] ${m.content} [/INST]`;
    else if (m.role === 'assistant') s += ` ${m.content}</s>`;
  }
  return s;
}

// =============================================================================================
// Adapters

function modulePath(m: ModuleName): string {
  return MLP_MODULES.includes(m) ? `mlp.${m}` : `self_attn.${m}`;
}

/** LoRA A/B pair with non-zero random values. B std chosen so the delta is comparable to (but smaller than) W x. */
function loraPair(rng: Rng, r: number, inn: number, out: number, bStd = 0.5) {
  return {
    A: rng.normals(r * inn, 1 / Math.sqrt(inn)),
    B: rng.normals(out * r, bStd / Math.sqrt(r)),
  };
}

export interface LoraSwitchOptions {
  r?: number;
  alpha?: number;
  numExperts?: number;
  topK?: number;
  targetModules?: ModuleName[];
  routerInput?: string; // e.g. 'self_attn.q_proj'
  seed?: number;
  dtype?: WeightDtype;
  /** multiply router weights (sharper/flatter routing) */
  routerGain?: number;
  bStd?: number;
}

export function makeLoraSwitchAdapter(dir: string, base: CheckpointInfo, o: LoraSwitchOptions = {}) {
  const r = o.r ?? 4;
  const alpha = o.alpha ?? 8;
  const E = o.numExperts ?? 4;
  const topK = o.topK ?? 2;
  const targets = o.targetModules ?? ALL_MODULES;
  // default: the input of the first adapted linear of layer 0, in execution order
  const routerInput = o.routerInput ?? modulePath(ALL_MODULES.find((m) => targets.includes(m))!);
  const rng = new Rng(o.seed ?? 99);
  const dt = DT[o.dtype ?? 'f32'];
  const routerMod = routerInput.split('.')[1] as ModuleName;
  const routerIn = base.moduleShape(routerMod).in;
  const tensors: StTensorIn[] = [
    { name: 'router.weight', dtype: dt, shape: [E, routerIn], data: rng.normals(E * routerIn, (o.routerGain ?? 3) / Math.sqrt(routerIn)) },
  ];
  for (let L = 0; L < base.opts.layers; L++)
    for (const m of targets) {
      const { in: inn, out } = base.moduleShape(m);
      for (let e = 0; e < E; e++) {
        const { A, B } = loraPair(rng, r, inn, out, o.bStd);
        const p = `layers.${L}.${modulePath(m)}.experts.${e}`;
        tensors.push({ name: `${p}.lora_A.weight`, dtype: dt, shape: [r, inn], data: A });
        tensors.push({ name: `${p}.lora_B.weight`, dtype: dt, shape: [out, r], data: B });
      }
    }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors);
  const config = {
    peft_type: 'LORA_SWITCH',
    r,
    lora_alpha: alpha,
    num_experts: E,
    top_k: topK,
    target_modules: targets,
    router_input: routerInput,
    base_model_name_or_path: base.dir,
    task_type: 'CAUSAL_LM',
  };
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  return { dir, config };
}

export interface PeftLoraOptions {
  r?: number;
  alpha?: number;
  /** list of short names, a regex string, or 'all-linear' */
  targetModules?: ModuleName[] | string;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
  useRslora?: boolean;
  layersToTransform?: number[];
  seed?: number;
  dtype?: WeightDtype;
  bStd?: number;
}

/** PEFT's module-key matching (peft.tuners.tuners_utils.check_target_module_exists, simplified to what we emit). */
export function peftTargets(base: CheckpointInfo, targetModules: ModuleName[] | string, layersToTransform?: number[]) {
  const keys: { key: string; layer: number; module: ModuleName }[] = [];
  for (let L = 0; L < base.opts.layers; L++)
    for (const m of ALL_MODULES) {
      const key = `model.layers.${L}.${modulePath(m)}`;
      let hit: boolean;
      if (targetModules === 'all-linear') hit = true;
      else if (typeof targetModules === 'string') hit = new RegExp(`^(?:${targetModules})$`).test(key);
      else hit = targetModules.some((t) => key === t || key.endsWith(`.${t}`));
      if (hit && layersToTransform && !layersToTransform.includes(L)) hit = false;
      if (hit) keys.push({ key, layer: L, module: m });
    }
  return keys;
}

/** PEFT's get_pattern_key: first pattern p with re.match(rf"(.*\.)?({p})$", key). */
export function peftPatternKey(patterns: string[], key: string): string | undefined {
  return patterns.find((p) => new RegExp(`^(.*\\.)?(${p})$`).test(key));
}

export function makePeftLoraAdapter(dir: string, base: CheckpointInfo, o: PeftLoraOptions = {}) {
  const r = o.r ?? 4;
  const alpha = o.alpha ?? 8;
  const targets = o.targetModules ?? ['q_proj', 'v_proj'];
  const rng = new Rng(o.seed ?? 7);
  const dt = DT[o.dtype ?? 'f32'];
  const tensors: StTensorIn[] = [];
  const rp = o.rankPattern ?? {};
  for (const { key, module } of peftTargets(base, targets, o.layersToTransform)) {
    const pk = peftPatternKey(Object.keys(rp), key);
    const rank = pk ? rp[pk] : r;
    const { in: inn, out } = base.moduleShape(module);
    const { A, B } = loraPair(rng, rank, inn, out, o.bStd);
    tensors.push({ name: `base_model.model.${key}.lora_A.weight`, dtype: dt, shape: [rank, inn], data: A });
    tensors.push({ name: `base_model.model.${key}.lora_B.weight`, dtype: dt, shape: [out, rank], data: B });
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors);
  const config: any = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: base.dir,
    r,
    lora_alpha: alpha,
    lora_dropout: 0.0,
    bias: 'none',
    fan_in_fan_out: false,
    target_modules: targets,
    rank_pattern: rp,
    alpha_pattern: o.alphaPattern ?? {},
    use_rslora: o.useRslora ?? false,
    use_dora: false,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: o.layersToTransform ?? null,
    layers_pattern: null,
    inference_mode: true,
    revision: null,
  };
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  return { dir, config };
}

export interface MixLoraOptions {
  r?: number;
  alpha?: number;
  numExperts?: number;
  topK?: number;
  /** attention names get plain LoRA, MLP names get per-expert LoRA */
  targetModules?: ModuleName[];
  seed?: number;
  dtype?: WeightDtype;
  /** 'issue' (names in issue 3: mixlora.layers.L.mlp.moe_gate.weight, mlp.{proj}.experts.e) or
   *  'upstream' (TUDB-Labs/MixLoRA today: mixlora.layers.L.gate.weight, experts.e.{proj}) */
  naming?: 'issue' | 'upstream';
  routerGain?: number;
  bStd?: number;
}

export function makeMixLoraAdapter(dir: string, base: CheckpointInfo, o: MixLoraOptions = {}) {
  const r = o.r ?? 4;
  const alpha = o.alpha ?? 8;
  const E = o.numExperts ?? 4;
  const topK = o.topK ?? 2;
  const targets = o.targetModules ?? ALL_MODULES;
  const naming = o.naming ?? 'issue';
  const rng = new Rng(o.seed ?? 31);
  const dt = DT[o.dtype ?? 'f32'];
  const H = base.opts.hidden;
  const tensors: StTensorIn[] = [];
  for (let L = 0; L < base.opts.layers; L++) {
    const gateName = naming === 'issue' ? `mixlora.layers.${L}.mlp.moe_gate.weight` : `mixlora.layers.${L}.gate.weight`;
    tensors.push({ name: gateName, dtype: dt, shape: [E, H], data: rng.normals(E * H, (o.routerGain ?? 3) / Math.sqrt(H)) });
    for (const m of targets) {
      const { in: inn, out } = base.moduleShape(m);
      if (ATTN_MODULES.includes(m)) {
        const { A, B } = loraPair(rng, r, inn, out, o.bStd);
        const p = `mixlora.layers.${L}.self_attn.${m}`;
        tensors.push({ name: `${p}.lora_A.weight`, dtype: dt, shape: [r, inn], data: A });
        tensors.push({ name: `${p}.lora_B.weight`, dtype: dt, shape: [out, r], data: B });
      } else {
        for (let e = 0; e < E; e++) {
          const { A, B } = loraPair(rng, r, inn, out, o.bStd);
          const p = naming === 'issue' ? `mixlora.layers.${L}.mlp.${m}.experts.${e}` : `mixlora.layers.${L}.experts.${e}.${m}`;
          tensors.push({ name: `${p}.lora_A.weight`, dtype: dt, shape: [r, inn], data: A });
          tensors.push({ name: `${p}.lora_B.weight`, dtype: dt, shape: [out, r], data: B });
        }
      }
    }
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors);
  const config = {
    peft_type: 'MIXLORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: base.dir,
    bias: 'none',
    r,
    lora_alpha: alpha,
    lora_dropout: 0.0,
    target_modules: targets,
    routing_strategy: 'mixtral',
    num_experts: E,
    top_k: topK,
    act_fn: 'silu',
    router_aux_loss_coef: 0.01,
    router_init_range: 0.02,
    jitter_noise: 0.0,
  };
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  return { dir, config };
}

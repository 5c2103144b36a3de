/**
 * The adapted linear modules of a Llama-family decoder layer: their HF names, the engine's short names
 * (docs/FORMAT.md "Adapter tensors"), the lsw_module enum values (cuda/include/lsw.h) and their shapes.
 */

/** The base-model fields adapter conversion needs; EngineConfig (src/core/hf-config.ts) satisfies it. */
export interface AdapterBaseConfig {
  hidden_size: number;
  intermediate_size: number;
  num_layers: number;
  num_heads: number;
  num_kv_heads: number;
  head_dim: number;
}

export type HfModuleName = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
export type EngineModuleName = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';
export type ModuleSection = 'self_attn' | 'mlp';

export interface ModuleInfo {
  hf: HfModuleName;
  engine: EngineModuleName;
  section: ModuleSection;
  /** lsw_module */
  id: number;
}

/** In lsw_module order. */
export const MODULES: readonly ModuleInfo[] = [
  { hf: 'q_proj', engine: 'q', section: 'self_attn', id: 0 },
  { hf: 'k_proj', engine: 'k', section: 'self_attn', id: 1 },
  { hf: 'v_proj', engine: 'v', section: 'self_attn', id: 2 },
  { hf: 'o_proj', engine: 'o', section: 'self_attn', id: 3 },
  { hf: 'gate_proj', engine: 'gate', section: 'mlp', id: 4 },
  { hf: 'up_proj', engine: 'up', section: 'mlp', id: 5 },
  { hf: 'down_proj', engine: 'down', section: 'mlp', id: 6 },
];

const BY_HF = new Map<string, ModuleInfo>(MODULES.map((m) => [m.hf, m]));

export function moduleByHfName(name: string): ModuleInfo | undefined {
  return BY_HF.get(name);
}

export const HF_MODULE_NAMES: readonly string[] = MODULES.map((m) => m.hf);

/** [out_features, in_features] of a module in the base model. */
export function moduleShape(base: AdapterBaseConfig, m: ModuleInfo): [number, number] {
  const H = base.hidden_size;
  const I = base.intermediate_size;
  const q = base.num_heads * base.head_dim;
  const kv = base.num_kv_heads * base.head_dim;
  switch (m.engine) {
    case 'q': return [q, H];
    case 'k': return [kv, H];
    case 'v': return [kv, H];
    case 'o': return [H, q];
    case 'gate': return [I, H];
    case 'up': return [I, H];
    case 'down': return [H, I];
  }
}

/**
 * Parse a router_input path such as "self_attn.q_proj" (also accepted: "q_proj", "layers.0.self_attn.q_proj",
 * "model.layers.0.mlp.gate_proj"). Returns undefined when it names no adapted module of layer 0.
 */
export function parseRouterInput(s: string): ModuleInfo | undefined {
  let rest = s.trim();
  const m = /^(?:.*\.)?layers\.(\d+)\.(.*)$/.exec(rest);
  if (m) {
    if (m[1] !== '0') return undefined;
    rest = m[2];
  }
  const parts = rest.split('.');
  if (parts.length === 1) return moduleByHfName(parts[0]);
  if (parts.length === 2) {
    const info = moduleByHfName(parts[1]);
    return info && info.section === parts[0] ? info : undefined;
  }
  return undefined;
}

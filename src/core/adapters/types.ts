/** Types shared by the adapter readers (docs/FORMAT.md "Adapter tensors", cuda/include/lsw.h). */

export type AdapterDtype = 'f32' | 'f16' | 'bf16';

/** An adapter argument: a folder and the user's scale (`path` or `path:scale`). */
export interface AdapterSpec {
  path: string;
  scale: number;
}

/** lsw_router_kind */
export const RouterKind = { STATIC: 0, PREGATED: 1, LAYERWISE: 2 } as const;
export type RouterKindName = 'static' | 'pregated' | 'layerwise';
export const ROUTER_KIND_NAMES: readonly RouterKindName[] = ['static', 'pregated', 'layerwise'];

/** Mirrors lsw_adapter_desc (all int32). */
export interface AdapterDesc {
  router_kind: number;
  num_experts: number;
  top_k: number;
  /** PREGATED: the lsw_module whose layer-0 input the router reads; 0 (unused) otherwise */
  router_input: number;
  /** 1: LAYERWISE MixLoRA, each expert is a whole FFN (gate/up/down) */
  ffn_experts: number;
}

/** One entry of the `lsw.adapters` metadata array (docs/FORMAT.md). */
export interface AdapterMeta {
  name: string;
  source: string;
  peft_type: string;
  router_kind: RouterKindName;
  num_experts: number;
  top_k: number;
  /** e.g. "self_attn.q_proj" (PREGATED), "mlp.gate_proj" (LAYERWISE: the MLP input), null for STATIC */
  router_input: string | null;
  ffn_experts: boolean;
  /** HF short names of the adapted modules, in lsw_module order */
  target_modules: string[];
  /** the user's scale (already multiplied into each module's lora_scale) */
  scale: number;
}

/** An engine tensor of one adapter; `name` lacks the `adapters.{a}.` prefix, which the caller adds. */
export interface AdapterTensor {
  name: string;
  dtype: AdapterDtype;
  shape: number[];
  data: Float32Array;
}

/** One engine adapter: what lsw_model_add_adapter takes, its metadata entry, and its tensors. */
export interface EngineAdapter {
  desc: AdapterDesc;
  meta: AdapterMeta;
  tensors: AdapterTensor[];
}

export interface ReadAdapterOptions {
  /** dtype the tensors will be written in (the model's dtype) */
  dtype: AdapterDtype;
}

/**
 * Adapter folders -> engine adapters (docs/FORMAT.md "Adapter tensors").
 *
 *   const spec = loadAdapterSpec('my-adapter:0.5');
 *   const adapters = readAdapter(spec, engineConfig, { dtype: 'f16' });   // 1 engine adapter, 2 for MixLoRA
 *   for (const a of adapters) { lsw_model_add_adapter(a.desc) ; add a.tensors as `adapters.{id}.${t.name}` ; a.meta -> lsw.adapters }
 *
 * Every problem with the input throws a UserError whose message is one line naming the file.
 */
import { fileError } from '../errors.js';
import { openAdapterFolder } from './common.js';
import { readLoraSwitch } from './lora-switch.js';
import { readMixLora } from './mixlora.js';
import type { AdapterBaseConfig } from './modules.js';
import { readPeftLora } from './peft.js';
import type { AdapterSpec, EngineAdapter, ReadAdapterOptions } from './types.js';

export { loadAdapterSpec } from './spec.js';
export { MODULES, moduleShape, parseRouterInput } from './modules.js';
export type { AdapterBaseConfig, ModuleInfo, HfModuleName, EngineModuleName } from './modules.js';
export { RouterKind, ROUTER_KIND_NAMES } from './types.js';
export type {
  AdapterDesc, AdapterDtype, AdapterMeta, AdapterSpec, AdapterTensor, EngineAdapter, ReadAdapterOptions, RouterKindName,
} from './types.js';

export const SUPPORTED_PEFT_TYPES = ['LORA_SWITCH', 'LORA', 'MIXLORA'] as const;

/**
 * Read, validate and convert one adapter folder into engine adapters: one for LORA_SWITCH (PREGATED) and LORA
 * (STATIC); for MIXLORA a LAYERWISE adapter (MLP experts + per-layer routers) followed by a STATIC one (its attention
 * LoRA), each present only when MixLoRA targets such modules.
 */
export function readAdapter(spec: AdapterSpec, base: AdapterBaseConfig, opts: ReadAdapterOptions): EngineAdapter[] {
  if (!Number.isFinite(spec.scale)) throw fileError(spec.path, `adapter scale ${spec.scale} is not a finite number`);
  const folder = openAdapterFolder(spec.path);
  const pt = folder.config.peft_type;
  if (pt === undefined || pt === null) throw fileError(folder.configFile, `missing "peft_type" (supported: ${SUPPORTED_PEFT_TYPES.join(', ')})`);
  switch (pt) {
    case 'LORA_SWITCH': return readLoraSwitch(spec, folder, base, opts);
    case 'LORA': return readPeftLora(spec, folder, base, opts);
    case 'MIXLORA': return readMixLora(spec, folder, base, opts);
    default:
      throw fileError(folder.configFile, `unknown peft_type ${JSON.stringify(pt)} (supported: ${SUPPORTED_PEFT_TYPES.join(', ')})`);
  }
}

/**
 * Read several adapters in order (engine adapter ids follow the returned order). Names are made unique by
 * appending "#2", "#3", … where two adapters would share one.
 */
export function readAdapters(specs: AdapterSpec[], base: AdapterBaseConfig, opts: ReadAdapterOptions): EngineAdapter[] {
  const out: EngineAdapter[] = [];
  const seen = new Map<string, number>();
  for (const s of specs) {
    for (const a of readAdapter(s, base, opts)) {
      const n = seen.get(a.meta.name) ?? 0;
      seen.set(a.meta.name, n + 1);
      if (n > 0) a.meta.name = `${a.meta.name}#${n + 1}`;
      out.push(a);
    }
  }
  return out;
}

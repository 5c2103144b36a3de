/** `lora-switch convert`: progress as Ink (TTY), plain lines (piped) or one JSON object (--json). */
import { convertModel, type ConvertEvent } from './convert.js';
import { loadAdapterSpec } from './adapters/index.js';
import type { ModelDtype } from './hf-config.js';
import { outputMode, LiveView } from './views/render.js';
import { ConvertView, newConvertState, mib } from './views/convert-view.js';

export interface ConvertCliOptions {
  folder: string;
  output: string;
  dtype?: ModelDtype;
  json?: boolean;
  /** `path` or `path:scale`, repeatable */
  adapter?: string[];
}

export async function runConvert(o: ConvertCliOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const mode = outputMode(!!o.json);
  const state = newConvertState(o.folder, o.output);
  let view: LiveView<typeof state> | null = null;
  let lastPct = -1;
  const onProgress = (e: ConvertEvent) => {
    if (e.type === 'start') {
      Object.assign(state, { architecture: e.architecture, dtype: e.dtype, total: e.tensors, totalBytes: e.totalBytes });
      if (mode === 'ink') view = new LiveView(ConvertView, state);
      else if (mode === 'plain') out.write(`converting ${e.source} -> ${e.out} (${e.architecture}, ${e.dtype}, ${e.tensors} tensors${e.adapters ? `, ${e.adapters} adapter${e.adapters > 1 ? 's' : ''}` : ''}, ${mib(e.totalBytes)})\n`);
    } else if (e.type === 'tensor') {
      Object.assign(state, { done: e.index + 1, bytesWritten: e.bytesWritten, current: e.name });
      view?.update();
      if (mode === 'plain') {
        const pct = Math.floor((100 * e.bytesWritten) / Math.max(1, e.totalBytes) / 10) * 10;
        if (pct !== lastPct) {
          lastPct = pct;
          out.write(`  ${pct}% ${e.index + 1}/${e.total} tensors\n`);
        }
      }
    } else {
      Object.assign(state, { finished: true, ms: e.ms });
    }
  };
  try {
    const adapters = (o.adapter ?? []).map((a) => loadAdapterSpec(a));
    const r = await convertModel(o.folder, o.output, { dtype: o.dtype, onProgress, adapters });
    if (view) await (view as LiveView<typeof state>).done();
    if (mode === 'json') {
      out.write(`${JSON.stringify({ output: r.out, bytes: r.bytes, dtype: r.dtype, architecture: r.architecture, tensors: r.tensors, parameters: r.parameters, ms: r.ms, config: r.config, adapters: r.adapters })}\n`);
    } else if (mode === 'plain') {
      out.write(`wrote ${r.out}: ${r.architecture}, ${r.dtype}, ${r.tensors} tensors, ${r.parameters} parameters, ${mib(r.bytes)} in ${(r.ms / 1000).toFixed(1)} s\n`);
      for (const [i, a] of r.adapters.entries()) out.write(`  adapter ${i}: ${a.name} (${a.peft_type}, ${a.router_kind}, ${a.num_experts} expert${a.num_experts === 1 ? '' : 's'}, top_k ${a.top_k}, scale ${a.scale})\n`);
    }
  } catch (e) {
    if (view) await (view as LiveView<typeof state>).done().catch(() => {});
    throw e;
  }
}

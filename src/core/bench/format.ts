/** Renderers of bench results: the text table (TTY and piped), CSV and Markdown. Pure functions of the docs. */
import type { BenchDoc, BenchResultRow } from './run.js';

export interface TableRow {
  tool: string;
  mode: string;
  median: number | null;
  p10: number | null;
  p90: number | null;
  tokensPerS: number | null;
  ratio: number | null;
  floorMs: number | null;
  pctFloor: number | null;
  prefillTps: number | null;
  ttftMs: number | null;
  prefillTflops: number | null;
  pctMatmul: number | null;
  peakBytes: number | null;
  launches: number | null;
  /** merge mode: the fraction of measured decode steps that ran an SGMM merge (null for the other modes) */
  merges: number | null;
  /** element type of the run's KV cache (protocol.kv_cache; null where the document has none) */
  kvCache: string | null;
  error: string | null;
}

/** Rows of one table: lora-switch's modes, then the peer's. */
export function tableRows(doc: BenchDoc, peer?: BenchDoc | null): TableRow[] {
  const conv = (d: BenchDoc, r: BenchResultRow): TableRow => ({
    tool: d.tool,
    mode: r.mode,
    median: r.ms_per_token?.median ?? null,
    p10: r.ms_per_token?.p10 ?? null,
    p90: r.ms_per_token?.p90 ?? null,
    tokensPerS: r.tokens_per_s ?? null,
    ratio: r.ratio_to_base ?? null,
    floorMs: r.floor_ms ?? null,
    pctFloor: r.pct_of_floor ?? null,
    prefillTps: r.prefill_tokens_per_s ?? null,
    ttftMs: r.ttft_ms ?? null,
    prefillTflops: typeof r.prefill_tflops === 'number' ? r.prefill_tflops : null,
    pctMatmul: typeof r.prefill_pct_of_matmul === 'number' ? r.prefill_pct_of_matmul : null,
    peakBytes: r.peak_device_bytes ?? null,
    launches: r.launches_per_token ?? null,
    merges: typeof r.merges_per_token === 'number' ? r.merges_per_token : null,
    kvCache: typeof d.protocol.kv_cache === 'string' ? d.protocol.kv_cache : null,
    error: typeof r.error === 'string' ? r.error : null,
  });
  return [...doc.results.map((r) => conv(doc, r)), ...(peer ? peer.results.map((r) => conv(peer, r)) : [])];
}

const num = (x: number | null, nd: number): string => (x === null || x === undefined ? '–' : x.toFixed(nd));

/** A FLOP rate in TFLOP/s: 3 significant digits below 1, else 1-2 decimals. */
export function fmtTflops(x: number | null): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  if (x >= 100) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  return x === 0 ? '0' : x.toPrecision(3);
}
const pct = (x: number | null, sep = ''): string => (x === null ? '–' : `${x.toFixed(1)}${sep}%`);

/** A parameter count: 6.738 B, 134.5 M, 70.3 k (a tiny test model is not "0.000 B") */
export function fmtParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(3)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return `${n}`;
}

export function fmtBytes(b: number | null): string {
  if (b === null || b === undefined) return '–';
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(1)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(1)} kB`;
  return `${b} B`;
}

const HEAD = ['tool', 'mode', 'ms/token', 'p10–p90', 'tok/s', '× base', 'floor ms', '% floor', 'prefill tok/s', 'TTFT ms', 'prefill TFLOP/s', '% matmul', 'peak mem', 'launches/tok'];

function cells(r: TableRow): string[] {
  if (r.median === null) return [r.tool, r.mode, r.error ? `failed: ${r.error}` : '–', ...HEAD.slice(3).map(() => '')];
  return [
    r.tool,
    r.mode,
    num(r.median, 3),
    `${num(r.p10, 3)}–${num(r.p90, 3)}`,
    num(r.tokensPerS, 1),
    num(r.ratio, 3),
    num(r.floorMs, 3),
    r.pctFloor === null ? '–' : `${r.pctFloor.toFixed(1)}%`,
    num(r.prefillTps, 0),
    num(r.ttftMs, 1),
    fmtTflops(r.prefillTflops),
    pct(r.pctMatmul),
    fmtBytes(r.peakBytes),
    r.launches === null ? '–' : String(r.launches),
  ];
}

/** Aligned text table (numbers right-aligned). */
export function textTable(rows: TableRow[]): string {
  const body = rows.map(cells);
  const all = [HEAD, ...body];
  const w = HEAD.map((_, i) => Math.max(...all.filter((r) => !(r[2].startsWith('failed') && i === 2 && r !== HEAD)).map((r) => r[i].length)));
  const line = (r: string[]) => {
    if (r !== HEAD && r[2].startsWith('failed')) return `${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2]}`;
    return r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  };
  return [line(HEAD), w.map((n) => '─'.repeat(n)).join('  '), ...body.map(line)].join('\n');
}

/** One paragraph describing the run: model, adapter, machine, protocol. */
export function describe(doc: BenchDoc): string[] {
  const m = doc.model;
  const a = doc.adapter;
  const p = doc.protocol;
  const mc = doc.machine;
  const modelName = m.preset ?? m.path ?? '?';
  const out = [
    `model    ${modelName}: ${m.layers}×${m.hidden}, I ${m.intermediate}, V ${m.vocab}, ${m.dtype}, ${m.params !== null ? fmtParams(m.params) + ' params' : '?'}, ${fmtBytes(m.weight_bytes)}`,
    `adapter  ${a.router}, ${a.experts} experts, top-${a.top_k}${a.rank !== null ? `, rank ${a.rank}` : ''}, targets ${a.targets.join(',') || '–'}, ${fmtBytes(a.adapter_bytes)}`,
    `machine  ${mc.backend}${mc.gpu ? ` (${mc.gpu})` : ''}, ${mc.cpu}, copy bandwidth ${mc.copy_bandwidth_gbps === null ? '–' : `${mc.copy_bandwidth_gbps.toFixed(1)} GB/s`}${matmulText(doc)}`,
    `protocol batch ${p.batch}, prompt ${p.prompt_tokens}, ${p.new_tokens} new tokens, warm-up ${p.warmup}, ${p.repetitions} repetitions, ${p.interleaved ? 'interleaved' : 'one mode after the other'}${typeof p.precision === 'string' ? `, ${p.precision} prefill` : ''}${typeof p.kv_cache === 'string' ? `, ${p.kv_cache} KV cache` : ''}${p.merge_prompt === 'batched' ? ', batched merge-mode prompt' : ''}${typeof p.decode_tokens === 'string' ? `, ${p.decode_tokens} decode tokens` : ''}`,
  ];
  return out;
}

/** ", matmul 750.2 TFLOP/s (bf16 4096×4096×2048)" when the document has the measured matmul rate. */
function matmulText(doc: BenchDoc): string {
  const mc = doc.machine;
  if (!('matmul_tflops' in mc)) return '';
  const sh = mc.matmul_shape as { rows?: number; cols?: number; n?: number } | undefined;
  const shape = sh && sh.rows ? ` (${mc.matmul_dtype ?? doc.model.dtype} ${sh.rows}×${sh.cols}×${sh.n})` : '';
  return `, matmul ${fmtTflops(typeof mc.matmul_tflops === 'number' ? mc.matmul_tflops : null)} TFLOP/s${shape}`;
}

function csvCell(v: string | number | null): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const CSV_COLUMNS = ['tool', 'mode', 'ms_per_token_median', 'ms_per_token_p10', 'ms_per_token_p90', 'tokens_per_s', 'ratio_to_base', 'floor_ms', 'pct_of_floor', 'prefill_tokens_per_s', 'ttft_ms', 'prefill_tflops', 'prefill_pct_of_matmul', 'peak_device_bytes', 'launches_per_token', 'merges_per_token', 'kv_cache', 'error'];

/** CSV: a header line, then one line per mode (lora-switch's, then the peer's). */
export function toCsv(doc: BenchDoc, peer?: BenchDoc | null): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of tableRows(doc, peer)) {
    lines.push([r.tool, r.mode, r.median, r.p10, r.p90, r.tokensPerS, r.ratio, r.floorMs, r.pctFloor, r.prefillTps, r.ttftMs, r.prefillTflops, r.pctMatmul, r.peakBytes, r.launches, r.merges, r.kvCache, r.error].map(csvCell).join(','));
  }
  return `${lines.join('\n')}\n`;
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|');

/** A Markdown table for the README, preceded by what was measured (machine, date, command). */
export function toMarkdown(doc: BenchDoc, peer?: BenchDoc | null): string {
  const head = ['tool', 'mode', 'ms/token (p10–p90)', 'tokens/s', '× base', '% of floor', 'prefill tok/s', 'TTFT ms', 'prefill TFLOP/s', '% of matmul', 'peak memory', 'launches/token'];
  const out: string[] = [];
  for (const l of describe(doc)) out.push(`- ${mdCell(l.replace(/^(\w+)\s+/, '**$1** '))}`);
  out.push(`- **measured** ${doc.date} · \`${doc.command}\``);
  if (peer) out.push(`- **peer** ${mdCell(peer.version)} · ${peer.date}`);
  out.push('');
  out.push(`| ${head.join(' | ')} |`);
  out.push(`| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
  for (const r of tableRows(doc, peer)) {
    const c = r.median === null
      ? [r.tool, r.mode, r.error ? `failed: ${r.error}` : '–', ...head.slice(3).map(() => '')]
      : [r.tool, r.mode, `${num(r.median, 3)} (${num(r.p10, 3)}–${num(r.p90, 3)})`, num(r.tokensPerS, 1), num(r.ratio, 3),
        pct(r.pctFloor, ' '), num(r.prefillTps, 0), num(r.ttftMs, 1), fmtTflops(r.prefillTflops), pct(r.pctMatmul, ' '),
        fmtBytes(r.peakBytes), r.launches === null ? '–' : String(r.launches)];
    out.push(`| ${c.map(mdCell).join(' | ')} |`);
  }
  if (peer) out.push('', '`× base`: lora-switch rows relative to its `base` mode, torch rows relative to `torch-eager`.');
  const kv = kvCacheNote(doc, peer, (f) => `\`${f}\``);
  if (kv) out.push('', kv);
  const mg = mergeNote(doc, (f) => `\`${f}\``);
  if (mg) out.push('', mg);
  return `${out.join('\n')}\n`;
}

/**
 * How many of merge mode's measured decode steps ran a merge (null without a merge row that counted them). Below
 * 90 % the note says why the rest did not and what the number then means.
 */
export function mergeNote(doc: BenchDoc, code = (s: string) => s): string | null {
  const r = doc.results.find((x) => x.mode === 'merge' && typeof x.merges_per_token === 'number');
  if (!r) return null;
  const f = r.merges_per_token as number;
  // a layer-wise adapter routes, and merges or skips, in every layer of a step
  const what = doc.adapter.router === 'layerwise' ? 'of the layers in the measured decode steps' : 'of the measured decode steps';
  const head = `merge: ${(f * 100).toFixed(f < 0.999 && f > 0.99 ? 1 : 0)} % ${what} merged their experts`;
  if (f >= 0.9) return `${head}.`;
  const fix = doc.protocol.decode_tokens === 'greedy' ? `; ${code('--decode-tokens random')} feeds a new token every step` : '';
  return `${head}; the rest kept the route the working weights already held (a repeated route), so its ms/token and floor count fewer merges than real text needs${fix}.`;
}

/**
 * A note when lora-switch and the peer kept their KV caches in different element types (null when alike or unknown);
 * `code` formats the flag (Markdown: backticks).
 */
export function kvCacheNote(doc: BenchDoc, peer?: BenchDoc | null, code = (s: string) => s): string | null {
  const mine = doc.protocol.kv_cache, theirs = peer?.protocol.kv_cache;
  if (typeof mine !== 'string' || typeof theirs !== 'string' || mine === theirs) return null;
  return `KV cache: lora-switch ${mine}, torch ${theirs}; ${code(`--kv-cache ${theirs}`)} compares like for like.`;
}

/** The plain-text report (TTY end screen and piped output). */
export function textReport(doc: BenchDoc, peer?: BenchDoc | null, peerError?: string | null): string {
  const out = [...describe(doc), '', textTable(tableRows(doc, peer))];
  if (peer) out.push('', '× base: lora-switch rows relative to its base mode, torch rows relative to torch-eager.');
  const kv = kvCacheNote(doc, peer);
  if (kv) out.push(kv);
  const mg = mergeNote(doc);
  if (mg) out.push('', mg);
  if (peerError) out.push('', `torch peer: ${peerError}`);
  for (const e of doc.errors ?? []) if (!doc.results.some((r) => r.error && e.endsWith(r.error))) out.push(`note: ${e}`);
  return `${out.join('\n')}\n`;
}

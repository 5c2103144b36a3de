/**
 * Routing traces (`generate --trace trace.jsonl`), format in docs/TRACE.md.
 *
 * Pure formatting and parsing of the JSON-lines file, plus a small writer that writes to a temporary file and renames
 * it into place on close. The routes come from lsw_model_get_routes: experts / gates laid out [n][rows][top_k], with
 * rows = num_layers for layer-wise routers and 1 for a pre-gated router.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileError, ioReason } from './errors.js';
import { checkOutputPath } from './outpath.js';

export const TRACE_FORMAT = 'lora-switch-trace';
export const TRACE_VERSION = 1;

export type TracePhase = 'prompt' | 'generated';
export type TraceRouterKind = 'static' | 'pregated' | 'layerwise';
export type TraceMode = 'merge' | 'unfused' | 'fused';

/** An engine adapter as the trace header lists it (from the model's `lsw.adapters` metadata). */
export interface TraceAdapter {
  /** engine adapter id (index in lsw.adapters) */
  id: number;
  name: string;
  router_kind: TraceRouterKind;
  num_experts: number;
  top_k: number;
  router_input: string | null;
  /** routing rows per token: num_layers for layerwise, 1 for pregated, 0 for static (never routed) */
  rows: number;
}

export interface TraceHeader {
  type: 'header';
  format: typeof TRACE_FORMAT;
  version: number;
  model: string;
  mode: TraceMode;
  backend: string;
  num_layers: number;
  adapters: TraceAdapter[];
  created: string;
}

export interface TraceHeaderInput {
  model: string;
  mode: TraceMode;
  backend: string;
  num_layers: number;
  adapters: Array<Omit<TraceAdapter, 'rows'> & { rows?: number }>;
  created?: Date;
}

/** One token's routing by one routed adapter: `experts`/`gates` are [top_k] (pregated) or [num_layers][top_k] (layerwise). */
export interface TraceRoute {
  adapter: number;
  experts: number[] | number[][];
  gates: number[] | number[][];
}

export interface TraceToken {
  type: 'token';
  pos: number;
  token: number;
  text: string;
  phase: TracePhase;
  routes: TraceRoute[];
}

/** Routes of n consecutive tokens for one adapter as lsw_model_get_routes returns them. */
export interface RouteBlock {
  adapter: number;
  /** [n][rows][top_k] */
  experts: Int32Array | ArrayLike<number>;
  /** [n][rows][top_k] */
  gates: Float32Array | ArrayLike<number>;
}

export interface TokenInfo {
  pos: number;
  token: number;
  text: string;
  phase: TracePhase;
}

/** Header adapter entries from the model's `lsw.adapters` metadata (ids follow its order). */
export function traceAdapters(metas: Array<{ name: string; router_kind: TraceRouterKind; num_experts: number; top_k: number; router_input: string | null }>, numLayers: number): TraceAdapter[] {
  return metas.map((m, id) => ({
    id, name: m.name, router_kind: m.router_kind, num_experts: m.num_experts, top_k: m.top_k, router_input: m.router_input,
    rows: rowsFor(m.router_kind, numLayers),
  }));
}

function rowsFor(kind: TraceRouterKind, numLayers: number): number {
  return kind === 'layerwise' ? numLayers : kind === 'pregated' ? 1 : 0;
}

/** Shortest decimal that reads back as the same float32. */
export function f32Short(x: number): number {
  const f = Math.fround(x);
  if (!Number.isFinite(f) || f === 0) return f;
  for (let p = 1; p <= 9; p++) {
    const v = Number(f.toPrecision(p));
    if (Math.fround(v) === f) return v;
  }
  return f;
}

export function traceHeader(h: TraceHeaderInput): TraceHeader {
  return {
    type: 'header',
    format: TRACE_FORMAT,
    version: TRACE_VERSION,
    model: h.model,
    mode: h.mode,
    backend: h.backend,
    num_layers: h.num_layers,
    adapters: h.adapters.map((a) => ({
      id: a.id, name: a.name, router_kind: a.router_kind, num_experts: a.num_experts, top_k: a.top_k,
      router_input: a.router_input, rows: a.rows ?? rowsFor(a.router_kind, h.num_layers),
    })),
    created: (h.created ?? new Date()).toISOString(),
  };
}

/** Adapters that have per-token routes (static ones have none). */
export function routedAdapters(header: TraceHeader): TraceAdapter[] {
  return header.adapters.filter((a) => a.router_kind !== 'static');
}

/**
 * Build the token records of n consecutive tokens from the engine's route blocks (one block per routed adapter).
 * Throws an Error (a programming error, not bad user input) when a block's size or contents do not fit the header.
 */
export function traceTokens(header: TraceHeader, tokens: TokenInfo[], blocks: RouteBlock[]): TraceToken[] {
  const n = tokens.length;
  const routed = routedAdapters(header);
  const byId = new Map(blocks.map((b) => [b.adapter, b]));
  for (const a of routed) if (!byId.has(a.id)) throw new Error(`trace: no routes for adapter ${a.id} (${a.name})`);
  for (const b of blocks) if (!routed.some((a) => a.id === b.adapter)) throw new Error(`trace: routes for adapter ${b.adapter}, which is not a routed adapter`);
  const out: TraceToken[] = tokens.map((t) => ({ type: 'token', pos: t.pos, token: t.token, text: t.text, phase: t.phase, routes: [] }));
  for (const a of routed) {
    const b = byId.get(a.id)!;
    const per = a.rows * a.top_k;
    if (b.experts.length !== n * per || b.gates.length !== n * per) {
      throw new Error(`trace: adapter ${a.id} routes hold ${b.experts.length} experts / ${b.gates.length} gates, expected ${n} x ${a.rows} x ${a.top_k}`);
    }
    for (let i = 0; i < n; i++) {
      const rowsE: number[][] = [];
      const rowsG: number[][] = [];
      for (let r = 0; r < a.rows; r++) {
        const e: number[] = [];
        const g: number[] = [];
        for (let k = 0; k < a.top_k; k++) {
          const j = i * per + r * a.top_k + k;
          const ex = b.experts[j];
          const gv = b.gates[j];
          // a layer-wise adapter records expert -1, gate 0 in layers it does not adapt
          const unrouted = a.router_kind === 'layerwise' && ex === -1 && gv === 0;
          if (!unrouted && (!Number.isInteger(ex) || ex < 0 || ex >= a.num_experts)) throw new Error(`trace: adapter ${a.id} token ${tokens[i].pos}: expert ${ex} out of range [0, ${a.num_experts})`);
          if (!Number.isFinite(gv)) throw new Error(`trace: adapter ${a.id} token ${tokens[i].pos}: gate ${gv} is not finite`);
          e.push(ex);
          g.push(f32Short(gv));
        }
        rowsE.push(e);
        rowsG.push(g);
      }
      out[i].routes.push(a.router_kind === 'layerwise'
        ? { adapter: a.id, experts: rowsE, gates: rowsG }
        : { adapter: a.id, experts: rowsE[0], gates: rowsG[0] });
    }
  }
  return out;
}

export function traceLine(rec: TraceHeader | TraceToken): string {
  return `${JSON.stringify(rec)}\n`;
}

/**
 * Writes a trace: header at open, token lines as they come, into `<file>.<pid>.tmp`; close() renames it to `file`,
 * abort() removes it. Nothing is left half-written under the final name.
 */
export class TraceWriter {
  readonly file: string;
  readonly header: TraceHeader;
  private tmp: string;
  private fd: number | null;
  private count = 0;

  private constructor(file: string, header: TraceHeader, tmp: string, fd: number) {
    this.file = file;
    this.header = header;
    this.tmp = tmp;
    this.fd = fd;
  }

  static open(file: string, header: TraceHeaderInput | TraceHeader): TraceWriter {
    const h = 'type' in header ? header : traceHeader(header);
    const dir = path.dirname(path.resolve(file));
    if (!fs.existsSync(dir)) throw fileError(file, `folder ${dir} does not exist`);
    checkOutputPath(file, []);  // not a folder (generate also checks it against the model and adapters)
    const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
    let fd: number;
    try {
      fd = fs.openSync(tmp, 'w');
    } catch (e) {
      throw fileError(file, `cannot write (${ioReason(e)})`);
    }
    const w = new TraceWriter(file, h, tmp, fd);
    w.put(traceLine(h));
    return w;
  }

  private put(s: string) {
    if (this.fd === null) throw new Error('trace: writer is closed');
    fs.writeSync(this.fd, s);
  }

  /** Append n consecutive tokens with their routes (one block per routed adapter, from lsw_model_get_routes). */
  write(tokens: TokenInfo[], blocks: RouteBlock[]): void {
    if (tokens.length === 0) return;
    let s = '';
    for (const rec of traceTokens(this.header, tokens, blocks)) s += traceLine(rec);
    this.put(s);
    this.count += tokens.length;
  }

  get tokensWritten(): number {
    return this.count;
  }

  /** Finish: the trace appears under its name. */
  close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
    try {
      fs.renameSync(this.tmp, this.file);
    } catch (e) {
      fs.rmSync(this.tmp, { force: true });
      throw fileError(this.file, `cannot write (${ioReason(e)})`);
    }
  }

  /** Give up: remove the temporary file. */
  abort(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
    fs.rmSync(this.tmp, { force: true });
  }
}

export interface Trace {
  header: TraceHeader;
  tokens: TraceToken[];
}

/** Parse a trace file; problems become a UserError naming the file and line. */
export function readTrace(file: string): Trace {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(file, code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? (e as Error).message})`);
  }
  return parseTrace(text, file);
}

export function parseTrace(text: string, file = 'trace'): Trace {
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw fileError(file, 'empty trace (no header line)');
  const parse = (i: number): Record<string, unknown> => {
    let v: unknown;
    try {
      v = JSON.parse(lines[i]);
    } catch (e) {
      throw fileError(file, `line ${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw fileError(file, `line ${i + 1}: not a JSON object`);
    return v as Record<string, unknown>;
  };
  const h = parse(0);
  if (h.type !== 'header' || h.format !== TRACE_FORMAT) throw fileError(file, `line 1: not a lora-switch trace header (expected "type":"header","format":"${TRACE_FORMAT}")`);
  if (typeof h.version !== 'number' || h.version > TRACE_VERSION) throw fileError(file, `line 1: trace version ${JSON.stringify(h.version)} is newer than this reader (${TRACE_VERSION})`);
  if (!Array.isArray(h.adapters) || typeof h.num_layers !== 'number') throw fileError(file, 'line 1: header lacks "adapters" or "num_layers"');
  const header = h as unknown as TraceHeader;
  const routed = new Map(routedAdapters(header).map((a) => [a.id, a]));
  const tokens: TraceToken[] = [];
  for (let i = 1; i < lines.length; i++) {
    const t = parse(i);
    if (t.type !== 'token') throw fileError(file, `line ${i + 1}: expected a token record ("type":"token")`);
    if (!Number.isInteger(t.pos) || !Number.isInteger(t.token) || typeof t.text !== 'string' || (t.phase !== 'prompt' && t.phase !== 'generated') || !Array.isArray(t.routes)) {
      throw fileError(file, `line ${i + 1}: token record needs pos, token, text, phase ("prompt"|"generated") and routes`);
    }
    for (const r of t.routes as TraceRoute[]) {
      const a = routed.get(r?.adapter);
      if (!a) throw fileError(file, `line ${i + 1}: routes for adapter ${JSON.stringify(r?.adapter)}, which the header does not list as routed`);
      const rowsE = (a.router_kind === 'layerwise' ? r.experts : [r.experts]) as unknown[];
      const rowsG = (a.router_kind === 'layerwise' ? r.gates : [r.gates]) as unknown[];
      const ok = Array.isArray(rowsE) && Array.isArray(rowsG) && rowsE.length === a.rows && rowsG.length === a.rows
        && rowsE.every((row) => Array.isArray(row) && row.length === a.top_k && row.every((e) => Number.isInteger(e) && e >= (a.router_kind === 'layerwise' ? -1 : 0) && e < a.num_experts))
        && rowsG.every((row) => Array.isArray(row) && row.length === a.top_k && row.every((g) => typeof g === 'number'));
      if (!ok) throw fileError(file, `line ${i + 1}: routes of adapter ${a.id} do not match its header entry (${a.rows} x top_k ${a.top_k}, experts < ${a.num_experts})`);
    }
    tokens.push(t as unknown as TraceToken);
  }
  return { header, tokens };
}

// Builds a real Hugging Face tokenizer.json (ByteLevel BPE) for fixtures, and an independent tiny BPE encoder
// used only as a test oracle for the product's tokenizer (the product uses @huggingface/tokenizers).

/** GPT-2's bytes_to_unicode table: byte -> printable unicode char. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const table: string[] = new Array(256);
  for (let i = 0; i < bs.length; i++) table[bs[i]] = String.fromCharCode(cs[i]);
  return table;
}

export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

const CORPUS = [
  'Hello world. The quick brown fox jumps over the lazy dog.',
  'the theory of the thing: these are the three things there.',
  'Hello, hello! How are you? I am fine, thank you.',
  'In the beginning the engine reads the weights and then it runs the model.',
  'LoRA experts switch on and off; the router picks the top experts for each token.',
].join(' ');

export interface TokenizerFixture {
  json: any;
  vocab: Map<string, number>;
  merges: [string, string][];
  specials: { content: string; id: number }[];
  size: number;
  bosToken?: string;
  eosToken: string;
  bosId?: number;
  eosId: number;
  byteTable: string[];
}

export interface TokenizerOptions {
  numMerges?: number; // default 40
  specials?: string[]; // e.g. ['<s>', '</s>'] or ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
  bos?: string | null; // token prepended by the post-processor (TemplateProcessing), null = none
  eos: string;
}

/** Learn `numMerges` merges on a fixed small corpus (deterministic), return a full tokenizer.json object. */
export function buildTokenizer(opts: TokenizerOptions): TokenizerFixture {
  const table = bytesToUnicode();
  const numMerges = opts.numMerges ?? 40;
  const vocab = new Map<string, number>();
  for (let b = 0; b < 256; b++) vocab.set(table[b], b);
  // words as sequences of symbols
  const words = new Map<string, number>();
  for (const m of CORPUS.matchAll(GPT2_SPLIT)) {
    const w = Array.from(Buffer.from(m[0], 'utf8')).map((b) => table[b]).join('\u0000');
    words.set(w, (words.get(w) ?? 0) + 1);
  }
  let seqs = [...words.entries()].map(([w, c]) => ({ syms: w.split('\u0000'), c }));
  const merges: [string, string][] = [];
  for (let k = 0; k < numMerges; k++) {
    const counts = new Map<string, number>();
    for (const { syms, c } of seqs) for (let i = 0; i + 1 < syms.length; i++) {
      const key = syms[i] + '\u0000' + syms[i + 1];
      counts.set(key, (counts.get(key) ?? 0) + c);
    }
    let best = '';
    let bestC = 0;
    for (const [key, c] of counts) if (c > bestC || (c === bestC && key < best)) { best = key; bestC = c; }
    if (bestC < 2) break;
    const [a, b] = best.split('\u0000');
    merges.push([a, b]);
    vocab.set(a + b, vocab.size);
    seqs = seqs.map(({ syms, c }) => {
      const out: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) { out.push(a + b); i++; } else out.push(syms[i]);
      }
      return { syms: out, c };
    });
  }
  const specials = (opts.specials ?? []).map((content) => ({ content, id: 0 }));
  for (const s of specials) { s.id = vocab.size; vocab.set(s.content, s.id); }
  const idOf = (t: string) => {
    const id = vocab.get(t);
    if (id === undefined) throw new Error(`special token ${t} not in specials`);
    return id;
  };
  const bos = opts.bos ?? undefined;
  const postProcessor = bos
    ? {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
        ],
        special_tokens: { [bos]: { id: bos, ids: [idOf(bos)], tokens: [bos] } },
      }
    : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => ({
      id: s.id, content: s.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: Object.fromEntries([...vocab.entries()].filter(([t]) => !specials.some((s) => s.content === t))),
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  return {
    json, vocab, merges, specials, size: vocab.size, byteTable: table,
    bosToken: bos, eosToken: opts.eos, bosId: bos ? idOf(bos) : undefined, eosId: idOf(opts.eos),
  };
}

/** Independent BPE encoder (test oracle): GPT-2 split, byte map, greedy lowest-rank merges. Special tokens are
 * matched literally first. Adds BOS when the fixture's post-processor does. */
export function oracleEncode(tok: TokenizerFixture, text: string, addSpecial = true): number[] {
  const ranks = new Map<string, number>();
  tok.merges.forEach(([a, b], i) => ranks.set(a + '\u0000' + b, i));
  const ids: number[] = [];
  if (addSpecial && tok.bosId !== undefined) ids.push(tok.bosId);
  // split on special tokens
  const specials = tok.specials.map((s) => s.content).sort((a, b) => b.length - a.length);
  let rest = text;
  const pieces: { text: string; special: boolean }[] = [];
  while (rest.length) {
    let at = -1;
    let which = '';
    for (const s of specials) {
      const i = rest.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) { at = i; which = s; }
    }
    if (at < 0) { pieces.push({ text: rest, special: false }); break; }
    if (at > 0) pieces.push({ text: rest.slice(0, at), special: false });
    pieces.push({ text: which, special: true });
    rest = rest.slice(at + which.length);
  }
  for (const p of pieces) {
    if (p.special) { ids.push(tok.vocab.get(p.text)!); continue; }
    for (const m of p.text.matchAll(GPT2_SPLIT)) {
      let syms = Array.from(Buffer.from(m[0], 'utf8')).map((b) => tok.byteTable[b]);
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < syms.length; i++) {
          const r = ranks.get(syms[i] + '\u0000' + syms[i + 1]);
          if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
        }
        if (best < 0) break;
        syms = [...syms.slice(0, best), syms[best] + syms[best + 1], ...syms.slice(best + 2)];
      }
      for (const s of syms) ids.push(tok.vocab.get(s)!);
    }
  }
  return ids;
}

/** Independent decoder (oracle): ids -> bytes -> utf8; special tokens rendered literally unless skipped. */
export function oracleDecode(tok: TokenizerFixture, ids: number[], skipSpecial = true): string {
  const inv = new Map<number, string>();
  for (const [t, id] of tok.vocab) inv.set(id, t);
  const rev = new Map<string, number>();
  tok.byteTable.forEach((c, b) => rev.set(c, b));
  const bytes: number[] = [];
  let out = '';
  const flush = () => { out += Buffer.from(bytes).toString('utf8'); bytes.length = 0; };
  for (const id of ids) {
    const t = inv.get(id);
    if (t === undefined) throw new Error(`id ${id} not in vocab`);
    if (tok.specials.some((s) => s.id === id)) {
      if (!skipSpecial) { flush(); out += t; }
      continue;
    }
    for (const ch of t) bytes.push(rev.get(ch)!);
  }
  flush();
  return out;
}

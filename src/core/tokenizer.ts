/**
 * Tokenizer: HF tokenizer.json through @huggingface/tokenizers, chat templates through
 * @huggingface/jinja, and an incremental detokenizer for streaming.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { UserError, fileError } from './errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

export interface TokenizerSources {
  tokenizerJson: string;
  tokenizerConfig?: string | null;
  chatTemplate?: string | null;
  /** names the origin in errors */
  origin: string;
  bosTokenId?: number | null;
  eosTokenIds?: number[];
}

export class Tokenizer {
  readonly hf: HfTokenizer;
  readonly chatTemplate: string | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  readonly addBos: boolean | null;
  private readonly tokConfig: Record<string, unknown>;
  private readonly origin: string;

  constructor(src: TokenizerSources) {
    this.origin = src.origin;
    let tj: unknown;
    try {
      tj = JSON.parse(src.tokenizerJson);
    } catch (e) {
      throw fileError(src.origin, `tokenizer.json is not valid JSON (${(e as Error).message})`);
    }
    let tc: Record<string, unknown> = {};
    if (src.tokenizerConfig) {
      try {
        tc = JSON.parse(src.tokenizerConfig) as Record<string, unknown>;
      } catch (e) {
        throw fileError(src.origin, `tokenizer_config.json is not valid JSON (${(e as Error).message})`);
      }
    }
    this.tokConfig = tc;
    try {
      this.hf = new HfTokenizer(tj as object, tc);
    } catch (e) {
      throw fileError(src.origin, `cannot build the tokenizer from tokenizer.json (${(e as Error).message.split('\n')[0]})`);
    }
    this.chatTemplate = src.chatTemplate ?? (typeof tc.chat_template === 'string' ? tc.chat_template : null);
    this.bosToken = tokenText(tc.bos_token);
    this.eosToken = tokenText(tc.eos_token);
    const bosFromTok = this.bosToken !== null ? this.hf.token_to_id(this.bosToken) ?? null : null;
    this.bosTokenId = src.bosTokenId ?? bosFromTok;
    const eos = [...(src.eosTokenIds ?? [])];
    if (this.eosToken !== null) {
      const id = this.hf.token_to_id(this.eosToken);
      if (id !== undefined && !eos.includes(id)) eos.push(id);
    }
    this.eosTokenIds = eos;
    this.addBos = typeof tc.add_bos_token === 'boolean' ? tc.add_bos_token : null;
  }

  static fromFolder(folder: string, ids: { bosTokenId?: number | null; eosTokenIds?: number[] } = {}): Tokenizer {
    const tj = path.join(folder, 'tokenizer.json');
    if (!fs.existsSync(tj)) throw fileError(tj, 'no such file');
    const tcp = path.join(folder, 'tokenizer_config.json');
    const tcs = fs.existsSync(tcp) ? fs.readFileSync(tcp, 'utf8') : null;
    const ct = path.join(folder, 'chat_template.jinja');
    return new Tokenizer({
      tokenizerJson: fs.readFileSync(tj, 'utf8'),
      tokenizerConfig: tcs,
      chatTemplate: fs.existsSync(ct) ? fs.readFileSync(ct, 'utf8') : null,
      origin: folder,
      ...ids,
    });
  }

  get vocabSize(): number {
    return this.hf.get_vocab(true).size;
  }

  /**
   * Encode text. With `addSpecialTokens` the tokenizer's post-processor adds BOS etc.; when
   * tokenizer_config.json says add_bos_token but the post-processor did not, BOS is prepended.
   */
  encode(text: string, addSpecialTokens = true): number[] {
    const ids = [...this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids];
    if (addSpecialTokens && this.addBos === true && this.bosTokenId !== null && ids[0] !== this.bosTokenId) ids.unshift(this.bosTokenId);
    return ids;
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.hf.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }

  /** Render the chat template. Throws a UserError when the model has none. */
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
    if (!this.chatTemplate) throw new UserError(`${this.origin}: the model has no chat template (chat_template in tokenizer_config.json or chat_template.jinja); use a plain prompt without --chat`);
    let tpl: Template;
    try {
      tpl = new Template(this.chatTemplate);
    } catch (e) {
      throw fileError(this.origin, `cannot parse the chat template (${(e as Error).message.split('\n')[0]})`);
    }
    const ctx: Record<string, unknown> = {
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      pad_token: tokenText(this.tokConfig.pad_token) ?? '',
      unk_token: tokenText(this.tokConfig.unk_token) ?? '',
    };
    try {
      return tpl.render(ctx);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw fileError(this.origin, `chat template failed (${(e as Error).message.split('\n')[0]})`);
    }
  }

  /** Token ids of a chat conversation: the template already holds BOS when the model wants it. */
  encodeChat(messages: ChatMessage[]): number[] {
    return this.encode(this.applyChatTemplate(messages, true), false);
  }

  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }
}

/**
 * Incremental detokenisation: text is emitted only once it is final, never a partial UTF-8
 * sequence (U+FFFD at the end) and with the spacing a whole-sequence decode gives.
 */
export class StreamDecoder {
  private ids: number[] = [];
  private prefix = 0;
  private read = 0;
  constructor(private readonly tok: Tokenizer) {}

  /** Push one token; returns the new text that became final (possibly ''). */
  push(id: number): string {
    this.ids.push(id);
    const prefixText = this.tok.decode(this.ids.slice(this.prefix, this.read));
    const fullText = this.tok.decode(this.ids.slice(this.prefix));
    if (fullText.length > prefixText.length && !fullText.endsWith('\uFFFD') && fullText.startsWith(prefixText)) {
      const delta = fullText.slice(prefixText.length);
      this.prefix = this.read;
      this.read = this.ids.length;
      return delta;
    }
    return '';
  }

  /** Whatever is still held back (at the end of generation). */
  flush(): string {
    const prefixText = this.tok.decode(this.ids.slice(this.prefix, this.read));
    const fullText = this.tok.decode(this.ids.slice(this.prefix));
    this.prefix = this.read = this.ids.length;
    return fullText.startsWith(prefixText) ? fullText.slice(prefixText.length) : '';
  }
}

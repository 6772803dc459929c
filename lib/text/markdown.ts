/**
 * Markdown → readable plain text for WeChat, which shows text verbatim (docs/wechat.md): headings
 * and emphasis lose their markers, lists get bullets or numbers, task lists boxes, links become
 * "text (url)", images their URL, tables one "a | b" line per row, and code stays verbatim.
 *
 * Parsing is markdown-it's (CommonJS, loads on laf; its parser is linear on hostile input where
 * hand-written regexes were not: bench/markdown.ts). Raw HTML is not interpreted, only `<br>`
 * becomes a line break; entities are left as written, since the text is not HTML.
 */
import MarkdownIt from 'markdown-it';
import type { Options as MarkdownItOptions } from 'markdown-it';

type Token = ReturnType<MarkdownIt['parse']>[number];

/**
 * How deep markdown-it follows nesting. Inline, its worst-case cost grows with the limit (every `[`
 * or `![` may scan that deep), and deeper inline markup just stays literal text. In blocks, markdown-it
 * skips the rest of the document past the limit, so it is generous there, and input that reaches it
 * is returned as written (nothing lost).
 */
export const BLOCK_NESTING = 20;
export const INLINE_NESTING = 6;

// `maxNesting` is a real option that @types/markdown-it leaves out.
type Options = MarkdownItOptions & { maxNesting: number };
const options: Options = { html: false, linkify: false, typographer: false, maxNesting: BLOCK_NESTING };
const md = new MarkdownIt('default', options);
// Rules the plain-text output has no use for cost time on hostile input.
md.disable(['entity', 'html_inline', 'html_block']);
// markdown-it reads maxNesting as it runs: one limit for the block pass, another for the inline pass.
md.core.ruler.before('block', 'block_nesting', (state) => {
  (state.md.options as Options).maxNesting = BLOCK_NESTING;
});
md.core.ruler.before('inline', 'inline_nesting', (state) => {
  (state.md.options as Options).maxNesting = INLINE_NESTING;
});

const BR = /<br\s*\/?>/gi;

/** `2*3*4`, `a*b*c`: single stars between ASCII letters or digits are arithmetic, not emphasis.
 * (Between CJK characters, `这是**重点**内容`, emphasis is what the writer meant.) */
const ARITHMETIC = /[A-Za-z0-9]/;

const textOf = (t: Token): string => (t.content.includes('<') ? t.content.replace(BR, '\n') : t.content);

function inline(children: readonly Token[] | null): string {
  // Most paragraphs are one run of text: no bookkeeping for those.
  if (children && children.length === 1 && (children[0] as Token).type === 'text') return textOf(children[0] as Token);
  // Parts, so that filling a slot opened earlier costs nothing (the text may be long).
  const parts: string[] = [];
  // Open links: the part their text starts at, and their target.
  const links: { at: number; href: string }[] = [];
  // Open emphasis: a slot for its marker, filled back in for arithmetic (see ARITHMETIC).
  const marks: { slot: number; before: string }[] = [];
  const list = children ?? [];
  let last = ''; // the last character written so far
  const push = (text: string) => {
    if (!text) return;
    parts.push(text);
    last = text[text.length - 1] as string;
  };
  for (let i = 0; i < list.length; i++) {
    const t = list[i] as Token;
    switch (t.type) {
      case 'em_open':
      case 'strong_open':
        marks.push({ slot: parts.length, before: last });
        parts.push('');
        break;
      case 'em_close':
      case 'strong_close': {
        const mark = marks.pop();
        if (mark === undefined) break;
        const next = list[i + 1];
        const after = next?.type === 'text' ? (next.content[0] ?? '') : '';
        if (t.markup === '*' && ARITHMETIC.test(mark.before) && ARITHMETIC.test(after)) {
          parts[mark.slot] = t.markup;
          push(t.markup);
        }
        break;
      }
      case 'text':
        push(textOf(t));
        break;
      case 'code_inline':
        push(t.content);
        break;
      case 'softbreak':
      case 'hardbreak':
        push('\n');
        break;
      case 'image':
        push(t.attrGet('src') ?? '');
        break;
      case 'link_open':
        links.push({ at: parts.length, href: t.attrGet('href') ?? '' });
        break;
      case 'link_close': {
        const link = links.pop();
        if (!link) break;
        const text = parts.slice(link.at).join('').trim();
        if (link.href && text !== link.href && link.href !== `mailto:${text}`) push(text ? ` (${link.href})` : link.href);
        break;
      }
      default:
        break;
    }
  }
  return parts.join('');
}

const TASK = /^\[([ xX])\]\s+/;

/** Characters markdown-it may treat as markup. */
const MARKUP = new Set([...'[]()*_`~#|>!<&\\'].map((c) => c.charCodeAt(0)));

/**
 * Is this long text made mostly of markup, or of lines a few characters long? markdown-it's cost is
 * per delimiter and per block, so such text is its most expensive, and no answer meant as Markdown
 * looks like it: even dense Markdown (short paragraphs, lists, tables, code) has under a quarter
 * markup characters and non-blank lines averaging well over 12 characters. It is shown as written instead, which bounds
 * the work on hostile text (bench/markdown.ts).
 */
export function degenerate(text: string): boolean {
  if (text.length < 16_384) return false;
  let markup = 0;
  let lines = 0;
  let inLine = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      inLine = false;
    } else {
      if (!inLine && c !== 32 && c !== 13) {
        inLine = true;
        lines++;
      }
      if (MARKUP.has(c)) markup++;
    }
  }
  return markup > text.length * 0.4 || lines * 12 > text.length;
}

/** The text itself, line endings normalised: for input that is not worth, or not safe, to convert. */
const asWritten = (markdown: string): string => markdown.replace(/\r\n?/g, '\n').trim();

export function markdownToText(markdown: string): string {
  if (degenerate(markdown)) return asWritten(markdown);
  const tokens = md.parse(markdown, {});
  // A block at the nesting limit means markdown-it dropped what lay below it: lose nothing.
  if (tokens.some((t) => t.block && t.level >= BLOCK_NESTING - 1)) return asWritten(markdown);
  const out: string[] = [];
  const lists: { ordered: boolean; next: number }[] = [];
  // Inside a list item: the prefix of its first line, consumed once, then its continuation indent.
  let item: { first: string | undefined; indent: string } | undefined;
  const items: (typeof item)[] = [];
  let row: string[] | undefined;
  let table: Token | undefined;
  // Blank lines follow the source: a block that started after a gap gets one blank line before it.
  let lastLine = 0;
  const startBlock = (t: Token) => {
    if (!t.map) return;
    if (t.map[0] > lastLine && out.length > 0 && out[out.length - 1] !== '') out.push('');
    lastLine = t.map[1];
  };
  const line = (text: string) => {
    if (!item) {
      out.push(text);
      return;
    }
    const prefix = item.first ?? item.indent;
    item.first = undefined;
    const m = prefix.endsWith('• ') ? TASK.exec(text) : null;
    const lead = m ? prefix.slice(0, -2) + (m[1] === ' ' ? '☐ ' : '☑ ') : prefix;
    out.push(lead + (m ? text.slice(m[0].length) : text).split('\n').join('\n' + item.indent));
  };
  for (const t of tokens) {
    switch (t.type) {
      case 'inline':
        if (row) {
          row.push(inline(t.children).replace(/\n/g, ' ').trim());
        } else {
          startBlock(t);
          line(inline(t.children));
        }
        break;
      case 'fence':
      case 'code_block':
        startBlock(t);
        line(t.content.replace(/\n$/, ''));
        break;
      case 'hr':
        startBlock(t);
        if (out.length > 0 && out[out.length - 1] !== '') out.push('');
        break;
      case 'bullet_list_open':
      case 'ordered_list_open':
        lists.push({ ordered: t.type === 'ordered_list_open', next: Number(t.attrGet('start') ?? 1) });
        break;
      case 'bullet_list_close':
      case 'ordered_list_close':
        lists.pop();
        break;
      case 'list_item_open': {
        const list = lists[lists.length - 1];
        const depth = '  '.repeat(Math.max(0, lists.length - 1));
        const marker = list?.ordered ? `${list.next++}. ` : '• ';
        items.push(item);
        item = { first: depth + marker, indent: depth + ' '.repeat(marker.length) };
        break;
      }
      case 'list_item_close':
        // An empty item still shows its bullet.
        if (item?.first !== undefined) out.push(item.first.trimEnd());
        item = items.pop();
        break;
      case 'table_open':
        startBlock(t);
        table = t;
        break;
      case 'table_close':
        if (table?.map) lastLine = table.map[1];
        table = undefined;
        break;
      case 'tr_open':
        row = [];
        break;
      case 'tr_close':
        if (row) line(row.join(' | '));
        row = undefined;
        break;
      default:
        break;
    }
  }
  return out
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** The pictures a Markdown answer shows (`![alt](url)`), http(s) only, in order, once each, at most `max`. */
export function imagesIn(markdown: string, max = 20): { url: string; alt: string }[] {
  if (!markdown.includes('![') || degenerate(markdown)) return [];
  const found: { url: string; alt: string }[] = [];
  for (const t of md.parse(markdown, {})) {
    for (const c of t.children ?? []) {
      if (c.type !== 'image') continue;
      const url = (c.attrGet('src') ?? '').trim();
      if (!/^https?:\/\//i.test(url) || found.some((f) => f.url === url)) continue;
      found.push({ url, alt: c.content });
      if (found.length >= max) return found;
    }
  }
  return found;
}

/**
 * `markdown` with each picture at one of `urls` (a part of the answer, delivered as a picture or
 * linked to) written as `[alt]` instead, so the text does not repeat the URL.
 */
export function withoutImages(markdown: string, urls: readonly string[]): string {
  let out = markdown;
  for (const url of urls) {
    const escaped = url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    out = out.replace(new RegExp(`!\\[([^\\]\\n]{0,200})\\]\\(\\s*<?${escaped}>?(?:\\s+"[^"\\n]{0,200}")?\\s*\\)`, 'g'), (_m, alt: string) => `[${alt || '图片'}]`);
  }
  return out;
}

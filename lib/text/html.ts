/**
 * Markdown → safe HTML for the answer page (docs/answer-page.md). The answer is untrusted text:
 * raw HTML is not interpreted (it shows as text), links keep only http(s) and mailto targets and
 * get rel="noopener noreferrer", images become links (the page loads nothing from elsewhere), and
 * tables and code scroll inside their own box. The same limits as the plain-text conversion apply
 * (lib/text/markdown.ts): hostile or too-deep input is shown as written, escaped.
 */
import MarkdownIt from 'markdown-it';
import type { Options as MarkdownItOptions } from 'markdown-it';
import { BLOCK_NESTING, INLINE_NESTING, degenerate } from './markdown';

type Options = MarkdownItOptions & { maxNesting: number };
const md = new MarkdownIt('default', { html: false, linkify: false, typographer: false, maxNesting: BLOCK_NESTING } as Options);
md.core.ruler.before('block', 'block_nesting', (state) => {
  (state.md.options as Options).maxNesting = BLOCK_NESTING;
});
md.core.ruler.before('inline', 'inline_nesting', (state) => {
  (state.md.options as Options).maxNesting = INLINE_NESTING;
});

const SAFE_TARGET = /^(https?:\/\/|mailto:)/i;
// markdown-it's own check drops javascript:, vbscript:, file: and most data: URLs; ours is stricter:
// only targets that leave for a web page or a mail app.
md.validateLink = (url: string) => SAFE_TARGET.test(url.trim());

const rules = md.renderer.rules;
rules.link_open = (tokens, idx, options, _env, self) => {
  const t = tokens[idx];
  if (t) {
    t.attrSet('rel', 'noopener noreferrer nofollow');
    t.attrSet('target', '_blank');
  }
  return self.renderToken(tokens, idx, options);
};
// An image would be a request to a host the answer chose: show it as a link to follow instead,
// unless it is one of the answer's parts, which the page serves itself (`env.imageSrc`: our path).
rules.image = (tokens, idx, _options, env: HtmlEnv | undefined) => {
  const t = tokens[idx];
  const src = t?.attrGet('src') ?? '';
  const alt = md.utils.escapeHtml(t?.content || '图片');
  const ours = env?.imageSrc?.(src.trim());
  if (ours !== undefined) return `<img src="${md.utils.escapeHtml(ours)}" alt="${alt}" loading="lazy">`;
  if (!SAFE_TARGET.test(src)) return `<span class="img">[${alt}]</span>`;
  return `<a class="img" href="${md.utils.escapeHtml(src)}" rel="noopener noreferrer nofollow" target="_blank">[${alt}]</a>`;
};
// Column alignment as a class: markdown-it writes a style attribute, which the pages' CSP (no inline
// style) refuses, so aligned numbers would lose their alignment.
const cell: NonNullable<typeof rules.th_open> = (tokens, idx, options, _env, self) => {
  const t = tokens[idx];
  const align = /text-align:(left|center|right)/.exec(t?.attrGet('style') ?? '')?.[1];
  if (t?.attrs) t.attrs = t.attrs.filter(([name]) => name !== 'style');
  if (t && align) t.attrJoin('class', `align-${align}`);
  return self.renderToken(tokens, idx, options);
};
rules.th_open = cell;
rules.td_open = cell;
rules.table_open = () => '<div class="table"><table>\n';
rules.table_close = () => '</table></div>\n';

export const escapeHtml = (s: string): string => md.utils.escapeHtml(s);

/** The answer as written, escaped, line breaks kept (for text not worth or not safe to parse). */
const asWritten = (text: string): string => `<pre class="plain">${escapeHtml(text.replace(/\r\n?/g, '\n').trim())}</pre>`;

/** How a page renders an answer: `imageSrc` gives the path of a picture it serves itself (the answer's parts). */
export interface HtmlEnv {
  imageSrc?: (url: string) => string | undefined;
}

export function markdownToHtml(markdown: string, env: HtmlEnv = {}): string {
  if (degenerate(markdown)) return asWritten(markdown);
  const tokens = md.parse(markdown, {});
  if (tokens.some((t) => t.block && t.level >= BLOCK_NESTING - 1)) return asWritten(markdown);
  return md.renderer.render(tokens, md.options, env);
}

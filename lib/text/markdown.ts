/**
 * Markdown → readable plain text for WeChat, which shows text verbatim (pitfalls.md #9):
 * headings, emphasis and code fences lose their markers, lists get bullets, links become
 * "text (url)" and images their URL. Line-based and pure.
 */

const ESCAPABLE = '\\`*_{}[]()#+-.!|>~';
// Backslash-escaped characters are parked in the Private Use Area while markers are removed.
const park = (line: string) => line.replace(/\\([\\`*_{}[\]()#+\-.!|>~])/g, (_m, c: string) => String.fromCharCode(0xe000 + ESCAPABLE.indexOf(c)));
const unpark = (text: string) => text.replace(/[\uE000-\uE01F]/g, (c) => ESCAPABLE[c.charCodeAt(0) - 0xe000] ?? c);

function inline(raw: string): string {
  const line = park(raw);
  return unpark(
    line
      // images first: ![alt](url "title") → url
      .replace(/!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g, '$1')
      // links: [text](url "title") → text (url); a bare URL as its own text stays single
      .replace(/\[([^\]]+)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g, (_m, text: string, url: string) =>
        text.trim() === url ? url : `${text} (${url})`,
      )
      // autolinks <https://…>
      .replace(/<((?:https?|mailto):[^>\s]+)>/g, '$1')
      // inline code `x` (also ``x``)
      .replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_m, _ticks: string, code: string) => code.trim())
      // bold / strikethrough / italic markers
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '$1')
      .replace(/__(?=\S)([\s\S]*?\S)__/g, '$1')
      .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '$1')
      .replace(/(^|[^\w*])\*(?=\S)([^*]*?\S)\*(?!\w)/g, '$1$2')
      .replace(/(^|[^\w])_(?=\S)([^_]*?\S)_(?!\w)/g, '$1$2')
      // line breaks written as HTML
      .replace(/<br\s*\/?>/gi, '\n'),
  );
}

export function markdownToText(markdown: string): string {
  const lines = markdown.replace(/\r\n?/g, '\n').split('\n');
  const out: string[] = [];
  let fence: string | undefined;
  for (const line of lines) {
    const fenceMatch = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence !== undefined) {
      if (fenceMatch && fenceMatch[1]?.[0] === fence[0] && (fenceMatch[1]?.length ?? 0) >= fence.length) fence = undefined;
      else out.push(line);
      continue;
    }
    if (fenceMatch) {
      fence = fenceMatch[1];
      continue;
    }
    let m: RegExpExecArray | null;
    if ((m = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line))) {
      out.push(inline(m[1] ?? ''));
    } else if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.push('');
    } else if (/^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/.test(line) && line.includes('-') && line.includes('|')) {
      // table separator row: drop
    } else if ((m = /^(\s*)[-*+]\s+(?:\[([ xX])\]\s+)?(.*)$/.exec(line))) {
      const box = m[2] === undefined ? '• ' : m[2] === ' ' ? '☐ ' : '☑ ';
      out.push(`${m[1] ?? ''}${box}${inline(m[3] ?? '')}`);
    } else if ((m = /^\s{0,3}>\s?(.*)$/.exec(line))) {
      out.push(inline(m[1] ?? ''));
    } else if (/^\s*\|.*\|\s*$/.test(line)) {
      out.push(inline(line.trim().replace(/^\|\s*|\s*\|$/g, '').replace(/\s*\|\s*/g, ' | ')));
    } else {
      out.push(inline(line));
    }
  }
  return out
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

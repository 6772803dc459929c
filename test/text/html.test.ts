/** Markdown → HTML for the answer page, on real and hostile answers. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { markdownToHtml } from '../../lib/text/html';

/** Every tag the rendering may produce; anything else would have come from the answer. */
const ALLOWED = new Set(['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'p', 'em', 'strong', 's', 'a', 'code', 'pre', 'ul', 'ol', 'li', 'blockquote', 'hr', 'br', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'div', 'span']);

function tags(html: string): string[] {
  return [...html.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => (m[1] as string).toLowerCase());
}
function attributes(html: string): string[] {
  return [...html.matchAll(/<[a-zA-Z][^>]*>/g)].flatMap((m) => [...m[0].matchAll(/\s([a-zA-Z-]+)=/g)].map((a) => (a[1] as string).toLowerCase()));
}

describe('markdownToHtml', () => {
  it('renders headings, emphasis, lists, tables, code and links', () => {
    const html = markdownToHtml('# 标题\n\n**粗体** 和 *斜体*\n\n- 一\n- 二\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```js\nlet x = 1 < 2;\n```\n\n[链接](https://example.com)');
    expect(html).toContain('<h1>标题</h1>');
    expect(html).toContain('<strong>粗体</strong>');
    expect(html).toContain('<li>一</li>');
    expect(html).toContain('<div class="table"><table>');
    expect(html).toContain('let x = 1 &lt; 2;');
    expect(html).toContain('<a href="https://example.com" rel="noopener noreferrer nofollow" target="_blank">链接</a>');
  });

  it('shows raw HTML as text and keeps only http(s) and mailto targets', () => {
    const html = markdownToHtml(
      '<script>alert(1)</script>\n\n<img src=x onerror=alert(1)> <a href="javascript:alert(1)">x</a>\n\n' +
        '[a](javascript:alert(1)) [b](JAVASCRIPT:alert(1)) [c](data:text/html;base64,PHNjcmlwdD4=) [d](vbscript:x) [e](//evil.example) [f](mailto:a@b.c)\n\n' +
        '![img](https://evil.example/p.gif) ![img2](javascript:alert(1))\n\n[g](https://ok.example/"onmouseover="alert(1))',
    );
    expect(tags(html).every((t) => ALLOWED.has(t))).toBe(true);
    expect(attributes(html).every((a) => ['href', 'rel', 'target', 'class'].includes(a))).toBe(true);
    for (const m of html.matchAll(/href="([^"]*)"/g)) expect(m[1]).toMatch(/^(https?:\/\/|mailto:)/);
    expect(html).toContain('&lt;script&gt;');
    expect(html).not.toMatch(/<img|<script|<iframe/i);
    expect(html).toContain('<a class="img" href="https://evil.example/p.gif"');
  });

  it('produces only its own tags and attributes for any input (property)', () => {
    const pieces = ['<', '>', '"', "'", '`', '[', ']', '(', ')', '!', '*', '_', '#', '|', '-', '\n', ' ', 'javascript:', 'on', '=', 'a', 'script', 'img', 'src', 'http://x', '&', '#x3c;', '\\'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 200 }), (parts) => {
        const html = markdownToHtml(parts.join(''));
        return tags(html).every((t) => ALLOWED.has(t)) && attributes(html).every((a) => ['href', 'rel', 'target', 'class'].includes(a)) && [...html.matchAll(/href="([^"]*)"/g)].every((m) => /^(https?:\/\/|mailto:)/.test(m[1] as string));
      }),
      { numRuns: 500 },
    );
  });

  it('aligns table columns with classes, never a style attribute (the pages’ CSP refuses inline style)', () => {
    const html = markdownToHtml('| 城市 | 人口 | 备注 |\n|:--|--:|:-:|\n| 北京 | 2189 | 首都 |');
    expect(html).not.toContain('style=');
    expect(html).toContain('<th class="align-right">人口</th>');
    expect(html).toContain('<td class="align-center">首都</td>');
    expect(html).toContain('<td class="align-left">北京</td>');
  });

  it('shows text too deep or too degenerate to parse as written, escaped', () => {
    const deep = '>'.repeat(40) + ' <b>deep</b>';
    expect(markdownToHtml(deep)).toBe(`<pre class="plain">${deep.replace(/</g, '&lt;').replace(/>/g, '&gt;')}</pre>`);
    const flood = '[a]('.repeat(20_000);
    expect(markdownToHtml(flood).startsWith('<pre class="plain">')).toBe(true);
  });
});

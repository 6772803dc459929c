/**
 * Half-written Markdown renders as what it is becoming (lib/web/render/partial.ts), through the same
 * renderer as the final answer (lib/text/html.ts), and never changes text that is complete.
 */
import { describe, expect, it } from 'vitest';
import { markdownToHtml } from '../../../lib/text/html';
import { liveMarkdown } from '../../../lib/web/render/partial';

const live = (t: string) => markdownToHtml(liveMarkdown(t));

describe('live Markdown', () => {
  it('a table header without its delimiter row yet renders as a table', () => {
    expect(live('城市对比：\n\n| 城市 | 人口 |')).toContain('<th>城市</th>');
    expect(live('| 城市 | 人口 |\n|--')).toContain('<th>人口</th>');
    expect(live('| 城市 | 人口 |\n|---|:-')).toContain('<table>');
    // Without the help it would be a paragraph of pipes.
    expect(markdownToHtml('| 城市 | 人口 |')).not.toContain('<table>');
  });

  it('a row being written joins its table; a lone pipe starting a row breaks nothing', () => {
    const table = '| a | b |\n|---|---|\n| 1 | 2 |\n| 3';
    expect(liveMarkdown(table)).toBe(table);
    expect(live(table)).toContain('<td>3</td>');
    expect(liveMarkdown('| a | b |\n|---|---|\n| 1 | 2 |\n|')).toBe('| a | b |\n|---|---|\n| 1 | 2 |\n|');
  });

  it('an open code fence stays code to the end, markup inside it untouched', () => {
    const t = '看代码：\n\n```python\nprint("**x")\n| a | b |';
    expect(liveMarkdown(t)).toBe(t);
    expect(live(t)).toContain('<pre><code class="language-python">');
    expect(live(t)).not.toContain('<table>');
  });

  it('closes an unclosed ** and inline code span on the last line only', () => {
    expect(live('这是**重要')).toContain('<strong>重要</strong>');
    expect(live('运行 `npm te')).toContain('<code>npm te</code>');
    expect(liveMarkdown('一行 **粗体**\n下一行')).toBe('一行 **粗体**\n下一行');
    expect(liveMarkdown('结尾是**')).toBe('结尾是**');
  });

  it('leaves complete text as it is', () => {
    for (const t of ['', '# 标题\n\n段落。', '| a | b |\n|---|---|\n| 1 | 2 |', '```\ncode\n```', '1. 一\n2. 二', 'a | b']) expect(liveMarkdown(t)).toBe(t);
  });

  it('stays safe: whatever it adds, the renderer’s rules still apply', () => {
    const html = live('[x](javascript:alert(1)) <script>alert(1)</script>\n\n| <img src=x onerror=alert(1)> | b |');
    expect(html).not.toMatch(/<script|<img|href="javascript/i);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });
});

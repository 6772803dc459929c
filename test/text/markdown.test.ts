import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { markdownToText } from '../../lib/text/markdown';

describe('markdownToText', () => {
  it.each([
    ['# 标题\n## Sub *title*', '标题\nSub title'],
    ['**粗体** and __bold__, *斜体* and _italic_, ~~删除~~', '粗体 and bold, 斜体 and italic, 删除'],
    ['snake_case_name and 2*3*4 stay', 'snake_case_name and 2*3*4 stay'],
    ['这是**重点**内容，a*b*c 与 x * y', '这是重点内容，a*b*c 与 x * y'],
    ['see [Dify](https://dify.ai) now', 'see Dify (https://dify.ai) now'],
    ['[https://a.b](https://a.b)', 'https://a.b'],
    ['![a cat](https://x.y/cat.png "Cat")', 'https://x.y/cat.png'],
    ['<https://auto.link>', 'https://auto.link'],
    ['use `npm test` please', 'use npm test please'],
    ['- one\n* two\n+ three\n  - nested', '• one\n• two\n• three\n  • nested'],
    ['- [ ] todo\n- [x] done', '☐ todo\n☑ done'],
    ['1. first\n2. second', '1. first\n2. second'],
    ['> quoted **text**', 'quoted text'],
    ['before\n\n---\n\nafter', 'before\n\nafter'],
    ['| a | b |\n|---|:-:|\n| 1 | 2 |', 'a | b\n1 | 2'],
    ['line<br>break', 'line\nbreak'],
    ['\\*not italic\\* \\~ \\>', '*not italic* ~ >'],
    ['a\n\n\n\n\nb', 'a\n\nb'],
  ])('%j → %j', (md, text) => {
    expect(markdownToText(md)).toBe(text);
  });

  it('keeps code blocks verbatim, without the fences', () => {
    const md = 'Run:\n```bash\nnpm i **not bold** [x](y)\n  indented\n```\nDone';
    expect(markdownToText(md)).toBe('Run:\nnpm i **not bold** [x](y)\n  indented\nDone');
  });

  it('leaves plain text alone', () => {
    const text = '你好！这是一段普通的文字，没有任何格式。\n第二行。';
    expect(markdownToText(text)).toBe(text);
  });

  it.each([
    ['3. three\n4. four', '3. three\n4. four'],
    ['- a\n\n  continued\n- b', '• a\n\n  continued\n• b'],
    ['| `a+b` | [x](http://y) |\n|---|---|\n| **1** | 2 |', 'a+b | x (http://y)\n1 | 2'],
    ['[text](http://a.b "title") and [http://c.d](http://c.d)', 'text (http://a.b) and http://c.d'],
    ['heading\n===\n\npara', 'heading\n\npara'],
    ['<script>alert(1)</script> & &amp;', '<script>alert(1)</script> & &amp;'],
    ['    indented code\n\nafter', 'indented code\n\nafter'],
  ])('%j → %j', (md, text) => {
    expect(markdownToText(md)).toBe(text);
  });

  it('shows long text made mostly of markup or of tiny lines as written (the costliest input for the parser)', () => {
    for (const unit of ['中*', '>&\n\n', '__*\n', '\n\n- ]']) {
      const junk = unit.repeat(20_000 / unit.length);
      expect(markdownToText(junk)).toBe(junk.trim());
    }
    // A long real answer is still converted.
    const real = Array.from({ length: 200 }, (_, i) => `## 第 ${i} 节\n\n这是**重点**内容，见 [文档](https://a.b/${i})。\n\n- 要点\n\n\`\`\`js\nconst x = a[i] * (b + c);\n\`\`\``).join('\n\n');
    expect(real.length).toBeGreaterThan(16_384);
    const out = markdownToText(real);
    expect(out).not.toMatch(/\*\*|^##|```/m);
    expect(out).toContain('这是重点内容，见 文档 (https://a.b/7)。');
  });

  it('returns deeply nested input as written rather than lose what is below the nesting limit', () => {
    const deep = Array.from({ length: 15 }, (_, i) => '  '.repeat(i) + `- level ${i}`).join('\n') + '\n\nthe end';
    const out = markdownToText(deep);
    for (let i = 0; i < 15; i++) expect(out).toContain(`level ${i}`);
    expect(out).toContain('the end');
  });

  it('never throws and never loses a letter or digit, whatever the input (property)', () => {
    const piece = fc.constantFrom('[', ']', '(', ')', '!', '*', '_', '`', '~', '<', '>', '#', '|', '-', '\\', '\n', ' ', 'a', '中', '1', 'http://x.y');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 300 }), (parts) => {
        const md = parts.join('');
        const out = markdownToText(md);
        const letters = (t: string) => t.replace(/https?:\/\/x\.y/g, '').replace(/[^a-z0-9中]/g, '').length;
        // A code fence's info string (```js) is its language tag, not text: it is meant to go.
        const infoStrings = (t: string) => t.replace(/(`{3,}|~{3,})[^\n]*/g, '$1');
        // Links repeat their URL, so the output never has fewer letters than the input.
        expect(letters(out)).toBeGreaterThanOrEqual(letters(infoStrings(md)));
      }),
      { numRuns: Number(process.env['PROPERTY_RUNS'] ?? 300) },
    );
  });
});

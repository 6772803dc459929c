import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TEXTS } from '../../lib/core/texts';
import { byteLength, paginate } from '../../lib/text/paging';

const HINT = DEFAULT_TEXTS.pageHint;
/** Strip the hints and join: must give back the text (modulo whitespace at cuts). */
const unhint = (pages: string[]) => pages.map((p, i) => (i < pages.length - 1 ? p.replace(/\n\n\(\d+\/\d+\) 回复 1 查看后续$/, '') : p));
const squash = (s: string) => s.replace(/\s+/g, '');

describe('paginate', () => {
  it('returns a short answer as one page without a hint', () => {
    expect(paginate('short answer', 2000, HINT)).toEqual(['short answer']);
  });

  it('keeps every page within the byte limit, hints included, and numbers them', () => {
    const text = Array.from({ length: 60 }, (_, i) => `第${i + 1}段。这是一段用来测试分页的中文内容，包含标点符号和 English words.`).join('\n\n');
    const pages = paginate(text, 600, HINT);
    expect(pages.length).toBeGreaterThan(3);
    for (const [i, p] of pages.entries()) {
      expect(byteLength(p)).toBeLessThanOrEqual(600);
      if (i < pages.length - 1) expect(p.endsWith(`(${i + 1}/${pages.length}) 回复 1 查看后续`)).toBe(true);
    }
    expect(squash(unhint(pages).join(''))).toBe(squash(text));
  });

  it('cuts at paragraph boundaries when it can', () => {
    const para = 'x'.repeat(150);
    const pages = paginate([para, para, para, para].join('\n\n'), 400, HINT);
    for (const p of unhint(pages)) expect(p.replace(/\n\n/g, '').length % 150).toBe(0);
  });

  it('does not leave a heading orphaned at the end of a page', () => {
    const text = Array.from({ length: 6 }, (_, i) => `第 ${i + 1} 点\n\n${'正文内容。'.repeat(40)}`).join('\n\n');
    for (const p of unhint(paginate(text, 800, HINT)).slice(0, -1)) expect(p).not.toMatch(/第 \d 点$/);
  });

  it('cuts at a sentence end inside a long paragraph', () => {
    const text = '这是第一句话。'.repeat(200);
    for (const p of unhint(paginate(text, 500, HINT)).slice(0, -1)) expect(p.endsWith('。')).toBe(true);
  });

  it('never splits a character: 4-byte emoji and 3-byte CJK without any boundary', () => {
    const text = '😀'.repeat(700) + '汉'.repeat(700);
    const pages = paginate(text, 301, HINT);
    for (const p of pages) {
      expect(p).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
      expect(byteLength(p)).toBeLessThanOrEqual(301);
    }
    expect(unhint(pages).join('')).toBe(text);
  });

  it('holds for any text (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 3000 }), fc.integer({ min: 120, max: 2048 }), (text, max) => {
        const pages = paginate(text, max, HINT);
        for (const p of pages) expect(byteLength(p)).toBeLessThanOrEqual(max);
        expect(squash(unhint(pages).join(''))).toBe(squash(text));
      }),
      { numRuns: 200 },
    );
  });

  const clusters = (s: string) => [...new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(s)].map((x) => x.segment);

  it.each([
    ['flags', '🇨🇳'],
    ['ZWJ families', '👨‍👩‍👧‍👦'],
    ['skin-tone emoji', '👋🏽'],
    ['combining marks', 'e\u0301'],
    ['keycaps', '1\uFE0F\u20E3'],
  ])('never cuts %s in half, with or without spaces between them', (_name, g) => {
    for (const text of [g.repeat(400), `${g} `.repeat(300), `句子。${g}`.repeat(150)]) {
      const whole = new Set(clusters(text));
      for (const max of [200, 301, 777]) {
        const pages = paginate(text, max, HINT);
        for (const p of pages) {
          expect(byteLength(p)).toBeLessThanOrEqual(max);
          for (const c of clusters(unhint([p, ''])[0] as string)) if (!/^\s+$/.test(c)) expect(whole.has(c)).toBe(true);
        }
        expect(squash(unhint(pages).join(''))).toBe(squash(text));
      }
    }
  });

  it('cuts a single cluster bigger than a page between its code points, never over the limit', () => {
    const monster = 'a' + '\u0301'.repeat(3000);
    const pages = paginate(monster, 300, HINT);
    for (const p of pages) expect(byteLength(p)).toBeLessThanOrEqual(300);
    expect(unhint(pages).join('')).toBe(monster);
  });

  it('leaves the reserve free on every page', () => {
    const text = '这是一段测试。'.repeat(500);
    const pages = paginate(text, 1800, HINT, 300);
    expect(pages.length).toBeGreaterThan(1);
    for (const p of pages) expect(byteLength(p)).toBeLessThanOrEqual(1500);
    expect(paginate('短', 1800, HINT, 300)).toEqual(['短']);
  });

  it('keeps clusters whole for any text with emoji sequences (property)', () => {
    const cluster = fc.constantFrom('🇨🇳', '🇯🇵', '👨‍👩‍👧‍👦', '👩🏽‍💻', 'é', '汉', 'a', ' ', '\n', '。');
    fc.assert(
      fc.property(fc.array(cluster, { maxLength: 800 }), fc.integer({ min: 120, max: 2048 }), (parts, max) => {
        const text = parts.join('');
        const pages = paginate(text, max, HINT);
        const whole = new Set(clusters(text));
        for (const p of pages) {
          expect(byteLength(p)).toBeLessThanOrEqual(max);
          for (const c of clusters(unhint([p, ''])[0] as string)) if (!/^\s+$/.test(c)) expect(whole.has(c)).toBe(true);
        }
      }),
      { numRuns: 150 },
    );
  });
});

/**
 * Blocked words (lib/text/filter.ts): case-, width- and spacing-insensitive, every occurrence
 * found whatever the overlap, streaming scans equal whole scans, thousands of words on long texts.
 */
import { describe, expect, it } from 'vitest';
import { createWordFilter } from '../../lib/text/filter';

/** The obvious quadratic check, for comparison: normalise both, then indexOf for each word. */
function naive(words: string[], text: string): boolean {
  const norm = (s: string) => s.normalize('NFKC').toLowerCase().replace(/[\s\u200b-\u200d\u2060\ufeff]/gu, '');
  const t = norm(text);
  return words.some((w) => norm(w) !== '' && t.includes(norm(w)));
}

describe('the word filter', () => {
  it('ignores case, full width and spacing, and reports the word as configured', () => {
    const f = createWordFilter(['赌博', 'Bad Word', 'ＸＹＺ']);
    expect(f.find('这里有赌 博网站')).toBe('赌博');
    expect(f.find('a BADWORD here')).toBe('Bad Word');
    expect(f.find('ｂａｄ\u200bｗｏｒｄ')).toBe('Bad Word');
    expect(f.find('xyz')).toBe('ＸＹＺ');
    expect(f.find('赌场和博物馆')).toBeUndefined();
    expect(f.find('')).toBeUndefined();
  });

  it('finds overlapping and nested words (the fail links work)', () => {
    const f = createWordFilter(['abcd', 'bc', 'aab']);
    expect(f.find('xabcx')).toBe('bc');
    expect(f.find('aaab')).toBe('aab');
    expect(createWordFilter(['he', 'she', 'his', 'hers']).find('ushers')).toBe('she');
    expect(createWordFilter(['aaaab']).find('a'.repeat(10_000) + 'b')).toBe('aaaab');
    expect(createWordFilter(['aaaab']).find('a'.repeat(10_000))).toBeUndefined();
  });

  it('scans a text that arrives in pieces exactly as it scans it whole', () => {
    const f = createWordFilter(['敏感词', 'forbidden']);
    const s = f.scanner();
    expect(s.feed('这是一段含有敏')).toBeUndefined();
    expect(s.feed('感')).toBeUndefined();
    expect(s.feed('词的回答')).toBe('敏感词');
    const t = f.scanner();
    expect(['for', 'bid', ' den'].map((p) => t.feed(p)).filter(Boolean)).toEqual(['forbidden']);
  });

  it('agrees with a naive check on thousands of words and long random texts', () => {
    let seed = 42;
    // xorshift32: seeded, so a failure repeats.
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const letters = 'abc赌博ＡＢ';
    const spaced = letters + ' \u3000';
    const word = (len: number, from = letters) => Array.from({ length: len }, () => from[rand(from.length)]).join('');
    const words = Array.from({ length: 3000 }, () => word(6 + rand(5)));
    const f = createWordFilter(words);
    expect(f.size).toBeGreaterThan(1000);
    const outcomes = new Set<boolean>();
    for (let i = 0; i < 60; i++) {
      const text = word(20 + rand(i < 30 ? 200 : 3000), spaced);
      const expected = naive(words, text);
      outcomes.add(expected);
      expect(f.find(text) !== undefined).toBe(expected);
    }
    expect([...outcomes].sort()).toEqual([false, true]); // both kinds of text were tried
  });

  it('with no words, matches nothing', () => {
    expect(createWordFilter([]).find('anything')).toBeUndefined();
    expect(createWordFilter(['  ', '\u200b']).size).toBe(0);
  });
});

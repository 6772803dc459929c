import { randomBytes } from 'crypto';
import { describe, expect, it } from 'vitest';
import { pageToken, tokenHash, wellFormedToken } from '../../../lib/web/page/token';

describe('answer-page tokens', () => {
  const secret = randomBytes(32);

  it('are 22 base64url characters (132 bits), the same for one question, different across questions and secrets', () => {
    const t = pageToken(secret, 'oUser:6054768590064713728');
    expect(t).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(pageToken(secret, 'oUser:6054768590064713728')).toBe(t);
    expect(pageToken(secret, 'oUser:6054768590064713729')).not.toBe(t);
    expect(pageToken(randomBytes(32), 'oUser:6054768590064713728')).not.toBe(t);
    expect(t).not.toContain('oUser');
  });

  it('spread over the whole alphabet (no structure an attacker could use)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) for (const c of pageToken(secret, `q${i}`)) seen.add(c);
    expect(seen.size).toBe(64);
  });

  it('are stored only as a SHA-256, and anything not shaped like one is refused before a lookup', () => {
    const t = pageToken(secret, 'k');
    expect(tokenHash(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenHash(t)).not.toContain(t);
    expect(wellFormedToken(t)).toBe(true);
    for (const bad of ['', 'x'.repeat(21), 'x'.repeat(23), 'x'.repeat(21) + '/', 'x'.repeat(21) + '=', '../../../etc/passwd1234']) expect(wellFormedToken(bad)).toBe(false);
  });
});

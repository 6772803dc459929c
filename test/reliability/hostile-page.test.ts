/**
 * Hostile requests to the answer page (property-based), as from someone without a link: any path
 * under /a/, any method, query and Last-Event-ID. Never a 5xx, never a crash, nothing changes in the store, and a real link keeps
 * working throughout; every response carries the page's security headers.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { call } from '../support/wire';

let h: Harness;
let link = '';
beforeAll(async () => {
  h = await startHarness({ answerPage: true, env: { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' }, dify: { script: () => ({ kind: 'answer', text: '真的回答', durationMs: 200 }) } });
  link = /<a href="([^"]+)">/.exec((await h.wechat.send('oReal', '问题')).text ?? '')?.[1] ?? '';
  await h.app.worker.idle();
});
afterAll(async () => h?.close());

const segment = fc.oneof(
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  fc.constantFrom('assets', 'events', 'state', 'read', '..', '.', '%2e%2e', '%00', 'A'.repeat(22), 'A'.repeat(23), 'page.js', 'page.css', '', '%F0%9F', '<script>'),
);

describe('hostile requests to the answer page', () => {
  it('never a 5xx, and the store does not change', async () => {
    const before = JSON.stringify((await h.app.store.snapshot()).messages.map((m) => [m._id, m.pagesDelivered, m.readOnPage ?? false]));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS'),
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        fc.option(fc.string({ maxLength: 60 }).filter((s) => !/[\r\n]/.test(s)), { nil: undefined }),
        async (method, parts, from, lastEventId) => {
          const q = from === undefined ? '' : `?from=${encodeURIComponent(from)}`;
          const headers: Record<string, string> = lastEventId === undefined ? {} : { 'Last-Event-ID': encodeURIComponent(lastEventId) };
          const r = await call(`${h.origin}/a/${parts.join('/')}${q}`, { method, headers });
          expect(r.dropped).toBe(false);
          expect(r.status).toBeLessThan(500);
          expect([200, 204, 404, 405, 503]).toContain(r.status);
        },
      ),
      { numRuns: 300 },
    );
    const after = JSON.stringify((await h.app.store.snapshot()).messages.map((m) => [m._id, m.pagesDelivered, m.readOnPage ?? false]));
    expect(after).toBe(before);
  });

  it('a real link still works, and every answer-page response carries the security headers', async () => {
    expect(link.split('/').pop()).toMatch(/^[A-Za-z0-9_-]{22}$/);
    for (const url of [link, `${link}/state`, `${h.origin}/a/${'B'.repeat(22)}`, `${h.origin}/a/assets/page.js`]) {
      const r = await fetch(url);
      expect(r.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    }
    expect((await call(link)).body).toContain('真的回答');
  });
});

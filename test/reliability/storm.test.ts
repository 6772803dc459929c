/**
 * Retry storm: 200 users each ask a question and WeChat's three deliveries of every message arrive
 * at once. Exactly one Dify call per question, every answer stored, every user gets their own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseXmlFields } from '../../lib/channels/wechat-oa/xml';
import { TOKEN, eventually, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { deliver, textXml } from '../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const USERS = 200;

describe('retry storm', () => {
  it('200 users × 3 concurrent deliveries: 200 Dify calls, 200 answers, nobody gets another user’s answer', async () => {
    h = await startHarness({ dify: { script: (b) => ({ kind: 'answer', text: `answer-for:${String(b.user)}:${String(b.query)}`, durationMs: 400 }) } });
    const users = Array.from({ length: USERS }, (_, i) => `oStorm${String(i).padStart(3, '0')}`);
    const replies = await Promise.all(
      users.map(async (user, i) => {
        const xml = textXml(user, `question-${i}`, String(7_000_000_000_000_000_000n + BigInt(i)));
        const three = await Promise.all([deliver(h.url, TOKEN, xml), deliver(h.url, TOKEN, xml), deliver(h.url, TOKEN, xml)]);
        return { user, i, three };
      }),
    );
    expect(h.dify.calls).toHaveLength(USERS);
    expect(new Set(h.dify.calls.map((c) => `${String(c.body.user)}:${String(c.body.query)}`)).size).toBe(USERS);

    let direct = 0;
    for (const { user, i, three } of replies) {
      for (const r of three) {
        if (r.dropped) continue; // a non-last delivery let time out
        expect(r.status).toBe(200);
        const f = parseXmlFields(r.body, 1 << 20);
        expect(f['ToUserName']).toBe(user);
        const content = f['Content'] ?? '';
        // Either this user's own answer, or the placeholder quoting this user's own question.
        if (content.startsWith('answer-for:')) {
          expect(content).toBe(`answer-for:${user}:question-${i}`);
          direct++;
        } else expect(content).toContain(`「question-${i}」`);
      }
    }
    expect(direct).toBeGreaterThan(0);

    await eventually(async () => (await h.app.store.snapshot()).messages.filter((r) => r.status === 'answered').length === USERS, 30_000);
    // Users who saw only the placeholder fetch their own answer with `1`.
    for (const { user, i } of replies.slice(0, 20)) {
      const one = await h.wechat.send(user, '1');
      expect([`answer-for:${user}:question-${i}`, h.config.texts.nothingPending]).toContain(one.text);
    }
    expect(h.dify.calls).toHaveLength(USERS);
  });
});

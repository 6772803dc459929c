/**
 * How each question ended, counted per day in the store (issue: console): a scripted run through
 * the WeChat simulator, and the retry storm, whose counts must not drift.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Script } from '../../lib/sim/dify-sim';
import type { StatsRecord } from '../../lib/store/store';
import { statCount } from '../../lib/store/store';
import { SCALE, TOKEN, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { deliver, textXml } from '../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const slow = (text: string, seconds: number): Script => ({ kind: 'answer', text, durationMs: seconds * 1000 * SCALE });
async function today(): Promise<StatsRecord | undefined> {
  const day = h.app.store.dayOf(Date.now());
  return (await h.app.store.statsBetween(day, day))[0];
}

describe('statistics', () => {
  it('record the path each answer took, failures by code, answer times and tokens', async () => {
    h = await startHarness({
      dify: {
        script: (b) =>
          ({
            快: { kind: 'answer', text: '快的回答' },
            慢: slow('慢的回答', 7),
            很慢: slow('很慢的回答', 20),
            坏: { kind: 'http', status: 503, body: '{"code":"internal_server_error","message":"x","status":503}' },
            清掉: slow('不会送到', 30),
          })[String(b.query)] as Script,
      },
    });
    await h.wechat.send('oStats', '快');
    await h.wechat.send('oStats', '慢');
    await h.wechat.send('oStats', '很慢');
    await h.app.worker.idle();
    expect((await h.wechat.send('oStats', '1')).text).toBe('很慢的回答');
    await h.wechat.send('oStats', '坏');
    const clearing = h.wechat.send('oStats2', '清掉');
    await new Promise((r) => setTimeout(r, 300));
    await h.wechat.send('oStats2', '/clear');
    await clearing;
    await h.app.worker.idle();
    const s = await today();
    expect(statCount(s, 'questions')).toBe(5);
    expect([statCount(s, 'via.reply1'), statCount(s, 'via.reply2'), statCount(s, 'via.fetch')]).toEqual([2, 1, 1]);
    expect([statCount(s, 'answered'), statCount(s, 'failed'), statCount(s, 'cleared')]).toEqual([3, 1, 1]);
    expect(statCount(s, 'fail.dify_http_503')).toBe(1);
    expect(statCount(s, 'backend.dify')).toBe(4);
    expect(statCount(s, 'tokens')).toBeGreaterThan(0);
    const latency = (s as { latency?: Record<string, number> }).latency ?? {};
    expect(Object.values(latency).reduce((a, b) => a + b, 0)).toBe(4);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.question === '慢');
    expect(q).toMatchObject({ deliveredVia: 'reply2', backend: 'dify' });
    expect((q?.firstTextAt ?? 0) >= (q?.createdAt ?? Infinity)).toBe(true);
  });

  it('do not drift under the retry storm: 200 questions × 3 concurrent deliveries count 200', async () => {
    h = await startHarness({ dify: { script: (b) => ({ kind: 'answer', text: `答${String(b.query)}`, durationMs: 300 }) } });
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const xml = textXml(`oDrift${i}`, `问${i}`, String(8_100_000_000_000_000_000n + BigInt(i)));
        return Promise.all([deliver(h.url, TOKEN, xml), deliver(h.url, TOKEN, xml), deliver(h.url, TOKEN, xml)]);
      }),
    );
    await h.app.worker.idle();
    const s = await today();
    expect(statCount(s, 'questions')).toBe(200);
    expect(statCount(s, 'answered')).toBe(200);
    const via = (s as { via?: Record<string, number> }).via ?? {};
    expect(Object.values(via).reduce((a, b) => a + b, 0)).toBe(200);
  });
});

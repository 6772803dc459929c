/**
 * `/clear` and unsubscribe while an answer is being written: no promise of `1` that returns
 * nothing, no second Dify call for WeChat's re-deliveries, and nothing about a departed user kept.
 * Raw deliveries give exact control over which delivery arrives when.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fill } from '../../lib/text/fill';
import { parseXmlFields } from '../../lib/channels/wechat-oa/xml';
import { TOKEN, eventually, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { deliver, textXml } from '../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const content = (r: { dropped: boolean; body: string }) => (r.dropped ? null : r.body === 'success' ? '' : (parseXmlFields(r.body, 1 << 20)['Content'] ?? ''));
let nextId = 8_000_000_000_000_000_000n;
const msgId = () => (nextId++).toString();
const eventXml = (user: string, event: string) =>
  `<xml><ToUserName><![CDATA[gh_wire]]></ToUserName><FromUserName><![CDATA[${user}]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[${event}]]></Event></xml>`;

/** Dify answers '慢' in ~4 s (pinging meanwhile, so only our stop can end the call early). */
function slowDify(): Promise<Harness> {
  return startHarness({
    dify: {
      script: (b) => (b.query === '慢' ? { kind: 'answer', text: '不该被送达的回答', durationMs: 4000, pieceChars: 2, pingEveryMs: 100 } : { kind: 'answer', text: `echo:${String(b.query)}` }),
    },
  });
}

describe('/clear while an answer is being written', () => {
  it('later deliveries of the cleared question say so, `1` has nothing, and the Dify call is stopped', async () => {
    h = await slowDify();
    const q = textXml('oClrFly', '慢', msgId());
    const firstDelivery = deliver(h.url, TOKEN, q);
    await eventually(() => h.dify.calls.length === 1);
    expect(content(await deliver(h.url, TOKEN, textXml('oClrFly', '/clear', msgId())))).toBe(h.config.texts.cleared);
    const told = fill(h.config.texts.questionCleared, { question: '慢' });
    // The delivery that was waiting answers at once, truthfully, instead of promising `1`.
    expect(content(await firstDelivery)).toBe(told);
    expect(content(await deliver(h.url, TOKEN, q))).toBe(told);
    expect(content(await deliver(h.url, TOKEN, textXml('oClrFly', '1', msgId())))).toBe(h.config.texts.nothingPending);
    await eventually(() => h.logs.some((l) => l.includes('answer stopped')), 5000);
    await h.app.worker.idle();
    const rec = (await h.app.store.snapshot()).messages.find((m) => m.question === '慢');
    expect(rec?.status).toBe('cleared');
    expect(rec?.pages).toBeUndefined();
    expect(h.dify.calls).toHaveLength(1);
    // The conversation starts afresh and works.
    expect(content(await deliver(h.url, TOKEN, textXml('oClrFly', '新问题', msgId())))).toBe('echo:新问题');
    expect(h.dify.calls[1]?.body.conversation_id).toBe('');
  });

  it('cancels every undelivered answer, but what was already delivered stays delivered', async () => {
    h = await startHarness({ env: { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' }, dify: { script: (b) => ({ kind: 'answer', text: `答:${String(b.query)}`, durationMs: 600 }) } });
    for (const q of ['甲', '乙']) expect((await h.wechat.send('oClrAll', q)).text).toMatch(/正在思考中/);
    await h.app.worker.idle();
    expect((await h.wechat.send('oClrAll', '1')).text).toContain('答:甲');
    await h.wechat.send('oClrAll', '/clear');
    expect((await h.wechat.send('oClrAll', '1')).text).toBe(h.config.texts.nothingPending);
  });
});

describe('unsubscribe while an answer is being written', () => {
  it('WeChat’s re-deliveries of the question call Dify no more, and nothing about the user remains', async () => {
    h = await slowDify();
    const user = 'oLeaveFly_' + msgId();
    const q = textXml(user, '慢', msgId());
    const firstDelivery = deliver(h.url, TOKEN, q);
    await eventually(() => h.dify.calls.length === 1);
    expect(content(await deliver(h.url, TOKEN, eventXml(user, 'unsubscribe')))).toBe('');
    expect(content(await firstDelivery)).toBe('');
    // WeChat keeps re-delivering the question it never got an answer to.
    for (let i = 0; i < 2; i++) expect(content(await deliver(h.url, TOKEN, q))).toBe('');
    await eventually(() => h.logs.some((l) => l.includes('answer stopped')), 5000);
    await h.app.worker.idle();
    expect(h.dify.calls).toHaveLength(1);
    const snapshot = JSON.stringify(await h.app.store.snapshot());
    expect(snapshot).not.toContain(user);
  });
});

/**
 * Every answer reaches its asker exactly once (issue: inbox). A real server on loopback, the Dify
 * simulator and WeChat's delivery rules scaled ×0.2 (test/support/harness.ts); races are made with
 * raw deliveries fired together.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Script } from '../../../lib/sim/dify-sim';
import { INBOX_MAX } from '../../../lib/store';
import { WechatSim } from '../../../lib/sim/wechat-sim';
import { parseXmlFields } from '../../../lib/channels/wechat-oa/xml';
import { SCALE, TOKEN, eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { deliver, textXml } from '../../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const slow = (text: string, seconds: number): Script => ({ kind: 'answer', text, durationMs: seconds * 1000 * SCALE, pieceChars: 4 });
const long = (tag: string, paragraphs = 8) => Array.from({ length: paragraphs }, (_, i) => `${tag}第${i + 1}段：` + '内容'.repeat(150)).join('\n\n');
/** The Content of a raw delivery's reply ('' for success, null for a dropped delivery). */
const content = (r: { dropped: boolean; body: string }) => (r.dropped ? null : r.body === 'success' || r.body === '' ? '' : (parseXmlFields(r.body, 1 << 20)['Content'] ?? ''));
let nextId = 7_000_000_000_000_000_000n;
const msgId = () => (nextId++).toString();

function scripted(answers: Record<string, Script>, env: Record<string, string> = {}): Promise<Harness> {
  return startHarness({ env, dify: { script: (body) => answers[String(body.query)] ?? { kind: 'answer', text: `echo:${String(body.query)}` } } });
}

/** Send `1` until nothing is pending; every reply in order. */
async function drain(user: string, limit = 60): Promise<string[]> {
  const replies: string[] = [];
  for (let i = 0; i < limit; i++) {
    const r = await h.wechat.send(user, '1');
    if (r.text === h.config.texts.nothingPending) return replies;
    replies.push(r.text ?? '');
  }
  throw new Error('the inbox never emptied');
}

describe('several pending answers', () => {
  it('three questions in one second: `1` delivers all three in order, each quoted, counting down', async () => {
    h = await scripted({ 问题一: slow('回答一', 20), 问题二: slow('回答二', 20), 问题三: slow('回答三', 20) });
    const sent = await Promise.all(['问题一', '问题二', '问题三'].map((q, i) => new Promise((r) => setTimeout(r, i * 50)).then(() => h.wechat.send('oThree', q))));
    for (const r of sent) expect(r.text).toMatch(/正在思考中.*回复 1/);
    await h.app.worker.idle();
    expect(await drain('oThree')).toEqual([
      '「问题一」\n回答一\n\n还有 2 条回答，回复 1 继续',
      '「问题二」\n回答二\n\n还有 1 条回答，回复 1 继续',
      '回答三',
    ]);
    expect(h.dify.calls).toHaveLength(3);
  });

  it('an answer still being written does not hold back one that is ready', async () => {
    h = await scripted({ 慢: slow('慢的回答', 60), 快一点: slow('快一点的回答', 6) }, { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' });
    await h.wechat.send('oOrder', '慢');
    await h.wechat.send('oOrder', '快一点');
    await eventually(async () => (await h.app.store.inbox('oOrder')).some((q) => q.status === 'answered'), 20_000);
    expect((await h.wechat.send('oOrder', '1')).text).toBe('「快一点」\n快一点的回答\n\n还有 1 条回答，回复 1 继续');
    expect((await h.wechat.send('oOrder', '1')).text).toMatch(/^「慢」\n还在思考中/);
  });

  it('a new question no longer makes the rest of an earlier answer unreachable', async () => {
    h = await scripted({ 长问题: { kind: 'answer', text: long('甲') }, 短问题: { kind: 'answer', text: '短的回答' } });
    const first = await h.wechat.send('oKeep', '长问题');
    expect(first.text).toMatch(/^甲第1段.*\(1\/\d\) 回复 1 查看后续$/s);
    const second = await h.wechat.send('oKeep', '短问题');
    expect(second.text).toBe('短的回答\n\n还有 1 条回答，回复 1 继续');
    const rest = await drain('oKeep');
    expect(rest.length).toBeGreaterThan(1);
    rest.forEach((p, i) => {
      expect(p).toContain('甲第');
      if (i < rest.length - 1) expect(p).toContain(`(${i + 2}/`);
    });
    expect(rest.join('')).not.toContain('短的回答');
  });

  it('answers delivered in full by their own reply never come back through `1`', async () => {
    h = await scripted({});
    await h.wechat.send('oDone', '一');
    await h.wechat.send('oDone', '二');
    expect((await h.wechat.send('oDone', '1')).text).toBe(h.config.texts.nothingPending);
  });

  it(`keeps at most ${INBOX_MAX} undelivered answers per user, dropping the oldest with a log line`, async () => {
    const n = INBOX_MAX + 2;
    const answers: Record<string, Script> = {};
    for (let i = 0; i < n; i++) answers[`q${i}`] = slow(`a${i}`, 10);
    h = await scripted(answers, { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' });
    for (let i = 0; i < n; i++) expect((await h.wechat.send('oFull', `q${i}`)).text).toMatch(/正在思考中/);
    await h.app.worker.idle();
    const got = await drain('oFull');
    expect(got).toHaveLength(INBOX_MAX);
    expect(got.map((t) => /a(\d+)/.exec(t)?.[1])).toEqual(Array.from({ length: INBOX_MAX }, (_, i) => String(i + 2)));
    expect(h.logs.filter((l) => l.includes('inbox full'))).toHaveLength(2);
  });
});

describe('a page is delivered once, whoever asks', () => {
  it('`1` racing the question’s own re-delivery: the page goes out once, and each re-delivery repeats its own reply', async () => {
    const users = Array.from({ length: 12 }, (_, i) => `oRace${i}`);
    h = await scripted(Object.fromEntries(users.map((u) => [`问${u}`, slow(`答${u}`, 6)])));
    await Promise.all(
      users.map(async (u) => {
        const q = textXml(u, `问${u}`, msgId());
        expect(content(await deliver(h.url, TOKEN, q))).toBeNull(); // dropped: not ready in the first window
        await eventually(async () => (await h.app.store.inbox(u))[0]?.status === 'answered');
        const one = textXml(u, '1', msgId());
        const [own, fetch] = (await Promise.all([deliver(h.url, TOKEN, q), deliver(h.url, TOKEN, one)])).map(content);
        const withAnswer = [own, fetch].filter((t) => t?.includes(`答${u}`));
        expect(withAnswer).toHaveLength(1);
        // The loser said nothing (`success`) or that nothing is pending.
        expect([own, fetch].filter((t) => !t?.includes(`答${u}`))[0]).toMatch(new RegExp(`^(|${h.config.texts.nothingPending})$`));
        // A re-delivery of either message gets exactly what it got before.
        expect(content(await deliver(h.url, TOKEN, q))).toBe(own);
        if (fetch?.includes(`答${u}`)) expect(content(await deliver(h.url, TOKEN, one))).toBe(fetch);
      }),
    );
    expect(h.dify.calls).toHaveLength(users.length);
  });

  it('two different `1`s arriving together get different pages; a re-delivered `1` gets its page again', async () => {
    h = await scripted({ 长: { kind: 'answer', text: long('乙', 10) } });
    const first = await h.wechat.send('oTwoOnes', '长');
    const total = Number(/\(1\/(\d+)\)/.exec(first.text ?? '')?.[1]);
    expect(total).toBeGreaterThan(4);
    const ones = Array.from({ length: total - 1 }, () => textXml('oTwoOnes', '1', msgId()));
    const replies = (await Promise.all(ones.map((x) => deliver(h.url, TOKEN, x)))).map(content);
    const pages = replies.map((t) => Number(/\((\d+)\//.exec(t ?? '')?.[1] ?? total));
    expect(pages.sort((a, b) => a - b)).toEqual(Array.from({ length: total - 1 }, (_, i) => i + 2));
    for (const [i, x] of ones.entries()) expect(content(await deliver(h.url, TOKEN, x))).toBe(replies[i]);
    expect((await h.wechat.send('oTwoOnes', '1')).text).toBe(h.config.texts.nothingPending);
  });
});

describe('a reply WeChat never received', () => {
  it('gives its page back: when WeChat hung up before the answer was sent, `1` still delivers it', async () => {
    h = await scripted({ 快: { kind: 'answer', text: '差点丢了的回答', durationMs: 500 } });
    // This WeChat gives up after 200 ms and does not deliver again; the answer is sent at ~500 ms.
    const impatient = new WechatSim({ url: h.url, token: TOKEN, timeoutMs: 200, deliveries: 1 });
    expect((await impatient.send('oHungUp', '快')).notice).toBe(true);
    await eventually(() => h.logs.some((l) => l.includes('reply did not reach WeChat')));
    expect((await h.wechat.send('oHungUp', '1')).text).toBe('差点丢了的回答');
    expect((await h.wechat.send('oHungUp', '1')).text).toBe(h.config.texts.nothingPending);
  });
});

describe('flags and family emoji', () => {
  it('arrive whole on every page', async () => {
    const emoji = ['🇨🇳', '👨‍👩‍👧‍👦', '👩🏽‍💻', '🇯🇵'];
    const text = Array.from({ length: 1200 }, (_, i) => emoji[i % emoji.length]).join('');
    h = await scripted({ 表情: { kind: 'answer', text, pieceChars: 7 } });
    const pages = [(await h.wechat.send('oEmoji', '表情')).text ?? '', ...(await drain('oEmoji'))];
    expect(pages.length).toBeGreaterThan(2);
    const clusters = (s: string) => [...new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(s)].map((x) => x.segment);
    const body = pages.map((p) => p.replace(/\n\n\(\d+\/\d+\) 回复 1 查看后续$/, ''));
    for (const p of body) for (const c of clusters(p)) expect(emoji).toContain(c);
    expect(body.join('')).toBe(text);
  });
});

/**
 * Delivery within WeChat's reply window, end to end: a real server on loopback, the Dify
 * simulator, and the WeChat client simulator with WeChat's retry timing scaled ×0.2
 * (5 s window → 1 s, deadline 4.5 s → 0.8 s). Dify latencies are scaled the same way.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { markdownToText } from '../../../lib/text/markdown';
import type { Script } from '../../../lib/sim/dify-sim';
import { SCALE, TOKEN, eventually, startHarness } from '../../support/harness';
import { deliver, textXml } from '../../support/wire';
import type { Harness, HarnessOptions } from '../../support/harness';

let h: Harness;
afterEach(async () => h?.close());

/** Dify answers each query by the script in `answers`, else a short echo. */
function scripted(answers: Record<string, Script>, env: Record<string, string> = {}): Promise<Harness> {
  const opts: HarnessOptions = { env, dify: { script: (body) => answers[String(body.query)] ?? { kind: 'answer', text: `echo:${String(body.query)}` } } };
  return startHarness(opts);
}
const slow = (text: string, seconds: number): Script => ({ kind: 'answer', text, durationMs: seconds * 1000 * SCALE, pieceChars: 4 });

describe('one question, one Dify call, however many deliveries', () => {
  it('answers a fast question on the first delivery', async () => {
    h = await scripted({});
    const r = await h.wechat.send('oFast', '你好');
    expect(r.text).toBe('echo:你好');
    expect(r.deliveries).toHaveLength(1);
  });

  it('answers on the 2nd delivery when Dify takes ~7 s, with exactly one Dify call', async () => {
    h = await scripted({ 七秒: slow('七秒后的回答', 7) });
    const r = await h.wechat.send('oSeven', '七秒');
    expect(r.text).toBe('七秒后的回答');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['timeout', 'reply']);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('makes exactly one Dify call for three deliveries, then a placeholder quoting the question', async () => {
    h = await scripted({ 二十秒的问题: slow('终于好了', 20) });
    const r = await h.wechat.send('oTwenty', '二十秒的问题');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['timeout', 'timeout', 'reply']);
    expect(r.text).toMatch(/^「二十秒的问题」\n正在思考中（已 \d+ 秒），请稍后回复 1 获取回答。$/);
    expect(h.dify.calls).toHaveLength(1);
    // The answer keeps streaming after the reply; its progress is visible in the store.
    const key = `oTwenty:${r.msgId}`;
    const partial = await eventually(async () => {
      const q = await h.app.store.message(key);
      return q?.status === 'pending' && q.answer ? q : undefined;
    });
    expect('终于好了'.startsWith(partial.answer ?? 'x')).toBe(true);
    await eventually(async () => (await h.app.store.message(key))?.status === 'answered');
    const one = await h.wechat.send('oTwenty', '1');
    expect(one.text).toBe('终于好了');
    expect(h.dify.calls).toHaveLength(1);
    expect((await h.app.store.message(key))?.deliveries).toBe(3);
  });

  it('gives `1` its own retry-aware window while the answer is still being generated', async () => {
    h = await scripted({ 慢: slow('慢慢的回答', 20) });
    const first = await h.wechat.send('oWin', '慢'); // placeholder after ~3 windows (~2.8 s scaled)
    expect(first.text).toMatch(/回复 1/);
    const one = await h.wechat.send('oWin', '1'); // the answer lands during this `1`'s deliveries
    expect(one.text).toBe('慢慢的回答');
    expect(one.deliveries.length).toBeGreaterThan(1);
  });

  it('`1` says it is still thinking (with elapsed time) when the answer outlasts its window too', async () => {
    h = await scripted({ 很慢: slow('很慢的回答', 45) });
    await h.wechat.send('oStill', '很慢');
    const one = await h.wechat.send('oStill', '1');
    expect(one.text).toMatch(/^「很慢」\n还在思考中（已 \d+ 秒），请稍后再回复 1。$/);
    const seconds = Number(/已 (\d+) 秒/.exec(one.text ?? '')?.[1]);
    expect(seconds).toBeGreaterThanOrEqual(5); // about two WeChat windows of 3 deliveries, scaled
  });

  it('with PLACEHOLDER_MODE=first, the first delivery already gets the placeholder', async () => {
    h = await scripted({ 慢: slow('慢', 7) }, { PLACEHOLDER_MODE: 'first' });
    const r = await h.wechat.send('oFirst', '慢');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['reply']);
    expect(r.text).toMatch(/正在思考中/);
  });
});

describe('`1` is honest', () => {
  it('says nothing is pending when there is nothing to fetch', async () => {
    h = await scripted({});
    expect((await h.wechat.send('oNone', '1')).text).toBe(h.config.texts.nothingPending);
    await h.wechat.send('oNone', '短问题');
    expect((await h.wechat.send('oNone', '1')).text).toBe(h.config.texts.nothingPending);
  });

  it('never returns an older answer as if it were the new one', async () => {
    h = await scripted({ 旧问题: { kind: 'answer', text: '旧的回答' }, 新问题: slow('新的回答', 45) });
    expect((await h.wechat.send('oOld', '旧问题')).text).toBe('旧的回答');
    await h.wechat.send('oOld', '新问题'); // placeholder
    const one = await h.wechat.send('oOld', '1');
    expect(one.text).toMatch(/「新问题」\n还在思考中/);
    expect(one.text).not.toContain('旧的回答');
  });

  it('says why an answer failed and suggests asking again', async () => {
    h = await scripted({ 会失败: { kind: 'cut', text: '半截', durationMs: 20 * 1000 * SCALE } });
    await h.wechat.send('oFail', '会失败');
    await eventually(async () => (await h.app.store.snapshot()).messages.some((r) => r.user === 'oFail' && r.status === 'failed'));
    const one = await h.wechat.send('oFail', '1');
    expect(one.text).toBe(`「会失败」\n${h.config.texts.failFailed}`);
  });

  it('a new question while another is pending is answered as its own question', async () => {
    h = await scripted({ 慢问题: slow('慢问题的回答', 45), 快问题: { kind: 'answer', text: '快问题的回答' } });
    await h.wechat.send('oTwo', '慢问题');
    const fast = await h.wechat.send('oTwo', '快问题');
    // …and says the slow one is still waiting for `1`.
    expect(fast.text).toBe(`快问题的回答\n\n还有 1 条回答，回复 1 继续`);
    expect(h.dify.calls.map((c) => c.body.query)).toEqual(['慢问题', '快问题']);
  });

  it('a retried `1` repeats its own page instead of skipping one', async () => {
    const long = Array.from({ length: 12 }, (_, i) => `第${i + 1}段：` + '内容'.repeat(120)).join('\n\n');
    h = await scripted({ 长: { kind: 'answer', text: long } });
    const q = await h.wechat.send('oRetry', '长');
    expect(q.text).toMatch(/\(1\/\d\) 回复 1 查看后续$/);
    // WeChat's own retry of one `1` message: deliver the same MsgId twice by hand.
    const xml = textXml('oRetry', '1', '77');
    const deliverOnce = async () => (await deliver(h.url, TOKEN, xml)).body;
    const a = await deliverOnce();
    const b = await deliverOnce();
    expect(a).toBe(b);
    expect(a).toContain('(2/');
    expect((await h.wechat.send('oRetry', '1')).text).toContain('(3/');
  });
});

describe('long answers', () => {
  it('pages a long Markdown answer under the byte limit and `1` round-trips all of it', async () => {
    const md =
      '# 标题\n\n' +
      Array.from({ length: 30 }, (_, i) => `## 第 ${i + 1} 节\n\n这是**第 ${i + 1} 节**的内容，讲一点 [Dify](https://dify.ai) 的事情。` + '很长的句子。'.repeat(25) + '\n\n- 要点一\n- 要点二\n\n```js\nconsole.log("code")\n```').join('\n\n');
    h = await scripted({ 长答案: { kind: 'answer', text: md, pieceChars: 50 } });
    const pages: string[] = [];
    let r = await h.wechat.send('oLong', '长答案');
    while (r.text !== h.config.texts.nothingPending) {
      expect(r.notice).toBe(false);
      expect(Buffer.byteLength(r.text ?? '')).toBeLessThanOrEqual(h.oa.pageBytes);
      pages.push(r.text ?? '');
      r = await h.wechat.send('oLong', '1');
      expect(pages.length).toBeLessThan(100);
    }
    expect(pages.length).toBeGreaterThan(3);
    const total = pages.length;
    pages.forEach((p, i) => {
      if (i < total - 1) expect(p.endsWith(`(${i + 1}/${total}) 回复 1 查看后续`)).toBe(true);
    });
    const joined = pages.map((p, i) => (i < total - 1 ? p.replace(/\n\n\(\d+\/\d+\) 回复 1 查看后续$/, '') : p)).join('');
    expect(joined.replace(/\s+/g, '')).toBe(markdownToText(md).replace(/\s+/g, ''));
    expect(joined).not.toMatch(/\*\*|^#|```/m);
  });

  it('delivers an answer containing ]]> intact', async () => {
    h = await scripted({ cdata: { kind: 'answer', text: 'a]]>b <xml>&amp; ]]]]> end' } });
    expect((await h.wechat.send('oCdata', 'cdata')).text).toBe('a]]>b <xml>&amp; ]]]]> end');
  });
});

describe('user text reaches Dify unchanged', () => {
  it('keeps runs of spaces, newlines and surrounding blanks', async () => {
    h = await scripted({});
    const text = '  第一行  有两个空格\n\n\n第三行\t制表符  ';
    await h.wechat.send('oExact', text);
    expect(h.dify.calls[0]?.body.query).toBe(text);
  });
});

describe('conversations', () => {
  it('continues the same Dify conversation for the same user, separately per user', async () => {
    h = await scripted({});
    await h.wechat.send('oConvA', 'one');
    await h.wechat.send('oConvA', 'two');
    await h.wechat.send('oConvB', 'three');
    const [a1, a2, b1] = h.dify.calls.map((c) => c.body);
    expect(a1?.conversation_id).toBe('');
    expect(a2?.conversation_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(h.dify.conversations.get(String(a2?.conversation_id))).toBe('oConvA');
    expect(b1?.conversation_id).toBe('');
    expect(a2?.user).toBe('oConvA');
  });

  it('forgets a conversation Dify no longer has (404) and retries once without it', async () => {
    h = await scripted({});
    await h.wechat.send('o404', 'one');
    const conv = (await h.app.store.user('o404'))?.conversationId as string;
    h.dify.conversations.delete(conv); // deleted at Dify behind our back
    const r = await h.wechat.send('o404', 'two');
    expect(r.text).toBe('echo:two');
    expect(h.dify.calls.map((c) => c.body.conversation_id)).toEqual(['', conv, '']);
    const fresh = (await h.app.store.user('o404'))?.conversationId;
    expect(fresh).toMatch(/^[0-9a-f-]{36}$/);
    expect(fresh).not.toBe(conv);
  });
});

describe('the answer is saved before it is delivered', () => {
  it('stores question, answer, usage, ids and timings', async () => {
    h = await scripted({});
    const r = await h.wechat.send('oSaved', '存一下');
    const q = await h.app.store.message(`oSaved:${r.msgId}`);
    expect(q).toMatchObject({ user: 'oSaved', msgId: r.msgId, question: '存一下', status: 'answered', answer: 'echo:存一下', pagesDelivered: 1, deliveries: 1, attempts: 1 });
    expect(q?.conversationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(q?.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(q?.usage?.total_tokens).toBe(46);
    expect(q?.answeredAt).toBeGreaterThanOrEqual(q?.createdAt ?? Infinity);
  });

  it('a Dify answer that is ready only after the last delivery is still saved and fetched', async () => {
    h = await scripted({ 晚: slow('晚到的回答', 25) });
    await h.wechat.send('oLate', '晚');
    await h.app.worker.idle(); // until the answer, which lands after WeChat's last delivery, is saved
    expect((await h.wechat.send('oLate', '1')).text).toBe('晚到的回答');
  });
});

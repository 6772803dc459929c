/**
 * Limits and filters at the HTTP boundary: RATE_LIMIT per user and DAILY_QUESTION_BUDGET for the
 * account (counted once per message, exact under racing deliveries and two app instances on one
 * store; commands, keywords and `1` never count), ALLOWED_USERS / BLOCKED_USERS, and BLOCKED_WORDS
 * on questions and answers (a blocked answer is never shown, not even while it is written).
 */
import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { memoryLogger } from '../../lib/util/log';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../../lib/app';
import { openSse } from '../../lib/sim/sse-client';
import { WechatSim } from '../../lib/sim/wechat-sim';
import { TOKEN, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { createHttpServer } from '../../lib/adapters/server/http';
import type { AddressInfo } from 'net';
import { deliver, textXml } from '../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const echo = { script: (b: { query?: unknown }) => ({ kind: 'answer' as const, text: `答：${String(b.query)}` }) };

describe('RATE_LIMIT and DAILY_QUESTION_BUDGET', () => {
  it('refuse a user’s third question in the hour with when to ask again; commands, keywords, `1` and re-deliveries do not count', async () => {
    h = await startHarness({ dify: echo, env: { RATE_LIMIT: '2/h', KEYWORD_REPLIES: JSON.stringify({ 价格: '见官网' }) } });
    expect((await h.wechat.send('oRate', '第一')).text).toBe('答：第一');
    for (const t of ['/help', '1', '价格']) await h.wechat.send('oRate', t);
    // WeChat's re-deliveries of one message: counted once.
    const xml = textXml('oRate', '第二', '8800000000000000001');
    for (let i = 0; i < 3; i++) expect((await deliver(h.url, TOKEN, xml)).body).toContain('答：第二');
    const third = await h.wechat.send('oRate', '第三');
    const next = new Date(Math.floor((Date.now() + 8 * 3_600_000) / 3_600_000 + 1) * 3_600_000).toISOString().slice(11, 16);
    expect(third.text).toBe(`提问太频繁了，请在 ${next} 之后再问。`);
    expect(h.dify.calls.map((c) => c.body.query)).toEqual(['第一', '第二']);
    // Another user has their own window.
    expect((await h.wechat.send('oRateOther', '你好')).text).toBe('答：你好');
    expect(h.logs.some((l) => l.includes('over a limit') && l.includes('"window":"rate:h"'))).toBe(true);
  });

  it('the account’s daily budget holds exactly across two app instances on one store, with racing deliveries', async () => {
    h = await startHarness({ dify: echo, env: { DAILY_QUESTION_BUDGET: '5' } });
    // A second instance: its own app and server, the same store.
    const second = createApp(h.config, { store: h.app.store, logger: memoryLogger() });
    const server = createHttpServer({ webhook: (path) => second.routes.get(path), logger: second.logger, maxBodyBytes: 65536 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url2 = `http://127.0.0.1:${(server.address() as AddressInfo).port}/wechat`;
    try {
      const both = new WechatSim({ url: [h.url, url2], token: TOKEN, timeoutMs: h.oa.timeoutMs, deliveries: h.oa.deliveries });
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => both.send(`oBudget${String(i).padStart(2, '0')}`, `问题${i}`)));
      const answered = results.filter((r) => r.text?.startsWith('答：'));
      const refused = results.filter((r) => r.text?.startsWith('今天的提问名额已经用完了'));
      expect(answered).toHaveLength(5);
      expect(refused).toHaveLength(7);
      expect(h.dify.calls).toHaveLength(5);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await second.worker.idle();
    }
  });
});

describe('ALLOWED_USERS and BLOCKED_USERS', () => {
  it('answer only the allowed, never the blocked', async () => {
    h = await startHarness({ dify: echo, env: { ALLOWED_USERS: 'oAllowed0001, oBlocked0001', BLOCKED_USERS: 'oBlocked0001' } });
    expect((await h.wechat.send('oAllowed0001', '你好')).text).toBe('答：你好');
    expect((await h.wechat.send('oStranger001', '你好')).text).toBe(h.config.texts.notAllowed);
    expect((await h.wechat.send('oBlocked0001', '你好')).text).toBe(h.config.texts.notAllowed);
    expect((await h.wechat.send('oStranger001', { type: 'image' })).text).toBe(h.config.texts.notAllowed);
    expect(h.dify.calls).toHaveLength(1);
  });
});

describe('BLOCKED_WORDS', () => {
  it('refuses a question with one (full width, spaced) without asking the model, logging the word only', async () => {
    h = await startHarness({ dify: echo, env: { BLOCKED_WORDS: '赌博,casino' } });
    expect((await h.wechat.send('oWords', '哪里可以赌 博？')).text).toBe(h.config.texts.inputBlocked);
    expect((await h.wechat.send('oWords', 'best ＣＡＳＩＮＯ in town')).text).toBe(h.config.texts.inputBlocked);
    expect(h.dify.calls).toHaveLength(0);
    expect(h.logs.some((l) => l.includes('"word":"赌博"'))).toBe(true);
    expect(h.logs.some((l) => l.includes('哪里可以'))).toBe(false);
  });

  it('replaces an answer with one, logs the word and not the answer, and the answer page never shows it while it is written', async () => {
    const words = Array.from({ length: 5000 }, (_, i) => `词条${i}号`);
    const file = join(mkdtempSync(join(tmpdir(), 'wdb-words-')), 'words.txt');
    writeFileSync(file, `# one word per line\n${words.join('\n')}\n`);
    h = await startHarness({
      answerPage: true,
      dify: { script: () => ({ kind: 'answer', text: '前面是正常的内容，' + '很长的一段话，'.repeat(20) + '然后出现了词条4321号这个词，后面还有。', durationMs: 2500, pieceChars: 5 }) },
      env: { PLACEHOLDER_MODE: 'first', BLOCKED_WORDS_FILE: file },
    });
    const placeholder = await h.wechat.send('oAnswerWords', '说点什么');
    const link = /<a href="([^"]+)">/.exec(placeholder.text ?? '')?.[1] as string;
    const stream = await openSse(`${link}/events`);
    const final = await stream.until((e) => e.event === 'final', 15_000);
    const shown = stream.events.filter((e) => e.event === 'text').map((e) => (JSON.parse(e.data) as { add: string }).add).join('');
    expect(shown).toContain('前面是正常的内容');
    expect(shown).not.toContain('词条4321号');
    expect(JSON.parse(final.data).html).toContain(h.config.texts.answerBlocked);
    expect((await h.wechat.send('oAnswerWords', '1')).text).toBe(h.config.texts.answerBlocked);
    expect(h.logs.some((l) => l.includes('answer replaced') && l.includes('词条4321号'))).toBe(true);
    expect(h.logs.some((l) => l.includes('前面是正常的内容'))).toBe(false);
    const rec = (await h.app.store.snapshot()).messages.find((m) => m.user === 'oAnswerWords' && m.kind === 'question');
    expect(rec?.answer).toBe(h.config.texts.answerBlocked);
  });
});

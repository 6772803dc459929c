/**
 * The lifecycle with an OpenAI-compatible backend (issue: OpenAI-compatible backend), at the HTTP
 * boundary: a real server on loopback, the OpenAI simulator, WeChat's rules ×0.2. History is in our
 * store; reasoning never reaches the user or the history; every delivery guarantee holds.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { historyFor } from '../../../lib/core/worker';
import { loadConfig } from '../../../lib/config';
import { startOpenAISim } from '../../../lib/sim/openai-sim';
import type { CompletionBody, OpenAIScript, OpenAISim } from '../../../lib/sim/openai-sim';
import { WechatSim } from '../../../lib/sim/wechat-sim';
import type { MessageRecord, UserRecord } from '../../../lib/store';
import { OPENAI_KEY, SCALE, TIMINGS, TOKEN, eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { spawnServer } from '../../support/process';
import { deliver, textXml } from '../../support/wire';
import { parseXmlFields } from '../../../lib/channels/wechat-oa/xml';
import type { ServerProcess } from '../../support/process';

let h: Harness | undefined;
afterEach(async () => h?.close());

const last = (b: CompletionBody) => String(b.messages?.at(-1)?.content ?? '');
/** Answers `答:<question>` unless the test scripts the question. */
function start(scripts: Record<string, OpenAIScript> = {}, env: Record<string, string> = {}) {
  return startHarness({ env, openai: { script: (b) => scripts[last(b)] ?? { kind: 'answer', text: `答:${last(b)}` } } });
}
const sim = () => (h as Harness).openai as OpenAISim;
const messagesOf = (i: number) => sim().calls[i]?.body.messages;

describe('history in the store', () => {
  it('sends the system prompt and the earlier turns in order, trimmed to HISTORY_MAX_TURNS', async () => {
    h = await start({}, { SYSTEM_PROMPT: '你是公众号助手。', HISTORY_MAX_TURNS: '2' });
    for (const q of ['一', '二', '三']) expect((await h.wechat.send('oHist', q)).text).toBe(`答:${q}`);
    await h.wechat.send('oHist', '四');
    expect(messagesOf(0)).toEqual([{ role: 'system', content: '你是公众号助手。' }, { role: 'user', content: '一' }]);
    expect(messagesOf(3)).toEqual([
      { role: 'system', content: '你是公众号助手。' },
      { role: 'user', content: '二' },
      { role: 'assistant', content: '答:二' },
      { role: 'user', content: '三' },
      { role: 'assistant', content: '答:三' },
      { role: 'user', content: '四' },
    ]);
    // Another user's turns never appear.
    await h.wechat.send('oOther', '别人');
    expect(messagesOf(4)).toEqual([{ role: 'system', content: '你是公众号助手。' }, { role: 'user', content: '别人' }]);
  });

  it('keeps the prompt within HISTORY_MAX_CHARS, newest turns first to stay', async () => {
    h = await start({}, { HISTORY_MAX_CHARS: '30' });
    await h.wechat.send('oChars', '很长的第一个问题'.repeat(2));
    await h.wechat.send('oChars', '短');
    await h.wechat.send('oChars', '再问');
    expect(messagesOf(2)).toEqual([
      { role: 'user', content: '短' },
      { role: 'assistant', content: '答:短' },
      { role: 'user', content: '再问' },
    ]);
  });

  it('/clear empties it; failed answers never join it; unsubscribe deletes it', async () => {
    h = await start({ 会失败: { kind: 'http', status: 500, body: '{"error":{"message":"x","type":"server_error","code":null}}' } });
    await h.wechat.send('oClear', '记住我');
    expect((await h.wechat.send('oClear', '会失败')).text).toBe(h.config.texts.failBusy);
    await h.wechat.send('oClear', '还记得吗');
    expect(messagesOf(2)).toEqual([
      { role: 'user', content: '记住我' },
      { role: 'assistant', content: '答:记住我' },
      { role: 'user', content: '还记得吗' },
    ]);
    await h.wechat.send('oClear', '/clear');
    await h.wechat.send('oClear', '新的开始');
    expect(messagesOf(3)).toEqual([{ role: 'user', content: '新的开始' }]);
    await h.wechat.send('oClear', { type: 'event', event: 'unsubscribe' });
    expect((await h.app.store.user('oClear'))).toBeNull();
  });

  it('two questions in flight each see the history as it was; both join it in the order asked', async () => {
    h = await start({ 慢的: { kind: 'answer', text: '慢的回答', durationMs: 4000 * SCALE } }, { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' });
    await h.wechat.send('oTwo', '先问');
    await h.app.worker.idle();
    const slow = h.wechat.send('oTwo', '慢的');
    await eventually(() => sim().calls.length === 2);
    await h.wechat.send('oTwo', '快的');
    await slow;
    await h.app.worker.idle();
    const before = [{ role: 'user', content: '先问' }, { role: 'assistant', content: '答:先问' }];
    expect(messagesOf(1)).toEqual([...before, { role: 'user', content: '慢的' }]);
    expect(messagesOf(2)).toEqual([...before, { role: 'user', content: '快的' }]);
    await h.wechat.send('oTwo', '最后');
    expect(messagesOf(3)).toEqual([
      ...before,
      { role: 'user', content: '慢的' },
      { role: 'assistant', content: '慢的回答' },
      { role: 'user', content: '快的' },
      { role: 'assistant', content: '答:快的' },
      { role: 'user', content: '最后' },
    ]);
  });

  it('after a silence longer than HISTORY_IDLE_RESET, the next question starts a fresh conversation', async () => {
    h = await start({}, { HISTORY_IDLE_RESET: '1s' });
    await h.wechat.send('oIdle', '早上好');
    await h.wechat.send('oIdle', '紧接着');
    await new Promise((r) => setTimeout(r, 1200));
    await h.wechat.send('oIdle', '过了很久');
    expect(messagesOf(1)).toHaveLength(3);
    expect(messagesOf(2)).toEqual([{ role: 'user', content: '过了很久' }]);
  });

  it('starts afresh after a silence longer than HISTORY_IDLE_RESET, and counts only earlier questions', () => {
    const limits = loadConfig({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'm' }).history;
    const hour = 3_600_000;
    const user: UserRecord = {
      _id: 'u', generation: 0, updatedAt: 0,
      history: [
        { question: 'a', answer: 'A', askedAt: 0 },
        { question: 'b', answer: 'B', askedAt: 3 * hour },
        { question: 'c', answer: 'C', askedAt: 4 * hour },
        { question: 'later', answer: 'L', askedAt: 9 * hour },
      ],
    };
    const q = (createdAt: number, generation = 0) => ({ _id: 'u:1', user: 'u', kind: 'question', createdAt, question: 'now', generation }) as MessageRecord;
    expect(historyFor(q(5 * hour), user, limits).map((t) => t.question)).toEqual(['b', 'c']);
    expect(historyFor(q(7 * hour), user, limits)).toEqual([]);
    expect(historyFor(q(5 * hour, 1), user, limits)).toEqual([]); // another generation (after /clear)
  });
});

describe('reasoning never reaches the user', () => {
  it('reasoning_content, reasoning and <think> tags are dropped from replies and from history', async () => {
    h = await start({
      深度: { kind: 'answer', text: '9.8 更大。', reasoning: '比较小数部分', reasoningAs: 'reasoning_content' },
      本地: { kind: 'answer', text: '你好！', reasoning: '用户在打招呼', reasoningAs: 'reasoning' },
      标签: { kind: 'answer', text: '答案是 42。', reasoning: '先想一想', reasoningAs: 'think-tags', pieceChars: 1 },
    });
    expect((await h.wechat.send('oThink', '深度')).text).toBe('9.8 更大。');
    expect((await h.wechat.send('oThink', '本地')).text).toBe('你好！');
    expect((await h.wechat.send('oThink', '标签')).text).toBe('答案是 42。');
    await h.wechat.send('oThink', '然后');
    const assistant = (messagesOf(3) ?? []).filter((m) => m.role === 'assistant').map((m) => m.content);
    expect(assistant).toEqual(['9.8 更大。', '你好！', '答案是 42。']);
    const stored = (await h.app.store.snapshot()).messages.filter((m) => m.kind === 'question').map((m) => m.answer ?? '');
    for (const a of stored) expect(a).not.toMatch(/比较|打招呼|想一想|think/);
  });

  it('with Dify too: <think> and a leading <details> block from apps on reasoning models never show', async () => {
    h = await startHarness({
      dify: {
        script: (b) => ({
          kind: 'answer',
          text: b.query === '一' ? '<think>\n先想想\n</think>\n\nDify 的回答' : '<details style="color:gray" open> <summary> Thinking... </summary>推理</details>\n\n第二个回答',
          pieceChars: 3,
        }),
      },
    });
    expect((await h.wechat.send('oDifyThink', '一')).text).toBe('Dify 的回答');
    expect((await h.wechat.send('oDifyThink', '二')).text).toBe('第二个回答');
  });

  it('a model that only thinks past the window gets the placeholder, then `1` has the answer', async () => {
    h = await start({ 想很久: { kind: 'answer', text: '想好了。', reasoning: '嗯'.repeat(200), pieceChars: 2, durationMs: 18_000 * SCALE } });
    const r = await h.wechat.send('oSlowThink', '想很久');
    expect(r.text).toMatch(/^「想很久」\n正在思考中/);
    await h.app.worker.idle();
    expect((await h.wechat.send('oSlowThink', '1')).text).toBe('想好了。');
  });

  it('an answer cut at the token limit says so', async () => {
    h = await start({ 长: { kind: 'answer', text: '说到一半', finishReason: 'length' } });
    expect((await h.wechat.send('oCut', '长')).text).toBe(`说到一半\n\n${h.config.texts.answerCut}`);
  });
});

describe('delivery guarantees with the OpenAI-compatible backend', () => {
  it('one model call per question across WeChat’s re-deliveries; a slow answer arrives on a later one', async () => {
    h = await start({ 慢: { kind: 'answer', text: '慢慢来', durationMs: 7000 * SCALE } });
    const r = await h.wechat.send('oOnce', '慢');
    expect(r.text).toBe('慢慢来');
    expect(r.deliveries.length).toBeGreaterThan(1);
    expect(sim().calls).toHaveLength(1);
  });

  it('200 users × 3 concurrent deliveries of each message: 200 model calls, everyone their own answer', async () => {
    h = await start();
    const users = Array.from({ length: 200 }, (_, i) => `oStorm${i}`);
    const replies = await Promise.all(
      users.map(async (user, i) => {
        const xml = textXml(user, `问${i}`, String(8_000_000_000_000_000_000n + BigInt(i)));
        const harness = h as Harness;
        return Promise.all([0, 1, 2].map(() => deliver(harness.url, TOKEN, xml)));
      }),
    );
    expect(sim().calls).toHaveLength(200);
    expect(new Set(sim().calls.map((c) => last(c.body))).size).toBe(200);
    for (const [i, three] of replies.entries()) {
      for (const r of three) {
        if (r.dropped) continue;
        const content = parseXmlFields(r.body, 1 << 20)['Content'] ?? '';
        // This user's own answer, or the placeholder quoting this user's own question.
        if (content.startsWith('答:')) expect(content).toBe(`答:问${i}`);
        else expect(content).toContain(`「问${i}」`);
      }
    }
  });
});

describe('kill -9 mid-stream with the OpenAI-compatible backend', () => {
  const servers: ServerProcess[] = [];
  let openai: OpenAISim | undefined;
  let dir = '';
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
    await openai?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a later `1` takes the stalled answer over, asks once more, and delivers it', async () => {
    dir = mkdtempSync(join(tmpdir(), 'wdb-openai-crash-'));
    openai = await startOpenAISim({
      apiKey: OPENAI_KEY,
      model: 'sim-model',
      script: (_b, i) => (i === 0 ? { kind: 'answer', text: '很慢的回答'.repeat(20), durationMs: 60_000, pieceChars: 2 } : { kind: 'answer', text: '重新生成的回答' }),
    });
    const env = { WECHAT_TOKEN: TOKEN, LLM_PROVIDER: 'openai', OPENAI_BASE_URL: openai.url, OPENAI_MODEL: 'sim-model', OPENAI_API_KEY: OPENAI_KEY, DATA_DIR: dir, ...TIMINGS };
    const a = await spawnServer(env);
    servers.push(a);
    const asked = new WechatSim({ url: a.url, token: TOKEN, timeoutMs: 1000 }).send('oCrashAI', '会被打断');
    await eventually(() => openai?.calls.length === 1);
    await new Promise((r) => setTimeout(r, 1000));
    await a.kill9();
    await asked;
    const b = await spawnServer(env);
    servers.push(b);
    const wechat = new WechatSim({ url: b.url, token: TOKEN, timeoutMs: 1000 });
    const one = await wechat.send('oCrashAI', '1');
    const text = one.text?.includes('重新生成的回答') ? one.text : (await wechat.send('oCrashAI', '1')).text;
    expect(text).toBe('重新生成的回答');
    expect(openai.calls).toHaveLength(2);
    // The recovered answer joins the history once.
    await wechat.send('oCrashAI', '接着');
    expect(openai.calls[2]?.body.messages?.filter((m) => m.content === '重新生成的回答')).toHaveLength(1);
  });
});

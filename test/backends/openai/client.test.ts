/**
 * The OpenAI-compatible client against the simulator on loopback (docs/openai.md): the recorded
 * provider streams split at awkward byte offsets, the request it sends, and every failure mode.
 */
import { readFileSync } from 'fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { Answer } from '../../../lib/core/answerer';
import type { OpenAISettings as OpenAIConfig } from '../../../lib/backends/openai/settings';
import { OpenAIError } from '../../../lib/errors';
import { createOpenAIClient } from '../../../lib/backends/openai/client';
import { startOpenAISim } from '../../../lib/sim/openai-sim';
import type { OpenAIScript, OpenAISim } from '../../../lib/sim/openai-sim';
import { Stop } from '../../../lib/util/stop';
import { visibleAnswer } from '../../../lib/text/reasoning';

let sim: OpenAISim | undefined;
afterEach(async () => sim?.close());
/** Close the current simulator (a function, so the type checker does not narrow `sim` away). */
const closeSim = async () => sim?.close();

const KEY = 'sk-client-test-0001';
function config(over: Partial<OpenAIConfig> = {}): OpenAIConfig {
  return { baseUrl: sim?.url ?? 'http://127.0.0.1:1/v1', apiKey: KEY, model: 'sim-model', systemPrompt: undefined, temperature: undefined, maxTokens: undefined, extraBody: {}, idleTimeoutMs: 2000, answerTimeoutMs: 5000, vision: false, transcribeModel: undefined, ...over };
}
async function withScript(script: OpenAIScript | ((i: number) => OpenAIScript), over: Partial<OpenAIConfig> = {}, simKey: string | null = KEY) {
  sim = await startOpenAISim({ ...(simKey ? { apiKey: simKey } : {}), model: 'sim-model', script: (_b, i) => (typeof script === 'function' ? script(i) : script) });
  return createOpenAIClient(config(over));
}
const ask = { query: '问题', user: 'oUser' };
async function failure(p: Promise<Answer>): Promise<OpenAIError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(OpenAIError);
    return err as OpenAIError;
  }
  throw new Error('expected a failure');
}
const fixture = (name: string) => readFileSync(new URL(`../../../fixtures/openai/${name}`, import.meta.url), 'utf8');

describe('recorded provider streams, split inside UTF-8 and JSON', () => {
  const cases: [string, string, number | undefined][] = [
    ['openai.sse', '你好！有什么可以帮你？', 39],
    ['deepseek-reasoning.sse', '9.8 更大。', 57],
    ['qwen-dashscope.sse', '杭州常被称为「人间天堂」。', 59],
    ['ollama-reasoning.sse', '你好！很高兴见到你。', 37],
  ];
  for (const [file, text, tokens] of cases) {
    it(`${file}: the answer, no reasoning, the usage`, async () => {
      const client = await withScript({ kind: 'transcript', sse: fixture(file) });
      const progress: string[] = [];
      const a = await client.chat(ask, { onText: (t) => progress.push(t) });
      expect(a.text).toBe(text);
      expect(a.usage?.total_tokens).toBe(tokens);
      expect(a.cut).toBeUndefined();
      for (const p of progress) expect(text.startsWith(p)).toBe(true);
    });
  }
});

describe('the request', () => {
  it('sends the system prompt, the history oldest first, the question; options and extra body fields; the key', async () => {
    const client = await withScript({ kind: 'answer', text: '好' }, { systemPrompt: '你是助手。', temperature: 0.3, maxTokens: 512, extraBody: { enable_thinking: false } });
    await client.chat({ ...ask, history: [{ question: '一', answer: '1', askedAt: 1 }, { question: '二', answer: '2', askedAt: 2 }] });
    const call = sim?.calls[0];
    expect(call?.authorization).toBe(`Bearer ${KEY}`);
    expect(call?.body).toMatchObject({ model: 'sim-model', stream: true, stream_options: { include_usage: true }, temperature: 0.3, max_tokens: 512, enable_thinking: false });
    expect(call?.body.messages).toEqual([
      { role: 'system', content: '你是助手。' },
      { role: 'user', content: '一' },
      { role: 'assistant', content: '1' },
      { role: 'user', content: '二' },
      { role: 'assistant', content: '2' },
      { role: 'user', content: '问题' },
    ]);
  });

  it('sends no Authorization header without a key (local servers)', async () => {
    const client = await withScript({ kind: 'answer', text: '本地' }, { apiKey: undefined }, null);
    expect((await client.chat(ask)).text).toBe('本地');
    expect(sim?.calls[0]?.authorization).toBeUndefined();
  });
});

describe('how answers end', () => {
  it('finish_reason length: the answer is kept and marked cut; content_filter likewise', async () => {
    let client = await withScript({ kind: 'answer', text: '写到一半', finishReason: 'length' });
    expect(await client.chat(ask)).toMatchObject({ text: '写到一半', cut: 'length' });
    await closeSim();
    client = await withScript({ kind: 'answer', text: '', finishReason: 'content_filter' });
    expect(await client.chat(ask)).toMatchObject({ text: '', cut: 'content_filter' });
  });

  it('a finish reason without [DONE] is an answer; neither is a failure', async () => {
    const frames = fixture('openai.sse').replace('data: [DONE]\n\n', '');
    let client = await withScript({ kind: 'transcript', sse: frames });
    expect((await client.chat(ask)).text).toBe('你好！有什么可以帮你？');
    await closeSim();
    client = await withScript({ kind: 'no-end', text: '没说完' });
    expect((await failure(client.chat(ask))).code).toMatch(/^openai_stream_(incomplete|cut)$/);
  });
});

describe('failures map to the same kinds as Dify’s', () => {
  const body = (code: string | null, message = 'x', type = 'invalid_request_error') => JSON.stringify({ error: { message, type, param: null, code } });
  const table: [string, OpenAIScript, string, string][] = [
    ['401 wrong key', { kind: 'http', status: 401, body: body('invalid_api_key') }, 'config', 'openai_http_401'],
    ['404 unknown model', { kind: 'http', status: 404, body: body('model_not_found') }, 'config', 'openai_http_404'],
    ['429 rate limit', { kind: 'http', status: 429, body: body('rate_limit_exceeded'), headers: { 'Retry-After': '7' } }, 'busy', 'openai_http_429'],
    ['429 quota', { kind: 'http', status: 429, body: body('insufficient_quota') }, 'quota', 'openai_http_429'],
    ['402 balance (DeepSeek)', { kind: 'http', status: 402, body: body(null, 'Insufficient Balance') }, 'quota', 'openai_http_402'],
    ['500', { kind: 'http', status: 500, body: body(null, 'server error', 'server_error') }, 'busy', 'openai_http_500'],
    ['503 overloaded, not JSON', { kind: 'http', status: 503, body: '<html>busy</html>' }, 'busy', 'openai_http_503'],
    ['error frame after 200', { kind: 'stream-error', text: '一半', code: 'internal_error', message: 'boom' }, 'failed', 'openai_stream_error'],
    ['quota error frame after 200', { kind: 'stream-error', text: '', code: 'insufficient_quota', message: 'quota' }, 'quota', 'openai_stream_error'],
    ['not JSON mid-stream', { kind: 'transcript', sse: 'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {nope\n\n' }, 'failed', 'openai_bad_event'],
  ];
  for (const [name, script, kind, code] of table) {
    it(name, async () => {
      const err = await failure((await withScript(script)).chat(ask));
      expect([err.kind, err.code]).toEqual([kind, code]);
      if (name.startsWith('429 rate')) expect(err.message).toContain('Retry-After: 7');
    });
  }

  it('unreachable, silent, only keep-alives, stopped', async () => {
    sim = await startOpenAISim({});
    const port = Number(new URL(sim.url).port);
    await sim.close();
    sim = undefined;
    const down = createOpenAIClient(config({ baseUrl: `http://127.0.0.1:${port}/v1` }));
    expect((await failure(down.chat(ask))).kind).toBe('down');
    let client = await withScript({ kind: 'hang' }, { idleTimeoutMs: 200 });
    expect((await failure(client.chat(ask))).code).toBe('openai_idle_timeout');
    await closeSim();
    client = await withScript({ kind: 'keep-alive', count: 100, everyMs: 50 }, { idleTimeoutMs: 300, answerTimeoutMs: 600 });
    expect((await failure(client.chat(ask))).code).toBe('openai_answer_timeout');
    await closeSim();
    client = await withScript({ kind: 'answer', text: '很长的回答'.repeat(50), durationMs: 3000 });
    const stop = new Stop();
    setTimeout(() => stop.stop(), 200);
    expect((await failure(client.chat(ask, { stop }))).code).toBe('openai_stopped');
  });
});

describe('reasoning split at every offset', () => {
  it('inline <think> tags never show, whatever the piece size', async () => {
    for (const pieceChars of [1, 2, 3, 5, 7]) {
      const client = await withScript({ kind: 'answer', text: '答案是 42。', reasoning: '先想一想：六乘以七', reasoningAs: 'think-tags', pieceChars });
      const shown: string[] = [];
      const a = await client.chat(ask, { onText: (t) => shown.push(visibleAnswer(t, true)) });
      expect(visibleAnswer(a.text)).toBe('答案是 42。');
      for (const s of shown) {
        expect(s).not.toMatch(/想|<|think/);
        expect('答案是 42。'.startsWith(s)).toBe(true);
      }
      await closeSim();
    }
  });
});

/**
 * The OpenAI-compatible endpoint (docs/api.md) with the official `openai` npm package as the client,
 * against a real server on loopback: non-streaming, streaming, abort mid-stream (the model call is
 * stopped), models, a client that resends its whole transcript (continuity, no duplicated context),
 * a new chat, and errors in OpenAI's shape (401, 404, 429 with Retry-After, 400 for malformed bodies).
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../../support/wire';
import { eventually, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';
import { API_KEYS, KEY_A, KEY_B } from './keys';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function start(opts: HarnessOptions = {}): Promise<Harness> {
  h = await startHarness({
    dify: { script: (b) => (String(b.query).startsWith('慢') ? { kind: 'answer', text: '一点一点地说。'.repeat(30), durationMs: 4000, pieceChars: 4 } : { kind: 'answer', text: `答：${String(b.query)}`, durationMs: 200, pieceChars: 2 }) },
    ...opts,
    env: { API_KEYS, ...opts.env },
  });
  return h;
}

const M = 'wechat-dify-bot';
const client = (h: Harness, key = KEY_A) => new OpenAI({ apiKey: key, baseURL: `${h.origin}/v1`, maxRetries: 0 });

describe('POST /v1/chat/completions with the openai SDK', () => {
  it('answers without streaming', async () => {
    const h = await start();
    const r = await client(h).chat.completions.create({ model: 'wechat-dify-bot', messages: [{ role: 'system', content: '你是助手' }, { role: 'user', content: '你好' }], temperature: 0.2 });
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('wechat-dify-bot');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices[0]?.message).toMatchObject({ role: 'assistant', content: '答：你好' });
    expect(r.choices[0]?.finish_reason).toBe('stop');
    expect(h.dify.calls[0]?.body).toMatchObject({ query: '你好', user: 'api:alpha:default' });
  });

  it('streams chunks that add up to the answer, ending with stop (and usage when asked)', async () => {
    const h = await start();
    const stream = await client(h).chat.completions.create({ model: 'wechat-dify-bot', messages: [{ role: 'user', content: '流式' }], stream: true, stream_options: { include_usage: true }, user: 'alice' });
    let text = '';
    const finishes: (string | null)[] = [];
    let chunks = 0;
    let usage: unknown;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      const choice = c.choices[0];
      if (!choice) continue;
      text += choice.delta.content ?? '';
      finishes.push(choice.finish_reason);
    }
    expect(text).toBe('答：流式');
    expect(chunks).toBeGreaterThan(3);
    expect(finishes.at(-1)).toBe('stop');
    expect(finishes.slice(0, -1).every((f) => f === null)).toBe(true);
    expect(usage).toMatchObject({ total_tokens: expect.any(Number) });
    expect(h.dify.calls[0]?.body.user).toBe('api:alpha:alice');
  });

  it('abort mid-stream stops the model call', async () => {
    const h = await start();
    const ac = new AbortController();
    const stream = await client(h).chat.completions.create({ model: M, messages: [{ role: 'user', content: '慢慢说' }], stream: true, user: 'bob' }, { signal: ac.signal });
    let got = '';
    // The SDK ends the iteration (or throws, by version) once its signal aborts.
    await (async () => {
      for await (const c of stream) {
        got += c.choices[0]?.delta.content ?? '';
        if (got.length > 6) ac.abort();
      }
    })().catch(() => undefined);
    expect(got.length).toBeGreaterThan(6);
    expect(got.length).toBeLessThan('一点一点地说。'.repeat(30).length);
    const cut = await eventually(() => h.dify.calls.find((c) => c.body.user === 'api:alpha:bob')?.cutAt, 10_000);
    expect(cut).toBeGreaterThan(0);
    await eventually(() => h.dify.stops.some((s) => s.user === 'api:alpha:bob'), 10_000);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.user === 'api:alpha:bob');
    expect(q?.status).toBe('cleared');
  });

  it('lists the one model it answers as, and refuses another (404 model_not_found)', async () => {
    const h = await start({ env: { API_MODEL_NAME: 'my-bot' } });
    const list = await client(h).models.list();
    expect(list.data.map((m) => m.id)).toEqual(['my-bot']);
    expect((await client(h).models.retrieve('my-bot')).id).toBe('my-bot');
    const err = await client(h).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    expect(h.dify.calls).toHaveLength(0);
  });

  it('continues the conversation from the store when the client resends its whole transcript; a transcript without an answer is a new chat', async () => {
    const h = await start();
    const c = client(h);
    const first = await c.chat.completions.create({ model: M, messages: [{ role: 'user', content: '第一问' }], user: 'carol' });
    const a1 = first.choices[0]?.message.content ?? '';
    await c.chat.completions.create({ model: M, messages: [{ role: 'user', content: '第一问' }, { role: 'assistant', content: a1 }, { role: 'user', content: '第二问' }], user: 'carol' });
    const [one, two] = h.dify.calls;
    // Only the new question reaches the model; the context is Dify's conversation, not the resent transcript.
    expect(two?.body.query).toBe('第二问');
    expect(two?.body.conversation_id).toBeTruthy();
    expect(one?.body.conversation_id).toBeFalsy();
    // A new chat in the client (no answer in its transcript) starts a new conversation.
    await c.chat.completions.create({ model: M, messages: [{ role: 'system', content: 'x' }, { role: 'user', content: '新话题' }], user: 'carol' });
    expect(h.dify.calls[2]?.body.conversation_id).toBeFalsy();
    const again = await c.chat.completions.create({ model: M, messages: [{ role: 'user', content: '新话题' }, { role: 'assistant', content: '答：新话题' }, { role: 'user', content: '接着' }], user: 'carol' });
    expect(again.choices[0]?.message.content).toBe('答：接着');
    expect(h.dify.calls[3]?.body.conversation_id).toBeTruthy();
    expect(h.dify.calls[3]?.body.conversation_id).not.toBe(two?.body.conversation_id);
  });

  it('with an OpenAI-compatible backend, the history comes from the store once, not again from the transcript', async () => {
    const h = await start({ openai: { script: (b) => ({ kind: 'answer', text: `ai:${JSON.stringify(b.messages?.at(-1)?.content)}` }) } });
    const c = client(h);
    const first = await c.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'q1' }], user: 'dan' });
    await c.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'q1' }, { role: 'assistant', content: first.choices[0]?.message.content ?? '' }, { role: 'user', content: 'q2' }], user: 'dan' });
    const sent = h.openai?.calls[1]?.body.messages?.filter((m) => m.role !== 'system');
    expect(sent).toEqual([
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: 'ai:"q1"' },
      { role: 'user', content: 'q2' },
    ]);
  });

  it('an Idempotency-Key header makes copies of a request one model call', async () => {
    const h = await start();
    const c = client(h);
    // The SDK does not send one by itself (openai 6): a client sets the header.
    const ask = () => c.chat.completions.create({ model: M, messages: [{ role: 'user', content: '幂等' }], user: 'erin' }, { headers: { 'Idempotency-Key': 'sdk-retry-1' } });
    const [a, b] = await Promise.all([ask(), ask()]);
    expect(a.id).toBe(b.id);
    expect(a.choices[0]?.message.content).toBe(b.choices[0]?.message.content);
    expect(h.dify.calls.filter((x) => x.body.query === '幂等')).toHaveLength(1);
  });

  it('errors in OpenAI’s shape: 401, 429 with Retry-After, 400 for malformed bodies; /clear and keywords as elsewhere', async () => {
    const h = await start({ env: { API_RATE_LIMIT: '2/m', KEYWORD_REPLIES: JSON.stringify({ 价格: '每月 10 元' }) } });
    const bad = await client(h, `${KEY_B}x`).chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((bad as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
    const kw = await client(h).chat.completions.create({ model: M, messages: [{ role: 'user', content: '价格' }] });
    expect(kw.choices[0]?.message.content).toBe('每月 10 元');
    const cleared = await client(h).chat.completions.create({ model: M, messages: [{ role: 'user', content: '/clear' }], stream: true });
    let text = '';
    for await (const c of cleared) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe('已清除对话记录，我们重新开始吧。');
    const limited = await client(h).chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
    const e = limited as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe('rate_limit_exceeded');
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(h.dify.calls).toHaveLength(0);
    for (const body of ['{"messages": [', JSON.stringify({ messages: [] }), JSON.stringify({ messages: [{ role: 'assistant', content: 'x' }] }), JSON.stringify({ messages: [{ role: 'user', content: 42 }] })]) {
      const r = await call(`${h.origin}/v1/chat/completions`, { method: 'POST', body, headers: { Authorization: `Bearer ${KEY_B}`, 'Content-Type': 'application/json' } });
      expect(r.status, body).toBe(400);
      expect(JSON.parse(r.body)).toMatchObject({ error: { message: expect.any(String), type: 'invalid_request_error', param: null } });
    }
  });

  it('a failed answer is an OpenAI error: before the stream as its status, during it as `data: {"error"}`', async () => {
    const h = await start({ dify: { script: () => ({ kind: 'http', status: 503, body: JSON.stringify({ code: 'internal_server_error', message: 'down', status: 503 }) }) } });
    const e = await client(h).chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }] }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.InternalServerError);
    expect((e as InstanceType<typeof OpenAI.InternalServerError>).status).toBe(503);
    const stream = await client(h).chat.completions.create({ model: M, messages: [{ role: 'user', content: 'y' }], stream: true });
    await expect(
      (async () => {
        for await (const c of stream) void c;
      })(),
    ).rejects.toThrow(/忙/);
  });
});

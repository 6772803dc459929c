/**
 * The HTTP API (docs/api.md) against a real server on loopback, the Dify simulator behind it: JSON
 * and SSE answers, keys and their users, Idempotency-Key (racing copies included), a client that
 * leaves, commands and keyword replies, limits, CORS, bounded bodies and streams, the OpenAPI document.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseKey } from '../../../lib/core/keys';
import { call } from '../../support/wire';
import { eventually, sleep, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';
import { API_KEYS, KEY_A, KEY_B } from './keys';
import { postStream } from './sse';


let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function start(opts: HarnessOptions = {}): Promise<Harness> {
  h = await startHarness({
    dify: { script: (b) => (b.query === '慢' ? { kind: 'answer', text: '慢慢地回答'.repeat(20), durationMs: 3000, pieceChars: 5 } : { kind: 'answer', text: `答：${String(b.query)}`, durationMs: 300, pieceChars: 2 }) },
    ...opts,
    env: { API_KEYS, ...opts.env },
  });
  return h;
}

const auth = (key: string) => ({ Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' });
const chat = (h: Harness, body: unknown, headers: Record<string, string> = auth(KEY_A)) => call(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify(body), headers });
const json = (r: { body: string }) => JSON.parse(r.body) as Record<string, unknown>;

describe('POST /api/v1/chat', () => {
  it('answers as JSON, continues the user’s conversation, and keeps each key’s users apart', async () => {
    const h = await start();
    const first = await chat(h, { user: 'u1', query: '你好' });
    expect(first.status).toBe(200);
    expect(first.type).toMatch(/^application\/json/);
    expect(json(first)).toMatchObject({ user: 'u1', answer: '答：你好', source: 'model' });
    await chat(h, { user: 'u1', query: '再问' });
    const calls = h.dify.calls;
    expect(calls[1]?.body.conversation_id).toBe(calls[0] && (await h.app.store.user(String(calls[0].body.user)))?.conversationId);
    expect(calls[1]?.body.conversation_id).toBeTruthy();
    // The same user name under key B is another conversation.
    await chat(h, { user: 'u1', query: 'B 的问题' }, auth(KEY_B));
    expect(h.dify.calls[2]?.body.conversation_id).toBeFalsy();
    expect(new Set(h.dify.calls.map((c) => c.body.user))).toEqual(new Set(['api:alpha:u1', 'api:beta:u1']));
    // B clears "its" u1: A's u1 keeps its conversation.
    const cleared = await call(`${h.origin}/api/v1/conversations/u1`, { method: 'DELETE', headers: auth(KEY_B) });
    expect(cleared.status).toBe(200);
    expect(json(cleared)).toEqual({ cleared: true, user: 'u1' });
    expect((await h.app.store.user('api:alpha:u1'))?.conversationId).toBeTruthy();
    expect((await h.app.store.user('api:beta:u1'))?.generation).toBe(1);
    // A clears its own u1 (laf's form of the path works on Node too).
    expect((await call(`${h.origin}/api/v1/conversations?user=u1`, { method: 'DELETE', headers: auth(KEY_A) })).status).toBe(200);
    expect((await h.app.store.user('api:alpha:u1'))?.conversationId).toBeUndefined();
    // The console sees these questions like any channel's: channel `api`, delivered by `api`.
    const q = (await h.app.store.recentQuestions(10, undefined, 'api')).find((r) => r.question === '你好');
    expect(q).toMatchObject({ channel: 'api', status: 'answered', deliveredVia: 'api' });
    expect(parseKey(q?.user ?? '')).toEqual({ kind: 'api', instance: '', parts: ['alpha', 'u1'] });
  });

  it('gives every bad credential the same 401, reads no cookie, and no key reaches the log', async () => {
    const h = await start();
    const bodies = new Set<string>();
    for (const headers of [
      { 'Content-Type': 'application/json' },
      { Authorization: `Basic ${Buffer.from(`x:${KEY_A}`).toString('base64')}` },
      { Authorization: `Bearer ${KEY_A}x` },
      { Authorization: 'Bearer' },
      { Authorization: `Bearer ${'k'.repeat(600)}` },
      { Cookie: `key=${KEY_A}; session=${KEY_A}` },
    ]) {
      const r = await chat(h, { user: 'u', query: 'q' }, headers);
      expect(r.status).toBe(401);
      bodies.add(r.body);
    }
    expect(bodies.size).toBe(1);
    expect(h.dify.calls).toHaveLength(0);
    expect((await call(`${h.origin}/api/v1/conversations/u`, { method: 'DELETE' })).status).toBe(401);
    expect((await call(`${h.origin}/v1/models`)).status).toBe(401);
    // Unknown paths are 404 with or without a key; a wrong method is 405 with a key, 401 without one.
    expect((await call(`${h.origin}/api/v1/nothing`, { headers: auth(KEY_A) })).status).toBe(404);
    expect((await call(`${h.origin}/api/v1/nothing`)).status).toBe(404);
    expect((await call(`${h.origin}/api/v1/chat`, { headers: auth(KEY_A) })).status).toBe(405);
    expect((await call(`${h.origin}/api/v1/chat`)).status).toBe(401);
    expect((await call(`${h.origin}/v1/chat/completions`)).status).toBe(401);
    await chat(h, { user: 'u', query: 'ok' });
    expect(h.logs.some((l) => l.includes(KEY_A) || l.includes(KEY_B))).toBe(false);
  });

  it('refuses malformed bodies with 400 and changes nothing', async () => {
    const h = await start();
    for (const body of ['{', '[]', JSON.stringify({ user: 'u' }), JSON.stringify({ user: '', query: 'q' }), JSON.stringify({ user: 'u', query: 'x'.repeat(16_001) }), JSON.stringify({ user: 'u\u0000', query: 'q' }), JSON.stringify({ user: 'u', query: 'q', stream: 'yes' })]) {
      const r = await call(`${h.origin}/api/v1/chat`, { method: 'POST', body, headers: auth(KEY_A) });
      expect(r.status, body.slice(0, 40)).toBe(400);
      expect(json(r)['error']).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
    expect((await chat(h, { user: 'u', query: 'q' }, { ...auth(KEY_A), 'Idempotency-Key': 'é' })).status).toBe(400);
    expect(h.dify.calls).toHaveLength(0);
    expect((await h.app.store.snapshot()).messages).toHaveLength(0);
  });

  it('streams SSE (Accept or "stream": true): delta events, then done with the whole answer', async () => {
    const h = await start();
    for (const [body, headers] of [
      [{ user: 'u2', query: '流' }, { ...auth(KEY_A), Accept: 'text/event-stream' }],
      [{ user: 'u2', query: '流2', stream: true }, auth(KEY_A)],
    ] as const) {
      const s = await postStream(`${h.origin}/api/v1/chat`, body, headers);
      expect(s.status).toBe(200);
      expect(s.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      const { events } = await s.done;
      const deltas = events.filter((e) => e.event === 'delta').map((e) => JSON.parse(e.data) as { at: number; text: string });
      expect(deltas.length).toBeGreaterThan(1);
      let text = '';
      for (const d of deltas) text = text.slice(0, d.at) + d.text;
      expect(text).toBe(`答：${body.query}`);
      expect(events.at(-1)?.event).toBe('done');
      expect(JSON.parse(events.at(-1)?.data ?? '{}')).toMatchObject({ answer: `答：${body.query}`, source: 'model', user: 'u2' });
    }
  });

  it('Idempotency-Key: racing copies and later retries get the same answer from one model call', async () => {
    const h = await start();
    const headers = { ...auth(KEY_A), 'Idempotency-Key': 'req-0001' };
    const copies = await Promise.all([chat(h, { user: 'u3', query: '同一个' }, headers), chat(h, { user: 'u3', query: '同一个' }, headers), postStream(`${h.origin}/api/v1/chat`, { user: 'u3', query: '同一个', stream: true }, headers)]);
    const [a, b, s] = copies;
    expect(json(a)).toEqual(json(b));
    expect(JSON.parse((await s.done).events.at(-1)?.data ?? '{}')).toEqual(json(a));
    const again = await chat(h, { user: 'u3', query: '同一个' }, headers);
    expect(json(again)).toEqual(json(a));
    expect(h.dify.calls.filter((c) => c.body.query === '同一个')).toHaveLength(1);
    // The same key for another question is refused; key B's same Idempotency-Key is its own request.
    expect((await chat(h, { user: 'u3', query: '别的' }, headers)).status).toBe(422);
    expect((await chat(h, { user: 'u3', query: '同一个' }, { ...auth(KEY_B), 'Idempotency-Key': 'req-0001' })).status).toBe(200);
    expect(h.dify.calls.filter((c) => c.body.query === '同一个')).toHaveLength(2);
  });

  it('a client that leaves mid-stream without an Idempotency-Key stops the model call; with one, the answer waits for its retry', async () => {
    const h = await start();
    const s = await postStream(`${h.origin}/api/v1/chat`, { user: 'u4', query: '慢', stream: true }, auth(KEY_A));
    await s.first((e) => e.event === 'delta');
    s.abort();
    // The model's stream is cut, and Dify is told to stop the run.
    await eventually(() => h.dify.calls.find((c) => c.body.user === 'api:alpha:u4')?.cutAt, 10_000);
    await eventually(() => h.dify.stops.some((x) => x.user === 'api:alpha:u4'), 10_000);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.user === 'api:alpha:u4');
    expect(q?.status).toBe('cleared');
    // With a key: the model goes on, and a retry gets the whole answer without asking again.
    const headers = { ...auth(KEY_A), 'Idempotency-Key': 'keep-me' };
    const k = await postStream(`${h.origin}/api/v1/chat`, { user: 'u5', query: '慢', stream: true }, headers);
    await k.first((e) => e.event === 'delta');
    k.abort();
    await sleep(300);
    const retry = await chat(h, { user: 'u5', query: '慢' }, headers);
    expect(retry.status).toBe(200);
    expect(json(retry)['answer']).toBe('慢慢地回答'.repeat(20));
    expect(h.dify.calls.filter((c) => c.body.user === 'api:alpha:u5')).toHaveLength(1);
    expect(h.dify.stops.some((x) => x.user === 'api:alpha:u5')).toBe(false);
    expect(h.dify.calls.find((c) => c.body.user === 'api:alpha:u5')?.cutAt).toBeUndefined();
  });

  it('a JSON request whose client leaves is cancelled too (no Idempotency-Key)', async () => {
    const h = await start();
    const ac = new AbortController();
    const pending = fetch(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'u6', query: '慢' }), headers: auth(KEY_A), signal: ac.signal }).catch(() => undefined);
    await eventually(() => h.dify.calls.some((c) => c.body.user === 'api:alpha:u6'));
    ac.abort();
    await pending;
    await eventually(() => h.dify.calls.find((c) => c.body.user === 'api:alpha:u6')?.cutAt, 10_000);
    expect((await h.app.store.snapshot()).messages.find((m) => m.user === 'api:alpha:u6')?.status).toBe('cleared');
  });

  it('/help, /clear and keyword replies answer without the model', async () => {
    const h = await start({ env: { KEYWORD_REPLIES: JSON.stringify({ 价格: '每月 10 元' }) } });
    expect(json(await chat(h, { user: 'u7', query: '价格' }))).toMatchObject({ answer: '每月 10 元', source: 'reply' });
    expect(json(await chat(h, { user: 'u7', query: '/help' }))['source']).toBe('reply');
    await chat(h, { user: 'u7', query: '问题' });
    const s = await postStream(`${h.origin}/api/v1/chat`, { user: 'u7', query: '/clear', stream: true }, auth(KEY_A));
    const { events } = await s.done;
    expect(JSON.parse(events.at(-1)?.data ?? '{}')).toMatchObject({ answer: '已清除对话记录，我们重新开始吧。', source: 'reply' });
    expect(h.dify.calls.map((c) => c.body.query)).toEqual(['问题']);
  });

  it('limits: per key (API_RATE_LIMIT) and per user (RATE_LIMIT) are 429 with Retry-After; a retry keeps its verdict', async () => {
    const h = await start({ env: { API_RATE_LIMIT: '3/m', RATE_LIMIT: '2/h' } });
    expect((await chat(h, { user: 'one', query: 'a' })).status).toBe(200);
    expect((await chat(h, { user: 'one', query: 'b' })).status).toBe(200);
    const perUser = await call(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'one', query: 'c' }), headers: auth(KEY_A) });
    expect(perUser.status).toBe(429);
    expect((await chat(h, { user: 'two', query: 'd' })).status).toBe(429); // the key's 3/m is used up (the refused one counted)
    const res = await fetch(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'two', query: 'e' }), headers: auth(KEY_A) });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    // Key B has its own window.
    expect((await chat(h, { user: 'two', query: 'f' }, auth(KEY_B))).status).toBe(200);
    expect(h.dify.calls).toHaveLength(3);
  });

  it('CORS is off by default and on for API_CORS_ORIGINS only; never with credentials', async () => {
    const h1 = await start();
    const plain = await fetch(`${h1.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'c', query: 'q' }), headers: { ...auth(KEY_A), Origin: 'https://evil.example' } });
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    await h1.close();
    h = undefined;
    const h2 = await start({ env: { API_CORS_ORIGINS: 'https://chat.example.com' } });
    const pre = await fetch(`${h2.origin}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'https://chat.example.com', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type, x-stainless-os' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://chat.example.com');
    expect(pre.headers.get('access-control-allow-headers')).toContain('x-stainless-os');
    expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
    const other = await fetch(`${h2.origin}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const ok = await fetch(`${h2.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'c', query: 'q' }), headers: { ...auth(KEY_A), Origin: 'https://chat.example.com' } });
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://chat.example.com');
    const s = await postStream(`${h2.origin}/api/v1/chat`, { user: 'c', query: 'q2', stream: true }, { ...auth(KEY_A), Origin: 'https://chat.example.com' });
    expect(s.headers.get('access-control-allow-origin')).toBe('https://chat.example.com');
    await s.done;
    expect(ok.headers.get('set-cookie')).toBeNull();
  });

  it('bounds bodies (413) and the answers it waits for at once (503 with Retry-After), and asks nothing then', async () => {
    const h = await start({ env: { MAX_BODY_BYTES: '4096', API_MAX_STREAMS: '1' } });
    expect((await chat(h, { user: 'b', query: 'x'.repeat(5000) })).status).toBe(413);
    const s = await postStream(`${h.origin}/api/v1/chat`, { user: 'b', query: '慢', stream: true }, auth(KEY_A));
    await s.first((e) => e.event === 'delta');
    const res = await fetch(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'b2', query: '另一个' }), headers: auth(KEY_A) });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(h.dify.calls.filter((c) => c.body.user === 'api:alpha:b2')).toHaveLength(0);
    await s.done;
    expect((await chat(h, { user: 'b2', query: '现在' })).status).toBe(200);
  });

  it('holds API_MAX_STREAMS against a burst: requests arriving together are counted before any model call', async () => {
    // Store operations take a few milliseconds, as over a network to MongoDB: the requests overlap as they would there.
    const h = await start({ storeLatencyMs: 5, env: { API_MAX_STREAMS: '5' } });
    const native = Array.from({ length: 15 }, (_, i) => fetch(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: `burst${i}`, query: '慢' }), headers: auth(KEY_A) }));
    const openai = Array.from({ length: 15 }, (_, i) => fetch(`${h.origin}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ user: `oburst${i}`, stream: true, messages: [{ role: 'user', content: '慢' }] }), headers: auth(KEY_A) }));
    const all = await Promise.all([...native, ...openai]);
    expect(all.filter((r) => r.status === 200)).toHaveLength(5);
    expect(all.filter((r) => r.status === 503)).toHaveLength(25);
    await Promise.all(all.map((r) => r.text()));
    expect(h.dify.calls.filter((c) => /burst/.test(String(c.body.user)))).toHaveLength(5);
    // Every place is given back: five more get in, one by one or together.
    const again = await Promise.all(Array.from({ length: 5 }, (_, i) => chat(h, { user: `after${i}`, query: '现在' })));
    expect(again.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  });

  it('serves its OpenAPI document, and every path in it is served', async () => {
    const h = await start();
    const r = await call(`${h.origin}/api/v1/openapi.json`);
    expect(r.status).toBe(200);
    const doc = JSON.parse(r.body) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual(['/api/v1/chat', '/api/v1/conversations/{user}', '/api/v1/openapi.json', '/v1/chat/completions', '/v1/models', '/v1/models/{model}']);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) {
        const url = `${h.origin}${path.replace('{user}', 'someone').replace('{model}', 'wechat-dify-bot')}`;
        const res = await call(url, { method: method.toUpperCase(), headers: auth(KEY_A), ...(method === 'post' ? { body: '{}' } : {}) });
        expect([404, 405], `${method} ${path}`).not.toContain(res.status);
      }
    }
  });
});

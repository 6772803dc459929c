import { readFileSync } from 'fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createDifyClient } from '../../../lib/backends/dify/client';
import { DifyError } from '../../../lib/errors';
import { Stop } from '../../../lib/util/stop';
import { startDifySim } from '../../../lib/sim/dify-sim';
import type { DifySim, Script } from '../../../lib/sim/dify-sim';

const KEY = 'app-client-test-key';
let sim: DifySim;
afterEach(async () => sim?.close());

async function withScript(script: Script | ((i: number) => Script), idleTimeoutMs = 5000, answerTimeoutMs = 60_000) {
  sim = await startDifySim({ apiKey: KEY, script: (_b, i) => (typeof script === 'function' ? script(i) : script) });
  return createDifyClient({ baseUrl: sim.url, apiKey: KEY, idleTimeoutMs, answerTimeoutMs });
}

async function failure(p: Promise<unknown>): Promise<DifyError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DifyError);
    return err as DifyError;
  }
  throw new Error('expected a DifyError');
}

const ask = { query: '你好', user: 'oUser' };

describe('chat: the request', () => {
  it('sends streaming mode, inputs {}, the user, no conversation for a new user, and no generated conversation name', async () => {
    const client = await withScript({ kind: 'answer', text: 'ok' });
    await client.chat(ask);
    expect(sim.calls[0]?.body).toEqual({ inputs: {}, query: '你好', response_mode: 'streaming', user: 'oUser', conversation_id: '', auto_generate_name: false });
    expect(sim.calls[0]?.authorization).toBe(`Bearer ${KEY}`);
  });
});

describe('chat: answers', () => {
  it.each(['chat', 'agent-chat', 'advanced-chat'] as const)('streams a %s app answer in both serialisations', async (app) => {
    for (const style of ['orjson', 'json.dumps'] as const) {
      const client = await withScript({ kind: 'answer', text: '多字节的回答 with emoji 😀 and ]]> too', app, style, pieceChars: 3 });
      const texts: string[] = [];
      const answer = await client.chat(ask, { onText: (t) => texts.push(t) });
      expect(answer.text).toBe('多字节的回答 with emoji 😀 and ]]> too');
      expect(answer.conversationId).toMatch(/^[0-9a-f-]{36}$/);
      expect(answer.usage?.total_tokens).toBe(46);
      expect(texts.length).toBeGreaterThan(3); // progress arrives while streaming
      await sim.close();
    }
  });

  it('replays every recorded transcript through the real HTTP path', async () => {
    const cases: [string, string][] = [
      ['f1-chatbot-docs.sse', " I'm glad to meet you"],
      ['f3-basic.sse', ' I'],
      ['f3-agent.sse', 'Here is the image: '],
      ['f3-chatflow.sse', ' I'],
    ];
    for (const [file, text] of cases) {
      const sse = readFileSync(new URL(`../../../fixtures/dify/${file}`, import.meta.url), 'utf8');
      const client = await withScript({ kind: 'transcript', sse });
      expect((await client.chat(ask)).text).toBe(text);
      await sim.close();
    }
  });

  it('applies message_replace (moderation)', async () => {
    const client = await withScript({ kind: 'answer', text: 'something bad', replaceWith: '内容已被审核替换' });
    expect((await client.chat(ask)).text).toBe('内容已被审核替换');
  });
});

describe('chat: failures map to named errors', () => {
  const http = (status: number, body: object | string): Script => ({ kind: 'http', status, body: typeof body === 'string' ? body : JSON.stringify(body) });

  it.each([
    [400, { status: 400, code: 'provider_quota_exceeded', message: 'quota' }, 'quota'],
    [429, { status: 429, code: 'rate_limit_error', message: 'Rate Limit Error' }, 'quota'],
    [429, { status: 429, code: 'too_many_requests', message: 'Too many requests.' }, 'busy'],
    [500, { status: 500, code: 'internal_server_error', message: 'The server encountered an internal error' }, 'busy'],
    [502, '<html>Bad Gateway</html>', 'busy'],
    [400, { status: 400, code: 'app_unavailable', message: 'App unavailable' }, 'config'],
    [400, { status: 400, code: 'provider_not_initialize', message: 'No valid model provider' }, 'config'],
    [403, { status: 403, code: 'workflow_version_execution_not_allowed', message: 'x' }, 'config'],
    [400, { status: 400, code: 'completion_request_error', message: 'Completion request failed.' }, 'failed'],
  ] as const)('HTTP %i %j → %s', async (status, body, kind) => {
    const client = await withScript(http(status, body));
    const err = await failure(client.chat(ask));
    expect(err).toMatchObject({ kind, status });
  });

  it('a wrong key is a configuration error (401)', async () => {
    sim = await startDifySim({ apiKey: KEY });
    const client = createDifyClient({ baseUrl: sim.url, apiKey: 'app-wrong', idleTimeoutMs: 5000 });
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'config', status: 401, backendCode: 'unauthorized' });
  });

  it('404 Conversation Not Exists.: asked again in a new conversation, and the caller told to forget the old one', async () => {
    sim = await startDifySim({ apiKey: KEY });
    const client = createDifyClient({ baseUrl: sim.url, apiKey: KEY, idleTimeoutMs: 5000 });
    let forgotten = 0;
    const answer = await client.chat({ ...ask, conversationId: '45701982-8118-4bc5-8e9b-64562b4555f2', onConversationGone: async () => void forgotten++ });
    expect(forgotten).toBe(1);
    expect(answer.conversationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.conversationId).not.toBe('45701982-8118-4bc5-8e9b-64562b4555f2');
    expect(sim.calls.map((c) => c.body.conversation_id)).toEqual(['45701982-8118-4bc5-8e9b-64562b4555f2', '']);
  });

  it('a gone conversation is still a named error where nothing can be asked again (no conversation was given)', async () => {
    sim = await startDifySim({ apiKey: KEY, script: () => ({ kind: 'http', status: 404, body: JSON.stringify({ code: 'not_found', message: 'Conversation Not Exists.' }) }) });
    const client = createDifyClient({ baseUrl: sim.url, apiKey: KEY, idleTimeoutMs: 5000 });
    expect(await failure(client.chat(ask))).toMatchObject({ status: 404, conversationGone: true });
  });

  it('an unreachable Dify is "down"', async () => {
    const client = createDifyClient({ baseUrl: 'http://127.0.0.1:1/v1', apiKey: KEY, idleTimeoutMs: 2000 });
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'down', code: 'dify_unreachable' });
  });

  it('slow headers past the idle timeout are "down"', async () => {
    const client = await withScript({ kind: 'http', status: 200, body: '', headerDelayMs: 1500 }, 300);
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'down', code: 'dify_timeout' });
  });

  it('a stream that goes silent is cut after the idle timeout', async () => {
    const client = await withScript({ kind: 'hang' }, 300);
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'down', code: 'dify_idle_timeout' });
  });

  it('pings keep a slow stream alive; only pings and no message_end is a failure', async () => {
    const client = await withScript({ kind: 'pings', count: 4, everyMs: 100 }, 250);
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'failed', code: 'dify_stream_incomplete' });
  });

  it('a stream of pings that never ends is cut by the overall answer timeout', async () => {
    const client = await withScript({ kind: 'pings', count: 1000, everyMs: 20 }, 250, 400);
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'failed', code: 'dify_answer_timeout' });
  });

  it('the overall timeout also bounds a wait for headers', async () => {
    const client = await withScript({ kind: 'answer', text: 'late', headerDelayMs: 2000 }, 5000, 300);
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'failed', code: 'dify_answer_timeout' });
  });

  it('a stop ends the call, before or during the stream', async () => {
    const client = await withScript({ kind: 'answer', text: '很长的回答'.repeat(20), durationMs: 3000, pieceChars: 2 });
    const stop = new Stop();
    const seen: string[] = [];
    const pending = client.chat(ask, { stop, onText: (t) => seen.push(t) });
    await new Promise((r) => setTimeout(r, 300));
    stop.stop();
    expect(await failure(pending)).toMatchObject({ code: 'dify_stopped' });
    expect(seen.length).toBeGreaterThan(0);
    // Dify is told to stop the run, for the same user, with the app's key.
    await new Promise((r) => setTimeout(r, 100));
    expect(sim.stops).toEqual([{ taskId: expect.stringMatching(/^[0-9a-f-]{36}$/), user: 'oUser', authorization: `Bearer ${KEY}` }]);
    const before = new Stop();
    before.stop();
    expect(await failure(client.chat(ask, { stop: before }))).toMatchObject({ code: 'dify_stopped' });
  });

  it('a stream cut mid-answer fails, and the partial text was reported', async () => {
    const client = await withScript({ kind: 'cut', text: '一半的回答' });
    const seen: string[] = [];
    const err = await failure(client.chat(ask, { onText: (t) => seen.push(t) }));
    expect(err.kind).toBe('failed');
    expect(seen.at(-1)).toBe('一半的回答');
  });

  it('an in-stream error event fails with its Dify code', async () => {
    const client = await withScript({ kind: 'stream-error', text: 'partial', status: 400, code: 'completion_request_error', message: 'boom' });
    expect(await failure(client.chat(ask))).toMatchObject({ kind: 'failed', backendCode: 'completion_request_error', code: 'dify_stream_error' });
  });

  it('a stream without message_end is not an answer', async () => {
    const client = await withScript({ kind: 'no-end', text: 'almost' });
    expect(await failure(client.chat(ask))).toMatchObject({ code: 'dify_stream_incomplete' });
  });

  it('invalid JSON in an event fails the answer', async () => {
    const client = await withScript({ kind: 'bad-json', text: 'abc' });
    expect(await failure(client.chat(ask))).toMatchObject({ code: 'dify_bad_event' });
  });

  it('never re-sends the generating POST by itself', async () => {
    const client = await withScript({ kind: 'cut', text: 'x' });
    await failure(client.chat(ask));
    expect(sim.calls).toHaveLength(1);
  });
});

describe('deleteConversation', () => {
  it('deletes at Dify with the user, and treats 404 as done', async () => {
    const client = await withScript({ kind: 'answer', text: 'hi' });
    const a = await client.chat(ask);
    const id = a.conversationId as string;
    await client.deleteConversation(id, 'oUser');
    expect(sim.deletes).toEqual([{ conversationId: id, user: 'oUser' }]);
    expect(sim.conversations.has(id)).toBe(false);
    await expect(client.deleteConversation(id, 'oUser')).resolves.toBeUndefined();
  });
});

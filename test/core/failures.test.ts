/** Every Dify failure mode ends in a defined state with an honest text; the next question works. */
import { afterEach, describe, expect, it } from 'vitest';
import type { Script } from '../../lib/sim/dify-sim';
import { DIFY_KEY, eventually, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';

let h: Harness;
afterEach(async () => h?.close());

const http = (status: number, body: object | string): Script => ({ kind: 'http', status, body: typeof body === 'string' ? body : JSON.stringify(body) });

const CASES: [string, Script, 'failQuota' | 'failBusy' | 'failConfig' | 'failDown' | 'failFailed', string][] = [
  ['plan quota (429 rate_limit_error)', http(429, { status: 429, code: 'rate_limit_error', message: 'Rate Limit Error' }), 'failQuota', 'rate_limit_error'],
  ['provider quota (400)', http(400, { status: 400, code: 'provider_quota_exceeded', message: 'quota' }), 'failQuota', 'provider_quota_exceeded'],
  ['concurrency limit (429 too_many_requests)', http(429, { status: 429, code: 'too_many_requests', message: 'Too many requests.' }), 'failBusy', 'too_many_requests'],
  ['internal error (500)', http(500, { status: 500, code: 'internal_server_error', message: 'x' }), 'failBusy', 'internal_server_error'],
  ['app unavailable (400)', http(400, { status: 400, code: 'app_unavailable', message: 'App unavailable' }), 'failConfig', 'app_unavailable'],
  ['bad request (400 invalid_param)', http(400, { code: 'invalid_param', message: 'x', status: 400 }), 'failConfig', 'invalid_param'],
  ['workflow not found (404 not about the conversation)', http(404, { status: 404, code: 'not_found', message: 'Workflow not found with id: x' }), 'failConfig', 'not_found'],
  ['stream cut mid-answer', { kind: 'cut', text: '一半' }, 'failFailed', ''],
  ['in-stream error event', { kind: 'stream-error', text: 'x', status: 400, code: 'completion_request_error', message: 'boom' }, 'failFailed', 'completion_request_error'],
  ['in-stream quota error', { kind: 'stream-error', text: '', status: 400, code: 'provider_quota_exceeded', message: 'q' }, 'failQuota', 'provider_quota_exceeded'],
  ['no message_end', { kind: 'no-end', text: 'almost' }, 'failFailed', ''],
  ['invalid JSON in an event', { kind: 'bad-json', text: 'x' }, 'failFailed', ''],
  ['pings only', { kind: 'pings', count: 2, everyMs: 50 }, 'failFailed', ''],
  ['slow headers past the Dify timeout', { kind: 'http', status: 200, body: '', headerDelayMs: 600 }, 'failDown', ''],
  ['silence past the Dify timeout', { kind: 'hang' }, 'failDown', ''],
];

describe('Dify failures', () => {
  it.each(CASES)('%s → the user reads an honest text, the log names the code, the next question works', async (_name, script, text, backendCode) => {
    let calls = 0;
    h = await startHarness({ env: { DIFY_TIMEOUT_MS: '300' }, dify: { script: (b) => (calls++ === 0 ? script : { kind: 'answer', text: `ok:${String(b.query)}` }) } });
    const r = await h.wechat.send('oFault', 'first');
    expect(r.notice).toBe(false);
    expect(r.text).toBe(h.config.texts[text]);
    const q = await h.app.store.message(`oFault:${r.msgId}`);
    expect(q?.status).toBe('failed');
    if (backendCode) expect(h.logs.some((l) => l.includes('"answer failed"') && l.includes(`"backendCode":"${backendCode}"`))).toBe(true);
    const next = await h.wechat.send('oFault', 'second');
    expect(next.text).toBe('ok:second');
    expect(h.logs.join('\n')).not.toContain(DIFY_KEY);
  });

  it('a ping-only stream that would never end fails after DIFY_ANSWER_TIMEOUT_MS with the usual text', async () => {
    h = await startHarness({ env: { DIFY_TIMEOUT_MS: '300', DIFY_ANSWER_TIMEOUT_MS: '500' }, dify: { script: () => ({ kind: 'pings', count: 10_000, everyMs: 50 }) } });
    const r = await h.wechat.send('oForever', 'hi');
    expect(r.text).toBe(h.config.texts.failFailed);
    expect(h.logs.some((l) => l.includes('"answer failed"') && l.includes('dify_answer_timeout'))).toBe(true);
  });

  it('a misconfigured key gives the configuration text', async () => {
    h = await startHarness({ env: { DIFY_API_KEY: 'app-wrong-key-000000' } });
    expect((await h.wechat.send('oKey', 'hi')).text).toBe(h.config.texts.failConfig);
    expect(h.logs.some((l) => l.includes('"status":401'))).toBe(true);
  });

  it('an unreachable Dify gives the "down" text', async () => {
    h = await startHarness({ env: { DIFY_BASE_URL: 'http://127.0.0.1:1/v1' } });
    expect((await h.wechat.send('oDown', 'hi')).text).toBe(h.config.texts.failDown);
  });

  it('a 100 KB answer is delivered in pages without loss', async () => {
    const big = Array.from({ length: 1000 }, (_, i) => `第${i}行：这是一段很长的回答内容。`).join('\n');
    h = await startHarness({ dify: { script: () => ({ kind: 'answer', text: big, pieceChars: 500 }) } });
    const r = await h.wechat.send('oBig', 'big');
    const q = await eventually(async () => (await h.app.store.message(`oBig:${r.msgId}`)) ?? undefined);
    expect(Buffer.byteLength(q.answer ?? '')).toBeGreaterThan(30_000);
    expect(q.pages?.join('').replace(/\(\d+\/\d+\) 回复 1 查看后续/g, '').replace(/\s+/g, '')).toBe(big.replace(/\s+/g, ''));
  });
});

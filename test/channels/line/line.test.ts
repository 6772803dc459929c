/**
 * LINE at the HTTP boundary, against the LINE simulator: the signature first (401 otherwise, nothing
 * stored), a re-delivered event answered once, the reply token while it lives and push after it,
 * long answers split at 5,000 units and 5 messages per call, groups answered only when mentioned
 * (history per group), unfollow deleting the user's data, the monthly quota logged once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startLineSim } from '../../../lib/sim/line-sim';
import type { LineSim } from '../../../lib/sim/line-sim';
import { eventually, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';

let h: Harness;
let line: LineSim;
afterEach(async () => {
  await h?.close();
  await line?.close();
});

const SECRET = '0123456789abcdef0123456789abcdef';
const ACCESS = 'line-access-token-0123456789';
const USER = 'U4af4980629000000000000000000001';

async function start(opts: HarnessOptions = {}, sim: { replyTokenMs?: number; pushQuota?: number; fail?: (path: string, call: number) => number | undefined } = {}): Promise<string> {
  line = await startLineSim({ channelSecret: SECRET, accessToken: ACCESS, ...sim });
  h = await startHarness({ ...opts, env: { LINE_CHANNEL_SECRET: SECRET, LINE_CHANNEL_ACCESS_TOKEN: ACCESS, LINE_API_BASE: line.url, ...opts.env } });
  return `${h.origin}/line`;
}

const echo = (durationMs = 0) => ({ script: (b: { query?: unknown }) => ({ kind: 'answer' as const, text: `答：${String(b.query)}`, durationMs }) });

describe('LINE', () => {
  it('refuses a bad signature with 401 before reading anything', async () => {
    const url = await start({ dify: echo() });
    const r = await line.deliver(url, [line.text(USER, '你好')], 'AAAA' + 'B'.repeat(40));
    expect(r.status).toBe(401);
    expect(h.dify.calls).toHaveLength(0);
    expect((await h.app.store.snapshot()).messages).toHaveLength(0);
    expect((await line.deliver(url, [line.text(USER, '你好')], '')).status).toBe(401);
  });

  it('answers a text with the reply token, once however often the event is re-delivered', async () => {
    const url = await start({ dify: echo(300) });
    const e = line.text(USER, '你好');
    expect((await line.deliver(url, [e])).status).toBe(200);
    expect((await line.deliver(url, [{ ...e, deliveryContext: { isRedelivery: true } }])).status).toBe(200);
    await eventually(() => line.replies.length === 1);
    expect(line.replies[0]).toEqual({ replyToken: e.replyToken, texts: ['答：你好'] });
    expect(line.loading).toEqual([USER]);
    await h.app.worker.idle();
    expect(h.dify.calls).toHaveLength(1);
    expect(h.dify.calls[0]?.body.user).toBe(`line:${USER}`);
    expect(line.pushes).toHaveLength(0);
  });

  it('pushes an answer that comes after the reply token’s lifetime', async () => {
    const url = await start({ dify: echo(1500) }, { replyTokenMs: 500 });
    // The bot uses a token for at most 50 s; here LINE's own (simulated) lifetime runs out first.
    await line.deliver(url, [line.text(USER, '慢问题')]);
    await eventually(() => line.pushes.length === 1, 8000);
    expect(line.pushes[0]).toEqual({ to: USER, texts: ['答：慢问题'] });
    expect(line.errors.some((e) => e.message === 'Invalid reply token')).toBe(true);
  });

  it('splits a long answer at 5,000 units and 5 messages per call', async () => {
    const long = Array.from({ length: 30 }, (_, i) => `第${i + 1}段 ` + '内容😀'.repeat(400)).join('\n\n');
    const url = await start({ dify: { script: () => ({ kind: 'answer', text: long }) } });
    await line.deliver(url, [line.text(USER, '长')]);
    await eventually(() => line.replies.length === 1 && line.pushes.length >= 1);
    await h.app.worker.idle();
    const all = [...line.replies.flatMap((r) => r.texts), ...line.pushes.flatMap((p) => p.texts)];
    expect(line.replies[0]?.texts).toHaveLength(5);
    for (const t of all) expect(t.length).toBeLessThanOrEqual(5000);
    expect(all.join('').replace(/\s/g, '')).toBe(long.replace(/\s/g, ''));
    expect(line.errors).toEqual([]);
  });

  it('in a group, answers only when mentioned, with one history per group', async () => {
    const url = await start({ dify: echo() });
    await line.deliver(url, [line.text(USER, '大家好', { group: 'Cgroup000000000000000000000000001' })]);
    await line.deliver(url, [line.text(USER, '机器人你好', { group: 'Cgroup000000000000000000000000001', mention: true })]);
    await eventually(() => line.replies.length === 1);
    expect(line.replies[0]?.texts).toEqual(['答：机器人你好']); // the mention itself is not part of the question
    expect(h.dify.calls.map((c) => c.body.user)).toEqual(['line:g:Cgroup000000000000000000000000001']);
    expect(line.loading).toEqual([]); // the loading animation is for 1:1 chats only
  });

  it('welcomes a follow, deletes the user’s data on unfollow, declines other messages, and /clear and /help work', async () => {
    const url = await start({ dify: echo() });
    await line.deliver(url, [line.follow(USER)]);
    await eventually(() => line.replies.length === 1);
    expect(line.replies[0]?.texts).toEqual([h.config.texts.welcome]);
    await line.deliver(url, [line.text(USER, '记住我')]);
    await eventually(() => line.replies.length === 2);
    await line.deliver(url, [line.text(USER, '/help')]);
    await eventually(() => line.replies.length === 3);
    expect(line.replies[2]?.texts).toEqual([h.config.texts.channelHelp]);
    await line.deliver(url, [{ ...line.text(USER, 'x'), message: { id: '1', type: 'sticker', packageId: '1', stickerId: '1' } }]);
    await eventually(() => line.replies.length === 4);
    expect(line.replies[3]?.texts).toEqual([h.config.texts.channelUnsupported]);
    expect((await h.app.store.snapshot()).messages.some((m) => m.user === `line:${USER}`)).toBe(true);
    await line.deliver(url, [line.unfollow(USER)]);
    const left = await h.app.store.snapshot();
    expect(left.messages.some((m) => m.user === `line:${USER}`)).toBe(false);
    expect(left.users.some((u) => u._id === `line:${USER}`)).toBe(false);
  });

  it('an outage of LINE’s API before anything arrived is tried again by the recovery sweep, and the answer arrives once', async () => {
    let down = true;
    const url = await start({ dify: echo(700) }, { replyTokenMs: 100, fail: (path) => (down && path === '/v2/bot/message/push' ? 503 : undefined) });
    await line.deliver(url, [line.text(USER, '断线')]);
    await eventually(() => line.errors.some((e) => e.status === 503), 8000);
    await eventually(() => h.logs.some((l) => l.includes('back in the outbox')));
    down = false;
    await eventually(async () => (await h.app.worker.sweep(), line.pushes.length === 1), 10_000);
    await h.app.worker.sweep();
    expect(line.pushes).toEqual([{ to: USER, texts: ['答：断线'] }]);
  });

  it('when the monthly push quota is used up, says so once in the log and does not retry', async () => {
    const url = await start({ dify: echo(800) }, { replyTokenMs: 100, pushQuota: 0 });
    await line.deliver(url, [line.text(USER, '一')]);
    await line.deliver(url, [line.text(USER, '二')]);
    await eventually(() => line.errors.filter((e) => e.status === 429).length === 2, 8000);
    await h.app.worker.idle();
    expect(h.logs.filter((l) => l.includes('monthly message quota used up'))).toHaveLength(1);
    expect(line.errors.filter((e) => e.status === 429)).toHaveLength(2); // one attempt per answer
  });
});

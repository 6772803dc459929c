/**
 * Discord at the HTTP boundary, against the Discord simulator: 401 to a bad signature (Discord's
 * probe), PING, `/ask` deferred then the original response edited, answers past 2,000 characters
 * as follow-ups, one model call for a re-sent interaction, `/clear` per channel, mentions never
 * pinging, and an answer too late for the interaction token logged, not sent.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startDiscordSim } from '../../../lib/sim/discord-sim';
import type { DiscordSim } from '../../../lib/sim/discord-sim';
import { eventually, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';

let h: Harness;
let discord: DiscordSim;
afterEach(async () => {
  await h?.close();
  await discord?.close();
});

async function start(opts: HarnessOptions = {}, sim: { tokenMs?: number } = {}): Promise<string> {
  discord = await startDiscordSim({ botToken: 'bot-token-000000000000000000', ...sim });
  h = await startHarness({ ...opts, env: { DISCORD_PUBLIC_KEY: discord.publicKeyHex, DISCORD_APPLICATION_ID: discord.applicationId, DISCORD_API_BASE: discord.url, ...opts.env } });
  return `${h.origin}/discord`;
}

const echo = (durationMs = 0) => ({ script: (b: { query?: unknown }) => ({ kind: 'answer' as const, text: `答：${String(b.query)}`, durationMs }) });
const CHANNEL = '1150000000000000001';

describe('Discord', () => {
  it('answers 401 to a bad signature and PONGs a PING', async () => {
    const url = await start();
    expect((await discord.send(url, discord.ping(), { badSignature: true })).status).toBe(401);
    expect((await discord.send(url, discord.ask(CHANNEL, 'x'), { badSignature: true })).status).toBe(401);
    expect(await discord.send(url, discord.ping())).toEqual({ status: 200, body: { type: 1 } });
    expect(h.dify.calls).toHaveLength(0);
  });

  it('refuses a validly signed interaction whose timestamp is stale or in the future (a replay), as it refuses a bad signature', async () => {
    const url = await start({ dify: echo() });
    const nowS = Math.floor(Date.now() / 1000);
    const dayOld = discord.ask(CHANNEL, '昨天的');
    expect(await discord.send(url, dayOld, { timestampS: nowS - 86_400 })).toMatchObject({ status: 401 });
    const ahead = discord.ask(CHANNEL, '明天的');
    expect(await discord.send(url, ahead, { timestampS: nowS + 600 })).toMatchObject({ status: 401 });
    expect((await discord.send(url, discord.ping(), { timestampS: nowS - 310 })).status).toBe(401);
    expect(h.logs.filter((l) => l.includes('stale_timestamp'))).toHaveLength(3);
    await h.app.worker.idle();
    expect(h.dify.calls).toHaveLength(0);
    expect(await h.app.store.message(`discord:${CHANNEL}:${dayOld.id}`)).toBeNull();
    expect(await h.app.store.message(`discord:${CHANNEL}:${ahead.id}`)).toBeNull();
    // Within the tolerance (a little clock skew) it is answered.
    const fresh = discord.ask(CHANNEL, '现在的');
    expect(await discord.send(url, fresh, { timestampS: nowS - 60 })).toEqual({ status: 200, body: { type: 5 } });
    await eventually(() => discord.edits.length === 1, 8000);
    expect(discord.edits[0]).toMatchObject({ token: fresh.token, content: '答：现在的' });
    expect(await h.app.store.message(`discord:${CHANNEL}:${fresh.id}`)).not.toBeNull(); // where the refused ones would be
  });

  it('SIGNATURE_TOLERANCE_S=0 turns the freshness check off, for Discord too', async () => {
    const url = await start({ dify: echo(), env: { SIGNATURE_TOLERANCE_S: '0' } });
    const old = discord.ask(CHANNEL, '旧');
    expect((await discord.send(url, old, { timestampS: Math.floor(Date.now() / 1000) - 86_400 })).status).toBe(200);
    await eventually(() => discord.edits.length === 1, 8000);
  });

  it('defers /ask, then edits the original response with the answer; a re-sent interaction is asked once', async () => {
    const url = await start({ dify: echo(200) });
    const ask = discord.ask(CHANNEL, '你好 <@1160000000000000001>');
    expect(await discord.send(url, ask)).toEqual({ status: 200, body: { type: 5 } });
    expect((await discord.send(url, ask)).body).toEqual({ type: 5 });
    await eventually(() => discord.edits.length === 1, 8000);
    expect(discord.edits[0]).toMatchObject({ token: ask.token, content: '答：你好 <@1160000000000000001>' });
    expect(discord.edits[0]?.allowedMentions).toEqual({ parse: [] }); // model output never pings
    await h.app.worker.idle();
    expect(h.dify.calls).toHaveLength(1);
    expect(h.dify.calls[0]?.body.user).toBe(`discord:${CHANNEL}`);
  });

  it('shows the answer as it is written (throttled edits of the original), then the whole answer once, last', async () => {
    const text = '这是一段慢慢写出来的回答，'.repeat(12);
    const url = await start({ dify: { script: () => ({ kind: 'answer', text, durationMs: 6000, pieceChars: 8 }) } });
    const ask = discord.ask(CHANNEL, '慢慢说');
    expect(await discord.send(url, ask)).toEqual({ status: 200, body: { type: 5 } });
    await eventually(() => discord.edits.at(-1)?.content === text, 15_000);
    await h.app.worker.idle();
    const contents = discord.edits.map((e) => e.content);
    // Growing partial answers, each marked unfinished, then the final one exactly once and last.
    const partial = contents.slice(0, -1);
    expect(partial.length).toBeGreaterThanOrEqual(2);
    for (const c of partial) expect(c.endsWith(' …') && text.startsWith(c.slice(0, -2))).toBe(true);
    for (let i = 1; i < partial.length; i++) expect((partial[i] as string).length).toBeGreaterThanOrEqual((partial[i - 1] as string).length);
    expect(contents.filter((c) => c === text)).toHaveLength(1);
    // Never faster than one edit per PROGRESS_EVERY_MS: 6 s of writing makes at most a handful.
    expect(partial.length).toBeLessThanOrEqual(6);
    expect(discord.edits.every((e) => e.token === ask.token)).toBe(true);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('sends an answer past 2,000 characters as the edited original plus follow-ups', async () => {
    const long = Array.from({ length: 9 }, (_, i) => `第${i + 1}段 ` + '内容'.repeat(300)).join('\n\n');
    const url = await start({ dify: { script: () => ({ kind: 'answer', text: long }) } });
    await discord.send(url, discord.ask(CHANNEL, '长'));
    await eventually(() => discord.edits.length === 1 && discord.followUps.length >= 2, 8000);
    await h.app.worker.idle();
    const parts = [discord.edits[0]?.content ?? '', ...discord.followUps.map((f) => f.content)];
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(2000);
    expect(parts.join('').replace(/\s/g, '')).toBe(long.replace(/\s/g, ''));
    expect(discord.errors).toEqual([]);
  });

  it('/clear forgets the channel’s conversation only; /help answers at once', async () => {
    const url = await start({ dify: echo() });
    await discord.send(url, discord.ask(CHANNEL, '一'));
    await eventually(() => discord.edits.length === 1, 8000);
    await h.app.worker.idle();
    expect((await h.app.store.user(`discord:${CHANNEL}`))?.conversationId).toBeDefined();
    const cleared = (await discord.send(url, discord.clear(CHANNEL))).body as { type: number; data: { content: string } };
    expect(cleared).toMatchObject({ type: 4, data: { content: h.config.texts.cleared } });
    expect((await h.app.store.user(`discord:${CHANNEL}`))?.conversationId).toBeUndefined();
    expect((await discord.send(url, discord.ask(CHANNEL, '/help'))).body).toMatchObject({ type: 4, data: { content: h.config.texts.channelHelp } });
  });

  it('an answer settled by a process that died before sending it is sent by the recovery sweep, once', async () => {
    await start();
    const i = discord.ask(CHANNEL, '遗留');
    const now = Date.now();
    const key = `discord:${CHANNEL}:${i.id}`;
    await h.app.store.claim({ _id: key, user: `discord:${CHANNEL}`, msgId: i.id, kind: 'question', createdAt: now - 5000, question: '遗留', status: 'pending', generation: 0, answer: '', pagesDelivered: 0, takers: [], attempts: 1, heartbeatAt: now - 5000, outbox: 'discord', replyHandle: { token: i.token, until: now + 600_000 } });
    await h.app.store.settle(key, 1, { status: 'answered', answer: '留下的回答', pages: ['留下的回答'] }, now - 4000);
    await Promise.all([h.app.worker.sweep(), h.app.worker.sweep()]);
    await h.app.worker.sweep();
    expect(discord.edits.map((e) => e.content)).toEqual(['留下的回答']);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('an answer that comes after the interaction token expired is logged, not sent', async () => {
    const url = await start({ dify: echo(1200), env: {} }, { tokenMs: 300 });
    await discord.send(url, discord.ask(CHANNEL, '慢'));
    await h.app.worker.idle();
    await eventually(() => discord.errors.length === 1 || h.logs.some((l) => l.includes('could not be sent')), 8000);
    expect(discord.edits).toHaveLength(0);
    expect(discord.errors[0]).toMatchObject({ status: 401, code: 50027 });
  });
});

/**
 * WeCom's intelligent bot over loopback against its simulator (lib/sim/wecom-bot-sim.ts): the URL
 * check with the empty receiveid; a stream polled to its end, each poll answered with the whole text
 * so far and `finish` last; a re-delivered message answered from the same stream and asked once;
 * groups answered only when mentioned, the mention cut; an answer that outlives WeCom's 6 minutes
 * (a stream closed at 5½, or a 7-minute answer) handed to response_url once; a wrong signature or
 * receiveid refused with 4xx and no model call; events; an answer's pictures in the final reply
 * (`msg_item`, checked by md5), never in a re-delivery's, and named only when response_url carries it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WecomCrypto } from '../../../lib/sim/wecom-common';
import { startWecomBotSim } from '../../../lib/sim/wecom-bot-sim';
import type { WecomBotSim, WecomBotSimOptions } from '../../../lib/sim/wecom-bot-sim';
import type { DifySimOptions } from '../../../lib/sim/dify-sim';
import { JumpClock } from '../../support/jump-clock';
import { eventually, sleep, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';
import { startPictureHost } from '../../support/picture-host';
import type { PictureHost } from '../../support/picture-host';

const TOKEN = 'BotToken123';
const AES = 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR';

let h: Harness | undefined;
let sim: WecomBotSim | undefined;
let pics: PictureHost | undefined;
afterEach(async () => {
  await sim?.close();
  await h?.close();
  await pics?.close();
  h = undefined;
  sim = undefined;
  pics = undefined;
});

const echo = (durationMs = 0, pieceChars = 12): Omit<DifySimOptions, 'apiKey'> => ({ script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs, pieceChars }) });

/**
 * Move the clock `ms` ahead in steps well inside SIGNATURE_TOLERANCE_S (300 s): a poll signed just before
 * a step is checked just after it, and one jump past the tolerance would refuse it as stale.
 */
async function jumpBy(clock: JumpClock, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 100_000) {
    clock.jump(Math.min(100_000, left));
    await sleep(30);
  }
}

async function start(opts: HarnessOptions = {}, simOpts: Partial<WecomBotSimOptions> = {}): Promise<{ h: Harness; sim: WecomBotSim }> {
  h = await startHarness({ ...opts, env: { WECOM_BOT_TOKEN: TOKEN, WECOM_BOT_AES_KEY: AES, ...opts.env } });
  sim = await startWecomBotSim({ url: `${h.origin}/wecom-bot`, token: TOKEN, encodingAesKey: AES, pollIntervalMs: 150, botName: 'SimBot', ...simOpts });
  return { h, sim };
}

describe('WeCom intelligent bot', () => {
  it('passes the URL check with the empty receiveid and refuses a bad signature', async () => {
    const { sim } = await start({ dify: echo() });
    const ok = await sim.verifyUrl();
    expect(ok.ok, ok.problem).toBe(true);
    const bad = await sim.verifyUrl({ badSignature: true });
    expect(bad.status).toBe(401);
  });

  it('streams an answer: each poll shows the whole text so far, finish comes last with the answer', async () => {
    const long = '这是一个慢慢写出来的回答，'.repeat(12);
    const { h, sim } = await start({ dify: { script: () => ({ kind: 'answer', text: long, durationMs: 2500, pieceChars: 4 }) } });
    const conv = await sim.send('zhangsan', '讲讲');
    expect(conv.problems).toEqual([]);
    expect(conv.state).toBe('finished');
    expect(conv.shown).toBe(long);
    const frames = conv.frames.filter((f) => f.accepted);
    expect(frames.length).toBeGreaterThan(3);
    // Replacement: each frame is the text so far, never shorter than the one before; only the last finishes.
    for (let i = 1; i < frames.length; i++) expect((frames[i]?.content ?? '').startsWith(frames[i - 1]?.content ?? '')).toBe(true);
    expect(frames.some((f) => f.content.length > 0 && f.content.length < long.length)).toBe(true);
    expect(frames.filter((f) => f.finish)).toHaveLength(1);
    expect(frames.at(-1)?.finish).toBe(true);
    expect(h.dify.calls[0]?.body.user).toBe('wecom-bot:u:zhangsan');
    const [q] = (await h.app.store.snapshot()).messages.filter((m) => m.kind === 'question');
    expect(q?.deliveredVia).toBe('wecom-stream');
    expect(sim.lateReplies).toHaveLength(0);
  });

  it('answers a re-delivered message from the same stream, asking the model once', async () => {
    const { h, sim } = await start({ dify: echo(1500) });
    const conv = sim.start('lisi', '重复');
    await eventually(() => conv.state === 'streaming', 5000);
    const again = await sim.redeliver(conv.msgid);
    expect(again.problem).toBeUndefined();
    expect((again.reply?.['stream'] as { id?: string } | undefined)?.id).toBe(conv.streamId);
    await conv.done;
    expect(conv.state).toBe('finished');
    expect(conv.shown).toBe('答：重复');
    expect(h.dify.calls).toHaveLength(1);
  });

  it('in a group answers only when mentioned, the mention cut from the question, with the group’s history', async () => {
    const { h, sim } = await start({ dify: echo(), env: { WECOM_BOT_NAME: 'SimBot' } });
    const conv = await sim.send('wangwu', '今天周几', { chatid: 'wrGroup01' });
    expect(conv.state).toBe('finished');
    expect(conv.shown).toBe('答：今天周几');
    expect(h.dify.calls[0]?.body.query).toBe('今天周几');
    expect(h.dify.calls[0]?.body.user).toBe('wecom-bot:g:wrGroup01');
    const silent = await sim.send('wangwu', '大家好', { chatid: 'wrGroup01', mention: false });
    expect(silent.state).toBe('no-reply');
    expect(h.dify.calls).toHaveLength(1);
  });

  it('without WECOM_BOT_NAME cuts a leading mention, and ignores group text that mentions nobody', async () => {
    const { h, sim } = await start({ dify: echo() });
    expect((await sim.send('wangwu', '几点了', { chatid: 'wrGroup02' })).shown).toBe('答：几点了');
    expect((await sim.send('wangwu', '闲聊', { chatid: 'wrGroup02', mention: false })).state).toBe('no-reply');
    expect(h.dify.calls.map((c) => c.body.query)).toEqual(['几点了']);
  });

  it('hands a 7-minute answer to response_url, once, after WeCom stopped polling', async () => {
    const clock = new JumpClock();
    const { h, sim } = await start({ clock, dify: echo(2500, 2) }, { now: () => clock.now() });
    const conv = sim.start('zhaoliu', '很难的问题');
    await eventually(() => conv.state === 'streaming' && conv.polls > 1, 5000);
    await jumpBy(clock, 7 * 60_000);
    await conv.done;
    expect(conv.state).toBe('expired');
    await eventually(() => sim.lateReplies.length === 1, 10_000);
    await h.app.worker.idle();
    await sleep(300);
    expect(sim.lateReplies).toHaveLength(1);
    expect(sim.lateReplies[0]).toMatchObject({ msgtype: 'markdown', content: '答：很难的问题', user: 'zhaoliu' });
    expect(conv.problems).toEqual([]);
    const [q] = (await h.app.store.snapshot()).messages.filter((m) => m.kind === 'question');
    expect(q?.deliveredVia).toBe('wecom-response-url');
    expect(h.dify.calls).toHaveLength(1);
  });

  it('closes a stream still being written 5½ minutes in, and sends the rest by response_url', async () => {
    const clock = new JumpClock();
    const { sim } = await start({ clock, dify: echo(3000, 2) }, { now: () => clock.now() });
    const conv = sim.start('sunqi', '慢问题');
    await eventually(() => conv.state === 'streaming' && conv.polls > 1, 5000);
    await jumpBy(clock, 5 * 60_000 + 40_000);
    await conv.done;
    expect(conv.state).toBe('finished');
    expect(conv.shown).toMatch(/正在思考中.*回答生成后会自动发给你/s);
    await eventually(() => sim.lateReplies.length === 1, 10_000);
    expect(sim.lateReplies[0]?.content).toBe('答：慢问题');
    expect(conv.problems).toEqual([]);
  });

  it('refuses a wrong signature or a callback for another receiveid with 4xx, and asks nothing', async () => {
    const { h } = await start({ dify: echo() });
    const post = (c: WecomCrypto) => {
      const encrypt = c.encrypt(JSON.stringify({ msgid: 'forged1', chattype: 'single', from: { userid: 'mallory' }, msgtype: 'text', text: { content: '伪造' } }));
      return fetch(`${h.origin}/wecom-bot?${c.query(encrypt, String(Math.floor(Date.now() / 1000)), '777')}`, { method: 'POST', body: JSON.stringify({ encrypt }) });
    };
    expect((await post(new WecomCrypto('WrongToken', AES, ''))).status).toBe(401);
    expect((await post(new WecomCrypto(TOKEN, AES, 'wwSomeCorp'))).status).toBe(400);
    await sleep(100);
    expect(h.dify.calls).toHaveLength(0);
    expect((await h.app.store.snapshot()).messages).toHaveLength(0);
  });

  it('answers help at once, welcomes on enter_chat, asks a voice by its transcript, and answers feedback with nothing', async () => {
    const { h, sim } = await start({ dify: echo() });
    const help = await sim.send('zhouba', '/help');
    expect(help.state).toBe('finished');
    expect(help.shown).toBe(h.config.texts.channelHelp);
    const enter = await sim.enterChat('zhouba');
    expect(enter?.problem).toBeUndefined();
    expect(enter?.reply).toEqual({ msgtype: 'text', text: { content: h.config.texts.welcome } });
    const voice = await sim.send('zhouba', { type: 'voice', transcript: '明天下雨吗' });
    expect(voice.shown).toBe('答：明天下雨吗');
    const fb = await sim.feedback('zhouba', 'fb1', 1);
    expect(fb.problem).toBeUndefined();
    const pic = await sim.send('zhouba', { type: 'image', bytes: Buffer.from('89504e470d0a1a0a', 'hex') });
    expect(pic.shown).toBe(h.config.texts.channelUnsupported);
    expect(h.dify.calls.map((c) => c.body.query)).toEqual(['明天下雨吗']);
  });
});

describe('WeCom intelligent bot: an answer’s pictures', () => {
  const notes = async (hh: Harness) => ((await hh.app.store.snapshot()).messages.find((m) => m.kind === 'question')?.parts ?? []).map((p) => p.sent?.['wecom-bot']);

  it('carries the JPG and PNG pictures in the final reply (base64 and md5), names the GIF, and never sends them twice', async () => {
    pics = await startPictureHost();
    const { h, sim } = await start({
      env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' },
      dify: { script: () => ({ kind: 'answer', text: `画好了：![猫](${pics?.url}/cat.png)`, durationMs: 600, files: [{ url: `${pics?.url}/drawn.jpg` }, { url: `${pics?.url}/anim.gif` }] }) },
    });
    const conv = await sim.send('pic1', '画');
    expect(conv.problems).toEqual([]);
    expect(conv.state).toBe('finished');
    expect(conv.shown).toBe('画好了：[猫]');
    // The simulator checked each picture's md5 against its bytes, and that it is a JPG or PNG.
    expect(conv.images.map((i) => i.bytes)).toEqual([pics.bytes['drawn.jpg'], pics.bytes['cat.png']]);
    // Only the finishing frame carries them.
    expect(conv.frames.filter((f) => f.images > 0).map((f) => f.finish)).toEqual([true]);
    expect(await notes(h)).toEqual(['image in the final reply', 'named in text (not_jpg_png)', 'image in the final reply']);
    // WeCom delivers the message again: the same text, no picture.
    const again = await sim.redeliver(conv.msgid);
    expect(again.problem).toBeUndefined();
    const stream = again.reply?.['stream'] as { finish?: boolean; content?: string; msg_item?: unknown } | undefined;
    expect(stream?.finish).toBe(true);
    expect(stream?.content).toBe('画好了：[猫]');
    expect(stream?.msg_item).toBeUndefined();
    expect(conv.images).toHaveLength(2);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('a picture not fetched in time costs no text: the stream finishes, the part says why', async () => {
    pics = await startPictureHost({ slowMs: 5000 });
    const { h, sim } = await start({ env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' }, dify: { script: () => ({ kind: 'answer', text: '慢图', files: [{ url: `${pics?.url}/slow.png` }, { url: `${pics?.url}/cat.png` }] }) } });
    const conv = await sim.send('pic2', '慢');
    expect(conv.problems).toEqual([]);
    expect(conv.state).toBe('finished');
    expect(conv.shown).toBe('慢图');
    expect(conv.images.map((i) => i.bytes)).toEqual([pics.bytes['cat.png']]);
    expect(await notes(h)).toEqual(['named in text (not fetched in time)', 'image in the final reply']);
  });

  it('an answer sent through response_url names its pictures: that call takes none', async () => {
    pics = await startPictureHost();
    const clock = new JumpClock();
    const { h, sim } = await start(
      { clock, env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' }, dify: { script: () => ({ kind: 'answer', text: `很久才画好 ![猫](${pics?.url}/cat.png)`, durationMs: 2500, pieceChars: 2 }) } },
      { now: () => clock.now() },
    );
    const conv = sim.start('pic3', '慢慢画');
    await eventually(() => conv.state === 'streaming' && conv.polls > 1, 5000);
    await jumpBy(clock, 7 * 60_000);
    await conv.done;
    expect(conv.state).toBe('expired');
    await eventually(() => sim.lateReplies.length === 1, 10_000);
    await h.app.worker.idle();
    expect(sim.lateReplies[0]).toMatchObject({ msgtype: 'markdown', content: '很久才画好 [猫]' });
    expect(conv.images).toEqual([]);
    expect(await notes(h)).toEqual(['named in text (response_url takes no pictures)']);
    expect(pics.hits.get('cat.png') ?? 0).toBe(0);
  });
});

/**
 * The intelligent-bot simulator (lib/sim/wecom-bot-sim.ts, docs/wecom.md) acting as WeCom against a tiny fake
 * bot written here with lib/channels/wxbiz (JSON bodies, receiveid ""): the handshake, a stream polled to
 * finish, the deadline and the one-shot response_url, groups with @-mentions, duplicates, the reply checks,
 * media and events. Protocol time is a number the tests move; polls run every few milliseconds.
 */
import { createHash, createDecipheriv } from 'crypto';
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { afterEach, describe, expect, it } from 'vitest';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../../lib/channels/wxbiz/crypto';
import { msgSignature } from '../../lib/channels/wxbiz/signature';
import { call } from '../../lib/util/http';
import { startWecomBotSim } from '../../lib/sim/wecom-bot-sim';
import type { BotConversation, StreamFrame, WecomBotSim, WecomBotSimOptions } from '../../lib/sim/wecom-bot-sim';

const TOKEN = 'AAAAA';
const AES = 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR';
const KEY = aesKeyFrom(AES);

type Msg = Record<string, unknown> & { msgid: string; msgtype: string };
/** What the fake bot answers: a plaintext JSON packet to encrypt, an empty body, a raw body, or nothing. */
type Answer = Record<string, unknown> | 'empty' | { raw: string; status?: number } | 'hang';

interface FakeBot {
  url: string;
  received: Msg[];
  answer: (m: Msg, nonce: string) => Answer;
  server: Server;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** The envelope WeCom asks for: all four fields, timestamp in seconds, the URL's nonce. */
function envelope(plain: Record<string, unknown>, nonce: string, o: { timestamp?: string; only?: boolean } = {}): string {
  const encrypt = encryptMessage(KEY, JSON.stringify(plain), '');
  if (o.only) return JSON.stringify({ encrypt });
  const timestamp = o.timestamp ?? String(Math.floor(Date.now() / 1000));
  return JSON.stringify({ encrypt, msgsignature: msgSignature(TOKEN, timestamp, nonce, encrypt), timestamp: Number(timestamp), nonce });
}

async function fakeBot(answer: FakeBot['answer']): Promise<FakeBot> {
  const bot: FakeBot = { url: '', received: [], answer, server: undefined as unknown as Server };
  const hanging = new Set<() => void>();
  bot.server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const q = new URL(req.url ?? '/', 'http://bot').searchParams;
      const nonce = q.get('nonce') ?? '';
      if (req.method === 'GET') {
        const echostr = q.get('echostr') ?? '';
        if (msgSignature(TOKEN, q.get('timestamp') ?? '', nonce, echostr) !== q.get('msg_signature')) return void res.writeHead(401).end();
        return void res.writeHead(200).end(decryptMessage(KEY, echostr, '').message);
      }
      const { encrypt } = JSON.parse(Buffer.concat(parts).toString('utf8')) as { encrypt: string };
      if (msgSignature(TOKEN, q.get('timestamp') ?? '', nonce, encrypt) !== q.get('msg_signature')) return void res.writeHead(401).end();
      const msg = JSON.parse(decryptMessage(KEY, encrypt, '').message) as Msg;
      bot.received.push(msg);
      const a = bot.answer(msg, nonce);
      if (a === 'hang') {
        const end = () => res.destroy();
        hanging.add(end);
        res.on('close', () => hanging.delete(end));
        return;
      }
      if (a === 'empty') return void res.writeHead(200).end();
      if ('raw' in a && typeof a['raw'] === 'string') return void res.writeHead(typeof a['status'] === 'number' ? a['status'] : 200).end(a['raw']);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(envelope(a, nonce));
    });
  });
  await new Promise<void>((resolve) => bot.server.listen(0, '127.0.0.1', resolve));
  bot.url = `http://127.0.0.1:${(bot.server.address() as AddressInfo).port}/aibot`;
  closers.push(async () => {
    for (const end of hanging) end();
    bot.server.closeAllConnections();
    await new Promise<void>((resolve) => bot.server.close(() => resolve()));
  });
  return bot;
}

/** A bot that streams `text` in `pieces` steps: the first reply shows piece 1, each poll one more, then finish. */
function streamer(text: string, pieces: number, extra: (finish: boolean) => Record<string, unknown> = () => ({})): FakeBot['answer'] {
  const progress = new Map<string, number>();
  const size = Math.ceil(text.length / pieces);
  return (m) => {
    const id = m.msgtype === 'stream' ? ((m['stream'] as { id: string }).id as string) : `s-${m.msgid}`;
    const step = (progress.get(id) ?? 0) + 1;
    progress.set(id, step);
    const finish = step >= pieces;
    return { msgtype: 'stream', stream: { id, finish, content: text.slice(0, step * size), ...extra(finish) } };
  };
}

async function sim(bot: FakeBot, o: Partial<WecomBotSimOptions> = {}): Promise<{ s: WecomBotSim; clock: { t: number } }> {
  const clock = { t: 1_700_000_000_000 };
  const s = await startWecomBotSim({ url: bot.url, token: TOKEN, encodingAesKey: AES, pollIntervalMs: 5, replyTimeoutMs: 5000, handshakeTimeoutMs: 5000, now: () => clock.t, ...o });
  closers.push(() => s.close());
  return { s, clock };
}

describe('intelligent bot: handshake and stream', () => {
  it('verifies the URL with an empty receiveid', async () => {
    const bot = await fakeBot(() => 'empty');
    const { s } = await sim(bot);
    expect((await s.verifyUrl()).ok).toBe(true);
    const bad = await s.verifyUrl({ badSignature: true });
    expect(bad.ok).toBe(false);
    expect(bad.status).toBe(401);
  });

  it('polls the stream until finish, recording the whole text shown after each poll', async () => {
    const bot = await fakeBot(streamer('Hello, streaming world!', 4, (finish) => (finish ? { feedback: { id: 'fb-1' } } : {})));
    const { s } = await sim(bot);
    const conv = await s.send('zhangsan', 'hi bot');
    expect(conv.state).toBe('finished');
    expect(conv.frames.map((f) => [f.source, f.content, f.finish])).toEqual([
      ['reply', 'Hello,', false],
      ['poll', 'Hello, strea', false],
      ['poll', 'Hello, streaming w', false],
      ['poll', 'Hello, streaming world!', true],
    ]);
    expect(conv.shown).toBe('Hello, streaming world!');
    expect(conv.polls).toBe(3);
    expect(conv.feedbackId).toBe('fb-1');
    const [first, ...polls] = bot.received;
    expect(first).toMatchObject({ msgid: conv.msgid, chattype: 'single', from: { userid: 'zhangsan' }, msgtype: 'text', text: { content: 'hi bot' }, response_url: conv.responseUrl });
    expect(first?.['chatid']).toBeUndefined();
    expect(polls.map((p) => [p.msgtype, (p['stream'] as { id: string }).id])).toEqual([
      ['stream', conv.streamId],
      ['stream', conv.streamId],
      ['stream', conv.streamId],
    ]);
    expect(new Set(polls.map((p) => p.msgid)).size).toBe(3);
  });

  it('stops polling at the deadline; response_url then works once, within the hour', async () => {
    const bot = await fakeBot((m) => ({ msgtype: 'stream', stream: { id: 'slow', finish: false, content: m.msgtype === 'stream' ? 'still thinking…' : 'thinking…' } }));
    const ref: { clock?: { t: number } } = {};
    const onFrame = (_c: BotConversation, f: StreamFrame) => {
      if (ref.clock && f.n === 3) ref.clock.t += 6 * 60_000; // six minutes pass during the third frame
    };
    const { s, clock } = await sim(bot, { onFrame });
    ref.clock = clock;
    const conv = await s.send('lisi', 'a hard question');
    expect(conv.state).toBe('expired');
    expect(conv.polls).toBe(2);
    expect(conv.shown).toBe('still thinking…');
    const polled = bot.received.length;

    const post = async (url: string, body: unknown) => JSON.parse((await call({ method: 'POST', url, body, timeoutMs: 5000 })).body.toString()) as Record<string, unknown>;
    expect(await post(conv.responseUrl, { msgtype: 'markdown', markdown: { content: '**the late answer**' } })).toMatchObject({ errcode: 0 });
    expect(await post(conv.responseUrl, { msgtype: 'markdown', markdown: { content: 'again' } })).toMatchObject({ errcode: 40058 });
    expect(conv.lateReplies.map((r) => r.content)).toEqual(['**the late answer**']);
    expect(bot.received).toHaveLength(polled); // no poll after the deadline

    bot.answer = () => 'empty';
    const quiet = await s.send('lisi', 'another');
    expect(quiet.state).toBe('no-reply');
    clock.t += 3_600_000;
    const late = await post(quiet.responseUrl, { msgtype: 'markdown', markdown: { content: 'too late' } });
    expect(late['errcode']).toBe(40058);
    expect(String(late['errmsg'])).toMatch(/expired/);
    const big = await s.send('lisi', 'third');
    expect(await post(big.responseUrl, { msgtype: 'markdown', markdown: { content: 'x'.repeat(20481) } })).toMatchObject({ errcode: 45002 });
    expect(await post(big.responseUrl, { msgtype: 'text', text: { content: 'x' } })).toMatchObject({ errcode: 40008 });
    expect(await post(big.responseUrl, { msgtype: 'markdown', markdown: { content: 'x'.repeat(20480) } })).toMatchObject({ errcode: 0 });
  });
});

describe('intelligent bot: messages and replies', () => {
  it('group messages carry chatid and the @-mention; media come only in single chats', async () => {
    const bot = await fakeBot(streamer('ok', 1));
    const { s } = await sim(bot, { botName: 'HelperBot' });
    const conv = await s.send('wangwu', 'what time is it?', { chatid: 'wrGROUP1' });
    expect(conv.state).toBe('finished');
    expect(bot.received[0]).toMatchObject({ chatid: 'wrGROUP1', chattype: 'group', text: { content: '@HelperBot what time is it?' } });
    await s.send('wangwu', 'no mention', { chatid: 'wrGROUP1', mention: false });
    expect(bot.received[1]).toMatchObject({ text: { content: 'no mention' } });
    expect(() => s.start('wangwu', { type: 'image', bytes: Buffer.from('x') }, { chatid: 'wrGROUP1' })).toThrow(/single chats/);
  });

  it('serves media URLs encrypted with the callback key (IV = its first 16 bytes) for 5 minutes', async () => {
    const bot = await fakeBot(() => 'empty');
    const { s, clock } = await sim(bot);
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.from('a picture of 37 bytes, or so it says')]);
    await s.send('zhaoliu', { type: 'image', bytes: jpeg });
    const url = (bot.received[0]?.['image'] as { url: string }).url;
    const enc = (await call({ url, timeoutMs: 5000 })).body;
    expect(enc.length % 32).toBe(0);
    const d = createDecipheriv('aes-256-cbc', KEY, KEY.subarray(0, 16));
    d.setAutoPadding(false);
    const plain = Buffer.concat([d.update(enc), d.final()]);
    expect(plain.subarray(0, plain.length - (plain.at(-1) as number)).equals(jpeg)).toBe(true);
    clock.t += 5 * 60_000 + 1;
    expect((await call({ url, timeoutMs: 5000 })).status).toBe(404);
    await s.send('zhaoliu', { type: 'voice', transcript: '语音转文字' });
    expect(bot.received[1]).toMatchObject({ msgtype: 'voice', voice: { content: '语音转文字' } });
  });

  it('redelivers a message on timeout with the same msgid, and sends duplicates on request', async () => {
    const bot = await fakeBot((_m) => (bot.received.length < 3 ? 'hang' : { msgtype: 'stream', stream: { id: 'dup', finish: true, content: 'once' } }));
    const { s } = await sim(bot, { replyTimeoutMs: 1000 });
    const conv = await s.send('qianqi', 'are you there?');
    expect(conv.deliveries.map((d) => d.outcome)).toEqual(['timeout', 'timeout', 'answered']);
    expect(new Set(bot.received.map((m) => m.msgid))).toEqual(new Set([conv.msgid]));
    const dup = await s.redeliver(conv.msgid);
    expect(bot.received.at(-1)?.msgid).toBe(conv.msgid);
    expect(dup.reply).toMatchObject({ msgtype: 'stream' });
    expect(conv.frames.at(-1)).toMatchObject({ source: 'duplicate', accepted: false });
    expect(conv.shown).toBe('once');
  });

  it('refuses envelopes with the wrong nonce, a millisecond timestamp or no signature (unless lenient)', async () => {
    const plain = { msgtype: 'stream', stream: { id: 'e1', finish: true, content: 'checked' } };
    const bot = await fakeBot((_m, nonce) => ({ raw: envelope(plain, `${nonce}0`) }));
    const { s } = await sim(bot);
    const wrongNonce = await s.send('a', 'x');
    expect(wrongNonce.state).toBe('failed');
    expect(wrongNonce.problems).toEqual(["reply nonce is not the callback URL's nonce"]);

    bot.answer = (_m, nonce) => ({ raw: envelope(plain, nonce, { timestamp: String(Date.now()) }) });
    expect((await s.send('a', 'x')).problems).toEqual(['reply timestamp is not Unix seconds']);

    bot.answer = (_m, nonce) => ({ raw: envelope(plain, nonce, { only: true }) });
    expect((await s.send('a', 'x')).problems[0]).toMatch(/lacks msgsignature/);
    s.settings.strictEnvelope = false;
    expect((await s.send('a', 'x')).shown).toBe('checked');

    bot.answer = () => ({ raw: 'not json' });
    expect((await s.send('a', 'x')).problems).toEqual(['reply is not JSON']);
    bot.answer = () => ({ raw: 'oops', status: 500 });
    const five = await s.send('a', 'x');
    expect(five.state).toBe('failed');
    expect(five.deliveries.map((d) => d.status)).toEqual([500, 500, 500]);
  });

  it('rejects content over 20480 bytes and images before finish; accepts checked images at finish', async () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.from('png body')]);
    const item = (bytes: Buffer, md5 = createHash('md5').update(bytes).digest('hex')) => ({ msgtype: 'image', image: { base64: bytes.toString('base64'), md5 } });
    const script: Answer[] = [
      { msgtype: 'stream', stream: { id: 'm1', finish: false, content: 'start' } },
      { msgtype: 'stream', stream: { id: 'm1', finish: false, content: 'x'.repeat(20481) } },
      { msgtype: 'stream', stream: { id: 'm1', finish: false, content: 'with image', msg_item: [item(png)] } },
      { msgtype: 'stream', stream: { id: 'm1', finish: true, content: 'bad md5', msg_item: [item(png, '0'.repeat(32))] } },
      { msgtype: 'stream', stream: { id: 'other', finish: true, content: 'wrong id' } },
      { msgtype: 'stream', stream: { id: 'm1', finish: true, content: 'x'.repeat(20480), msg_item: [item(png)] } },
    ];
    const bot = await fakeBot(() => script.shift() ?? 'empty');
    const { s } = await sim(bot);
    const conv = await s.send('b', 'draw');
    expect(conv.state).toBe('finished');
    expect(conv.frames.map((f) => [f.accepted, f.problem ?? ''])).toEqual([
      [true, ''],
      [false, 'stream.content over 20480 bytes'],
      [false, 'msg_item before finish'],
      [false, 'msg_item image md5 does not match its bytes'],
      [false, 'stream.id "other" is not "m1"'],
      [true, ''],
    ]);
    expect(conv.images.map((i) => i.bytes.equals(png))).toEqual([true]);
    expect(conv.shown).toHaveLength(20480);
  });

  it('shows the pictures of the accepted final reply only: not a GIF, and never a duplicate’s', async () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.from('png body')]);
    const gif = Buffer.from('GIF89a gif body');
    const item = (bytes: Buffer) => ({ msgtype: 'image', image: { base64: bytes.toString('base64'), md5: createHash('md5').update(bytes).digest('hex') } });
    const script: Answer[] = [
      { msgtype: 'stream', stream: { id: 'p1', finish: false, content: 'drawing' } },
      { msgtype: 'stream', stream: { id: 'p1', finish: true, content: 'a gif', msg_item: [item(gif)] } },
      { msgtype: 'stream', stream: { id: 'p1', finish: true, content: 'done', msg_item: [item(png)] } },
    ];
    const bot = await fakeBot(() => script.shift() ?? { msgtype: 'stream', stream: { id: 'p1', finish: true, content: 'done', msg_item: [item(png)] } });
    const { s } = await sim(bot);
    const conv = await s.send('g', 'draw');
    expect(conv.frames.map((f) => [f.accepted, f.images, f.problem ?? ''])).toEqual([
      [true, 0, ''],
      [false, 0, 'msg_item image is neither JPG nor PNG'],
      [true, 1, ''],
    ]);
    expect(conv.images.map((i) => i.bytes.equals(png))).toEqual([true]);
    // The message again: its answer carries the picture too, recorded but never shown.
    await s.redeliver(conv.msgid);
    expect(conv.frames.at(-1)).toMatchObject({ source: 'duplicate', accepted: false, images: 1 });
    expect(conv.images).toHaveLength(1);
  });

  it('allows 3 messages in flight per user; a 4th is refused', async () => {
    const bot = await fakeBot((m) => ({ msgtype: 'stream', stream: { id: m.msgtype === 'stream' ? (m['stream'] as { id: string }).id : m.msgid, finish: false, content: '…' } }));
    const { s } = await sim(bot, { pollIntervalMs: 20 });
    const running = [s.start('c', 'one'), s.start('c', 'two'), s.start('c', 'three')];
    const fourth = s.start('c', 'four');
    expect(fourth.state).toBe('refused');
    expect(s.inFlight('c')).toBe(3);
    expect(s.start('d', 'another user').state).toBe('pending');
    expect(running.map((c) => c.state)).toEqual(['pending', 'pending', 'pending']);
    expect(bot.received.filter((m) => m.msgtype === 'text').map((m) => (m['text'] as { content: string }).content)).not.toContain('four');
  });
});

describe('intelligent bot: events', () => {
  it('enter_chat once a day, feedback wants an empty packet, a template-card click gets one attempt', async () => {
    const bot = await fakeBot((m) => {
      const ev = m['event'] as { eventtype: string };
      if (ev.eventtype === 'enter_chat') return { msgtype: 'text', text: { content: 'Welcome!' } };
      if (ev.eventtype === 'feedback_event') return { msgtype: 'text', text: { content: 'thanks' } };
      return 'hang';
    });
    const { s, clock } = await sim(bot);
    const enter = await s.enterChat('e');
    expect(enter?.reply).toMatchObject({ msgtype: 'text', text: { content: 'Welcome!' } });
    expect(await s.enterChat('e')).toBeUndefined();
    clock.t += 24 * 3_600_000;
    expect(await s.enterChat('e')).toBeDefined();

    const fb = await s.feedback('e', 'fb-1', 2);
    expect(fb.problem).toMatch(/empty packet/);
    expect(bot.received.at(-1)?.['event']).toEqual({ eventtype: 'feedback_event', feedback_event: { id: 'fb-1', type: 2 } });

    s.settings.replyTimeoutMs = 1000; // the click hangs
    const card = await s.templateCardEvent('e', { eventKey: 'yes', taskId: 't1' });
    expect(card.deliveries.map((d) => d.outcome)).toEqual(['timeout']);
  });
});

/**
 * The WeCom simulator for the self-built app and customer service (lib/sim/wecom-sim.ts, docs/wecom.md),
 * driven over loopback HTTP: a tiny fake bot written here with lib/channels/wxbiz receives its callbacks,
 * and the API is called the way a client calls qyapi.weixin.qq.com. Protocol time is a number the tests move.
 */
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { afterEach, describe, expect, it } from 'vitest';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../../lib/channels/wxbiz/crypto';
import { msgSignature } from '../../lib/channels/wxbiz/signature';
import { parseXmlFields } from '../../lib/channels/wechat-oa/xml';
import { call } from '../../lib/util/http';
import { multipart } from '../../lib/util/multipart';
import { WecomCrypto } from '../../lib/sim/wecom-common';
import { startWecomSim } from '../../lib/sim/wecom-sim';
import type { WecomSim, WecomSimOptions } from '../../lib/sim/wecom-sim';

const TOKEN = 'QDG6eK';
const AES = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const CORP = 'ww5a1c9e3b7d20f864';
const KF = 'wkSimKf0000000001';
const KF2 = 'wkSimKf0000000002';

/** What the fake bot answers to one POST: a status and body, or no answer at all. */
type BotAnswer = { status?: number; body?: string } | 'hang';

interface Received {
  query: string;
  body: string;
  /** The decrypted inner XML's fields. */
  fields: Record<string, string>;
}

interface FakeBot {
  url: string;
  received: Received[];
  answer: (r: Received, n: number) => BotAnswer;
  server: Server;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** A minimal WeCom callback endpoint: verifies msg_signature, decrypts with the CorpID, answers as told. */
async function fakeBot(answer: FakeBot['answer'] = () => ({ body: '' })): Promise<FakeBot> {
  const key = aesKeyFrom(AES);
  const bot: FakeBot = { url: '', received: [], answer, server: undefined as unknown as Server };
  const hanging = new Set<() => void>();
  bot.server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://bot');
      const q = url.searchParams;
      if (req.method === 'GET') {
        const echostr = q.get('echostr') ?? '';
        if (msgSignature(TOKEN, q.get('timestamp') ?? '', q.get('nonce') ?? '', echostr) !== q.get('msg_signature')) {
          res.writeHead(401).end('bad signature');
          return;
        }
        res.writeHead(200).end(decryptMessage(key, echostr, CORP).message);
        return;
      }
      const body = Buffer.concat(parts).toString('utf8');
      const encrypt = parseXmlFields(body, 1 << 20)['Encrypt'] ?? '';
      if (msgSignature(TOKEN, q.get('timestamp') ?? '', q.get('nonce') ?? '', encrypt) !== q.get('msg_signature')) {
        res.writeHead(401).end('bad signature');
        return;
      }
      const r: Received = { query: url.search, body, fields: parseXmlFields(decryptMessage(key, encrypt, CORP).message, 1 << 20) };
      bot.received.push(r);
      const a = bot.answer(r, bot.received.length);
      if (a === 'hang') {
        const end = () => res.destroy();
        hanging.add(end);
        res.on('close', () => hanging.delete(end));
        return;
      }
      res.writeHead(a.status ?? 200).end(a.body ?? '');
    });
  });
  await new Promise<void>((resolve) => bot.server.listen(0, '127.0.0.1', resolve));
  bot.url = `http://127.0.0.1:${(bot.server.address() as AddressInfo).port}/wecom`;
  closers.push(async () => {
    for (const end of hanging) end();
    bot.server.closeAllConnections();
    await new Promise<void>((resolve) => bot.server.close(() => resolve()));
  });
  return bot;
}

/** The simulator; `clock.t` is its protocol time. */
async function sim(o: WecomSimOptions = {}, botUrl?: string): Promise<{ s: WecomSim; clock: { t: number } }> {
  const clock = { t: 1_700_000_000_000 };
  const s = await startWecomSim({
    corpId: CORP,
    apps: [
      { agentId: 1000002, secret: 'app-secret', ...(botUrl ? { callback: { url: botUrl, token: TOKEN, encodingAesKey: AES } } : {}) },
      { agentId: 1000003, secret: 'other-secret' },
    ],
    kfAccounts: [KF, KF2],
    // Generous: a busy machine must not turn an answer into a timeout. Tests of timeouts shorten it.
    callbackTimeoutMs: 5000,
    handshakeTimeoutMs: 5000,
    now: () => clock.t,
    ...o,
  });
  closers.push(() => s.close());
  return { s, clock };
}

async function api(s: WecomSim, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await call({ method: body === undefined ? 'GET' : 'POST', url: `${s.url}/cgi-bin/${path}`, ...(body === undefined ? {} : { body }), timeoutMs: 10_000 });
  return JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
}

async function token(s: WecomSim, secret = 'app-secret'): Promise<string> {
  const r = await api(s, `gettoken?corpid=${CORP}&corpsecret=${secret}`);
  expect(r['errcode']).toBe(0);
  return r['access_token'] as string;
}

const text = (touser: string, content: string, agentid = 1000002) => ({ touser, msgtype: 'text', agentid, text: { content } });

describe('WecomCrypto', () => {
  it('reproduces the official WeCom sample (Vector D): the echostr decrypts with the CorpID and is signed over echostr', () => {
    const c = new WecomCrypto('QDG6eK', 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', 'wx5823bf96d3bd56c7');
    const echostr = 'P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==';
    expect(c.decrypt(echostr)).toBe('1616140317555161061');
    expect(c.verify('5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3', '1409659589', '263014780', echostr)).toBe(true);
    expect(c.verify('5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3', '1409659589', '263014781', echostr)).toBe(false);
    expect(() => new WecomCrypto('QDG6eK', 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', 'wwOTHERCORP').decrypt(echostr)).toThrow();
  });

  it('with an empty receiveid reproduces the intelligent-bot vector', () => {
    const c = new WecomCrypto('AAAAA', 'A'.repeat(43), '');
    const echostr = c.encrypt('1234567890', Buffer.from('aaaabbbbccccdddd'));
    expect(echostr).toBe('DskVKDMGxFWLGSYszL/mETaQXt1CB7cAivrSMKWv4D4=');
    expect(c.sign('1700000000', '1234567', echostr)).toBe('b355324d2ae4f0c8f80fdd30c9fa5a83fa93a52f');
    expect(c.decrypt(echostr)).toBe('1234567890');
  });
});

describe('self-built app: callbacks', () => {
  it('verifies the URL: percent-encoded echostr, CorpID inside, the plaintext must come back exactly', async () => {
    const bot = await fakeBot();
    const { s } = await sim({}, bot.url);
    const good = await s.verifyUrl();
    expect(good.ok).toBe(true);
    expect(good.body).toBe(good.expected);
    expect(good.expected).toMatch(/^\d+$/);

    const refused = await s.verifyUrl({ badSignature: true });
    expect(refused.ok).toBe(false);
    expect(refused.status).toBe(401);

    // A server that adds a newline (or quotes) fails the check.
    bot.server.removeAllListeners('request');
    bot.server.on('request', (req, res) => {
      const q = new URL(req.url ?? '/', 'http://bot').searchParams;
      // The raw query keeps WeCom's percent-encoding: no bare + / = in echostr.
      expect(/echostr=([^&]*)/.exec(req.url ?? '')?.[1]).toMatch(/^[A-Za-z0-9%]+$/);
      res.writeHead(200).end(`${decryptMessage(aesKeyFrom(AES), q.get('echostr') ?? '', CORP).message}\n`);
    });
    const sloppy = await s.verifyUrl();
    expect(sloppy.ok).toBe(false);
    expect(sloppy.problem).toMatch(/not exactly/);
  });

  it('posts an encrypted XML message with MsgId and AgentID; an empty 200 is an acknowledgement', async () => {
    const bot = await fakeBot();
    const { s } = await sim({}, bot.url);
    const r = await s.memberSends('zhangsan', '你好');
    expect(r.acked).toBe(true);
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['ack']);
    const got = bot.received[0] as Received;
    expect(got.query).toMatch(/^\?msg_signature=[0-9a-f]{40}&timestamp=\d{10}&nonce=\d+$/);
    expect(parseXmlFields(got.body, 1 << 20)).toMatchObject({ ToUserName: CORP, AgentID: '1000002' });
    expect(got.fields).toMatchObject({ ToUserName: CORP, FromUserName: 'zhangsan', MsgType: 'text', Content: '你好', AgentID: '1000002', MsgId: r.msgId });
    expect(BigInt(r.msgId as string) > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
  });

  it('redelivers the same request after a timeout or a non-200, up to `deliveries` in all', async () => {
    const bot = await fakeBot((_r, n) => (n <= 2 ? 'hang' : { body: 'success' }));
    const { s } = await sim({ callbackTimeoutMs: 1000 }, bot.url);
    const r = await s.memberSends('lisi', 'hello');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['timeout', 'timeout', 'ack']);
    expect(bot.received).toHaveLength(3);
    expect(new Set(bot.received.map((x) => x.body + x.query)).size).toBe(1);

    bot.answer = () => ({ status: 500, body: 'oops' });
    const failed = await s.memberSends('lisi', 'again');
    expect(failed.acked).toBe(false);
    expect(failed.deliveries.map((d) => `${d.outcome}:${d.status}`)).toEqual(['http-error:500', 'http-error:500', 'http-error:500']);

    s.settings.deliveries = 4;
    const four = await s.memberSends('lisi', 'once more');
    expect(four.deliveries).toHaveLength(4);
  });

  it('sends a duplicate byte for byte on request', async () => {
    const bot = await fakeBot();
    const { s } = await sim({}, bot.url);
    const first = await s.memberSends('wangwu', 'dup?');
    const again = await s.redeliver(first.callbackId);
    expect(again.msgId).toBe(first.msgId);
    expect(bot.received).toHaveLength(2);
    expect(bot.received[1]?.body).toBe(bot.received[0]?.body);
    expect(bot.received[1]?.query).toBe(bot.received[0]?.query);
  });

  it('reads an encrypted passive reply, cuts text at 2048 bytes, and refuses plaintext or a bad signature', async () => {
    const key = aesKeyFrom(AES);
    const reply = (r: Received, content: string, sign = true): BotAnswer => {
      const inner = `<xml><ToUserName><![CDATA[${r.fields['FromUserName']}]]></ToUserName><FromUserName><![CDATA[${CORP}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content></xml>`;
      const enc = encryptMessage(key, inner, CORP);
      const sig = sign ? msgSignature(TOKEN, '1700000001', '42', enc) : 'f'.repeat(40);
      return { body: `<xml><Encrypt><![CDATA[${enc}]]></Encrypt><MsgSignature><![CDATA[${sig}]]></MsgSignature><TimeStamp>1700000001</TimeStamp><Nonce><![CDATA[42]]></Nonce></xml>` };
    };
    const long = '长'.repeat(1000); // 3000 bytes
    const bot = await fakeBot((r) => reply(r, long));
    const { s } = await sim({}, bot.url);
    const cut = await s.memberSends('zhaoliu', 'q');
    expect(cut.reply?.truncatedFrom).toBe(3000);
    expect(Buffer.byteLength(cut.reply?.content ?? '')).toBe(2046); // 682 whole characters
    expect(cut.reply?.content).toBe('长'.repeat(682));

    bot.answer = (r) => reply(r, 'short', false);
    const badSig = await s.memberSends('zhaoliu', 'q');
    expect(badSig.reply).toBeUndefined();
    expect(badSig.problem).toMatch(/MsgSignature/);
    expect(badSig.deliveries).toHaveLength(1); // a 200 is not retried

    bot.answer = () => ({ body: '<xml><ToUserName>zhaoliu</ToUserName><MsgType>text</MsgType><Content>plain</Content></xml>' });
    expect((await s.memberSends('zhaoliu', 'q')).problem).toMatch(/not encrypted/);
  });

  it('makes a member picture downloadable with media/get, and events carry no MsgId', async () => {
    const bot = await fakeBot();
    const { s } = await sim({}, bot.url);
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.from('picture bytes')]);
    await s.memberSends('zhangsan', { type: 'image', bytes: png });
    const img = bot.received[0]?.fields as Record<string, string>;
    expect(img['MsgType']).toBe('image');
    const t = await token(s);
    const got = await call({ url: `${s.url}/cgi-bin/media/get?access_token=${t}&media_id=${img['MediaId']}`, timeoutMs: 5000 });
    expect(got.body.equals(png)).toBe(true);
    expect(String(got.headers['content-disposition'])).toMatch(/filename\*=utf-8''/);
    expect((await call({ url: img['PicUrl'] as string, timeoutMs: 5000 })).body.equals(png)).toBe(true);
    expect(await api(s, `media/get?access_token=${t}&media_id=nope`)).toMatchObject({ errcode: 40007 });

    await s.memberSends('zhangsan', { type: 'voice' });
    expect(bot.received[1]?.fields).toMatchObject({ MsgType: 'voice', Format: 'amr' });

    const ev = await s.memberSends('zhangsan', { type: 'event', event: 'enter_agent' });
    expect(ev.msgId).toBeUndefined();
    expect(bot.received[2]?.fields).toMatchObject({ MsgType: 'event', Event: 'enter_agent', EventKey: '' });
    expect(bot.received[2]?.fields['MsgId']).toBeUndefined();
  });
});

describe('self-built app: API', () => {
  it('gettoken: the same token while valid, one per app; 40013, 40001; 42001 after expiry; 40014 after revocation', async () => {
    const { s, clock } = await sim();
    expect(await api(s, 'gettoken?corpid=wwWRONG&corpsecret=app-secret')).toMatchObject({ errcode: 40013 });
    expect(await api(s, `gettoken?corpid=${CORP}&corpsecret=nope`)).toMatchObject({ errcode: 40001 });
    const t1 = await token(s);
    clock.t += 3_600_000;
    const again = await api(s, `gettoken?corpid=${CORP}&corpsecret=app-secret`);
    expect(again['access_token']).toBe(t1);
    expect(again['expires_in']).toBe(3600);
    expect(await token(s, 'other-secret')).not.toBe(t1);

    clock.t += 3_600_000; // 7200 s after issue
    const expired = await api(s, `message/send?access_token=${t1}`, text('zhangsan', 'x'));
    expect(expired['errcode']).toBe(42001);
    expect(String(expired['errmsg'])).toMatch(/more info at .*e=42001/);
    const t2 = await token(s);
    expect(t2).not.toBe(t1);
    expect(await api(s, `message/send?access_token=${t2}`, text('zhangsan', 'x'))).toMatchObject({ errcode: 0 });

    s.revokeToken();
    expect(await api(s, `message/send?access_token=${t2}`, text('zhangsan', 'x'))).toMatchObject({ errcode: 40014 });
    const t3 = await token(s);
    expect(t3).not.toBe(t2);
    s.expireToken();
    expect(await api(s, `message/send?access_token=${t3}`, text('zhangsan', 'x'))).toMatchObject({ errcode: 42001 });
    expect(await api(s, 'message/send', text('zhangsan', 'x'))).toMatchObject({ errcode: 41001 });
    expect(s.issued).toHaveLength(4);
  });

  it('message/send: records text and markdown per member in order; 2048 bytes pass, 2049 answer 45002 (or are cut)', async () => {
    const { s } = await sim({ pluginUsers: ['plugin-user'] });
    const t = await token(s);
    const send = (body: unknown) => api(s, `message/send?access_token=${t}`, body);
    expect(await send(text('a|b', 'first'))).toMatchObject({ errcode: 0, invaliduser: '' });
    expect(await send({ touser: 'a', msgtype: 'markdown', agentid: 1000002, markdown: { content: '**second**' } })).toMatchObject({ errcode: 0 });
    expect(await send(text('a', 'x'.repeat(2048)))).toMatchObject({ errcode: 0 });
    expect(await send(text('a', 'x'.repeat(2049)))).toMatchObject({ errcode: 45002 });
    expect(await send({ touser: 'a', msgtype: 'markdown', agentid: 1000002, markdown: { content: '中'.repeat(683) } })).toMatchObject({ errcode: 45002 });
    expect(s.sentTo('a').map((m) => [m.msgtype, m.content?.slice(0, 10)])).toEqual([
      ['text', 'first'],
      ['markdown', '**second**'],
      ['text', 'xxxxxxxxxx'],
    ]);
    expect(s.sentTo('b').map((m) => m.content)).toEqual(['first']);

    s.settings.overLongText = 'truncate';
    expect(await send(text('a', '中'.repeat(700)))).toMatchObject({ errcode: 0 });
    const cut = s.sentTo('a').at(-1);
    expect(cut?.truncatedFrom).toBe(2100);
    expect(cut?.content).toBe('中'.repeat(682));

    await send({ touser: 'plugin-user', msgtype: 'markdown', agentid: 1000002, markdown: { content: '# hidden' } });
    expect(s.sentTo('plugin-user')[0]?.shown).toBe(false);
    expect(await send(text('a', ''))).toMatchObject({ errcode: 44004 });
    expect(await send({ touser: 'a', msgtype: 'bogus', agentid: 1000002, bogus: {} })).toMatchObject({ errcode: 40008 });
    expect(await send(text('a', 'x', 1000003))).toMatchObject({ errcode: 301002 });
    expect(await send(text('a', 'x', 42))).toMatchObject({ errcode: 40056 });
    expect(await send({ touser: '', msgtype: 'text', agentid: 1000002, text: { content: 'x' } })).toMatchObject({ errcode: 82001 });
  });

  it('message/send: invalid members are listed, all invalid is 81013', async () => {
    const { s } = await sim({ members: ['a', 'b'] });
    const t = await token(s);
    expect(await api(s, `message/send?access_token=${t}`, text('a|ghost', 'hi'))).toMatchObject({ errcode: 0, invaliduser: 'ghost' });
    expect(await api(s, `message/send?access_token=${t}`, text('ghost', 'hi'))).toMatchObject({ errcode: 81013 });
    expect(s.sent.map((m) => m.touser)).toEqual(['a']);
  });

  it('30 messages a minute per member: the 31st is silently dropped (or 45009), a minute later they flow again', async () => {
    const { s, clock } = await sim();
    const t = await token(s);
    for (let i = 1; i <= 31; i++) {
      expect(await api(s, `message/send?access_token=${t}`, text('busy', `m${i}`))).toMatchObject({ errcode: 0 });
      clock.t += 1000;
    }
    const msgs = s.sentTo('busy');
    expect(msgs.filter((m) => m.dropped).map((m) => m.content)).toEqual(['m31']);
    expect(msgs.filter((m) => m.shown)).toHaveLength(30);
    expect((await api(s, `message/send?access_token=${t}`, text('calm', 'other member'))).errcode).toBe(0);

    s.settings.overRate = 'error';
    expect(await api(s, `message/send?access_token=${t}`, text('busy', 'm32'))).toMatchObject({ errcode: 45009 });
    clock.t += 60_000; // the first minute's messages have left the window
    expect(await api(s, `message/send?access_token=${t}`, text('busy', 'm33'))).toMatchObject({ errcode: 0 });
    expect(s.sentTo('busy').at(-1)?.dropped).toBe(false);
  });

  it('60020 for an untrusted IP (gettoken only when switched), injected 48002 and -1, media/upload then send', async () => {
    const { s } = await sim();
    const t = await token(s);
    s.settings.trustedIps = ['10.1.2.3'];
    const refused = await api(s, `message/send?access_token=${t}`, text('a', 'x'));
    expect(refused['errcode']).toBe(60020);
    expect(String(refused['errmsg'])).toMatch(/from ip: 127\.0\.0\.1/);
    expect((await api(s, `gettoken?corpid=${CORP}&corpsecret=app-secret`)).errcode).toBe(0);
    s.settings.gettokenChecksIp = true;
    expect((await api(s, `gettoken?corpid=${CORP}&corpsecret=app-secret`)).errcode).toBe(60020);
    s.settings.trustedIps = undefined;

    s.inject('message/send', 48002);
    s.inject('message/send', -1);
    expect((await api(s, `message/send?access_token=${t}`, text('a', '1'))).errcode).toBe(48002);
    expect((await api(s, `message/send?access_token=${t}`, text('a', '2'))).errcode).toBe(-1);
    expect((await api(s, `message/send?access_token=${t}`, text('a', '3'))).errcode).toBe(0);
    expect(s.sentTo('a').map((m) => m.content)).toEqual(['3']);

    const file = multipart({}, { name: 'media', filename: 'pic.png', contentType: 'image/png', bytes: Buffer.from('89504e470d0a1a0a00', 'hex') });
    const up = JSON.parse((await call({ method: 'POST', url: `${s.url}/cgi-bin/media/upload?access_token=${t}&type=image`, headers: { 'Content-Type': file.contentType }, body: file.body, timeoutMs: 5000 })).body.toString()) as Record<string, unknown>;
    expect(up).toMatchObject({ errcode: 0, type: 'image' });
    expect(await api(s, `message/send?access_token=${t}`, { touser: 'a', msgtype: 'image', agentid: 1000002, image: { media_id: up['media_id'] } })).toMatchObject({ errcode: 0 });
    expect(s.sentTo('a').at(-1)).toMatchObject({ msgtype: 'image', mediaId: up['media_id'] });
    const tiny = multipart({}, { name: 'media', filename: 'x.png', contentType: 'image/png', bytes: Buffer.from('12345') });
    const small = await call({ method: 'POST', url: `${s.url}/cgi-bin/media/upload?access_token=${t}&type=image`, headers: { 'Content-Type': tiny.contentType }, body: tiny.body, timeoutMs: 5000 });
    expect(JSON.parse(small.body.toString())).toMatchObject({ errcode: 40006 });
    // An image is a JPG or a PNG by its bytes, whatever its declared type; a JPEG passes.
    const upload = async (bytes: Buffer) => {
      const f = multipart({}, { name: 'media', filename: 'x.png', contentType: 'image/png', bytes });
      return JSON.parse((await call({ method: 'POST', url: `${s.url}/cgi-bin/media/upload?access_token=${t}&type=image`, headers: { 'Content-Type': f.contentType }, body: f.body, timeoutMs: 5000 })).body.toString()) as Record<string, unknown>;
    };
    expect(await upload(Buffer.from('GIF89a-animated'))).toMatchObject({ errcode: 40005 });
    const jpeg = await upload(Buffer.from('ffd8ffe000104a46494600', 'hex'));
    expect(jpeg).toMatchObject({ errcode: 0, type: 'image' });
    expect(s.media.get(String(jpeg['media_id']))?.bytes.equals(Buffer.from('ffd8ffe000104a46494600', 'hex'))).toBe(true);
  });
});

/** A KF client that pulls the way a careful bot does: the callback's token, the stored cursor, until has_more is 0. */
async function pullAll(s: WecomSim, t: string, openKfid: string, syncToken: string | undefined, state: { cursor?: string }, limit?: number): Promise<{ pages: number[]; msgs: Record<string, unknown>[] }> {
  const pages: number[] = [];
  const msgs: Record<string, unknown>[] = [];
  for (;;) {
    const r = await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: openKfid, ...(syncToken ? { token: syncToken } : {}), ...(state.cursor ? { cursor: state.cursor } : {}), ...(limit ? { limit } : {}) });
    expect(r['errcode']).toBe(0);
    const list = r['msg_list'] as Record<string, unknown>[];
    pages.push(list.length);
    msgs.push(...list);
    state.cursor = r['next_cursor'] as string;
    if (r['has_more'] !== 1) return { pages, msgs };
  }
}

const syncTokenOf = (r: Received) => r.fields['Token'] as string;

describe('customer service (KF)', () => {
  it('the callback only signals (Token, OpenKfId); sync_msg pages with a cursor, an empty page with has_more 1, per account', async () => {
    const bot = await fakeBot();
    const { s } = await sim({ kfPageMax: 3 }, bot.url);
    const t = await token(s);
    for (let i = 1; i <= 4; i++) await s.customerSends(KF, 'wmAlice', `a${i}`, { notify: false });
    for (let i = 1; i <= 3; i++) await s.customerSends(KF, 'wmBob', `b${i}`, { notify: false });
    await s.customerSends(KF2, 'wmCarol', 'c1');
    const { callback } = await s.customerSends(KF, 'wmBob', 'b4');
    expect(callback?.acked).toBe(true);
    const notice = bot.received.at(-1) as Received;
    expect(notice.fields).toMatchObject({ ToUserName: CORP, MsgType: 'event', Event: 'kf_msg_or_event', OpenKfId: KF });
    expect(notice.fields['Content']).toBeUndefined();

    s.injectEmptyPage(KF);
    const state: { cursor?: string } = {};
    const all = await pullAll(s, t, KF, syncTokenOf(notice), state);
    expect(all.pages).toEqual([0, 3, 3, 2]);
    expect(all.msgs.map((m) => (m['text'] as { content: string }).content)).toEqual(['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'b3', 'b4']);
    expect(all.msgs[0]).toMatchObject({ open_kfid: KF, external_userid: 'wmAlice', origin: 3, msgtype: 'text' });
    expect(typeof all.msgs[0]?.['send_time']).toBe('number');

    // Nothing new: one empty page, has_more 0. The other account has its own log.
    expect((await pullAll(s, t, KF, undefined, state)).pages).toEqual([0]);
    const other = await pullAll(s, t, KF2, undefined, {});
    expect(other.msgs.map((m) => m['external_userid'])).toEqual(['wmCarol']);

    // A message sent through send_msg never comes back in a pull.
    expect((await api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmAlice', open_kfid: KF, msgtype: 'text', text: { content: 'reply' } })).errcode).toBe(0);
    expect((await pullAll(s, t, KF, undefined, state)).msgs).toEqual([]);
  });

  it('an old cursor returns the same messages again; bad token, cursor, open_kfid and an oversized limit are refused or noted', async () => {
    const bot = await fakeBot();
    const { s, clock } = await sim({}, bot.url);
    const t = await token(s);
    await s.customerSends(KF, 'wmAlice', 'one');
    const first = await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: KF, token: syncTokenOf(bot.received[0] as Received) });
    await s.customerSends(KF, 'wmAlice', 'two');
    const cursor = first['next_cursor'] as string;
    const a = await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: KF, cursor });
    const b = await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: KF, cursor });
    expect((a['msg_list'] as { msgid: string }[]).map((m) => m.msgid)).toEqual((b['msg_list'] as { msgid: string }[]).map((m) => m.msgid));
    expect(a['msg_list']).toHaveLength(1);
    expect(Buffer.byteLength(cursor)).toBeLessThanOrEqual(64);

    clock.t += 10 * 60_000 + 1;
    expect(await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: KF, token: syncTokenOf(bot.received[1] as Received) })).toMatchObject({ errcode: 95007 });
    expect(await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: KF, cursor: 'garbage' })).toMatchObject({ errcode: 40058 });
    expect(await api(s, `kf/sync_msg?access_token=${t}`, {})).toMatchObject({ errcode: 95004 });
    expect(await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: 'wkNOPE' })).toMatchObject({ errcode: 95000 });
    expect(await api(s, `kf/sync_msg?access_token=${t}`, { open_kfid: KF, limit: 5000 })).toMatchObject({ errcode: 0 });
    expect(s.violations).toEqual(['sync_msg limit 5000 is over the maximum 1000']);
    // Only the app listed for customer service may call it.
    expect(await api(s, `kf/sync_msg?access_token=${await token(s, 'other-secret')}`, { open_kfid: KF })).toMatchObject({ errcode: 48002 });
  });

  it('a burst of 20 customer messages in one sync window: one notice, and a cursor loop gets all 20', async () => {
    const bot = await fakeBot();
    const { s } = await sim({ kfPageMax: 8 }, bot.url);
    const t = await token(s);
    const items = Array.from({ length: 20 }, (_, i) => ({ user: `wm${i % 4}`, push: `burst ${i}` }));
    const burst = await s.customerBurst(KF, items);
    expect(burst.callback.acked).toBe(true);
    expect(bot.received).toHaveLength(1);
    const got = await pullAll(s, t, KF, syncTokenOf(bot.received[0] as Received), {});
    expect(got.pages).toEqual([8, 8, 4]);
    expect(got.msgs.map((m) => m['msgid'])).toEqual(burst.msgids);
    // The client's own limit pages too.
    const limited = await pullAll(s, t, KF, undefined, {}, 7);
    expect(limited.pages).toEqual([7, 7, 6]);
    expect(limited.msgs.map((m) => m['msgid'])).toEqual(burst.msgids);
    // A client reading only the last item of the first page (as several bridges do) would see 1 of 20.
    expect(new Set(got.msgs.map((m) => m['external_userid']))).toEqual(new Set(['wm0', 'wm1', 'wm2', 'wm3']));
  });

  it('kf/send_msg: five messages per customer message within 48 hours; the sixth and the late one fail at the edge', async () => {
    const bot = await fakeBot();
    const { s, clock } = await sim({ tokenTtlS: 7 * 86_400 }, bot.url);
    const t = await token(s);
    const send = (content: string, touser = 'wmAlice') => api(s, `kf/send_msg?access_token=${t}`, { touser, open_kfid: KF, msgtype: 'text', text: { content } });
    expect(await send('before any message')).toMatchObject({ errcode: 40096 });
    await s.customerSends(KF, 'wmAlice', 'hi');
    for (let i = 1; i <= 5; i++) expect(await send(`r${i}`)).toMatchObject({ errcode: 0 });
    expect(await send('r6')).toMatchObject({ errcode: 95001 });
    await s.customerSends(KF, 'wmAlice', 'more');
    expect(await send('r7')).toMatchObject({ errcode: 0 });
    clock.t += 48 * 3_600_000; // exactly 48 h after the customer's message: still inside
    expect(await send('r8')).toMatchObject({ errcode: 0 });
    clock.t += 1;
    expect(await send('r9')).toMatchObject({ errcode: 95001 });
    expect(s.kfSentTo(KF, 'wmAlice').map((m) => m.content)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r7', 'r8']);
    await s.customerSends(KF, 'wmAlice', 'back');
    expect(await send('中'.repeat(683))).toMatchObject({ errcode: 45002 });
    expect(await api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmAlice', open_kfid: KF, msgtype: 'markdown', markdown: { content: '**no**' } })).toMatchObject({ errcode: 40008 });
    // msgid: caller-chosen ids are unique per account.
    const withId = (msgid: string) => api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmAlice', open_kfid: KF, msgid, msgtype: 'text', text: { content: msgid } });
    expect(await withId('opt_1')).toMatchObject({ errcode: 0, msgid: 'opt_1' });
    expect(await withId('opt_1')).toMatchObject({ errcode: 40058 });
    expect(await withId('bad id!')).toMatchObject({ errcode: 40058 });
    // An image takes a live media_id, and is recorded with it.
    const picture = (media_id: string) => api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmAlice', open_kfid: KF, msgtype: 'image', image: { media_id } });
    expect(await picture('no-such-media')).toMatchObject({ errcode: 40007 });
    const mediaId = s.addMedia({ type: 'image', bytes: Buffer.from('89504e470d0a1a0a00', 'hex') });
    expect(await picture(mediaId)).toMatchObject({ errcode: 0 });
    expect(s.kfSentTo(KF, 'wmAlice').at(-1)).toMatchObject({ msgtype: 'image', mediaId });
  });

  it('in async-fail mode the sixth message is accepted, then a msg_send_fail event arrives', async () => {
    const bot = await fakeBot();
    const { s } = await sim({ kfLimitMode: 'async-fail' }, bot.url);
    const t = await token(s);
    await s.customerSends(KF, 'wmAlice', 'hi');
    const cur: { cursor?: string } = {};
    await pullAll(s, t, KF, undefined, cur);
    for (let i = 1; i <= 6; i++) expect((await api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmAlice', open_kfid: KF, msgtype: 'text', text: { content: `r${i}` } })).errcode).toBe(0);
    await s.idle();
    expect(bot.received).toHaveLength(2);
    const ev = (await pullAll(s, t, KF, syncTokenOf(bot.received[1] as Received), cur)).msgs;
    const sixth = s.kfSentTo(KF, 'wmAlice')[5];
    expect(sixth?.failType).toBe(6);
    expect(ev).toEqual([expect.objectContaining({ origin: 4, msgtype: 'event', event: expect.objectContaining({ event_type: 'msg_send_fail', fail_msgid: sixth?.msgid, fail_type: 6 }) })]);
  });

  it('95018 while a human servicer has the session; service_state get and trans', async () => {
    const bot = await fakeBot();
    const { s } = await sim({}, bot.url);
    const t = await token(s);
    await s.customerSends(KF, 'wmAlice', 'I want a human');
    expect(await api(s, `kf/service_state/get?access_token=${t}`, { open_kfid: KF, external_userid: 'wmAlice' })).toMatchObject({ errcode: 0, service_state: 0 });
    s.setServiceState(KF, 'wmAlice', 3, 'servicer01');
    expect(await api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmAlice', open_kfid: KF, msgtype: 'text', text: { content: 'bot?' } })).toMatchObject({ errcode: 95018 });
    expect(await api(s, `kf/service_state/get?access_token=${t}`, { open_kfid: KF, external_userid: 'wmAlice' })).toMatchObject({ service_state: 3, servicer_userid: 'servicer01' });
    await s.servicerSends(KF, 'wmAlice', 'servicer01', 'hello, I am human');
    const log = await pullAll(s, t, KF, undefined, {});
    expect(log.msgs.at(-1)).toMatchObject({ origin: 5, servicer_userid: 'servicer01' });

    await s.customerSends(KF, 'wmBob', 'hi');
    expect(await api(s, `kf/service_state/trans?access_token=${t}`, { open_kfid: KF, external_userid: 'wmBob', service_state: 1 })).toMatchObject({ errcode: 0 });
    const toHuman = await api(s, `kf/service_state/trans?access_token=${t}`, { open_kfid: KF, external_userid: 'wmBob', service_state: 3, servicer_userid: 'servicer02' });
    expect(toHuman).toMatchObject({ errcode: 0 });
    expect(typeof toHuman['msg_code']).toBe('string');
    expect(await api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmBob', open_kfid: KF, msgtype: 'text', text: { content: 'bot?' } })).toMatchObject({ errcode: 95018 });
    expect(await api(s, `kf/service_state/trans?access_token=${t}`, { open_kfid: KF, external_userid: 'wmBob', service_state: 1 })).toMatchObject({ errcode: 95016 });
  });

  it('enter_session carries a single-use welcome_code valid 20 s; none again within 48 h', async () => {
    const bot = await fakeBot();
    const { s, clock } = await sim({}, bot.url);
    const t = await token(s);
    const welcome = (code: string | undefined, content = 'Welcome!') => api(s, `kf/send_msg_on_event?access_token=${t}`, { code, msgtype: 'text', text: { content } });

    const enter = await s.customerEnters(KF, 'wmNew', { scene: 's1', sceneParam: 'from-ad' });
    expect(enter.welcomeCode).toBeDefined();
    const ev = (await pullAll(s, t, KF, syncTokenOf(bot.received[0] as Received), {})).msgs[0];
    expect(ev).toMatchObject({ origin: 4, msgtype: 'event', event: { event_type: 'enter_session', scene: 's1', scene_param: 'from-ad', welcome_code: enter.welcomeCode } });
    clock.t += 19_999;
    expect(await welcome(enter.welcomeCode, '**md**')).toMatchObject({ errcode: 0 });
    expect(await welcome(enter.welcomeCode)).toMatchObject({ errcode: 40058 });
    expect(s.kfSentTo(KF, 'wmNew')).toEqual([expect.objectContaining({ via: 'send_msg_on_event', content: '**md**' })]);

    const again = await s.customerEnters(KF, 'wmNew');
    expect(again.welcomeCode).toBeUndefined();

    const late = await s.customerEnters(KF, 'wmLate');
    clock.t += 20_000;
    expect(await welcome(late.welcomeCode)).toMatchObject({ errcode: 40058 });
    expect(await welcome('never-issued')).toMatchObject({ errcode: 40058 });
    // The welcome is no reply window: a send_msg before the customer writes is refused.
    expect(await api(s, `kf/send_msg?access_token=${t}`, { touser: 'wmLate', open_kfid: KF, msgtype: 'text', text: { content: 'x' } })).toMatchObject({ errcode: 95001 });
  });
});

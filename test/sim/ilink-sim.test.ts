/**
 * The iLink simulator itself (lib/sim/ilink-sim.ts, docs/ilink.md), driven over loopback HTTP the way the
 * official client calls it: login through every QR status, the long poll and its cursor, uint64 ids,
 * duplicates, the context_token ledger, -14, the CDN with real AES-128-ECB in both key encodings, risk control.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../../lib/util/http';
import { startIlinkSim } from '../../lib/sim/ilink-sim';
import type { IlinkSim, IlinkSimOptions } from '../../lib/sim/ilink-sim';
import { eventually } from '../support/harness';

const sims: IlinkSim[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function sim(o: IlinkSimOptions = {}): Promise<IlinkSim> {
  const s = await startIlinkSim({ pollHoldMs: 50, qrHoldMs: 50, ...o });
  sims.push(s);
  return s;
}

const USER = 'u1xyz@im.wechat';

/** The headers of the official client 2.4.9 (docs/ilink.md). */
function headers(token?: string, omit: string[] = []): Record<string, string> {
  const h: Record<string, string> = {
    'Content-Type': 'application/json',
    AuthorizationType: 'ilink_bot_token',
    'X-WECHAT-UIN': Buffer.from(String(randomBytes(4).readUInt32BE(0))).toString('base64'),
    'iLink-App-Id': 'bot',
    'iLink-App-ClientVersion': String((2 << 16) | (4 << 8) | 9),
    ...(token ? { Authorization: `Bearer ${token}` } : {}),
  };
  for (const k of omit) delete h[k];
  return h;
}

interface Answer {
  status: number;
  text: string;
  json: Record<string, unknown>;
}

async function api(base: string, op: string, token: string | undefined, body: Record<string, unknown> = {}, o: { omit?: string[]; timeoutMs?: number } = {}): Promise<Answer> {
  const r = await call({ method: 'POST', url: `${base}/ilink/bot/${op}`, headers: headers(token, o.omit), body: { ...body, base_info: { channel_version: '2.4.9', bot_agent: 'SimTest/1.0' } }, timeoutMs: o.timeoutMs ?? 20_000 });
  const text = r.body.toString('utf8');
  return { status: r.status, text, json: JSON.parse(text) as Record<string, unknown> };
}

async function qrStatus(base: string, qrcode: string, verifyCode?: string): Promise<Record<string, unknown>> {
  const q = `qrcode=${encodeURIComponent(qrcode)}${verifyCode !== undefined ? `&verify_code=${verifyCode}` : ''}`;
  const r = await call({ url: `${base}/ilink/bot/get_qrcode_status?${q}`, headers: { 'iLink-App-Id': 'bot', 'iLink-App-ClientVersion': '132105' }, timeoutMs: 20_000 });
  return JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
}

async function newQr(base: string, localTokens?: string[]): Promise<string> {
  const r = await call({
    method: localTokens ? 'POST' : 'GET',
    url: `${base}/ilink/bot/get_bot_qrcode?bot_type=3`,
    headers: { 'Content-Type': 'application/json', 'iLink-App-Id': 'bot', 'iLink-App-ClientVersion': '132105' },
    ...(localTokens ? { body: { local_token_list: localTokens } } : {}),
    timeoutMs: 5_000,
  });
  const json = JSON.parse(r.body.toString('utf8')) as { qrcode: string; qrcode_img_content: string };
  expect(json.qrcode_img_content).toContain(`qrcode=${json.qrcode}`);
  return json.qrcode;
}

/** Wait (no timing asserted) until the simulator has seen something. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/** The first message id in an answer, read from the raw text (lossless). */
const rawIds = (text: string, field = 'message_id') => [...text.matchAll(new RegExp(`"${field}":("?)(\\d+)\\1`, 'g'))].map((m) => m[2] as string);

async function poll(s: IlinkSim, token: string, cursor: string, timeoutMs?: number): Promise<Answer> {
  return api(s.url, 'getupdates', token, { get_updates_buf: cursor }, timeoutMs ? { timeoutMs } : {});
}

/** Log in and say notifystart, as the official client does at start. */
async function ready(s: IlinkSim, user = 'o9owner@im.wechat') {
  const account = s.login({ user });
  expect((await api(s.url, 'msg/notifystart', account.token)).json).toEqual({ ret: 0, errmsg: '' });
  return account;
}

const aes = (mode: 'enc' | 'dec', data: Buffer, key: Buffer) => {
  const c = mode === 'enc' ? createCipheriv('aes-128-ecb', key, null) : createDecipheriv('aes-128-ecb', key, null);
  return Buffer.concat([c.update(data), c.final()]);
};

describe('QR login', () => {
  it('walks wait → scaned → need_verifycode → confirmed, holding the status call until something changes', async () => {
    const s = await sim({ qrHoldMs: 30_000 });
    const qrcode = await newQr(s.url);
    // Held: the poll is received and stays unanswered until the phone scans.
    const held = qrStatus(s.url, qrcode);
    await until(() => s.requests.some((r) => r.op === 'get_qrcode_status'));
    const heldRecord = s.requests.find((r) => r.op === 'get_qrcode_status');
    expect(heldRecord?.answer).toBeUndefined();
    s.scan({ user: USER, verifyCode: '4321' });
    expect(await held).toEqual({ status: 'need_verifycode' });
    expect(await qrStatus(s.url, qrcode, '1111')).toEqual({ status: 'need_verifycode' });
    expect(await qrStatus(s.url, qrcode, '4321')).toEqual({ status: 'scaned' });
    const next = qrStatus(s.url, qrcode);
    await until(() => s.requests.filter((r) => r.op === 'get_qrcode_status').length === 4);
    s.confirm({ botId: 'b0f5aa@im.bot' });
    const done = await next;
    expect(done).toEqual({ status: 'confirmed', bot_token: s.accounts[0]?.token, ilink_bot_id: 'b0f5aa@im.bot', baseurl: s.url, ilink_user_id: USER });
    // The token works.
    const r = await api(String(done['baseurl']), 'msg/notifystart', String(done['bot_token']));
    expect(r.json).toEqual({ ret: 0, errmsg: '' });
  });

  it('answers wait when nothing happens within the hold', async () => {
    const s = await sim();
    const qrcode = await newQr(s.url);
    expect(await qrStatus(s.url, qrcode)).toEqual({ status: 'wait' });
    expect(s.qrcodes[0]?.reported).toEqual(['wait']);
  });

  it('blocks after too many wrong verify codes', async () => {
    const s = await sim({ maxWrongVerifyCodes: 2 });
    const qrcode = await newQr(s.url);
    s.scan({ verifyCode: '55' });
    expect(await qrStatus(s.url, qrcode, '1')).toEqual({ status: 'need_verifycode' });
    expect(await qrStatus(s.url, qrcode, '2')).toEqual({ status: 'verify_code_blocked' });
    expect(await qrStatus(s.url, qrcode, '55')).toEqual({ status: 'verify_code_blocked' });
  });

  it('redirects polling to another host; the old host keeps saying so', async () => {
    const s = await sim();
    const qrcode = await newQr(s.url);
    s.scan({ user: USER, redirect: true });
    const first = await qrStatus(s.url, qrcode);
    expect(first).toEqual({ status: 'scaned_but_redirect', redirect_host: s.altHost });
    const there = `http://${String(first['redirect_host'])}`;
    expect(await qrStatus(there, qrcode)).toEqual({ status: 'scaned' });
    s.confirm({ baseUrl: 'alt' });
    const done = await qrStatus(there, qrcode);
    expect(done).toMatchObject({ status: 'confirmed', baseurl: s.altUrl, ilink_user_id: USER });
    expect(await qrStatus(s.url, qrcode)).toMatchObject({ status: 'scaned_but_redirect' });
    expect(s.violations).toContain('get_qrcode_status: polled the old host after scaned_but_redirect');
    expect((await api(s.altUrl, 'msg/notifystart', String(done['bot_token']))).json).toEqual({ ret: 0, errmsg: '' });
    expect(s.requests.filter((r) => r.op === 'notifystart').map((r) => r.host)).toEqual(['alt']);
  });

  it('expires on demand and after its lifetime by the protocol clock; a new code then logs in', async () => {
    let t = Date.now();
    const s = await sim({ now: () => t });
    const first = await newQr(s.url);
    s.expire();
    expect(await qrStatus(s.url, first)).toEqual({ status: 'expired' });
    const second = await newQr(s.url);
    t += 5 * 60_000;
    expect(await qrStatus(s.url, second)).toEqual({ status: 'expired' });
    const third = await newQr(s.url);
    s.scan();
    s.confirm();
    expect(await qrStatus(s.url, third)).toMatchObject({ status: 'confirmed' });
  });

  it('binds again without new credentials when the client lists a live token of the same user', async () => {
    const s = await sim();
    const old = s.login({ user: USER });
    const qrcode = await newQr(s.url, [old.token]);
    expect(s.qrcodes[0]?.localTokens).toEqual([old.token]);
    s.scan({ user: USER });
    s.confirm();
    expect(await qrStatus(s.url, qrcode)).toEqual({ status: 'binded_redirect' });
    expect(s.accounts).toHaveLength(1);
    expect((await api(s.url, 'msg/notifystart', old.token)).json).toEqual({ ret: 0, errmsg: '' });
  });

  it('a second login of the same user ends the first session; a confirm can lack ilink_bot_id', async () => {
    const s = await sim();
    const old = s.login({ user: USER });
    const qrcode = await newQr(s.url);
    s.scan({ user: USER });
    s.confirm({ withoutBotId: true });
    const done = await qrStatus(s.url, qrcode);
    expect(done['status']).toBe('confirmed');
    expect(done).not.toHaveProperty('ilink_bot_id');
    expect(old.live).toBe(false);
    expect((await api(s.url, 'msg/notifystart', old.token)).json).toEqual({ errcode: -14, errmsg: 'session timeout' });
  });
});

describe('headers', () => {
  it('refuses a wrong or missing token, AuthorizationType or iLink-App-* header with -14 over HTTP 200', async () => {
    const s = await sim();
    const a = await ready(s);
    for (const omit of [['iLink-App-Id'], ['iLink-App-ClientVersion'], ['AuthorizationType'], ['Authorization']]) {
      const r = await api(s.url, 'getupdates', a.token, { get_updates_buf: '' }, { omit });
      expect(r.status).toBe(200);
      expect(r.json).toEqual({ errcode: -14, errmsg: 'session timeout' });
    }
    expect((await api(s.url, 'getupdates', 'made-up', { get_updates_buf: '' })).json).toEqual({ errcode: -14, errmsg: 'session timeout' });
    s.settings.expiryStyle = 'ret';
    expect((await api(s.url, 'getupdates', 'made-up', { get_updates_buf: '' })).json).toEqual({ ret: -14, errmsg: 'session timeout' });
    expect(s.violations).toContain('getupdates: iLink-App-Id is null, not bot');
  });

  it('can let missing app headers through, still noting them; flags a malformed X-WECHAT-UIN', async () => {
    const s = await sim({ checkAppHeaders: false });
    const a = await ready(s);
    expect((await api(s.url, 'getupdates', a.token, { get_updates_buf: '' }, { omit: ['iLink-App-Id', 'iLink-App-ClientVersion', 'X-WECHAT-UIN'] })).json).toMatchObject({ ret: 0 });
    expect(s.violations).toEqual(expect.arrayContaining(['getupdates: iLink-App-Id is null, not bot', 'getupdates: X-WECHAT-UIN is not base64 of a decimal uint32']));
  });

  it('a client that sends everything right leaves no violations', async () => {
    const s = await sim();
    const a = await ready(s);
    await poll(s, a.token, '');
    expect(s.violations).toEqual([]);
  });
});

describe('getupdates', () => {
  it('holds the poll until a message arrives, then advances the cursor; an old cursor replays nothing', async () => {
    const s = await sim({ pollHoldMs: 30_000, longpollingTimeoutMs: 35_000 });
    const a = await ready(s);
    const held = poll(s, a.token, '');
    await until(() => s.requests.some((r) => r.op === 'getupdates'));
    expect(s.requests.find((r) => r.op === 'getupdates')?.answer).toBeUndefined();
    const sent = s.sendText(USER, 'hi');
    const r = await held;
    const msgs = r.json['msgs'] as Record<string, unknown>[];
    expect(msgs).toHaveLength(1);
    expect(msgs[0]).toMatchObject({ from_user_id: USER, to_user_id: a.botId, message_type: 1, message_state: 2, context_token: sent.contextToken, item_list: [{ type: 1, text_item: { text: 'hi' } }] });
    expect(r.json['longpolling_timeout_ms']).toBe(35_000);
    const cursor = String(r.json['get_updates_buf']);
    expect(cursor).not.toBe('');

    s.settings.pollHoldMs = 30;
    // Not advancing: the message is not sent again (acknowledged on delivery).
    const again = await poll(s, a.token, '');
    expect(again.json).toEqual({ ret: 0, msgs: [], get_updates_buf: '', longpolling_timeout_ms: 35_000 });
    expect(s.polls[1]?.stale).toBe(true);
    // Advancing: empty batches hand the same cursor back.
    const quiet = await poll(s, a.token, cursor);
    expect(quiet.json).toEqual({ ret: 0, msgs: [], get_updates_buf: cursor, longpolling_timeout_ms: 35_000 });
    s.sendText(USER, 'second');
    const next = await poll(s, a.token, cursor);
    expect((next.json['msgs'] as { item_list: { text_item: { text: string } }[] }[]).map((m) => m.item_list[0]?.text_item.text)).toEqual(['second']);
    expect(next.json['get_updates_buf']).not.toBe(cursor);
  });

  it('can leave longpolling_timeout_ms out', async () => {
    const s = await sim({ longpollingTimeoutMs: 0 });
    const a = await ready(s);
    expect((await poll(s, a.token, '')).json).toEqual({ ret: 0, msgs: [], get_updates_buf: '' });
  });

  it('re-sends what a cursor that does not advance has not acknowledged (switchable)', async () => {
    const s = await sim({ cursorMode: 'redeliver-until-advanced', redeliverAfterMs: 20, pollHoldMs: 10_000 });
    const a = await ready(s);
    const m = s.sendText(USER, 'again?');
    const first = await poll(s, a.token, '');
    expect(rawIds(first.text)).toEqual([m.messageId]);
    const second = await poll(s, a.token, ''); // the client did not keep the cursor
    expect(rawIds(second.text)).toEqual([m.messageId]);
    expect(s.polls[1]?.redelivered).toBe(1);
    s.settings.pollHoldMs = 40;
    const third = await poll(s, a.token, String(second.json['get_updates_buf']));
    expect(third.json['msgs']).toEqual([]);
  });

  it('notes a poll before notifystart', async () => {
    const s = await sim();
    const a = s.login();
    await poll(s, a.token, '');
    expect(s.violations).toEqual([`getupdates: polled before msg/notifystart (${a.botId})`]);
  });
});

describe('uint64 ids', () => {
  it('writes message ids above 2^53 as JSON numbers that JSON.parse cannot hold', async () => {
    const s = await sim();
    const a = await ready(s);
    const m = s.sendText(USER, 'big', { quote: { svrId: 7492913259736648969n } });
    const r = await poll(s, a.token, '');
    const id = m.messageId as string;
    expect(BigInt(id) > 2n ** 53n).toBe(true);
    expect(rawIds(r.text)).toEqual([id]);
    expect(r.text).toContain(`"message_id":${id},`);
    const parsed = (r.json['msgs'] as { message_id: number }[])[0]?.message_id as number;
    expect(BigInt(parsed)).not.toBe(BigInt(id)); // precision lost: a client must read the raw digits
    expect(rawIds(r.text, 'svr_id')).toEqual(['7492913259736648969']);
    expect((r.json['msgs'] as { item_list: { ref_msg: unknown }[] }[])[0]?.item_list[0]?.ref_msg).toEqual({ svr_id: expect.any(Number) });
  });

  it('or as strings', async () => {
    const s = await sim({ idStyle: 'string' });
    const a = await ready(s);
    const m = s.sendText(USER, 'big');
    const r = await poll(s, a.token, '');
    expect((r.json['msgs'] as { message_id: string }[])[0]?.message_id).toBe(m.messageId);
  });

  it('answers sendmessage with a uint64 message_id, or without one', async () => {
    const s = await sim();
    const a = await ready(s);
    const body = { msg: { from_user_id: '', to_user_id: USER, client_id: 'c:1', message_type: 2, message_state: 2, item_list: [{ type: 1, text_item: { text: 'x' } }] } };
    const r = await api(s.url, 'sendmessage', a.token, body);
    expect(rawIds(r.text)).toEqual([s.sent[0]?.messageId]);
    s.settings.sendReturnsMessageId = false;
    expect((await api(s.url, 'sendmessage', a.token, { msg: { ...body.msg, client_id: 'c:2' } })).json).toEqual({ ret: 0 });
  });
});

describe('duplicates', () => {
  for (const mode of ['same-id', 'new-id', 'no-id'] as const) {
    it(`re-sends a message later with ${mode}`, async () => {
      const s = await sim({ pollHoldMs: 10_000 });
      const a = await ready(s);
      // The first poll is held before the message comes, so the original is answered on its own, before
      // its duplicate is due (on a busy machine a later poll could get both in one batch).
      const held = poll(s, a.token, '');
      await eventually(() => s.heldPolls() === 1);
      const m = s.sendText(USER, 'once', { duplicate: mode, duplicateAfterMs: 10 });
      const r1 = await held;
      const texts: string[] = [r1.text];
      let cursor = String(r1.json['get_updates_buf']);
      while (texts.length < 2) {
        const r = await poll(s, a.token, cursor);
        cursor = String(r.json['get_updates_buf']);
        texts.push(r.text);
      }
      const [first, second] = texts as [string, string];
      expect(rawIds(first)).toEqual([m.messageId]);
      const dupId = rawIds(second);
      if (mode === 'same-id') expect(dupId).toEqual([m.messageId]);
      if (mode === 'new-id') {
        expect(dupId).toHaveLength(1);
        expect(dupId).not.toEqual([m.messageId]);
      }
      if (mode === 'no-id') expect(dupId).toEqual([]);
      const dup = JSON.parse(second) as { msgs: { seq: number; context_token: string; item_list: unknown }[] };
      expect(dup.msgs[0]?.seq).toBe(m.seq);
      expect(dup.msgs[0]?.item_list).toEqual(m.message['item_list']);
      expect(dup.msgs[0]?.context_token).not.toBe(m.contextToken); // it rotates
      expect(s.inbound[1]?.duplicateOf).toBe(m);
    });
  }

  it('duplicates every message when switched on for the whole simulator', async () => {
    const s = await sim({ duplicates: 'same-id', duplicateDelayMs: [5, 15], pollHoldMs: 10_000 });
    const a = await ready(s);
    const m = s.sendText(USER, 'x');
    let seen: string[] = [];
    let cursor = '';
    while (seen.length < 2) {
      const r = await poll(s, a.token, cursor);
      cursor = String(r.json['get_updates_buf']);
      seen = [...seen, ...rawIds(r.text)];
    }
    expect(seen).toEqual([m.messageId, m.messageId]);
  });
});

describe('sendmessage', () => {
  const text = (to: string, clientId: string, textBody: string, contextToken?: string, state = 2) => ({
    msg: { from_user_id: '', to_user_id: to, client_id: clientId, message_type: 2, message_state: state, ...(contextToken ? { context_token: contextToken } : {}), item_list: [{ type: 1, text_item: { text: textBody } }] },
  });

  it('spends about 10 sends per inbound message, then refuses with ret -2 until the user writes again', async () => {
    const s = await sim();
    const a = await ready(s);
    const m = s.sendText(USER, 'q');
    for (let i = 0; i < 10; i++) expect((await api(s.url, 'sendmessage', a.token, text(USER, `c:${i}`, `a${i}`, m.contextToken))).json).toMatchObject({ ret: 0 });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:10', 'over', m.contextToken))).json).toEqual({ ret: -2, errmsg: 'prepare failed' });
    expect(s.contextToken(m.contextToken)?.sends).toBe(10);
    const m2 = s.sendText(USER, 'again');
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:11', 'fresh', m2.contextToken))).json).toMatchObject({ ret: 0 });
    expect(s.chat(USER).map((x) => x.text)).toEqual([...Array.from({ length: 10 }, (_, i) => `a${i}`), 'fresh']);
  });

  it('refuses a token past its age, an unknown token, or another user’s token; sends without one', async () => {
    let t = Date.now();
    const s = await sim({ now: () => t });
    const a = await ready(s);
    const m = s.sendText(USER, 'q');
    t += 24 * 3_600_000 + 1;
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:1', 'late', m.contextToken))).json).toEqual({ ret: -2, errmsg: 'prepare failed' });
    s.settings.contextMaxAgeMs = 120_000;
    const m2 = s.sendText(USER, 'q2');
    expect((await api(s.url, 'sendmessage', a.token, text('other@im.wechat', 'c:2', 'x', m2.contextToken))).json).toEqual({ ret: -2, errmsg: 'prepare failed' });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:3', 'x', 'AARzmadeup'))).json).toEqual({ ret: -2, errmsg: 'prepare failed' });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:4', 'no token'))).json).toMatchObject({ ret: 0 });
    t += 120_001;
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:5', 'two minutes on', m2.contextToken))).json).toEqual({ ret: -2, errmsg: 'prepare failed' });
    expect(s.chat(USER).map((x) => [x.text, x.contextToken])).toEqual([['no token', undefined]]);
  });

  it('refuses GENERATING (switchable: then a client_id bubble updates in place)', async () => {
    const s = await sim();
    const a = await ready(s);
    const m = s.sendText(USER, 'q');
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:g', 'par', m.contextToken, 1))).json).toEqual({ ret: -2 });
    s.settings.refuseGenerating = false;
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:g', 'par', m.contextToken, 1))).json).toMatchObject({ ret: 0 });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:g', 'partial answer', m.contextToken, 2))).json).toMatchObject({ ret: 0 });
    expect(s.chat(USER).map((x) => [x.text, x.state])).toEqual([['partial answer', 2]]);
    expect(s.violations).toEqual([]);
  });

  it('notes two items in one request and a reused client_id; truncates long text silently', async () => {
    const s = await sim();
    const a = await ready(s);
    const two = text(USER, 'c:1', 'a');
    two.msg.item_list.push({ type: 1, text_item: { text: 'b' } });
    await api(s.url, 'sendmessage', a.token, two);
    await api(s.url, 'sendmessage', a.token, text(USER, 'c:1', 'again'));
    expect(s.violations).toEqual(['sendmessage: 2 items in one request (one item per request)', 'sendmessage: client_id c:1 reused']);
    const long = '字'.repeat(2500);
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:2', long))).json).toMatchObject({ ret: 0 });
    const last = s.chat(USER).pop();
    expect([last?.text.length, last?.truncatedFrom]).toEqual([2000, 2500]);
  });

  it('answers ret -2 on demand and past a rate limit', async () => {
    const s = await sim({ rateLimit: { sends: 2, perMs: 60_000 } });
    const a = await ready(s);
    s.inject('sendmessage', { json: { ret: -2, errmsg: 'unknown error' } });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:0', 'x'))).json).toEqual({ ret: -2, errmsg: 'unknown error' });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:1', 'x'))).json).toMatchObject({ ret: 0 });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:2', 'x'))).json).toMatchObject({ ret: 0 });
    expect((await api(s.url, 'sendmessage', a.token, text(USER, 'c:3', 'x'))).json).toEqual({ ret: -2, errmsg: '' });
  });

  it('risk control: success answered, nothing reaches the user; typing still works', async () => {
    const s = await sim({ silentDrop: true });
    const a = await ready(s);
    const m = s.sendText(USER, 'q');
    const r = await api(s.url, 'sendmessage', a.token, text(USER, 'c:1', 'lost', m.contextToken));
    expect(r.json).toMatchObject({ ret: 0 });
    expect(rawIds(r.text)).toHaveLength(1);
    expect(s.chat(USER)).toEqual([]);
    expect(s.sent.map((x) => [x.text, x.delivered])).toEqual([['lost', false]]);
    s.settings.silentDrop = false;
    await api(s.url, 'sendmessage', a.token, text(USER, 'c:2', 'seen', m.contextToken));
    expect(s.chat(USER).map((x) => x.text)).toEqual(['seen']);
  });
});

describe('session expiry', () => {
  it('-14 at any moment: a held poll is answered -14 and every call after it until a new login', async () => {
    const s = await sim({ pollHoldMs: 30_000 });
    const a = await ready(s);
    const held = poll(s, a.token, '');
    await until(() => s.requests.some((r) => r.op === 'getupdates'));
    s.expireSession();
    expect((await held).json).toEqual({ errcode: -14, errmsg: 'session timeout' });
    for (const op of ['getupdates', 'sendmessage', 'getconfig', 'sendtyping', 'getuploadurl', 'msg/notifystart', 'msg/notifystop']) {
      expect((await api(s.url, op, a.token, {})).json).toEqual({ errcode: -14, errmsg: 'session timeout' });
    }
    expect(() => s.sendText(USER, 'nobody home')).toThrow(/log in/);
    const b = await ready(s);
    expect(b.token).not.toBe(a.token);
    s.settings.pollHoldMs = 20;
    expect((await poll(s, b.token, '')).json).toMatchObject({ ret: 0, msgs: [] });
  });
});

describe('typing', () => {
  it('needs ilink_user_id for a ticket and the ticket for typing; records start/stop pairs', async () => {
    const s = await sim();
    const a = await ready(s);
    expect((await api(s.url, 'getconfig', a.token, {})).json).toEqual({ ret: -2, errmsg: 'ilink_user_id required' });
    const cfg = await api(s.url, 'getconfig', a.token, { ilink_user_id: USER, context_token: 'AARz' });
    const ticket = String(cfg.json['typing_ticket']);
    expect(Buffer.from(ticket, 'base64').length).toBeGreaterThan(0);
    expect((await api(s.url, 'sendtyping', a.token, { ilink_user_id: USER, typing_ticket: 'nope', status: 1 })).json).toMatchObject({ ret: -2 });
    expect((await api(s.url, 'sendtyping', a.token, { ilink_user_id: USER, typing_ticket: ticket, status: 1 })).json).toEqual({ ret: 0 });
    expect(s.isTyping(USER)).toBe(true);
    expect((await api(s.url, 'sendtyping', a.token, { ilink_user_id: USER, typing_ticket: ticket, status: 2 })).json).toEqual({ ret: 0 });
    expect(s.isTyping(USER)).toBe(false);
    expect(s.typing.map((e) => [e.user, e.status])).toEqual([
      [USER, 1],
      [USER, 2],
    ]);
  });
});

describe('CDN media', () => {
  const KEY_HEX = '00112233445566778899aabbccddeeff';
  const KEY = Buffer.from(KEY_HEX, 'hex');

  it('the reference vector: "hello" under the test key', () => {
    expect(aes('enc', Buffer.from('hello'), KEY).toString('hex')).toBe('9d86c8612e085e93a235794a708af7a9');
    expect(KEY.toString('base64')).toBe('ABEiM0RVZneImaq7zN3u/w==');
    expect(Buffer.from(KEY_HEX).toString('base64')).toBe('MDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY=');
  });

  /** Upload as the official client does: getuploadurl, then POST the ciphertext to the CDN. */
  async function upload(s: IlinkSim, token: string, plain: Buffer, mediaType = 1): Promise<{ param: string; cipher: Buffer }> {
    const cipher = aes('enc', plain, KEY);
    const filekey = randomBytes(16).toString('hex');
    const u = await api(s.url, 'getuploadurl', token, { filekey, media_type: mediaType, to_user_id: USER, rawsize: plain.length, rawfilemd5: createHash('md5').update(plain).digest('hex'), filesize: Math.ceil((plain.length + 1) / 16) * 16, no_need_thumb: true, aeskey: KEY_HEX });
    const target = typeof u.json['upload_full_url'] === 'string' ? u.json['upload_full_url'] : `${s.cdnUrl}/upload?encrypted_query_param=${encodeURIComponent(String(u.json['upload_param']))}&filekey=${encodeURIComponent(filekey)}`;
    const r = await call({ method: 'POST', url: target, headers: { 'Content-Type': 'application/octet-stream' }, body: cipher, timeoutMs: 5_000 });
    expect(r.status).toBe(200);
    return { param: String(r.headers['x-encrypted-param']), cipher };
  }

  const imageMsg = (param: string, aesKey: string, midSize: number, clientId: string) => ({
    msg: { from_user_id: '', to_user_id: USER, client_id: clientId, message_type: 2, message_state: 2, item_list: [{ type: 2, image_item: { media: { encrypt_query_param: param, aes_key: aesKey, encrypt_type: 1 }, mid_size: midSize } }] },
  });

  it('an outbound image round-trips with base64 of the hex key; base64 of the raw key shows grey', async () => {
    const s = await sim();
    const a = await ready(s);
    const picture = randomBytes(24_563);
    const { param, cipher } = await upload(s, a.token, picture);
    expect(cipher.length).toBe(24_576);
    await api(s.url, 'sendmessage', a.token, imageMsg(param, Buffer.from(KEY_HEX).toString('base64'), cipher.length, 'c:1'));
    await api(s.url, 'sendmessage', a.token, imageMsg(param, KEY.toString('base64'), cipher.length, 'c:2'));
    const [good, grey] = s.chat(USER).map((m) => m.media[0]);
    expect([good?.keyEncoding, good?.grey, good?.bytes?.equals(picture)]).toEqual(['base64-hex', false, true]);
    expect([grey?.keyEncoding, grey?.grey]).toEqual(['base64-raw', true]);
    expect(s.violations).toEqual(['sendmessage: image media.aes_key is base64-raw, not base64 of the hex key']);
  });

  it('upload_full_url when switched on; PUT 404s; a declared size that does not match is refused; 5xx on demand', async () => {
    const s = await sim({ uploadFullUrl: true });
    const a = await ready(s);
    const plain = Buffer.from('hello');
    const { param } = await upload(s, a.token, plain);
    expect(s.blobs[0]?.plaintext.equals(plain)).toBe(true);
    expect(s.blobs[0]?.param).toBe(param);
    const u = await api(s.url, 'getuploadurl', a.token, { filekey: 'ab'.repeat(16), media_type: 1, to_user_id: USER, rawsize: 5, rawfilemd5: createHash('md5').update(plain).digest('hex'), filesize: 16, no_need_thumb: true, aeskey: KEY_HEX });
    const full = String(u.json['upload_full_url']);
    expect((await call({ method: 'PUT', url: full, body: aes('enc', plain, KEY), timeoutMs: 5_000 })).status).toBe(404);
    const short = await call({ method: 'POST', url: full, body: Buffer.alloc(32), timeoutMs: 5_000 });
    expect([short.status, short.headers['x-error-message']]).toEqual([400, 'size mismatch: 32 bytes, declared 16']);
    s.inject('cdn-upload', { status: 500 });
    expect((await call({ method: 'POST', url: full, body: aes('enc', plain, KEY), timeoutMs: 5_000 })).status).toBe(500);
    expect((await call({ method: 'POST', url: full, body: aes('enc', plain, KEY), timeoutMs: 5_000 })).status).toBe(200);
  });

  it('upload failures on demand: a 4xx with x-error-message, 5xx then success, and a 200 without x-encrypted-param (switchable)', async () => {
    const s = await sim();
    const a = await ready(s);
    const plain = randomBytes(100);
    const target = async () => {
      const filekey = randomBytes(16).toString('hex');
      const u = await api(s.url, 'getuploadurl', a.token, { filekey, media_type: 1, to_user_id: USER, rawsize: plain.length, rawfilemd5: createHash('md5').update(plain).digest('hex'), filesize: 112, no_need_thumb: true, aeskey: KEY_HEX });
      return `${s.cdnUrl}/upload?encrypted_query_param=${encodeURIComponent(String(u.json['upload_param']))}&filekey=${filekey}`;
    };
    const post = async (url: string) => call({ method: 'POST', url, body: aes('enc', plain, KEY), timeoutMs: 5_000 });
    s.inject('cdn-upload', { status: 403, errorMessage: 'forbidden by test' });
    const refused = await post(await target());
    expect([refused.status, refused.headers['x-error-message'], refused.headers['x-encrypted-param']]).toEqual([403, 'forbidden by test', undefined]);
    s.inject('cdn-upload', { status: 502 }, 2);
    const url = await target();
    expect([(await post(url)).status, (await post(url)).status]).toEqual([502, 502]);
    const ok = await post(url);
    expect(ok.status).toBe(200);
    expect(s.blobs.find((b) => b.param === ok.headers['x-encrypted-param'])?.plaintext.equals(plain)).toBe(true);
    s.settings.uploadReturnsParam = false;
    const hidden = await post(await target());
    expect([hidden.status, hidden.headers['x-encrypted-param']]).toEqual([200, undefined]);
    expect(s.blobs).toHaveLength(2); // stored all the same: only the answer lacks the header
  });

  it('an inbound image decrypts with image_item.aeskey (hex) and with media.aes_key (base64 of the raw key)', async () => {
    const s = await sim();
    const a = await ready(s);
    const picture = randomBytes(1000);
    s.sendImage(USER, picture);
    s.sendImage(USER, picture, { keys: 'raw' });
    const r = await poll(s, a.token, '');
    const items = (r.json['msgs'] as { item_list: { image_item: { aeskey?: string; media: { encrypt_query_param: string; aes_key?: string } } }[] }[]).map((m) => m.item_list[0]?.image_item);
    for (const [i, item] of items.entries()) {
      const dl = await call({ url: `${s.cdnUrl}/download?encrypted_query_param=${encodeURIComponent(String(item?.media.encrypt_query_param))}`, timeoutMs: 5_000 });
      const key = i === 0 ? Buffer.from(String(item?.aeskey), 'hex') : Buffer.from(String(item?.media.aes_key), 'base64');
      expect(key.length).toBe(16);
      expect(aes('dec', dl.body, key).equals(picture)).toBe(true);
    }
    expect(items[1]).not.toHaveProperty('aeskey');
  });

  it('inbound files, voice and video carry base64 of the hex key; voice may carry a transcript', async () => {
    const s = await sim({ downloadFullUrl: true });
    const a = await ready(s);
    const doc = Buffer.from('%PDF-1.4 simulated');
    s.sendFile(USER, doc, 'a.pdf');
    s.sendVoice(USER, randomBytes(300), { transcript: '你好' });
    const r = await poll(s, a.token, '');
    const [file, voice] = (r.json['msgs'] as { item_list: Record<string, { media: { aes_key: string; full_url: string }; len?: string; text?: string }>[] }[]).map((m) => m.item_list[0] as Record<string, { media: { aes_key: string; full_url: string }; len?: string; text?: string; file_name?: string }>);
    const f = file?.['file_item'];
    expect([f?.file_name, f?.len]).toEqual(['a.pdf', String(doc.length)]);
    const keyText = Buffer.from(String(f?.media.aes_key), 'base64').toString('latin1');
    expect(keyText).toMatch(/^[0-9a-f]{32}$/);
    const dl = await call({ url: String(f?.media.full_url), timeoutMs: 5_000 });
    expect(aes('dec', dl.body, Buffer.from(keyText, 'hex')).equals(doc)).toBe(true);
    expect(voice?.['voice_item']?.text).toBe('你好');
  });

  it('an image with no key is stored as plaintext', async () => {
    const s = await sim();
    const a = await ready(s);
    const picture = Buffer.from('plain picture bytes');
    s.sendImage(USER, picture, { keys: 'none' });
    const r = await poll(s, a.token, '');
    const media = (r.json['msgs'] as { item_list: { image_item: { media: { encrypt_query_param: string; aes_key?: string } } }[] }[])[0]?.item_list[0]?.image_item.media;
    expect(media).not.toHaveProperty('aes_key');
    const dl = await call({ url: `${s.cdnUrl}/download?encrypted_query_param=${encodeURIComponent(String(media?.encrypt_query_param))}`, timeoutMs: 5_000 });
    expect(dl.body.equals(picture)).toBe(true);
  });
});

/**
 * The contract every channel must pass (docs/channels.md "The contract tests"), run against each
 * registered kind through its simulator: a request that fails verification gets 4xx and changes
 * nothing (no record, no model call); one message delivered twice is asked once and answered once;
 * every key it writes decodes to its own kind and instance. A kind without a driver here fails the
 * first test, so adding a channel means adding its driver.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CHANNEL_KINDS } from '../../lib/channels';
import { parseKey } from '../../lib/core/keys';
import { startDiscordSim } from '../../lib/sim/discord-sim';
import type { DiscordSim } from '../../lib/sim/discord-sim';
import { startLineSim } from '../../lib/sim/line-sim';
import type { LineSim } from '../../lib/sim/line-sim';
import { WechatSim } from '../../lib/sim/wechat-sim';
import { WecomCrypto } from '../../lib/sim/wecom-common';
import { startWecomBotSim } from '../../lib/sim/wecom-bot-sim';
import type { WecomBotSim } from '../../lib/sim/wecom-bot-sim';
import { startWecomSim } from '../../lib/sim/wecom-sim';
import type { WecomSim } from '../../lib/sim/wecom-sim';
import { startIlinkSim } from '../../lib/sim/ilink-sim';
import type { IlinkSim } from '../../lib/sim/ilink-sim';
import { call as httpCall } from '../../lib/util/http';
import { TOKEN, eventually, sleep, startHarness } from '../support/harness';
import { ChatVisitor, messageId } from '../support/web-chat';
import { call } from '../support/wire';
import { API_KEYS, KEY_A } from './api/keys';
import type { Harness } from '../support/harness';

/** How the contract drives one channel kind through its simulator. */
interface Driver {
  start(): Promise<{ env: Record<string, string>; close(): Promise<void> }>;
  /** Send one request that must fail verification; its HTTP status. */
  forged(h: Harness): Promise<number>;
  /** Deliver one question twice (as the platform re-delivers); resolves once both deliveries are answered. */
  twice(h: Harness, text: string): Promise<void>;
  /** How many answers reached the user so far. */
  answers(): number;
}

const LINE_SECRET = '0123456789abcdef0123456789abcdef';
let line: LineSim;
let discord: DiscordSim;
const WECOM = { corpId: 'ww5a1c9e3b7d20f864', token: 'QDG6eK', aesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', agentId: 1000002, secret: 'wecom-contract-secret' };
let wecom: WecomSim;
/** The simulator reads the callback URL when it calls: set once the bot listens. */
const wecomCallback = { url: '', token: WECOM.token, encodingAesKey: WECOM.aesKey };
const WECOM_BOT = { token: 'BotToken123', aesKey: 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR' };
let wecomBot: WecomBotSim | undefined;
/** The bot's simulator posts to the bot: it starts once the bot listens. */
const botSimFor = async (h: Harness) => (wecomBot ??= await startWecomBotSim({ url: `${h.origin}/wecom-bot`, token: WECOM_BOT.token, encodingAesKey: WECOM_BOT.aesKey, pollIntervalMs: 150 }));
let ilinkSim: IlinkSim;
const drivers: Record<string, Driver> = {
  'wechat-oa': {
    async start() {
      return { env: {}, close: async () => undefined };
    },
    async forged(h) {
      const wrong = new WechatSim({ url: h.url, token: 'not-the-token', timeoutMs: h.oa.timeoutMs, deliveries: 1 });
      return ((await wrong.send('oForged', '伪造')).deliveries[0] as { status: number }).status;
    },
    async twice(h, text) {
      // WeChat re-delivers by itself while the answer is not ready: 3 deliveries of one MsgId.
      const r = await h.wechat.send('oTwice', text);
      expect(r.deliveries.length).toBeGreaterThan(1);
      wechatAnswers += r.text === `答：${text}` ? 1 : 0;
    },
    answers: () => wechatAnswers,
  },
  line: {
    async start() {
      line = await startLineSim({ channelSecret: LINE_SECRET, accessToken: 'line-access-token-0000' });
      return { env: { LINE_CHANNEL_SECRET: LINE_SECRET, LINE_CHANNEL_ACCESS_TOKEN: 'line-access-token-0000', LINE_API_BASE: line.url }, close: () => line.close() };
    },
    async forged(h) {
      return (await line.deliver(`${h.origin}/line`, [line.text('U0000000000000000000000000000forg', '伪造')], 'A'.repeat(44))).status;
    },
    async twice(h, text) {
      const e = line.text('U00000000000000000000000000twice', text);
      await line.deliver(`${h.origin}/line`, [e]);
      await line.deliver(`${h.origin}/line`, [{ ...e, deliveryContext: { isRedelivery: true } }]);
    },
    answers: () => line.replies.length + line.pushes.length,
  },
  discord: {
    async start() {
      discord = await startDiscordSim();
      return { env: { DISCORD_PUBLIC_KEY: discord.publicKeyHex, DISCORD_APPLICATION_ID: discord.applicationId, DISCORD_API_BASE: discord.url }, close: () => discord.close() };
    },
    async forged(h) {
      return (await discord.send(`${h.origin}/discord`, discord.ask('1150000000000000077', '伪造'), { badSignature: true })).status;
    },
    async twice(h, text) {
      const ask = discord.ask('1150000000000000077', text);
      await discord.send(`${h.origin}/discord`, ask);
      await discord.send(`${h.origin}/discord`, ask);
    },
    // The final answer is the edit that no longer ends in " …" (the progressive ones do).
    answers: () => discord.edits.filter((e) => !e.content.endsWith(' …')).length,
  },
  'wecom-app': {
    async start() {
      wecom = await startWecomSim({ corpId: WECOM.corpId, apps: [{ agentId: WECOM.agentId, secret: WECOM.secret, callback: wecomCallback }], callbackTimeoutMs: 1000 });
      const env = { WECOM_CORP_ID: WECOM.corpId, WECOM_AGENT_ID: String(WECOM.agentId), WECOM_SECRET: WECOM.secret, WECOM_TOKEN: WECOM.token, WECOM_AES_KEY: WECOM.aesKey, WECOM_API_BASE: wecom.url };
      return { env, close: () => wecom.close() };
    },
    async forged(h) {
      wecomCallback.url = `${h.origin}/wecom`;
      const wrong = new WecomCrypto('WrongToken', WECOM.aesKey, WECOM.corpId);
      const encrypt = wrong.encrypt(`<xml><ToUserName><![CDATA[${WECOM.corpId}]]></ToUserName><FromUserName><![CDATA[mallory]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[伪造]]></Content><MsgId>7300000000000000009</MsgId><AgentID>${WECOM.agentId}</AgentID></xml>`);
      const res = await fetch(`${h.origin}/wecom?${wrong.query(encrypt, String(Math.floor(Date.now() / 1000)), '424242')}`, { method: 'POST', body: `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` });
      return res.status;
    },
    async twice(h, text) {
      wecomCallback.url = `${h.origin}/wecom`;
      const r = await wecom.memberSends('twice', text);
      await wecom.redeliver(r.callbackId);
    },
    answers: () => wecom.sent.length,
  },
  'wecom-kf': {
    async start() {
      wecom = await startWecomSim({ corpId: WECOM.corpId, apps: [{ agentId: WECOM.agentId, secret: WECOM.secret, callback: wecomCallback }], callbackTimeoutMs: 5000 });
      const env = { WECOM_CORP_ID: WECOM.corpId, WECOM_KF_SECRET: WECOM.secret, WECOM_TOKEN: WECOM.token, WECOM_AES_KEY: WECOM.aesKey, WECOM_API_BASE: wecom.url };
      return { env, close: () => wecom.close() };
    },
    async forged(h) {
      wecomCallback.url = `${h.origin}/wecom-kf`;
      await wecom.customerSends('wkSimKf0000000001', 'wmForged', '伪造', { notify: false });
      const wrong = new WecomCrypto('WrongToken', WECOM.aesKey, WECOM.corpId);
      const encrypt = wrong.encrypt(`<xml><ToUserName><![CDATA[${WECOM.corpId}]]></ToUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event><Token><![CDATA[ENCforged]]></Token><OpenKfId><![CDATA[wkSimKf0000000001]]></OpenKfId></xml>`);
      const res = await fetch(`${h.origin}/wecom-kf?${wrong.query(encrypt, String(Math.floor(Date.now() / 1000)), '424242')}`, { method: 'POST', body: `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` });
      return res.status;
    },
    async twice(h, text) {
      wecomCallback.url = `${h.origin}/wecom-kf`;
      const r = await wecom.customerSends('wkSimKf0000000001', 'wmTwice', text);
      await wecom.redeliver(r.callback?.callbackId ?? '');
    },
    answers: () => wecom.kfSent.length,
  },
  'wecom-bot': {
    async start() {
      return {
        env: { WECOM_BOT_TOKEN: WECOM_BOT.token, WECOM_BOT_AES_KEY: WECOM_BOT.aesKey },
        close: async () => {
          await wecomBot?.close();
          wecomBot = undefined;
        },
      };
    },
    async forged(h) {
      const wrong = new WecomCrypto('WrongToken', WECOM_BOT.aesKey, '');
      const encrypt = wrong.encrypt(JSON.stringify({ msgid: 'forged', chattype: 'single', from: { userid: 'mallory' }, msgtype: 'text', text: { content: '伪造' } }));
      const res = await fetch(`${h.origin}/wecom-bot?${wrong.query(encrypt, String(Math.floor(Date.now() / 1000)), '424242')}`, { method: 'POST', body: JSON.stringify({ encrypt }) });
      return res.status;
    },
    async twice(h, text) {
      const sim = await botSimFor(h);
      const conv = sim.start('twice', text);
      await eventually(() => conv.state !== 'pending', 5000);
      await sim.redeliver(conv.msgid);
    },
    // An answer reached the user: a finished stream, or a late reply.
    answers: () => (wecomBot ? wecomBot.conversations.filter((c) => c.state === 'finished').length + wecomBot.lateReplies.length : 0),
  },
  web: {
    async start() {
      return { env: { WEB_CHAT: 'on' }, close: async () => undefined };
    },
    async forged(h) {
      // A made-up visitor cookie and CSRF token: the page's endpoints know nobody by them.
      const v = new ChatVisitor(h.origin);
      v.cookie = `wdb_chat=${'A'.repeat(22)}..${'B'.repeat(43)}`;
      v.csrf = 'C'.repeat(43);
      return (await v.ask('伪造')).status;
    },
    async twice(h, text) {
      // The page sends a message again when the network dropped the response: the same id.
      const v = new ChatVisitor(h.origin);
      await v.open();
      const id = messageId();
      await v.ask(text, id);
      await v.ask(text, id);
      const stream = await v.events(id);
      await stream.until((e) => e.event === 'final', 10_000);
      stream.close();
      // The page reports what it showed (twice here, as two tabs might): delivered once.
      const shown = await Promise.all([v.post('seen', { id }), v.post('seen', { id })]);
      webAnswers += shown.filter((r) => r.json['delivered'] === true).length;
    },
    answers: () => webAnswers,
  },
  api: {
    async start() {
      return { env: { API_KEYS }, close: async () => undefined };
    },
    async forged(h) {
      return (await call(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'forged', query: '伪造' }), headers: { Authorization: 'Bearer not-a-key-of-this-server-000000' } })).status;
    },
    async twice(h, text) {
      // A client retries with the same Idempotency-Key while the first copy still waits: both get the one answer.
      const copy = () => call(`${h.origin}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'twice', query: text }), headers: { Authorization: `Bearer ${KEY_A}`, 'Idempotency-Key': 'contract-twice' } });
      const replies = await Promise.all([copy(), sleep(100).then(copy)]);
      for (const r of replies) {
        const body = JSON.parse(r.body) as { id: string; answer: string };
        if (body.answer === `答：${text}`) apiAnswers.add(body.id);
      }
    },
    // Copies of one request carry the one answer (one id).
    answers: () => apiAnswers.size,
  },
  ilink: {
    async start() {
      ilinkSim = await startIlinkSim({ pollHoldMs: 300, longpollingTimeoutMs: 1000 });
      const a = ilinkSim.login();
      return {
        env: { ILINK: 'on', ILINK_API_BASE: ilinkSim.url, ILINK_CDN_BASE: ilinkSim.cdnUrl, ILINK_BOT_TOKEN: a.token, ILINK_BOT_ID: a.botId, ILINK_SEND_GAP_MS: '0' },
        close: () => ilinkSim.close(),
      };
    },
    async forged(h) {
      // It polls: there is no inbound URL to forge…
      const res = await httpCall({ method: 'POST', url: `${h.origin}/ilink`, body: { msgs: [] }, timeoutMs: 5000 });
      // …and what the service hands out that is no user's message (the bot's own echo, a progress update) is not asked.
      h.app.startPollers();
      const bot = ilinkSim.accounts[0]?.botId ?? '';
      const echo = { seq: 1, message_id: 9, from_user_id: bot, to_user_id: 'u@im.wechat', message_type: 2, message_state: 2, item_list: [{ type: 1, text_item: { text: '伪造' } }] };
      const generating = { ...echo, message_id: 10, from_user_id: 'forger@im.wechat', message_type: 1, message_state: 1 };
      ilinkSim.inject('getupdates', { json: { ret: 0, msgs: [echo, generating], get_updates_buf: '' } });
      await eventually(() => ilinkSim.requests.some((r) => r.op === 'getupdates' && JSON.stringify(r.answer ?? '').includes('伪造')), 10_000);
      await sleep(300);
      return res.status;
    },
    async twice(h, text) {
      h.app.startPollers();
      // The service hands the same message out again a moment later, with a new id.
      ilinkSim.sendText('twice@im.wechat', text, { duplicate: 'new-id', duplicateAfterMs: 300 });
      await eventually(() => ilinkSim.inbound.length === 2, 10_000);
    },
    answers: () => ilinkSim.sent.length,
  },
};
let wechatAnswers = 0;
let webAnswers = 0;
const apiAnswers = new Set<string>();

let h: Harness | undefined;
let closeSim: (() => Promise<void>) | undefined;
afterEach(async () => {
  await h?.close();
  await closeSim?.();
  h = undefined;
});

describe('the channel contract', () => {
  it('every registered channel kind has a contract driver', () => {
    expect(CHANNEL_KINDS.map((k) => k.kind).filter((k) => !drivers[k])).toEqual([]);
  });

  describe.each(CHANNEL_KINDS.map((k) => k.kind))('%s', (kind) => {
    const driver = drivers[kind] as Driver;
    const start = async (durationMs = 0) => {
      const sim = await driver.start();
      closeSim = sim.close;
      h = await startHarness({ dify: { script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs }) }, env: { WECHAT_TOKEN: TOKEN, ...sim.env } });
      return h;
    };

    it('refuses a forged request with 4xx and changes nothing', async () => {
      const h = await start();
      const status = await driver.forged(h);
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
      await sleep(100);
      expect(h.dify.calls).toHaveLength(0);
      expect((await h.app.store.snapshot()).messages).toHaveLength(0);
    });

    it('asks a message delivered twice once, answers it once, and keys it as its own', async () => {
      const h = await start(1500);
      const before = driver.answers();
      await driver.twice(h, '两次');
      await eventually(() => driver.answers() === before + 1, 10_000);
      await h.app.worker.idle();
      await sleep(300);
      expect(driver.answers()).toBe(before + 1);
      expect(h.dify.calls.filter((c) => c.body.query === '两次')).toHaveLength(1);
      const records = (await h.app.store.snapshot()).messages.filter((m) => m.kind === 'question');
      expect(records).toHaveLength(1);
      const key = parseKey(records[0]?.user ?? '');
      // The default instance of the kind whose keys may be bare (stored before keys had tags) has none.
      const bare = CHANNEL_KINDS.find((k) => k.kind === kind)?.bareKeys === true;
      expect(key.kind).toBe(bare ? undefined : kind);
      expect(key.instance).toBe('');
      expect(records[0]?.channel).toBe(kind);
      expect(h.app.channels.forKey(records[0]?.user ?? '')?.kind).toBe(kind);
    });
  });
});

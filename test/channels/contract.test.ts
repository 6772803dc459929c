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
import { startIlinkSim } from '../../lib/sim/ilink-sim';
import type { IlinkSim } from '../../lib/sim/ilink-sim';
import { call } from '../../lib/util/http';
import { TOKEN, eventually, sleep, startHarness } from '../support/harness';
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
      const res = await call({ method: 'POST', url: `${h.origin}/ilink`, body: { msgs: [] }, timeoutMs: 5000 });
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

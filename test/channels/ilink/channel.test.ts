/**
 * The personal-WeChat channel (lib/channels/ilink/, docs/ilink.md) against the iLink simulator over
 * loopback, in a real server with a real store: a conversation with the typing indicator; duplicates
 * with the same, a new or no id asked once; a long answer split within the context token's budget,
 * the rest by `1`; a picture downloaded from the CDN and decrypted for the model; quotes; session
 * expiry mid-answer, a new login, and the answer delivered once; the cursor across a restart. Every
 * test ends with the simulator's `violations` empty: nothing the official client never does.
 */
import { randomBytes } from 'crypto';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { startIlinkSim } from '../../../lib/sim/ilink-sim';
import type { IlinkSim, IlinkSimOptions } from '../../../lib/sim/ilink-sim';
import type { DifySimOptions } from '../../../lib/sim/dify-sim';
import { DEFAULT_PARAMETERS } from '../../../lib/sim/dify-sim';
import { isIlink } from '../../../lib/channels/ilink';
import type { IlinkChannel } from '../../../lib/channels/ilink';
import { CONTEXT_SENDS, TEXT_MAX } from '../../../lib/channels/ilink/channel';
import { eventually, sleep, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

let sim: IlinkSim | undefined;
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  await sim?.close();
  h = undefined;
  sim = undefined;
});

const ALICE = 'alice01@im.wechat';
const BOB = 'bob0002@im.wechat';

interface Start {
  sim?: IlinkSimOptions;
  dify?: Omit<DifySimOptions, 'apiKey'>;
  env?: Record<string, string>;
  /** Log in on the simulator and hand the bot the session by ILINK_BOT_TOKEN (default true). */
  provision?: boolean;
  dataDir?: string;
}

async function start(o: Start = {}): Promise<{ sim: IlinkSim; h: Harness; channel: IlinkChannel }> {
  sim ??= await startIlinkSim({ pollHoldMs: 300, longpollingTimeoutMs: 1000, qrHoldMs: 300, ...o.sim });
  const account = o.provision === false ? undefined : sim.login();
  h = await startHarness({
    dify: o.dify ?? { script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: 200 }) },
    ...(o.dataDir ? { dataDir: o.dataDir } : {}),
    env: {
      ILINK: 'on',
      ILINK_API_BASE: sim.url,
      ILINK_CDN_BASE: sim.cdnUrl,
      ILINK_SEND_GAP_MS: '0',
      POLLER_TAKEOVER_S: '1',
      ...(account ? { ILINK_BOT_TOKEN: account.token, ILINK_BOT_ID: account.botId } : {}),
      ...o.env,
    },
  });
  h.app.startPollers();
  const channel = h.app.channels.list.find(isIlink) as IlinkChannel;
  return { sim, h, channel };
}

const texts = (s: IlinkSim, user: string) => s.chat(user).map((m) => m.text);

describe('iLink: a conversation', () => {
  it('answers a text with the typing indicator around it, once, and nothing the official client never does', async () => {
    const { sim, h } = await start({ dify: { script: (b) => ({ kind: 'answer', text: `**答**：${String(b.query)}`, durationMs: 1200 }) } });
    sim.sendText(ALICE, '你好');
    await eventually(() => sim.chat(ALICE).length === 1, 10_000);
    expect(texts(sim, ALICE)).toEqual(['答：你好']); // Markdown as plain text
    await h.app.worker.idle();
    await sleep(300);
    const typing = sim.typing.filter((t) => t.user === ALICE).map((t) => t.status);
    expect(typing[0]).toBe(1);
    expect(typing[typing.length - 1]).toBe(2);
    expect(sim.isTyping(ALICE)).toBe(false);
    // The stop came before the answer.
    const stopAt = sim.typing.filter((t) => t.user === ALICE && t.status === 2)[0]?.at ?? Infinity;
    expect(stopAt).toBeLessThanOrEqual(sim.chat(ALICE)[0]?.at ?? 0);
    // Echoed the message's context token; announced itself before polling.
    expect(sim.sent[0]?.contextToken).toBe(sim.inbound[0]?.contextToken);
    expect(sim.notifies[0]?.op).toBe('notifystart');
    const q = (await h.app.store.snapshot()).messages.find((m) => m.kind === 'question');
    expect(q?.user).toBe(`ilink:${ALICE}`);
    expect(q?.msgId).toBe(sim.inbound[0]?.messageId);
    expect(q?.deliveredVia).toBe('ilink');
    expect(q?.outbox).toBeUndefined();
    expect(q?.inbox).toBeUndefined();
    expect(sim.violations).toEqual([]);
  });

  it('a message id above 2^53 is kept exactly (as text)', async () => {
    const { sim, h } = await start();
    const id = 18_446_744_073_709_551_557n; // the largest uint64 prime: no double holds it
    sim.sendText(ALICE, '大号', { id });
    await eventually(() => sim.chat(ALICE).length === 1);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.kind === 'question');
    expect(q?._id).toBe(`ilink:${ALICE}:${id.toString()}`);
    expect(q?.msgId).toBe(id.toString());
  });

  it.each(['same-id', 'new-id', 'no-id'] as const)('a duplicate with %s makes no second model call and no second answer', async (mode) => {
    const { sim, h } = await start({ dify: { script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: 600 }) } });
    sim.sendText(ALICE, '重复的问题', { duplicate: mode, duplicateAfterMs: 300 });
    await eventually(() => sim.inbound.length === 2 && sim.chat(ALICE).length >= 1, 10_000);
    await h.app.worker.idle();
    await sleep(800);
    expect(h.dify.calls.filter((c) => c.body.query === '重复的问题')).toHaveLength(1);
    expect(texts(sim, ALICE)).toEqual(['答：重复的问题']);
    expect(sim.violations).toEqual([]);
  });

  it('a duplicate of a command is answered once too', async () => {
    const { sim } = await start();
    sim.sendText(ALICE, '/help', { duplicate: 'new-id', duplicateAfterMs: 200 });
    await eventually(() => sim.inbound.length === 2 && sim.chat(ALICE).length === 1);
    await sleep(800);
    expect(sim.chat(ALICE)).toHaveLength(1);
    expect(sim.chat(ALICE)[0]?.text).toContain('/clear');
  });

  it('the same words sent again later are a new question', async () => {
    const { sim, h } = await start({ env: {} });
    sim.sendText(ALICE, '再问一次');
    await eventually(() => sim.chat(ALICE).length === 1);
    await h.app.worker.idle();
    // Past the dedupe window (15 s) the same words are a new message: pretend the window has passed.
    const fp = (await h.app.store.snapshot()).kv.filter((k) => k._id.startsWith('ilink:fp:'));
    for (const r of fp) await h.app.store.kvPut(r._id, r.value, 0);
    sim.sendText(ALICE, '再问一次');
    await eventually(() => sim.chat(ALICE).length === 2);
    expect(h.dify.calls).toHaveLength(2);
  });

  it('/clear, keyword replies and blocked words work as elsewhere; group messages are ignored', async () => {
    const { sim, h } = await start({ env: { KEYWORD_REPLIES: '{"价格": "一百元"}', BLOCKED_WORDS: '禁词' } });
    sim.sendText(ALICE, '价格');
    await eventually(() => sim.chat(ALICE).length === 1);
    expect(texts(sim, ALICE)).toEqual(['一百元']);
    sim.sendText(ALICE, '说个禁词');
    await eventually(() => sim.chat(ALICE).length === 2);
    sim.sendText(ALICE, '/clear');
    await eventually(() => sim.chat(ALICE).length === 3);
    expect(texts(sim, ALICE).slice(1)).toEqual([h.config.texts.inputBlocked, h.config.texts.cleared]);
    // A group's message (the simulator's users write one to one: the next poll answers it instead).
    const group = { seq: 1, message_id: 7, from_user_id: BOB, to_user_id: sim.accounts[0]?.botId, group_id: 'g1@chatroom', message_type: 1, message_state: 2, context_token: 'AARzgroup', item_list: [{ type: 1, text_item: { text: '群里的问题' } }] };
    sim.inject('getupdates', { json: { ret: 0, msgs: [group], get_updates_buf: '' } });
    await sleep(1500);
    expect(sim.chat(BOB)).toHaveLength(0);
    expect(h.dify.calls).toHaveLength(0);
    expect(sim.violations).toEqual([]);
  });
});

describe('iLink: long answers and the context token budget', () => {
  it('a 4,000-character answer is split on grapheme boundaries under the limit, in order, within the budget', async () => {
    const unit = '第一段落👨‍👩‍👧‍👦内容🇨🇳。';
    const long = Array.from({ length: 40 }, (_, i) => `${i + 1}. ${unit.repeat(8)}`).join('\n\n');
    expect(long.length).toBeGreaterThan(4000);
    const { sim, h } = await start({ dify: { script: () => ({ kind: 'answer', text: long, durationMs: 300 }) }, env: { ILINK_SEND_GAP_MS: '20' } });
    sim.sendText(ALICE, '写长文');
    await eventually(() => sim.chat(ALICE).length >= 3, 15_000);
    await h.app.worker.idle();
    await sleep(500);
    const got = sim.chat(ALICE);
    expect(got.length).toBeLessThanOrEqual(CONTEXT_SENDS);
    for (const m of got) {
      expect(m.text.length).toBeLessThanOrEqual(TEXT_MAX);
      expect(m.truncatedFrom).toBeUndefined();
      // No family or flag cut in half: every cluster is whole.
      expect(m.text.split('👨‍👩‍👧‍👦').join('').includes('\u200d')).toBe(false);
    }
    expect(got.map((m) => m.text).join('').replace(/\s/g, '')).toBe(long.replace(/\s/g, ''));
    const q = (await h.app.store.snapshot()).messages.find((m) => m.kind === 'question');
    expect(q?.inbox).toBeUndefined();
    expect(sim.violations).toEqual([]);
  });

  it('an answer longer than the budget says so in its last allowed message; 1 sends the rest on the new token', async () => {
    const long = Array.from({ length: 14 }, (_, i) => `第${i + 1}节。${'内容'.repeat(900)}`).join('\n\n'); // ~14 messages
    const { sim, h } = await start({ dify: { script: () => ({ kind: 'answer', text: long, durationMs: 200 }) } });
    sim.sendText(ALICE, '很长的回答');
    await eventually(() => sim.chat(ALICE).length === CONTEXT_SENDS, 15_000);
    await h.app.worker.idle();
    await sleep(500);
    expect(sim.chat(ALICE)).toHaveLength(CONTEXT_SENDS);
    const last = sim.chat(ALICE)[CONTEXT_SENDS - 1]?.text ?? '';
    expect(last).toContain('回复 1');
    // Nothing was refused by the service: the budget was respected, not discovered.
    expect(sim.requests.filter((r) => r.op === 'sendmessage' && (r.answer as { ret?: number } | undefined)?.ret !== 0)).toHaveLength(0);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.kind === 'question');
    const total = q?.pages?.length ?? 0;
    expect(total).toBeGreaterThan(CONTEXT_SENDS);
    expect(q?.inbox).toBe(`ilink:${ALICE}`);
    sim.sendText(ALICE, '1');
    await eventually(() => sim.chat(ALICE).length === total, 15_000);
    await sleep(500);
    expect(sim.chat(ALICE)).toHaveLength(total);
    expect(sim.chat(ALICE).slice(CONTEXT_SENDS).every((m) => m.contextToken === sim.inbound[1]?.contextToken)).toBe(true);
    expect(h.dify.calls).toHaveLength(1);
    // `1` again, once the same words count as a new message (15 s later: the window is made to pass).
    for (const r of (await h.app.store.snapshot()).kv.filter((k) => k._id.startsWith('ilink:fp:'))) await h.app.store.kvPut(r._id, r.value, 0);
    sim.sendText(ALICE, '1');
    await eventually(() => sim.chat(ALICE).length === total + 1);
    expect(sim.chat(ALICE)[total]?.text).toBe(h.config.texts.nothingPending);
    expect(sim.violations).toEqual([]);
  });
});

/** A PNG's first bytes, then noise: enough for the type sniffing and for the AES check. */
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(3000)]);
const VISION = { ...DEFAULT_PARAMETERS, file_upload: { image: { enabled: true, number_limits: 3, detail: 'high', transfer_methods: ['remote_url', 'local_file'] } } };

describe('iLink: pictures, voice and quotes', () => {
  it.each(['hex+raw', 'raw', 'hex-b64', 'none'] as const)('a picture (keys: %s) reaches the model decrypted, with the next question', async (keys) => {
    const { sim, h } = await start({ dify: { parameters: VISION, script: (b) => ({ kind: 'answer', text: `图：${String(b.query)}`, durationMs: 100 }) } });
    sim.sendImage(ALICE, PNG, { keys });
    await eventually(() => sim.chat(ALICE).length === 1);
    expect(sim.chat(ALICE)[0]?.text).toContain('收到图片');
    sim.sendText(ALICE, '这张图里是什么');
    await eventually(() => sim.chat(ALICE).length === 2);
    expect(h.dify.uploads).toHaveLength(1);
    expect(h.dify.uploads[0]?.bytes.equals(PNG)).toBe(true);
    expect(h.dify.uploads[0]?.contentType).toBe('image/png');
    expect(sim.chat(ALICE)[1]?.text).toBe('图：这张图里是什么');
    // The key is in the question's record only, never in a log line.
    const q = (await h.app.store.snapshot()).messages.find((m) => m.kind === 'question');
    const key = sim.blobs[0]?.aeskeyHex ?? 'none';
    if (keys !== 'none') expect(h.logs.some((l) => l.includes(key))).toBe(false);
    expect(q?.image?.mediaId).toBeTruthy();
    expect(sim.violations).toEqual([]);
  });

  it('a picture the CDN cannot give: the question is asked without it, and says so', async () => {
    const { sim, h } = await start({ dify: { parameters: VISION, script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: 100 }) } });
    sim.sendImage(ALICE, PNG);
    await eventually(() => sim.chat(ALICE).length === 1);
    sim.inject('cdn-download', { status: 500, errorMessage: 'boom' }, 5);
    sim.sendText(ALICE, '顺便问个问题');
    await eventually(() => sim.chat(ALICE).length === 2);
    expect(h.dify.uploads).toHaveLength(0);
    expect(sim.chat(ALICE)[1]?.text).toContain('答：顺便问个问题');
    expect(sim.chat(ALICE)[1]?.text).toContain(h.config.texts.imageExpired);
  });

  it('voice with its transcript is a question; voice without one and files are politely refused', async () => {
    const { sim, h } = await start();
    sim.sendVoice(ALICE, randomBytes(200), { transcript: '明天天气怎么样' });
    await eventually(() => sim.chat(ALICE).length === 1);
    expect(sim.chat(ALICE)[0]?.text).toBe('答：明天天气怎么样');
    sim.sendVoice(ALICE, randomBytes(200));
    sim.sendFile(ALICE, randomBytes(100), 'a.pdf');
    await eventually(() => sim.chat(ALICE).length === 3);
    expect(texts(sim, ALICE).slice(1)).toEqual([h.config.texts.channelUnsupported, h.config.texts.channelUnsupported]);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('a quote goes with the question: its text, or found by its svr_id among earlier messages', async () => {
    const { sim, h } = await start();
    sim.sendText(ALICE, '原来的话');
    await eventually(() => sim.chat(ALICE).length === 1);
    sim.sendText(ALICE, '这是什么意思', { quote: { text: '被引用的一句' } });
    await eventually(() => sim.chat(ALICE).length === 2);
    expect(h.dify.calls[1]?.body.query).toBe('> 被引用的一句\n\n这是什么意思');
    // Newer WeChat clients send only the quoted message's id: the bot's own answer, here.
    sim.sendText(ALICE, '展开说说', { quote: { svrId: sim.sent[0]?.messageId as string } });
    await eventually(() => sim.chat(ALICE).length === 3);
    expect(h.dify.calls[2]?.body.query).toBe('> 答：原来的话\n\n展开说说');
    sim.sendText(ALICE, '再展开', { quote: { svrId: sim.inbound[0]?.messageId as string } });
    await eventually(() => sim.chat(ALICE).length === 4);
    expect(h.dify.calls[3]?.body.query).toBe('> 原来的话\n\n再展开');
  });
});

describe('iLink: failures', () => {
  it('session expiry mid-answer: polling stops, said once; after a new login the answer is delivered once', async () => {
    const { sim, h, channel } = await start({
      dify: { script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: 1500 }) },
      provision: false,
      env: { ADMIN_TOKEN: 'admin-token-0123456789abcdef' },
    });
    // A QR login from the console's control, every step the owner takes on the phone.
    await channel.ilink.startLogin();
    await eventually(() => sim.qrcodes.length === 1);
    sim.scan({ user: ALICE });
    sim.confirm();
    await eventually(async () => (await channel.ilink.status()).login?.done === true, 10_000).catch(async (e) => {
      console.log(JSON.stringify(await channel.ilink.status()), sim.qrcodes[0]?.reported, h.logs.slice(-10).join('\n'));
      throw e;
    });
    await eventually(() => sim.polls.length > 0, 10_000);
    sim.sendText(ALICE, '慢慢回答');
    await eventually(async () => (await h.app.store.snapshot()).messages.some((m) => m.kind === 'question'), 10_000);
    sim.expireSession();
    await h.app.worker.idle();
    await eventually(async () => (await channel.ilink.status()).session.expiredAt !== undefined, 10_000);
    expect(sim.chat(ALICE)).toHaveLength(0);
    const q = (await h.app.store.snapshot()).messages.find((m) => m.kind === 'question');
    expect(q?.status).toBe('answered');
    expect(q?.inbox).toBe(`ilink:${ALICE}`);
    expect(h.logs.filter((l) => l.includes('session ended by the service'))).toHaveLength(1);
    const health = await channel.health?.();
    expect(health?.find((i) => i.name.endsWith('会话'))?.ok).toBe(false);
    const polls = sim.polls.length;
    await sleep(1500);
    expect(sim.polls.length).toBe(polls); // stopped
    // A new login; the user writes again; the answer waiting comes first, once.
    await channel.ilink.startLogin();
    await eventually(() => sim.qrcodes.length === 2);
    sim.scan({ user: ALICE });
    sim.confirm();
    await eventually(async () => (await channel.ilink.status()).session.expiredAt === undefined && (await channel.ilink.status()).login?.done === true, 10_000);
    await eventually(() => sim.polls.length > polls, 10_000);
    sim.sendText(ALICE, '1');
    await eventually(() => sim.chat(ALICE).length === 1, 10_000);
    await sleep(800);
    expect(texts(sim, ALICE)).toEqual(['答：慢慢回答']);
    expect(h.dify.calls).toHaveLength(1);
    expect(sim.violations).toEqual([]);
  });

  it('ret -2 on send: retried where it may help (rate), not where it cannot (prepare failed); nothing is lost', async () => {
    const { sim, h } = await start();
    sim.inject('sendmessage', { json: { ret: -2, errmsg: '' } }, 1);
    sim.sendText(ALICE, '限流');
    await eventually(() => sim.chat(ALICE).length === 1, 15_000);
    expect(h.logs.some((l) => l.includes('iLink send refused') && l.includes('"retry":true'))).toBe(true);
    sim.inject('sendmessage', { json: { ret: -2, errmsg: 'prepare failed' } }, 1);
    sim.sendText(ALICE, '额度');
    await h.app.worker.idle();
    await eventually(() => h.logs.some((l) => l.includes('prepare failed') && l.includes('"retry":false')));
    await sleep(300);
    expect(sim.chat(ALICE)).toHaveLength(1);
    // The answer waits; the user's next message (a new token) brings it, then its own answer.
    sim.sendText(ALICE, '还在吗');
    await eventually(() => sim.chat(ALICE).length === 3, 10_000);
    expect(texts(sim, ALICE)).toEqual(['答：限流', '答：额度', '答：还在吗']);
    expect(sim.violations).toEqual([]);
  });

  it('the cursor survives a restart: nothing is asked again, what came meanwhile is answered', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-ilink-'));
    const first = await start({ dataDir });
    const sim = first.sim;
    sim.sendText(ALICE, '第一个');
    await eventually(() => sim.chat(ALICE).length === 1);
    await first.h.app.worker.idle();
    const cursorBefore = sim.polls[sim.polls.length - 1]?.returned;
    await first.h.close();
    h = undefined;
    sim.sendText(ALICE, '停机时发的');
    const second = await start({ dataDir, provision: false, env: { ILINK_BOT_TOKEN: sim.accounts[0]?.token ?? '', ILINK_BOT_ID: sim.accounts[0]?.botId ?? '' } });
    await eventually(() => sim?.chat(ALICE).length === 2, 10_000);
    const after = sim.polls.find((p) => p.count > 0 && p.at >= (sim?.inbound[1]?.message['create_time_ms'] as number));
    expect(after?.stale).toBe(false);
    expect(sim.polls.some((p) => p.cursor === cursorBefore)).toBe(true);
    // Only what came meanwhile is asked (twice at the backend: the new Dify simulator does not know the
    // conversation the first run started, so that call is retried in a new one).
    expect([...new Set(second.h.dify.calls.map((c) => c.body.query))]).toEqual(['停机时发的']);
    await sleep(500);
    expect(texts(sim, ALICE)).toEqual(['答：第一个', '答：停机时发的']);
    await second.h.close();
    h = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });
});

/**
 * The personal-WeChat channel (lib/channels/ilink/, docs/ilink.md) against the iLink simulator over
 * loopback, in a real server with a real store: a conversation with the typing indicator; duplicates
 * with the same, a new or no id asked once; a long answer split within the context token's budget,
 * the rest by `1`; a picture downloaded from the CDN and decrypted for the model; quotes; session
 * expiry mid-answer, a new login, and the answer delivered once; the cursor across a restart; an
 * answer's pictures after its text as image messages (their bytes decrypted at the simulator equal to
 * the picture server's), within what is left of the budget, once, and never at the text's expense.
 * Every test ends with the simulator's `violations` empty: nothing the official client never does.
 */
import { randomBytes } from 'crypto';
import { mkdtempSync, rmSync } from 'fs';
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
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
let pictures: Server | undefined;
afterEach(async () => {
  await h?.close();
  await sim?.close();
  pictures?.closeAllConnections();
  await new Promise<void>((r) => (pictures ? pictures.close(() => r()) : r()));
  h = undefined;
  sim = undefined;
  pictures = undefined;
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
      // The tests' picture hosts are on loopback, which only MEDIA_ALLOW_HOSTS lets the bot fetch.
      MEDIA_ALLOW_HOSTS: '127.0.0.1',
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

/** A picture host on loopback (trusted as the backend's own host is: the Dify simulator's, 127.0.0.1). */
async function pictureHost(files: Record<string, Buffer>): Promise<string> {
  pictures = createServer((req, res) => {
    const body = files[req.url ?? ''];
    if (body) res.writeHead(200, { 'Content-Type': 'image/png' }).end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => (pictures as Server).listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${((pictures as Server).address() as AddressInfo).port}`;
}

const png = (n: number) => Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(n)]);
const jpeg = (n: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(n)]);
const images = (s: IlinkSim, user: string) => s.chat(user).filter((m) => m.media.length > 0);
const question = async (hh: Harness) => (await hh.app.store.snapshot()).messages.find((m) => m.kind === 'question' && m.status !== 'pending' && m.question !== '1');
/** `sections` paragraphs of about 1,800 characters: one message each. */
const longText = (sections: number) => Array.from({ length: sections }, (_, i) => `第${i + 1}节。${'内容'.repeat(900)}`).join('\n\n');

describe('iLink: an answer’s pictures', () => {
  it.each([false, true])('follow the text as image messages whose bytes arrive decrypted, once (upload_full_url: %s)', async (uploadFullUrl) => {
    const cat = png(30_000);
    const drawn = jpeg(5_000);
    const host = await pictureHost({ '/cat.png': cat, '/drawn.jpg': drawn });
    const { sim, h, channel } = await start({
      sim: { uploadFullUrl },
      dify: { script: () => ({ kind: 'answer', text: `这是猫：\n\n![猫](${host}/cat.png)\n\n[说明书](${host}/manual.pdf)`, files: [{ url: `${host}/drawn.jpg` }], durationMs: 100 }) },
    });
    sim.sendText(ALICE, '画一只猫');
    await eventually(() => sim.chat(ALICE).length === 3, 15_000);
    await h.app.worker.idle();
    const [text, first, second] = sim.chat(ALICE);
    // The text first, naming the picture instead of its URL; a link that is not a picture stays as written.
    expect(text?.media).toEqual([]);
    expect(text?.text).toContain('这是猫：');
    expect(text?.text).toContain('[猫]');
    expect(text?.text).not.toContain('cat.png');
    expect(text?.text).toContain(`${host}/manual.pdf`);
    // Then the backend's file, then the Markdown's picture: each exactly the picture server's bytes.
    expect(first?.media[0]).toMatchObject({ type: 'image', found: true, keyEncoding: 'base64-hex', keyMatches: true, grey: false });
    expect(first?.media[0]?.bytes?.equals(drawn)).toBe(true);
    expect(second?.media[0]?.bytes?.equals(cat)).toBe(true);
    // On the same context token as the text, each on its own upload and key.
    expect(sim.chat(ALICE).map((m) => m.contextToken)).toEqual(Array(3).fill(sim.inbound[0]?.contextToken));
    expect(sim.blobs.map((b) => b.mediaType)).toEqual([1, 1]);
    expect(new Set(sim.blobs.map((b) => b.aeskeyHex)).size).toBe(2);
    expect(sim.requests.filter((r) => r.op === 'cdn-upload').map((r) => [r.method, r.headers.authorization])).toEqual([['POST', undefined], ['POST', undefined]]);
    const q = await question(h);
    expect(q?.parts?.map((p) => p.sent?.['ilink'])).toEqual(['image message', 'image message']);
    expect(q?.outbox).toBeUndefined();
    // Delivered again by every path that could: a duplicate of the question, the worker's and the
    // sweep's deliveries, `1`. No picture goes twice.
    sim.sendText(ALICE, '画一只猫', { duplicate: 'new-id', duplicateAfterMs: 100, id: BigInt(sim.inbound[0]?.messageId ?? '0') });
    await channel.deliver?.(q?._id ?? '');
    await h.app.worker.sweep();
    sim.sendText(ALICE, '1');
    await eventually(() => sim.chat(ALICE).length === 4);
    await sleep(600);
    expect(sim.chat(ALICE)[3]?.text).toBe(h.config.texts.nothingPending);
    expect(images(sim, ALICE)).toHaveLength(2);
    expect(h.dify.calls).toHaveLength(1);
    expect(sim.violations).toEqual([]);
  });

  it('an upload the CDN refuses (4xx) is not tried again: the text is delivered, the picture noted with why', async () => {
    const host = await pictureHost({ '/a.png': png(1000) });
    const { sim, h } = await start({ dify: { script: () => ({ kind: 'answer', text: `图：![甲](${host}/a.png)`, durationMs: 100 }) } });
    sim.inject('cdn-upload', { status: 400, errorMessage: 'invalid filekey' });
    sim.sendText(ALICE, '画');
    await eventually(() => sim.chat(ALICE).length === 1);
    await h.app.worker.idle();
    await eventually(async () => (await question(h))?.parts?.[0]?.sent?.['ilink'] !== 'sending');
    expect(sim.chat(ALICE)[0]?.text).toBe('图：[甲]');
    expect((await question(h))?.parts?.[0]?.sent?.['ilink']).toBe('not sent: CDN HTTP 400 invalid filekey');
    expect(sim.requests.filter((r) => r.op === 'cdn-upload')).toHaveLength(1);
    expect(h.logs.some((l) => l.includes('iLink answer picture not sent'))).toBe(true);
    await sleep(300);
    expect(images(sim, ALICE)).toHaveLength(0);
    expect(sim.violations).toEqual([]);
  });

  it('the CDN failing (5xx) is tried again, up to 3 times; an answer without x-encrypted-param is final', async () => {
    const a = png(2000);
    const host = await pictureHost({ '/a.png': a });
    const { sim, h } = await start({ dify: { script: (b) => ({ kind: 'answer', text: `${String(b.query)}：![甲](${host}/a.png)`, durationMs: 100 }) } });
    sim.inject('cdn-upload', { status: 503 }, 2);
    sim.sendText(ALICE, '第一次');
    await eventually(() => images(sim, ALICE).length === 1, 15_000);
    expect(images(sim, ALICE)[0]?.media[0]?.bytes?.equals(a)).toBe(true);
    expect(sim.requests.filter((r) => r.op === 'cdn-upload')).toHaveLength(3);
    // Three failures: given up.
    sim.inject('cdn-upload', { status: 500 }, 3);
    sim.sendText(ALICE, '第二次');
    await eventually(async () => (await h.app.store.snapshot()).messages.some((m) => m.question === '第二次' && m.parts?.[0]?.sent?.['ilink']?.startsWith('not sent')), 15_000);
    expect(sim.requests.filter((r) => r.op === 'cdn-upload')).toHaveLength(6);
    sim.settings.uploadReturnsParam = false;
    sim.sendText(ALICE, '第三次');
    await eventually(async () => (await h.app.store.snapshot()).messages.some((m) => m.question === '第三次' && m.parts?.[0]?.sent?.['ilink']?.startsWith('not sent')), 15_000);
    const noted = (await h.app.store.snapshot()).messages.filter((m) => m.kind === 'question').map((m) => [m.question, m.parts?.[0]?.sent?.['ilink']]);
    expect(noted).toEqual(expect.arrayContaining([['第一次', 'image message'], ['第二次', 'not sent: CDN HTTP 500 injected'], ['第三次', 'not sent: CDN no x-encrypted-param']]));
    expect(sim.requests.filter((r) => r.op === 'cdn-upload')).toHaveLength(7);
    expect(texts(sim, ALICE).filter((t) => t)).toEqual(['第一次：[甲]', '第二次：[甲]', '第三次：[甲]']);
    expect(images(sim, ALICE)).toHaveLength(1);
    expect(sim.violations).toEqual([]);
  });

  it('pictures use what the text left of the budget; one that does not fit is noted, and never makes the service refuse', async () => {
    const host = await pictureHost({ '/1.png': png(800), '/2.png': png(900) });
    const { sim, h } = await start({ dify: { script: () => ({ kind: 'answer', text: `${longText(9)}\n\n![一](${host}/1.png) ![二](${host}/2.png)`, durationMs: 100, pieceChars: 2000 }) } });
    sim.sendText(ALICE, '九段加两张图');
    await eventually(async () => (await question(h))?.parts?.every((p) => p.sent?.['ilink'] !== undefined && p.sent['ilink'] !== 'sending'), 20_000);
    const q = await question(h);
    expect(q?.pages).toHaveLength(9);
    expect(sim.chat(ALICE)).toHaveLength(CONTEXT_SENDS);
    // All nine messages of text (no "reply 1": nothing is left of it), then the one picture that fits.
    expect(sim.chat(ALICE).slice(0, 9).every((m) => m.media.length === 0 && !m.text.includes('回复 1'))).toBe(true);
    expect(sim.chat(ALICE)[9]?.media[0]?.bytes?.length).toBe(808);
    expect(q?.parts?.map((p) => p.sent?.['ilink'])).toEqual(['image message', 'not sent: budget']);
    expect(sim.requests.filter((r) => r.op === 'sendmessage' && (r.answer as { ret?: number } | undefined)?.ret !== 0)).toHaveLength(0);
    expect(sim.violations).toEqual([]);
  });

  it('a picture never takes the last allowed send while another answer is still being written', async () => {
    const host = await pictureHost({ '/1.png': png(700) });
    const { sim, h } = await start({
      // The long answer in few pieces, so it is written at once however busy the machine; the second takes its time.
      dify: { script: (b) => (String(b.query) === '先' ? { kind: 'answer', text: `${longText(9)}\n\n![一](${host}/1.png)`, durationMs: 100, pieceChars: 2000 } : { kind: 'answer', text: '后面的回答', durationMs: 3000 }) },
    });
    sim.sendText(ALICE, '先');
    sim.sendText(ALICE, '后');
    await eventually(() => sim.chat(ALICE).length === CONTEXT_SENDS, 20_000);
    await h.app.worker.idle();
    await sleep(300);
    // Nine messages of the first answer, its picture left (the last send is kept for the text to come), then the second answer.
    expect(sim.chat(ALICE)[CONTEXT_SENDS - 1]?.text).toBe('后面的回答');
    expect(images(sim, ALICE)).toHaveLength(0);
    const first = (await h.app.store.snapshot()).messages.find((m) => m.question === '先');
    expect(first?.parts?.[0]?.sent?.['ilink']).toBe('not sent: budget');
    expect(sim.requests.filter((r) => r.op === 'sendmessage' && (r.answer as { ret?: number } | undefined)?.ret !== 0)).toHaveLength(0);
    expect(sim.violations).toEqual([]);
  });

  it('an answer longer than the budget keeps its "reply 1"; its pictures follow the rest of the text on the new token', async () => {
    const pic = png(1500);
    const host = await pictureHost({ '/p.png': pic });
    const { sim, h } = await start({ dify: { script: () => ({ kind: 'answer', text: `${longText(12)}\n\n![图](${host}/p.png)`, durationMs: 100, pieceChars: 2000 }) } });
    sim.sendText(ALICE, '很长还有图');
    await eventually(() => sim.chat(ALICE).length === CONTEXT_SENDS, 15_000);
    await h.app.worker.idle();
    await sleep(500);
    expect(sim.chat(ALICE)).toHaveLength(CONTEXT_SENDS);
    expect(sim.chat(ALICE)[CONTEXT_SENDS - 1]?.text).toContain('回复 1');
    expect(images(sim, ALICE)).toHaveLength(0);
    expect((await question(h))?.parts?.[0]?.sent).toBeUndefined(); // not given up: it waits with the text
    sim.sendText(ALICE, '1');
    const total = (await question(h))?.pages?.length ?? 0;
    await eventually(() => sim.chat(ALICE).length === total + 1, 15_000);
    const last = sim.chat(ALICE)[total];
    expect(last?.media[0]?.bytes?.equals(pic)).toBe(true);
    expect(last?.contextToken).toBe(sim.inbound[1]?.contextToken);
    expect((await question(h))?.parts?.[0]?.sent?.['ilink']).toBe('image message');
    expect(sim.violations).toEqual([]);
  });

  it('a part that is not a picture, and a session that ends before the upload: the text is delivered, each noted', async () => {
    const host = await pictureHost({ '/fake.png': Buffer.from('<html>not a picture</html>'), '/real.png': png(500) });
    const { sim, h, channel } = await start({ dify: { script: () => ({ kind: 'answer', text: `![假](${host}/fake.png) ![真](${host}/real.png)`, durationMs: 100 }) } });
    sim.inject('getuploadurl', { json: { errcode: -14, errmsg: 'session timeout' } });
    sim.sendText(ALICE, '两张');
    await eventually(async () => (await question(h))?.parts?.every((p) => p.sent?.['ilink'] !== undefined && p.sent['ilink'] !== 'sending'), 15_000);
    expect(texts(sim, ALICE)).toEqual(['[假] [真]']);
    expect((await question(h))?.parts?.map((p) => p.sent?.['ilink'])).toEqual(['not sent: not a picture', 'not sent: session ended']);
    await eventually(async () => (await channel.ilink.status()).session.expiredAt !== undefined);
    expect(h.logs.filter((l) => l.includes('session ended by the service'))).toHaveLength(1);
    expect(images(sim, ALICE)).toHaveLength(0);
    expect(sim.violations).toEqual([]);
  });
});

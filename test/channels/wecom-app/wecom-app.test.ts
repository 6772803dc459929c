/**
 * The WeCom self-built app over loopback against the WeCom simulator (lib/sim/wecom-sim.ts): the
 * encrypted URL check; a message acknowledged at once and answered once with message/send however
 * often WeCom re-delivers it; a slow answer; a wrong CorpID or signature refused with 4xx and no model
 * call; long answers cut at 2,048 bytes on grapheme boundaries and paced at 30 a minute per member;
 * markdown; the access token fetched again on 42001/40014; setup errors (60020, 40001, 48002)
 * explained once on the console, not per message; pictures and voice through media/get; an answer's
 * pictures as image messages after its text (uploaded bytes equal, once, within the member's rate).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_PARAMETERS } from '../../../lib/sim/dify-sim';
import { WecomCrypto } from '../../../lib/sim/wecom-common';
import { startWecomSim } from '../../../lib/sim/wecom-sim';
import type { WecomSim, WecomSimOptions } from '../../../lib/sim/wecom-sim';
import { JumpClock } from '../../support/jump-clock';
import { eventually, sleep, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';
import { startPictureHost } from '../../support/picture-host';
import type { PictureHost } from '../../support/picture-host';

const CORP = 'ww5a1c9e3b7d20f864';
const TOKEN = 'QDG6eK';
const AES = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const AGENT = 1000002;
const SECRET = 'wecom-app-secret-for-tests-0001';

let h: Harness | undefined;
let sim: WecomSim | undefined;
let pics: PictureHost | undefined;
afterEach(async () => {
  // Whatever a test checks, the bot never did what WeCom tolerates but a careful client never does.
  const violations = [...(sim?.violations ?? [])];
  await h?.close();
  await sim?.close();
  await pics?.close();
  h = undefined;
  sim = undefined;
  pics = undefined;
  expect(violations).toEqual([]);
});

const echo = (durationMs = 0) => ({ script: (b: { query?: unknown }) => ({ kind: 'answer' as const, text: `答：${String(b.query)}`, durationMs }) });

/** The simulator and a bot whose /wecom is the app's callback URL. */
async function start(opts: HarnessOptions = {}, simOpts: Partial<WecomSimOptions> = {}): Promise<{ h: Harness; sim: WecomSim }> {
  // The callback URL is known once the bot listens: the simulator reads it from this object when it calls.
  const callback = { url: '', token: TOKEN, encodingAesKey: AES };
  sim = await startWecomSim({ corpId: CORP, apps: [{ agentId: AGENT, secret: SECRET, callback }], callbackTimeoutMs: 1000, ...simOpts });
  h = await startHarness({
    ...opts,
    env: { WECOM_CORP_ID: CORP, WECOM_AGENT_ID: String(AGENT), WECOM_SECRET: SECRET, WECOM_TOKEN: TOKEN, WECOM_AES_KEY: AES, WECOM_API_BASE: sim.url, ...opts.env },
  });
  callback.url = `${h.origin}/wecom`;
  return { h, sim };
}

const questions = async (hh: Harness) => (await hh.app.store.snapshot()).messages.filter((m) => m.kind === 'question');

describe('WeCom self-built app', () => {
  it('passes the URL check (encrypted echostr, answered decrypted) and refuses a bad signature', async () => {
    const { sim } = await start({ dify: echo() });
    const ok = await sim.verifyUrl();
    expect(ok.ok, ok.problem).toBe(true);
    const bad = await sim.verifyUrl({ badSignature: true });
    expect(bad.ok).toBe(false);
    expect(bad.status).toBe(401);
  });

  it('acknowledges at once and answers once with message/send, however often WeCom re-delivers', async () => {
    const { h, sim } = await start({ dify: echo(1500) });
    const r = await sim.memberSends('zhangsan', '你好');
    // One delivery: an empty 200 within the 5 s, before the answer exists.
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['ack']);
    expect(r.reply).toBeUndefined();
    const again = await sim.redeliver(r.callbackId);
    expect(again.acked).toBe(true);
    await eventually(() => sim.sentTo('zhangsan').length === 1, 10_000);
    await h.app.worker.idle();
    await sleep(300);
    expect(sim.sentTo('zhangsan').map((m) => [m.msgtype, m.content])).toEqual([['text', '答：你好']]);
    expect(h.dify.calls).toHaveLength(1);
    expect(h.dify.calls[0]?.body.user).toBe('wecom-app:zhangsan');
    const [q] = await questions(h);
    expect(q?.deliveries).toBe(2);
    expect(q?.msgId).toBe(r.msgId);
    expect(q?.deliveredVia).toBe('wecom-app');
  });

  it('sends a slow answer when it is ready, long after WeCom’s 5 seconds (here scaled to 1 s)', async () => {
    const { h, sim } = await start({ dify: echo(2500) });
    const r = await sim.memberSends('lisi', '慢慢想');
    expect(r.deliveries).toHaveLength(1);
    expect(r.deliveries[0]?.outcome).toBe('ack');
    await eventually(() => sim.sentTo('lisi').length === 1, 10_000);
    expect(sim.sentTo('lisi')[0]?.content).toBe('答：慢慢想');
    expect(sim.violations).toEqual([]);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('refuses a wrong CorpID or a wrong signature with 4xx, and asks nothing', async () => {
    const { h } = await start({ dify: echo() });
    const send = async (c: WecomCrypto, user: string) => {
      const inner = `<xml><ToUserName><![CDATA[${CORP}]]></ToUserName><FromUserName><![CDATA[${user}]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[伪造]]></Content><MsgId>7300000000000000001</MsgId><AgentID>${AGENT}</AgentID></xml>`;
      const encrypt = c.encrypt(inner);
      const res = await fetch(`${h.origin}/wecom?${c.query(encrypt, String(Math.floor(Date.now() / 1000)), '123456')}`, {
        method: 'POST',
        body: `<xml><ToUserName><![CDATA[${CORP}]]></ToUserName><AgentID><![CDATA[${AGENT}]]></AgentID><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`,
      });
      return res.status;
    };
    // Signed correctly, encrypted for another corp: the receiveid is the CorpID.
    expect(await send(new WecomCrypto(TOKEN, AES, 'ww0000000000000000'), 'mallory')).toBe(400);
    // Encrypted for this corp, signed with another token.
    expect(await send(new WecomCrypto('WrongToken', AES, CORP), 'mallory')).toBe(401);
    await sleep(100);
    expect(h.dify.calls).toHaveLength(0);
    expect((await h.app.store.snapshot()).messages).toHaveLength(0);
  });

  it('cuts a long answer at 2,048 bytes between grapheme clusters, numbered, and keeps every byte', async () => {
    const long = Array.from({ length: 12 }, (_, i) => `第${i + 1}段 ` + '家👨‍👩‍👧‍👦🇨🇳'.repeat(30)).join('\n\n');
    const { sim } = await start({ dify: { script: () => ({ kind: 'answer', text: long }) } });
    await sim.memberSends('wangwu', '长');
    await eventually(() => sim.sentTo('wangwu').length > 1 && sim.sent.length === sim.sentTo('wangwu').length, 10_000);
    await sleep(500);
    const parts = sim.sentTo('wangwu').map((m) => m.content ?? '');
    for (const p of parts) {
      expect(Buffer.byteLength(p)).toBeLessThanOrEqual(2048);
      expect(p).not.toMatch(/\u200d$/); // a family is never cut after a joiner
    }
    expect(sim.sentTo('wangwu').every((m) => !m.truncatedFrom && m.shown)).toBe(true);
    const joined = parts.map((p, i) => p.replace(new RegExp(`\\n\\n\\(${i + 1}/${parts.length}\\)$`), '')).join('');
    expect(joined.replace(/\s/g, '')).toBe(long.replace(/\s/g, ''));
  });

  it('never sends a member more than 30 messages a minute: the 31st waits for the next minute', async () => {
    const clock = new JumpClock();
    // 31 pages of plain text.
    const long = Array.from({ length: 31 }, (_, i) => `段${i}：` + 'x'.repeat(1990)).join('\n\n');
    const { sim } = await start({ clock, dify: { script: () => ({ kind: 'answer', text: long }) } }, { now: () => clock.now(), overRate: 'drop' });
    await sim.memberSends('zhaoliu', '很长的回答');
    await eventually(() => sim.sentTo('zhaoliu').length === 30, 10_000);
    await sleep(400);
    expect(sim.sentTo('zhaoliu')).toHaveLength(30);
    clock.jump(61_000);
    await eventually(() => sim.sentTo('zhaoliu').length === 31, 10_000);
    expect(sim.sentTo('zhaoliu').filter((m) => m.dropped)).toEqual([]);
  });

  it('sends WeCom markdown with WECOM_MARKDOWN', async () => {
    const { sim } = await start({ env: { WECOM_MARKDOWN: 'on' }, dify: { script: () => ({ kind: 'answer', text: '**重点**\n\n- 一\n- 二' }) } });
    await sim.memberSends('zhangsan', 'md');
    await eventually(() => sim.sentTo('zhangsan').length === 1, 10_000);
    expect(sim.sentTo('zhangsan')[0]).toMatchObject({ msgtype: 'markdown', content: '**重点**\n\n- 一\n- 二' });
  });

  it('fetches the token again when WeCom says it expired (42001) or was revoked (40014), and shares it', async () => {
    const { sim } = await start({ dify: echo() });
    await sim.memberSends('a1', '一');
    await eventually(() => sim.sentTo('a1').length === 1, 10_000);
    sim.expireToken();
    await sim.memberSends('a1', '二');
    await eventually(() => sim.sentTo('a1').length === 2, 10_000);
    sim.revokeToken();
    await sim.memberSends('a1', '三');
    await eventually(() => sim.sentTo('a1').length === 3, 10_000);
    expect(sim.calls.filter((c) => c.op === 'gettoken')).toHaveLength(3);
    expect(sim.calls.filter((c) => c.op === 'message/send').map((c) => c.errcode)).toEqual([0, 42001, 0, 40014, 0]);
  });

  it('explains a setup error (60020 untrusted IP) once on the console and in the log, and sends once it is fixed', async () => {
    const { h, sim } = await start({ dify: echo() }, { trustedIps: ['10.9.9.9'] });
    await sim.memberSends('b1', '第一问');
    await sim.memberSends('b1', '第二问');
    await eventually(async () => (await h.app.store.snapshot()).messages.filter((m) => m.status === 'answered' && (m.sendFailures ?? 0) > 0).length === 2, 10_000);
    const health = (await h.app.channels.named('wecom-app')?.health?.()) ?? [];
    const setup = health.find((i) => i.name.endsWith('设置'));
    expect(setup?.ok).toBe(false);
    expect(setup?.text).toMatch(/60020.*127\.0\.0\.1.*企业可信IP/);
    expect(h.logs.filter((l) => l.includes('60020'))).toHaveLength(1);
    // The owner adds the IP; the recovery sweep sends what waited.
    sim.settings.trustedIps = undefined;
    await sleep(1600); // the sweep sends answers settled longer than STALE_AFTER_MS ago
    await h.app.worker.sweep();
    await eventually(() => sim.sentTo('b1').length === 2, 10_000);
    expect(sim.sentTo('b1').map((m) => m.content).sort()).toEqual(['答：第一问', '答：第二问']);
    const after = (await h.app.channels.named('wecom-app')?.health?.()) ?? [];
    expect(after.find((i) => i.name.endsWith('设置'))?.ok).toBe(true);
  });

  it('names the wrong secret (40001) and a missing permission (48002) with their fixes', async () => {
    const { h, sim } = await start({ env: { WECOM_SECRET: 'not-the-secret' }, dify: echo() });
    await sim.memberSends('c1', '问');
    await eventually(async () => ((await h.app.channels.named('wecom-app')?.health?.()) ?? []).some((i) => i.ok === false && /40001.*WECOM_SECRET/.test(i.text)), 10_000);
    await h.close();
    await sim.close();
    const again = await start({ dify: echo() });
    again.sim.inject('message/send', 48002, 1);
    await again.sim.memberSends('c2', '问');
    await eventually(async () => ((await again.h.app.channels.named('wecom-app')?.health?.()) ?? []).some((i) => i.ok === false && /48002.*可见范围/.test(i.text)), 10_000);
  });

  it('answers help and a welcome in the callback’s own encrypted reply, and leaves other events alone', async () => {
    const { h, sim } = await start({ dify: echo() });
    const help = await sim.memberSends('d1', '/help');
    expect(help.problem).toBeUndefined();
    expect(help.reply?.content).toBe(h.config.texts.channelHelp);
    const sub = await sim.memberSends('d1', { type: 'event', event: 'subscribe' });
    expect(sub.reply?.content).toBe(h.config.texts.welcome);
    const enter = await sim.memberSends('d1', { type: 'event', event: 'enter_agent' });
    expect(enter.deliveries.map((d) => d.outcome)).toEqual(['ack']);
    const loc = await sim.memberSends('d1', { type: 'location', lat: 31.2, lng: 121.5 });
    expect(loc.reply?.content).toBe(h.config.texts.channelUnsupported);
    expect(h.dify.calls).toHaveLength(0);
    expect(sim.sent).toHaveLength(0);
  });

  it('takes a picture for the next question and downloads it with media/get', async () => {
    const vision = { ...DEFAULT_PARAMETERS, file_upload: { image: { enabled: true, number_limits: 3, detail: 'high', transfer_methods: ['remote_url', 'local_file'] } } };
    const { h, sim } = await start({ dify: { ...echo(), parameters: vision } });
    const pic = await sim.memberSends('e1', { type: 'image' });
    expect(pic.reply?.content).toMatch(/图片/);
    await sim.memberSends('e1', '这张图是什么');
    await eventually(() => sim.sentTo('e1').length === 1, 10_000);
    // Downloaded with the app's token and uploaded to Dify with the question.
    expect(sim.mediaGets).toHaveLength(1);
    expect(h.dify.uploads).toHaveLength(1);
    expect(h.dify.calls[0]?.body.files).toEqual([{ type: 'image', transfer_method: 'local_file', upload_file_id: h.dify.uploads[0]?.id }]);
  });

  it('transcribes a voice (WeCom sends no transcript) and answers what was heard', async () => {
    const { sim } = await start({ dify: { ...echo(), transcribe: (a) => (a.filename.endsWith('.amr') ? '明天天气' : '?') } });
    const r = await sim.memberSends('f1', { type: 'voice' });
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['ack']);
    await eventually(() => sim.sentTo('f1').length === 1, 10_000);
    expect(sim.mediaGets).toHaveLength(1);
    expect(sim.sentTo('f1')[0]?.content).toBe('🎤「明天天气」\n\n答：明天天气');
  });
});

describe('WeCom self-built app: an answer’s pictures', () => {
  /** The pictures' host is on loopback, which only MEDIA_ALLOW_HOSTS lets the bot fetch. */
  const withPictures = (text: string, files: string[] = []): HarnessOptions => ({
    env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' },
    dify: { script: () => ({ kind: 'answer', text, files: files.map((url) => ({ url })) }) },
  });
  const noteOf = async (hh: Harness) => ((await questions(hh))[0]?.parts ?? []).map((p) => p.sent?.['wecom-app']);

  it('sends the text naming the pictures, then each JPG/PNG as an image message of exactly its bytes, once', async () => {
    pics = await startPictureHost();
    const { h, sim } = await start(withPictures(`画好了：\n\n![猫](${pics.url}/cat.png)`, [`${pics.url}/drawn.jpg`, `${pics.url}/anim.gif`]));
    const r = await sim.memberSends('pic1', '画');
    await eventually(async () => {
      const notes = await noteOf(h);
      return notes.length === 3 && notes.every((n) => n !== undefined && n !== 'sending');
    }, 10_000);
    const got = sim.sentTo('pic1');
    // The text first, the pictures named in it (no URL); then the backend's file, then the Markdown's picture.
    expect(got.map((m) => m.msgtype)).toEqual(['text', 'image', 'image']);
    expect(got[0]?.content).toBe('画好了：\n\n[猫]');
    expect(got.map((m) => m.content ?? '').join('')).not.toContain(pics.url);
    const uploaded = got.slice(1).map((m) => sim.media.get(m.mediaId ?? ''));
    expect(uploaded.every((u) => u?.uploaded === true && u.type === 'image')).toBe(true);
    expect(uploaded.map((u) => u?.bytes)).toEqual([pics.bytes['drawn.jpg'], pics.bytes['cat.png']]);
    // A GIF is not what WeCom takes: never uploaded, named in the text, and its part says why.
    expect(await noteOf(h)).toEqual(['image message', 'named in text (not_jpg_png)', 'image message']);
    expect(sim.calls.filter((c) => c.op === 'media/upload').map((c) => c.errcode)).toEqual([0, 0]);
    const [q] = await questions(h);
    expect(q?.parts?.[0]?.cached?.['wecom-app']?.id).toBe(got[1]?.mediaId);
    // WeCom delivers the message again and the sweep runs: no second text, no second picture.
    await sim.redeliver(r.callbackId);
    await sleep(1600);
    await h.app.worker.sweep();
    await sleep(300);
    expect(sim.sentTo('pic1')).toHaveLength(3);
    expect(sim.calls.filter((c) => c.op === 'media/upload')).toHaveLength(2);
  });

  it('an upload WeCom refuses costs no text: the answer arrives, the part says why', async () => {
    pics = await startPictureHost();
    const { h, sim } = await start(withPictures(`一只猫 ![猫](${pics.url}/cat.png)`));
    sim.inject('media/upload', 45009, 1);
    await sim.memberSends('pic2', '猫');
    await eventually(async () => (await noteOf(h))[0]?.startsWith('named') === true, 10_000);
    await sleep(300);
    expect(sim.sentTo('pic2').map((m) => [m.msgtype, m.content])).toEqual([['text', '一只猫 [猫]']]);
    expect(await noteOf(h)).toEqual(['named in text (WeCom 45009)']);
    expect(h.logs.some((l) => l.includes('WeCom app answer picture not sent') && l.includes('45009'))).toBe(true);
  });

  it('counts pictures in the member’s 30 a minute: the one past it waits for the next minute', async () => {
    pics = await startPictureHost();
    const clock = new JumpClock();
    // 29 pages of text and two pictures: the second picture is the 31st message.
    const long = Array.from({ length: 29 }, (_, i) => `段${i}：` + 'x'.repeat(1990)).join('\n\n');
    const { h, sim } = await start({ clock, ...withPictures(long, [`${pics.url}/cat.png`, `${pics.url}/drawn.jpg`]) }, { now: () => clock.now(), overRate: 'drop' });
    await sim.memberSends('pic3', '长文和图');
    await eventually(() => sim.sentTo('pic3').length === 30, 10_000);
    await sleep(400);
    expect(sim.sentTo('pic3').map((m) => m.msgtype).slice(28)).toEqual(['text', 'image']);
    clock.jump(61_000);
    await eventually(() => sim.sentTo('pic3').length === 31, 10_000);
    expect(sim.sentTo('pic3').at(-1)?.msgtype).toBe('image');
    expect(sim.sentTo('pic3').filter((m) => m.dropped)).toEqual([]);
    expect(await noteOf(h)).toEqual(['image message', 'image message']);
  });
});

/**
 * WeChat customer service (微信客服) over loopback against the WeCom simulator (lib/sim/wecom-sim.ts):
 * the callback only signals, every message of a burst is pulled and answered once, the cursor lives
 * in the store per account (several accounts, concurrent callbacks, a callback lost), the 5-message
 * and 48-hour rules at their edges (the last allowed message says "reply 1"; `1` opens five more),
 * a human servicer taking the session, the welcome with its single-use code, a wrong signature or
 * CorpID refused with 4xx and no model call, and an answer's pictures as image messages in the slots
 * its text left (the last one kept for text while other answers wait).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WecomCrypto } from '../../../lib/sim/wecom-common';
import { startWecomSim } from '../../../lib/sim/wecom-sim';
import type { WecomSim, WecomSimOptions } from '../../../lib/sim/wecom-sim';
import type { DifySimOptions } from '../../../lib/sim/dify-sim';
import { JumpClock } from '../../support/jump-clock';
import { eventually, sleep, startHarness } from '../../support/harness';
import type { Harness, HarnessOptions } from '../../support/harness';
import { startPictureHost } from '../../support/picture-host';
import type { PictureHost } from '../../support/picture-host';

const CORP = 'ww5a1c9e3b7d20f864';
const TOKEN = 'QDG6eK';
const AES = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const KF_AGENT = 1000003;
const KF_SECRET = 'wecom-kf-app-secret-for-tests-01';
const KF = 'wkSimKf0000000001';
const KF2 = 'wkSimKf0000000002';

let h: Harness | undefined;
let sim: WecomSim | undefined;
let pics: PictureHost | undefined;
afterEach(async () => {
  // Whatever a test checks, the bot never did what WeCom tolerates but a careful client never does.
  const violations = [...(sim?.violations ?? [])];
  await sim?.idle();
  await h?.close();
  await sim?.close();
  await pics?.close();
  h = undefined;
  sim = undefined;
  pics = undefined;
  expect(violations).toEqual([]);
});

const echo = (durationMs = 0): Omit<DifySimOptions, 'apiKey'> => ({ script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs }) });

async function start(opts: HarnessOptions = {}, simOpts: Partial<WecomSimOptions> = {}): Promise<{ h: Harness; sim: WecomSim }> {
  const callback = { url: '', token: TOKEN, encodingAesKey: AES };
  sim = await startWecomSim({ corpId: CORP, apps: [{ agentId: KF_AGENT, secret: KF_SECRET, callback }], kfAccounts: [KF, KF2], callbackTimeoutMs: 5000, ...simOpts });
  h = await startHarness({ ...opts, env: { WECOM_CORP_ID: CORP, WECOM_KF_SECRET: KF_SECRET, WECOM_TOKEN: TOKEN, WECOM_AES_KEY: AES, WECOM_API_BASE: sim.url, ...opts.env } });
  callback.url = `${h.origin}/wecom-kf`;
  return { h, sim };
}

const texts = (s: WecomSim, user: string, kf = KF) => s.kfSentTo(kf, user).map((m) => m.content);

describe('WeChat customer service', () => {
  it('passes the URL check and answers a customer once, however often the notice comes', async () => {
    const { h, sim } = await start({ dify: echo(300) });
    expect((await sim.verifyUrl({ agentId: KF_AGENT })).ok).toBe(true);
    const { callback } = await sim.customerSends(KF, 'wmCustomer0001', '你好');
    expect(callback?.deliveries.map((d) => d.outcome)).toEqual(['ack']);
    await sim.redeliver(callback?.callbackId ?? '');
    await sim.notifyKf(KF);
    await eventually(() => sim.kfSentTo(KF, 'wmCustomer0001').length === 1, 10_000);
    await h.app.worker.idle();
    await sleep(300);
    expect(texts(sim, 'wmCustomer0001')).toEqual(['答：你好']);
    expect(h.dify.calls).toHaveLength(1);
    expect(h.dify.calls[0]?.body.user).toBe(`wecom-kf:${KF}:wmCustomer0001`);
    expect(sim.violations).toEqual([]);
  });

  it('answers every message of a burst of 20 in one sync window, none twice (pages of 3, an empty page with has_more)', async () => {
    const { h, sim } = await start({ dify: echo(200) }, { kfPageMax: 3 });
    const users = ['wmA', 'wmB', 'wmC', 'wmD'];
    const items = Array.from({ length: 20 }, (_, i) => ({ user: users[i % 4] as string, push: `问题${i + 1}` }));
    sim.injectEmptyPage(KF);
    const { callback } = await sim.customerBurst(KF, items);
    expect(callback.acked).toBe(true);
    await eventually(() => sim.kfSent.length === 20, 15_000);
    await h.app.worker.idle();
    await sleep(500);
    expect(sim.kfSent).toHaveLength(20);
    for (const [i, it] of items.entries()) expect(texts(sim, it.user)).toContain(`答：问题${i + 1}`);
    expect(h.dify.calls).toHaveLength(20);
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg' && c.errcode !== 0)).toEqual([]);
    // One pull read them all, page after page: the empty one, then 7 of at most 3.
    expect(sim.calls.filter((c) => c.op === 'kf/sync_msg').length).toBeGreaterThanOrEqual(8);
  });

  it('holds what is over 5 messages after a customer message: the 5th says "reply 1", and 1 sends the rest', async () => {
    // 8 pages of plain text.
    const long = Array.from({ length: 8 }, (_, i) => `第${i + 1}页 ` + '字'.repeat(600)).join('\n\n');
    const { sim } = await start({ dify: { script: () => ({ kind: 'answer', text: long }) } });
    await sim.customerSends(KF, 'wmLong', '讲个长的');
    await eventually(() => sim.kfSentTo(KF, 'wmLong').length === 5, 10_000);
    await sleep(500);
    const first = texts(sim, 'wmLong');
    expect(first).toHaveLength(5);
    expect(first[3]).toMatch(/\n\n\(4\/8\)$/);
    expect(first[4]).toMatch(/\(5\/8\) 回复 1 查看后续$/);
    await sim.customerSends(KF, 'wmLong', '1');
    await eventually(() => sim.kfSentTo(KF, 'wmLong').length === 8, 10_000);
    await sleep(300);
    const all = texts(sim, 'wmLong');
    expect(all).toHaveLength(8);
    expect(all[7]).toMatch(/^第8页/);
    expect(all.join('').replace(/\(\d\/8\)( 回复 1 查看后续)?/g, '').replace(/\s/g, '')).toBe(long.replace(/\s/g, ''));
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg' && c.errcode !== 0)).toEqual([]);
    // A second `1` with nothing left says so.
    await sim.customerSends(KF, 'wmLong', '1');
    await eventually(() => sim.kfSentTo(KF, 'wmLong').length === 9, 10_000);
    expect(texts(sim, 'wmLong')[8]).toBe('没有待发送的内容了，直接发消息即可提问。');
  });

  it('one customer’s burst of 7 questions: 5 answers, the 5th says 2 more wait, and 1 brings them', async () => {
    const { h, sim } = await start({ dify: echo(100) });
    await sim.customerBurst(KF, Array.from({ length: 7 }, (_, i) => ({ user: 'wmMany', push: `第${i + 1}问` })));
    await eventually(() => h.dify.calls.length === 7, 10_000);
    await h.app.worker.idle();
    await eventually(() => sim.kfSentTo(KF, 'wmMany').length === 5, 10_000);
    await sleep(300);
    expect(sim.kfSentTo(KF, 'wmMany')).toHaveLength(5);
    expect(texts(sim, 'wmMany')[4]).toMatch(/还有 2 条回答，回复 1 继续$/);
    await sim.customerSends(KF, 'wmMany', '1');
    await eventually(() => sim.kfSentTo(KF, 'wmMany').length === 7, 10_000);
    const answered = texts(sim, 'wmMany').map((t) => /答：第(\d)问/.exec(t ?? '')?.[1]);
    expect(answered.sort()).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg' && c.errcode !== 0)).toEqual([]);
  });

  it('sends an answer ready just inside 48 hours of the customer’s message, and none just after', async () => {
    const clock = new JumpClock();
    const { h, sim } = await start({ clock, dify: { script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: 1200 }) } }, { now: () => clock.now() });
    await sim.customerSends(KF, 'wmEdge1', '快到期');
    clock.jump(48 * 3_600_000 - 3 * 60_000);
    await eventually(() => sim.kfSentTo(KF, 'wmEdge1').length === 1, 10_000);
    await sim.customerSends(KF, 'wmEdge2', '过期了');
    clock.jump(48 * 3_600_000 + 60_000);
    await h.app.worker.idle();
    await sleep(500);
    expect(sim.kfSentTo(KF, 'wmEdge2')).toHaveLength(0);
    // Nothing was even tried: WeCom would have refused it.
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg').map((c) => c.errcode)).toEqual([0]);
    // The customer's next message opens a new window: `1` brings the answer that waited.
    await sim.customerSends(KF, 'wmEdge2', '1');
    await eventually(() => sim.kfSentTo(KF, 'wmEdge2').length === 1, 10_000);
    expect(texts(sim, 'wmEdge2')).toEqual(['答：过期了']);
  });

  it('stays quiet while a human servicer has the session, and leaves an answer finished meanwhile unsent', async () => {
    const { h, sim } = await start({ dify: echo(800) });
    await sim.customerSends(KF, 'wmHuman', '在吗');
    await eventually(() => sim.kfSentTo(KF, 'wmHuman').length === 1, 10_000);
    // A servicer takes over: the customer's messages are theirs now.
    sim.setServiceState(KF, 'wmHuman', 3, 'servicer01');
    await sim.servicerSends(KF, 'wmHuman', 'servicer01', '您好，我是人工客服');
    await sim.customerSends(KF, 'wmHuman', '我要退款');
    await sleep(800);
    expect(h.dify.calls).toHaveLength(1);
    // Back to the bot; then a servicer takes over while an answer is being written.
    sim.setServiceState(KF, 'wmHuman', 1);
    await sim.customerSends(KF, 'wmHuman', '再问一个');
    await eventually(() => h.dify.calls.length === 2, 10_000);
    sim.setServiceState(KF, 'wmHuman', 3, 'servicer01');
    await h.app.worker.idle();
    await sleep(300);
    expect(texts(sim, 'wmHuman')).toEqual(['答：在吗']);
    // One refusal (95018), not retried.
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg').map((c) => c.errcode)).toEqual([0, 95018]);
  });

  it('welcomes a customer who opens the chat with the event’s single-use code', async () => {
    const { h, sim } = await start({ dify: echo() });
    const r = await sim.customerEnters(KF, 'wmNew', { scene: 'poster' });
    expect(r.welcomeCode).toBeDefined();
    await eventually(() => sim.kfSentTo(KF, 'wmNew').length === 1, 10_000);
    expect(sim.kfSentTo(KF, 'wmNew')[0]).toMatchObject({ via: 'send_msg_on_event', content: h.config.texts.welcome });
    await sim.notifyKf(KF);
    await sleep(300);
    expect(sim.kfSentTo(KF, 'wmNew')).toHaveLength(1);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('keeps one cursor per account: two accounts, concurrent notices and a lost notice, each message answered once', async () => {
    const { h, sim } = await start({ dify: echo(100) });
    // A notice WeCom never delivered: the next one's pull finds its message too.
    await sim.customerSends(KF2, 'wmLost', '没有通知的', { notify: false });
    await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => sim.customerSends(KF, `wmConc${i}`, `并发${i}`)),
      sim.customerSends(KF2, 'wmOther', '另一个号'),
    ]);
    await eventually(() => sim.kfSent.length === 8, 15_000);
    await h.app.worker.idle();
    await sleep(500);
    expect(sim.kfSent).toHaveLength(8);
    expect(texts(sim, 'wmLost', KF2)).toEqual(['答：没有通知的']);
    expect(texts(sim, 'wmOther', KF2)).toEqual(['答：另一个号']);
    for (let i = 0; i < 6; i++) expect(texts(sim, `wmConc${i}`)).toEqual([`答：并发${i}`]);
    expect(h.dify.calls).toHaveLength(8);
    const state = await h.app.store.pollerState(`wecom-kf:${CORP}:${KF}`);
    expect(state?.hasCursor).toBe(true);
  });

  it('refuses a wrong CorpID or signature with 4xx and pulls nothing', async () => {
    const { h, sim } = await start({ dify: echo() });
    await sim.customerSends(KF, 'wmWaiting', '等着', { notify: false });
    const notice = (c: WecomCrypto) => {
      const encrypt = c.encrypt(`<xml><ToUserName><![CDATA[${CORP}]]></ToUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event><Token><![CDATA[ENCx]]></Token><OpenKfId><![CDATA[${KF}]]></OpenKfId></xml>`);
      return fetch(`${h.origin}/wecom-kf?${c.query(encrypt, String(Math.floor(Date.now() / 1000)), '99')}`, { method: 'POST', body: `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` });
    };
    expect((await notice(new WecomCrypto(TOKEN, AES, 'ww0000000000000000'))).status).toBe(400);
    expect((await notice(new WecomCrypto('Wrong', AES, CORP))).status).toBe(401);
    await sleep(200);
    expect(sim.calls.filter((c) => c.op === 'kf/sync_msg')).toHaveLength(0);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('explains the missing customer-service permission (48002) on the console', async () => {
    const { h, sim } = await start({ dify: echo() });
    sim.inject('kf/sync_msg', 48002, 1);
    const r = await sim.customerSends(KF, 'wmPerm', '问');
    expect(r.callback?.acked).toBe(true);
    const health = (await h.app.channels.named('wecom-kf')?.health?.()) ?? [];
    expect(health.find((i) => i.name.endsWith('设置'))?.text).toMatch(/48002.*可调用接口的应用/);
    // The next notice pulls the message the refused one could not.
    await sim.notifyKf(KF);
    await eventually(() => sim.kfSentTo(KF, 'wmPerm').length === 1, 10_000);
  });
});

describe('WeChat customer service: an answer’s pictures', () => {
  const notes = async (hh: Harness, question: string) => {
    const q = (await hh.app.store.snapshot()).messages.find((m) => m.kind === 'question' && m.question === question);
    return (q?.parts ?? []).map((p) => p.sent?.['wecom-kf']);
  };
  const settledNotes = (hh: Harness, question: string, n: number) => async () => {
    const got = await notes(hh, question);
    return got.length === n && got.every((x) => x !== undefined && x !== 'sending');
  };

  it('sends the text, then each picture with kf/send_msg: uploaded with the customer-service token, exactly its bytes, once', async () => {
    pics = await startPictureHost();
    const { h, sim } = await start({ env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' }, dify: { script: () => ({ kind: 'answer', text: `猫：![猫](${pics?.url}/cat.png)`, files: [{ url: `${pics?.url}/drawn.jpg` }] }) } });
    const { callback } = await sim.customerSends(KF, 'wmPic1', '画猫');
    await eventually(settledNotes(h, '画猫', 2), 10_000);
    const got = sim.kfSentTo(KF, 'wmPic1');
    expect(got.map((m) => m.msgtype)).toEqual(['text', 'image', 'image']);
    expect(got[0]?.content).toBe('猫：[猫]');
    expect(got.slice(1).map((m) => sim.media.get(m.mediaId ?? '')?.bytes)).toEqual([pics.bytes['drawn.jpg'], pics.bytes['cat.png']]);
    // Uploaded with the token of the app whose secret is WECOM_KF_SECRET.
    expect(sim.calls.filter((c) => c.op === 'media/upload').map((c) => [c.errcode, c.agentId])).toEqual([
      [0, KF_AGENT],
      [0, KF_AGENT],
    ]);
    expect(await notes(h, '画猫')).toEqual(['image message', 'image message']);
    // The notice again, and the sweep: nothing more.
    await sim.redeliver(callback?.callbackId ?? '');
    await sim.notifyKf(KF);
    await sleep(1600);
    await h.app.worker.sweep();
    await sleep(300);
    expect(sim.kfSentTo(KF, 'wmPic1')).toHaveLength(3);
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg').map((c) => c.errcode)).toEqual([0, 0, 0]);
  });

  it('pictures use what the text left of the 5 messages; one with none left stays named in the text', async () => {
    pics = await startPictureHost();
    const text = Array.from({ length: 3 }, (_, i) => `第${i + 1}页 ` + '字'.repeat(600)).join('\n\n');
    const files = ['cat.png', 'drawn.jpg', 'cat.png?2', 'drawn.jpg?2'].map((n) => ({ url: `${pics?.url}/${n}` }));
    const { h, sim } = await start({ env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' }, dify: { script: () => ({ kind: 'answer', text, files }) } });
    await sim.customerSends(KF, 'wmPic2', '三页四图');
    await eventually(settledNotes(h, '三页四图', 4), 10_000);
    await sleep(300);
    const got = sim.kfSentTo(KF, 'wmPic2');
    expect(got.map((m) => m.msgtype)).toEqual(['text', 'text', 'text', 'image', 'image']);
    // The text's last page is as it is: nothing of it, and no other answer, waits for "reply 1".
    expect(got[2]?.content).toMatch(/^第3页 字+$/);
    expect(await notes(h, '三页四图')).toEqual(['image message', 'image message', 'named in text (no message left of the 5 after the customer’s)', 'named in text (no message left of the 5 after the customer’s)']);
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg').map((c) => c.errcode)).toEqual([0, 0, 0, 0, 0]);
    expect(sim.calls.filter((c) => c.op === 'media/upload')).toHaveLength(2);
  });

  it('while another answer waits, pictures leave the last message to text, so that answer still arrives', async () => {
    pics = await startPictureHost();
    const files = ['cat.png', 'drawn.jpg', 'cat.png?2', 'drawn.jpg?2'].map((n) => ({ url: `${pics?.url}/${n}` }));
    const { h, sim } = await start({
      env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' },
      dify: { script: (b) => (b.query === '先画' ? { kind: 'answer', text: '画好了', files } : { kind: 'answer', text: '后答', durationMs: 1500 }) },
    });
    // Two questions in one burst: they share the 5 messages after the later one.
    await sim.customerBurst(KF, [
      { user: 'wmPic3', push: '先画' },
      { user: 'wmPic3', push: '再问' },
    ]);
    await eventually(() => sim.kfSentTo(KF, 'wmPic3').some((m) => m.content === '后答'), 10_000);
    await eventually(settledNotes(h, '先画', 4), 10_000);
    await sleep(300);
    const got = sim.kfSentTo(KF, 'wmPic3');
    expect(got.map((m) => m.content ?? m.msgtype)).toEqual(['画好了', 'image', 'image', 'image', '后答']);
    expect((await notes(h, '先画')).filter((n) => n === 'image message')).toHaveLength(3);
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg').map((c) => c.errcode)).toEqual([0, 0, 0, 0, 0]);
  });

  it('an upload WeCom refuses costs no text and no message: the part says why', async () => {
    pics = await startPictureHost();
    const { h, sim } = await start({ env: { MEDIA_ALLOW_HOSTS: '127.0.0.1' }, dify: { script: () => ({ kind: 'answer', text: `图：![猫](${pics?.url}/cat.png)` }) } });
    sim.inject('media/upload', -1, 1);
    await sim.customerSends(KF, 'wmPic4', '图');
    await eventually(settledNotes(h, '图', 1), 10_000);
    expect(texts(sim, 'wmPic4')).toEqual(['图：[猫]']);
    expect(await notes(h, '图')).toEqual(['named in text (WeCom -1)']);
    expect(sim.calls.filter((c) => c.op === 'kf/send_msg').map((c) => c.errcode)).toEqual([0]);
  });
});

/**
 * Answers with pictures and files (docs/rich-answers.md), end to end over loopback: the Dify
 * simulator's `message_file` events, a chatflow's workflow files and the answer's Markdown pictures
 * become the answer's parts; hostile URLs are refused with a logged reason and the text is still
 * answered; the answer page shows the pictures from its own origin, and nothing else.
 */
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { afterEach, describe, expect, it } from 'vitest';
import { startWechatApiSim } from '../../lib/sim/wechat-api-sim';
import { startLineSim } from '../../lib/sim/line-sim';
import { startDiscordSim } from '../../lib/sim/discord-sim';
import { eventually, sleep, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { call } from '../support/wire';

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(200, 7)]);
let h: Harness | undefined;
let images: Server | undefined;
afterEach(async () => {
  await h?.close();
  images?.closeAllConnections();
  await new Promise<void>((r) => (images ? images.close(() => r()) : r()));
});

/**
 * A file host on a loopback address of its own (127.0.0.2), which the tests trust with MEDIA_ALLOW_HOSTS as an
 * owner would a LAN file server; the Dify simulator's host (127.0.0.1) is trusted only under its /files/.
 */
const ALLOW = { MEDIA_ALLOW_HOSTS: '127.0.0.2' };
async function fileHost(): Promise<string> {
  images = createServer((req, res) => {
    if (req.url === '/report.pdf') res.writeHead(200).end('%PDF-1.7 not really');
    else if (req.url === '/fake.png') res.writeHead(200, { 'Content-Type': 'image/png' }).end('<script>alert(1)</script>');
    else res.writeHead(200, { 'Content-Type': 'image/png' }).end(PNG);
  });
  await new Promise<void>((r) => (images as Server).listen(0, '127.0.0.2', r));
  return `http://127.0.0.2:${((images as Server).address() as AddressInfo).port}`;
}

const linkIn = (text: string | null) => /<a href="([^"]+)">/.exec(text ?? '')?.[1] ?? '';

describe('answers with pictures and files', () => {
  it('keeps the backend’s files and the Markdown’s pictures as parts, refuses hostile URLs with a reason, and still answers', async () => {
    const host = await fileHost();
    const text = `看这只猫：\n\n![猫](${host}/cat.png)\n\n![元数据](http://169.254.169.254/latest/meta-data/x.png)\n\n![本机](http://localhost:1/x.png)\n\n![后端的另一个端口](http://127.0.0.1:1/secret.png)\n\n完。`;
    h = await startHarness({ answerPage: true, env: { ...ALLOW, PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' }, dify: { script: () => ({ kind: 'answer', text, durationMs: 400, files: [{ url: `${host}/drawn.png` }, { url: '/files/tools/relative.png?sig=abc' }] }) } });
    const r = await h.wechat.send('oRich', '画一只猫');
    await h.app.worker.idle();
    const q = await h.app.store.message(`oRich:${r.msgId}`);
    expect(q?.status).toBe('answered');
    // Files first (a relative one resolved against Dify's base), then the Markdown's pictures; hostile ones dropped.
    const difyOrigin = new URL(h.dify.url).origin;
    expect(q?.parts?.map((p) => p.url)).toEqual([`${host}/drawn.png`, `${difyOrigin}/files/tools/relative.png?sig=abc`, `${host}/cat.png`]);
    expect(h.logs.filter((l) => l.includes('answer file refused'))).toHaveLength(3);
    // Another service on the backend's machine is not the backend's files.
    expect(h.logs.some((l) => l.includes('answer file refused') && l.includes('private_address') && l.includes('127.0.0.1'))).toBe(true);
    expect(h.logs.some((l) => l.includes('answer file refused') && l.includes('private_address') && l.includes('169.254.169.254'))).toBe(true);
    expect(h.logs.some((l) => l.includes('sig=abc'))).toBe(false); // a signed URL's query never reaches the log

    // The page shows the pictures from this origin: the Markdown's in place, the backend's after the text.
    const page = linkIn(r.text);
    const html = (await call(page)).body;
    const token = page.split('/a/')[1] as string;
    expect(html).toContain(`<img src="${token}/m/2" alt="猫"`);
    expect(html).toContain(`<img src="${token}/m/0"`);
    expect(html).not.toContain(host);
    expect(html).not.toContain('169.254.169.254"'); // a refused picture stays a link, never an <img>
    const img = await fetch(`${page}/m/2`);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await img.arrayBuffer()).equals(PNG)).toBe(true);
    // Forged or foreign media paths: 404, nothing fetched.
    expect((await call(`${page}/m/9`)).status).toBe(404);
    expect((await call(`${h.origin}/a/${'A'.repeat(22)}/m/0`)).status).toBe(404);
    expect((await call(`${page}/m/x`)).status).toBe(404);
  });

  it('a chatflow’s workflow files are parts; a mislabelled file is served as a download, never as a page', async () => {
    const host = await fileHost();
    h = await startHarness({
      answerPage: true,
      env: { ...ALLOW, PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' },
      dify: { script: () => ({ kind: 'answer', app: 'advanced-chat', text: '报告见附件。', durationMs: 400, workflowFiles: [{ url: `${host}/report.pdf`, type: 'document', filename: 'report.pdf', mime_type: 'application/pdf' }, { url: `${host}/fake.png`, filename: 'fake.png' }] }) },
    });
    const r = await h.wechat.send('oFlow', '给我报告');
    await h.app.worker.idle();
    const q = await h.app.store.message(`oFlow:${r.msgId}`);
    expect(q?.parts).toMatchObject([{ kind: 'file', name: 'report.pdf' }, { kind: 'image', name: 'fake.png' }]);
    const page = linkIn(r.text);
    await eventually(async () => (await call(page)).body.includes('report.pdf'));
    const pdf = await fetch(`${page}/m/0`);
    expect(pdf.headers.get('content-disposition')).toBe('attachment; filename="report.pdf"');
    expect(pdf.headers.get('content-type')).toBe('application/octet-stream');
    const fake = await fetch(`${page}/m/1`);
    // Labelled a PNG, it is HTML: sent as an inert download with a sandboxing CSP.
    expect(fake.headers.get('content-type')).toBe('application/octet-stream');
    expect(fake.headers.get('content-disposition')).toMatch(/^attachment/);
    expect(fake.headers.get('content-security-policy')).toContain('sandbox');
  });

  it('a page’s picture asked for by many at once is fetched once; a failing one is not asked for again at once', async () => {
    let hits = 0;
    let brokenHits = 0;
    images = createServer((req, res) => {
      if (req.url === '/broken.png') {
        brokenHits++;
        res.writeHead(500).end();
        return;
      }
      hits++;
      setTimeout(() => res.writeHead(200, { 'Content-Type': 'image/png' }).end(PNG), 300); // a slow host
    });
    await new Promise<void>((r) => (images as Server).listen(0, '127.0.0.2', r));
    const host = `http://127.0.0.2:${((images as Server).address() as AddressInfo).port}`;
    h = await startHarness({ answerPage: true, env: { ...ALLOW, PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' }, dify: { script: () => ({ kind: 'answer', text: `![猫](${host}/slow.png) ![坏](${host}/broken.png)`, durationMs: 300 }) } });
    const r = await h.wechat.send('oMany', '画');
    await h.app.worker.idle();
    const page = linkIn(r.text);
    const all = await Promise.all(Array.from({ length: 60 }, () => fetch(`${page}/m/0`).then(async (x) => ({ status: x.status, bytes: Buffer.from(await x.arrayBuffer()) }))));
    expect(all.every((x) => x.status === 200 && x.bytes.equals(PNG))).toBe(true);
    expect(hits).toBe(1);
    const broken = await Promise.all(Array.from({ length: 20 }, () => fetch(`${page}/m/1`).then((x) => x.status)));
    expect(broken.every((st) => st === 404)).toBe(true);
    expect((await fetch(`${page}/m/1`)).status).toBe(404);
    expect(brokenHits).toBe(1);
    expect(h.logs.filter((l) => l.includes('answer file not served'))).toHaveLength(1);
  });

  it('an answer that is only a picture is still an answer', async () => {
    const host = await fileHost();
    h = await startHarness({ env: ALLOW, dify: { script: () => ({ kind: 'answer', text: '', files: [{ url: `${host}/only.png` }] }) } });
    const r = await h.wechat.send('oOnly', '画');
    expect(r.text).toBe('[图片]');
    await h.app.worker.idle();
    expect((await h.app.store.message(`oOnly:${r.msgId}`))?.parts).toHaveLength(1);
  });
});

describe('pictures on the Official Account', () => {
  it('with push: the text first, then each picture as an image message, uploaded once and sent once; without push, the reply links to the page', async () => {
    const host = await fileHost();
    const api = await startWechatApiSim({ appId: 'wxrichpush0000001', appSecret: 'rich-push-secret-0001' });
    try {
      h = await startHarness({
        answerPage: true,
        env: { ...ALLOW, WECHAT_PUSH: 'true', WECHAT_APPID: 'wxrichpush0000001', WECHAT_APPSECRET: 'rich-push-secret-0001', WECHAT_API_BASE: api.url, ADMIN_TOKEN: 'rich-answers-admin-token-0001' },
        dify: { script: () => ({ kind: 'answer', text: `画好了：\n\n![猫](${host}/cat.png)`, files: [{ url: `${host}/drawn.png` }] }) },
      });
      const r = await h.wechat.send('oPics', '画两只猫');
      // The reply is the text, the pictures named in it, with the link to the page where they are.
      expect(r.text).toContain('画好了：');
      expect(r.text).toContain('[猫]');
      expect(r.text).not.toContain(host);
      expect(r.text).toContain('查看图片和文件</a>');
      await eventually(() => api.sentImages.length === 2, 8000);
      await h.app.worker.idle();
      expect(api.sentImages.map((m) => m.touser)).toEqual(['oPics', 'oPics']);
      for (const m of api.sentImages) expect(api.uploads.get(m.mediaId)?.bytes.equals(PNG)).toBe(true);
      const q = await h.app.store.message(`oPics:${r.msgId}`);
      expect(q?.parts?.map((p) => p.sent?.['wechat-oa'])).toEqual(['image message', 'image message']);
      expect(q?.parts?.every((p) => (p.cached?.['wechat-oa']?.until ?? 0) > Date.now())).toBe(true);
      await sleep(600);
      expect(api.sentImages).toHaveLength(2); // once each
      // The console's record view shows each part and how it was delivered.
      const login = await fetch(`${h.origin}/admin/login`, { method: 'POST', body: 'token=rich-answers-admin-token-0001', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
      const overview = await (await fetch(`${h.origin}/admin`, { headers: { cookie } })).text();
      const record = /href="([^"]*\/q\?r=[^"]+)"/.exec(overview)?.[1]?.replace(/&amp;/g, '&') ?? '';
      const view = await (await fetch(new URL(record, `${h.origin}/admin/`).href, { headers: { cookie } })).text();
      expect(view).toContain('图片和文件');
      expect(view).toContain('wechat-oa：image message');
    } finally {
      await api.close();
    }
  });
});

describe('pictures on LINE and Discord', () => {
  it('LINE: the text, then each picture as an image message LINE fetches from the answer page’s https URL', async () => {
    const host = await fileHost();
    const line = await startLineSim({ channelSecret: '0123456789abcdef0123456789abcdef', accessToken: 'line-pics-token-000000' });
    try {
      h = await startHarness({
        env: { ...ALLOW, PUBLIC_URL: 'https://bot.example.com', LINE_CHANNEL_SECRET: '0123456789abcdef0123456789abcdef', LINE_CHANNEL_ACCESS_TOKEN: 'line-pics-token-000000', LINE_API_BASE: line.url },
        dify: { script: () => ({ kind: 'answer', text: `这是猫：![猫](${host}/cat.png)` }) },
      });
      await line.deliver(`${h.origin}/line`, [line.text('U0000000000000000000000000000pics', '猫')]);
      await eventually(() => line.replies.length === 1);
      const sent = line.replies[0];
      expect(sent?.texts).toEqual(['这是猫：[猫]']);
      const url = sent?.images?.[0]?.original ?? '';
      expect(url).toMatch(/^https:\/\/bot\.example\.com\/a\/[A-Za-z0-9_-]{22}\/m\/0$/);
      // What LINE would fetch is the picture, served by this server.
      const img = await fetch(url.replace('https://bot.example.com', h.origin));
      expect(Buffer.from(await img.arrayBuffer()).equals(PNG)).toBe(true);
    } finally {
      await line.close();
    }
  });

  it('Discord: the pictures as embeds of the final edit', async () => {
    const host = await fileHost();
    const discord = await startDiscordSim();
    try {
      h = await startHarness({
        answerPage: true,
        env: { ...ALLOW, DISCORD_PUBLIC_KEY: discord.publicKeyHex, DISCORD_APPLICATION_ID: discord.applicationId, DISCORD_API_BASE: discord.url },
        dify: { script: () => ({ kind: 'answer', text: '画好了', files: [{ url: `${host}/drawn.png` }] }) },
      });
      await discord.send(`${h.origin}/discord`, discord.ask('1150000000000000042', '画'));
      await eventually(() => discord.edits.some((e) => e.content === '画好了'), 8000);
      const final = discord.edits.find((e) => e.content === '画好了');
      const embed = (final?.embeds?.[0] ?? {}) as { image?: { url?: string } };
      expect(embed.image?.url).toMatch(new RegExp(`^${h.origin}/a/[A-Za-z0-9_-]{22}/m/0$`));
      const img = await fetch(embed.image?.url ?? '');
      expect(Buffer.from(await img.arrayBuffer()).equals(PNG)).toBe(true);
    } finally {
      await discord.close();
    }
  });
});

/**
 * The console's iLink page over real HTTP (lib/web/console, docs/console.md): the session shown
 * masked, "log in" starting a QR login whose code is drawn inline as SVG, the verify code typed on
 * the page, the session live afterwards; after -14 the page and /admin/api/health say so, and the
 * token never appears in a page, the health API or a log line.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startIlinkSim } from '../../../lib/sim/ilink-sim';
import type { IlinkSim } from '../../../lib/sim/ilink-sim';
import { eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

let h: Harness | undefined;
let sim: IlinkSim | undefined;
afterEach(async () => {
  await h?.close();
  await sim?.close();
  h = undefined;
  sim = undefined;
});

const ADMIN = 'console-ilink-token-0123456789';
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };

async function session(origin: string): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${origin}/admin/login`, { method: 'POST', body: `token=${ADMIN}`, headers: FORM, redirect: 'manual' });
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0] as string;
  const html = await (await fetch(`${origin}/admin/ilink`, { headers: { cookie } })).text();
  return { cookie, csrf: /name="csrf" value="([0-9a-f]{64})"/.exec(html)?.[1] as string };
}

describe('console: the iLink page', () => {
  it('logs in by QR (with a verify code) from the page, shows the session masked, and -14 on the page and in health', async () => {
    sim = await startIlinkSim({ pollHoldMs: 300, longpollingTimeoutMs: 1000, qrHoldMs: 300 });
    h = await startHarness({ env: { ADMIN_TOKEN: ADMIN, ILINK: 'on', ILINK_API_BASE: sim.url, ILINK_CDN_BASE: sim.cdnUrl, ILINK_SEND_GAP_MS: '0' } });
    h.app.startPollers();
    const s = await session(h.origin);
    const page = async () => (await fetch(`${h?.origin}/admin/ilink`, { headers: { cookie: s.cookie } })).text();
    expect(await page()).toContain('未登录');
    expect(await page()).toContain('<strong>iLink</strong>'); // in the navigation

    const started = await fetch(`${h.origin}/admin/ilink/login`, { method: 'POST', body: `csrf=${s.csrf}&channel=ilink`, headers: { ...FORM, cookie: s.cookie }, redirect: 'manual' });
    expect(started.status).toBe(303);
    await eventually(() => sim?.qrcodes.length === 1);
    const withQr = await eventually(async () => {
      const html = await page();
      return html.includes('<svg') ? html : undefined;
    });
    expect(withQr).toContain('http-equiv="refresh"'); // the page follows the login
    sim.scan({ user: 'owner01@im.wechat', verifyCode: '246810' });
    await eventually(async () => (await page()).includes('name="code"'));
    // Without the CSRF token nothing happens.
    const forged = await fetch(`${h.origin}/admin/ilink/verify`, { method: 'POST', body: 'channel=ilink&code=246810', headers: { ...FORM, cookie: s.cookie } });
    expect(forged.status).toBe(403);
    await fetch(`${h.origin}/admin/ilink/verify`, { method: 'POST', body: `csrf=${s.csrf}&channel=ilink&code=246810`, headers: { ...FORM, cookie: s.cookie }, redirect: 'manual' });
    await eventually(() => sim?.qrcodes[0]?.status === 'scaned', 10_000);
    sim.confirm({ botId: 'b0f5c0ffee01@im.bot' });
    await eventually(async () => (await page()).includes('在线'), 10_000);
    const token = sim.accounts[0]?.token as string;
    const live = await page();
    expect(live).toContain('b0f5…01@im.bot');
    expect(live).not.toContain(token);
    expect(live).toContain(`…${token.slice(-4)}`);

    sim.sendText('owner01@im.wechat', '你好');
    await eventually(() => sim?.chat('owner01@im.wechat').length === 1, 10_000);
    sim.expireSession();
    await eventually(async () => (await page()).includes('已失效'), 10_000);
    const health = await (await fetch(`${h.origin}/admin/api/health`, { headers: { cookie: s.cookie } })).text();
    const items = (JSON.parse(health) as { items: { name: string; ok: boolean | undefined; text: string }[] }).items;
    expect(items.find((i) => i.name === 'ilink 会话')).toMatchObject({ ok: false });
    expect(items.find((i) => i.name === 'ilink 会话')?.text).toContain('-14');
    expect(health).not.toContain(token);
    expect(h.logs.some((l) => l.includes(token))).toBe(false);
    expect(sim.violations).toEqual([]);
  });
});

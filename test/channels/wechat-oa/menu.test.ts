/**
 * The custom menu: `MENU` checked at start, and `npm run menu -- show|publish|delete` run as a real
 * process against the WeChat API simulator.
 */
import { spawn } from 'child_process';
import { fileURLToPath } from 'url';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../lib/config';
import { wechatSettings } from '../../support/harness';
import { ConfigError } from '../../../lib/errors';
import { menuProblems } from '../../../lib/channels/wechat-oa/menu';
import { startWechatApiSim } from '../../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../../lib/sim/wechat-api-sim';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const APP_ID = 'wxmenu000000000001';
const APP_SECRET = 'menu-app-secret-value-0001';
const KEYS = { HELP: '/help', MORE: '1', PRICE: { ask: '价格是多少？' } };
const MENU = {
  button: [
    { type: 'click', name: '帮助', key: 'HELP' },
    { name: '更多', sub_button: [{ type: 'click', name: '继续上一条回答', key: 'MORE' }, { type: 'click', name: '价格', key: 'PRICE' }, { type: 'view', name: '官网', url: 'https://example.com/' }] },
  ],
};

let api: WechatApiSim | undefined;
afterEach(async () => api?.close());

function menu(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/menu.ts', ...args], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, out })));
}

describe('MENU', () => {
  it('accepts WeChat’s format with CLICK keys the bot handles', () => {
    expect(menuProblems(MENU, Object.keys(KEYS))).toEqual([]);
    expect(wechatSettings(loadConfig({ WECHAT_TOKEN: 'token123', DIFY_API_KEY: 'app-x', MENU_KEYS: JSON.stringify(KEYS), MENU: JSON.stringify(MENU) })).menuDefinition).toEqual(MENU);
  });

  it('names every problem at once: counts, name sizes, types, keys MENU_KEYS does not map, urls', () => {
    const bad = {
      button: [
        { type: 'click', name: '这个一级菜单名字太长了', key: 'HELP' },
        { type: 'click', name: '未知', key: 'NOPE' },
        { name: '多', sub_button: Array.from({ length: 6 }, (_, i) => ({ type: 'view', name: `子${i}`, url: 'ftp://x' })) },
        { type: 'tap', name: '四' },
      ],
    };
    const problems = menuProblems(bad, Object.keys(KEYS));
    expect(problems.join('\n')).toMatch(/4 buttons/);
    expect(problems.join('\n')).toMatch(/over 16 bytes/);
    expect(problems.join('\n')).toMatch(/"NOPE", which MENU_KEYS does not map/);
    expect(problems.join('\n')).toMatch(/6 sub-buttons/);
    expect(problems.join('\n')).toMatch(/http\(s\) url/);
    expect(problems.join('\n')).toMatch(/type "tap"/);
    expect(() => loadConfig({ WECHAT_TOKEN: 'token123', DIFY_API_KEY: 'app-x', MENU: JSON.stringify(bad) })).toThrow(ConfigError);
  });
});

describe('npm run menu', () => {
  it('publishes MENU, shows it, deletes it', async () => {
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET });
    const env = { WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, MENU_KEYS: JSON.stringify(KEYS), MENU: JSON.stringify(MENU) };
    expect(await menu(['show'], env)).toMatchObject({ code: 0, out: expect.stringContaining('No custom menu is on.') });
    const published = await menu(['publish'], env);
    expect(published.code).toBe(0);
    expect(published.out).toMatch(/Published 2 buttons/);
    expect(api.menu).toEqual(MENU);
    const shown = await menu(['show'], env);
    expect(JSON.parse(shown.out)).toEqual(MENU);
    expect((await menu(['delete'], env)).code).toBe(0);
    expect(api.menu).toBeUndefined();
    // Neither the secret nor any access token is printed.
    for (const r of [published, shown]) {
      expect(r.out).not.toContain(APP_SECRET);
      for (const t of api.issued) expect(r.out).not.toContain(t);
    }
  });

  it('says clearly what is missing or refused, with WeChat’s code and its meaning', async () => {
    api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET, refuseMenu: 48001 });
    const none = await menu(['show'], {});
    expect(none.code).toBe(2);
    expect(none.out).toMatch(/WECHAT_APPID/);
    const env = { WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url };
    expect((await menu(['publish'], env)).out).toMatch(/MENU is not set/);
    const refused = await menu(['show'], env);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/48001 \(this account may not use this API \(unverified subscription accounts cannot push or use the menu API/);
    expect((await menu(['wat'], env)).out).toMatch(/usage: npm run menu/);
  });
});

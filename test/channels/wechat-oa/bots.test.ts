/**
 * Several accounts in one deployment (BOTS): a second Official Account with its own token at
 * /wechat/<id>, bound to its own Dify app. Nothing crosses: each account verifies only its own
 * signatures, asks only its own app, keeps its own conversations (the same OpenID on both is two
 * users), and the console lists each account's questions apart.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../../lib/sim/dify-sim';
import type { DifySim } from '../../../lib/sim/dify-sim';
import { WechatSim } from '../../../lib/sim/wechat-sim';
import { loadConfig } from '../../../lib/config';
import { ConfigError } from '../../../lib/errors';
import { DIFY_KEY, TOKEN, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

let h: Harness | undefined;
let second: DifySim | undefined;
afterEach(async () => {
  await h?.close();
  await second?.close();
});

const KEY2 = 'app-second-brand-key-0002';
const TOKEN2 = 'brandtwotoken2';

describe('two Official Accounts, two Dify apps, one process', () => {
  it('keep their signatures, apps, conversations and records apart', async () => {
    second = await startDifySim({ apiKey: KEY2, script: (b) => ({ kind: 'answer', text: `二号:${String(b.query)}` }) });
    const bots = [{ id: 'brand2', channel: 'wechat-oa', env: { WECHAT_TOKEN: TOKEN2, DIFY_API_KEY: KEY2, DIFY_BASE_URL: second.url } }];
    h = await startHarness({ dify: { script: (b) => ({ kind: 'answer', text: `一号:${String(b.query)}` }) }, env: { BOTS: JSON.stringify(bots), ADMIN_TOKEN: 'bots-admin-token-0123456789' } });
    const brand2 = new WechatSim({ url: `${h.origin}/wechat/brand2`, token: TOKEN2, timeoutMs: h.oa.timeoutMs, deliveries: h.oa.deliveries });

    // The same OpenID writes to both accounts: each app answers its own account.
    expect((await h.wechat.send('oSame', '你好')).text).toBe('一号:你好');
    expect((await brand2.send('oSame', '你好')).text).toBe('二号:你好');
    expect(h.dify.calls.map((c) => c.body.query)).toEqual(['你好']);
    expect(second.calls.map((c) => c.body.query)).toEqual(['你好']);
    // Two users, two conversations: each continues its own.
    await h.wechat.send('oSame', '再问');
    await brand2.send('oSame', '再问');
    const conv1 = h.dify.calls.map((c) => c.body.conversation_id);
    const conv2 = second.calls.map((c) => c.body.conversation_id);
    expect(conv1[1]).not.toBe('');
    expect(conv2[1]).not.toBe('');
    expect(conv1[1]).not.toBe(conv2[1]);
    expect(second.calls.every((c) => String(c.body.user).startsWith('wechat-oa@brand2:'))).toBe(true);
    // /clear on one account forgets that account's conversation only.
    await brand2.send('oSame', '/clear');
    await h.wechat.send('oSame', '第三问');
    await brand2.send('oSame', '第三问');
    expect(h.dify.calls.at(-1)?.body.conversation_id).toBe(conv1[1]);
    expect(second.calls.at(-1)?.body.conversation_id).toBe('');

    // Each account verifies only its own token's signatures.
    const crossed = new WechatSim({ url: `${h.origin}/wechat`, token: TOKEN2, timeoutMs: h.oa.timeoutMs, deliveries: 1 });
    expect((await crossed.send('oX', '伪造')).deliveries[0]).toMatchObject({ status: 401 });
    const crossed2 = new WechatSim({ url: `${h.origin}/wechat/brand2`, token: TOKEN, timeoutMs: h.oa.timeoutMs, deliveries: 1 });
    expect((await crossed2.send('oX', '伪造')).deliveries[0]).toMatchObject({ status: 401 });
    expect([...h.dify.calls, ...second.calls].some((c) => c.body.query === '伪造')).toBe(false);

    // Records say which account; the console filters by it.
    const recent = await h.app.store.recentQuestions(50, undefined, 'wechat-oa@brand2');
    expect(recent.map((q) => q.question).sort()).toEqual(['你好', '再问', '第三问']);
    expect(recent.every((q) => q.user === 'wechat-oa@brand2:oSame')).toBe(true);
    expect((await h.app.store.recentQuestions(50, undefined, 'wechat-oa')).every((q) => q.user === 'oSame')).toBe(true);
    expect(h.app.routes.has('/wechat/brand2')).toBe(true);
  });
});

describe('BOTS', () => {
  const base = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY };
  const fails = (bots: unknown, pattern: RegExp) => {
    let caught: unknown;
    try {
      loadConfig({ ...base, BOTS: typeof bots === 'string' ? bots : JSON.stringify(bots) });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).variable).toBe('BOTS');
    expect((caught as Error).message).toMatch(pattern);
  };

  it('says exactly what is wrong with an entry', () => {
    fails('not json', /valid JSON/);
    fails({ id: 'x' }, /list/);
    fails([{ id: 'Bad Id', channel: 'wechat-oa', env: {} }], /"id"/);
    fails([{ id: 'two', channel: 'telegram', env: {} }], /"channel" must be one of wechat-oa, line, discord/);
    fails([{ id: 'two', channel: 'wechat-oa', env: { RATE_LIMIT: '5/h', WECHAT_TOKEN: 'abc123' } }], /RATE_LIMIT is not one of wechat-oa's or a backend's variables/);
    fails([{ id: 'two', channel: 'wechat-oa', env: {} }], /does not turn wechat-oa on/);
    fails([{ id: 'two', channel: 'wechat-oa', env: { WECHAT_TOKEN: 'abc123' } }, { id: 'two', channel: 'wechat-oa', env: { WECHAT_TOKEN: 'def456' } }], /listed twice/);
  });

  it('an instance inherits nothing of the default account, and shares the deployment’s backend unless it names its own', () => {
    const c = loadConfig({ ...base, WECHAT_APPID: 'wxdefault', WECHAT_APPSECRET: 'default-secret', BOTS: JSON.stringify([{ id: 'two', channel: 'wechat-oa', env: { WECHAT_TOKEN: 'abc123' } }]) });
    const two = c.channels.find((s) => s.instance === 'two');
    expect(two?.settings).toMatchObject({ token: 'abc123', appId: undefined, appSecret: undefined });
    expect(two?.backend).toBeUndefined();
  });
});

/** Keyword replies (KEYWORD_REPLIES) over real HTTP: fixed answers before the model, never sent to it. */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../lib/config';
import { ConfigError } from '../../lib/errors';
import { startHarness } from '../support/harness';
import type { Harness } from '../support/harness';

let h: Harness;
afterEach(async () => h?.close());

const TABLE = { 营业时间: '每天 9:00–18:00。', 'prefix:订单': '查订单请点菜单「我的订单」。', 'prefix:订单退款': '退款请联系客服。', WIFI: '密码 12345678' };

describe('keyword replies', () => {
  it('answer exact and prefix matches at once, whatever the width, case or surrounding space, and never ask the model', async () => {
    h = await startHarness({ env: { KEYWORD_REPLIES: JSON.stringify(TABLE) } });
    expect((await h.wechat.send('oKw', '营业时间')).text).toBe('每天 9:00–18:00。');
    expect((await h.wechat.send('oKw', '  ｗｉｆｉ ')).text).toBe('密码 12345678');
    expect((await h.wechat.send('oKw', '订单 123 到哪了')).text).toBe('查订单请点菜单「我的订单」。');
    expect((await h.wechat.send('oKw', '订单退款怎么办')).text).toBe('退款请联系客服。');
    expect((await h.wechat.send('oKw', { type: 'voice', recognition: '营业时间' })).text).toBe('每天 9:00–18:00。');
    expect(h.dify.calls).toHaveLength(0);
    // Anything else goes to the model; commands still win.
    expect((await h.wechat.send('oKw', '营业时间是几点')).text).toBe('你说的是：营业时间是几点');
    expect((await h.wechat.send('oKw', '/help')).text).toBe(h.config.texts.help);
    expect(h.dify.calls).toHaveLength(1);
    // A keyword reply leaves nothing in the inbox.
    expect((await h.wechat.send('oKw', '1')).text).toBe(h.config.texts.nothingPending);
  });

  it('a bad table is refused at start, naming KEYWORD_REPLIES', () => {
    const base = { WECHAT_TOKEN: 'token123', DIFY_API_KEY: 'app-x' };
    for (const bad of ['[]', '{"a": 1}', '{"": "x"}', '{"prefix:": "x"}', '{"a": " "}', JSON.stringify({ a: '长'.repeat(700) })]) {
      expect(() => loadConfig({ ...base, KEYWORD_REPLIES: bad })).toThrow(ConfigError);
      try {
        loadConfig({ ...base, KEYWORD_REPLIES: bad });
      } catch (err) {
        expect((err as ConfigError).variable).toBe('KEYWORD_REPLIES');
      }
    }
  });
});

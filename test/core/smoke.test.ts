import { afterEach, describe, expect, it } from 'vitest';
import { startHarness } from '../support/harness';
import type { Harness } from '../support/harness';

let h: Harness;
afterEach(async () => h?.close());

describe('smoke', () => {
  it('answers the handshake and a fast question', async () => {
    h = await startHarness();
    const hs = await h.wechat.handshake('12345');
    expect(hs).toEqual({ status: 200, body: '12345' });
    const r = await h.wechat.send('oUser1', '你好');
    expect(r.text).toBe('你说的是：你好');
    expect(h.dify.calls).toHaveLength(1);
  });
});

/** The HTTP boundary: what a request that did not come from WeChat, or is hostile, gets. */
import { afterEach, describe, expect, it } from 'vitest';
import { TOKEN, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { call, signed as wireSigned, textXml as wireTextXml } from '../../support/wire';

let h: Harness;
afterEach(async () => h?.close());

const signed = (ts?: string) => wireSigned(TOKEN, ts, '42');
const textXml = (content: string, msgId = '1') => wireTextXml('oHttp', content, msgId, 'gh_a');

async function storeIsEmpty(): Promise<boolean> {
  const { messages, users } = await h.app.store.snapshot();
  return messages.length === 0 && users.length === 0;
}

describe('GET handshake', () => {
  it('answers echostr exactly as text/plain', async () => {
    h = await startHarness();
    const r = await call(`${h.url}?${signed()}&echostr=4375120948345356249`);
    expect(r).toMatchObject({ status: 200, body: '4375120948345356249' });
    expect(r.type).toMatch(/^text\/plain/);
  });

  it('reproduces the published handshake (token AAAAA) with the timestamp check off', async () => {
    h = await startHarness({ env: { WECHAT_TOKEN: 'AAAAA', SIGNATURE_TOLERANCE_S: '0' } });
    const r = await call(`${h.url}?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492`);
    expect(r).toMatchObject({ status: 200, body: '4375120948345356249' });
  });

  it('refuses a bad, missing or stale signature with 401 and a short body', async () => {
    h = await startHarness();
    const old = String(Math.floor(Date.now() / 1000) - 3600);
    for (const q of [`signature=${'0'.repeat(40)}&timestamp=1&nonce=1&echostr=x`, 'echostr=x', `${signed(old)}&echostr=x`]) {
      expect(await call(`${h.url}?${q}`)).toMatchObject({ status: 401, body: 'Invalid signature' });
    }
  });
});

describe('POST rejections change nothing', () => {
  it('an unsigned or wrongly signed message: 401, no store change, no Dify call', async () => {
    h = await startHarness();
    for (const q of ['', `signature=${'a'.repeat(40)}&timestamp=${Math.floor(Date.now() / 1000)}&nonce=1`, signed().replace(/signature=[0-9a-f]{5}/, 'signature=00000')]) {
      const r = await call(`${h.url}?${q}`, { method: 'POST', body: textXml('hi') });
      expect(r.status).toBe(401);
    }
    expect(await storeIsEmpty()).toBe(true);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('a replayed old message is refused', async () => {
    h = await startHarness();
    const old = String(Math.floor(Date.now() / 1000) - 301);
    expect((await call(`${h.url}?${signed(old)}`, { method: 'POST', body: textXml('replay') })).status).toBe(401);
    expect(await storeIsEmpty()).toBe(true);
  });

  it('an oversized body gets 413 before it is read in full', async () => {
    h = await startHarness({ env: { MAX_BODY_BYTES: '4096' } });
    const r = await call(`${h.url}?${signed()}`, { method: 'POST', body: textXml('x'.repeat(10_000)) });
    expect(r.status).toBe(413);
    expect(await storeIsEmpty()).toBe(true);
  });

  it('hostile or malformed XML gets 400 quickly', async () => {
    h = await startHarness();
    const bodies = [
      '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><Content>&b;</Content></xml>',
      '<xml>' + '<a>'.repeat(1000) + '</a>'.repeat(1000) + '</xml>',
      '<xml><ToUserName>',
      '{"json": true}',
    ];
    for (const body of bodies) {
      const r = await call(`${h.url}?${signed()}`, { method: 'POST', body });
      expect(r.status).toBe(400);
    }
    expect(await storeIsEmpty()).toBe(true);
  });

  it('other methods get 405; other paths 404; /healthz answers', async () => {
    h = await startHarness();
    expect((await call(`${h.url}?${signed()}`, { method: 'PUT' })).status).toBe(405);
    expect((await call(h.url.replace('/wechat', '/nope'))).status).toBe(404);
    expect(await call(h.url.replace('/wechat', '/healthz'))).toMatchObject({ status: 200 });
  });
});

describe('replies', () => {
  it('are XML with the addresses swapped and CreateTime in seconds', async () => {
    h = await startHarness();
    const r = await call(`${h.url}?${signed()}`, { method: 'POST', body: textXml('/help') });
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^application\/xml/);
    expect(r.body).toMatch(/^<xml><ToUserName><!\[CDATA\[oHttp\]\]><\/ToUserName><FromUserName><!\[CDATA\[gh_a\]\]><\/FromUserName><CreateTime>\d{10}<\/CreateTime><MsgType><!\[CDATA\[text\]\]><\/MsgType><Content>/);
  });
});

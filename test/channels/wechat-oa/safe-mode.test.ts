/** Safe mode (AES) and compatible mode through the real server (docs/wechat.md). */
import { readFileSync } from 'fs';
import { request } from 'http';
import { afterEach, describe, expect, it } from 'vitest';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../../../lib/channels/wxbiz/crypto';
import { sha1Signature } from '../../../lib/channels/wxbiz/signature';
import { parseXmlFields } from '../../../lib/channels/wechat-oa/xml';
import { WechatSim } from '../../../lib/sim/wechat-sim';
import { TOKEN, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

const V = JSON.parse(readFileSync(new URL('../../../fixtures/wechat/aes-vectors.json', import.meta.url), 'utf8'));
const AES_KEY = 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR';
const APP_ID = 'wx49f0ab532d5d035a';
const SAFE = { WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APP_ID };

let h: Harness;
afterEach(async () => h?.close());

function post(url: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'Content-Type': 'text/xml' } }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const now = () => String(Math.floor(Date.now() / 1000));
const inner = (user: string, content: string, msgId = String(Date.now())) =>
  `<xml><ToUserName><![CDATA[gh_safe]]></ToUserName><FromUserName><![CDATA[${user}]]></FromUserName><CreateTime>${now()}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId}</MsgId></xml>`;

function safeRequest(url: string, token: string, encrypt: string, opts: { badSignature?: boolean } = {}) {
  const ts = now();
  const nonce = '12345';
  const msgSig = opts.badSignature ? '0'.repeat(40) : sha1Signature([token, ts, nonce, encrypt]);
  const q = `signature=${sha1Signature([token, ts, nonce])}&timestamp=${ts}&nonce=${nonce}&encrypt_type=aes&msg_signature=${msgSig}`;
  return post(`${url}?${q}`, `<xml><ToUserName><![CDATA[gh_safe]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`);
}

describe('safe mode', () => {
  it('decrypts the question and answers with a signed, encrypted envelope', async () => {
    h = await startHarness({ env: SAFE, wechat: { aes: { encodingAesKey: AES_KEY, appId: APP_ID } } });
    const r = await h.wechat.send('oSafe', '加密的问题');
    expect(r.notice).toBe(false);
    expect(r.text).toBe('你说的是：加密的问题'); // the simulator verified MsgSignature, Nonce and the AppID
    expect(h.dify.calls[0]?.body.query).toBe('加密的问题');
  });

  it('keeps retry-aware delivery in safe mode', async () => {
    h = await startHarness({
      env: SAFE,
      wechat: { aes: { encodingAesKey: AES_KEY, appId: APP_ID } },
      dify: { script: () => ({ kind: 'answer', text: '慢', durationMs: 1400 }) },
    });
    const r = await h.wechat.send('oSafeSlow', '慢问题');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['timeout', 'reply']);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('answers `success` unencrypted', async () => {
    h = await startHarness({ env: SAFE, wechat: { aes: { encodingAesKey: AES_KEY, appId: APP_ID } } });
    const r = await h.wechat.send('oSafeBye', { type: 'event', event: 'unsubscribe' });
    expect(r.deliveries[0]?.outcome).toBe('success');
  });

  it('answers the URL handshake with the plain signature', async () => {
    h = await startHarness({ env: SAFE });
    expect(await h.wechat.handshake('777')).toEqual({ status: 200, body: '777' });
  });

  it('compatible mode (plaintext fields beside Encrypt) works, and so does plain mode on the same server', async () => {
    h = await startHarness({ env: SAFE, wechat: { aes: { encodingAesKey: AES_KEY, appId: APP_ID }, compatible: true } });
    expect((await h.wechat.send('oCompat', '兼容模式')).text).toBe('你说的是：兼容模式');
    const plain = new WechatSim({ url: h.url, token: TOKEN, timeoutMs: 1000 });
    expect((await plain.send('oPlain', '明文模式')).text).toBe('你说的是：明文模式');
  });

  it('serves the official compatible-mode vector B byte for byte', async () => {
    h = await startHarness({ env: { WECHAT_TOKEN: V.B.token, WECHAT_AES_KEY: V.B.aesKey, WECHAT_APPID: V.B.appId, SIGNATURE_TOLERANCE_S: '0' } });
    const q = `signature=${sha1Signature([V.B.token, V.B.timestamp, V.B.nonce])}&timestamp=${V.B.timestamp}&nonce=${V.B.nonce}&encrypt_type=aes&msg_signature=${V.B.msgSignature}`;
    const body = `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[${V.B.encrypt}]]></Encrypt></xml>`;
    const r = await post(`${h.url}?${q}`, body);
    expect(r.status).toBe(200);
    const env = parseXmlFields(r.body, 1 << 20);
    expect(Object.keys(env)).toEqual(['Encrypt', 'MsgSignature', 'TimeStamp', 'Nonce']);
    expect(env['Nonce']).toBe(V.B.nonce);
    expect(env['MsgSignature']).toBe(sha1Signature([V.B.token, env['TimeStamp'] as string, V.B.nonce, env['Encrypt'] as string]));
    const reply = parseXmlFields(decryptMessage(aesKeyFrom(V.B.aesKey), env['Encrypt'] as string, V.B.appId).message, 1 << 20);
    expect(reply).toMatchObject({ ToUserName: 'oyORnuP8q7ou2gfYjqLzSIWZf0rs', FromUserName: 'gh_10f6c3c3ac5a', Content: '你说的是：abcdteT' });
    expect(h.dify.calls[0]?.body.query).toBe('abcdteT');
  });
});

describe('safe-mode rejections: a clear error, no crash, nothing stored', () => {
  const key = aesKeyFrom(AES_KEY);
  const empty = async () => (await h.app.store.snapshot()).messages.length === 0;

  const CASES: [string, () => string, { badSignature?: boolean }, number][] = [
    ['a wrong msg_signature', () => encryptMessage(key, inner('oBad', 'x'), APP_ID), { badSignature: true }, 401],
    ['a message for another AppID', () => encryptMessage(key, inner('oBad', 'x'), 'wx0000000000000000'), {}, 400],
    ['truncated ciphertext', () => encryptMessage(key, inner('oBad', 'x'), APP_ID).slice(0, 40), {}, 400],
    ['not base64', () => '!!!not base64!!!', {}, 400],
    ['bad padding (another key)', () => encryptMessage(aesKeyFrom('A'.repeat(43)), inner('oBad', 'x'), APP_ID), {}, 400],
    ['hostile XML inside the ciphertext', () => encryptMessage(key, '<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>', APP_ID), {}, 400],
  ];
  it.each(CASES)('%s', async (_name, make, opts, status) => {
    h = await startHarness({ env: SAFE });
    const r = await safeRequest(h.url, TOKEN, make(), opts);
    expect(r.status).toBe(status);
    expect(r.body.length).toBeLessThan(200);
    expect(await empty()).toBe(true);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('an encrypted message on a server without safe mode configured is refused and logged', async () => {
    h = await startHarness();
    const r = await safeRequest(h.url, TOKEN, encryptMessage(key, inner('oBad', 'x'), APP_ID));
    expect(r.status).toBe(400);
    expect(h.logs.some((l) => l.includes('WECHAT_AES_KEY'))).toBe(true);
    expect(h.logs.join('\n')).not.toContain(AES_KEY);
  });
});

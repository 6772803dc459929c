/**
 * What WeChat's setup on the 微信开发者平台 sends (docs/wechat.md "Setting up"): the URL check as its
 * verifier makes it (HTTP/1.0, `User-Agent: Mozilla/4.0`), answered with status 200, `text/plain` and
 * exactly the echostr; the debug tool's `debug_demo` event answered `success`; and a push in the JSON
 * data format, read as strictly as XML and answered in JSON, plaintext and safe mode (the platform's
 * own JSON example, vector C, byte for byte).
 */
import { readFileSync } from 'fs';
import { connect } from 'net';
import { afterEach, describe, expect, it } from 'vitest';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../../../lib/channels/wxbiz/crypto';
import { sha1Signature } from '../../../lib/channels/wxbiz/signature';
import { looksLikeJson, parseJsonFields } from '../../../lib/channels/wechat-oa/json';
import { toMessage } from '../../../lib/channels/wechat-oa/xml';
import { RequestError } from '../../../lib/errors';
import { TOKEN, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';
import { call, signed } from '../../support/wire';

const V = JSON.parse(readFileSync(new URL('../../../fixtures/wechat/aes-vectors.json', import.meta.url), 'utf8'));
const LIMIT = 256 * 1024;
const AES_KEY = 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR';
const APP_ID = 'wx49f0ab532d5d035a';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A request exactly as written, over a raw socket; the raw response. */
function raw(origin: string, request: string): Promise<string> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request));
    const parts: Buffer[] = [];
    socket.on('data', (b: Buffer) => parts.push(b));
    socket.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
    socket.on('error', reject);
  });
}

const jsonText = (user: string, content: string, msgId: string) =>
  `{"ToUserName":"gh_json","FromUserName":"${user}","CreateTime":${Math.floor(Date.now() / 1000)},"MsgType":"text","Content":${JSON.stringify(content)},"MsgId":${msgId}}`;
const post = (url: string, query: string, body: string, type = 'application/json') => call(`${url}?${query}`, { method: 'POST', body, headers: { 'Content-Type': type } });

describe('the URL check (GET with echostr)', () => {
  it('answers WeChat’s HTTP/1.0 verifier with 200, text/plain and exactly the echostr', async () => {
    h = await startHarness();
    const echostr = '4375120948345356249';
    const path = `/wechat?${signed(TOKEN)}&echostr=${echostr}`;
    const res = await raw(h.origin, `GET ${path} HTTP/1.0\r\nUser-Agent: Mozilla/4.0\r\nAccept: */*\r\n\r\n`);
    const [head, body] = res.split('\r\n\r\n') as [string, string];
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head).toMatch(/\r\nContent-Type: text\/plain\r\n/i);
    expect(head).toMatch(new RegExp(`\\r\\nContent-Length: ${echostr.length}(\\r\\n|$)`, 'i'));
    // Nothing else: no quotes, no byte-order mark, no newline.
    expect(Buffer.from(body, 'latin1').equals(Buffer.from(echostr))).toBe(true);
  });

  it('refuses a wrong token with 401 and never echoes', async () => {
    h = await startHarness();
    const r = await call(`${h.url}?${signed('wrongtoken1')}&echostr=123`);
    expect(r.status).toBe(401);
    expect(r.body).not.toContain('123');
  });
});

describe('the platform’s debug tool (debug_demo)', () => {
  it('gets `success` as XML and as JSON, and nothing is stored or asked', async () => {
    h = await startHarness();
    const ts = Math.floor(Date.now() / 1000);
    const xml = `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oDebug1]]></FromUserName><CreateTime>${ts}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[debug_demo]]></Event><debug_str><![CDATA[hello world]]></debug_str></xml>`;
    expect(await post(h.url, signed(TOKEN), xml, 'text/xml')).toMatchObject({ status: 200, body: 'success' });
    const json = `{"ToUserName":"gh_x","FromUserName":"oDebug2","CreateTime":${ts},"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}`;
    expect(await post(h.url, signed(TOKEN), json)).toMatchObject({ status: 200, body: 'success' });
    expect((await h.app.store.snapshot()).messages).toEqual([]);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('in safe mode with JSON: the platform’s own example (vector C) is verified, decrypted and answered `success`', async () => {
    h = await startHarness({ env: { WECHAT_TOKEN: V.C.token, WECHAT_AES_KEY: V.C.aesKey, WECHAT_APPID: V.C.appId, SIGNATURE_TOLERANCE_S: '0' } });
    const q = `signature=${V.C.signature}&timestamp=${V.C.timestamp}&nonce=${V.C.nonce}&openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes&msg_signature=${V.C.msgSignature}`;
    const r = await post(h.url, q, JSON.stringify({ ToUserName: 'gh_97417a04a28d', Encrypt: V.C.encrypt }));
    expect(r).toMatchObject({ status: 200, body: 'success' });
    // One character changed in the ciphertext: its msg_signature no longer matches.
    const forged = await post(h.url, q, JSON.stringify({ ToUserName: 'gh_97417a04a28d', Encrypt: `A${(V.C.encrypt as string).slice(1)}` }));
    expect(forged.status).toBe(401);
  });
});

describe('a push in JSON', () => {
  it('is answered in JSON with the same fields, and asked once however often it is delivered', async () => {
    h = await startHarness();
    const body = jsonText('oJson1', '你好 JSON', '6054768590064713728');
    const first = await post(h.url, signed(TOKEN), body);
    expect(first.status).toBe(200);
    expect(first.type).toMatch(/^application\/json/);
    expect(JSON.parse(first.body)).toMatchObject({ ToUserName: 'oJson1', FromUserName: 'gh_json', MsgType: 'text', Content: '你说的是：你好 JSON' });
    await post(h.url, signed(TOKEN), body);
    expect(h.dify.calls).toHaveLength(1);
    // The 64-bit MsgId was kept exactly (beyond a JavaScript number's precision).
    expect((await h.app.store.snapshot()).messages[0]?._id).toBe('oJson1:6054768590064713728');
    expect(h.logs.some((l) => l.includes('choose XML as the data format'))).toBe(true);
  });

  it('in safe mode: decrypted, answered with a signed JSON envelope', async () => {
    h = await startHarness({ env: { WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APP_ID } });
    const key = aesKeyFrom(AES_KEY);
    const encrypt = encryptMessage(key, jsonText('oJsonSafe', '加密 JSON', '77'), APP_ID);
    const ts = String(Math.floor(Date.now() / 1000));
    const q = `${signed(TOKEN, ts, '42')}&encrypt_type=aes&msg_signature=${sha1Signature([TOKEN, ts, '42', encrypt])}`;
    const r = await post(h.url, q, JSON.stringify({ ToUserName: 'gh_json', Encrypt: encrypt }));
    expect(r.status).toBe(200);
    const env = JSON.parse(r.body) as { Encrypt: string; MsgSignature: string; TimeStamp: number; Nonce: string };
    expect(Object.keys(env)).toEqual(['Encrypt', 'MsgSignature', 'TimeStamp', 'Nonce']);
    expect(typeof env.TimeStamp).toBe('number');
    expect(env.MsgSignature).toBe(sha1Signature([TOKEN, String(env.TimeStamp), env.Nonce, env.Encrypt]));
    expect(JSON.parse(decryptMessage(key, env.Encrypt, APP_ID).message)).toMatchObject({ ToUserName: 'oJsonSafe', Content: '你说的是：加密 JSON' });
  });

  const HOSTILE: [string, string, number][] = [
    ['nested deeper than 8', `{"ToUserName":"g","x":${'['.repeat(20)}${']'.repeat(20)}}`, 400],
    ['more than 256 values', `{"ToUserName":"g","x":[${Array.from({ length: 300 }, () => '1').join(',')}]}`, 400],
    ['a key twice', '{"ToUserName":"g","FromUserName":"o1","FromUserName":"o2","CreateTime":1,"MsgType":"text","MsgId":1}', 400],
    ['a list, not an object', '[{"ToUserName":"g"}]', 400],
    ['malformed', '{"ToUserName":"g",', 400],
    ['fields missing', '{"ToUserName":"g","MsgType":"text"}', 400],
    ['over MAX_BODY_BYTES', `{"ToUserName":"g","Content":"${'x'.repeat(300 * 1024)}"}`, 413],
  ];
  it.each(HOSTILE)('refuses %s, stores nothing and asks nobody', async (_name, body, status) => {
    h = await startHarness();
    const r = await post(h.url, signed(TOKEN), body);
    expect(r.status).toBe(status);
    expect((await h.app.store.snapshot()).messages).toEqual([]);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('unsigned, is refused before it is read', async () => {
    h = await startHarness();
    expect((await post(h.url, signed('wrongtoken1'), jsonText('oJsonBad', 'x', '1'))).status).toBe(401);
    expect((await h.app.store.snapshot()).messages).toEqual([]);
  });
});

describe('parseJsonFields', () => {
  it('reads the flat fields as strings, numbers by their exact text, nested values left out', () => {
    const f = parseJsonFields('\uFEFF {"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1714037059,"MsgType":"text","Content":"a \\"b\\" c","MsgId":18446744073709551615,"Extra":{"x":1},"List":[1,2],"ok":true}', LIMIT);
    expect(f).toEqual({ ToUserName: 'gh_1', FromUserName: 'o1', CreateTime: '1714037059', MsgType: 'text', Content: 'a "b" c', MsgId: '18446744073709551615' });
    expect(toMessage(f)).toMatchObject({ kind: 'text', msgId: '18446744073709551615', content: 'a "b" c', createTime: 1714037059 });
  });

  it('tells JSON from XML by its first character', () => {
    expect(looksLikeJson(' \n{"a":1}')).toBe(true);
    expect(looksLikeJson('\uFEFF{')).toBe(true);
    expect(looksLikeJson('<xml/>')).toBe(false);
    expect(looksLikeJson('')).toBe(false);
  });

  it('keeps a key that only looks like one inside a string value out of the key checks', () => {
    expect(parseJsonFields('{"Content":"\\"MsgId\\": 1, \\"Content\\": 2","MsgId":3}', LIMIT)).toEqual({ Content: '"MsgId": 1, "Content": 2', MsgId: '3' });
  });

  it('throws RequestError for what it refuses', () => {
    expect(() => parseJsonFields('{"a":"unterminated}', LIMIT)).toThrow(RequestError);
    expect(() => parseJsonFields('{"a":1,"a":2}', LIMIT)).toThrow(/twice/);
  });
});

/**
 * The shared WXBizMsgCrypt pieces as WeCom uses them (docs/wecom.md): the receiveid is the CorpID
 * (self-built app, customer service) or '' (intelligent bot); every callback, the GET handshake
 * included, is checked with msg_signature; replies are sealed in the XML or the bot's JSON envelope;
 * the bot's files are AES with the callback key.
 */
import { createCipheriv } from 'crypto';
import { readFileSync } from 'fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, RequestError, SignatureError } from '../../../lib/errors';
import { aesKeyFrom, decryptFor, decryptMedia, encryptMessage, pad32 } from '../../../lib/channels/wxbiz/crypto';
import { sealJson, sealXml } from '../../../lib/channels/wxbiz/envelope';
import { msgSignature, verifyMsgSignature } from '../../../lib/channels/wxbiz/signature';
import { parseXmlFields } from '../../../lib/channels/wxbiz/xml';

const V = JSON.parse(readFileSync(new URL('../../../fixtures/wechat/aes-vectors.json', import.meta.url), 'utf8'));

/** The intelligent bot's handshake, computed from the published inputs (receiveid ''), checked with openssl too. */
const BOT = {
  token: 'AAAAA',
  aesKey: 'A'.repeat(43),
  timestamp: '1700000000',
  nonce: '1234567',
  random: 'aaaabbbbccccdddd',
  plain: '1234567890',
  echostr: 'DskVKDMGxFWLGSYszL/mETaQXt1CB7cAivrSMKWv4D4=',
  msgSignature: 'b355324d2ae4f0c8f80fdd30c9fa5a83fa93a52f',
};

const codeOf = (f: () => unknown) => {
  try {
    f();
    return 'accepted';
  } catch (err) {
    return err instanceof RequestError || err instanceof SignatureError ? err.code : `crash: ${String(err)}`;
  }
};

describe('WeCom receiveids', () => {
  it('the self-built app: vector D decrypts for its CorpID, handshake included, and not for another', () => {
    const key = aesKeyFrom(V.D.aesKey, 'WECOM_AES_KEY');
    expect(parseXmlFields(decryptFor(key, V.D.encrypt, V.D.appId), 1 << 20)).toMatchObject({ Content: 'hello', AgentID: '218' });
    expect(decryptFor(key, V.D.echo.echostr, V.D.appId)).toBe(V.D.echo.plain);
    expect(codeOf(() => decryptFor(key, V.D.encrypt, 'ww0000000000000000'))).toBe('wrong_receiveid');
    expect(codeOf(() => decryptFor(key, V.D.encrypt, ''))).toBe('wrong_receiveid');
  });

  it('the intelligent bot: the empty receiveid, byte for byte', () => {
    const key = aesKeyFrom(BOT.aesKey);
    expect(encryptMessage(key, BOT.plain, '', Buffer.from(BOT.random))).toBe(BOT.echostr);
    expect(msgSignature(BOT.token, BOT.timestamp, BOT.nonce, BOT.echostr)).toBe(BOT.msgSignature);
    expect(decryptFor(key, BOT.echostr, '')).toBe(BOT.plain);
    expect(codeOf(() => decryptFor(key, BOT.echostr, 'wwcorp'))).toBe('wrong_receiveid');
  });

  it('names the variable a bad EncodingAESKey came from', () => {
    expect(() => aesKeyFrom('short', 'WECOM_BOT_AES_KEY')).toThrow(ConfigError);
    expect(() => aesKeyFrom('short', 'WECOM_BOT_AES_KEY')).toThrow(/WECOM_BOT_AES_KEY/);
  });
});

describe('verifyMsgSignature', () => {
  const e = V.D.echo;
  const at = Number(e.timestamp) * 1000;
  const q = { msgSignature: e.msgSignature, timestamp: e.timestamp, nonce: e.nonce };
  it('accepts the published handshake signature over the encrypted echostr', () => {
    expect(() => verifyMsgSignature(V.D.token, q, e.echostr, at, 300)).not.toThrow();
    expect(() => verifyMsgSignature(V.D.token, q, V.D.encrypt, at, 300)).toThrow(SignatureError);
  });
  it('refuses another token, a missing field, and a stale timestamp', () => {
    expect(codeOf(() => verifyMsgSignature('other', q, e.echostr, at, 300))).toBe('bad_signature');
    expect(codeOf(() => verifyMsgSignature(V.D.token, { ...q, msgSignature: undefined }, e.echostr, at, 300))).toBe('missing_signature');
    expect(codeOf(() => verifyMsgSignature(V.D.token, { ...q, nonce: undefined }, e.echostr, at, 300))).toBe('missing_signature');
    expect(codeOf(() => verifyMsgSignature(V.D.token, q, e.echostr, at + 301_000, 300))).toBe('stale_timestamp');
    expect(codeOf(() => verifyMsgSignature(V.D.token, q, e.echostr, at + 301_000, 0))).toBe('accepted');
  });
});

describe('sealed replies', () => {
  const s = { token: 'QDG6eK', key: aesKeyFrom(V.D.aesKey), receiveId: V.D.appId };
  it('the XML envelope signs its own timestamp and the given nonce, and opens with the CorpID', () => {
    const env = parseXmlFields(sealXml(s, '<xml><Content><![CDATA[好]]></Content></xml>', '42', 1_700_000_000_999), 1 << 20);
    expect(env['TimeStamp']).toBe('1700000000');
    expect(env['Nonce']).toBe('42');
    expect(env['MsgSignature']).toBe(msgSignature(s.token, '1700000000', '42', env['Encrypt'] as string));
    expect(parseXmlFields(decryptFor(s.key, env['Encrypt'] as string, V.D.appId), 1 << 20)['Content']).toBe('好');
  });
  it('the bot’s JSON envelope has all four fields, seconds and the URL’s nonce', () => {
    const bot = { token: BOT.token, key: aesKeyFrom(BOT.aesKey), receiveId: '' };
    const env = JSON.parse(sealJson(bot, '{"msgtype":"stream"}', BOT.nonce, 1_700_000_000_500)) as Record<string, unknown>;
    expect(Object.keys(env).sort()).toEqual(['encrypt', 'msgsignature', 'nonce', 'timestamp']);
    expect(env['timestamp']).toBe(1_700_000_000);
    expect(env['nonce']).toBe(BOT.nonce);
    expect(env['msgsignature']).toBe(msgSignature(BOT.token, '1700000000', BOT.nonce, env['encrypt'] as string));
    expect(decryptFor(bot.key, env['encrypt'] as string, '')).toBe('{"msgtype":"stream"}');
  });
});

describe('decryptMedia', () => {
  const key = aesKeyFrom(BOT.aesKey);
  const encrypt = (bytes: Buffer) => {
    const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
    c.setAutoPadding(false);
    return Buffer.concat([c.update(pad32(bytes)), c.final()]);
  };
  it('opens a file encrypted with the callback key (IV its first 16 bytes, padding to 32)', () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(70, 7)]);
    expect(decryptMedia(key, encrypt(png))).toEqual(png);
    expect(decryptMedia(key, encrypt(Buffer.alloc(32, 1)))).toEqual(Buffer.alloc(32, 1));
  });
  it('refuses what is not whole blocks, or not padded', () => {
    expect(codeOf(() => decryptMedia(key, Buffer.alloc(17)))).toBe('bad_ciphertext');
    expect(codeOf(() => decryptMedia(key, Buffer.alloc(0)))).toBe('bad_ciphertext');
    const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
    c.setAutoPadding(false);
    expect(codeOf(() => decryptMedia(key, Buffer.concat([c.update(Buffer.alloc(32, 0x41)), c.final()])))).toBe('bad_padding');
  });
});

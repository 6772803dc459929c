import { createCipheriv } from 'crypto';
import { readFileSync } from 'fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, RequestError } from '../../../lib/errors';
import { aesKeyFrom, decryptMessage, encryptMessage, pad32 } from '../../../lib/channels/wxbiz/crypto';
import { buildEncryptedEnvelope } from '../../../lib/channels/wechat-oa/reply';
import { sha1Signature } from '../../../lib/channels/wxbiz/signature';
import { parseXmlFields } from '../../../lib/channels/wechat-oa/xml';

// Published vectors: docs/wechat.mdcopied to fixtures/wechat/aes-vectors.json.
const V = JSON.parse(readFileSync(new URL('../../../fixtures/wechat/aes-vectors.json', import.meta.url), 'utf8'));
// The published random prefixes are 16 ASCII characters.

describe('aesKeyFrom', () => {
  it('decodes the official sample key despite its non-zero spare bits (§5.3)', () => {
    expect(aesKeyFrom(V.A.aesKey).toString('hex')).toBe(V.A.keyHex);
    expect(aesKeyFrom('A'.repeat(43))).toEqual(Buffer.alloc(32));
  });
  it('rejects a key of the wrong length or alphabet with an error naming the variable', () => {
    for (const bad of ['A'.repeat(42), 'A'.repeat(44), 'A'.repeat(42) + '!', '']) {
      expect(() => aesKeyFrom(bad)).toThrow(ConfigError);
      expect(() => aesKeyFrom(bad)).toThrow(/WECHAT_AES_KEY/);
    }
  });
});

describe('vector A (official Java sample)', () => {
  const key = aesKeyFrom(V.A.aesKey);
  it('encrypts both plaintexts byte for byte with the fixed random prefix', () => {
    expect(encryptMessage(key, V.A.plain1, V.A.appId, Buffer.from(V.A.random))).toBe(V.A.encrypt1);
    expect(encryptMessage(key, V.A.plain2, V.A.appId, Buffer.from(V.A.random))).toBe(V.A.encrypt2);
  });
  it('decrypts both back and signs the first', () => {
    expect(decryptMessage(key, V.A.encrypt1, V.A.appId)).toMatchObject({ message: V.A.plain1, appId: V.A.appId });
    expect(decryptMessage(key, V.A.encrypt2, V.A.appId).message).toBe(V.A.plain2);
    expect(sha1Signature([V.A.token, V.A.timestamp, V.A.nonce, V.A.encrypt1])).toBe(V.A.msgSignature1);
  });
});

describe('vector B (official Python sample, compatible mode)', () => {
  const key = aesKeyFrom(V.B.aesKey);
  it('verifies msg_signature, decrypts, and re-encrypts to the same ciphertext', () => {
    expect(sha1Signature([V.B.token, V.B.timestamp, V.B.nonce, V.B.encrypt])).toBe(V.B.msgSignature);
    const d = decryptMessage(key, V.B.encrypt, V.B.appId);
    expect(d.message).toBe(V.B.message);
    expect(Buffer.byteLength(d.message)).toBe(V.B.msgLen);
    expect(d.random.toString('utf8')).toBe(V.B.random);
    expect(encryptMessage(key, d.message, V.B.appId, d.random)).toBe(V.B.encrypt);
    expect(parseXmlFields(d.message, 1 << 20)).toMatchObject({ Content: 'abcdteT', MsgId: '6054768590064713728' });
  });
});

describe('vector C (current official docs)', () => {
  const key = aesKeyFrom(V.C.aesKey);
  it('decrypts the inbound message and checks both signatures', () => {
    expect(sha1Signature([V.C.token, V.C.timestamp, V.C.nonce, V.C.encrypt])).toBe(V.C.msgSignature);
    expect(sha1Signature([V.C.token, V.C.timestamp, V.C.nonce])).toBe(V.C.signature);
    const d = decryptMessage(key, V.C.encrypt, V.C.appId);
    expect(d.message).toBe(V.C.message);
    expect(Buffer.byteLength(d.message)).toBe(V.C.msgLen);
    expect(d.random.toString('utf8')).toBe(V.C.random);
    expect(Buffer.from(V.C.encrypt, 'base64')).toHaveLength(224);
  });
  it('encrypts and signs the reply exactly', () => {
    const r = V.C.reply;
    const encrypt = encryptMessage(key, r.plain, V.C.appId, Buffer.from(r.random));
    expect(encrypt).toBe(r.encrypt);
    expect(Buffer.from(encrypt, 'base64')).toHaveLength(64);
    expect(sha1Signature([V.C.token, r.timestamp, r.nonce, encrypt])).toBe(r.msgSignature);
  });
});

describe('vector D (WeCom C# sample, same algorithm)', () => {
  const key = aesKeyFrom(V.D.aesKey);
  it('verifies and decrypts the message and the encrypted echostr', () => {
    expect(sha1Signature([V.D.token, V.D.timestamp, V.D.nonce, V.D.encrypt])).toBe(V.D.msgSignature);
    const d = decryptMessage(key, V.D.encrypt, V.D.appId);
    expect(d.random.toString('utf8')).toBe(V.D.random);
    expect(Buffer.byteLength(d.message)).toBe(V.D.msgLen);
    expect(parseXmlFields(d.message, 1 << 20)).toMatchObject({ Content: 'hello', MsgId: '4561255354251345929', AgentID: '218' });
    const e = V.D.echo;
    expect(sha1Signature([V.D.token, e.timestamp, e.nonce, e.echostr])).toBe(e.msgSignature);
    expect(decryptMessage(key, e.echostr, V.D.appId).message).toBe(e.plain);
  });
});

describe('vector W (wechatpy tests)', () => {
  const key = aesKeyFrom(V.W.aesKey);
  it('encrypts the reply and builds the expected envelope', () => {
    const encrypt = encryptMessage(key, V.W.replyPlain, V.W.appId, Buffer.from(V.W.random));
    expect(encrypt).toBe(V.W.replyEncrypt);
    const signature = sha1Signature([V.W.token, V.W.timestamp, V.W.nonce, encrypt]);
    expect(signature).toBe(V.W.replyMsgSignature);
    const envelope = buildEncryptedEnvelope({ encrypt, signature, timestamp: V.W.timestamp, nonce: V.W.nonce });
    const expected = `<xml>\n<Encrypt><![CDATA[${encrypt}]]></Encrypt>\n<MsgSignature><![CDATA[${signature}]]></MsgSignature>\n<TimeStamp>${V.W.timestamp}</TimeStamp>\n<Nonce><![CDATA[${V.W.nonce}]]></Nonce>\n</xml>`;
    expect(envelope).toBe(expected.replace(/\n/g, ''));
  });
  it('decrypts the message and the echostr; the echo signature fails with another nonce', () => {
    expect(sha1Signature([V.W.token, V.W.timestamp, V.W.nonce, V.W.decrypt.encrypt])).toBe(V.W.decrypt.msgSignature);
    expect(parseXmlFields(decryptMessage(key, V.W.decrypt.encrypt, V.W.appId).message, 1 << 20)).toMatchObject({ Content: 'test', FromUserName: 'messense' });
    const e = V.W.echo;
    expect(sha1Signature([V.W.token, e.timestamp, e.nonce, e.echostr])).toBe(e.msgSignature);
    expect(sha1Signature([V.W.token, e.timestamp, e.badNonce, e.echostr])).not.toBe(e.msgSignature);
    expect(decryptMessage(key, e.echostr, V.W.appId).message).toBe(e.plain);
  });
});

describe('rejections', () => {
  const key = aesKeyFrom(V.A.aesKey);
  const code = (f: () => unknown) => {
    try {
      f();
      return 'accepted';
    } catch (err) {
      return err instanceof RequestError ? err.code : `crash: ${String(err)}`;
    }
  };

  it('a message for another AppID', () => {
    expect(code(() => decryptMessage(key, V.A.encrypt1, 'wx0000000000000000'))).toBe('wrong_appid');
  });
  it('truncated ciphertext, not base64, empty', () => {
    const raw = Buffer.from(V.A.encrypt2, 'base64');
    expect(code(() => decryptMessage(key, raw.subarray(0, raw.length - 5).toString('base64'), V.A.appId))).toBe('bad_ciphertext');
    expect(code(() => decryptMessage(key, '%%%not base64%%%', V.A.appId))).toBe('bad_ciphertext');
    expect(code(() => decryptMessage(key, '', V.A.appId))).toBe('bad_ciphertext');
  });
  it('bad padding (ciphertext of a plaintext that was not padded to 32)', () => {
    const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
    c.setAutoPadding(false);
    const block = Buffer.alloc(32, 0x41); // last byte 0x41 = 65 > 32
    const bad = Buffer.concat([c.update(block), c.final()]).toString('base64');
    expect(code(() => decryptMessage(key, bad, V.A.appId))).toBe('bad_padding');
  });
  it('a ciphertext made with another key fails cleanly', () => {
    const other = aesKeyFrom(V.W.aesKey);
    expect(code(() => decryptMessage(other, V.A.encrypt2, V.A.appId))).toMatch(/bad_padding|bad_ciphertext|wrong_appid/);
  });
  it('pads to 32-byte blocks, a full block when already aligned', () => {
    expect(pad32(Buffer.alloc(31))).toHaveLength(32);
    expect(pad32(Buffer.alloc(32))).toHaveLength(64);
    expect(pad32(Buffer.alloc(32)).subarray(32)).toEqual(Buffer.alloc(32, 32));
  });
});

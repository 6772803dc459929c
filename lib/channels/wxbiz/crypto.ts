/**
 * WXBizMsgCrypt, the safe-mode message encryption (docs/wechat.md): AES-256-CBC with
 * key = base64(EncodingAESKey + "="), IV = first 16 key bytes, PKCS#7 padding to 32-byte blocks,
 * plaintext = 16 random bytes + 4-byte big-endian length + message + appid. Pure functions.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'crypto';
import { ConfigError, RequestError } from '../../errors';

const BLOCK = 32; // the padding block of WXBizMsgCrypt, not AES's 16 (§5.5)

/** Decode the 43-character EncodingAESKey into the 32-byte AES key. */
export function aesKeyFrom(encodingAesKey: string): Buffer {
  if (!/^[A-Za-z0-9]{43}$/.test(encodingAesKey)) {
    throw new ConfigError('WECHAT_AES_KEY', 'must be 43 letters or digits (the EncodingAESKey from the WeChat console)');
  }
  // Node's decoder accepts the non-zero spare bits of the official sample key (§5.3).
  const key = Buffer.from(encodingAesKey + '=', 'base64');
  if (key.length !== 32) throw new ConfigError('WECHAT_AES_KEY', `decodes to ${key.length} bytes, expected 32`);
  return key;
}

export function pad32(data: Buffer): Buffer {
  const n = BLOCK - (data.length % BLOCK);
  return Buffer.concat([data, Buffer.alloc(n, n)]);
}

function unpad32(data: Buffer): Buffer {
  const n = data[data.length - 1] ?? 0;
  if (n < 1 || n > BLOCK || n > data.length) throw new RequestError('bad_padding', 'encrypted message has invalid padding');
  for (let i = data.length - n; i < data.length; i++) {
    if (data[i] !== n) throw new RequestError('bad_padding', 'encrypted message has invalid padding');
  }
  return data.subarray(0, data.length - n);
}

/** Encrypt `message` for `appId`. `random` (16 bytes) is fixed only by tests reproducing vectors. */
export function encryptMessage(key: Buffer, message: string, appId: string, random: Buffer = randomBytes(16)): string {
  if (random.length !== 16) throw new RangeError('random prefix must be 16 bytes');
  const msg = Buffer.from(message, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length, 0);
  const plain = pad32(Buffer.concat([random, len, msg, Buffer.from(appId, 'utf8')]));
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64');
}

export interface Decrypted {
  message: string;
  appId: string;
  random: Buffer;
}

/** Decrypt an `Encrypt` value and check that it was made for `expectedAppId`. Throws `RequestError`. */
export function decryptMessage(key: Buffer, encrypted: string, expectedAppId: string): Decrypted {
  const trimmed = encrypted.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) throw new RequestError('bad_ciphertext', 'Encrypt is not base64');
  const data = Buffer.from(trimmed, 'base64');
  if (data.length === 0 || data.length % 16 !== 0) throw new RequestError('bad_ciphertext', 'Encrypt is truncated (not whole AES blocks)');
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
    decipher.setAutoPadding(false);
    plain = unpad32(Buffer.concat([decipher.update(data), decipher.final()]));
  } catch (cause) {
    if (cause instanceof RequestError) throw cause;
    throw new RequestError('bad_ciphertext', 'Encrypt could not be decrypted', 400, { cause });
  }
  if (plain.length < 20) throw new RequestError('bad_ciphertext', 'decrypted message is too short');
  const len = plain.readUInt32BE(16);
  if (20 + len > plain.length) throw new RequestError('bad_ciphertext', 'decrypted length field exceeds the message');
  const message = plain.subarray(20, 20 + len).toString('utf8');
  const appId = plain.subarray(20 + len).toString('utf8');
  if (appId !== expectedAppId) throw new RequestError('wrong_appid', 'encrypted message is for another AppID');
  return { message, appId, random: plain.subarray(0, 16) };
}

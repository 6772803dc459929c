/**
 * WXBizMsgCrypt, the safe-mode message encryption (docs/wechat.md, docs/wecom.md): AES-256-CBC with
 * key = base64(EncodingAESKey + "="), IV = first 16 key bytes, PKCS#7 padding to 32-byte blocks,
 * plaintext = 16 random bytes + 4-byte big-endian length + message + receiveid. The receiveid is the
 * Official Account's AppID, WeCom's CorpID (self-built app, customer service) or the empty string
 * (WeCom's intelligent bot). Pure functions.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'crypto';
import { ConfigError, RequestError } from '../../errors';

const BLOCK = 32; // the padding block of WXBizMsgCrypt, not AES's 16 (§5.5)

/** Decode the 43-character EncodingAESKey into the 32-byte AES key; `variable` names the setting it came from. */
export function aesKeyFrom(encodingAesKey: string, variable = 'WECHAT_AES_KEY'): Buffer {
  if (!/^[A-Za-z0-9]{43}$/.test(encodingAesKey)) {
    throw new ConfigError(variable, 'must be 43 letters or digits (the EncodingAESKey from the console)');
  }
  // Node's decoder accepts the non-zero spare bits of the official sample key (§5.3).
  const key = Buffer.from(encodingAesKey + '=', 'base64');
  if (key.length !== 32) throw new ConfigError(variable, `decodes to ${key.length} bytes, expected 32`);
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

/** Encrypt `message` for `receiveId` (an AppID, a CorpID, ''). `random` (16 bytes) is fixed only by tests reproducing vectors. */
export function encryptMessage(key: Buffer, message: string, receiveId: string, random: Buffer = randomBytes(16)): string {
  if (random.length !== 16) throw new RangeError('random prefix must be 16 bytes');
  const msg = Buffer.from(message, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length, 0);
  const plain = pad32(Buffer.concat([random, len, msg, Buffer.from(receiveId, 'utf8')]));
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64');
}

export interface Decrypted {
  message: string;
  /** The receiveid the plaintext ends with (the Official Account's AppID). */
  appId: string;
  random: Buffer;
}

/** The parts of a decrypted `Encrypt` value, whatever receiveid it carries. Throws `RequestError`. */
function open(key: Buffer, encrypted: string): { message: string; receiveId: string; random: Buffer } {
  const trimmed = encrypted.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) throw new RequestError('bad_ciphertext', 'Encrypt is not base64');
  const data = Buffer.from(trimmed, 'base64');
  if (data.length === 0 || data.length % 16 !== 0) throw new RequestError('bad_ciphertext', 'Encrypt is truncated (not whole AES blocks)');
  const plain = aesOpen(key, data, 'Encrypt');
  if (plain.length < 20) throw new RequestError('bad_ciphertext', 'decrypted message is too short');
  const len = plain.readUInt32BE(16);
  if (20 + len > plain.length) throw new RequestError('bad_ciphertext', 'decrypted length field exceeds the message');
  return { message: plain.subarray(20, 20 + len).toString('utf8'), receiveId: plain.subarray(20 + len).toString('utf8'), random: plain.subarray(0, 16) };
}

/** AES-256-CBC with the key's first 16 bytes as IV, padding to 32 removed. */
function aesOpen(key: Buffer, data: Buffer, what: string): Buffer {
  try {
    const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
    decipher.setAutoPadding(false);
    return unpad32(Buffer.concat([decipher.update(data), decipher.final()]));
  } catch (cause) {
    if (cause instanceof RequestError) throw cause;
    throw new RequestError('bad_ciphertext', `${what} could not be decrypted`, 400, { cause });
  }
}

/** Decrypt an `Encrypt` value and check that it was made for `expectedAppId` (the Official Account). Throws `RequestError`. */
export function decryptMessage(key: Buffer, encrypted: string, expectedAppId: string): Decrypted {
  const { message, receiveId, random } = open(key, encrypted);
  if (receiveId !== expectedAppId) throw new RequestError('wrong_appid', 'encrypted message is for another AppID');
  return { message, appId: receiveId, random };
}

/**
 * Decrypt an `Encrypt` value (or WeCom's encrypted `echostr`) and check its receiveid: the CorpID
 * for WeCom's self-built app and customer service, '' for the intelligent bot (docs/wecom.md).
 * Throws `RequestError` (`wrong_receiveid` for a message made for another corp or bot).
 */
export function decryptFor(key: Buffer, encrypted: string, receiveId: string): string {
  const opened = open(key, encrypted);
  if (opened.receiveId !== receiveId) throw new RequestError('wrong_receiveid', 'encrypted message is for another receiveid (CorpID)');
  return opened.message;
}

/**
 * A file WeCom's intelligent bot links to (docs/wecom.md): the bytes are AES-256-CBC encrypted with
 * the callback's key, IV its first 16 bytes, padded to 32; no length field, no receiveid.
 */
export function decryptMedia(key: Buffer, bytes: Buffer): Buffer {
  if (bytes.length === 0 || bytes.length % 16 !== 0) throw new RequestError('bad_ciphertext', 'the file is not whole AES blocks');
  return aesOpen(key, bytes, 'the file');
}

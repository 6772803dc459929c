/**
 * What the WeCom simulators share (docs/wecom.md): WXBizMsgCrypt with WeCom's receiveid (the CorpID
 * for the self-built app and customer service, the empty string for the intelligent bot), the signed
 * query WeCom puts on every callback, one HTTP delivery with WeCom's timeout, and the AES of the bot's
 * media files. Built on lib/channels/wxbiz, whose functions take the receiveid as a plain string.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomInt } from 'crypto';
import { request } from 'http';
import { aesKeyFrom, decryptMessage, encryptMessage, pad32 } from '../channels/wxbiz/crypto';
import { msgSignature, safeEqualHex } from '../channels/wxbiz/signature';

/** One WXBizMsgCrypt instance: token, key and the receiveid the tail of every plaintext must carry. */
export class WecomCrypto {
  readonly key: Buffer;

  constructor(
    readonly token: string,
    encodingAesKey: string,
    /** The CorpID (app, customer service) or '' (intelligent bot). */
    readonly receiveId: string,
  ) {
    this.key = aesKeyFrom(encodingAesKey);
  }

  /** Base64 ciphertext of `message`; `random` (16 bytes) is fixed only to reproduce published vectors. */
  encrypt(message: string, random?: Buffer): string {
    return encryptMessage(this.key, message, this.receiveId, random);
  }

  /** The plaintext of `encrypt`; throws when it is not ciphertext for this receiveid. */
  decrypt(encrypt: string): string {
    return decryptMessage(this.key, encrypt, this.receiveId).message;
  }

  sign(timestamp: string, nonce: string, encrypt: string): string {
    return msgSignature(this.token, timestamp, nonce, encrypt);
  }

  verify(signature: string, timestamp: string, nonce: string, encrypt: string): boolean {
    return safeEqualHex(this.sign(timestamp, nonce, encrypt), signature);
  }

  /**
   * The query of a callback: `msg_signature`, `timestamp`, `nonce` (and, for the handshake, `echostr`),
   * percent-encoded the way WeCom sends them (`+`, `/`, `=` as %2B, %2F, %3D).
   */
  query(encrypt: string, timestamp: string, nonce: string, echostr = false): string {
    const q = `msg_signature=${this.sign(timestamp, nonce, encrypt)}&timestamp=${timestamp}&nonce=${nonce}`;
    return echostr ? `${q}&echostr=${encodeURIComponent(encrypt)}` : q;
  }
}

/** Unix seconds as WeCom writes them. */
export const seconds = (ms: number): string => String(Math.floor(ms / 1000));

/** A numeric nonce like WeCom's. */
export const newNonce = (): string => String(randomInt(100_000_000, 2_000_000_000));

let idCounter = 0n;
/** A 64-bit message id beyond 2^53 (JSON numbers would lose it: keep it a string). */
export function newMsgId(): string {
  idCounter += 1n;
  return (7_300_000_000_000_000_000n + BigInt(Date.now()) * 1000n + idCounter).toString();
}

/** A random id of `n` base64url characters. */
export const randomId = (n: number): string => randomBytes(Math.ceil((n * 3) / 4)).toString('base64url').slice(0, n);

/** The AES of the bot's media files: AES-256-CBC with the callback key, IV = its first 16 bytes, PKCS#7 to 32. */
export function encryptMedia(key: Buffer, bytes: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(pad32(bytes)), cipher.final()]);
}

export function decryptMedia(key: Buffer, bytes: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
  decipher.setAutoPadding(false);
  const plain = Buffer.concat([decipher.update(bytes), decipher.final()]);
  const n = plain[plain.length - 1] ?? 0;
  if (n < 1 || n > 32 || n > plain.length) throw new Error('bad padding');
  return plain.subarray(0, plain.length - n);
}

/** How one HTTP delivery ended. `ms` is measured from when the connection was open. */
export type Posted = { status: number; body: string; ms: number } | { failure: 'timeout' | 'network'; detail: string; ms: number };

/**
 * One request the way WeCom makes it: it gives up `timeoutMs` after sending (the clock starts once the
 * connection is open, so a simulator starting many requests at once does not charge its own queueing
 * to the server) and never follows redirects.
 */
export function deliver(url: string, o: { method?: 'GET' | 'POST'; body?: string; contentType?: string; timeoutMs: number }): Promise<Posted> {
  return new Promise((resolve) => {
    let sentAt = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const done = (p: Posted) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(p);
    };
    const headers: Record<string, string | number> = {};
    if (o.body !== undefined) {
      headers['Content-Type'] = o.contentType ?? 'text/xml';
      headers['Content-Length'] = Buffer.byteLength(o.body);
    }
    const req = request(url, { method: o.method ?? 'POST', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8'), ms: Date.now() - sentAt }));
      res.on('error', (err) => done({ failure: 'network', detail: err.message, ms: Date.now() - sentAt }));
    });
    const start = () => {
      sentAt = Date.now();
      timer = setTimeout(() => {
        done({ failure: 'timeout', detail: `no answer within ${o.timeoutMs} ms`, ms: Date.now() - sentAt });
        req.destroy();
      }, o.timeoutMs);
    };
    req.on('socket', (socket) => {
      if (socket.connecting) socket.once('connect', start);
      else start();
    });
    req.on('error', (err) => done({ failure: 'network', detail: err.message, ms: Date.now() - sentAt }));
    req.end(o.body);
  });
}

/** What a URL-verification handshake gave. */
export interface HandshakeResult {
  /** The server answered 200 with exactly the plaintext, in time. */
  ok: boolean;
  status: number;
  body: string;
  /** The plaintext the body must be. */
  expected: string;
  ms: number;
  problem?: string;
}

/**
 * The GET handshake both WeCom callbacks use: `echostr` is the ciphertext of a random number, signed
 * with msg_signature; the server must answer 200 with the decrypted number as the whole body, no
 * quotes, BOM or newline, within `timeoutMs` (WeCom: 1 s). `badSignature` signs with a wrong token
 * (the server must refuse).
 */
export async function handshake(url: string, c: WecomCrypto, now: number, timeoutMs: number, badSignature = false): Promise<HandshakeResult> {
  const expected = String(randomInt(1, 2 ** 47)) + String(randomInt(0, 1_000_000)).padStart(6, '0');
  const echostr = c.encrypt(expected);
  const timestamp = seconds(now);
  const nonce = newNonce();
  let q = c.query(echostr, timestamp, nonce, true);
  if (badSignature) q = q.replace(/^msg_signature=[0-9a-f]+/, `msg_signature=${msgSignature(`${c.token}x`, timestamp, nonce, echostr)}`);
  const r = await deliver(`${url}${url.includes('?') ? '&' : '?'}${q}`, { method: 'GET', timeoutMs });
  if ('failure' in r) return { ok: false, status: 0, body: '', expected, ms: r.ms, problem: r.detail };
  const base = { status: r.status, body: r.body, expected, ms: r.ms };
  if (r.status !== 200) return { ...base, ok: false, problem: `HTTP ${r.status}` };
  if (r.body !== expected) return { ...base, ok: false, problem: `body is not exactly the decrypted echostr (${JSON.stringify(r.body.slice(0, 60))})` };
  return { ...base, ok: true };
}

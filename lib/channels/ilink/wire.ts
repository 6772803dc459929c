/**
 * iLink's wire format (docs/ilink.md), as pure functions: JSON with uint64 ids read losslessly, the
 * headers and `base_info` every call carries, inbound messages parsed into what the bot handles,
 * the dedupe fingerprint, and the CDN's AES-128-ECB with both ways inbound keys are written; for
 * outbound pictures, the upload's sizes and digest, the ciphertext, and the image item.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'crypto';
import { RequestError } from '../../errors';

/** The protocol version this client follows (Tencent's package 2.4.9): `base_info.channel_version`. */
export const CHANNEL_VERSION = '2.4.9';
/** `iLink-App-ClientVersion`: major<<16 | minor<<8 | patch of CHANNEL_VERSION, in decimal. */
export const CLIENT_VERSION = String((2 << 16) | (4 << 8) | 9);
/** `iLink-App-Id` (the package's `ilink_appid`). */
export const APP_ID = 'bot';
/** Observability only; ASCII, at most 256 bytes. */
export const BOT_AGENT = 'wechat-dify-bot';

/** Item types (`item_list[].type`). */
export const ITEM = { TEXT: 1, IMAGE: 2, VOICE: 3, FILE: 4, VIDEO: 5 } as const;

/**
 * JSON with every integer too long for a double (uint64 `message_id`, `svr_id`, …) kept as its
 * decimal text: such numbers become strings before `JSON.parse` sees them. Strings in the text are
 * skipped whole, so digits inside them are never touched. Undefined when the text is not JSON.
 */
export function parseIlinkJson(text: string): unknown {
  let out = '';
  let last = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: skip to its closing quote
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < text.length && /[0-9eE.+-]/.test(text[j] as string)) j++;
      const token = text.slice(i, j);
      if (/^-?\d{16,}$/.test(token)) {
        out += `${text.slice(last, i)}"${token}"`;
        last = j;
      }
      i = j - 1;
    }
  }
  try {
    return JSON.parse(last === 0 ? text : out + text.slice(last)) as unknown;
  } catch {
    return undefined;
  }
}

/** An id as its decimal text, whatever way it came (a safe number, a string); undefined when absent or not one. */
export function idText(v: unknown): string | undefined {
  if (typeof v === 'string' && /^\d{1,20}$/.test(v)) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return String(v);
  return undefined;
}

/** `X-WECHAT-UIN`: base64 of the decimal text of a random uint32, new per request. */
export function randomUin(): string {
  return Buffer.from(String(randomBytes(4).readUInt32BE(0)), 'latin1').toString('base64');
}

/** The headers of an authenticated call (no Authorization without a token: the QR fetch). */
export function ilinkHeaders(token: string | undefined): Record<string, string> {
  return {
    'Content-Type': 'application/json',
    AuthorizationType: 'ilink_bot_token',
    'X-WECHAT-UIN': randomUin(),
    'iLink-App-Id': APP_ID,
    'iLink-App-ClientVersion': CLIENT_VERSION,
    ...(token ? { Authorization: `Bearer ${token}` } : {}),
  };
}

export const BASE_INFO = { channel_version: CHANNEL_VERSION, bot_agent: BOT_AGENT } as const;

/** What an answer says about success: `ret` and `errcode` may each be absent, both 0 mean success. */
export interface IlinkResult {
  ret: number;
  errcode: number;
  errmsg: string;
}

export function resultOf(body: unknown): IlinkResult {
  const o = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return { ret: num(o['ret']), errcode: num(o['errcode']), errmsg: typeof o['errmsg'] === 'string' ? o['errmsg'] : '' };
}

/** `-14` as `ret` or as `errcode`: the session is gone (only a new QR login brings it back). */
export const isSessionExpired = (r: IlinkResult) => r.ret === -14 || r.errcode === -14;

/** A fresh `client_id` per request: `<prefix>:<ms>-<8 hex>`, as the official client writes it. */
export function newClientId(now: number): string {
  return `wdb:${now}-${randomBytes(4).toString('hex')}`;
}

// ---- inbound messages

/** A picture as the CDN holds it: where to fetch it and how to decrypt it. */
export interface MediaRef {
  /** `encrypt_query_param` (the download parameter). */
  param: string;
  /** `full_url`, when the service gave one (it wins). */
  fullUrl: string | undefined;
  /** The AES-128 key in hex; undefined: the bytes are plaintext. */
  keyHex: string | undefined;
}

/** What a message is, as this channel handles it. */
export type IlinkContent =
  | { type: 'text'; text: string }
  | { type: 'image'; media: MediaRef }
  | { type: 'voice'; transcript: string | undefined }
  | { type: 'other'; what: string };

/** A quoted message (`ref_msg`): its text when it carries one, else only the server id to look up. */
export interface IlinkQuote {
  text: string | undefined;
  svrId: string | undefined;
}

export interface IlinkMessage {
  /** `message_id` as decimal text (uint64); undefined when missing. */
  id: string | undefined;
  seq: number | undefined;
  from: string;
  to: string;
  createTimeMs: number | undefined;
  clientId: string;
  contextToken: string | undefined;
  groupId: string;
  messageType: number;
  messageState: number;
  content: IlinkContent;
  quote: IlinkQuote | undefined;
}

const str = (v: unknown) => (typeof v === 'string' ? v : '');
const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/**
 * The AES key of an inbound media item, as hex: `image_item.aeskey` (hex) first, else `media.aes_key`,
 * which is base64 of the 16 raw bytes (images) or of the 32-character hex text (files, voice, video).
 * Undefined when there is none (the bytes are plaintext); throws on a key that is neither.
 */
export function inboundKeyHex(aeskey: unknown, mediaAesKey: unknown): string | undefined {
  if (typeof aeskey === 'string' && /^[0-9a-fA-F]{32}$/.test(aeskey)) return aeskey.toLowerCase();
  if (typeof mediaAesKey !== 'string' || mediaAesKey === '') return undefined;
  const raw = Buffer.from(mediaAesKey, 'base64');
  if (raw.length === 16) return raw.toString('hex');
  const text = raw.toString('latin1');
  if (raw.length === 32 && /^[0-9a-fA-F]{32}$/.test(text)) return text.toLowerCase();
  throw new RequestError('ilink_bad_key', 'a media key that is neither 16 bytes nor 32 hex characters');
}

function mediaRef(item: Record<string, unknown>): MediaRef | undefined {
  const media = obj(item['media']);
  const param = str(media?.['encrypt_query_param']);
  const fullUrl = str(media?.['full_url']) || undefined;
  if (!param && !fullUrl) return undefined;
  return { param, fullUrl, keyHex: inboundKeyHex(item['aeskey'], media?.['aes_key']) };
}

/** The text of a quoted item (`ref_msg.message_item`): its text, or what kind of thing it was. */
function quotedText(item: Record<string, unknown> | undefined): string | undefined {
  if (!item) return undefined;
  const text = str(obj(item['text_item'])?.['text']);
  if (text) return text;
  const voice = str(obj(item['voice_item'])?.['text']);
  if (voice) return voice;
  const kinds: Record<number, string> = { [ITEM.IMAGE]: '[图片]', [ITEM.VOICE]: '[语音]', [ITEM.FILE]: '[文件]', [ITEM.VIDEO]: '[视频]' };
  return kinds[num(item['type']) ?? 0];
}

/** One `msgs[]` entry of `getupdates`; throws RequestError on a message without a sender. */
export function parseMessage(raw: unknown): IlinkMessage {
  const m = obj(raw);
  if (!m) throw new RequestError('ilink_bad_message', 'a message that is not an object');
  const from = str(m['from_user_id']);
  if (!from) throw new RequestError('ilink_bad_message', 'a message without from_user_id');
  const items = (Array.isArray(m['item_list']) ? m['item_list'] : []).map(obj).filter((i): i is Record<string, unknown> => i !== undefined);
  let quote: IlinkQuote | undefined;
  const texts: string[] = [];
  let content: IlinkContent | undefined;
  for (const it of items) {
    const ref = obj(it['ref_msg']);
    if (ref && !quote) {
      const text = quotedText(obj(ref['message_item'])) ?? (str(ref['title']) || undefined);
      quote = { text, svrId: idText(ref['svr_id']) };
    }
    const type = num(it['type']);
    if (type === ITEM.TEXT) {
      const t = str(obj(it['text_item'])?.['text']);
      if (t) texts.push(t);
    } else if (type === ITEM.IMAGE && !content) {
      const image = obj(it['image_item']);
      const media = image ? mediaRef(image) : undefined;
      content = media ? { type: 'image', media } : { type: 'other', what: 'image without media' };
    } else if (type === ITEM.VOICE && !content) {
      const transcript = str(obj(it['voice_item'])?.['text']).trim();
      content = { type: 'voice', transcript: transcript || undefined };
    } else if (!content && type !== undefined) {
      content = { type: 'other', what: type === ITEM.FILE ? 'file' : type === ITEM.VIDEO ? 'video' : `item ${type}` };
    }
  }
  // Text wins: a caption with a picture is still a question.
  if (texts.length > 0) content = { type: 'text', text: texts.join('\n') };
  return {
    id: idText(m['message_id']),
    seq: num(m['seq']),
    from,
    to: str(m['to_user_id']),
    createTimeMs: num(m['create_time_ms']),
    clientId: str(m['client_id']),
    contextToken: str(m['context_token']) || undefined,
    groupId: str(m['group_id']),
    messageType: num(m['message_type']) ?? 0,
    messageState: num(m['message_state']) ?? 0,
    content: content ?? { type: 'other', what: 'empty' },
    quote,
  };
}

/**
 * The message's own id for the dedupe key: `message_id`, else what the official client falls back on
 * (`from|seq|create_time_ms|client_id`), hashed. Never the `context_token`: it changes per delivery.
 */
export function messageIdOf(m: IlinkMessage): string {
  if (m.id) return m.id;
  const basis = `${m.from}|${m.seq ?? ''}|${m.createTimeMs ?? ''}|${m.clientId}`;
  return `h${createHash('sha256').update(basis).digest('hex').slice(0, 24)}`;
}

/**
 * What makes two deliveries the same message when their ids differ or are missing (duplicates come
 * again 1–9 s later with a new id or none): the sender and the content. Hashed; never contains text.
 */
export function fingerprintOf(account: string, m: IlinkMessage): string {
  const c = m.content;
  const what =
    c.type === 'text' ? `t:${c.text}` : c.type === 'image' ? `i:${c.media.param || c.media.fullUrl || ''}` : c.type === 'voice' ? `v:${c.transcript ?? ''}` : `o:${c.what}`;
  const quote = m.quote ? `|q:${m.quote.svrId ?? ''}:${m.quote.text ?? ''}` : '';
  return createHash('sha256').update(`${account}\n${m.from}\n${what}${quote}`).digest('hex').slice(0, 40);
}

// ---- the CDN

/** AES-128-ECB with PKCS#7, as the CDN stores media. */
export function decryptMedia(ciphertext: Buffer, keyHex: string): Buffer {
  const d = createDecipheriv('aes-128-ecb', Buffer.from(keyHex, 'hex'), null);
  return Buffer.concat([d.update(ciphertext), d.final()]);
}

/** AES-128-ECB with PKCS#7: what the CDN is given to store. */
export function encryptMedia(plaintext: Buffer, keyHex: string): Buffer {
  const c = createCipheriv('aes-128-ecb', Buffer.from(keyHex, 'hex'), null);
  return Buffer.concat([c.update(plaintext), c.final()]);
}

/** `getuploadurl`'s `media_type` (docs/ilink.md "Pictures"). */
export const MEDIA_TYPE = { IMAGE: 1, VIDEO: 2, FILE: 3, VOICE: 4 } as const;

/** The ciphertext size of `rawsize` bytes under PKCS#7: always at least one byte of padding (24563 → 24576). */
export const paddedSize = (rawsize: number) => Math.ceil((rawsize + 1) / 16) * 16;

/** An outbound file ready for the CDN: its ciphertext and what `getuploadurl` declares about it. */
export interface UploadPlan {
  ciphertext: Buffer;
  rawsize: number;
  /** MD5 of the plaintext, lowercase hex. */
  rawfilemd5: string;
  /** The ciphertext's size (`ceil((rawsize+1)/16)*16`). */
  filesize: number;
  /** The AES key, 32 lowercase hex characters (`getuploadurl.aeskey`). */
  keyHex: string;
  /** The upload's id, 32 lowercase hex characters. */
  filekey: string;
}

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * Encrypt `plaintext` under `keyHex` for an upload named `filekey` (both 16 random bytes in lowercase
 * hex, chosen by the caller). Throws RequestError on a key or file key that is not that.
 */
export function planUpload(plaintext: Buffer, keyHex: string, filekey: string): UploadPlan {
  if (!HEX32.test(keyHex)) throw new RequestError('ilink_bad_key', 'an AES key that is not 32 lowercase hex characters');
  if (!HEX32.test(filekey)) throw new RequestError('ilink_bad_key', 'a file key that is not 32 lowercase hex characters');
  const ciphertext = encryptMedia(plaintext, keyHex);
  return { ciphertext, rawsize: plaintext.length, rawfilemd5: createHash('md5').update(plaintext).digest('hex'), filesize: paddedSize(plaintext.length), keyHex, filekey };
}

/** `getuploadurl`'s body (besides `base_info`) for a picture to `to`: no thumbnail, as every client sends. */
export function uploadUrlRequest(plan: UploadPlan, to: string, mediaType: number = MEDIA_TYPE.IMAGE): Record<string, unknown> {
  return { filekey: plan.filekey, media_type: mediaType, to_user_id: to, rawsize: plan.rawsize, rawfilemd5: plan.rawfilemd5, filesize: plan.filesize, no_need_thumb: true, aeskey: plan.keyHex };
}

/** Where the ciphertext is POSTed: `upload_full_url` when the service gave one, else `<cdn>/upload?…`. */
export function uploadUrl(cdnBase: string, uploadParam: string, filekey: string, fullUrl?: string): string {
  return fullUrl || `${cdnBase}/upload?encrypted_query_param=${encodeURIComponent(uploadParam)}&filekey=${encodeURIComponent(filekey)}`;
}

/**
 * An outbound item's `media.aes_key`: base64 of the 32-character hex **text**, not of the 16 raw bytes
 * (WeChat shows a picture keyed the other way grey).
 */
export const outboundAesKey = (keyHex: string) => Buffer.from(keyHex, 'latin1').toString('base64');

/** A picture on the CDN as `sendmessage` carries it: the download parameter, its key, the ciphertext's size. */
export interface OutboundImage {
  /** `x-encrypted-param` of the upload. */
  param: string;
  keyHex: string;
  cipherSize: number;
}

/** The `sendmessage` item of a picture. */
export function imageItem(img: OutboundImage): Record<string, unknown> {
  return { type: ITEM.IMAGE, image_item: { media: { encrypt_query_param: img.param, aes_key: outboundAesKey(img.keyHex), encrypt_type: 1 }, mid_size: img.cipherSize } };
}

/** The download URL of a media item: its `full_url`, else `<cdn>/download?encrypted_query_param=…`. */
export function downloadUrl(cdnBase: string, media: MediaRef): string {
  return media.fullUrl ?? `${cdnBase}/download?encrypted_query_param=${encodeURIComponent(media.param)}`;
}

/**
 * A picture's `mediaId` as the question's record keeps it: everything needed to download and decrypt
 * it (the key included: the record is the only place it is kept, and it is never logged).
 */
export function encodeMediaId(media: MediaRef): string {
  return Buffer.from(JSON.stringify({ p: media.param, ...(media.fullUrl ? { u: media.fullUrl } : {}), ...(media.keyHex ? { k: media.keyHex } : {}) }), 'utf8').toString('base64url');
}

export function decodeMediaId(id: string): MediaRef | undefined {
  try {
    const o = JSON.parse(Buffer.from(id, 'base64url').toString('utf8')) as { p?: unknown; u?: unknown; k?: unknown };
    if (typeof o.p !== 'string') return undefined;
    const keyHex = typeof o.k === 'string' && /^[0-9a-f]{32}$/.test(o.k) ? o.k : undefined;
    return { param: o.p, fullUrl: typeof o.u === 'string' ? o.u : undefined, keyHex };
  } catch {
    return undefined;
  }
}

/** The picture's type from its first bytes (the CDN says only octet-stream). */
export function sniffImageType(bytes: Buffer): string {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (bytes.length >= 6 && /^GIF8[79]a$/.test(bytes.subarray(0, 6).toString('latin1'))) return 'image/gif';
  if (bytes.length >= 12 && bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp';
  if (bytes.length >= 2 && bytes.subarray(0, 2).toString('latin1') === 'BM') return 'image/bmp';
  return 'application/octet-stream';
}

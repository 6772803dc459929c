/**
 * iLink's pure codecs (lib/channels/ilink/wire.ts, split.ts) and the QR login flow (login.ts) against
 * the simulator through every status: wait, scaned, need_verifycode (wrong, then right),
 * verify_code_blocked, expired (a new code), scaned_but_redirect, binded_redirect, confirmed, and a
 * confirm without a bot id.
 */
import { createCipheriv, randomBytes } from 'crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { createIlinkApi } from '../../../lib/channels/ilink/api';
import { qrLogin, redirectBase } from '../../../lib/channels/ilink/login';
import type { LoginOptions } from '../../../lib/channels/ilink/login';
import { splitMessages } from '../../../lib/channels/ilink/split';
import {
  decodeMediaId,
  decryptMedia,
  encodeMediaId,
  encryptMedia,
  fingerprintOf,
  imageItem,
  inboundKeyHex,
  messageIdOf,
  outboundAesKey,
  paddedSize,
  parseIlinkJson,
  parseMessage,
  planUpload,
  randomUin,
  uploadUrl,
  uploadUrlRequest,
} from '../../../lib/channels/ilink/wire';
import { startIlinkSim } from '../../../lib/sim/ilink-sim';
import type { IlinkSim } from '../../../lib/sim/ilink-sim';
import { systemClock } from '../../../lib/util/clock';
import { eventually } from '../../support/harness';

describe('iLink wire codecs', () => {
  it('reads uint64 ids exactly, leaves numbers inside strings and small numbers alone', () => {
    const text = '{"ret":0,"msgs":[{"message_id":18446744073709551557,"seq":12,"x":-9007199254740993,"t":"id 18446744073709551557 in \\"text\\"","f":1.5e3}]}';
    const o = parseIlinkJson(text) as { msgs: Record<string, unknown>[] };
    expect(o.msgs[0]?.['message_id']).toBe('18446744073709551557');
    expect(o.msgs[0]?.['x']).toBe('-9007199254740993');
    expect(o.msgs[0]?.['seq']).toBe(12);
    expect(o.msgs[0]?.['t']).toBe('id 18446744073709551557 in "text"');
    expect(o.msgs[0]?.['f']).toBe(1500);
    expect(parseIlinkJson('not json')).toBeUndefined();
  });

  it('parses any JSON the way JSON.parse does, apart from long integers', () => {
    fc.assert(
      fc.property(fc.json(), (j) => {
        const ours = JSON.stringify(parseIlinkJson(j));
        const theirs = JSON.stringify(JSON.parse(j), (_k, v: unknown) => (typeof v === 'number' && Number.isInteger(v) && Math.abs(v) >= 1e15 ? 'long' : v));
        return JSON.stringify(JSON.parse(ours), (_k, v: unknown) => (typeof v === 'string' && /^-?\d{16,}$/.test(v) ? 'long' : typeof v === 'number' && Number.isInteger(v) && Math.abs(v) >= 1e15 ? 'long' : v)) === theirs;
      }),
      { numRuns: 300 },
    );
  });

  it('X-WECHAT-UIN is base64 of the decimal text of a uint32', () => {
    for (let i = 0; i < 50; i++) {
      const decoded = Buffer.from(randomUin(), 'base64').toString('latin1');
      expect(decoded).toMatch(/^\d{1,10}$/);
      expect(Number(decoded)).toBeLessThanOrEqual(0xffffffff);
    }
  });

  it('takes the AES key from image_item.aeskey (hex) or media.aes_key in either base64 form; none means plaintext', () => {
    const hex = '00112233445566778899aabbccddeeff';
    expect(inboundKeyHex(hex, undefined)).toBe(hex);
    expect(inboundKeyHex(undefined, 'ABEiM0RVZneImaq7zN3u/w==')).toBe(hex); // base64 of the raw bytes
    expect(inboundKeyHex(undefined, 'MDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY=')).toBe(hex); // base64 of the hex text
    expect(inboundKeyHex(undefined, undefined)).toBeUndefined();
    expect(() => inboundKeyHex(undefined, 'AAAA')).toThrow();
    // The reference's vector: "hello" under that key.
    expect(decryptMedia(Buffer.from('9d86c8612e085e93a235794a708af7a9', 'hex'), hex).toString()).toBe('hello');
  });

  it('outbound pictures: base64 of the hex key text (the reference vector), sizes, digest and the image item', () => {
    const hex = '00112233445566778899aabbccddeeff';
    expect(outboundAesKey(hex)).toBe('MDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY=');
    // …and what a receiver decodes it to is the key (not the grey-image encoding of the raw bytes).
    expect(inboundKeyHex(undefined, outboundAesKey(hex))).toBe(hex);
    expect(outboundAesKey(hex)).not.toBe(Buffer.from(hex, 'hex').toString('base64'));
    expect(encryptMedia(Buffer.from('hello'), hex).toString('hex')).toBe('9d86c8612e085e93a235794a708af7a9');
    expect([paddedSize(0), paddedSize(15), paddedSize(16), paddedSize(24_563)]).toEqual([16, 16, 32, 24_576]);
    const filekey = 'ab'.repeat(16);
    const plan = planUpload(Buffer.from('hello'), hex, filekey);
    expect(plan).toEqual({ ciphertext: Buffer.from('9d86c8612e085e93a235794a708af7a9', 'hex'), rawsize: 5, rawfilemd5: '5d41402abc4b2a76b9719d911017c592', filesize: 16, keyHex: hex, filekey });
    expect(uploadUrlRequest(plan, 'u@im.wechat')).toEqual({ filekey, media_type: 1, to_user_id: 'u@im.wechat', rawsize: 5, rawfilemd5: '5d41402abc4b2a76b9719d911017c592', filesize: 16, no_need_thumb: true, aeskey: hex });
    expect(imageItem({ param: 'dl+/=', keyHex: hex, cipherSize: 16 })).toEqual({ type: 2, image_item: { media: { encrypt_query_param: 'dl+/=', aes_key: 'MDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY=', encrypt_type: 1 }, mid_size: 16 } });
    expect(uploadUrl('https://cdn.example/c2c', 'a+b/c=', filekey)).toBe(`https://cdn.example/c2c/upload?encrypted_query_param=a%2Bb%2Fc%3D&filekey=${filekey}`);
    expect(uploadUrl('https://cdn.example/c2c', 'a', filekey, 'https://up.example/x?y=1')).toBe('https://up.example/x?y=1');
    expect(() => planUpload(Buffer.from('x'), hex.toUpperCase(), filekey)).toThrow();
    expect(() => planUpload(Buffer.from('x'), hex, 'short')).toThrow();
  });

  it('the ciphertext is always the declared size and decrypts to the plaintext, whatever its length', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const plain = Buffer.from(bytes);
        const key = randomBytes(16).toString('hex');
        const plan = planUpload(plain, key, randomBytes(16).toString('hex'));
        return plan.ciphertext.length === plan.filesize && decryptMedia(plan.ciphertext, key).equals(plain);
      }),
      { numRuns: 200 },
    );
  });

  it('a media id carries what the download needs, and nothing else decodes as one', () => {
    const ref = { param: 'p+/=', fullUrl: undefined, keyHex: 'ab'.repeat(16) };
    expect(decodeMediaId(encodeMediaId(ref))).toEqual(ref);
    expect(decodeMediaId('nonsense')).toBeUndefined();
  });

  it('parses messages: text wins over a picture, a voice has its transcript, a quote its text or svr_id', () => {
    const m = parseMessage({ message_id: '5', from_user_id: 'u@im.wechat', item_list: [{ type: 1, text_item: { text: '问' }, ref_msg: { svr_id: '77', title: 't' } }] });
    expect(m.content).toEqual({ type: 'text', text: '问' });
    expect(m.quote).toEqual({ text: 't', svrId: '77' });
    expect(parseMessage({ from_user_id: 'u', item_list: [{ type: 3, voice_item: { text: ' 你好 ' } }] }).content).toEqual({ type: 'voice', transcript: '你好' });
    expect(parseMessage({ from_user_id: 'u', item_list: [{ type: 4, file_item: {} }] }).content).toEqual({ type: 'other', what: 'file' });
    expect(() => parseMessage({ item_list: [] })).toThrow();
  });

  it('without a message_id the official fallback names it; the fingerprint ignores ids and context tokens', () => {
    const base = { from_user_id: 'u@im.wechat', seq: 3, create_time_ms: 1, client_id: 'c', item_list: [{ type: 1, text_item: { text: 'x' } }] };
    const a = parseMessage({ ...base, message_id: '1', context_token: 'A' });
    const b = parseMessage({ ...base, message_id: '2', context_token: 'B' });
    const c = parseMessage({ ...base, context_token: 'C' });
    expect(messageIdOf(c)).toMatch(/^h[0-9a-f]{24}$/);
    expect(messageIdOf(c)).toBe(messageIdOf(parseMessage({ ...base })));
    expect(fingerprintOf('ilink', a)).toBe(fingerprintOf('ilink', b));
    expect(fingerprintOf('ilink', a)).toBe(fingerprintOf('ilink', c));
    expect(fingerprintOf('ilink', a)).not.toBe(fingerprintOf('ilink@two', a));
    expect(fingerprintOf('ilink', a)).not.toBe(fingerprintOf('ilink', parseMessage({ ...base, item_list: [{ type: 1, text_item: { text: 'y' } }] })));
  });
});

describe('iLink messages: splitting an answer', () => {
  it('never exceeds the limit, never cuts a grapheme cluster, and loses nothing but whitespace at cuts', () => {
    const seg = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
    const pieces = fc.oneof(fc.constantFrom('👨‍👩‍👧‍👦', '🇨🇳', 'é', '中文', '。', '\n\n', '\n', ' ', 'a', 'ab cd. '), fc.string({ maxLength: 5 }));
    fc.assert(
      fc.property(fc.array(pieces, { maxLength: 400 }), fc.integer({ min: 16, max: 120 }), (parts, max) => {
        const text = parts.join('');
        const out = splitMessages(text, max);
        const clusters = new Set([...seg.segment(text)].map((s) => s.index));
        let at = 0;
        const body = text.trim();
        for (const piece of out) {
          if (piece.length > max) return false;
          const found = body.indexOf(piece, at);
          if (found < 0) return false;
          // Each piece starts and ends on a cluster boundary of the whole text.
          const offset = text.indexOf(body) + found;
          if (!clusters.has(offset) && offset !== 0) return false;
          at = found + piece.length;
        }
        return out.join('').replace(/\s/g, '') === body.replace(/\s/g, '');
      }),
      { numRuns: 300 },
    );
  });

  it('prefers paragraph breaks', () => {
    expect(splitMessages(`${'甲'.repeat(30)}\n\n${'乙'.repeat(30)}`, 40)).toEqual(['甲'.repeat(30), '乙'.repeat(30)]);
  });
});

const sims: IlinkSim[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function loginRun(sim: IlinkSim, o: Partial<LoginOptions> & { codes?: string[] } = {}) {
  const shown: string[] = [];
  const statuses: string[] = [];
  const codes = [...(o.codes ?? [])];
  const outcome = qrLogin({
    api: createIlinkApi({ apiBase: sim.url }),
    clock: systemClock,
    apiBase: sim.url,
    localTokens: o.localTokens ?? [],
    showQr: (c) => void shown.push(c),
    status: (s) => void statuses.push(s),
    verifyCode: async () => codes.shift(),
    pauseMs: 10,
    pollTimeoutMs: 5000,
  });
  return { outcome, shown, statuses };
}

describe('iLink QR login through every status', () => {
  it('wait → scaned → need_verifycode (wrong, then right) → confirmed', async () => {
    const sim = await startIlinkSim({ qrHoldMs: 200 });
    sims.push(sim);
    const run = await loginRun(sim, { codes: ['000000', '482913'] });
    await eventually(() => sim.qrcodes.length === 1);
    await eventually(() => run.statuses.includes('wait'));
    sim.scan({ user: 'owner@im.wechat', verifyCode: '482913' });
    await eventually(() => sim.qrcodes[0]?.status === 'scaned');
    sim.confirm({ botId: 'b0f5abc@im.bot' });
    const out = await run.outcome;
    expect(out).toMatchObject({ kind: 'confirmed', botId: 'b0f5abc@im.bot', userId: 'owner@im.wechat', baseUrl: sim.url });
    expect(run.statuses).toEqual(['wait', 'need_verifycode', 'need_verifycode', 'scaned', 'confirmed']);
    expect(run.shown).toEqual([sim.qrcodes[0]?.imgContent]);
    expect(sim.violations).toEqual([]);
  });

  it('expired: a new QR code, up to three; verify_code_blocked: a new one too', async () => {
    const sim = await startIlinkSim({ qrHoldMs: 200, maxWrongVerifyCodes: 1 });
    sims.push(sim);
    const run = await loginRun(sim, { codes: ['111111'] });
    await eventually(() => sim.qrcodes.length === 1);
    sim.expire();
    await eventually(() => sim.qrcodes.length === 2);
    sim.scan({ verifyCode: '999999' });
    await eventually(() => sim.qrcodes.length === 3); // one wrong code blocks here
    sim.expire();
    expect(await run.outcome).toEqual({ kind: 'failed', reason: 'the QR code expired 3 times' });
    expect(run.shown).toHaveLength(3);
    expect(run.statuses).toContain('verify_code_blocked');
  });

  it('scaned_but_redirect: polls the host it names (keeping the scheme) and logs in there', async () => {
    const sim = await startIlinkSim({ qrHoldMs: 200 });
    sims.push(sim);
    const run = await loginRun(sim);
    await eventually(() => sim.qrcodes.length === 1);
    sim.scan({ redirect: true });
    await eventually(() => run.statuses.includes('scaned_but_redirect'));
    await eventually(() => sim.requests.some((r) => r.op === 'get_qrcode_status' && r.host === 'alt'));
    sim.confirm({ baseUrl: 'alt' });
    expect(await run.outcome).toMatchObject({ kind: 'confirmed', baseUrl: sim.altUrl });
    expect(sim.violations).toEqual([]);
    expect(redirectBase('https://ilinkai.weixin.qq.com', 'sh.ilink.qq.com')).toBe('https://sh.ilink.qq.com');
  });

  it('binded_redirect: the bot is already bound to this client, the session held is kept', async () => {
    const sim = await startIlinkSim({ qrHoldMs: 200 });
    sims.push(sim);
    const held = sim.login({ user: 'owner@im.wechat' });
    const run = await loginRun(sim, { localTokens: [held.token] });
    await eventually(() => sim.qrcodes.length === 1);
    sim.scan({ user: 'owner@im.wechat' });
    sim.confirm();
    expect(await run.outcome).toEqual({ kind: 'bound' });
    expect(held.live).toBe(true);
  });

  it('a confirm without ilink_bot_id is a failed login', async () => {
    const sim = await startIlinkSim({ qrHoldMs: 200 });
    sims.push(sim);
    const run = await loginRun(sim);
    await eventually(() => sim.qrcodes.length === 1);
    sim.scan();
    sim.confirm({ withoutBotId: true });
    expect(await run.outcome).toEqual({ kind: 'failed', reason: 'the service confirmed without a bot id' });
  });
});

// The CDN key vector above, as the simulator encrypts: AES-128-ECB with PKCS#7.
it('decrypts what AES-128-ECB encrypted, whatever its length', () => {
  const key = randomBytes(16);
  for (const n of [0, 1, 15, 16, 17, 1000]) {
    const plain = randomBytes(n);
    const c = createCipheriv('aes-128-ecb', key, null);
    expect(decryptMedia(Buffer.concat([c.update(plain), c.final()]), key.toString('hex')).equals(plain)).toBe(true);
  }
});

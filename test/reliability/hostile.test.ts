/**
 * Hostile input, property-based (fast-check): mutated signed and unsigned requests, XML bodies,
 * query strings, headers and encodings. Never a 5xx, never a crash, never a store change for an
 * unsigned request; a 200 is always `success` or a well-formed text reply.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseXmlFields } from '../../lib/channels/wechat-oa/xml';
import { TOKEN, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { call, signed, textXml } from '../support/wire';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { MAX_BODY_BYTES: '65536' } });
});
afterAll(async () => h?.close());

async function snapshot(): Promise<string> {
  const { messages: m, users: u, kv: k } = await h.app.store.snapshot();
  return JSON.stringify([m.length, u.length, k.length, m.map((x) => `${x._id}:${x.deliveries}`).sort()]);
}

/** What a valid 200 looks like: `success` or a text reply addressed back to a sender. */
function checkOk(body: string): void {
  if (body === 'success' || body === '') return;
  const f = parseXmlFields(body, 1 << 20);
  expect(f['MsgType']).toBe('text');
  expect(typeof f['Content']).toBe('string');
}

const BASE = textXml('oHostile', '你好', '123456789012345678');

/** A mutation of a valid body: cut, splice, duplicate, nest, inject markup or bytes. */
const mutatedBody = fc.oneof(
  fc.tuple(fc.nat(BASE.length), fc.nat(BASE.length)).map(([a, b]) => BASE.slice(0, Math.min(a, b)) + BASE.slice(Math.max(a, b))),
  fc.tuple(fc.nat(BASE.length), fc.string({ maxLength: 40 })).map(([i, s]) => BASE.slice(0, i) + s + BASE.slice(i)),
  fc.tuple(fc.nat(BASE.length), fc.constantFrom('<!DOCTYPE x [<!ENTITY a "b">]>', '&a;', ']]>', '<![CDATA[', '<a>'.repeat(40), '\u0000', '\uFFFE', '<?xml version="1.0"?>', '</xml>', '<MsgId>1</MsgId>')).map(
    ([i, s]) => BASE.slice(0, i) + s + BASE.slice(i),
  ),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('', '<xml/>', '<xml></xml>', '{"json":1}', '<xml>' + '<a>x</a>'.repeat(500) + '</xml>', 'x'.repeat(70_000)),
  fc.string({ maxLength: 80 }).map((c) => textXml('oHostile', c, String(Math.floor(Math.random() * 1e15)))),
);

const queryValue = fc.oneof(fc.string({ maxLength: 50 }), fc.constantFrom('', '0', '-1', '99999999999999999999', '%00', '%E4%B8', 'aes'));
const mutatedQuery = fc.dictionary(fc.constantFrom('signature', 'timestamp', 'nonce', 'echostr', 'encrypt_type', 'msg_signature', 'openid', 'x'), queryValue, { maxKeys: 7 });
const headers = fc.record(
  { 'Content-Type': fc.constantFrom('text/xml', 'application/xml', 'text/plain', 'application/json', 'text/xml; charset=gbk', 'multipart/form-data; boundary=x') },
  { requiredKeys: [] },
);

const qs = (q: Record<string, string>) =>
  Object.entries(q)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');

describe('hostile input', () => {
  it('unsigned or badly signed requests: 4xx, and the store does not change', async () => {
    const before = await snapshot();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), mutatedQuery, mutatedBody, headers, async (method, q, body, hdrs) => {
        const r = await call(`${h.url}?${qs(q)}`, { method, body: method === 'GET' ? undefined : body, headers: { ...hdrs } as Record<string, string> });
        expect(r.dropped).toBe(false);
        expect(r.status).toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
      }),
      { numRuns: 250 },
    );
    expect(await snapshot()).toBe(before);
  });

  it('signed requests with mutated bodies: never a 5xx; a 200 is success or a valid text reply', async () => {
    await fc.assert(
      fc.asyncProperty(mutatedBody, headers, async (body, hdrs) => {
        const r = await call(`${h.url}?${signed(TOKEN)}`, { method: 'POST', body, headers: hdrs });
        expect(r.dropped).toBe(false);
        expect(r.status).toBeLessThan(500);
        if (r.status === 200) checkOk(r.body);
        else expect([400, 401, 413]).toContain(r.status);
      }),
      { numRuns: 250 },
    );
  });

  it('bodies in other byte encodings are refused or read, never a crash', async () => {
    const gbk = Buffer.from(BASE.replace('你好', 'hello'), 'latin1');
    const utf16 = Buffer.from(BASE, 'utf16le');
    for (const body of [gbk, utf16, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(BASE)]), Buffer.from([0xff, 0xfe, 0x00, 0xc3])]) {
      const r = await call(`${h.url}?${signed(TOKEN)}`, { method: 'POST', body });
      expect(r.status).toBeLessThan(500);
      if (r.status === 200) checkOk(r.body);
    }
  });

  it('the server is still healthy afterwards', async () => {
    expect((await call(h.url.replace('/wechat', '/healthz'))).status).toBe(200);
    expect((await h.wechat.send('oAfter', '还活着吗')).text).toBe('你说的是：还活着吗');
  });
});

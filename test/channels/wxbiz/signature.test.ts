import { describe, expect, it } from 'vitest';
import { SignatureError } from '../../../lib/errors';
import { safeEqualHex, sha1Signature, verifySignature } from '../../../lib/channels/wxbiz/signature';

// docs/wechat.mdsignature examples
const VECTORS: [string, string, string, string][] = [
  ['AAAAA', '1714036504', '1514711492', 'f464b24fc39322e44b38aa78f5edd27bd1441696'],
  ['AAAAA', '1714037059', '486452656', '899cf89e464efb63f54ddac96b0a0a235f53aa78'],
  ['AAAAA', '1714112445', '415670741', '6c5c811b55cc85e0e1b54100749188c20beb3f5d'],
  ['AAAAA', '1715943329', '1590219412', 'cc0c594499c1634947d5b502f158ee518947db27'],
  ['test', '1410685589', 'test', 'f21891de399b4e33a1a93c9a7b8a8fffb5a443ff'],
];

describe('sha1Signature', () => {
  it.each(VECTORS)('reproduces the published signature for token %s, timestamp %s', (token, ts, nonce, sig) => {
    expect(sha1Signature([token, ts, nonce])).toBe(sig);
  });

  it('sorts in plain code-unit order (+ before digits before uppercase)', () => {
    // msg_signature of vector C: the Encrypt value starts with '+'
    expect(sha1Signature(['AAAAA', '1714112445', '415670741', '+qdx'])).toBe(sha1Signature(['+qdx', '1714112445', '415670741', 'AAAAA']));
  });
});

describe('verifySignature', () => {
  const now = 1410685589_000;
  it('accepts a valid signature within the tolerance', () => {
    expect(() => verifySignature('test', { signature: 'f21891de399b4e33a1a93c9a7b8a8fffb5a443ff', timestamp: '1410685589', nonce: 'test' }, now, 300)).not.toThrow();
  });

  it('accepts an uppercase hex signature', () => {
    expect(() => verifySignature('test', { signature: 'F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF', timestamp: '1410685589', nonce: 'test' }, now, 300)).not.toThrow();
  });

  it('rejects the same value with the last character changed (wechatpy)', () => {
    expect(() => verifySignature('test', { signature: 'f21891de399b4e33a1a93c9a7b8a8fffb5a443fe', timestamp: '1410685589', nonce: 'test' }, now, 300)).toThrow(SignatureError);
  });

  it('rejects a prefix of the right signature and an over-long one', () => {
    const good = 'f21891de399b4e33a1a93c9a7b8a8fffb5a443ff';
    for (const sig of [good.slice(0, 39), good.slice(0, 1), good + '0', '']) {
      expect(() => verifySignature('test', { signature: sig, timestamp: '1410685589', nonce: 'test' }, now, 300)).toThrow(SignatureError);
    }
  });

  it('rejects missing fields', () => {
    expect(() => verifySignature('test', { timestamp: '1410685589', nonce: 'test' }, now, 300)).toThrow(/missing/);
    expect(() => verifySignature('test', { signature: 'x', nonce: 'test' }, now, 300)).toThrow(/missing/);
    expect(() => verifySignature('test', { signature: 'x', timestamp: '1410685589' }, now, 300)).toThrow(/missing/);
  });

  it('rejects a replayed old or future timestamp, and accepts it with the check disabled', () => {
    const q = { signature: 'f21891de399b4e33a1a93c9a7b8a8fffb5a443ff', timestamp: '1410685589', nonce: 'test' };
    expect(() => verifySignature('test', q, now + 301_000, 300)).toThrow(expect.objectContaining({ code: 'stale_timestamp' }));
    expect(() => verifySignature('test', q, now - 301_000, 300)).toThrow(expect.objectContaining({ code: 'stale_timestamp' }));
    expect(() => verifySignature('test', q, now + 10 * 365 * 86_400_000, 0)).not.toThrow();
  });
});

describe('safeEqualHex', () => {
  it('is true only for the exact digest', () => {
    const a = sha1Signature(['a', 'b', 'c']);
    expect(safeEqualHex(a, a)).toBe(true);
    expect(safeEqualHex(a, a.slice(0, -1))).toBe(false);
    expect(safeEqualHex(a, a.slice(0, -1) + (a.endsWith('0') ? '1' : '0'))).toBe(false);
  });
});

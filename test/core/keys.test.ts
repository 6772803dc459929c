/** Conversation keys (lib/core/keys.ts) as a codec: pinned strings per channel, exact round trips, no forgery. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { conversationKey, parseKey } from '../../lib/core/keys';

describe('conversation keys', () => {
  it('are the strings stored since each channel came (pinned: changing one orphans users’ history)', () => {
    expect(conversationKey('line', '', ['U4af4980629'])).toBe('line:U4af4980629');
    expect(conversationKey('line', '', ['g', 'C1a2b3c'])).toBe('line:g:C1a2b3c');
    expect(conversationKey('discord', '', ['1150000000000000001'])).toBe('discord:1150000000000000001');
    expect(conversationKey('wechat-oa', 'brand2', ['oUser123'])).toBe('wechat-oa@brand2:oUser123');
    expect(conversationKey('line', 'shop', ['r', 'R9'])).toBe('line@shop:r:R9');
    // The default Official Account's keys are bare OpenIDs, as stored before keys had tags.
    expect(parseKey('o6_bmjrPTlm6_2sgVt7hMZOPfL2M')).toEqual({ kind: undefined, instance: '', parts: ['o6_bmjrPTlm6_2sgVt7hMZOPfL2M'] });
    expect(parseKey('discord:1150000000000000001')).toEqual({ kind: 'discord', instance: '', parts: ['1150000000000000001'] });
    expect(parseKey('wechat-oa@brand2:oUser123')).toEqual({ kind: 'wechat-oa', instance: 'brand2', parts: ['oUser123'] });
  });

  it('round-trip exactly, whatever the parts hold: a colon in an id cannot forge another key', () => {
    fc.assert(
      fc.property(fc.constantFrom('line', 'discord', 'api', 'web'), fc.constantFrom('', 'a', 'shop-2'), fc.array(fc.string({ minLength: 0, maxLength: 12 }), { minLength: 1, maxLength: 3 }), (kind, instance, parts) => {
        const key = conversationKey(kind, instance, parts);
        expect(parseKey(key)).toEqual({ kind, instance, parts });
      }),
    );
    const forged = conversationKey('api', '', ['alice:evil']);
    expect(forged).toBe('api:alice%3Aevil');
    expect(parseKey(forged).parts).toEqual(['alice:evil']);
    expect(conversationKey('api', '', ['100%'])).not.toBe(conversationKey('api', '', ['100%25']));
  });

  it('refuse kinds and instance ids that would not parse back', () => {
    expect(() => conversationKey('Bad', '', ['x'])).toThrow();
    expect(() => conversationKey('line', 'a:b', ['x'])).toThrow();
    expect(() => conversationKey('line', '', [])).toThrow();
  });
});

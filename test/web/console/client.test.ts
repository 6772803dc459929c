/**
 * Which client a console login comes from (lib/console/client.ts): the socket's peer unless a trusted
 * header is configured; that header's last entry; IPv6 counted by its /64; the store key a hash.
 */
import { describe, expect, it } from 'vitest';
import { addressUnit, clientAddress, failuresKey } from '../../../lib/web/console/client';

describe('the console client’s address', () => {
  it('is the socket’s peer, IPv4-mapped IPv6 as IPv4, unless a header is trusted', () => {
    expect(clientAddress(undefined, { 'x-forwarded-for': '203.0.113.1' }, '::ffff:127.0.0.2')).toBe('127.0.0.2');
    expect(clientAddress(undefined, {}, undefined)).toBe('unknown');
  });

  it('is the trusted header’s last entry (the one the proxy added), without port or brackets; else the peer', () => {
    const xff = (v: string | string[]) => clientAddress('x-forwarded-for', { 'x-forwarded-for': v }, '127.0.0.1');
    expect(xff('198.51.100.7, 203.0.113.1')).toBe('203.0.113.1');
    expect(xff(['198.51.100.7', '203.0.113.2'])).toBe('203.0.113.2');
    expect(xff('203.0.113.3:4711')).toBe('203.0.113.3');
    expect(xff('[2001:DB8::5]:443')).toBe('2001:db8::5');
    expect(xff('203.0.113.1, not-an-address')).toBe('127.0.0.1');
    expect(clientAddress('x-real-ip', {}, '127.0.0.9')).toBe('127.0.0.9');
  });

  it('counts IPv6 by its /64, IPv4 by the address', () => {
    expect(addressUnit('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressUnit('2001:db8:1:2::ffff')).toBe('2001:db8:1:2::/64');
    expect(addressUnit('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressUnit('::1')).toBe('0:0:0:0::/64');
    expect(addressUnit('203.0.113.1')).toBe('203.0.113.1');
  });

  it('is stored as a keyed hash: the same unit, the same key; never the address', () => {
    const k = failuresKey('secret-token-0123456789abcdef', '2001:db8:1:2::1');
    expect(k).toBe(failuresKey('secret-token-0123456789abcdef', '2001:db8:1:2::9'));
    expect(k).not.toBe(failuresKey('secret-token-0123456789abcdef', '2001:db8:1:3::1'));
    expect(k).not.toBe(failuresKey('another-token-0123456789abcdef', '2001:db8:1:2::1'));
    expect(k).toMatch(/^console:login-failures:[0-9a-f]{32}$/);
    expect(failuresKey('secret-token-0123456789abcdef', '203.0.113.1')).not.toContain('203.0.113');
  });
});

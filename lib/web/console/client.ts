/**
 * Which client a console request comes from, for the login limiter (docs/console.md "Security"): the
 * socket's peer address, or, behind a reverse proxy, the address that proxy wrote into the one header
 * TRUSTED_PROXY_HEADER names. Any other header is the client's own claim and never read.
 */
import { createHmac } from 'crypto';
import { isIP } from 'net';

/**
 * The client's address. A trusted header is read by its last comma-separated entry: the one the proxy
 * in front of us added (X-Forwarded-For lists what earlier hops, or the client, claimed before it;
 * X-Real-IP holds one address). A missing or unreadable header falls back to the socket's peer.
 */
export function clientAddress(trustedHeader: string | undefined, headers: Readonly<Record<string, unknown>>, remoteAddress: string | undefined): string {
  if (trustedHeader) {
    const raw = headers[trustedHeader];
    const value = Array.isArray(raw) ? raw.join(',') : raw;
    if (typeof value === 'string') {
      const last = bareAddress(value.split(',').pop() ?? '');
      if (last) return last;
    }
  }
  return bareAddress(remoteAddress ?? '') ?? 'unknown';
}

/** An address without brackets, port or zone, IPv4-mapped IPv6 as IPv4; undefined if it is none. */
function bareAddress(s: string): string | undefined {
  let a = s.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) a = bracketed[1] as string;
  else if (/^[\d.]+:\d+$/.test(a)) a = a.slice(0, a.indexOf(':'));
  a = a.replace(/%.*$/, '').toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) a = mapped[1] as string;
  return isIP(a) ? a : undefined;
}

/**
 * The unit the limiter counts: an IPv4 address, or an IPv6 address's /64 (one subscriber usually
 * holds a whole /64, so counting single IPv6 addresses would let one attacker rotate without limit).
 */
export function addressUnit(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = '', tail] = address.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

/** The store key of a client's failed logins: keyed by a hash, so the store never holds the address. */
export function failuresKey(secret: string, address: string): string {
  return `console:login-failures:${createHmac('sha256', secret).update(`console-login-client:${addressUnit(address)}`).digest('hex').slice(0, 32)}`;
}

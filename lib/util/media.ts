/**
 * Fetching a file a model's answer points at (docs/rich-answers.md), as if the URL were hostile: a
 * model writes whatever it likes, and an image link to `http://169.254.169.254/…` or `http://10.0.0.5/`
 * would otherwise make this server fetch its own network for anyone who can ask a question.
 *
 * - http(s) only; the host's every address must be public (not loopback, private, link-local, CGNAT,
 *   multicast, cloud metadata, or IPv6's equivalents), unless the owner trusts it: a host named in
 *   MEDIA_ALLOW_HOSTS, or the URL is under where the backend serves its files (a self-hosted Dify on a
 *   LAN is normal), its origin and path, never its whole host (any port of the backend's machine);
 * - the connection goes to the address that was checked (no second DNS answer can swap it);
 * - redirects are followed by hand, at most 3, each checked like the first;
 * - the body is capped (MEDIA_MAX_BYTES) while it streams in, the whole fetch has a deadline;
 * - the type comes from the bytes (PNG, JPEG, GIF, WebP are images), never from the server's word.
 */
import { lookup as dnsLookup } from 'dns';
import http from 'http';
import https from 'https';
import { BlockList, isIP } from 'net';
import type { LookupFunction } from 'net';
import { MediaError } from '../errors';

export interface MediaPolicy {
  /** Hosts (lower case, any port) fetched even when they resolve to a private address: MEDIA_ALLOW_HOSTS. */
  trustedHosts: ReadonlySet<string>;
  /** URL prefixes (origin and path, as `URL.href` writes them) fetched even so: where the backend serves its files. */
  trustedPrefixes?: readonly string[];
  maxBytes: number;
  timeoutMs: number;
  /** Resolve a name to all its addresses (tests pass their own). */
  resolve?: (host: string) => Promise<{ address: string; family: number }[]>;
}

export interface FetchedMedia {
  bytes: Buffer;
  /** From the bytes: image/png, image/jpeg, image/gif, image/webp, or application/octet-stream. */
  contentType: string;
  kind: 'image' | 'file';
  /** The last path segment of the final URL, for a download's name. */
  name: string;
}

const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['100::', 64], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
] as const) blocked.addSubnet(net, bits, 'ipv6');

/** Is `address` one a fetch of an untrusted URL may reach (a public unicast address)? */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    // An IPv4 address written as IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it is (a ::ffff:0:0/96
    // rule in the list would match every IPv4 address: Node's BlockList checks IPv4 in its mapped form too).
    const mapped = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return isPublicAddress(mapped[1] as string);
    const hex = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
    if (hex) {
      const [hi, lo] = [parseInt(hex[1] as string, 16), parseInt(hex[2] as string, 16)];
      return isPublicAddress(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
    }
    return !blocked.check(address, 'ipv6');
  }
  return !blocked.check(address, 'ipv4');
}

const defaultResolve = (host: string) =>
  new Promise<{ address: string; family: number }[]>((resolve, reject) => dnsLookup(host, { all: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))));

/** The content type the bytes say they are. */
export function sniffType(b: Buffer): { contentType: string; kind: 'image' | 'file' } {
  if (b.length >= 8 && b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return { contentType: 'image/png', kind: 'image' };
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { contentType: 'image/jpeg', kind: 'image' };
  if (b.length >= 6 && /^GIF8[79]a$/.test(b.subarray(0, 6).toString('latin1'))) return { contentType: 'image/gif', kind: 'image' };
  if (b.length >= 12 && b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP') return { contentType: 'image/webp', kind: 'image' };
  return { contentType: 'application/octet-stream', kind: 'file' };
}

const fail = (detail: string, message: string, tooLarge = false) => new MediaError(detail, message, { tooLarge });

/** Would `raw` be fetched under `policy` (a URL, http(s), its host's addresses allowed)? Throws a `MediaError` naming why not. */
export async function vetMediaUrl(raw: string, policy: MediaPolicy): Promise<void> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw fail('bad_url', 'not a URL');
  }
  await checkedAddress(url, policy);
}

/** The address `url`'s host may be fetched at, checked; throws a `MediaError` naming why not. */
async function checkedAddress(url: URL, policy: MediaPolicy): Promise<{ address: string; family: number }> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw fail('not_http', `only http(s) URLs are fetched, not ${url.protocol}`);
  if (url.username || url.password) throw fail('credentials', 'URLs with credentials are not fetched');
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const literal = isIP(host);
  let addrs: { address: string; family: number }[];
  try {
    addrs = literal ? [{ address: host, family: literal }] : await (policy.resolve ?? defaultResolve)(host);
  } catch (err) {
    throw new MediaError('dns', `the host does not resolve: ${(err as Error).message}`, { cause: err });
  }
  if (addrs.length === 0) throw fail('dns', 'the host has no address');
  const trusted = policy.trustedHosts.has(host) || (policy.trustedPrefixes ?? []).some((p) => url.href.startsWith(p));
  if (!trusted && !addrs.every((a) => isPublicAddress(a.address))) {
    throw fail('private_address', `the host resolves to a private or reserved address (${host})`);
  }
  return addrs[0] as { address: string; family: number };
}

/** One GET to `url` at the checked `address`: the status, the redirect target, or the capped body. */
function getOnce(url: URL, to: { address: string; family: number }, policy: MediaPolicy, deadline: number): Promise<{ status: number; location?: string; body?: Buffer }> {
  return new Promise((resolve, reject) => {
    // Connect to the address that was checked, whatever DNS would say now (no rebinding).
    const pinned: LookupFunction = (_host, opts, cb) => {
      if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [to]);
      else cb(null, to.address, to.family);
    };
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.get(url, { lookup: pinned, headers: { 'User-Agent': 'wechat-dify-bot media fetch', Accept: '*/*' }, agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        res.resume();
        resolve({ status, ...(typeof res.headers.location === 'string' ? { location: res.headers.location } : {}) });
        return;
      }
      if (status !== 200) {
        res.resume();
        resolve({ status });
        return;
      }
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > policy.maxBytes) {
        res.destroy();
        reject(fail('too_large', `the file is ${declared} bytes, over MEDIA_MAX_BYTES`, true));
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > policy.maxBytes) {
          res.destroy();
          reject(fail('too_large', 'the file is over MEDIA_MAX_BYTES', true));
          return;
        }
        parts.push(c);
      });
      res.on('end', () => resolve({ status, body: Buffer.concat(parts) }));
      res.on('error', (err) => reject(new MediaError('network', err.message, { cause: err })));
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(fail('timeout', `no complete answer within ${policy.timeoutMs} ms`));
    }, Math.max(1, deadline - Date.now()));
    req.on('error', (err) => reject(new MediaError('network', err.message, { cause: err })));
    req.on('close', () => clearTimeout(timer));
  });
}

/** Fetch `raw` under `policy`; throws a `MediaError` whose `detail` says why not (logged, never shown). */
export async function fetchMedia(raw: string, policy: MediaPolicy): Promise<FetchedMedia> {
  const deadline = Date.now() + policy.timeoutMs;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw fail('bad_url', 'not a URL');
  }
  for (let hop = 0; hop <= 3; hop++) {
    const to = await checkedAddress(url, policy);
    const res = await getOnce(url, to, policy, deadline);
    if (res.location !== undefined) {
      let next: URL;
      try {
        next = new URL(res.location, url);
      } catch {
        throw fail('bad_redirect', 'a redirect to something that is not a URL');
      }
      url = next;
      continue;
    }
    if (res.status !== 200 || !res.body) throw fail(`http_${res.status}`, `the server answered ${res.status}`);
    const type = sniffType(res.body);
    let last = url.pathname.split('/').pop() || 'file';
    try {
      last = decodeURIComponent(last);
    } catch {
      // a malformed escape: the name as it is
    }
    const name = last.replace(/[^\w.\-\u4e00-\u9fff]/g, '_').slice(0, 80) || 'file';
    return { bytes: res.body, ...type, name };
  }
  throw fail('redirects', 'more than 3 redirects');
}

/**
 * Fetching what a model's answer points at, as if the URL were hostile (lib/util/media.ts): private
 * and reserved addresses refused however they are reached (literal, a DNS name, a redirect), the
 * size capped while the body streams, the type from the bytes, only http(s).
 */
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { afterEach, describe, expect, it } from 'vitest';
import { MediaError } from '../../lib/errors';
import { fetchMedia, isPublicAddress, sniffType } from '../../lib/util/media';
import type { MediaPolicy } from '../../lib/util/media';

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 1)]);
let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<number> {
  server = createServer(handler);
  await new Promise<void>((r) => (server as Server).listen(0, '127.0.0.1', r));
  return ((server as Server).address() as AddressInfo).port;
}

const policy = (over: Partial<MediaPolicy> = {}): MediaPolicy => ({ trustedHosts: new Set(), maxBytes: 1024, timeoutMs: 3000, ...over });
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(MediaError);
    return (err as MediaError).detail;
  }
  throw new Error('expected a refusal');
}

describe('which addresses are public', () => {
  it('refuses loopback, private, link-local, CGNAT, metadata, multicast, and their IPv6 and IPv4-mapped forms', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.1.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:a00:1', 'not-an-ip']) {
      expect([a, isPublicAddress(a)]).toEqual([a, false]);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888', '::ffff:8.8.8.8', '::ffff:808:808']) expect([a, isPublicAddress(a)]).toEqual([a, true]);
  });
});

describe('fetchMedia', () => {
  it('refuses what is not http(s), and private hosts however they are named', async () => {
    expect(await refusal(fetchMedia('file:///etc/passwd', policy()))).toBe('not_http');
    expect(await refusal(fetchMedia('javascript:alert(1)', policy()))).toBe('not_http');
    expect(await refusal(fetchMedia('http://127.0.0.1:9/x.png', policy()))).toBe('private_address');
    expect(await refusal(fetchMedia('http://[::1]:9/x.png', policy()))).toBe('private_address');
    expect(await refusal(fetchMedia('http://169.254.169.254/latest/meta-data/', policy()))).toBe('private_address');
    // A DNS name that resolves to a private address (one of several is enough).
    const resolve = async () => [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.7', family: 4 }];
    expect(await refusal(fetchMedia('http://rebind.example/x.png', policy({ resolve })))).toBe('private_address');
    expect(await refusal(fetchMedia('http://user:pw@example.com/x.png', policy()))).toBe('credentials');
  });

  it('fetches from a trusted host (the backend’s own), connecting to the address it checked, and sniffs the type', async () => {
    const port = await serve((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end(PNG));
    // The name resolves to loopback only through the policy's resolver: the connection goes there.
    const resolve = async () => [{ address: '127.0.0.1', family: 4 }];
    const got = await fetchMedia(`http://dify.lan:${port}/files/cat%20pic.png?sig=1`, policy({ trustedHosts: new Set(['dify.lan']), resolve }));
    expect(got).toMatchObject({ contentType: 'image/png', kind: 'image', name: 'cat_pic.png' });
    expect(got.bytes.equals(PNG)).toBe(true);
  });

  it('trusts where the backend serves its files (origin and path), never the rest of its host', async () => {
    const files = await serve((req, res) => (req.url?.startsWith('/files/') ? res.writeHead(200).end(PNG) : res.writeHead(302, { Location: `/files/../admin` }).end()));
    const other = await serve((_req, res) => res.writeHead(200).end('db_password=hunter2'));
    const p = policy({ trustedPrefixes: [`http://127.0.0.1:${files}/files/`] });
    expect((await fetchMedia(`http://127.0.0.1:${files}/files/tools/cat.png?sig=1`, p)).bytes.equals(PNG)).toBe(true);
    // Another service on the backend's machine, another path there, a path that climbs out, a redirect out.
    expect(await refusal(fetchMedia(`http://127.0.0.1:${other}/files/x.png`, p))).toBe('private_address');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${files}/v1/parameters`, p))).toBe('private_address');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${files}/files/../v1/x`, p))).toBe('private_address');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${files}/files/%2e%2e/v1/x`, p))).toBe('private_address');
    expect(await refusal(fetchMedia(`https://127.0.0.1:${files}/files/x.png`, p))).toBe('private_address');
  });

  it('checks every redirect like the first: a trusted host cannot lead into a private one', async () => {
    const port = await serve((req, res) => {
      if (req.url === '/to-metadata') res.writeHead(302, { Location: 'http://169.254.169.254/latest/' }).end();
      else if (req.url === '/to-loopback') res.writeHead(302, { Location: `http://127.0.0.2:${port}/x` }).end();
      else if (req.url === '/loop') res.writeHead(302, { Location: '/loop' }).end();
      else if (req.url === '/to-png') res.writeHead(301, { Location: '/png' }).end();
      else res.writeHead(200).end(PNG);
    });
    const p = policy({ trustedHosts: new Set(['127.0.0.1']) });
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/to-metadata`, p))).toBe('private_address');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/to-loopback`, p))).toBe('private_address');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/loop`, p))).toBe('redirects');
    expect((await fetchMedia(`http://127.0.0.1:${port}/to-png`, p)).kind).toBe('image');
  });

  it('caps the size while the body streams, declared or not, and says what a mislabelled file really is', async () => {
    const port = await serve((req, res) => {
      if (req.url === '/declared') res.writeHead(200, { 'Content-Length': '5000' }).end(Buffer.alloc(5000));
      else if (req.url === '/chunked') {
        res.writeHead(200);
        for (let i = 0; i < 10; i++) res.write(Buffer.alloc(500));
        res.end();
      } else res.writeHead(200, { 'Content-Type': 'image/png' }).end('<html><script>alert(1)</script></html>');
    });
    const p = policy({ trustedHosts: new Set(['127.0.0.1']) });
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/declared`, p))).toBe('too_large');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/chunked`, p))).toBe('too_large');
    expect(await fetchMedia(`http://127.0.0.1:${port}/fake.png`, p)).toMatchObject({ kind: 'file', contentType: 'application/octet-stream' });
  });

  it('gives up at its deadline on a server that never answers, and on HTTP errors', async () => {
    const port = await serve((req, res) => {
      if (req.url === '/missing') res.writeHead(404).end();
      // else: never answer
    });
    const p = policy({ trustedHosts: new Set(['127.0.0.1']), timeoutMs: 300 });
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/missing`, p))).toBe('http_404');
    expect(await refusal(fetchMedia(`http://127.0.0.1:${port}/hang`, p))).toBe('timeout');
  });

  it('knows the four image types by their bytes', () => {
    expect(sniffType(Buffer.from([0xff, 0xd8, 0xff, 0xe0])).contentType).toBe('image/jpeg');
    expect(sniffType(Buffer.from('GIF89a...')).contentType).toBe('image/gif');
    expect(sniffType(Buffer.from('RIFF\0\0\0\0WEBPVP8 ')).contentType).toBe('image/webp');
    expect(sniffType(Buffer.from('%PDF-1.7')).kind).toBe('file');
  });
});

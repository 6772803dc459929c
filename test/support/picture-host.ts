/**
 * A picture host on loopback for answers with pictures (docs/rich-answers.md): a PNG, a JPEG, a GIF,
 * a slow PNG and a PDF (a file, not a picture), each with random bytes after its signature, so a test
 * can tell that exactly these bytes arrived. A test sets MEDIA_ALLOW_HOSTS=127.0.0.1 (loopback is private: refused otherwise).
 */
import { randomBytes } from 'crypto';
import { createServer } from 'http';
import type { AddressInfo } from 'net';

export interface PictureHost {
  url: string;
  /** The bytes served at `/<name>` (`cat.png`, `drawn.jpg`, `anim.gif`, `slow.png`, `report.pdf`). */
  bytes: Record<'cat.png' | 'drawn.jpg' | 'anim.gif' | 'slow.png' | 'report.pdf', Buffer>;
  /** How often each path was asked. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

export async function startPictureHost(o: { slowMs?: number } = {}): Promise<PictureHost> {
  const png = () => Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), randomBytes(600)]);
  const bytes = {
    'cat.png': png(),
    'drawn.jpg': Buffer.concat([Buffer.from('ffd8ffe000104a464946', 'hex'), randomBytes(700)]),
    'anim.gif': Buffer.concat([Buffer.from('GIF89a', 'latin1'), randomBytes(300)]),
    'slow.png': png(),
    'report.pdf': Buffer.concat([Buffer.from('%PDF-1.7\n', 'latin1'), randomBytes(500)]),
  };
  const hits = new Map<string, number>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const server = createServer((req, res) => {
    const name = (req.url ?? '/').slice(1).split('?')[0] as keyof typeof bytes;
    hits.set(name, (hits.get(name) ?? 0) + 1);
    const body = bytes[name];
    if (!body) return void res.writeHead(404).end();
    const send = () => res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length }).end(body);
    if (name !== 'slow.png') return send();
    const t = setTimeout(() => {
      timers.delete(t);
      send();
    }, o.slowMs ?? 4000);
    timers.add(t);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes,
    hits,
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

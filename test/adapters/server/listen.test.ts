/**
 * Listening through several descriptors (lib/adapters/server/listen.ts), on real sockets and a real helper
 * process: every connection is served, including those the helper accepts while it holds the
 * socket, and closing stops them all.
 */
import { readdirSync, readlinkSync } from 'fs';
import { createServer, request } from 'http';
import type { AddressInfo, Socket } from 'net';
import { describe, expect, it } from 'vitest';
import { listenWide } from '../../../lib/adapters/server/listen';

/** One plain request on a fresh connection: the body, or what went wrong. */
function get(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ port, host: '127.0.0.1', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve('timeout');
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    req.end();
  });
}

/** How many of this process's descriptors point at each socket. */
function descriptorsPerSocket(): number[] {
  const counts = new Map<string, number>();
  for (const fd of readdirSync('/proc/self/fd')) {
    let target = '';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (readdir's own descriptor)
    }
    if (target.startsWith('socket:')) counts.set(target, (counts.get(target) ?? 0) + 1);
  }
  return [...counts.values()];
}

const tally = (results: string[]) => results.reduce<Record<string, number>>((t, r) => ({ ...t, [r]: (t[r] ?? 0) + 1 }), {});

describe('listening through several descriptors', () => {
  it('watches the socket through 1 + 4 descriptors, serves on them, and refuses connections once closed', async () => {
    const server = createServer((_req, res) => res.end('ok'));
    const warnings: string[] = [];
    const before = Math.max(0, ...descriptorsPerSocket());
    const listening = await listenWide(server, { port: 0, host: '127.0.0.1', backlog: 511, warn: (msg) => warnings.push(msg) });
    const port = (server.address() as AddressInfo).port;
    expect(listening.extra).toBe(4);
    expect(warnings).toEqual([]);
    expect(before).toBeLessThan(5);
    expect(Math.max(...descriptorsPerSocket())).toBe(5);
    expect(tally(await Promise.all(Array.from({ length: 300 }, () => get(port))))).toEqual({ ok: 300 });
    listening.close();
    await new Promise<void>((r) => server.close(() => r()));
    expect(await get(port)).toBe('error ECONNREFUSED');
  });

  it('gives the server every connection with the options of its own (as if it had accepted it)', async () => {
    const optionsOf = (socket: Socket) => `allowHalfOpen=${socket.allowHalfOpen} highWaterMark=${socket.writableHighWaterMark}`;
    // What a server that listens plainly gives its own sockets.
    const plain = createServer((_req, res) => res.end('ok'));
    let expected = '';
    plain.on('connection', (socket: Socket) => (expected = optionsOf(socket)));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
    expect(await get((plain.address() as AddressInfo).port)).toBe('ok');
    plain.close();

    const server = createServer((_req, res) => res.end('ok'));
    const options = new Set<string>();
    server.on('connection', (socket: Socket) => options.add(optionsOf(socket)));
    const listening = await listenWide(server, { port: 0, host: '127.0.0.1', backlog: 511 });
    const port = (server.address() as AddressInfo).port;
    expect(tally(await Promise.all(Array.from({ length: 300 }, () => get(port))))).toEqual({ ok: 300 });
    expect([...options]).toEqual([expected]);
    listening.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('serves every connection that arrives while the helper holds the socket', async () => {
    const server = createServer((_req, res) => res.end('ok'));
    const halfOpen = new Set<boolean>();
    server.on('connection', (socket: Socket) => halfOpen.add(socket.allowHalfOpen));
    const results: Promise<string>[] = [];
    let ready = false;
    // Connections every 2 ms from the moment the port opens until after the helper is done (at
    // most 400, within the accept queue and any descriptor limit, however slow the helper is).
    server.once('listening', () => {
      const port = (server.address() as AddressInfo).port;
      let after = 0;
      const round = () => {
        for (let i = 0; i < 10; i++) results.push(get(port));
        if (results.length < 400 && (!ready || ++after < 10)) setTimeout(round, 2);
      };
      round();
    });
    const listening = await listenWide(server, { port: 0, host: '127.0.0.1', backlog: 511 });
    ready = true;
    await new Promise((r) => setTimeout(r, 100));
    const all = await Promise.all(results);
    expect(all.length).toBeGreaterThan(100);
    expect(tally(all)).toEqual({ ok: all.length });
    expect(halfOpen.size).toBe(1); // the same on every descriptor, and for what the helper handed back
    listening.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('listens plainly when told to, and goes on with its own descriptor when the helper cannot run', async () => {
    const plain = createServer((_req, res) => res.end('ok'));
    const none = await listenWide(plain, { port: 0, host: '127.0.0.1', backlog: 511, extra: 0 });
    expect(none.extra).toBe(0);
    expect(await get((plain.address() as AddressInfo).port)).toBe('ok');
    plain.close();

    // A helper that never answers: the server waits no longer than it was told, then serves.
    const slow = createServer((_req, res) => res.end('ok'));
    const warnings: Record<string, unknown>[] = [];
    const alone = await listenWide(slow, { port: 0, host: '127.0.0.1', backlog: 511, helperTimeoutMs: 1, warn: (_m, f) => warnings.push(f) });
    expect(alone.extra).toBeLessThan(4);
    expect(warnings[0]).toMatchObject({ watching: 1 + alone.extra });
    expect(await get((slow.address() as AddressInfo).port)).toBe('ok');
    alone.close();
    slow.close();
  });
});

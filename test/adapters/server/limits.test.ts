/**
 * What the Node server does against connection floods and slow senders (lib/adapters/server/http.ts):
 * real sockets on loopback.
 */
import { connect } from 'net';
import type { Socket } from 'net';
import type { AddressInfo } from 'net';
import type { Server } from 'http';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpServer } from '../../../lib/adapters/server/http';
import { createLogger } from '../../../lib/util/log';
import { eventually } from '../../support/harness';

let server: Server | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function start(maxConnections: number): Promise<{ port: number; logs: string[] }> {
  const logs: string[] = [];
  server = createHttpServer({ webhook: () => undefined, logger: createLogger({ sink: (l) => logs.push(l) }), maxBodyBytes: 1024, maxConnections });
  await new Promise<void>((r) => (server as Server).listen(0, '127.0.0.1', r));
  return { port: ((server as Server).address() as AddressInfo).port, logs };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });
}

const healthz = (port: number) => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status, () => 0);

describe('connection limits', () => {
  it('closes connections past MAX_CONNECTIONS at once, says so once, and serves again when they go', async () => {
    const { port, logs } = await start(100);
    // A flood of idle connections (headers begun, never finished).
    const idle = await Promise.all(Array.from({ length: 100 }, () => open(port)));
    for (const s of idle) s.write('POST /api/v1/chat HTTP/1.1\r\nHost: x\r\n');
    const extra = await Promise.all(Array.from({ length: 20 }, () => open(port)));
    // Each one past the limit is closed by the server.
    await eventually(() => extra.every((s) => s.destroyed || s.readyState === 'closed' || s.readableEnded));
    expect(logs.filter((l) => l.includes('connections refused'))).toHaveLength(1);
    expect(idle.some((s) => s.destroyed)).toBe(false);
    for (const s of idle) s.destroy();
    await eventually(async () => (await healthz(port)) === 200);
  });

  it('bounds how long a request may take to arrive', async () => {
    await start(100);
    // Node's defaults (60 s for headers, 300 s for the whole request) let a byte every few seconds hold a connection for minutes.
    expect((server as Server).headersTimeout).toBe(15_000);
    expect((server as Server).requestTimeout).toBe(30_000);
  });
});

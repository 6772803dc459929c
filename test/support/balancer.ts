/**
 * A round-robin load balancer on loopback, for tests of several instances behind one address (a
 * rolling restart): each request goes to the next backend; a backend that refuses the connection is
 * skipped and the request tried on the next, as a balancer's health-checked pool does. A connection
 * that was open and is then closed without an answer is passed on as it is (a delivery dropped on
 * purpose, for WeChat to deliver again). New connections each time (no keep-alive), so a stopping
 * instance gets nothing new.
 */
import { createServer, request } from 'http';
import type { AddressInfo } from 'net';

export interface Balancer {
  url: string;
  /** The backends' origins (http://127.0.0.1:port), changed as instances restart. */
  backends: string[];
  /** Requests tried again on another backend. */
  retried: number;
  close(): Promise<void>;
}

export async function startBalancer(backends: string[]): Promise<Balancer> {
  const state = { backends: [...backends], next: 0, retried: 0 };
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      // This request's turn in the rotation; a retry takes the next backend from there.
      const first = state.next++;
      const attempt = (tries: number) => {
        const list = state.backends;
        if (tries >= list.length * 2 || list.length === 0) {
          res.writeHead(502).end('no backend');
          return;
        }
        const origin = list[(first + tries) % list.length] as string;
        let connected = false;
        const out = request(`${origin}${req.url ?? '/'}`, { method: req.method, headers: { ...req.headers, connection: 'close' }, agent: false }, (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          // An answer dropped on purpose (no reply: WeChat delivers again) is passed on as a drop.
          up.on('aborted', () => res.destroy());
          up.on('error', () => res.destroy());
        });
        out.on('socket', (socket) => socket.once('connect', () => (connected = true)));
        out.on('error', () => {
          if (res.headersSent || connected) return void res.destroy();
          state.retried++;
          attempt(tries + 1);
        });
        out.end(body);
      };
      attempt(0);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get backends() {
      return state.backends;
    },
    set backends(v: string[]) {
      state.backends = [...v];
    },
    get retried() {
      return state.retried;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

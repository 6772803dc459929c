/**
 * Listening so that a burst of connections is accepted as fast as it arrives (docs/capacity.md).
 *
 * libuv accepts one connection each time the loop polls a listening socket (libuv PR #3696, in
 * libuv 1.45 and later: Node 20.3 and every later release). While the loop is busy with the
 * questions already in, the rest of a burst waits in the kernel's accept queue, and WeChat's 5 s
 * run from the moment it connected.
 * So the socket is watched through several file descriptors: the loop then accepts one connection
 * per descriptor per poll. Node has no `dup()`; handing a listening socket to a child process over
 * IPC and back gives a new descriptor for it (what the cluster module does between processes). The
 * helper hands back every connection it happens to accept meanwhile, so none is lost, and exits.
 */
import { spawn } from 'child_process';
import type { Server as HttpServer } from 'http';
import type { Server, Socket } from 'net';

/**
 * Extra descriptors watched besides the server's own. In the 2,000-at-once burst (BENCHMARKS.md) the
 * last connection was seen 1.4-2.3 s in with 1 extra, 0.9-2.2 s with 4, 1.7-1.8 s with 8, against
 * 2.5-2.9 s with none: the first ones matter, more buy little.
 */
export const EXTRA_ACCEPT_WATCHERS = 4;

/**
 * The helper: return each listening socket it is given, and every connection it accepted before
 * closing its own copy; once told the last one has come and all are closed, leave.
 */
const HELPER = `
let open = 0, ending = false;
const finish = () => { if (ending && open === 0) process.disconnect(); };
process.on('message', (m, server) => {
  if (m === 'end') { ending = true; finish(); return; }
  if (m !== 'watch' || !server) return;
  open++;
  server.pauseOnConnect = true; // read nothing: the request is the server's to read
  server.on('connection', (socket) => process.send('socket', socket));
  process.send('watch', server, () => server.close(() => { open--; finish(); }));
});
`;

export interface Listening {
  /** Descriptors watched besides the server's own (0 where the helper could not run). */
  extra: number;
  /** Stop accepting on them too (the server's own socket closes with `server.close()`). */
  close(): void;
}

export interface ListenOptions {
  port: number;
  host: string;
  backlog: number;
  /** Default EXTRA_ACCEPT_WATCHERS; 0 listens plainly. */
  extra?: number;
  /** How long the helper may take before the server goes on with its own descriptor only. */
  helperTimeoutMs?: number;
  /** Told why the extra descriptors are missing, if they are. */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
}

/** `server.listen(...)`, then add the extra descriptors; resolves once the server accepts on all of them. */
export async function listenWide(server: HttpServer, opts: ListenOptions): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, opts.backlog, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const want = opts.extra ?? EXTRA_ACCEPT_WATCHERS;
  // Windows' libuv queues several accepts itself.
  if (want <= 0 || process.platform === 'win32') return { extra: 0, close: () => undefined };
  // The extra descriptors' sockets are made by a plain net.Server with its defaults (or by the
  // helper's): they get what the HTTP server sets for its own. net.Server keeps its options as
  // these fields (Node's lib/net.js); an HTTP server makes its sockets half-open and without Nagle.
  const own = server as unknown as { allowHalfOpen?: boolean; noDelay?: boolean; keepAlive?: boolean; keepAliveInitialDelay?: number };
  const adopt = (socket: Socket): Socket => {
    socket.allowHalfOpen = own.allowHalfOpen ?? true;
    socket.setNoDelay(own.noDelay ?? true);
    if (own.keepAlive) socket.setKeepAlive(true, (own.keepAliveInitialDelay ?? 0) * 1000);
    return socket;
  };
  const watchers: Server[] = [];
  const close = () => {
    for (const w of watchers.splice(0)) w.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      // No environment: the helper needs none, and must not hold the server's secrets.
      const child = spawn(process.execPath, ['-e', HELPER], { env: {}, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      const timeoutMs = opts.helperTimeoutMs ?? 5000;
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          child.kill();
          reject(err);
        } else resolve();
      };
      const timer = setTimeout(() => settle(new Error(`the helper did not answer within ${timeoutMs} ms`)), timeoutMs);
      child.on('error', settle);
      child.on('exit', (code, signal) => settle(new Error(`the helper exited (${signal ?? code}) before handing back every descriptor`)));
      // Kept until the helper leaves: a connection it accepted may come after the last descriptor.
      child.on('message', (m: unknown, handle: unknown) => {
        if (m === 'socket' && handle) {
          server.emit('connection', adopt(handle as Socket));
        } else if (m === 'watch' && handle) {
          const watcher = handle as Server;
          watcher.on('connection', (socket: Socket) => server.emit('connection', adopt(socket)));
          watcher.on('error', (err) => opts.warn?.('an extra accept descriptor failed', { message: err.message }));
          watchers.push(watcher);
          if (watchers.length === want) {
            settle();
            // It leaves by itself once its copies are closed; should it linger, it goes.
            setTimeout(() => child.kill(), timeoutMs).unref();
          }
        }
      });
      for (let i = 0; i < want; i++) child.send('watch', server);
      child.send('end');
    });
  } catch (err) {
    opts.warn?.('accepting on fewer descriptors: a burst of connections is accepted more slowly', { watching: 1 + watchers.length, message: (err as Error).message });
  }
  return { extra: watchers.length, close };
}

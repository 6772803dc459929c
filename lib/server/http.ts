/**
 * The self-hosted adapter: a node:http server that serves the handler at `/wechat` and a health
 * check at `/healthz`. Bodies over the limit are refused while they stream in.
 */
import { createServer } from 'http';
import { parse as parseQuery } from 'querystring';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import type { Handler } from '../bot/handler';
import type { Logger } from '../log';
import { errorLogFields } from '../errors';

export interface ServerOptions {
  handler: Handler;
  logger: Logger;
  maxBodyBytes: number;
  /** Extra health facts (store kind, …). */
  health?: () => Promise<Record<string, unknown>>;
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      reject(new BodyTooLarge());
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        reject(new BodyTooLarge());
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      parts.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

/** Send a response; false when the client had already gone. */
function send(res: ServerResponse, status: number, contentType: string, body: string): boolean {
  if (res.writableEnded || res.destroyed || !res.socket || res.socket.destroyed) return false;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
  return true;
}

export function createHttpServer(opts: ServerOptions): Server {
  return createServer((req, res) => {
    void (async () => {
      // Split by hand: `new URL` per request costs more than everything else in the adapter.
      const raw = req.url ?? '/';
      const qAt = raw.indexOf('?');
      const pathname = qAt === -1 ? raw : raw.slice(0, qAt);
      try {
        if (pathname === '/healthz') {
          const extra = opts.health ? await opts.health() : {};
          send(res, 200, 'application/json', JSON.stringify({ ok: true, ...extra }));
          return;
        }
        if (pathname !== '/wechat' && pathname !== '/wechat/') {
          send(res, 404, 'text/plain; charset=utf-8', 'Not Found');
          return;
        }
        let body = '';
        if (req.method === 'POST') {
          try {
            body = await readBody(req, opts.maxBodyBytes);
          } catch (err) {
            if (err instanceof BodyTooLarge) {
              res.setHeader('Connection', 'close');
              send(res, 413, 'text/plain; charset=utf-8', 'Payload Too Large');
              return;
            }
            throw err;
          }
        }
        const query = qAt === -1 ? {} : parseQuery(raw.slice(qAt + 1));
        const out = await opts.handler({ method: req.method ?? 'GET', query, body });
        if ('drop' in out) {
          res.destroy();
          return;
        }
        // WeChat hung up before the answer was ready: what this reply carried never reached it.
        if (!send(res, out.status, out.contentType, out.body)) out.undelivered?.();
      } catch (err) {
        opts.logger.error('http adapter error', errorLogFields(err));
        send(res, 500, 'text/plain; charset=utf-8', 'Internal Server Error');
      }
    })();
  });
}

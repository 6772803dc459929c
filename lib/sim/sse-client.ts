/** A Server-Sent Events client over node:http, reading events as a browser's EventSource would (tests, demo, benchmarks). */
import { request } from 'http';
import type { IncomingMessage } from 'http';

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export interface SseStream {
  status: number;
  headers: IncomingMessage['headers'];
  events: SseEvent[];
  comments: number;
  /** Resolves once an event matching `pick` has arrived (or the stream ended: rejects). */
  until(pick: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  ended: Promise<void>;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      const events: SseEvent[] = [];
      const waiters: (() => void)[] = [];
      let buffer = '';
      let comments = 0;
      let done = false;
      const ended = new Promise<void>((r) => res.on('close', () => {
        done = true;
        r();
        for (const w of waiters.splice(0)) w();
      }));
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const e: SseEvent = { event: 'message', data: '' };
          const data: string[] = [];
          let any = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments++;
            else if (line.startsWith('event: ')) {
              e.event = line.slice(7);
              any = true;
            } else if (line.startsWith('data: ')) {
              data.push(line.slice(6));
              any = true;
            }
            else if (line.startsWith('id: ')) e.id = line.slice(4);
          }
          e.data = data.join('\n');
          if (any) events.push(e);
        }
        for (const w of waiters.splice(0)) w();
      });
      const stream: SseStream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        get comments() {
          return comments;
        },
        ended,
        close: () => req.destroy(),
        until(pick, timeoutMs = 15_000) {
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error('no such event in time')), timeoutMs);
            const look = () => {
              const hit = events.find(pick);
              if (hit) {
                clearTimeout(timer);
                ok(hit);
              } else if (done) {
                clearTimeout(timer);
                fail(new Error(`stream ended; got: ${events.map((x) => x.event).join(',')}`));
              } else waiters.push(look);
            };
            look();
          });
        },
      };
      resolve(stream);
    });
    req.on('error', reject);
    req.end();
  });
}

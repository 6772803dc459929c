/**
 * What the model backends (lib/backends/dify, lib/backends/openai) share about reading a streamed HTTP response:
 * bytes → Server-Sent Events (a streaming UTF-8 decoder holds characters split across chunks,
 * eventsource-parser holds frames split anywhere), a bounded read of an error body, and calls
 * whose answer is small JSON (parameters, models, uploads, transcriptions).
 */
import { createParser } from 'eventsource-parser';
import type { EventSourceMessage } from 'eventsource-parser';
import type { Readable } from 'stream';
import { StringDecoder } from 'string_decoder';
import { call, jsonOf } from '../util/http';
import type { OutRequest } from '../util/http';

export function createSseDecoder(onMessage: (msg: EventSourceMessage) => void): { feed(chunk: Buffer | string): void; end(): void } {
  const utf8 = new StringDecoder('utf8');
  const parser = createParser({ onEvent: onMessage });
  return {
    feed(chunk) {
      parser.feed(typeof chunk === 'string' ? chunk : utf8.write(chunk));
    },
    end() {
      const rest = utf8.end();
      if (rest) parser.feed(rest);
      // A final frame without its blank line is still a frame (dispatch it).
      parser.feed('\n\n');
    },
  };
}

const MAX_ERROR_BODY = 64 * 1024;

/** The start of an error response's body (at most 64 KB: it is only read for its message). */
export async function readSmall(stream: Readable): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > MAX_ERROR_BODY) break;
    parts.push(b);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** A network failure (no HTTP response): timed out waiting, or not reachable. */
export function networkFailure(err: unknown): { timedOut: boolean; message: string } {
  const e = err as { code?: string; message?: string };
  return { timedOut: e.code === 'ETIMEDOUT', message: `${e.code ?? 'network error'}: ${e.message ?? ''}` };
}

/** How a backend names the failures of a small JSON call. */
export interface JsonCallErrors {
  network(err: unknown): Error;
  http(status: number, body: string): Error;
  /** The answer was not JSON (`what`: the call, for the message). */
  notJson(what: string): Error;
}

/**
 * One request whose answer is small JSON: a 2xx answer parsed, anything else one of the backend's
 * named errors. Never follows redirects; `what` names the call in the error.
 */
export async function jsonCall(req: OutRequest, what: string, errors: JsonCallErrors): Promise<Record<string, unknown>> {
  let res;
  try {
    res = await call(req);
  } catch (err) {
    throw errors.network(err);
  }
  if (res.status < 200 || res.status >= 300) throw errors.http(res.status, res.body.toString('utf8'));
  const v = jsonOf(res.body);
  if (v === undefined) throw errors.notJson(what);
  return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
}

/** How a backend names what can go wrong while its answer streams in. */
export interface StreamErrors {
  /** Nothing arrived for `idleTimeoutMs`. */
  idle(ms: number): Error;
  /** The decoder refused what arrived (a malformed event; a backend error event passes through as it is). */
  bad(err: unknown): Error;
  /** The connection broke or closed before the answer was complete. */
  cut(message: string, cause?: unknown): Error;
  /** The stream ended cleanly without the answer's last event. */
  incomplete(): Error;
}

export interface TimedStreamOptions<T> {
  /** Fail after this long without a byte (pings count). */
  idleTimeoutMs: number;
  /** The decoder (lib/backends/stream.ts `createSseDecoder` under the backend's event handling). */
  decoder: { feed(chunk: Buffer): void; end(): void };
  /** Has the answer's last event come? Checked after every chunk. */
  complete(): boolean;
  /** The answer, once there is one (also at a clean end without `complete`, where a backend accepts that). */
  result(): T | undefined;
  /** Every chunk: the call is alive. */
  onActivity?: (() => void) | undefined;
  /** After completion keep reading the tail this long (a Dify chatflow's last events), then close; 0: close at once. */
  drainMs: number;
  errors: StreamErrors;
}

/**
 * Read one streamed answer to its end, whichever backend writes it: an idle timer reset by every
 * chunk, the decoder fed as bytes come, the answer resolved on its last event, and every way a
 * stream fails (a cut, an early close, a clean end too soon, a malformed event, silence) turned into
 * the backend's own named error. `abort(err)` ends it at any time (the overall timeout, a stop).
 */
export function readTimedStream<T>(stream: Readable, o: TimedStreamOptions<T>): { answer: Promise<T>; abort(err: Error): void; finishNow(): void } {
  let abort: (err: Error | undefined) => void = () => undefined;
  const answer = new Promise<T>((resolve, reject) => {
    let settled = false;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      const result = err ? undefined : o.result();
      if (err || result === undefined) {
        stream.destroy();
        reject(err ?? o.errors.incomplete());
        return;
      }
      if (o.drainMs > 0) {
        // Keep reading the tail, but never wait for ever for an EOF that may not come.
        const drain = setTimeout(() => stream.destroy(), o.drainMs);
        drain.unref?.();
        stream.once('close', () => clearTimeout(drain));
      } else {
        stream.destroy();
      }
      resolve(result);
    };
    abort = finish;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => finish(o.errors.idle(o.idleTimeoutMs)), o.idleTimeoutMs);
    };
    armIdle();
    stream.on('data', (chunk: Buffer) => {
      if (settled) return;
      armIdle();
      o.onActivity?.();
      try {
        o.decoder.feed(chunk);
      } catch (err) {
        finish(o.errors.bad(err));
        return;
      }
      if (o.complete()) finish(undefined);
    });
    stream.on('end', () => {
      if (settled) return;
      try {
        o.decoder.end();
      } catch (err) {
        finish(o.errors.bad(err));
        return;
      }
      finish(undefined);
    });
    stream.on('error', (err) => finish(o.errors.cut(`the stream broke: ${err.message}`, err)));
    stream.on('close', () => finish(o.result() === undefined ? o.errors.cut('the stream closed early') : undefined));
  });
  // Resolve with what is there now (a backend that waited a little for a trailing event).
  return { answer, abort: (err) => abort(err), finishNow: () => abort(undefined) };
}

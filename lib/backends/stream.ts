/**
 * What both model clients (lib/backends/dify, lib/backends/openai) share about reading a streamed HTTP response:
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

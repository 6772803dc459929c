/**
 * Dify Service API client (docs/dify.md): streams `chat-messages` with axios and
 * decodes it with `createDifyDecoder`. The generating POST is never re-sent by this module;
 * recovery (new conversation on 404) is the caller's decision.
 */
import axios from 'axios';
import type { AxiosInstance, CancelTokenSource } from 'axios';
import type { Readable } from 'stream';
import { networkFailure, readSmall } from '../sse';
import { DifyError, classifyDifyHttp } from '../errors';
import type { Answerer, AnswerRequest, ChatHooks } from '../answerer';
import { AnswerBuilder, createDifyDecoder } from './events';
import type { DifyAnswer } from './events';

export type { ChatHooks, StopSignal } from '../answerer';

/** The Dify answerer: conversations live at Dify, keyed by the id we keep per user. */
export type DifyClient = Answerer;

export interface DifyClientOptions {
  baseUrl: string;
  apiKey: string;
  /** Fail after this long without a byte from Dify (pings arrive every 10 s). */
  idleTimeoutMs: number;
  /** Fail after this long in all, however lively the stream (a stream of pings only never ends). */
  answerTimeoutMs?: number;
  /** Injected HTTP client; a fresh axios instance by default. */
  http?: AxiosInstance;
  /** After `message_end`, keep reading the tail (workflow_finished) at most this long. */
  drainMs?: number;
}


function httpError(status: number, body: string): DifyError {
  let code = '';
  let message = body.slice(0, 200);
  try {
    const parsed = JSON.parse(body) as { code?: unknown; message?: unknown };
    code = typeof parsed.code === 'string' ? parsed.code : '';
    message = typeof parsed.message === 'string' ? parsed.message : message;
  } catch {
    // not JSON (a proxy's error page): keep the text
  }
  return new DifyError(classifyDifyHttp(status, code), `dify_http_${status}`, message || `HTTP ${status}`, { status, backendCode: code });
}

function networkError(err: unknown): DifyError {
  const { timedOut, message } = networkFailure(err);
  return new DifyError('down', timedOut ? 'dify_timeout' : 'dify_unreachable', message, { cause: err });
}

const badStream = (err: unknown) => (err instanceof DifyError ? err : new DifyError('failed', 'dify_bad_stream', String(err), { cause: err }));

/**
 * Read one `chat-messages` SSE body to its `message_end`. Resolves with the answer, or rejects
 * with a `DifyError` on an error event, a cut or incomplete stream, silence longer than
 * `idleTimeoutMs`, or `abort(err)` (the caller's overall timeout or stop).
 */
export function readAnswerStream(
  stream: Readable,
  opts: { idleTimeoutMs: number; drainMs: number; hooks: ChatHooks },
): { answer: Promise<DifyAnswer>; abort(err: DifyError): void; taskId(): string | undefined } {
  const { hooks } = opts;
  let abort: (err: DifyError) => void = () => undefined;
  let taskId: string | undefined;
  const answer = new Promise<DifyAnswer>((resolve, reject) => {
    const builder = new AnswerBuilder();
    let settled = false;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const finish = (err: DifyError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      if (err) {
        stream.destroy();
        reject(err);
        return;
      }
      // Resolved on message_end; keep reading the tail so a Chatflow run is not cut (docs/dify.md),
      // but never wait forever for an EOF that may not come.
      const drain = setTimeout(() => stream.destroy(), opts.drainMs);
      drain.unref?.();
      stream.once('close', () => clearTimeout(drain));
      resolve(builder.done as DifyAnswer);
    };
    abort = finish;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => finish(new DifyError('down', 'dify_idle_timeout', `no data from Dify for ${opts.idleTimeoutMs} ms`)), opts.idleTimeoutMs);
    };
    const decoder = createDifyDecoder((e) => {
      if (settled) return;
      if (typeof e['task_id'] === 'string') taskId = e['task_id'];
      builder.apply(e);
      if (e.event !== 'message_end') hooks.onText?.(builder.text);
    });
    armIdle();
    stream.on('data', (chunk: Buffer) => {
      if (settled) return;
      armIdle();
      hooks.onActivity?.();
      try {
        decoder.feed(chunk);
      } catch (err) {
        finish(badStream(err));
        return;
      }
      if (builder.done) finish(undefined);
    });
    stream.on('end', () => {
      if (settled) return;
      try {
        decoder.end();
      } catch (err) {
        finish(badStream(err));
        return;
      }
      finish(builder.done ? undefined : new DifyError('failed', 'dify_stream_incomplete', 'the stream ended without message_end'));
    });
    stream.on('error', (err) => finish(new DifyError('failed', 'dify_stream_cut', `the stream broke: ${err.message}`, { cause: err })));
    stream.on('close', () => finish(builder.done ? undefined : new DifyError('failed', 'dify_stream_cut', 'the stream closed early')));
  });
  return { answer, abort: (err) => abort(err), taskId: () => taskId };
}

export function createDifyClient(opts: DifyClientOptions): DifyClient {
  const http = opts.http ?? axios.create();
  const headers = { Authorization: `Bearer ${opts.apiKey}`, 'Content-Type': 'application/json' };
  const drainMs = opts.drainMs ?? 30_000;
  const answerTimeoutMs = opts.answerTimeoutMs ?? 300_000;

  async function request(req: AnswerRequest, cancel: CancelTokenSource, why: () => DifyError | undefined): Promise<Readable> {
    let res;
    try {
      res = await http.post<Readable>(
        `${opts.baseUrl}/chat-messages`,
        {
          inputs: {},
          query: req.query,
          response_mode: 'streaming',
          user: req.user,
          conversation_id: req.conversationId ?? '',
          auto_generate_name: true,
        },
        // `timeout` bounds the wait for response headers; the body has its own idle timer.
        { headers, responseType: 'stream', validateStatus: () => true, timeout: opts.idleTimeoutMs, maxRedirects: 0, cancelToken: cancel.token },
      );
    } catch (err) {
      throw (axios.isCancel(err) && why()) || networkError(err);
    }
    const stream = res.data;
    if (res.status !== 200) throw httpError(res.status, await readSmall(stream).catch(() => ''));
    return stream;
  }

  return {
    kind: 'dify',
    keepsConversation: true,
    async chat(req, hooks = {}) {
      // One deadline and one stop for the whole call: headers and body alike. axios's CancelToken
      // rather than AbortController, which laf's function sandbox does not provide (docs/laf.md).
      const cancel = axios.CancelToken.source();
      let reader: ReturnType<typeof readAnswerStream> | undefined;
      let ended: DifyError | undefined;
      const end = (err: DifyError) => {
        if (ended) return;
        ended = err;
        if (reader) reader.abort(err);
        else cancel.cancel(err.code);
      };
      const overall = setTimeout(
        () => end(new DifyError('failed', 'dify_answer_timeout', `no complete answer from Dify within ${answerTimeoutMs} ms`)),
        answerTimeoutMs,
      );
      const stopNow = () => {
        const task = reader?.taskId();
        end(new DifyError('failed', 'dify_stopped', 'the question no longer needs an answer'));
        // Tell Dify too: a run whose stream is merely cut may stay "running" (docs/dify.md). Best effort.
        if (task) {
          void http
            .post(`${opts.baseUrl}/chat-messages/${encodeURIComponent(task)}/stop`, { user: req.user }, { headers, validateStatus: () => true, timeout: opts.idleTimeoutMs })
            .catch(() => undefined);
        }
      };
      hooks.stop?.onStop(stopNow);
      try {
        const stream = await request(req, cancel, () => ended);
        if (ended) {
          stream.destroy();
          throw ended;
        }
        reader = readAnswerStream(stream, { idleTimeoutMs: opts.idleTimeoutMs, drainMs, hooks });
        return await reader.answer;
      } finally {
        clearTimeout(overall);
      }
    },

    async probe() {
      // GET /parameters: authenticated by the app key, answered without running the app (docs/dify.md).
      let res;
      try {
        res = await http.get(`${opts.baseUrl}/parameters`, { headers, validateStatus: () => true, timeout: opts.idleTimeoutMs, maxRedirects: 0, responseType: 'text' });
      } catch (err) {
        throw networkError(err);
      }
      if (res.status !== 200) throw httpError(res.status, String(res.data ?? ''));
      let inputs = 0;
      try {
        const form = (JSON.parse(String(res.data)) as { user_input_form?: unknown }).user_input_form;
        inputs = Array.isArray(form) ? form.length : 0;
      } catch {
        throw new DifyError('failed', 'dify_bad_response', 'GET /parameters did not answer JSON');
      }
      return `app reachable, key accepted, ${inputs} input variable${inputs === 1 ? '' : 's'}`;
    },

    async deleteConversation(conversationId, user) {
      let res;
      try {
        res = await http.delete(`${opts.baseUrl}/conversations/${encodeURIComponent(conversationId)}`, {
          headers,
          data: { user },
          validateStatus: () => true,
          timeout: opts.idleTimeoutMs,
        });
      } catch (err) {
        throw networkError(err);
      }
      if (res.status >= 300 && res.status !== 404) throw httpError(res.status, typeof res.data === 'string' ? res.data : JSON.stringify(res.data ?? ''));
    },
  };
}

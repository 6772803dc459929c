/**
 * Dify Service API client (docs/dify.md): streams `chat-messages` (lib/util/http.ts) and
 * decodes it with `createDifyDecoder`. The generating POST is never re-sent by this module;
 * recovery (new conversation on 404) is the caller's decision.
 */
import { call, open } from '../../util/http';
import type { Readable } from 'stream';
import { jsonCall, networkFailure, readSmall, readTimedStream } from '../stream';
import { DifyError, classifyDifyHttp } from '../../errors';
import type { Answerer, AnswerRequest, ChatHooks, ImageInput } from '../../core/answerer';
import { multipart } from '../../util/multipart';
import { fillInputs, missingInputs, takesImages } from './inputs';
import { AnswerBuilder, createDifyDecoder } from './events';
import type { DifyAnswer } from './events';

export type { ChatHooks, StopSignal } from '../../core/answerer';

/** The Dify answerer: conversations live at Dify, keyed by the id we keep per user. */
export type DifyClient = Answerer;

export interface DifyClientOptions {
  baseUrl: string;
  apiKey: string;
  /** Fail after this long without a byte from Dify (pings arrive every 10 s). */
  idleTimeoutMs: number;
  /** Fail after this long in all, however lively the stream (a stream of pings only never ends). */
  answerTimeoutMs?: number;
  /** After `message_end`, keep reading the tail (workflow_finished) at most this long. */
  drainMs?: number;
  /** DIFY_INPUTS: filled from each question's facts, and checked against the app's required inputs at start. */
  inputsTemplate?: Readonly<Record<string, unknown>>;
  /** DIFY_IMAGE_UPLOAD (lib/backends/dify/settings.ts). */
  imageUpload?: 'auto' | 'remote_url' | 'local_file';
}

/** How long a chatflow's answer waits after `message_end` for its `workflow_finished` (which lists the workflow's files). */
const WORKFLOW_TAIL_MS = 1500;

/** The file name Dify is given for an upload: the extension tells it the type. */
const EXTENSIONS: Record<string, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/gif': 'gif', 'image/webp': 'webp' };


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
 * Read one `chat-messages` SSE body to its `message_end` (lib/backends/stream.ts `readTimedStream`).
 * Resolves with the answer, or rejects with a `DifyError` on an error event, a cut or incomplete
 * stream, silence longer than `idleTimeoutMs`, or `abort(err)` (the caller's overall timeout or stop).
 */
export function readAnswerStream(
  stream: Readable,
  opts: { idleTimeoutMs: number; drainMs: number; hooks: ChatHooks },
): { answer: Promise<DifyAnswer>; abort(err: DifyError): void; taskId(): string | undefined } {
  const { hooks } = opts;
  const builder = new AnswerBuilder();
  let taskId: string | undefined;
  let ended = false;
  const decoder = createDifyDecoder((e) => {
    if (ended) return;
    if (typeof e['task_id'] === 'string') taskId = e['task_id'];
    builder.apply(e);
    if (e.event !== 'message_end') hooks.onText?.(builder.text);
  });
  // A chatflow's files come in `workflow_finished`, after `message_end`: wait a little for it, never
  // long (it sometimes never comes: docs/dify.md).
  let waitingForWorkflow: ReturnType<typeof setTimeout> | undefined;
  const complete = () => {
    if (builder.done === undefined) return false;
    if (!builder.inWorkflow || builder.workflowFinished) return true;
    waitingForWorkflow ??= setTimeout(() => reading.finishNow(), WORKFLOW_TAIL_MS);
    return false;
  };
  const reading = readTimedStream<DifyAnswer>(stream, {
    idleTimeoutMs: opts.idleTimeoutMs,
    decoder,
    complete,
    result: () => builder.done,
    onActivity: hooks.onActivity,
    // Resolved on message_end; the tail is read on, so a Chatflow run is not cut (docs/dify.md).
    drainMs: opts.drainMs,
    errors: {
      idle: (ms) => new DifyError('down', 'dify_idle_timeout', `no data from Dify for ${ms} ms`),
      bad: badStream,
      cut: (message, cause) => new DifyError('failed', 'dify_stream_cut', message, { cause }),
      incomplete: () => new DifyError('failed', 'dify_stream_incomplete', 'the stream ended without message_end'),
    },
  });
  void reading.answer.then(
    () => (ended = true),
    () => (ended = true),
  ).finally(() => clearTimeout(waitingForWorkflow));
  return { answer: reading.answer, abort: (err) => reading.abort(err), taskId: () => taskId };
}

export function createDifyClient(opts: DifyClientOptions): DifyClient {
  const headers = { Authorization: `Bearer ${opts.apiKey}`, 'Content-Type': 'application/json' };
  const drainMs = opts.drainMs ?? 30_000;
  const answerTimeoutMs = opts.answerTimeoutMs ?? 300_000;

  const named = { network: networkError, http: httpError, notJson: (what: string) => new DifyError('failed', 'dify_bad_response', `${what} did not answer JSON`) };

  /** A multipart POST (uploads): the parsed JSON answer, or the named error. */
  function upload(path: string, fields: Record<string, string>, file: Parameters<typeof multipart>[1]): Promise<Record<string, unknown>> {
    const { body, contentType } = multipart(fields, file);
    const req = { method: 'POST', url: `${opts.baseUrl}${path}`, body, headers: { Authorization: headers.Authorization, 'Content-Type': contentType }, timeoutMs: opts.idleTimeoutMs };
    return jsonCall(req, path, named);
  }

  /** `files` for a question: a PicUrl as `remote_url`, downloaded bytes uploaded first (`local_file`). */
  async function filesFor(images: readonly ImageInput[], user: string): Promise<Record<string, string>[]> {
    const files: Record<string, string>[] = [];
    for (const img of images) {
      if ('url' in img) {
        files.push({ type: 'image', transfer_method: 'remote_url', url: img.url });
        continue;
      }
      const ext = EXTENSIONS[img.contentType] ?? 'jpg';
      const up = await upload('/files/upload', { user }, { name: 'file', filename: `wechat.${ext}`, contentType: img.contentType, bytes: img.bytes });
      if (typeof up['id'] !== 'string') throw new DifyError('failed', 'dify_bad_response', '/files/upload answered no id');
      files.push({ type: 'image', transfer_method: 'local_file', upload_file_id: up['id'] });
    }
    return files;
  }

  // GET /parameters, read once (and again after a failure): the app's inputs and whether it takes images.
  let parameters: Promise<unknown> | undefined;
  function appParameters(): Promise<unknown> {
    if (!parameters) {
      const p = jsonCall({ method: 'GET', url: `${opts.baseUrl}/parameters`, headers, timeoutMs: opts.idleTimeoutMs }, 'GET /parameters', named);
      parameters = p;
      p.catch(() => {
        if (parameters === p) parameters = undefined;
      });
    }
    return parameters;
  }

  /** The streaming POST: resolves with the event stream once Dify answers 200; `started` gets the call's cancel. */
  async function request(req: AnswerRequest, started: (cancel: (err: Error) => void) => void): Promise<Readable> {
    const files = req.images && req.images.length > 0 ? await filesFor(req.images, req.user) : undefined;
    const template = opts.inputsTemplate ?? {};
    const inputs = Object.keys(template).length > 0 ? fillInputs(template, { openid: req.user, msgType: 'text', eventKey: '', scene: '', now: new Date().toISOString(), ...req.facts }) : {};
    const body = {
      inputs,
      query: req.query,
      response_mode: 'streaming',
      user: req.user,
      conversation_id: req.conversationId ?? '',
      // A generated conversation name costs a model call per conversation, and nobody sees it here.
      auto_generate_name: false,
      ...(files ? { files } : {}),
    };
    // `timeoutMs` bounds the wait for the answer's head; the body has its own idle timer.
    const pending = open({ method: 'POST', url: `${opts.baseUrl}/chat-messages`, headers, body, timeoutMs: opts.idleTimeoutMs });
    started(pending.cancel);
    let res;
    try {
      res = await pending.response;
    } catch (err) {
      throw err instanceof DifyError ? err : networkError(err);
    }
    if (res.status !== 200) throw httpError(res.status, await readSmall(res.body).catch(() => ''));
    return res.body;
  }

  /** One streamed answer for `req`, as Dify gives it. */
  async function ask(req: AnswerRequest, hooks: ChatHooks): Promise<DifyAnswer> {
    // One deadline and one stop for the whole call: headers and body alike.
    let cancel: ((err: Error) => void) | undefined;
    let reader: ReturnType<typeof readAnswerStream> | undefined;
    let ended: DifyError | undefined;
    const end = (err: DifyError) => {
      if (ended) return;
      ended = err;
      if (reader) reader.abort(err);
      else cancel?.(err);
    };
    const overall = setTimeout(
      () => end(new DifyError('failed', 'dify_answer_timeout', `no complete answer from Dify within ${answerTimeoutMs} ms`)),
      answerTimeoutMs,
    );
    let finished = false;
    const stopNow = () => {
      // A stop that comes after the answer is complete has nothing to stop (and must not tell Dify to).
      if (finished) return;
      const task = reader?.taskId();
      end(new DifyError('failed', 'dify_stopped', 'the question no longer needs an answer'));
      // Tell Dify too: a run whose stream is merely cut may stay "running" (docs/dify.md). Best effort.
      if (task) {
        void call({ method: 'POST', url: `${opts.baseUrl}/chat-messages/${encodeURIComponent(task)}/stop`, headers, body: { user: req.user }, timeoutMs: opts.idleTimeoutMs }).catch(() => undefined);
      }
    };
    hooks.stop?.onStop(stopNow);
    try {
      const stream = await request(req, (c) => {
        cancel = c;
        if (ended) c(ended);
      });
      if (ended) {
        stream.destroy();
        throw ended;
      }
      reader = readAnswerStream(stream, { idleTimeoutMs: opts.idleTimeoutMs, drainMs, hooks });
      return await reader.answer;
    } finally {
      finished = true;
      clearTimeout(overall);
    }
  }

  return {
    kind: 'dify',
    endpoint: opts.baseUrl,
    // Dify serves its files at /files/ of its origin (docs/dify.md); nothing else there is fetched for an answer.
    filesUrl: new URL('/files/', opts.baseUrl).href,
    keepsConversation: true,
    transcribes: true,
    async chat(req, hooks = {}) {
      // A self-hosted Dify without FILES_URL links its files relative to itself (docs/dify.md).
      const absolute = (a: DifyAnswer): DifyAnswer => ({ ...a, files: a.files.flatMap((f) => {
        try {
          return [{ ...f, url: new URL(f.url, opts.baseUrl).href }];
        } catch {
          return [];
        }
      }) });
      try {
        return absolute(await ask(req, hooks));
      } catch (err) {
        // 404 "Conversation Not Exists." (or a finished conversation) comes before any stream byte,
        // so asking again in a new conversation is safe (docs/dify.md).
        if (!(err instanceof DifyError && err.conversationGone && req.conversationId) || hooks.stop?.stopped) throw err;
        await req.onConversationGone?.();
        return absolute(await ask({ ...req, conversationId: undefined }, hooks));
      }
    },

    async probe() {
      // GET /parameters: authenticated by the app key, answered without running the app (docs/dify.md).
      // Read afresh here: the health view must not report a cached answer.
      parameters = undefined;
      const form = ((await appParameters()) as { user_input_form?: unknown } | null)?.user_input_form;
      const inputs = Array.isArray(form) ? form.length : 0;
      const missing = missingInputs(await appParameters(), opts.inputsTemplate ?? {});
      return `app reachable, key accepted, ${inputs} input variable${inputs === 1 ? '' : 's'}${missing.length ? `; DIFY_INPUTS lacks required ${missing.join(', ')}` : ''}`;
    },

    async imageInput() {
      if (!takesImages(await appParameters())) return 'none';
      return opts.imageUpload === 'remote_url' ? 'url' : 'bytes';
    },

    async transcribe(audio, user) {
      const out = await upload('/audio-to-text', { user }, { name: 'file', ...audio });
      if (typeof out['text'] !== 'string') throw new DifyError('failed', 'dify_bad_response', '/audio-to-text answered no text');
      return out['text'];
    },

    async setupProblems() {
      const missing = missingInputs(await appParameters(), opts.inputsTemplate ?? {});
      return missing.length === 0
        ? []
        : [`the Dify app requires the input${missing.length === 1 ? '' : 's'} ${missing.join(', ')}, which DIFY_INPUTS does not set: every question would fail with 400; set DIFY_INPUTS, e.g. {"${(missing[0] as string).split(' ')[0]}": "…"}`];
    },

    async deleteConversation(conversationId, user) {
      let res;
      try {
        res = await call({ method: 'DELETE', url: `${opts.baseUrl}/conversations/${encodeURIComponent(conversationId)}`, headers, body: { user }, timeoutMs: opts.idleTimeoutMs });
      } catch (err) {
        throw networkError(err);
      }
      if (res.status >= 300 && res.status !== 404) throw httpError(res.status, res.body.toString('utf8'));
    },
  };
}

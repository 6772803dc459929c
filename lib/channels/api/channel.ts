/**
 * The HTTP API (docs/api.md): `POST /api/v1/chat` (JSON or Server-Sent Events), `DELETE
 * /api/v1/conversations/<user>`, `GET /api/v1/openapi.json`, and the OpenAI-compatible
 * `POST /v1/chat/completions` and `GET /v1/models`, on the same keys. One channel kind: a request is
 * one message to the core (`Bot.receive`), keyed on its Idempotency-Key when it has one, so copies
 * of a request claim once and ask the model once. The request itself reads the answer: it waits for
 * it (JSON) or streams it as it is written (lib/core/follow.ts), then marks it delivered. The store
 * keeps the answer whatever happens to the connection; a client that leaves without an
 * Idempotency-Key can never ask for it again, so its question is cancelled and the model call stops.
 */
import { createHash, randomBytes } from 'crypto';
import type { Channel, ChannelDeps, ChannelKind, StreamSink, WebhookRequest, WebhookResponse } from '../../core/channel';
import { followAnswer } from '../../core/follow';
import { conversationKey } from '../../core/keys';
import { LiveAnswers } from '../../core/live';
import { fill } from '../../text/fill';
import { RequestError, errorLogFields, failureText } from '../../errors';
import type { MessageRecord } from '../../store';
import { quote } from '../../text/quote';
import { version } from '../../../package.json';
import type { ApiKey } from './keys';
import { findKey } from './keys';
import type { FinishReason, Usage } from './openai';
import { MAX_QUESTION_CHARS, checkUser, chunk, completion, failureStatus, modelObject, openaiError, parseCompletionRequest, usageChunk, usageOf } from './openai';
import type { CompletionRequest } from './openai';

/** A place among API_MAX_STREAMS (`takeSlot`). */
interface Slot {
  /** Handed on to `follow`, which frees it; otherwise the request frees it when it returns. */
  kept: boolean;
  free(): void;
}
import { openApiDocument } from './openapi';
import type { ApiSettings } from './settings';
import { API_VARIABLES, apiSettings } from './settings';
import { floodGuard } from '../../util/log';

/** How often a follower reads the store (news from other instances); this process's own news comes at once. */
const POLL_MS = 1000;
/** SSE comments keep proxies from closing a quiet stream. */
const HEARTBEAT_MS = 15_000;
/** A request waits at most this long for its answer (the `openai` SDK's own timeout is 10 minutes). */
export const MAX_WAIT_MS = 10 * 60_000;
/** Requests following one answer at once (copies of a request racing, a few retries). */
const PER_ANSWER = 4;
/** A client this far behind is dropped. */
const MAX_QUEUED_BYTES = 1 << 20;

const BASE_HEADERS: Readonly<Record<string, string>> = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
const SSE_HEADERS: Readonly<Record<string, string>> = { ...BASE_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' };

type Dialect = 'native' | 'openai';
type Response = Exclude<WebhookResponse, { drop: true }>;

/** What a request got from the core. */
type Asked = { reply: string } | { queued: MessageRecord } | { refused: Response };

/** The last part of an answer, as the request writes it. */
type Settled = { ok: true; text: string; finish: FinishReason; usage: Usage | undefined } | { ok: false; status: number; code: string; type: string; message: string };

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

export function createApiChannel(settings: ApiSettings, deps: ChannelDeps): Channel {
  const { config, bot, store, clock, logger, instance } = deps;
  // Lines anyone can cause by sending bad requests: bounded, so a flood cannot flood the log.
  const refusals = floodGuard(logger);
  const live = deps.live ?? new LiveAnswers();
  const texts = config.texts;
  let open = 0;
  const perAnswer = new Map<string, number>();

  // ---- responses

  function cors(origin: string | undefined): Record<string, string> {
    const allowed = settings.corsOrigins;
    if (!origin || allowed.length === 0) return {};
    if (allowed.includes('*')) return { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Retry-After' };
    return allowed.includes(origin) ? { 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': 'Retry-After', Vary: 'Origin' } : { Vary: 'Origin' };
  }

  const json = (status: number, value: unknown, headers: Record<string, string> = {}): Response => ({
    status,
    contentType: 'application/json; charset=utf-8',
    body: JSON.stringify(value),
    headers: { ...BASE_HEADERS, ...headers },
  });

  /** An error in the endpoint's own shape. */
  function fail(dialect: Dialect, status: number, code: string, message: string, type = 'invalid_request_error', headers: Record<string, string> = {}): Response {
    return json(status, dialect === 'openai' ? openaiError(message, type, code) : { error: { code, message } }, headers);
  }

  const unauthorized = (dialect: Dialect) =>
    fail(dialect, 401, 'invalid_api_key', 'Incorrect API key provided.', 'invalid_request_error', { 'WWW-Authenticate': 'Bearer' });

  function tooMany(dialect: Dialect, until: number, message: string): Response {
    const seconds = Math.max(1, Math.ceil((until - clock.now()) / 1000));
    return fail(dialect, 429, 'rate_limit_exceeded', message, 'requests', { 'Retry-After': String(seconds) });
  }

  const busy = (dialect: Dialect) => fail(dialect, 503, 'too_many_streams', 'Too many answers are being streamed right now; try again shortly.', 'server_error', { 'Retry-After': '5' });
  // Copies of one request (its Idempotency-Key) beyond PER_ANSWER: that answer, not the server, is busy.
  const crowded = (dialect: Dialect) => fail(dialect, 503, 'too_many_copies', 'Too many copies of this request (its Idempotency-Key) are waiting for the same answer; try again once it is done.', 'server_error', { 'Retry-After': '5' });

  // ---- asking

  /** Per key, all its users together (API_RATE_LIMIT); once per request, whatever its copies. */
  async function keyLimit(key: ApiKey, messageKey: string, now: number): Promise<number | undefined> {
    if (settings.rateLimits.length === 0) return undefined;
    const offset = config.store.statsUtcOffsetMin * 60_000;
    const id = sha(`${deps.name}/${key.name}`).slice(0, 32);
    const windows = settings.rateLimits.map((w) => {
      const index = Math.floor((now + offset) / w.windowMs);
      return { id: `apikey:${id}:${w.unit}:${index}`, limit: w.count, until: (index + 1) * w.windowMs - offset };
    });
    const verdict = await store.admit(`apikey:${messageKey}`, windows, now);
    return verdict.ok ? undefined : verdict.until;
  }

  /** The Idempotency-Key, if the request has a usable one; a `RequestError` if it has a bad one. */
  function idempotencyKey(req: WebhookRequest): string | undefined {
    const v = req.headers['idempotency-key'];
    if (v === undefined) return undefined;
    if (!/^[\x20-\x7e]{1,255}$/.test(v)) throw new RequestError('bad_idempotency_key', 'Idempotency-Key must be 1-255 printable ASCII characters.');
    return v;
  }

  /** The message key of one request: its Idempotency-Key's, else its own. */
  const messageKeyOf = (userKey: string, kind: 'q' | 'c', idem: string | undefined) =>
    `${userKey}:${kind}${idem ? `i${sha(idem).slice(0, 32)}` : `r${randomBytes(12).toString('hex')}`}`;

  async function ask(dialect: Dialect, key: ApiKey, user: string, text: string, idem: string | undefined, newConversation: boolean): Promise<Asked & { key: string }> {
    const arrival = clock.now();
    const userKey = conversationKey('api', instance, [key.name, user]);
    const messageKey = messageKeyOf(userKey, 'q', idem);
    const until = await keyLimit(key, messageKey, arrival);
    if (until !== undefined) {
      refusals.info('API request refused: over the key’s limit', { key: key.name });
      return { key: messageKey, refused: tooMany(dialect, until, 'Rate limit reached for this API key.') };
    }
    const decision = await bot.receive({ channel, user: userKey, key: messageKey, sentAt: Math.floor(arrival / 1000), arrival, content: { type: 'text', text }, newConversation });
    if ('reply' in decision) {
      if (decision.limited) return { key: messageKey, refused: tooMany(dialect, decision.limited.until, decision.reply) };
      return { key: messageKey, reply: decision.reply };
    }
    if ('queued' in decision) {
      const q = decision.queued;
      if (!decision.first && q.question !== undefined && q.question !== text) {
        return { key: messageKey, refused: fail(dialect, 422, 'idempotency_key_reused', 'This Idempotency-Key was used for another question.') };
      }
      return { key: messageKey, queued: q };
    }
    return { key: messageKey, reply: '' };
  }

  /** What a settled (or cleared) question comes to, for the request. */
  function settledOf(q: MessageRecord): Settled {
    if (q.status === 'answered') {
      const text = q.answer ?? '';
      return { ok: true, text, finish: text === texts.answerBlocked ? 'content_filter' : 'stop', usage: usageOf(q.usage) };
    }
    if (q.status === 'failed') {
      const kind = q.failure?.kind ?? 'failed';
      return { ok: false, ...failureStatus(kind), message: failureText(kind, texts, q.failure?.note) };
    }
    return { ok: false, status: 409, code: 'question_cleared', type: 'invalid_request_error', message: fill(texts.questionCleared, { question: quote(q.question ?? ''), seconds: 0 }) };
  }

  const timedOut = (idem: string | undefined): Settled => ({
    ok: false,
    status: 504,
    code: 'timeout',
    type: 'server_error',
    message: idem ? 'The answer is still being written: ask again with the same Idempotency-Key to get it.' : 'No answer in time.',
  });

  /** The request has written this answer: it is delivered (counted as `api`), once, whichever copy wrote it. */
  function delivered(q: MessageRecord): void {
    void store.takeAll(q, 'api', 'api', clock.now()).catch((err) => logger.warn('could not mark an API answer delivered', { key: q._id, ...errorLogFields(err) }));
  }

  /** The client left before the answer was written: without an Idempotency-Key nobody can ask for it again. */
  function abandoned(key: string, idem: string | undefined): void {
    if (idem) return;
    void store
      .cancelQuestion(key, clock.now())
      .then((q) => q && logger.info('API client left: question cancelled', { key }))
      .catch((err) => logger.warn('could not cancel an abandoned API question', { key, ...errorLogFields(err) }));
  }

  /**
   * A place among API_MAX_STREAMS, taken before the model is asked (so that requests arriving together
   * cannot all pass the count before any is counted) and freed once: by the request that did not keep
   * it (`kept`), or by `follow` when it stops following.
   */
  function takeSlot(): Slot | undefined {
    if (open >= settings.maxStreams) return undefined;
    open++;
    let held = true;
    return {
      kept: false,
      free: () => {
        if (!held) return;
        held = false;
        open--;
      },
    };
  }

  /**
   * Follow pending question `q` until it settles, is cleared, or MAX_WAIT_MS passes; `text` gets
   * each new piece (`at`: where it goes) and the text so far. Returns its stop, or undefined when
   * too many requests already follow this answer.
   */
  function follow(
    q: MessageRecord,
    slot: Slot,
    on: { text?(at: number, add: string, soFar: string): void; end(s: Settled | undefined, q2: MessageRecord | undefined): void },
  ): (() => void) | undefined {
    if ((perAnswer.get(q._id) ?? 0) >= PER_ANSWER) {
      slot.free();
      return undefined;
    }
    perAnswer.set(q._id, (perAnswer.get(q._id) ?? 0) + 1);
    let over = false;
    let soFar = '';
    const finish = () => {
      if (over) return false;
      over = true;
      clearTimeout(timer);
      f.stop();
      slot.free();
      const n = (perAnswer.get(q._id) ?? 1) - 1;
      if (n <= 0) perAnswer.delete(q._id);
      else perAnswer.set(q._id, n);
      return true;
    };
    const f = followAnswer(q, { live, logger, pollMs: POLL_MS, lookup: () => store.message(q._id) }, {
      text: (d) => {
        if (d.add === '' && d.at === soFar.length) return; // nothing new (the first look, before any text)
        soFar = soFar.slice(0, d.at) + d.add;
        on.text?.(d.at, d.add, soFar);
      },
      settled: (q2) => finish() && on.end(settledOf(q2), q2),
      gone: () => finish() && on.end({ ok: false, status: 409, code: 'question_cleared', type: 'invalid_request_error', message: fill(texts.questionCleared, { question: quote(q.question ?? ''), seconds: 0 }) }, undefined),
    });
    const timer = setTimeout(() => finish() && on.end(undefined, undefined), MAX_WAIT_MS);
    return () => void finish();
  }

  /** Wait for the answer inside the request (JSON). */
  function wait(req: WebhookRequest, q: MessageRecord, idem: string | undefined, slot: Slot): Promise<{ s: Settled; q2: MessageRecord | undefined } | 'busy'> {
    slot.kept = true;
    return new Promise((resolve) => {
      const stop = follow(q, slot, { end: (s, q2) => resolve({ s: s ?? timedOut(idem), q2 }) });
      if (!stop) return resolve('busy');
      req.onAbort?.(() => {
        stop();
        abandoned(q._id, idem);
        resolve({ s: timedOut(idem), q2: undefined });
      });
    });
  }

  /**
   * An SSE response: `start` writes the first events and follows the answer through `write`;
   * heartbeats, backpressure and the client leaving are handled here.
   */
  function sse(origin: Record<string, string>, run: (out: { write(s: string): void; close(): void; onClose(l: () => void): void }) => void): Response {
    return {
      status: 200,
      headers: { ...SSE_HEADERS, ...origin },
      stream: (sink: StreamSink) => {
        let closed = false;
        const closers: (() => void)[] = [];
        const close = () => {
          if (closed) return;
          closed = true;
          clearInterval(ping);
          for (const c of closers) c();
          sink.end();
        };
        const write = (s: string) => {
          if (closed) return;
          if (!sink.write(s) && sink.pending > MAX_QUEUED_BYTES) close();
        };
        const ping = setInterval(() => write(': ping\n\n'), HEARTBEAT_MS);
        sink.onClose(close);
        run({ write, close, onClose: (l) => closers.push(l) });
      },
    };
  }

  // ---- the endpoints

  async function nativeChat(req: WebhookRequest, key: ApiKey, origin: Record<string, string>): Promise<Response> {
    let body: { user?: unknown; query?: unknown; stream?: unknown };
    try {
      const parsed: unknown = JSON.parse(req.bodies[0] ?? '');
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as typeof body;
    } catch {
      return fail('native', 400, 'bad_request', 'The body must be a JSON object {"user", "query"}.');
    }
    const user = checkUser(body.user);
    if (typeof body.query !== 'string' || body.query.trim() === '' || body.query.length > MAX_QUESTION_CHARS) {
      return fail('native', 400, 'bad_query', `\`query\` must be a non-empty string of at most ${MAX_QUESTION_CHARS} characters.`);
    }
    if (body.stream !== undefined && typeof body.stream !== 'boolean') return fail('native', 400, 'bad_stream', '`stream` must be a boolean.');
    const streaming = body.stream === true || /\btext\/event-stream\b/.test(req.headers['accept'] ?? '');
    const idem = idempotencyKey(req);
    const slot = takeSlot();
    if (!slot) return busy('native');
    try {
      return await nativeAnswer(req, key, origin, slot, { user, query: body.query, streaming, idem });
    } finally {
      if (!slot.kept) slot.free();
    }
  }

  async function nativeAnswer(req: WebhookRequest, key: ApiKey, origin: Record<string, string>, slot: Slot, { user, query, streaming, idem }: { user: string; query: string; streaming: boolean; idem: string | undefined }): Promise<Response> {
    const asked = await ask('native', key, user, query, idem, false);
    if ('refused' in asked) return asked.refused;
    const id = `q_${sha(asked.key).slice(0, 24)}`;
    const answer = (text: string, source: 'model' | 'reply') => ({ id, user, answer: text, source });
    const event = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
    if ('reply' in asked) {
      if (!streaming) return json(200, answer(asked.reply, 'reply'));
      return sse(origin, (out) => {
        if (asked.reply) out.write(event('delta', { at: 0, text: asked.reply }));
        out.write(event('done', answer(asked.reply, 'reply')));
        out.close();
      });
    }
    const q = asked.queued;
    if (!streaming) {
      const got = await wait(req, q, idem, slot);
      if (got === 'busy') return crowded('native');
      if (!got.s.ok) return fail('native', got.s.status, got.s.code, got.s.message, got.s.type);
      if (got.q2) delivered(got.q2);
      return json(200, answer(got.s.text, 'model'));
    }
    if ((perAnswer.get(q._id) ?? 0) >= PER_ANSWER) return crowded('native');
    slot.kept = true;
    return sse(origin, (out) => {
      let done = false;
      const stop = follow(q, slot, {
        text: (at, add) => out.write(event('delta', { at, text: add })),
        end: (s, q2) => {
          done = true;
          const r = s ?? timedOut(idem);
          if (r.ok) {
            out.write(event('done', answer(r.text, 'model')));
            if (q2) delivered(q2);
          } else out.write(event('error', { error: { code: r.code, message: r.message } }));
          out.close();
        },
      });
      if (!stop) {
        out.write(event('error', { error: { code: 'too_many_copies', message: 'Too many copies of this request (its Idempotency-Key) are waiting for the same answer.' } }));
        return out.close();
      }
      out.onClose(() => {
        if (done) return;
        stop();
        abandoned(q._id, idem);
      });
    });
  }

  async function completions(req: WebhookRequest, key: ApiKey, origin: Record<string, string>): Promise<Response> {
    const c = parseCompletionRequest(req.bodies[0] ?? '');
    if (c.model !== undefined && c.model !== settings.modelName) {
      return fail('openai', 404, 'model_not_found', `The model \`${c.model}\` does not exist or you do not have access to it.`, 'invalid_request_error');
    }
    const idem = idempotencyKey(req);
    const slot = takeSlot();
    if (!slot) return busy('openai');
    try {
      return await completionAnswer(req, key, origin, slot, { c, idem });
    } finally {
      if (!slot.kept) slot.free();
    }
  }

  async function completionAnswer(req: WebhookRequest, key: ApiKey, origin: Record<string, string>, slot: Slot, { c, idem }: { c: CompletionRequest; idem: string | undefined }): Promise<Response> {
    const asked = await ask('openai', key, c.user, c.question, idem, c.newChat);
    if ('refused' in asked) return asked.refused;
    const id = `chatcmpl-${sha(asked.key).slice(0, 24)}`;
    const created = Math.floor(clock.now() / 1000);
    const model = settings.modelName;
    const part = (delta: { role?: 'assistant'; content?: string }, finish: FinishReason | null) => chunk(id, created, model, delta, finish, c.includeUsage);
    const ending = (finish: FinishReason, usage: Usage | undefined) => part({}, finish) + (c.includeUsage ? usageChunk(id, created, model, usage) : '') + 'data: [DONE]\n\n';
    if ('reply' in asked) {
      if (!c.stream) return json(200, completion(id, created, model, asked.reply, 'stop', undefined));
      return sse(origin, (out) => {
        out.write(part({ role: 'assistant', content: '' }, null));
        if (asked.reply) out.write(part({ content: asked.reply }, null));
        out.write(ending('stop', undefined));
        out.close();
      });
    }
    const q = asked.queued;
    if (!c.stream) {
      const got = await wait(req, q, idem, slot);
      if (got === 'busy') return crowded('openai');
      if (!got.s.ok) return fail('openai', got.s.status, got.s.code, got.s.message, got.s.type);
      if (got.q2) delivered(got.q2);
      return json(200, completion(id, created, model, got.s.text, got.s.finish, got.s.usage));
    }
    if ((perAnswer.get(q._id) ?? 0) >= PER_ANSWER) return crowded('openai');
    slot.kept = true;
    return sse(origin, (out) => {
      let done = false;
      // Chunks only append: what was sent stays; a restart after a crash continues past it.
      let sent = '';
      out.write(part({ role: 'assistant', content: '' }, null));
      const stop = follow(q, slot, {
        text: (_at, _add, soFar) => {
          if (soFar.length <= sent.length) return;
          out.write(part({ content: soFar.slice(sent.length) }, null));
          sent = soFar;
        },
        end: (s, q2) => {
          done = true;
          const r = s ?? timedOut(idem);
          if (r.ok) {
            // The settled answer may carry more than was streamed (a cut notice, sources); a blocked one is withheld.
            if (r.finish !== 'content_filter' && r.text.length > sent.length && r.text.startsWith(sent)) out.write(part({ content: r.text.slice(sent.length) }, null));
            out.write(ending(r.finish, r.usage));
            if (q2) delivered(q2);
          } else out.write(`data: ${JSON.stringify(openaiError(r.message, r.type, r.code))}\n\n`);
          out.close();
        },
      });
      if (!stop) {
        out.write(`data: ${JSON.stringify(openaiError('Too many copies of this request (its Idempotency-Key) are waiting for the same answer.', 'server_error', 'too_many_copies'))}\n\n`);
        return out.close();
      }
      out.onClose(() => {
        if (done) return;
        stop();
        abandoned(q._id, idem);
      });
    });
  }

  async function clearConversation(req: WebhookRequest, key: ApiKey, encodedUser: string | undefined): Promise<Response> {
    let raw = encodedUser ?? req.query['user'];
    try {
      raw = raw === undefined ? undefined : encodedUser !== undefined ? decodeURIComponent(raw) : raw;
    } catch {
      return fail('native', 400, 'bad_user', 'The user in the path is not valid percent-encoding.');
    }
    const user = checkUser(raw);
    const userKey = conversationKey('api', instance, [key.name, user]);
    const now = clock.now();
    await bot.receive({ channel, user: userKey, key: messageKeyOf(userKey, 'c', idempotencyKey(req)), sentAt: Math.floor(now / 1000), arrival: now, content: { type: 'command', name: '/clear' } });
    return json(200, { cleared: true, user });
  }

  function models(key: ApiKey, id: string | undefined): Response {
    void key;
    if (id === undefined) return json(200, { object: 'list', data: [modelObject(settings.modelName)] });
    return id === settings.modelName ? json(200, modelObject(id)) : fail('openai', 404, 'model_not_found', `The model \`${id}\` does not exist or you do not have access to it.`);
  }

  type Endpoint = { dialect: Dialect; methods: readonly string[]; run: (req: WebhookRequest, key: ApiKey, origin: Record<string, string>) => Promise<Response> | Response; open?: boolean };

  /** Which endpoint a path is (the instance's segment already taken out). */
  function endpoint(path: string): Endpoint | undefined {
    if (path === '/api/v1/chat') return { dialect: 'native', methods: ['POST'], run: nativeChat };
    if (path === '/api/v1/openapi.json') return { dialect: 'native', methods: ['GET', 'HEAD'], open: true, run: () => json(200, openApiDocument(settings.modelName, version)) };
    if (path === '/api/v1/conversations') return { dialect: 'native', methods: ['DELETE'], run: (req, key) => clearConversation(req, key, undefined) };
    const conv = /^\/api\/v1\/conversations\/([^/]+)$/.exec(path);
    if (conv) return { dialect: 'native', methods: ['DELETE'], run: (req, key) => clearConversation(req, key, conv[1]) };
    if (path === '/v1/chat/completions') return { dialect: 'openai', methods: ['POST'], run: completions };
    if (path === '/v1/models') return { dialect: 'openai', methods: ['GET'], run: (_req, key) => models(key, undefined) };
    const model = /^\/v1\/models\/([^/]+)$/.exec(path);
    if (model) return { dialect: 'openai', methods: ['GET'], run: (_req, key) => models(key, safeDecode(model[1] as string)) };
    return undefined;
  }

  async function handle(req: WebhookRequest): Promise<WebhookResponse> {
    const path = req.path ?? '';
    const dialect: Dialect = path.startsWith('/v1/') || path === '/v1' ? 'openai' : 'native';
    const origin = cors(req.headers['origin']);
    const withCors = (r: Response): Response => (Object.keys(origin).length === 0 || 'stream' in r ? r : { ...r, headers: { ...r.headers, ...origin } });
    const ep = endpoint(path);
    if (!ep) return withCors(fail(dialect, 404, 'not_found', 'Unknown path.'));
    if (req.method === 'OPTIONS') {
      // A browser's preflight: allowed origins get the methods and headers they may use; no credentials (cookies) ever.
      const allow = origin['Access-Control-Allow-Origin']
        ? {
            ...origin,
            'Access-Control-Allow-Methods': [...ep.methods, 'OPTIONS'].join(', '),
            'Access-Control-Allow-Headers': allowedRequestHeaders(req.headers['access-control-request-headers']),
            'Access-Control-Max-Age': '600',
          }
        : origin;
      return { status: 204, contentType: 'text/plain; charset=utf-8', body: '', headers: { ...BASE_HEADERS, ...allow } };
    }
    // The key first: without one, every method of every path answers the same 401.
    const key = ep.open ? { name: '', hash: Buffer.alloc(0) } : findKey(settings.keys, req.headers['authorization']);
    if (!key) return withCors(unauthorized(dialect));
    if (!ep.methods.includes(req.method)) return withCors(fail(dialect, 405, 'method_not_allowed', `Use ${ep.methods.join(' or ')}.`, 'invalid_request_error', { Allow: ep.methods.join(', ') }));
    try {
      return withCors(await ep.run(req, key, origin));
    } catch (err) {
      if (err instanceof RequestError) return withCors(fail(dialect, err.status, err.code, err.message));
      logger.error('API request failed', { path, ...errorLogFields(err) });
      return withCors(fail(dialect, 500, 'internal_error', 'The server could not handle the request; try again.', 'server_error'));
    }
  }

  const channel: Channel = {
    kind: 'api',
    instance,
    name: deps.name,
    answerer: deps.answerer,
    webhook: handle,
    delivery: 'send',
    // HTTP carries an answer of any length, as Markdown.
    pages: (answer) => [answer],
    // The request reads its answer itself and marks it delivered; nothing is sent from here, and the
    // recovery sweep must not keep finding it: it stays in the store for a retry to read.
    deliver: (key) => store.dropOutbox(key),
    carries: { images: false, files: false },
    help: texts.channelHelp,
  };
  return channel;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The request headers a preflight may name: those it asks for, if they are plain header names. */
function allowedRequestHeaders(asked: string | undefined): string {
  const names = (asked ?? '').split(',').map((h) => h.trim().toLowerCase()).filter((h) => /^[a-z0-9-]{1,64}$/.test(h));
  return [...new Set(['authorization', 'content-type', 'idempotency-key', 'accept', ...names.slice(0, 32)])].join(', ');
}

export const api: ChannelKind<ApiSettings> = {
  kind: 'api',
  prefixes: ['/api/v1', '/v1'],
  follows: true,
  variables: API_VARIABLES,
  settings: (env, ctx) => apiSettings(env, ctx),
  // Only digests are kept: no key is in the settings to redact (none is ever logged).
  secrets: () => [],
  create: (s, deps) => createApiChannel(s, deps),
};

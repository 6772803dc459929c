/**
 * OpenAI-compatible Chat Completions client (docs/openai.md): `POST {base}/chat/completions` with
 * `stream: true`, read with lib/util/http.ts and eventsource-parser like the Dify client. The backend keeps no
 * conversation: the prompt is the system prompt, the user's recent turns from our store, and the
 * question. The request is never re-sent by this module.
 */
import { open } from '../../util/http';
import { multipart } from '../../util/multipart';
import type { Readable } from 'stream';
import { jsonCall, networkFailure, readSmall, readTimedStream } from '../stream';
import type { Answer, AnswerRequest, Answerer, ChatHooks } from '../../core/answerer';
import { MODEL_NOT_SERVED } from '../../core/answerer';
import type { OpenAISettings } from './settings';
import { OpenAIError } from '../../errors';
import { CompletionBuilder, createOpenAIDecoder, errorFrom } from './events';


function httpError(status: number, body: string, retryAfter: string | undefined): OpenAIError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = { error: body.slice(0, 200) || `HTTP ${status}` };
  }
  const err = errorFrom(status, parsed, `HTTP ${status}`);
  // Retry-After is logged, not obeyed: a new question is the user's call, not a hidden second request.
  return retryAfter ? new OpenAIError(err.kind, err.code, `${err.message} (Retry-After: ${retryAfter.slice(0, 40)})`, { status, backendCode: err.backendCode }) : err;
}

function networkError(err: unknown): OpenAIError {
  const { timedOut, message } = networkFailure(err);
  return new OpenAIError('down', timedOut ? 'openai_timeout' : 'openai_unreachable', message, { cause: err });
}

/** The messages of a request: system prompt, earlier turns (oldest first), the question. */
type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };
type ChatMessage = { role: 'system' | 'user' | 'assistant'; content: string | ContentPart[] };

export function buildMessages(req: AnswerRequest, systemPrompt: string | undefined): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (systemPrompt) messages.push({ role: 'system', content: systemPrompt });
  for (const t of req.history ?? []) messages.push({ role: 'user', content: t.question }, { role: 'assistant', content: t.answer });
  if (req.images && req.images.length > 0) {
    // A picture goes as an image_url part: a data URL of the downloaded bytes, or the PicUrl (docs/openai.md).
    const images: ContentPart[] = req.images.map((img) => ({ type: 'image_url', image_url: { url: 'url' in img ? img.url : `data:${img.contentType};base64,${img.bytes.toString('base64')}` } }));
    messages.push({ role: 'user', content: [{ type: 'text', text: req.query }, ...images] });
  } else {
    messages.push({ role: 'user', content: req.query });
  }
  return messages;
}

/** Read one stream to its end (lib/backends/stream.ts `readTimedStream`); rejects with an OpenAIError on an error frame, a cut stream or silence. */
function readStream(stream: Readable, idleTimeoutMs: number, hooks: ChatHooks): { answer: Promise<Answer>; abort(err: OpenAIError): void } {
  const builder = new CompletionBuilder();
  let ended = false;
  const decoder = createOpenAIDecoder(
    (data) => {
      if (!ended && builder.apply(data) === 'text') hooks.onText?.(builder.text);
    },
    () => {
      builder.finished = true;
    },
  );
  const reading = readTimedStream<Answer>(stream, {
    idleTimeoutMs,
    decoder,
    complete: () => builder.finished,
    // A finish reason without [DONE] is an answer too (some servers end so).
    result: () => builder.result(),
    onActivity: hooks.onActivity,
    drainMs: 0,
    errors: {
      idle: (ms) => new OpenAIError('down', 'openai_idle_timeout', `no data from the model for ${ms} ms`),
      bad: (err) => (err instanceof OpenAIError ? err : new OpenAIError('failed', 'openai_bad_stream', String(err), { cause: err })),
      cut: (message, cause) => new OpenAIError('failed', 'openai_stream_cut', message, { cause }),
      incomplete: () => new OpenAIError('failed', 'openai_stream_incomplete', 'the stream ended without [DONE] or a finish reason'),
    },
  });
  void reading.answer.then(
    () => (ended = true),
    () => (ended = true),
  );
  return reading;
}

/**
 * Up to `n` of a server's model ids, those most like `model` first (a typo, a missing dash, another
 * size of the same family): compared without case and punctuation, by containment, then by common prefix.
 */
export function likelyModels(ids: readonly string[], model: string, n = 5): string[] {
  const bare = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const m = bare(model);
  const score = (id: string) => {
    const x = bare(id);
    let p = 0;
    while (p < x.length && p < m.length && x[p] === m[p]) p++;
    return (m && (x.includes(m) || m.includes(x)) ? 1000 : 0) + p;
  };
  return ids
    .map((id, i) => ({ id, i, s: score(id) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .slice(0, n)
    .map((e) => e.id);
}

export function createOpenAIClient(config: OpenAISettings): Answerer {
  const headers: Record<string, string> = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  // Local servers (Ollama, LM Studio) need no key.
  if (config.apiKey) headers['Authorization'] = `Bearer ${config.apiKey}`;
  const named = {
    network: networkError,
    http: (status: number, body: string) => httpError(status, body, undefined),
    notJson: (what: string) => new OpenAIError('failed', 'openai_bad_response', `${what} did not answer JSON`),
  };
  return {
    kind: 'openai',
    endpoint: config.baseUrl,
    keepsConversation: false,
    transcribes: config.transcribeModel !== undefined,
    async chat(req, hooks = {}) {
      const body: Record<string, unknown> = {
        ...config.extraBody,
        model: config.model,
        messages: buildMessages(req, config.systemPrompt),
        stream: true,
        stream_options: { include_usage: true },
      };
      if (config.temperature !== undefined) body['temperature'] = config.temperature;
      if (config.maxTokens !== undefined) body['max_tokens'] = config.maxTokens;
      const pending = open({ method: 'POST', url: `${config.baseUrl}/chat/completions`, headers, body, timeoutMs: config.idleTimeoutMs });
      let reader: ReturnType<typeof readStream> | undefined;
      let ended: OpenAIError | undefined;
      const end = (err: OpenAIError) => {
        if (ended) return;
        ended = err;
        if (reader) reader.abort(err);
        else pending.cancel(err);
      };
      // An overall deadline too: keep-alive comments would reset an idle timer forever (docs/openai.md).
      const overall = setTimeout(() => end(new OpenAIError('failed', 'openai_answer_timeout', `no complete answer within ${config.answerTimeoutMs} ms`)), config.answerTimeoutMs);
      hooks.stop?.onStop(() => end(new OpenAIError('failed', 'openai_stopped', 'the question no longer needs an answer')));
      try {
        let res;
        try {
          // `timeoutMs` bounds the wait for the answer's head; the body has its own idle timer.
          res = await pending.response;
        } catch (err) {
          throw err instanceof OpenAIError ? err : networkError(err);
        }
        const stream = res.body;
        if (res.status !== 200) {
          const retryAfter = res.headers['retry-after'];
          throw httpError(res.status, await readSmall(stream).catch(() => ''), typeof retryAfter === 'string' ? retryAfter : undefined);
        }
        if (ended) {
          stream.destroy();
          throw ended;
        }
        reader = readStream(stream, config.idleTimeoutMs, hooks);
        return await reader.answer;
      } finally {
        clearTimeout(overall);
      }
    },
    async probe() {
      // GET /models: authenticated, asks no model, and says whether OPENAI_MODEL is served there.
      const data = (await jsonCall({ method: 'GET', url: `${config.baseUrl}/models`, headers, timeoutMs: config.idleTimeoutMs }, 'GET /models', named))['data'];
      const ids = Array.isArray(data) ? data.map((m) => (m && typeof m === 'object' ? String((m as { id?: unknown }).id ?? '') : '')).filter(Boolean) : [];
      if (ids.length === 0) return `reachable, key accepted (it lists no models: ${config.model} not checked)`;
      // Ollama lists `name:latest` and serves it as `name` too.
      if (ids.includes(config.model) || ids.includes(`${config.model}:latest`)) return `reachable, key accepted, model ${config.model} listed`;
      // A model the server does not serve fails every question: a failure here, with what it does serve.
      const some = likelyModels(ids, config.model);
      throw new OpenAIError('config', MODEL_NOT_SERVED, `reachable, key accepted, but OPENAI_MODEL ${config.model} is not among the ${ids.length} models it lists (GET /models): ${some.join(', ')}${ids.length > some.length ? ', …' : ''}`, { status: 200 });
    },
    async imageInput() {
      // Bytes go as a data URL (docs/openai.md); a URL the model fetches itself when no download is possible.
      return config.vision ? 'bytes' : 'none';
    },
    async transcribe(audio) {
      if (!config.transcribeModel) throw new OpenAIError('config', 'openai_no_transcription', 'OPENAI_TRANSCRIBE_MODEL is not set');
      const { body, contentType } = multipart({ model: config.transcribeModel, response_format: 'json' }, { name: 'file', ...audio });
      const auth: Record<string, string> = config.apiKey ? { Authorization: `Bearer ${config.apiKey}` } : {};
      const req = { method: 'POST', url: `${config.baseUrl}/audio/transcriptions`, body, headers: { ...auth, 'Content-Type': contentType }, timeoutMs: config.idleTimeoutMs };
      const text = (await jsonCall(req, '/audio/transcriptions', named))['text'];
      if (typeof text !== 'string') throw new OpenAIError('failed', 'openai_bad_response', '/audio/transcriptions answered no text');
      return text;
    },
    async setupProblems() {
      return [];
    },
    async deleteConversation() {
      // Nothing is kept at the server: the history lives in our store (cleared by /clear).
    },
  };
}

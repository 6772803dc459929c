/**
 * The OpenAI Chat Completions protocol as this endpoint speaks it (docs/api.md): the request's
 * fields we read, the response and chunk shapes, and errors as `{"error": {message, type, param,
 * code}}`. Pure: no I/O here.
 */
import { RequestError } from '../../errors';

/** A question longer than this (characters) is refused (400): no chat message is that long. */
export const MAX_QUESTION_CHARS = 16_000;
/** The `user` field (and the native API's `user`): at most this many characters. */
export const MAX_USER_CHARS = 128;

export interface CompletionRequest {
  model: string | undefined;
  /** The last user message's text: the question. */
  question: string;
  /** The conversation's user within the key (`user`), `default` when the client sends none. */
  user: string;
  stream: boolean;
  includeUsage: boolean;
  /** No assistant message before the question: the client started a new chat. */
  newChat: boolean;
}

const bad = (message: string, param?: string) => new RequestError(param ? `bad_${param}` : 'bad_request', message);

/** A user id as both endpoints take it: 1-128 characters, no control characters. */
export function checkUser(v: unknown, param = 'user'): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_USER_CHARS || [...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) {
    throw bad(`\`${param}\` must be a string of 1-${MAX_USER_CHARS} characters without control characters`, param);
  }
  return v;
}

/** A message's text: a string, or the text of its parts (other parts, such as images, are left out). */
function textOf(content: unknown): string | undefined {
  if (typeof content === 'string') return content;
  if (content === null) return '';
  if (!Array.isArray(content)) return undefined;
  const texts: string[] = [];
  for (const part of content as unknown[]) {
    if (!part || typeof part !== 'object') return undefined;
    const p = part as { type?: unknown; text?: unknown };
    if (p.type === 'text') {
      if (typeof p.text !== 'string') return undefined;
      texts.push(p.text);
    }
  }
  return texts.join('\n');
}

/** Read a `POST /v1/chat/completions` body; a `RequestError` (400) says what is wrong. */
export function parseCompletionRequest(raw: string): CompletionRequest {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw bad('We could not parse the JSON body of your request.');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad('The body must be a JSON object.');
  const b = body as Record<string, unknown>;
  if (b['model'] !== undefined && typeof b['model'] !== 'string') throw bad('`model` must be a string.', 'model');
  const messages = b['messages'];
  if (!Array.isArray(messages) || messages.length === 0) throw bad('`messages` must be a non-empty array.', 'messages');
  let question: string | undefined;
  let lastUser = -1;
  for (const [i, m] of messages.entries()) {
    if (!m || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string') throw bad(`\`messages[${i}]\` must be an object with a \`role\`.`, 'messages');
    const text = textOf((m as { content?: unknown }).content);
    if (text === undefined) throw bad(`\`messages[${i}].content\` must be a string or an array of content parts.`, 'messages');
    if ((m as { role: string }).role === 'user') {
      question = text;
      lastUser = i;
    }
  }
  if (question === undefined) throw bad('`messages` must contain a user message.', 'messages');
  if (question.trim() === '') throw bad('The last user message has no text.', 'messages');
  if (question.length > MAX_QUESTION_CHARS) throw bad(`The last user message is longer than ${MAX_QUESTION_CHARS} characters.`, 'messages');
  if (b['stream'] !== undefined && b['stream'] !== null && typeof b['stream'] !== 'boolean') throw bad('`stream` must be a boolean.', 'stream');
  const options = b['stream_options'];
  const includeUsage = Boolean(options && typeof options === 'object' && (options as { include_usage?: unknown }).include_usage === true);
  const user = b['user'] === undefined || b['user'] === null || b['user'] === '' ? 'default' : checkUser(b['user']);
  const newChat = !messages.slice(0, lastUser).some((m) => (m as { role: string }).role === 'assistant');
  return { model: b['model'] as string | undefined, question, user, stream: b['stream'] === true, includeUsage, newChat };
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export const openaiError = (message: string, type: string, code: string | null, param: string | null = null): OpenAIErrorBody => ({ error: { message, type, param, code } });

/** The HTTP status and error of a failed answer, by its failure kind (lib/errors.ts), as OpenAI would say it. */
export function failureStatus(kind: string): { status: number; type: string; code: string } {
  switch (kind) {
    case 'quota':
      return { status: 429, type: 'insufficient_quota', code: 'insufficient_quota' };
    case 'busy':
      return { status: 503, type: 'server_error', code: 'server_is_overloaded' };
    case 'down':
      return { status: 502, type: 'server_error', code: 'backend_unreachable' };
    case 'input':
      return { status: 400, type: 'invalid_request_error', code: 'input_unusable' };
    case 'config':
      return { status: 500, type: 'server_error', code: 'backend_misconfigured' };
    default:
      return { status: 502, type: 'server_error', code: 'answer_failed' };
  }
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Token counts as OpenAI reports them, when the backend gave them. */
export function usageOf(u: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number } | undefined): Usage | undefined {
  if (!u || typeof u.total_tokens !== 'number') return undefined;
  return { prompt_tokens: u.prompt_tokens ?? 0, completion_tokens: u.completion_tokens ?? 0, total_tokens: u.total_tokens };
}

export type FinishReason = 'stop' | 'length' | 'content_filter';

export function completion(id: string, created: number, model: string, text: string, finish: FinishReason, usage: Usage | undefined) {
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }],
    ...(usage ? { usage } : {}),
  };
}

/** One `data:` event of a streamed completion. */
export function chunk(id: string, created: number, model: string, delta: { role?: 'assistant'; content?: string }, finish: FinishReason | null, withUsage: boolean): string {
  const c = { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(withUsage ? { usage: null } : {}) };
  return `data: ${JSON.stringify(c)}\n\n`;
}

/** The usage chunk `stream_options.include_usage` asks for: no choices, the totals. */
export function usageChunk(id: string, created: number, model: string, usage: Usage | undefined): string {
  const c = { id, object: 'chat.completion.chunk', created, model, choices: [], usage: usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } };
  return `data: ${JSON.stringify(c)}\n\n`;
}

/** Models, as `GET /v1/models` lists them: the one this endpoint answers as. */
export function modelObject(name: string) {
  return { id: name, object: 'model', created: 1_700_000_000, owned_by: 'wechat-dify-bot' };
}

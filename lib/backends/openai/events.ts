/**
 * OpenAI Chat Completions stream decoding (docs/openai.md), pure: bytes in, chunks applied to an
 * answer. `data: [DONE]` ends the stream; `choices[0].delta.content` is the answer; reasoning
 * deltas (`reasoning_content`, `reasoning`) are activity, never answer text; the usage chunk has no
 * choices; an `error` object (or an `event: error` frame) after HTTP 200 is a failure, not an answer.
 */
import { createSseDecoder } from '../stream';
import type { Answer, Usage } from '../../core/answerer';
import { OpenAIError } from '../../errors';
import type { FailureKind } from '../../errors';

/** A failure reported by an OpenAI-compatible server, by HTTP status and its error code. */
export function classifyOpenAI(status: number, code: string, type = ''): FailureKind {
  if (code === 'insufficient_quota' || code === 'billing_hard_limit_reached' || status === 402) return 'quota';
  if (status === 429 || status >= 500 || code === 'server_is_overloaded' || code === 'slow_down') return 'busy';
  if (status === 401 || status === 403 || status === 404 || code === 'model_not_found' || code === 'invalid_api_key') return 'config';
  if (status === 400 || status === 422 || type === 'invalid_request_error') return status ? 'config' : 'failed';
  return 'failed';
}

/** `{"error": {...}}` (or a bare string) as an OpenAIError. */
export function errorFrom(status: number, body: unknown, fallback: string): OpenAIError {
  const e = (body && typeof body === 'object' ? (body as { error?: unknown }).error : undefined) as { message?: unknown; code?: unknown; type?: unknown } | string | undefined;
  const message = typeof e === 'string' ? e : typeof e?.message === 'string' ? e.message : fallback;
  const code = typeof e === 'object' && e ? String(e.code ?? e.type ?? '') : '';
  const type = typeof e === 'object' && e && typeof e.type === 'string' ? e.type : '';
  return new OpenAIError(classifyOpenAI(status, code, type), status ? `openai_http_${status}` : 'openai_stream_error', message.slice(0, 300), { status, backendCode: code });
}

export class CompletionBuilder {
  text = '';
  finishReason: string | undefined;
  usage: Usage | undefined;
  /** `[DONE]` arrived. */
  finished = false;
  id = '';

  /** Apply one `data:` payload (already known not to be `[DONE]`). */
  apply(data: unknown): 'text' | 'other' {
    if (!data || typeof data !== 'object') return 'other';
    const chunk = data as { error?: unknown; id?: unknown; choices?: unknown; usage?: unknown };
    if (chunk.error !== undefined && chunk.error !== null) throw errorFrom(0, chunk, 'the server reported an error mid-stream');
    if (typeof chunk.id === 'string' && !this.id) this.id = chunk.id;
    if (chunk.usage && typeof chunk.usage === 'object') this.usage = chunk.usage as Usage;
    // The usage chunk has `choices: []` (or null on some vLLM builds).
    const choice = Array.isArray(chunk.choices) ? (chunk.choices[0] as { delta?: { content?: unknown }; finish_reason?: unknown } | undefined) : undefined;
    if (!choice) return 'other';
    if (typeof choice.finish_reason === 'string' && choice.finish_reason) this.finishReason = choice.finish_reason;
    const content = choice.delta?.content;
    if (typeof content === 'string' && content !== '') {
      this.text += content;
      return 'text';
    }
    return 'other';
  }

  /** The answer, once the stream may end: after `[DONE]` or a finish reason; before either, none. */
  result(): Answer | undefined {
    if (!this.finished && this.finishReason === undefined) return undefined;
    const cut = this.finishReason === 'length' ? 'length' : this.finishReason === 'content_filter' ? 'content_filter' : undefined;
    return { text: this.text, messageId: this.id || undefined, usage: this.usage, cut };
  }
}

/** Bytes → chunk payloads (lib/backends/stream.ts), until `data: [DONE]`. */
export function createOpenAIDecoder(onData: (data: unknown) => void, onDone: () => void): { feed(chunk: Buffer | string): void; end(): void } {
  let done = false;
  return createSseDecoder((msg) => {
    if (done) return;
    if (msg.data === '[DONE]') {
      done = true;
      onDone();
      return;
    }
    let data: unknown;
    try {
      data = JSON.parse(msg.data);
    } catch (cause) {
      throw new OpenAIError('failed', 'openai_bad_event', 'the server sent a chunk that is not JSON', { cause });
    }
    if (msg.event === 'error') throw errorFrom(0, data && typeof data === 'object' && 'error' in data ? data : { error: data }, 'the server reported an error mid-stream');
    onData(data);
  });
}

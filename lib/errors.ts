/**
 * The project's few named errors, and the one place that maps them to what the WeChat user reads
 * and what the log says. Every module throws one of these; nothing else is caught and re-worded.
 */

/** Base class: `code` is machine-readable and safe to log (never contains a secret). */
export class BotError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A missing or invalid setting; `variable` names the environment variable to fix. */
export class ConfigError extends BotError {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super('config', `${variable}: ${message}`);
    this.variable = variable;
  }
}

/** The request did not come from WeChat: bad/missing signature or a timestamp outside the tolerance. */
export class SignatureError extends BotError {}

/** The request body is not a message we can read: malformed, hostile, too large, or undecryptable. */
export class RequestError extends BotError {
  readonly status: 400 | 413;
  constructor(code: string, message: string, status: 400 | 413 = 400, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

/** The store can't do what was asked: locked by another process, corrupt, or inconsistent. */
export class StoreError extends BotError {}

/** What kind of model failure this is decides the user's text (see `failureText`). */
export type FailureKind =
  | 'quota' // the plan or model provider quota is used up
  | 'busy' // the backend is overloaded or had an internal error: try again later
  | 'config' // the bot is misconfigured (key, app, model)
  | 'down' // the backend could not be reached, or went silent
  | 'failed' // the answer itself failed (in-stream error, cut stream)
  | 'input'; // the message could not be used (a voice not transcribed, a picture not usable): its `note` says why

/**
 * The model backend (Dify, an OpenAI-compatible server) failed. `status` is the HTTP status (0 for
 * network failures), `backendCode` the backend's own error code.
 */
export class ModelError extends BotError {
  readonly kind: FailureKind;
  readonly status: number;
  readonly backendCode: string;
  constructor(kind: FailureKind, code: string, message: string, opts: { status?: number; backendCode?: string; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.kind = kind;
    this.status = opts.status ?? 0;
    this.backendCode = opts.backendCode ?? '';
  }
}

/** Dify failed. `conversationGone` marks the 404 "Conversation Not Exists." case, recovered by starting a new one. */
export class DifyError extends ModelError {
  /** Dify says the stored conversation can't be continued; forget it and start a new one. */
  get conversationGone(): boolean {
    return (this.status === 404 && /conversation/i.test(this.message)) || this.backendCode === 'conversation_completed';
  }
}

/** An OpenAI-compatible server failed (docs/openai.md). */
export class OpenAIError extends ModelError {}

/** The WeChat server API (access token, customer-service send) answered an error code. */
export class WechatApiError extends BotError {
  readonly errcode: number;
  constructor(errcode: number, errmsg: string) {
    super(`wechat_${errcode}`, `WeChat API error ${errcode}: ${errmsg}`);
    this.errcode = errcode;
  }
}

/**
 * A user's picture or voice could not be downloaded from the channel (expired, too large, refused).
 * `detail` is safe to log and goes into the failure code (`image_media_<detail>`); `tooLarge` when
 * the platform said it is over its size limit.
 */
export class MediaError extends BotError {
  readonly detail: string;
  readonly tooLarge: boolean;
  constructor(detail: string, message: string, opts: { tooLarge?: boolean; cause?: unknown } = {}) {
    super(`media_${detail}`, message, { cause: opts.cause });
    this.detail = detail;
    this.tooLarge = opts.tooLarge ?? false;
  }
}

/** Classify a Dify HTTP error body (docs/dify.md) into a failure kind. */
export function classifyDifyHttp(status: number, difyCode: string): FailureKind {
  if (difyCode === 'provider_quota_exceeded' || difyCode === 'rate_limit_error') return 'quota';
  if (status === 429 || status >= 500) return 'busy';
  if (status === 401 || status === 403) return 'config';
  if (difyCode === 'completion_request_error') return 'failed';
  return 'config';
}

/** Classify an in-stream `error` event (docs/dify.md). */
export function classifyDifyStream(status: number, difyCode: string): FailureKind {
  if (difyCode === 'provider_quota_exceeded') return 'quota';
  if (difyCode === 'provider_not_initialize' || difyCode === 'model_currently_not_support') return 'config';
  if (status >= 500) return 'busy';
  return 'failed';
}

/**
 * A user's message that cannot be asked as it is (a voice that cannot be downloaded or
 * transcribed, a question about a picture the bot cannot use). `note` is what the user reads.
 */
export class InputError extends BotError {
  readonly note: string;
  constructor(code: string, message: string, note: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.note = note;
  }
}

/** User-facing texts for failures, by kind; part of `Texts` (lib/core/texts.ts). */
export interface FailureTexts {
  failQuota: string;
  failBusy: string;
  failConfig: string;
  failDown: string;
  failFailed: string;
  voiceNoRecognition: string;
}

/** What the user reads for a failed answer (`note`: an input failure's own text). */
export function failureText(kind: FailureKind, texts: FailureTexts, note?: string): string {
  switch (kind) {
    case 'input':
      return note ?? texts.voiceNoRecognition;
    case 'quota':
      return texts.failQuota;
    case 'busy':
      return texts.failBusy;
    case 'config':
      return texts.failConfig;
    case 'down':
      return texts.failDown;
    case 'failed':
      return texts.failFailed;
  }
}

/** Fields for one log line about an error: named code, never the message body of a secret-bearing request. */
export function errorLogFields(err: unknown): Record<string, unknown> {
  if (err instanceof ModelError) {
    return { error: err.name, code: err.code, kind: err.kind, status: err.status, backendCode: err.backendCode, message: err.message };
  }
  if (err instanceof WechatApiError) return { error: err.name, code: err.code, errcode: err.errcode };
  if (err instanceof BotError) return { error: err.name, code: err.code, message: err.message };
  if (err && typeof err === 'object' && 'message' in err) {
    const e = err as { name?: unknown; code?: unknown; message?: unknown };
    return { error: String(e.name ?? 'Error'), code: String(e.code ?? 'unexpected'), message: String(e.message) };
  }
  return { error: 'Error', code: 'unexpected', message: String(err) };
}

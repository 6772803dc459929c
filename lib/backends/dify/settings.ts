/** Dify's settings (README "Configuration", docs/dify.md). */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';

export const DIFY_VARIABLES = ['DIFY_API_KEY', 'DIFY_BASE_URL', 'DIFY_TIMEOUT_MS', 'DIFY_ANSWER_TIMEOUT_MS', 'DIFY_INPUTS', 'DIFY_IMAGE_UPLOAD'] as const;

export interface DifySettings {
  apiKey: string;
  baseUrl: string;
  /** Abort a call after this long without a single byte (pings count). */
  idleTimeoutMs: number;
  /** Abort a call after this long in all, however lively the stream. */
  answerTimeoutMs: number;
  /** The app's input variables (DIFY_INPUTS), with `{openid}`-style placeholders filled per question. */
  inputs: Record<string, unknown>;
  /**
   * How pictures reach the app: the platform's URL (`remote_url`), or downloaded here and uploaded
   * (`local_file`); `auto`: uploaded when the channel can download it, else its URL.
   */
  imageUpload: 'auto' | 'remote_url' | 'local_file';
}

/** DIFY_INPUTS: a JSON object; string values may hold placeholders (lib/backends/dify/inputs.ts). */
function difyInputs(v: unknown): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('DIFY_INPUTS', 'must be a JSON object of the app\'s input variables, e.g. {"name": "{openid}"}');
  return v as Record<string, unknown>;
}

export function difySettings(whole: Env): DifySettings {
  const env = whole.only(DIFY_VARIABLES);
  return {
    apiKey: env.required('DIFY_API_KEY', 'the API key of your Dify app, "app-…" (or LLM_PROVIDER=openai with OPENAI_MODEL)'),
    baseUrl: env.url('DIFY_BASE_URL', 'https://api.dify.ai/v1'),
    idleTimeoutMs: env.int('DIFY_TIMEOUT_MS', 120_000, 100, 3_600_000),
    answerTimeoutMs: env.int('DIFY_ANSWER_TIMEOUT_MS', 300_000, 100, 3_600_000),
    inputs: env.json('DIFY_INPUTS', difyInputs, {}),
    imageUpload: env.oneOf('DIFY_IMAGE_UPLOAD', ['auto', 'remote_url', 'local_file'] as const, 'auto'),
  };
}

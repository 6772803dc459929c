/** An OpenAI-compatible server's settings (README "Use any OpenAI-compatible model", docs/openai.md). */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';

export const OPENAI_VARIABLES = [
  'OPENAI_BASE_URL', 'OPENAI_API_KEY', 'OPENAI_MODEL', 'SYSTEM_PROMPT', 'OPENAI_TEMPERATURE', 'OPENAI_MAX_TOKENS',
  'OPENAI_EXTRA_BODY', 'OPENAI_TIMEOUT_MS', 'OPENAI_ANSWER_TIMEOUT_MS', 'OPENAI_VISION', 'OPENAI_TRANSCRIBE_MODEL',
] as const;

export interface OpenAISettings {
  baseUrl: string;
  apiKey: string | undefined;
  model: string;
  systemPrompt: string | undefined;
  temperature: number | undefined;
  maxTokens: number | undefined;
  /** Provider options merged into the request body (e.g. DeepSeek's `thinking`, DashScope's `enable_thinking`). */
  extraBody: Record<string, unknown>;
  idleTimeoutMs: number;
  answerTimeoutMs: number;
  /** The model takes images (OPENAI_VISION). */
  vision: boolean;
  /** The transcription model for voice (OPENAI_TRANSCRIBE_MODEL); none: no transcription. */
  transcribeModel: string | undefined;
}

export function openaiSettings(whole: Env): OpenAISettings {
  const env = whole.only(OPENAI_VARIABLES);
  const extraBody = env.json('OPENAI_EXTRA_BODY', (v) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('OPENAI_EXTRA_BODY', 'must be a JSON object of request fields, e.g. {"enable_thinking": false}');
    for (const k of ['model', 'messages', 'stream']) {
      if (k in v) throw new ConfigError('OPENAI_EXTRA_BODY', `may not set "${k}" (the bot sets it)`);
    }
    return v as Record<string, unknown>;
  }, {});
  const maxTokens = env.num('OPENAI_MAX_TOKENS', 1, 10_000_000);
  const baseUrl = env.url('OPENAI_BASE_URL', 'https://api.openai.com/v1');
  // A common slip: the full endpoint instead of its base (requests would go to …/chat/completions/chat/completions).
  if (/\/chat\/completions$/i.test(baseUrl)) throw new ConfigError('OPENAI_BASE_URL', `must be the base URL, without /chat/completions (e.g. ${baseUrl.replace(/\/chat\/completions$/i, '')})`);
  return {
    baseUrl,
    apiKey: env.str('OPENAI_API_KEY'),
    model: env.required('OPENAI_MODEL', 'the model name your server knows, e.g. gpt-4o-mini, deepseek-chat, qwen-plus, llama3.1'),
    systemPrompt: env.str('SYSTEM_PROMPT'),
    temperature: env.num('OPENAI_TEMPERATURE', 0, 2),
    maxTokens: maxTokens === undefined ? undefined : Math.floor(maxTokens),
    extraBody,
    idleTimeoutMs: env.int('OPENAI_TIMEOUT_MS', 120_000, 100, 3_600_000),
    answerTimeoutMs: env.int('OPENAI_ANSWER_TIMEOUT_MS', 300_000, 100, 3_600_000),
    vision: env.bool('OPENAI_VISION', false),
    transcribeModel: env.str('OPENAI_TRANSCRIBE_MODEL'),
  };
}


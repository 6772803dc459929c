/**
 * The model backends (docs/architecture.md "Backends"): each a folder behind the answerer port
 * (lib/core/answerer.ts), registered here. LLM_PROVIDER picks one (lib/config.ts).
 */
import type { BackendKind } from '../core/channel';
import { createDifyClient } from './dify/client';
import type { DifySettings } from './dify/settings';
import { DIFY_VARIABLES, difySettings } from './dify/settings';
import { createOpenAIClient } from './openai/client';
import type { OpenAISettings } from './openai/settings';
import { OPENAI_VARIABLES, openaiSettings } from './openai/settings';

const dify: BackendKind<DifySettings> = {
  kind: 'dify',
  variables: DIFY_VARIABLES,
  settings: (env) => difySettings(env),
  secrets: (s) => [s.apiKey],
  create: (s) =>
    createDifyClient({ baseUrl: s.baseUrl, apiKey: s.apiKey, idleTimeoutMs: s.idleTimeoutMs, answerTimeoutMs: s.answerTimeoutMs, inputsTemplate: s.inputs, imageUpload: s.imageUpload }),
  describe: (s) => s.baseUrl,
};

const openai: BackendKind<OpenAISettings> = {
  kind: 'openai',
  variables: OPENAI_VARIABLES,
  settings: (env) => openaiSettings(env),
  secrets: (s) => [s.apiKey],
  create: (s) => createOpenAIClient(s),
  describe: (s) => `${s.baseUrl} (${s.model})`,
};

/** Every backend, by the name LLM_PROVIDER gives it. */
export const BACKEND_KINDS: readonly BackendKind[] = [dify as BackendKind, openai as BackendKind];

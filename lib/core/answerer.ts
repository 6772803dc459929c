/**
 * The answerer port (docs/architecture.md): what the bot asks a model backend. Dify
 * (lib/backends/dify/client.ts) keeps each user's conversation itself; an OpenAI-compatible server
 * (lib/backends/openai/client.ts) is sent the user's recent turns from our store with every question.
 * Both stream, and both fail with a `ModelError` (lib/errors.ts), so the lifecycle is the same.
 */

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  total_price?: string;
  currency?: string;
  latency?: number;
}

/** One earlier exchange of the user's, as the prompt carries it. */
export interface Turn {
  question: string;
  answer: string;
  /** When the question was asked (ms). */
  askedAt: number;
  tokens?: number | undefined;
}

export interface AnswerRequest {
  query: string;
  /** The sender's OpenID: Dify scopes conversations to it; OpenAI-compatible servers may log it as `user`. */
  user: string;
  /** Dify: the conversation to continue. */
  conversationId?: string | undefined;
  /** OpenAI-compatible: the turns before this question, oldest first. */
  history?: readonly Turn[] | undefined;
  /** Dify: the app's input variables, filled (lib/backends/dify/inputs.ts). */
  inputs?: Record<string, unknown> | undefined;
  /** A picture the question is about: its URL (WeChat's PicUrl), or its bytes once downloaded. */
  images?: readonly ImageInput[] | undefined;
}

export type ImageInput = { url: string } | { bytes: Buffer; contentType: string };

/** A recording to transcribe (WeChat voice is AMR). */
export interface AudioInput {
  bytes: Buffer;
  filename: string;
  contentType: string;
}

export interface Answer {
  /** The answer as the model wrote it (reasoning is removed by the caller: lib/text/reasoning.ts). */
  text: string;
  conversationId?: string | undefined;
  messageId?: string | undefined;
  usage?: Usage | undefined;
  /** The model stopped early: `length` (token limit) or `content_filter`. */
  cut?: 'length' | 'content_filter' | undefined;
  /** Dify: the names of the knowledge documents the answer drew on, in order, once each. */
  citations?: string[] | undefined;
}

/** Tells a running call to stop (the question was cleared or its user left); see lib/util/stop.ts. */
export interface StopSignal {
  readonly stopped: boolean;
  onStop(listener: () => void): void;
}

export interface ChatHooks {
  /** The answer so far, after each piece of text (progress). */
  onText?: (text: string) => void;
  /** Every chunk, pings and reasoning included. */
  onActivity?: () => void;
  /** Abort the call: the promise rejects with a `*_stopped` error. */
  stop?: StopSignal;
}

export interface Answerer {
  readonly kind: 'dify' | 'openai';
  /** The backend keeps the conversation (Dify); otherwise the store's history is sent along. */
  readonly keepsConversation: boolean;
  /** Ask and stream the answer. */
  chat(req: AnswerRequest, hooks?: ChatHooks): Promise<Answer>;
  /** Forget a conversation at the backend (Dify; nothing to do elsewhere); "not found" counts as done. */
  deleteConversation(conversationId: string, user: string): Promise<void>;
  /**
   * A cheap authenticated call that asks no model (the console's health view): what the backend
   * said, in a few words. Throws the backend's `ModelError` when it is unreachable or refuses the key.
   */
  probe(): Promise<string>;
  /** Does the backend take pictures with a question (Dify: the app's settings, read once; OpenAI: OPENAI_VISION)? */
  takesImages(): Promise<boolean>;
  /**
   * Speech to text (Dify `/audio-to-text`, OpenAI-compatible `/audio/transcriptions`); throws a
   * `ModelError` when the backend cannot (`*_no_transcription` when it is not set up for it).
   */
  transcribe(audio: AudioInput, user: string): Promise<string>;
  /** What is wrong with the backend's setup for this bot, found at start (Dify: required inputs DIFY_INPUTS lacks). */
  setupProblems(): Promise<string[]>;
}

/**
 * The answerer port (docs/architecture.md): what the core asks a model backend, in terms of facts
 * about the question, never of one backend's settings. Each backend is a folder under lib/backends/
 * registered in lib/backends/index.ts: Dify keeps each user's conversation itself (and fills its
 * app's inputs from the facts); an OpenAI-compatible server is sent the user's recent turns from our
 * store. All stream, and all fail with a `ModelError` (lib/errors.ts), so the lifecycle is the same.
 */

import type { Turn, Usage } from '../store';

export type { Turn, Usage };

/** A file that is part of an answer (docs/rich-answers.md): a picture, or something to download. */
export interface AnswerFile {
  url: string;
  kind: 'image' | 'file';
  name?: string | undefined;
  mime?: string | undefined;
  size?: number | undefined;
}

/** What is known about a question besides its text (Dify's DIFY_INPUTS placeholders use them). */
export interface QuestionFacts {
  /** The kind of message that asked (`text`, `voice`, `image`, `event`). */
  msgType: string;
  /** A menu click's key ('' otherwise). */
  eventKey: string;
  /** The QR scene the user last came through ('' when none). */
  scene: string;
  /** When it is asked, ISO 8601 in the configured time zone. */
  now: string;
}

export interface AnswerRequest {
  query: string;
  /** The conversation key (lib/core/keys.ts): backends scope conversations to it; OpenAI-compatible servers may log it as `user`. */
  user: string;
  /** Absent: a plain text question asked now (tools, tests). */
  facts?: QuestionFacts | undefined;
  /** Backends that keep the conversation: the one to continue. */
  conversationId?: string | undefined;
  /** Backends that keep none: the turns before this question, oldest first. */
  history?: readonly Turn[] | undefined;
  /** A picture the question is about: its URL, or its bytes once downloaded (as `imageInput` asked). */
  images?: readonly ImageInput[] | undefined;
  /**
   * The backend found `conversationId` gone (deleted, or finished) and answered in a new
   * conversation: the stored id must be forgotten. Called before the answer resolves.
   */
  onConversationGone?: (() => Promise<void>) | undefined;
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
  /** Files the backend made for the answer (Dify's `message_file`, a workflow's `files`); absolute http(s) URLs. */
  files?: AnswerFile[] | undefined;
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

/** The code of the `ModelError` `probe` throws when the backend does not serve the configured model (every question would fail). */
export const MODEL_NOT_SERVED = 'model_not_served';

export interface Answerer {
  /** Which backend (`dify`, `openai`): statistics and failure codes name it. */
  readonly kind: string;
  /**
   * Where the backend serves the files it links to (origin and path, e.g. `http://dify.lan/files/`): URLs
   * under it are fetched even on a private network (a self-hosted Dify). Only that prefix: trusting the
   * whole host would let a model's answer reach any service on the backend's machine.
   */
  readonly filesUrl?: string | undefined;
  /** The backend keeps the conversation (Dify); otherwise the store's history is sent along. */
  readonly keepsConversation: boolean;
  /** The base URL it calls, if any (`npm run doctor` reads the server's clock from its answers). */
  readonly endpoint?: string | undefined;
  /** `transcribe` can work (Dify's `/audio-to-text`; OpenAI-compatible with OPENAI_TRANSCRIBE_MODEL). */
  readonly transcribes: boolean;
  /** Ask and stream the answer. */
  chat(req: AnswerRequest, hooks?: ChatHooks): Promise<Answer>;
  /** Forget a conversation at the backend (Dify; nothing to do elsewhere); "not found" counts as done. */
  deleteConversation(conversationId: string, user: string): Promise<void>;
  /**
   * A cheap authenticated call that asks no model (the console's health view): what the backend
   * said, in a few words. Throws the backend's `ModelError` when it is unreachable or refuses the key,
   * and one coded `MODEL_NOT_SERVED` when it answers but does not serve the configured model.
   */
  probe(): Promise<string>;
  /**
   * How the backend takes a picture with a question: not at all, by URL (it fetches it), or as
   * bytes downloaded here (a URL still serves when the channel cannot download). Dify: the app's
   * settings (read once) and DIFY_IMAGE_UPLOAD; OpenAI-compatible: OPENAI_VISION.
   */
  imageInput(): Promise<'none' | 'url' | 'bytes'>;
  /**
   * Speech to text (Dify `/audio-to-text`, OpenAI-compatible `/audio/transcriptions`); throws a
   * `ModelError` when the backend cannot (`*_no_transcription` when it is not set up for it).
   */
  transcribe(audio: AudioInput, user: string): Promise<string>;
  /** What is wrong with the backend's setup for this bot, found at start (Dify: required inputs DIFY_INPUTS lacks). */
  setupProblems(): Promise<string[]>;
}

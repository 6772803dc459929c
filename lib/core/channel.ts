/**
 * The channel contract (docs/channels.md). Every place people chat with the bot, the WeChat Official
 * Account included, is a channel kind in its own folder under lib/channels/, registered once in
 * lib/channels/index.ts. A kind reads its own settings and makes channel instances; an instance
 * brings messages in (a verified webhook, or a long-poll loop: lib/core/poller.ts), hands each to
 * the core (`Bot.receive`: one claim per message, the same lifecycle, store and recovery for all),
 * and gets each answer out its own way:
 *
 * - `reply`: answers travel in the responses to the user's own requests, inside the platform's
 *   reply window (lib/core/bot.ts; WeChat's 5 s and re-deliveries), and with `1`;
 * - `send`: the channel sends each answer by itself once it settles (`deliver`, exactly once by
 *   `Store.takeAll`, on whichever instance settles it, or the recovery sweep), optionally showing it
 *   while it is written first (`progress`: throttled updates, then the one final send).
 *
 * The core formats nothing for a platform: each channel cuts an answer into its own messages
 * (`pages`) and says what it can carry.
 */
import type { Answerer } from './answerer';
import type { Bot, Decision, Inbound } from './bot';
import type { Env } from './env';
import type { CoreConfig } from './settings';
import { parseKey } from './keys';
import { SignatureError, failureText } from '../errors';
import type { AnswerPart, MessageRecord, Store } from '../store';
import type { Clock } from '../util/clock';
import type { Logger } from '../util/log';
import type { Check } from '../util/checks';
import type { FetchedMedia } from '../util/media';
import type { Texts } from './texts';
import type { PollSource } from './poller';
import type { LiveAnswers } from './live';

/** Sends of one answer that fail before anything arrives (the platform unreachable) are tried this many times in all. */
export const SEND_ATTEMPTS = 3;

export interface WebhookRequest {
  method: string;
  /** Query parameters (a repeated one by its first value). */
  query: Record<string, string | undefined>;
  /** The raw body; on laf, the few serialisations of the parsed body it may have been (lib/adapters/laf/entry.ts). */
  bodies: readonly string[];
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  /**
   * For a kind served under path prefixes (`ChannelKind.prefixes`): the path as its default
   * instance is served, the instance's segment taken out (`/v1/brand2/models` is `/v1/models`).
   * Absent for an exact path.
   */
  path?: string | undefined;
  /** Calls `listener` if the client goes away before the response has been sent (where the adapter can tell). */
  onAbort?: ((listener: () => void) => void) | undefined;
}

/** What an adapter writes a stream to (answer pages, the console, channels that stream: SSE). */
export interface StreamSink {
  /** False once the client is gone, or while it is behind (see `pending`). */
  write(chunk: string): boolean;
  end(): void;
  /** Bytes queued for a slow client. */
  readonly pending: number;
  onClose(listener: () => void): void;
}

/**
 * A response, or `drop`: no answer at all (the platform delivers again). `undelivered`: the adapter
 * calls it when the client was gone before the response could be sent (what it carried goes back).
 * `headers`: more response headers. A streamed response's `stream` is called once its status and
 * headers are out, and writes the body to the sink until it ends it (or the client leaves).
 */
export type WebhookResponse =
  | { status: number; contentType: string; body: string; headers?: Record<string, string> | undefined; undelivered?: () => void }
  | { status: number; headers: Record<string, string>; stream: (sink: StreamSink) => void }
  | { drop: true };

/** One line of the console's health view. */
export interface HealthItem {
  name: string;
  ok: boolean | undefined;
  text: string;
}

/** What a channel can show besides text (docs/channels.md "Parts"). */
export interface Carries {
  images: boolean;
  files: boolean;
}

/** Links to answer pages (lib/web/page/links.ts), for channels whose replies carry them. */
export interface Links {
  /** What a question's record keeps: the hash of its page token. */
  hash(questionKey: string): Promise<string>;
  /** A link to the question's page with `text`, as a reply carries it. */
  markup(questionKey: string, text: string): Promise<string>;
  /** The public URL of the answer's file number `index`, served by the page (platforms that fetch pictures by URL). */
  mediaUrl(questionKey: string, index: number): Promise<string>;
}

/** Showing an answer while it is written: at most one `update` per `everyMs`, then exactly one final send. */
export interface Progressive {
  everyMs: number;
  /** The answer's text so far (thinking removed, never past a blocked word). Best effort: a failure is logged. */
  update(q: MessageRecord, textSoFar: string): Promise<void>;
}

/** Sending an answer later, after a reply promised it (WeChat's customer-service API, lib/channels/wechat-oa/push.ts). */
export interface PushLater {
  available(user: string, askedAt: number): Promise<boolean>;
  afterPlaceholder(questionKey: string): Promise<void>;
}

/** A user's picture or voice, downloaded through the channel (refusals are `MediaError`s). */
export type MediaDownload = (mediaId: string) => Promise<{ bytes: Buffer; contentType: string }>;

export interface Channel {
  /** The kind (`wechat-oa`, `line`, …) and this instance's id ('' for the default one). */
  readonly kind: string;
  readonly instance: string;
  /** `kind` or `kind@instance`: how logs, the console and the store name it. */
  readonly name: string;
  /** The backend this instance's questions go to. */
  readonly answerer: Answerer;
  /** Inbound by webhook (served at the kind's path, `/<instance>` added for other instances). */
  readonly webhook?: ((req: WebhookRequest) => Promise<WebhookResponse>) | undefined;
  /** Inbound by long-polling (lib/core/poller.ts runs it, one poller per account across instances). */
  readonly poller?: PollSource | undefined;
  readonly delivery: 'reply' | 'send';
  /** `reply` channels: how the platform delivers a message (how many times, how long it waits for each). */
  readonly window?: { deliveries: number; timeoutMs: number } | undefined;
  /**
   * The messages a settled answer (Markdown) is sent as, in order. `parts`: its files (docs/rich-answers.md),
   * which a channel that carries them sends besides the text (their Markdown pictures need not repeat
   * in the text: lib/text/markdown.ts `withoutImages`).
   */
  pages(answer: string, parts: readonly AnswerPart[]): string[];
  /** `send` channels: send a settled answer, once (lib/core/worker.ts calls it; so does the recovery sweep). */
  deliver?(questionKey: string): Promise<void>;
  readonly progress?: Progressive | undefined;
  /** `reply` channels that can also send later (push mode). */
  readonly push?: PushLater | undefined;
  /**
   * `send` channels whose answers may stop part-way (a budget of messages per user message): `1`
   * asks for the rest, and this sends it (or says there is nothing). `reply` channels have `1` built in.
   */
  more?(m: Inbound): Promise<Decision>;
  /**
   * The answer so far is kept in the store while it is written (twice a second), for channels whose
   * platform asks for it from any instance (WeCom's stream refresh) or that resume it (a reloaded web page).
   */
  readonly savesProgress?: boolean | undefined;
  /** Downloads the user's pictures and voice, where the platform gives ids for them. */
  readonly media?: MediaDownload | undefined;
  readonly carries: Carries;
  /** The text of `/help` here. */
  readonly help: string;
  /** Health lines for the console. */
  health?(): Promise<HealthItem[]>;
  /**
   * What an owner checks before the platform finds out (`npm run doctor`, the console's checks
   * page): its credentials accepted (a token fetch), its public URL answering as the platform expects.
   * Each line passes or fails with the fix; nothing in the store changes.
   */
  selfCheck?(): Promise<Check[]>;
  /** Start and stop what runs by itself (timers); pollers are run by the app. */
  stop?(): void;
}

export interface ChannelDeps {
  instance: string;
  name: string;
  config: CoreConfig;
  bot: Bot;
  store: Store;
  clock: Clock;
  logger: Logger;
  answerer: Answerer;
  /** Answer-page links, when the page is on. */
  links?: Links | undefined;
  /** Fetch one of an answer's files safely (lib/util/media.ts), for the question's user. */
  fetchPart?: ((userKey: string, url: string) => Promise<FetchedMedia>) | undefined;
  /** In-process news of answers being written (lib/core/follow.ts), for kinds that declare `follows`. */
  live?: LiveAnswers | undefined;
}

export interface SettingsContext {
  core: CoreConfig;
  platform: 'node' | 'laf';
  /** '' for the default instance; a BOTS entry's id otherwise. */
  instance: string;
}

/** A channel kind: its folder's registration (lib/channels/index.ts). */
export interface ChannelKind<S = unknown> {
  readonly kind: string;
  /** Where its webhook is served ('/wechat'); other instances at `<path>/<instance>`. */
  readonly path?: string;
  /**
   * Path prefixes under which its webhook gets every request, whatever follows (`/v1` serves
   * `/v1/chat/completions`, `/v1/models`); other instances at `<prefix>/<instance>/…`. The webhook
   * reads which path was asked in `WebhookRequest.path`.
   */
  readonly prefixes?: readonly string[];
  /**
   * Its instances follow answers live (lib/core/follow.ts: a web chat, an HTTP stream): the worker
   * then tells this process's followers about each new piece of text at once.
   */
  readonly follows?: boolean;
  /**
   * Its answers use the answer page (PUBLIC_URL): links to it in replies, or the answer's pictures
   * served from it for the platform to fetch. Only then does a missing PUBLIC_URL get a warning at start.
   */
  readonly usesPage?: boolean;
  /** Every variable it reads. */
  readonly variables: readonly string[];
  /**
   * The store values (kv ids) an instance named `name` reads in `selfCheck`. `npm run doctor` builds its
   * channels on an in-memory store, so that a running server is not disturbed; it copies these into it
   * from the configured store first, only reading that (lib/store/peek.ts).
   */
  checkReads?(name: string): readonly string[];
  /** Keys of its default instance are bare ids (stored before keys had tags: the Official Account). */
  readonly bareKeys?: boolean;
  /** Its settings, read and checked; undefined when the environment does not turn it on. */
  settings(env: Env, ctx: SettingsContext): S | undefined;
  /** The secrets in its settings, for log redaction. */
  secrets(settings: S): readonly (string | undefined)[];
  create(settings: S, deps: ChannelDeps): Channel;
}

/** A configured channel instance: its kind and settings (lib/config.ts). */
export interface ChannelSetup {
  kind: ChannelKind;
  instance: string;
  settings: unknown;
  /** This instance's own backend settings (BOTS), else the deployment's. */
  backend?: BackendSetup | undefined;
}

/** A model backend kind: its folder's registration (lib/backends/index.ts). */
export interface BackendKind<S = unknown> {
  readonly kind: string;
  readonly variables: readonly string[];
  /** Settings, read and checked; undefined when this backend is not the one chosen. */
  settings(env: Env, ctx: SettingsContext): S;
  secrets(settings: S): readonly (string | undefined)[];
  create(settings: S): Answerer;
  /** A short description for the start-up log (base URL, model). */
  describe(settings: S): string;
}

export interface BackendSetup {
  kind: BackendKind;
  settings: unknown;
}

/** The channel instances of a deployment, found by name or by conversation key. */
export class Channels {
  private readonly byName = new Map<string, Channel>();
  private bare: Channel | undefined;

  constructor(
    readonly list: readonly Channel[],
    /** The kind whose default instance owns bare keys, if it is configured. */
    bareKind?: string,
  ) {
    for (const c of list) {
      this.byName.set(c.name, c);
      if (bareKind !== undefined && c.kind === bareKind && c.instance === '') this.bare = c;
    }
  }

  named(name: string): Channel | undefined {
    return this.byName.get(name);
  }

  /** The channel a conversation key belongs to. */
  forKey(userKey: string): Channel | undefined {
    const { kind, instance } = parseKey(userKey);
    if (kind === undefined) return this.bare;
    return this.byName.get(instance ? `${kind}@${instance}` : kind);
  }
}

/**
 * The first of the request's bodies whose signature `check` accepts (it throws `SignatureError`
 * otherwise); undefined when none does. One body on the Node server, a few on laf.
 */
export function verifiedBody(bodies: readonly string[], check: (body: string) => void): string | undefined {
  for (const body of bodies) {
    try {
      check(body);
      return body;
    } catch (err) {
      if (!(err instanceof SignatureError)) throw err;
    }
  }
  return undefined;
}

/** What a `send` channel sends of a settled answer: its pages, or the failure's reason. */
export function answerMessages(q: MessageRecord, texts: Texts): string[] {
  if (q.status === 'failed') return [failureText(q.failure?.kind ?? 'failed', texts, q.failure?.note)];
  return q.pages ?? [];
}

/** `kind` or `kind@instance`. */
export function channelName(kind: string, instance: string): string {
  return instance ? `${kind}@${instance}` : kind;
}

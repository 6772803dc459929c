/**
 * Wires the pieces (docs/architecture.md): config, store, clock and logger in; the core (bot,
 * worker), every channel instance the config turns on with its backend, the answer page and the
 * console out. Both adapters (laf functions, the Node server) call this once and reuse the result.
 */
import type { Config } from './config';
import { secretsOf } from './config';
import { Bot } from './core/bot';
import type { Answerer } from './core/answerer';
import type { BackendSetup, Channel, WebhookRequest, WebhookResponse } from './core/channel';
import { Channels, channelName } from './core/channel';
import { LiveAnswers } from './core/live';
import { Poller } from './core/poller';
import { Wakeups } from './core/wakeups';
import { AnswerWorker } from './core/worker';
import { errorLogFields } from './errors';
import type { Store } from './store';
import { markdownToText } from './text/markdown';
import { paginate } from './text/paging';
import { createWordFilter } from './text/filter';
import { fetchMedia, vetMediaUrl } from './util/media';
import type { MediaPolicy } from './util/media';
import type { Clock } from './util/clock';
import { systemClock } from './util/clock';
import type { Logger } from './util/log';
import { createLogger } from './util/log';
import { isWebChannel } from './channels/web/channel';
import { createChatHandler } from './web/chat/handler';
import type { ChatHandler } from './web/chat/handler';
import { createConsoleHandler } from './web/console/handler';
import type { ConsoleHandler } from './web/console/handler';
import { createPageHandler } from './web/page/handler';
import { createMediaServer } from './web/page/media';
import type { PageHandler, StreamTimings } from './web/page/handler';
import { PageLinks } from './web/page/links';
import { version } from '../package.json';

/** How long fetching one of an answer's files may take. */
const MEDIA_FETCH_MS = 15_000;

export type WebhookHandler = (req: WebhookRequest) => Promise<WebhookResponse>;

export interface App {
  config: Config;
  /** The core (lib/core/bot.ts): what each channel hands its messages to. */
  bot: Bot;
  /** Every channel instance on, found by name or conversation key. */
  channels: Channels;
  /** Webhooks by path: `/wechat`, `/line`, …; other instances at `/<kind path>/<instance>`. */
  routes: ReadonlyMap<string, WebhookHandler>;
  /**
   * The webhook that serves `path`: by exact path (`routes`), else under a kind's prefix (`/v1/…`),
   * the longest prefix first, the path as the default instance sees it handed over as `WebhookRequest.path`.
   * `instance` (laf's `?bot=`): that instance's route instead.
   */
  route(path: string, instance?: string): WebhookHandler | undefined;
  /** The answer page's requests (lib/web/page/handler.ts); 404 for everything while the page is off. */
  page: PageHandler;
  version: string;
  /** The operator console's requests (lib/web/console/handler.ts); 404 for everything without ADMIN_TOKEN. */
  console: ConsoleHandler;
  /** The web chat's requests (lib/web/chat/handler.ts); 404 for everything unless WEB_CHAT=on. */
  chat: ChatHandler;
  worker: AnswerWorker;
  /** One poller per polling channel instance (lib/core/poller.ts); started by `startPollers`. */
  pollers: readonly Poller[];
  /** Start the long-poll loops (the Node server does; a laf function cannot host them). */
  startPollers(): void;
  store: Store;
  logger: Logger;
  /** Stop pollers and timers, wait for answers in flight, then close the store. */
  close(): Promise<void>;
}

export interface AppDeps {
  store: Store;
  /** The deployment's model backend; built from the config (LLM_PROVIDER) when omitted. */
  answerer?: Answerer;
  clock?: Clock;
  logger?: Logger;
  /** Answer-page stream timings (tests shorten them). */
  pageTimings?: StreamTimings;
  /** Poller options tests shorten (backoff, standby). */
  pollerTimings?: { standbyMs?: number; backoff?: { baseMs: number; maxMs: number } };
}

/** The route a channel instance's webhook is served at. */
export function webhookPath(kindPath: string, instance: string): string {
  return instance ? `${kindPath}/${instance}` : kindPath;
}

/** The backend a setup names, built once per distinct setting. */
function backendCache(): (b: BackendSetup) => Answerer {
  const made = new Map<string, Answerer>();
  return (b) => {
    const key = `${b.kind.kind}:${JSON.stringify(b.settings)}`;
    let a = made.get(key);
    if (!a) made.set(key, (a = b.kind.create(b.settings)));
    return a;
  };
}

export function createApp(config: Config, deps: AppDeps): App {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger({ level: config.logLevel, secrets: secretsOf(config) });
  const { store } = deps;
  const backendOf = backendCache();
  const answerer = deps.answerer ?? backendOf(config.backend);
  const filter = config.guards.blockedWords.length > 0 ? createWordFilter(config.guards.blockedWords) : undefined;
  // Said only where an answer would use the page (a web chat or an iLink bot alone never links to it).
  if (config.page.warning && config.channels.some((c) => c.kind.usesPage === true)) logger.warn(config.page.warning);
  const links = config.page.enabled ? new PageLinks(store, config.page) : undefined;
  const live = new LiveAnswers();
  // In-process news of answers being written, for answer pages, the console's Try it and channels that follow answers (the web chat, the API).
  const watched = links !== undefined || config.console.token !== undefined || config.channels.some((c) => c.kind.follows === true);
  const wakeups = new Wakeups(clock, store);
  // The registry is filled below; the worker and the bot look channels up in it.
  const registry: { channels: Channels } = { channels: new Channels([]) };
  // An answer's files, fetched as if their URLs were hostile; where the question's backend serves its files is trusted.
  const mediaPolicy = (userKey: string): MediaPolicy => {
    const own = (registry.channels.forKey(userKey)?.answerer ?? answerer).filesUrl;
    return { trustedHosts: new Set(config.media.allowHosts), trustedPrefixes: own ? [own] : [], maxBytes: config.media.maxBytes, timeoutMs: MEDIA_FETCH_MS };
  };
  const fetchPart = (userKey: string, url: string) => fetchMedia(url, mediaPolicy(userKey));
  const worker = new AnswerWorker({
    config,
    store,
    answerer,
    channels: { forKey: (key) => registry.channels.forKey(key) },
    clock,
    logger,
    live: watched ? live : undefined,
    filter,
    vetMedia: (userKey, url) => vetMediaUrl(url, mediaPolicy(userKey)),
  });
  const bot = new Bot({ config, store, clock, logger, worker, wakeups, links, filter });

  const list: Channel[] = [];
  const routes = new Map<string, WebhookHandler>();
  const prefixed: { prefix: string; kindPrefix: string; instance: string; handler: WebhookHandler }[] = [];
  for (const setup of config.channels) {
    const name = channelName(setup.kind.kind, setup.instance);
    const channel = setup.kind.create(setup.settings, {
      instance: setup.instance,
      name,
      config,
      bot,
      store,
      clock,
      logger,
      answerer: setup.backend ? backendOf(setup.backend) : answerer,
      links,
      fetchPart,
      ...(setup.kind.follows ? { live } : {}),
    });
    list.push(channel);
    if (channel.webhook && setup.kind.path) routes.set(webhookPath(setup.kind.path, setup.instance), channel.webhook);
    for (const p of channel.webhook ? (setup.kind.prefixes ?? []) : []) prefixed.push({ prefix: webhookPath(p, setup.instance), kindPrefix: p, instance: setup.instance, handler: channel.webhook as WebhookHandler });
  }
  prefixed.sort((a, b) => b.prefix.length - a.prefix.length);
  const route = (path: string, instance = ''): WebhookHandler | undefined => {
    const exact = routes.get(instance ? `${path}/${instance}` : path);
    if (exact) return exact;
    for (const r of prefixed) {
      // On laf the instance comes as `?bot=`, and the path is the default instance's.
      const prefix = instance ? (r.instance === instance ? r.kindPrefix : undefined) : r.prefix;
      if (prefix === undefined || (path !== prefix && !path.startsWith(`${prefix}/`))) continue;
      const rest = path.slice(prefix.length);
      return (req) => r.handler({ ...req, path: r.kindPrefix + rest });
    }
    return undefined;
  };
  // The console's Try it answers as the first channel that replies in its requests (the Official
  // Account) does, with one delivery, on its own key.
  const like = list.find((c) => c.delivery === 'reply' && c.instance === '');
  const tryChannel: Channel = {
    kind: 'console',
    instance: '',
    name: 'console',
    answerer,
    delivery: 'reply',
    window: like?.window ?? { deliveries: 1, timeoutMs: config.delivery.replyDeadlineMs + 500 },
    pages: like ? (a, p) => like.pages(a, p) : (a) => paginate(markdownToText(a), 1800, config.texts.pageHint),
    carries: { images: false, files: false },
    help: config.texts.help,
  };
  const bareKind = config.channels.find((c) => c.kind.bareKeys)?.kind.kind;
  registry.channels = new Channels([...list, tryChannel], bareKind);

  // Say at start what would make every question fail (a required Dify input DIFY_INPUTS lacks).
  for (const a of new Set([answerer, ...list.map((c) => c.answerer)])) {
    void a
      .setupProblems()
      .then((problems) => problems.forEach((p) => logger.error(p)))
      .catch((err) => logger.warn('could not check the backend’s setup', errorLogFields(err)));
  }
  const pollers = list.flatMap((c) => (c.poller ? [new Poller(c.poller, { store, clock, logger, takeoverMs: config.delivery.pollerTakeoverMs, ...deps.pollerTimings })] : []));

  // One media server for the answer page and the web chat: a file both show is fetched once, under one set of limits.
  const media = createMediaServer({ fetchPart, clock, logger });
  const page = createPageHandler({ config, store, clock, logger, live, pushesLater: (key) => registry.channels.forKey(key)?.push !== undefined, media }, deps.pageTimings);
  const chat = createChatHandler({ config, store, clock, logger, live, channel: list.find(isWebChannel), follow: page.follow, media });
  const consoleHandler = createConsoleHandler({ config, store, clock, logger, bot, tryChannel, channels: registry.channels, follow: page.follow, answerer, version });
  return {
    config,
    bot,
    channels: registry.channels,
    routes,
    route,
    page,
    version,
    console: consoleHandler,
    chat,
    worker,
    pollers,
    startPollers() {
      for (const p of pollers) p.start();
    },
    store,
    logger,
    async close() {
      await Promise.all(pollers.map((p) => p.stop()));
      for (const c of list) c.stop?.();
      await worker.idle();
      await store.close();
    },
  };
}

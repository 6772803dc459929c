/**
 * Wires the pieces: config, store, Dify client, clock and logger in; the handler out.
 * Both adapters (laf function, Node server) call this once and reuse the result.
 */
import type { Config } from './config';
import { secretsOf } from './config';
import { Bot } from './core/bot';
import type { Clock } from './util/clock';
import { systemClock } from './util/clock';
import { createHandler } from './channels/wechat-oa/handler';
import type { Handler } from './channels/wechat-oa/handler';
import { Pusher } from './channels/wechat-oa/push';
import { Wakeups } from './core/wakeups';
import { AnswerWorker } from './core/worker';
import type { Answerer } from './core/answerer';
import { createDifyClient } from './backends/dify/client';
import { createOpenAIClient } from './backends/openai/client';
import { LiveAnswers } from './core/live';
import type { Logger } from './util/log';
import { createLogger } from './util/log';
import { createConsoleHandler } from './web/console/handler';
import type { ConsoleHandler } from './web/console/handler';
import { PageLinks } from './web/page/links';
import { createPageHandler } from './web/page/handler';
import type { PageHandler, StreamTimings } from './web/page/handler';
import type { Store } from './store';
import { TOKEN_INVALID, createWechatApi } from './channels/wechat-oa/api';
import { WechatApiError, errorLogFields } from './errors';
import { createWordFilter } from './text/filter';
import { channelOf } from './core/channel';
import type { Channel } from './core/channel';
import { createLineApi } from './channels/line/api';
import type { LineApi } from './channels/line/api';
import { createLineChannel } from './channels/line/channel';
import { createDiscordApi } from './channels/discord/api';
import type { DiscordApi } from './channels/discord/api';
import { createDiscordChannel } from './channels/discord/channel';
import type { WechatApi } from './channels/wechat-oa/api';
import { TokenCache } from './channels/wechat-oa/token';
import { version } from '../package.json';

export interface App {
  handler: Handler;
  /** The answer page's requests (lib/web/page/handler.ts); 404 for everything while the page is off. */
  page: PageHandler;
  version: string;
  /** The operator console's requests (lib/web/console/handler.ts); 404 for everything without ADMIN_TOKEN. */
  console: ConsoleHandler;
  /** LINE and Discord, when configured (docs/channels.md). */
  channels: { line?: Channel; discord?: Channel };
  worker: AnswerWorker;
  store: Store;
  logger: Logger;
  /** Wait for answers in flight, then close the store. */
  close(): Promise<void>;
}

export interface AppDeps {
  store: Store;
  /** The model backend; built from the config (LLM_PROVIDER) when omitted. */
  answerer?: Answerer;
  clock?: Clock;
  logger?: Logger;
  /** The WeChat server API (push mode); built from the config when omitted. */
  wechatApi?: WechatApi;
  /** Answer-page stream timings (tests shorten them). */
  pageTimings?: StreamTimings;
  lineApi?: LineApi;
  discordApi?: DiscordApi;
}

/** The backend LLM_PROVIDER names (lib/core/answerer.ts). */
export function createAnswerer(config: Config): Answerer {
  if (config.llm.provider === 'openai' && config.openai) {
    return createOpenAIClient(config.openai, { vision: config.media.openaiVision, transcribeModel: config.media.openaiTranscribeModel });
  }
  return createDifyClient({
    baseUrl: config.dify.baseUrl,
    apiKey: config.dify.apiKey,
    idleTimeoutMs: config.dify.idleTimeoutMs,
    answerTimeoutMs: config.dify.answerTimeoutMs,
    inputsTemplate: config.dify.inputs,
  });
}

/** Download a user's media by MediaId with the shared access token (fetched again once when WeChat says it expired). */
function mediaDownloader(wechat: { api: WechatApi; tokens: TokenCache }, maxBytes: number) {
  return async (mediaId: string) => {
    const token = await wechat.tokens.get();
    try {
      return await wechat.api.media(token, mediaId, maxBytes);
    } catch (err) {
      if (!(err instanceof WechatApiError && TOKEN_INVALID.has(err.errcode))) throw err;
      await wechat.tokens.invalidate(token);
      return wechat.api.media(await wechat.tokens.get(), mediaId, maxBytes);
    }
  };
}

export function createApp(config: Config, deps: AppDeps): App {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger({ level: config.logLevel, secrets: secretsOf(config) });
  const answerer = deps.answerer ?? createAnswerer(config);
  const { store } = deps;
  const { appId, appSecret } = config.wechat;
  // The server API (push, the console's menu) needs the app's id and secret.
  let wechat: { api: WechatApi; tokens: TokenCache } | undefined;
  if (appId && appSecret) {
    const api = deps.wechatApi ?? createWechatApi({ baseUrl: config.wechat.apiBase, appId, appSecret });
    wechat = { api, tokens: new TokenCache({ store, api, clock, logger, appId }) };
  }
  const pusher = config.wechat.push && wechat ? new Pusher({ config, store, clock, logger, ...wechat }) : undefined;
  const media = wechat ? mediaDownloader(wechat, config.media.maxBytes) : undefined;
  const filter = config.guards.blockedWords.length > 0 ? createWordFilter(config.guards.blockedWords) : undefined;
  // Say at start what would make every question fail (a required Dify input DIFY_INPUTS lacks).
  void answerer
    .setupProblems()
    .then((problems) => problems.forEach((p) => logger.error(p)))
    .catch((err) => logger.warn('could not check the backend’s setup', errorLogFields(err)));
  // Each settled answer goes out its own channel's way (docs/channels.md); WeChat's only in push mode.
  const channels: App['channels'] = {};
  const onSettled = (q: { _id: string; user: string }): Promise<void> => {
    const channel = channelOf(q.user);
    if (channel === 'wechat') return pusher ? pusher.deliver(q._id) : Promise.resolve();
    return channels[channel]?.deliver(q._id) ?? Promise.resolve();
  };
  const wakeups = new Wakeups(clock, store);
  const live = new LiveAnswers();
  if (config.page.warning) logger.warn(config.page.warning);
  const links = config.page.enabled ? new PageLinks(store, config.page) : undefined;
  // In-process news of answers being written, for answer pages and the console's Try it.
  const watched = links !== undefined || config.console.token !== undefined;
  const worker = new AnswerWorker({ config, store, answerer, clock, logger, onSettled, live: watched ? live : undefined, media, filter });
  const transcribes = media !== undefined && (config.llm.provider === 'dify' || config.media.openaiTranscribeModel !== undefined);
  const bot = new Bot({ config, store, clock, logger, worker, answerer, wakeups, push: pusher, links, filter, transcribes });
  const handler = createHandler({ config, bot, clock, logger });
  if (config.line) {
    const api = deps.lineApi ?? createLineApi({ apiBase: config.line.apiBase, accessToken: config.line.accessToken });
    channels.line = createLineChannel({ config, bot, store, clock, logger, api });
  }
  if (config.discord) {
    const api = deps.discordApi ?? createDiscordApi({ apiBase: config.discord.apiBase, applicationId: config.discord.applicationId });
    channels.discord = createDiscordChannel({ config, bot, store, clock, logger, api });
  }
  const page = createPageHandler({ config, store, clock, logger, live }, deps.pageTimings);
  const consoleHandler = createConsoleHandler({ config, store, clock, logger, bot, follow: page.follow, answerer, wechat, push: pusher, version });
  return {
    handler,
    page,
    version,
    console: consoleHandler,
    channels,
    worker,
    store,
    logger,
    async close() {
      pusher?.stop();
      await worker.idle();
      await store.close();
    },
  };
}

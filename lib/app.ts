/**
 * Wires the pieces: config, store, Dify client, clock and logger in; the handler out.
 * Both adapters (laf function, Node server) call this once and reuse the result.
 */
import type { Config } from './config';
import { secretsOf } from './config';
import { Bot } from './bot/bot';
import type { Clock } from './bot/clock';
import { systemClock } from './bot/clock';
import { createHandler } from './bot/handler';
import type { Handler } from './bot/handler';
import { AnswerWorker } from './bot/worker';
import { createDifyClient } from './dify/client';
import type { DifyClient } from './dify/client';
import type { Logger } from './log';
import { createLogger } from './log';
import type { Store } from './store';

export interface App {
  handler: Handler;
  worker: AnswerWorker;
  store: Store;
  logger: Logger;
  /** Wait for answers in flight, then close the store. */
  close(): Promise<void>;
}

export interface AppDeps {
  store: Store;
  dify?: DifyClient;
  clock?: Clock;
  logger?: Logger;
}

export function createApp(config: Config, deps: AppDeps): App {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger({ level: config.logLevel, secrets: secretsOf(config) });
  const dify = deps.dify ?? createDifyClient({ baseUrl: config.dify.baseUrl, apiKey: config.dify.apiKey, idleTimeoutMs: config.dify.idleTimeoutMs });
  const { store } = deps;
  const worker = new AnswerWorker({ config, store, dify, clock, logger });
  const bot = new Bot({ config, store, clock, logger, worker, dify });
  const handler = createHandler({ config, bot, clock, logger });
  return {
    handler,
    worker,
    store,
    logger,
    async close() {
      await worker.idle();
      await store.close();
    },
  };
}

/**
 * The self-hosted server process (`npm start`, scripts/server.ts): reads the environment once, opens
 * the store (MongoDB with MONGODB_URI, else the embedded file store in DATA_DIR), serves every
 * channel's webhook, the answer page, the console and /healthz, runs the pollers and the recovery
 * sweep, and stops cleanly on SIGTERM.
 */
import { createApp } from '../../app';
import { loadConfig, secretsOf } from '../../config';
import type { ChannelKind } from '../../core/channel';
import { ConfigError, errorLogFields } from '../../errors';
import { createLogger } from '../../util/log';
import { createHttpServer } from './http';
import { listenWide } from './listen';
import type { Listening } from './listen';
import { openStore } from '../../store';
import type { Backend } from '../../store/collection';
import { nedbBackend } from '../../store/nedb';

const LISTEN_BACKLOG = 4096;

export interface ServerRunOptions {
  /** Channel kinds besides the registered ones (tests: the example channel of docs/channels.md). */
  extraKinds?: readonly ChannelKind[];
  /** A store backend given outright (tests: several processes on one shared store). */
  backend?: () => Backend;
}

export async function runServer(opts: ServerRunOptions = {}): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, opts.extraKinds ? { extraKinds: opts.extraKinds } : {});
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Configuration error: ${err.message}\nSee README.md "Configuration".\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config) });
  let store;
  try {
    store = await openStore(config.store, { embedded: nedbBackend, backend: opts.backend?.(), warn: (msg, fields) => logger.warn(msg, fields) });
  } catch (err) {
    // A MongoDB URI may carry a password: the message goes through the redacting logger.
    logger.error('cannot open the store', errorLogFields(err));
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
  const app = createApp(config, { store, logger });
  const storeKind = store.kind;
  const server = createHttpServer({
    webhook: (path) => app.route(path),
    logger: app.logger,
    maxBodyBytes: config.server.maxBodyBytes,
    page: app.page,
    console: app.console,
    chat: app.chat,
    health: async () => ({ store: storeKind }),
  });
  // Answers left pending by a process that died are taken over once they go stale.
  const sweep = () =>
    void app.worker.sweep().then(
      (recovered) => app.logger.debug('recovery sweep', { recovered }),
      (err) => app.logger.warn('recovery sweep failed', errorLogFields(err)),
    );
  const sweeper = setInterval(sweep, config.delivery.staleAfterMs);
  sweeper.unref();
  setTimeout(sweep, config.delivery.staleAfterMs + 1000).unref();

  // A deep accept queue: Node's default (511) drops the SYNs of a burst beyond it, and a client
  // retries only after a second, which WeChat counts against its 5 s (the kernel caps this at somaxconn).
  // Several descriptors on it, so a burst is accepted while the loop is busy (lib/adapters/server/listen.ts).
  let listening: Listening;
  try {
    listening = await listenWide(server, { port: config.server.port, host: config.server.host, backlog: LISTEN_BACKLOG, warn: (msg, fields) => app.logger.warn(msg, fields) });
  } catch (err) {
    app.logger.error('cannot listen', { host: config.server.host, port: config.server.port, ...errorLogFields(err) });
    process.exit(1);
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.server.port;
  app.logger.info('listening', {
    url: `http://${config.server.host}:${port}`,
    webhooks: [...app.routes.keys()],
    channels: app.channels.list.filter((c) => c.kind !== 'console').map((c) => c.name),
    acceptDescriptors: 1 + listening.extra,
    store: storeKind,
    model: `${config.backend.kind.kind}: ${config.backend.kind.describe(config.backend.settings)}`,
  });
  app.startPollers();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.logger.info('stopping', { signal });
    clearInterval(sweeper);
    listening.close();
    server.close();
    // Pollers hand their leases back at once (another instance takes over); answers in flight get a
    // short grace period; whatever is left is recovered after restart.
    const pollers = Promise.all(app.pollers.map((p) => p.stop())).catch(() => undefined);
    void Promise.race([pollers.then(() => app.worker.idle()), new Promise((r) => setTimeout(r, 8000))]).then(async () => {
      await app.store.close().catch(() => undefined);
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('unhandledRejection', (err) => app.logger.error('unhandled rejection', { message: String(err) }));
}

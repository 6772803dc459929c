/**
 * The self-hosted server process (`npm start`, scripts/server.ts): reads the environment once, opens
 * the store (MongoDB with MONGODB_URI, else the embedded file store in DATA_DIR), serves every
 * channel's webhook, the answer page, the console and /healthz, runs the pollers and the recovery
 * sweep, and stops cleanly on SIGTERM:
 *
 * 1. it stops accepting (the listeners close; pollers hand their leases back, so another instance
 *    polls at once);
 * 2. deliveries already in their reply window get to reply (WeChat's 5 s), and answers being written
 *    get the grace period (STOP_GRACE_S) to finish;
 * 3. whatever is still being written then is handed over (lib/core/worker.ts `handOver`): stale at
 *    once, so another instance, or this one after its restart, asks again, once;
 * 4. the store is flushed and closed (the embedded store's lock released) and the process exits 0.
 *
 * A second SIGTERM (or SIGINT) exits at once; what was in flight is recovered as after a crash.
 */
import { createApp } from '../../app';
import { loadConfig, secretsOf } from '../../config';
import type { ChannelKind } from '../../core/channel';
import { ConfigError, errorLogFields } from '../../errors';
import { createLogger, logFormatFor } from '../../util/log';
import type { IncomingMessage, ServerResponse } from 'http';
import { createHttpServer } from './http';
import { listenWide } from './listen';
import type { Listening } from './listen';
import { openStore } from '../../store';
import type { Backend } from '../../store/collection';
import { nedbBackend } from '../../store/nedb';

const LISTEN_BACKLOG = 4096;
/** Of the grace period, what is kept for handing over unfinished answers and closing the store. */
const HANDOVER_RESERVE_MS = 1000;

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
  const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config), ...logFormatFor(config.logFormat, process.stdout.isTTY) });
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
    maxConnections: config.server.maxConnections,
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
  // Answers a stopped process handed over are stale already: take them at once. Those of a process
  // that died just now go stale later.
  setTimeout(sweep, 0).unref();
  setTimeout(sweep, config.delivery.staleAfterMs + 1000).unref();

  // Deliveries in progress (webhooks and health checks; not answer-page or console streams, which
  // resume elsewhere): a stop lets them finish their reply window.
  let inFlight = 0;
  let drained: (() => void) | undefined;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith('/a/') || url.startsWith('/admin')) return;
    inFlight++;
    res.on('close', () => {
      if (--inFlight === 0) drained?.();
    });
  });
  const deliveriesDone = () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (drained = r)));

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
    if (stopping) {
      // A second signal: the owner wants it gone now. What was in flight is recovered as after a crash.
      app.logger.warn('stopping at once: a second signal', { signal });
      process.exit(1);
    }
    stopping = true;
    const started = Date.now();
    const graceMs = config.server.stopGraceMs;
    app.logger.info('stopping', { signal, graceMs, deliveries: inFlight, answers: app.worker.busy });
    clearInterval(sweeper);
    listening.close();
    server.close();
    const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
    void (async () => {
      // Pollers hand their leases back at once (another instance takes over).
      const pollers = Promise.all(app.pollers.map((p) => p.stop())).catch(() => undefined);
      const finished = Promise.all([deliveriesDone(), pollers, app.worker.idle()]).then(() => true);
      const inTime = await Promise.race([finished, wait(graceMs - HANDOVER_RESERVE_MS).then(() => false)]);
      const left = { deliveries: inFlight, answers: app.worker.busy };
      const handedOver = inTime ? 0 : await app.worker.handOver(HANDOVER_RESERVE_MS / 2);
      for (const c of app.channels.list) c.stop?.();
      server.closeAllConnections();
      await app.store.close().catch((err) => app.logger.warn('could not close the store cleanly', errorLogFields(err)));
      app.logger.info('stopped', { ms: Date.now() - started, inTime, ...(inTime ? {} : { left, handedOver }) });
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('unhandledRejection', (err) => app.logger.error('unhandled rejection', { message: String(err) }));
}

/**
 * For `npm run bench`: two instances of the bot on one store in one process, each with its own
 * HTTP server. Instance A takes the webhook (its worker writes the answers); instance B only
 * serves answer pages, so a page on B follows an answer through the store alone, as a page
 * served by another instance would. Prints {"a": url, "b": url} once both listen.
 */
import { freePort } from './support';
import { createApp } from '../lib/app';
import type { App } from '../lib/app';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/util/log';
import { createHttpServer } from '../lib/adapters/server/http';
import { openStore } from '../lib/store';
import { nedbBackend } from '../lib/store/nedb';

async function main(): Promise<void> {
  const [portA, portB] = [await freePort(), await freePort()];
  const logger = createLogger({ level: 'warn' });
  const base = { ...process.env, LOG_LEVEL: 'warn' };
  const configA = loadConfig({ ...base, PUBLIC_URL: `http://127.0.0.1:${portA}` });
  const store = await openStore(configA.store, { embedded: nedbBackend });
  const a: App = createApp(configA, { store, logger });
  const b: App = createApp(loadConfig({ ...base, PUBLIC_URL: `http://127.0.0.1:${portB}` }), { store, logger });
  const serve = (app: App, port: number) =>
    new Promise<void>((r) => createHttpServer({ webhook: (path) => app.routes.get(path), page: app.page, logger, maxBodyBytes: 1 << 18 }).listen(port, '127.0.0.1', 4096, () => r()));
  await serve(a, portA);
  await serve(b, portB);
  console.log(JSON.stringify({ a: `http://127.0.0.1:${portA}`, b: `http://127.0.0.1:${portB}` }));
}

void main();

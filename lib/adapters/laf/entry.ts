/**
 * The laf adapter (docs/laf.md): turns laf's `ctx` into a handler request and the response back
 * into what laf sends. The raw XML comes from `ctx.request.rawBody`, because laf's XML body parser
 * lower-cases tags and folds whitespace in user text. The store is the app's MongoDB,
 * `cloud.mongo.db`: laf gives each function its own module state (and a publish a fresh one), and
 * a pod's files are lost at restart and not shared by instances, so the embedded store is refused.
 */
import type { MongoDriverObject } from '@lafjs/cloud';
import { createApp } from '../../app';
import type { App } from '../../app';
import { CONFIG_VARIABLES, loadConfig, secretsOf } from '../../config';
import type { Config } from '../../config';
import { ConfigError, errorLogFields } from '../../errors';
import { createLogger, logFormatFor } from '../../util/log';
import type { PageOp, PageRequest, PageResponse } from '../../web/page/handler';
import type { StreamSink } from '../../core/channel';
import { openStore } from '../../store';
import type { Store } from '../../store';

export interface LafCloud {
  /** `cloud.mongo.db` is a MongoDB driver 5.9 `Db` (docs/laf.md). */
  mongo?: { db?: MongoDriverObject['db'] };
}

let cachedApp: { fingerprint: string; app: Promise<App> } | undefined;
let cachedStore: { fingerprint: string; store: Promise<Store> } | undefined;

/** laf applies environment changes without a restart: rebuild the app when a setting changes. */
function fingerprint(): string {
  return JSON.stringify(CONFIG_VARIABLES.map((name) => process.env[name] ?? null));
}

/** The store outlives app rebuilds: one connection per function, whatever settings change. */
function lafStore(config: Config, cloud: LafCloud): Promise<Store> {
  const db = cloud.mongo?.db;
  const fp = JSON.stringify([config.store.kind, Boolean(db)]);
  if (cachedStore?.fingerprint === fp) return cachedStore.store;
  const store = (async () => {
    if (config.store.kind === 'embedded') {
      throw new ConfigError('STORE', 'embedded is not available on laf (each function and publish would open its own copy, and a pod loses its files at restart); leave STORE unset to use the app\'s MongoDB');
    }
    if (!db) throw new ConfigError('STORE', 'laf provided no cloud.mongo.db; this app needs laf\'s MongoDB');
    return openStore(config.store, { db });
  })();
  cachedStore = { fingerprint: fp, store };
  store.catch(() => {
    if (cachedStore?.store === store) cachedStore = undefined;
  });
  return store;
}

async function build(cloud: LafCloud): Promise<App> {
  const config = loadConfig(process.env, { platform: 'laf' });
  // laf's function log is no terminal: JSON lines unless LOG_FORMAT=pretty asks otherwise (no colour).
  const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config), ...logFormatFor(config.logFormat, false) });
  return createApp(config, { store: await lafStore(config, cloud), logger });
}

/** The app for the current environment, built once per setting change and shared by requests. */
export function lafApp(cloud: LafCloud): Promise<App> {
  const fp = fingerprint();
  if (!cachedApp || cachedApp.fingerprint !== fp) {
    const app = build(cloud);
    cachedApp = { fingerprint: fp, app };
    // A failed build (bad setting) is retried on the next request, not cached forever.
    app.catch(() => {
      if (cachedApp?.app === app) cachedApp = undefined;
    });
  }
  return cachedApp.app;
}

/**
 * The app, or the text of the 500 to send when it cannot start (the log says why). `detail`: name
 * the setting at fault (the webhook, which the owner tests); a public page says only that it failed.
 */
async function appOr500(ctx: FunctionContext, cloud: LafCloud, detail: boolean): Promise<App | { error: string }> {
  try {
    return await lafApp(cloud);
  } catch (err) {
    console.error(JSON.stringify({ level: 'error', msg: 'cannot start: configuration', ...errorLogFields(err) }));
    ctx.response?.status(500);
    ctx.response?.setHeader('Content-Type', 'text/plain; charset=utf-8');
    return { error: detail && err instanceof ConfigError ? `Configuration error: ${err.message}` : 'Internal Server Error' };
  }
}

/** Handle one laf invocation of the `wechat` function (the Official Account's webhook). */
export function handleLafRequest(ctx: FunctionContext, cloud: LafCloud): Promise<unknown> {
  return handleLafWebhook(ctx, cloud, '/wechat');
}

/** `__init__`: runs at every instance start. Opens the store (creating indexes) and recovers answers
 * left pending by a dead instance, now and once they have gone stale. */
export async function initLaf(ctx: FunctionContext, cloud: LafCloud): Promise<unknown> {
  // laf calls `__init__` with method INIT at an instance's start (docs/laf.md). Over HTTP it is a public
  // function like any other: a caller must not be able to run sweeps and stack their timers at will.
  if (String(ctx.method ?? '').toUpperCase() !== 'INIT') {
    ctx.response?.status(404);
    return 'Function Not Found';
  }
  try {
    const app = await lafApp(cloud);
    const staleMs = loadConfig(process.env).delivery.staleAfterMs;
    const recovered = await app.worker.sweep();
    setTimeout(() => void app.worker.sweep().catch((err) => app.logger.warn('recovery sweep failed', errorLogFields(err))), staleMs + 1000);
    app.logger.info('laf instance started', { recovered });
    return { ok: true, recovered };
  } catch (err) {
    console.error(JSON.stringify({ level: 'error', msg: 'laf init failed', ...errorLogFields(err) }));
    return { ok: false };
  }
}

/** A first string value of a query or body field (laf's parsers may give arrays or objects). */
const oneString = (v: unknown) => (typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : undefined);

const PAGE_OPS: Record<string, PageOp> = { events: 'events', state: 'state', read: 'read' };

/** `/answer?t=<token>[&x=events|state|read][&from=…]` or `/answer?asset=<name>` (laf routes by function name). */
function lafPageRequest(ctx: FunctionContext): PageRequest {
  const q = (ctx.query ?? {}) as Record<string, unknown>;
  const method = String(ctx.method ?? 'GET').toUpperCase();
  const asset = oneString(q['asset']);
  if (asset !== undefined) return { op: 'asset', method, name: asset };
  const m = oneString(q['m']);
  if (m !== undefined) return /^\d{1,2}$/.test(m) ? { op: 'media', method, token: oneString(q['t']) ?? '', index: Number(m) } : { op: 'page', method, token: '' };
  const x = oneString(q['x']);
  // An unknown `x` names no endpoint: answered like an unknown token.
  const op = x === undefined ? 'page' : PAGE_OPS[x];
  const header = (ctx.headers as Record<string, unknown> | undefined)?.['last-event-id'];
  return { op: op ?? 'page', method, token: op ? (oneString(q['t']) ?? '') : '', from: oneString(q['from']), lastEventId: typeof header === 'string' ? header : undefined };
}

/** Handle one laf invocation of the `answer` function (docs/answer-page.md). */
export async function handleLafAnswer(ctx: FunctionContext, cloud: LafCloud): Promise<unknown> {
  const app = await appOr500(ctx, cloud, false);
  if ('error' in app) return app.error;
  return sendLaf(ctx, await app.page(lafPageRequest(ctx)));
}

/**
 * Handle one laf invocation of the `admin` function: the console (docs/console.md), at
 * `/admin?p=<path>`, since laf routes by function name and `/admin/login` would name another.
 * laf has parsed a form body into `ctx.body` already.
 */
export async function handleLafConsole(ctx: FunctionContext, cloud: LafCloud): Promise<unknown> {
  const app = await appOr500(ctx, cloud, false);
  if ('error' in app) return app.error;
  const query: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries((ctx.query ?? {}) as Record<string, unknown>)) if (k !== 'p') query[k] = oneString(v);
  const form: Record<string, string | undefined> = {};
  const body = ctx.body as unknown;
  if (body && typeof body === 'object' && !Buffer.isBuffer(body)) for (const [k, v] of Object.entries(body as Record<string, unknown>)) form[k] = oneString(v);
  const headers = (ctx.headers ?? {}) as Record<string, unknown>;
  const path = oneString((ctx.query as Record<string, unknown> | undefined)?.['p']) ?? '';
  const out = await app.console({
    method: String(ctx.method ?? 'GET').toUpperCase(),
    // Only a path of ours: anything else is an unknown page, answered like one.
    path: /^(\/[a-z0-9./-]*)?$/.test(path) ? path : '/unknown',
    cookie: oneString(headers['cookie']),
    form,
    csrfHeader: oneString(headers['x-csrf-token']),
    query,
    lastEventId: oneString(headers['last-event-id']),
    // Express's request: its socket's peer is laf's gateway, the same for every client (docs/console.md).
    remoteAddress: (ctx.request as { socket?: { remoteAddress?: string } } | undefined)?.socket?.remoteAddress,
    headers,
  });
  return sendLaf(ctx, out);
}

/**
 * Handle one laf invocation of the `chat` function: the web chat (docs/web-chat.md), at
 * `/chat?p=<path>` (laf routes by function name, as for the console). laf has parsed a JSON or form
 * body into `ctx.body` already.
 */
export async function handleLafChat(ctx: FunctionContext, cloud: LafCloud): Promise<unknown> {
  const app = await appOr500(ctx, cloud, false);
  if ('error' in app) return app.error;
  const query: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries((ctx.query ?? {}) as Record<string, unknown>)) if (k !== 'p') query[k] = oneString(v);
  const raw = ctx.body as unknown;
  const body = raw && typeof raw === 'object' && !Array.isArray(raw) && !Buffer.isBuffer(raw) ? (raw as Record<string, unknown>) : undefined;
  const headers = (ctx.headers ?? {}) as Record<string, unknown>;
  const method = String(ctx.method ?? 'GET').toUpperCase();
  const path = oneString((ctx.query as Record<string, unknown> | undefined)?.['p']) ?? '';
  const out = await app.chat({
    method,
    // Only a path of ours: anything else is an unknown page, answered like one.
    path: /^(\/[a-z0-9./-]*)?$/.test(path) ? path : '/unknown',
    query,
    cookie: oneString(headers['cookie']),
    body: method === 'POST' ? body : undefined,
    headers,
    remoteAddress: (ctx.request as { socket?: { remoteAddress?: string } } | undefined)?.socket?.remoteAddress,
    lastEventId: oneString(headers['last-event-id']),
  });
  return sendLaf(ctx, out);
}

/** JSON as Python's `json.dumps` writes it by default: `", "` and `": "`, non-ASCII as `\u` escapes. */
function pythonJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return asciiJson(JSON.stringify(value) ?? 'null');
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${asciiJson(JSON.stringify(k))}: ${pythonJson(v)}`).join(', ')}}`;
}

/** The same JSON with every non-ASCII character as a `\u` escape. */
const asciiJson = (json: string) => json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * The bodies a JSON webhook may have been, rebuilt from laf's parsed `ctx.body` (laf keeps no raw
 * copy of JSON, docs/channels.md "On laf"): compact, compact with `\u` escapes, Python's style.
 * Each still has to carry a valid signature over exactly its bytes.
 */
export function jsonBodyVariants(body: unknown): string[] {
  if (body === undefined || body === null || typeof body !== 'object') return [];
  const compact = JSON.stringify(body);
  return [...new Set([compact, asciiJson(compact), pythonJson(body)])];
}

/**
 * Handle one laf invocation of a channel's webhook function (`wechat`, `line`, `discord`;
 * docs/channels.md). laf routes by function name, so another instance of the channel (BOTS) is
 * addressed as `/<function>?bot=<instance>`. XML keeps its raw body on laf; JSON does not, and is
 * verified against the forms the parsed body can have been written in (docs/channels.md "On laf").
 */
export async function handleLafWebhook(ctx: FunctionContext, cloud: LafCloud, path: string): Promise<unknown> {
  const app = await appOr500(ctx, cloud, true);
  if ('error' in app) return app.error;
  const query: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries((ctx.query ?? {}) as Record<string, unknown>)) query[k] = oneString(v);
  const instance = query['bot'];
  const webhook = app.route(path, instance && /^[a-z][a-z0-9-]{0,31}$/.test(instance) ? instance : '');
  if (!webhook) {
    ctx.response?.status(404);
    return `${path.slice(1)}${instance ? `?bot=${instance}` : ''} is not configured (docs/channels.md)`;
  }
  const raw = (ctx.request as { rawBody?: unknown } | undefined)?.rawBody;
  const body = ctx.body as unknown;
  const bodies = typeof raw === 'string' ? [raw] : Buffer.isBuffer(raw) ? [raw.toString('utf8')] : typeof body === 'string' ? [body] : jsonBodyVariants(body);
  const headers: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries((ctx.headers ?? {}) as Record<string, unknown>)) headers[k.toLowerCase()] = oneString(v);
  const res = ctx.response as unknown as { writableFinished?: boolean; on?(event: 'close', listener: () => void): void } | undefined;
  const onAbort = (listener: () => void) => res?.on?.('close', () => !res.writableFinished && listener());
  const out = await webhook({ method: String(ctx.method ?? 'GET').toUpperCase(), query, bodies, headers, onAbort });
  if ('drop' in out) {
    // Let the delivery time out (the platform re-delivers); nothing must be sent, not even an empty body.
    ctx.response?.destroy?.();
    return undefined;
  }
  if ('stream' in out) return sendLaf(ctx, out);
  if (out.status === 401 && typeof raw !== 'string' && bodies.length > 1) {
    app.logger.warn(`${path.slice(1)}: no form of laf's parsed body carries the signature; if the platform writes its JSON another way, serve this channel from the Node server (docs/channels.md "On laf")`);
  }
  ctx.response?.status(out.status);
  for (const [k, v] of Object.entries(out.headers ?? {})) ctx.response?.setHeader(k, v);
  ctx.response?.setHeader('Content-Type', out.contentType);
  return out.body;
}

/** Handle one laf invocation of a channel's webhook function named `name`. */
export function handleLafChannel(ctx: FunctionContext, cloud: LafCloud, name: 'line' | 'discord'): Promise<unknown> {
  return handleLafWebhook(ctx, cloud, `/${name}`);
}

/**
 * Send a page or stream through laf. laf hands over Express's response: a stream is written to it
 * and ended before returning, since the runtime sends the return value of any function whose
 * response is still open (docs/laf.md).
 */
async function sendLaf(ctx: FunctionContext, out: PageResponse | { status: number; headers: Record<string, string>; stream: (sink: StreamSink) => void }): Promise<unknown> {
  const res = ctx.response;
  res?.status(out.status);
  for (const [k, v] of Object.entries(out.headers)) res?.setHeader(k, v);
  if ('body' in out) return out.body;
  if (!res) return '';
  const live = res as unknown as {
    flushHeaders?: () => void;
    write(chunk: string): boolean;
    end(): void;
    destroyed?: boolean;
    writableLength?: number;
    on(event: 'close', listener: () => void): void;
  };
  if (live.destroyed) return undefined;
  live.flushHeaders?.();
  await new Promise<void>((resolve) => {
    live.on('close', resolve);
    out.stream({
      write: (chunk) => !live.destroyed && live.write(chunk),
      end: () => {
        live.end();
        resolve();
      },
      get pending() {
        return live.writableLength ?? 0;
      },
      onClose: (listener) => live.on('close', listener),
    });
  });
  return undefined;
}

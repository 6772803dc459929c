/**
 * Test harness: a real bot server on loopback over a real store, a Dify simulator, and a WeChat
 * client simulator, with WeChat's timings scaled down (the same ratios as production).
 */
import { mkdtempSync, rmSync } from 'fs';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { createApp } from '../../lib/app';
import type { App } from '../../lib/app';
import type { StreamTimings } from '../../lib/web/page/handler';
import { channelSettings, loadConfig, secretsOf } from '../../lib/config';
import { wechatOa } from '../../lib/channels/wechat-oa';
import type { WechatOaSettings } from '../../lib/channels/wechat-oa/settings';
import type { Config } from '../../lib/config';
import type { Clock } from '../../lib/util/clock';
import { memoryLogger } from '../../lib/util/log';
import { createHttpServer } from '../../lib/adapters/server/http';
import { openStore } from '../../lib/store';
import type { Backend, Collection, Filter, IndexSpec, Update } from '../../lib/store/collection';
import { nedbBackend } from '../../lib/store/nedb';
import { startDifySim } from '../../lib/sim/dify-sim';
import type { DifySim, DifySimOptions } from '../../lib/sim/dify-sim';
import { WechatSim } from '../../lib/sim/wechat-sim';
import { startOpenAISim } from '../../lib/sim/openai-sim';
import type { OpenAISim, OpenAISimOptions } from '../../lib/sim/openai-sim';
import type { WechatSimOptions } from '../../lib/sim/wechat-sim';

export const TOKEN = 'testtoken123';
export const DIFY_KEY = 'app-test-secret-key-0001';
export const OPENAI_KEY = 'sk-test-openai-secret-0001';

/** WeChat's 5 s window scaled to 1 s: deadline 0.8 s, 3 deliveries. Dify latencies scale the same (×0.2). */
export const SCALE = 0.2;
export const TIMINGS = {
  WECHAT_TIMEOUT_MS: '1000',
  REPLY_DEADLINE_MS: '800',
  WECHAT_DELIVERIES: '3',
  POLL_MS: '20',
  STALE_AFTER_MS: '1500',
  SIGNATURE_TOLERANCE_S: '300',
};

export interface Harness {
  app: App;
  config: Config;
  /** The Official Account's settings (WECHAT_TOKEN is always set here). */
  oa: WechatOaSettings;
  dify: DifySim;
  /** With `openai`: the OpenAI-compatible simulator the bot asks instead of Dify. */
  openai: OpenAISim | undefined;
  wechat: WechatSim;
  url: string;
  /** The server's origin, http://127.0.0.1:<port>. */
  origin: string;
  server: Server;
  logs: string[];
  dataDir: string;
  close(): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  dify?: Omit<DifySimOptions, 'apiKey'>;
  wechat?: Partial<WechatSimOptions>;
  /** Reuse a data dir (restart scenarios). */
  dataDir?: string;
  /** Turn the answer page on, with PUBLIC_URL pointing at this server. */
  answerPage?: boolean;
  /** Ask an OpenAI-compatible simulator (LLM_PROVIDER=openai) instead of Dify. */
  openai?: OpenAISimOptions;
  pageTimings?: StreamTimings;
  /** Each store operation reaches the data this long after it is issued, as over a network to MongoDB. */
  storeLatencyMs?: number;
  /** The app's clock (a test that jumps hours ahead: test/support/jump-clock.ts). */
  clock?: Clock;
}

/**
 * `backend` with every collection operation starting `ms` later: the round trip to a remote database,
 * during which other requests' operations may run (the operations themselves stay the real ones).
 */
export function withLatency(backend: Backend, ms: number): Backend {
  return {
    kind: backend.kind,
    close: () => backend.close(),
    async collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]): Promise<Collection<T>> {
      const c = await backend.collection<T>(name, indexes);
      const later = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
        await new Promise((r) => setTimeout(r, ms));
        return fn(...args);
      };
      return {
        insert: later((doc: T) => c.insert(doc)),
        findOne: later((f: Filter) => c.findOne(f)),
        find: later((f: Filter, limit: number, newestBy?: string) => c.find(f, limit, newestBy)),
        updateOne: later((f: Filter, u: Update) => c.updateOne(f, u)),
        updateMany: later((f: Filter, u: Update) => c.updateMany(f, u)),
        upsert: later((id: string, u: Update) => c.upsert(id, u)),
        deleteMany: later((f: Filter) => c.deleteMany(f)),
      };
    },
  };
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dify = await startDifySim({ apiKey: DIFY_KEY, ...opts.dify });
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'wdb-'));
  // Listen first, so the answer page's PUBLIC_URL can name the port.
  const ref: { app?: App } = {};
  const logger = memoryLogger({ secrets: [TOKEN, DIFY_KEY, OPENAI_KEY] });
  const server = createHttpServer({
    webhook: (path) => (ref.app as App).route(path),
    page: (r) => (ref.app as App).page(r),
    console: (r) => (ref.app as App).console(r),
    chat: (r) => (ref.app as App).chat(r),
    logger,
    maxBodyBytes: Number(opts.env?.['MAX_BODY_BYTES'] ?? 256 * 1024),
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${origin}/wechat`;
  const page = opts.answerPage ? { PUBLIC_URL: origin } : {};
  const openai = opts.openai ? await startOpenAISim({ apiKey: OPENAI_KEY, model: 'sim-model', ...opts.openai }) : undefined;
  const backend = openai ? { LLM_PROVIDER: 'openai', OPENAI_BASE_URL: openai.url, OPENAI_MODEL: 'sim-model', OPENAI_API_KEY: OPENAI_KEY } : {};
  const config = loadConfig({ WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS, ...page, ...backend, ...opts.env });
  const latency = opts.storeLatencyMs;
  const store = await openStore(config.store, { embedded: latency ? (o) => withLatency(nedbBackend(o), latency) : nedbBackend });
  const app = (ref.app = createApp(config, { store, logger, ...(opts.pageTimings ? { pageTimings: opts.pageTimings } : {}), ...(opts.clock ? { clock: opts.clock } : {}) }));
  const oa = wechatSettings(config);
  const wechat = new WechatSim({ url, token: TOKEN, timeoutMs: oa.timeoutMs, deliveries: oa.deliveries, ...opts.wechat });
  return {
    app,
    config,
    oa,
    dify,
    openai,
    wechat,
    url,
    origin,
    server,
    logs: logger.lines,
    dataDir,
    async close() {
      // Every test that runs a harness also proves no secret reached a log line (issue: security).
      const secrets = [TOKEN, DIFY_KEY, OPENAI_KEY, ...secretsOf(config)].filter(
        (v): v is string => typeof v === 'string' && v.length >= 6,
      );
      const leaked = secrets.filter((secret) => logger.lines.some((line) => line.includes(secret)));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await dify.close();
      await openai?.close();
      await app.close();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
      if (leaked.length > 0) throw new Error(`a secret appeared in the log (${leaked.length} value(s))`);
    },
  };
}

/** The default Official Account's settings of `config` (tests that need WeChat's timings or page size). */
export function wechatSettings(config: Config): WechatOaSettings {
  const oa = channelSettings(config, wechatOa);
  if (!oa) throw new Error('no Official Account in this config');
  return oa;
}

/** Poll until `check` holds (bounded). */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

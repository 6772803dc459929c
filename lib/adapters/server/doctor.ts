/**
 * `npm run doctor` (in the container: `node dist/doctor.js`): reads the configuration exactly as the
 * server does and checks the deployment before WeChat does (README "Check a deployment"): every
 * variable valid, the backend reachable with its key accepted, each channel's credentials and URL,
 * the store (MongoDB's conformance pass on a temporary collection, or the embedded store's
 * directory and lock), the clock, PUBLIC_URL. One line per check, the fix under each failure; the
 * exit code is 1 when anything failed. It opens no store of the server's: channels are built on an
 * in-memory one, so a running server is not disturbed; the few values their checks read (an iLink
 * session: `ChannelKind.checkReads`) are copied into it from the configured store, only reading that.
 */
import { createApp } from '../../app';
import { loadConfig, secretsOf } from '../../config';
import type { Config } from '../../config';
import type { Answerer } from '../../core/answerer';
import { channelName } from '../../core/channel';
import { ConfigError } from '../../errors';
import { Store, storeKind } from '../../store';
import { embeddedChecks } from '../../store/check';
import { connectMongo } from '../../store/mongo';
import { nedbBackend } from '../../store/nedb';
import { peekKv } from '../../store/peek';
import type { Check } from '../../util/checks';
import type { Clock } from '../../util/clock';
import { systemClock } from '../../util/clock';
import { memoryLogger } from '../../util/log';
import { checkLines, runChecks } from '../../web/doctor';

/** The configured store's checks, without opening it as the server does. */
async function storeChecks(config: Config): Promise<Check[]> {
  if (storeKind(config.store) === 'embedded') return embeddedChecks(config.store.dataDir);
  let backend;
  try {
    backend = await connectMongo(config.store.mongoUri as string, config.store.mongoDb, { timeoutMs: 5000 });
  } catch (err) {
    return [{ name: 'MongoDB: reachable', ok: false, detail: err instanceof Error ? err.message : String(err), fix: 'check MONGODB_URI: host and port reachable from here, user and password, TLS options; Atlas: this server’s IP on the access list' }];
  }
  try {
    return (await backend.check?.()) ?? [];
  } finally {
    await backend.close();
  }
}

/** The values the channels' checks read, copied from the configured store into `into`; a line only when that fails. */
async function copyCheckReads(config: Config, into: Store): Promise<Check[]> {
  const ids = config.channels.flatMap((c) => c.kind.checkReads?.(channelName(c.kind.kind, c.instance)) ?? []);
  if (ids.length === 0) return [];
  try {
    for (const r of await peekKv(config.store, ids)) await into.kvPut(r._id, r.value, r.expiresAt, Number.isNaN(new Date(r.expireAt).getTime()) ? r.expiresAt : new Date(r.expireAt).getTime());
    return [];
  } catch (err) {
    return [{ name: 'store: read for the channel checks', ok: false, detail: err instanceof Error ? err.message : String(err), fix: 'the channel checks below judge without what the store holds (an iLink session): fix the store first (its own lines say how)' }];
  }
}

export interface DoctorRun {
  code: number;
  lines: string[];
}

export async function runDoctor(env: NodeJS.ProcessEnv = process.env, opts: { clock?: Clock } = {}): Promise<DoctorRun> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { code: 1, lines: checkLines([{ name: 'configuration', ok: false, detail: err.message, fix: `set ${err.variable} as README "Configuration" says; nothing else was checked` }]) };
  }
  const channels = config.channels.map((c) => (c.instance ? `${c.kind.kind}@${c.instance}` : c.kind.kind));
  const configured: Check = { name: 'configuration', ok: true, detail: `every variable valid; channels ${channels.join(', ')}; ${config.backend.kind.kind} backend; ${storeKind(config.store)} store` };
  // Secrets stay out of what is printed, as out of the logs.
  const logger = memoryLogger({ secrets: secretsOf(config), level: 'error' });
  const store = await Store.open(nedbBackend({ inMemory: true }));
  const copied = await copyCheckReads(config, store);
  const app = createApp(config, { store, logger });
  try {
    // The deployment's backend (the console's Try it answers with it), then each instance's own.
    const user = app.channels.list.filter((c) => c.kind !== 'console');
    const deployment = (app.channels.list.find((c) => c.kind === 'console') ?? user[0])?.answerer as Answerer;
    const backends = new Map<Answerer, string[]>([[deployment, []]]);
    for (const c of user) backends.set(c.answerer, [...(backends.get(c.answerer) ?? []), c.name]);
    const checks = [configured, ...copied, ...(await runChecks({ config, channels: user, backends, store: () => storeChecks(config), clock: opts.clock ?? systemClock }))];
    // Said at start by the backend (Dify: a required input DIFY_INPUTS lacks) would fail every question.
    const problems = await Promise.all([...backends.keys()].map((a) => a.setupProblems().catch(() => [])));
    for (const p of problems.flat()) checks.push({ name: 'model backend setup', ok: false, detail: p });
    const failed = checks.filter((c) => c.ok === false).length;
    const lines = checkLines(checks).map((l) => redactAll(l, secretsOf(config)));
    lines.push('', failed === 0 ? `All ${checks.length} checks pass.` : `${failed} of ${checks.length} checks failed.`);
    return { code: failed === 0 ? 0 : 1, lines };
  } finally {
    await app.close();
  }
}

function redactAll(line: string, secrets: readonly string[]): string {
  let out = line;
  for (const s of secrets) if (s.length >= 6) out = out.split(s).join('[redacted]');
  return out;
}

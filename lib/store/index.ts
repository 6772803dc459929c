/**
 * Open the configured store, the one way every entry (the Node server, laf, tests' harness) does:
 * `auto` is MongoDB when one is configured (MONGODB_URI, or laf's `cloud.mongo.db`), else the
 * embedded file store in DATA_DIR.
 */
import { ConfigError } from '../errors';
import type { Backend } from './collection';
import { connectMongo, mongoBackend } from './mongo';
import type { DriverDb } from './mongo';
import { Store } from './store';

export { Store, INBOX_MAX, RETENTION_DAYS, TEST_USER, isTestUser, pageCount, statCount, statKey } from './store';
export type { AnswerPart, Turn, Usage, MessageRecord, UserRecord, KvRecord, QuestionStatus, Failure, Settlement, ClaimResult, StatsRecord, PushAttempt, PictureRef, CountWindow, Admission } from './store';

/** Where the store lives (README "Configuration": STORE, MONGODB_URI, MONGODB_DB, DATA_DIR, STATS_UTC_OFFSET_MIN). */
export interface StoreSettings {
  /** `auto`: MongoDB when one is configured (MONGODB_URI, or laf's cloud.mongo.db), else the embedded store. */
  kind: 'auto' | 'mongodb' | 'embedded';
  mongoUri: string | undefined;
  mongoDb: string | undefined;
  dataDir: string;
  /** Daily statistics count days in this time zone (minutes east of UTC; China +480). */
  statsUtcOffsetMin: number;
}

export interface OpenStoreOptions {
  /** A backend given outright (tests: several processes on one shared in-memory store). */
  backend?: Backend | undefined;
  /** A driver `Db` the platform provides (laf's `cloud.mongo.db`), used instead of MONGODB_URI. */
  db?: DriverDb | undefined;
  /** The embedded store (lib/store/nedb.ts `nedbBackend`), injected so an entry that never uses it
   * (laf) does not bundle it; without it `embedded` is refused. */
  embedded?: (opts: { dataDir: string; warn?: (msg: string, fields: Record<string, unknown>) => void }) => Backend;
  /** Told about repairs the embedded store made while opening. */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
}

/** Which backend `openStore` picks for this configuration. */
export function storeKind(config: Pick<StoreSettings, 'kind' | 'mongoUri'>, opts: OpenStoreOptions = {}): 'mongodb' | 'embedded' {
  if (config.kind === 'embedded') return 'embedded';
  const mongo = opts.db !== undefined || config.mongoUri !== undefined;
  if (config.kind === 'mongodb' && !mongo) throw new ConfigError('MONGODB_URI', 'is required when STORE=mongodb');
  return mongo ? 'mongodb' : 'embedded';
}

export async function openStore(config: StoreSettings, opts: OpenStoreOptions = {}): Promise<Store> {
  let backend: Backend;
  if (opts.backend) backend = opts.backend;
  else if (storeKind(config, opts) === 'mongodb') {
    backend = opts.db ? mongoBackend(opts.db) : await connectMongo(config.mongoUri as string, config.mongoDb);
  } else {
    if (!opts.embedded) throw new ConfigError('STORE', 'the embedded store is not available here; configure MongoDB');
    backend = opts.embedded({ dataDir: config.dataDir, ...(opts.warn ? { warn: opts.warn } : {}) });
  }
  return Store.open(backend, { statsUtcOffsetMin: config.statsUtcOffsetMin });
}

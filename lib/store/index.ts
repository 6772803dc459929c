/** Open the configured store: MongoDB when `MONGODB_URI` is set, else the embedded file store. */
import type { Config } from '../config';
import { connectMongo } from './mongo';
import { nedbBackend } from './nedb';
import { Store } from './store';

export { Store } from './store';
export type { MessageRecord, UserRecord, KvRecord, QuestionStatus, Failure } from './store';

export async function openStore(config: Config['store']): Promise<Store> {
  const backend = config.mongoUri ? await connectMongo(config.mongoUri, config.mongoDb) : nedbBackend({ dataDir: config.dataDir });
  return Store.open(backend);
}

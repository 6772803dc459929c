/** Open the configured store: MongoDB when `MONGODB_URI` is set, else the embedded file store. */
import type { Config } from '../config';
import { ConfigError } from '../errors';
import { connectMongo } from './mongo';
import { nedbBackend } from './nedb';
import { Store } from './store';

export { Store } from './store';
export type { MessageRecord, UserRecord, KvRecord, QuestionStatus, Failure } from './store';

export async function openStore(config: Config['store']): Promise<Store> {
  if (config.kind === 'mongodb' && !config.mongoUri) throw new ConfigError('MONGODB_URI', 'is required when STORE=mongodb');
  const useMongo = config.kind !== 'embedded' && config.mongoUri !== undefined;
  const backend = useMongo ? await connectMongo(config.mongoUri as string, config.mongoDb) : nedbBackend({ dataDir: config.dataDir });
  return Store.open(backend);
}

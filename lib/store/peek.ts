/**
 * A few shared values (kv records) of the configured store, read without opening it as the server does,
 * for `npm run doctor` (lib/adapters/server/doctor.ts; its channels run on an in-memory store):
 *
 * - the embedded store: its `kv.db` journal is read, never locked or written, so a server running on
 *   the same DATA_DIR keeps it. A read that meets a record being appended is tried once more;
 * - MongoDB: plain `findOne`s on the `kv` collection (no index is created, nothing written).
 */
import { join } from 'path';
import { StoreError } from '../errors';
import { loadJournal } from './journal';
import { connectMongo } from './mongo';
import type { StoreSettings } from '.';
import { storeKind } from '.';
import type { KvRecord } from './store';

const isKv = (d: Record<string, unknown>): d is Record<string, unknown> & KvRecord => typeof d['value'] === 'string' && typeof d['expiresAt'] === 'number';

export async function peekKv(config: StoreSettings, ids: readonly string[]): Promise<KvRecord[]> {
  if (ids.length === 0) return [];
  if (storeKind(config) === 'embedded') {
    const file = join(config.dataDir, 'kv.db');
    let docs;
    try {
      docs = (await loadJournal(file)).docs;
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      // A record the server was appending as it was read: once more, after it.
      await new Promise((r) => setTimeout(r, 200));
      docs = (await loadJournal(file)).docs;
    }
    return docs.filter((d) => ids.includes(d._id) && isKv(d)) as unknown as KvRecord[];
  }
  const backend = await connectMongo(config.mongoUri as string, config.mongoDb, { timeoutMs: 5000 });
  try {
    const kv = await backend.collection<KvRecord>('kv', []);
    const found = await Promise.all(ids.map((_id) => kv.findOne({ _id })));
    return found.filter((d): d is KvRecord => d !== null);
  } finally {
    await backend.close();
  }
}

/**
 * MongoDB backend over a driver `Db`: the official `mongodb` driver when self-hosted
 * (`MONGODB_URI`), `cloud.mongo.db` (driver 5.9) on laf. Only the methods of `Db`/`Collection`
 * common to driver 5 and 6 are used.
 */
import type { Db, MongoClient } from 'mongodb';
import type { Backend, Collection, Filter, IndexSpec, Update } from './collection';
import { mongoChecks } from './check';

const DUPLICATE_KEY = 11000;

export function mongoBackend(db: Db, client?: MongoClient): Backend {
  return {
    kind: 'mongodb',
    async collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]): Promise<Collection<T>> {
      const c = db.collection(name);
      for (const ix of indexes) {
        if (ix.only && ix.only !== 'mongodb') continue;
        // createIndex is idempotent for an identical spec, so every start may call it.
        await c.createIndex(
          { [ix.field]: 1 },
          ix.expireAfterSeconds !== undefined
            ? { name: `${ix.field}_ttl`, expireAfterSeconds: ix.expireAfterSeconds }
            : ix.sparse
              ? { name: `${ix.field}_sparse`, sparse: true }
              : { name: `${ix.field}_1` },
        );
      }
      return {
        async insert(doc) {
          try {
            await c.insertOne(doc as never);
            return true;
          } catch (err) {
            if ((err as { code?: number }).code === DUPLICATE_KEY) return false;
            throw err;
          }
        },
        async findOne(filter: Filter) {
          return (await c.findOne(filter as never)) as T | null;
        },
        async find(filter: Filter, limit, newestBy) {
          const cursor = c.find(filter as never);
          return (await (newestBy ? cursor.sort({ [newestBy]: -1 }) : cursor).limit(limit).toArray()) as unknown as T[];
        },
        async updateOne(filter: Filter, update: Update) {
          const res: unknown = await c.findOneAndUpdate(filter as never, update as never, { returnDocument: 'after' });
          // Driver 5 (laf) wraps the document in a ModifyResult; driver 6 returns it directly.
          if (res && typeof res === 'object' && 'lastErrorObject' in res && 'value' in res) return (res as { value: T | null }).value;
          return (res as T | null) ?? null;
        },
        async updateMany(filter: Filter, update: Update) {
          return (await c.updateMany(filter as never, update as never)).matchedCount;
        },
        async upsert(id, update: Update) {
          await c.updateOne({ _id: id } as never, update as never, { upsert: true });
        },
        async deleteMany(filter: Filter) {
          return (await c.deleteMany(filter as never)).deletedCount;
        },
      };
    },
    async close() {
      await client?.close();
    },
    check: () => mongoChecks(db),
  };
}

/** Connect with the official driver (self-hosted). */
export async function connectMongo(uri: string, dbName: string | undefined, opts: { timeoutMs?: number } = {}): Promise<Backend> {
  const { MongoClient } = await import('mongodb');
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: opts.timeoutMs ?? 10_000 });
  await client.connect();
  return mongoBackend(client.db(dbName), client);
}

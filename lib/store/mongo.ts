/**
 * MongoDB backend over a driver `Db`: the official `mongodb` driver when self-hosted
 * (`MONGODB_URI`), `cloud.mongo.db` (driver 5.9) on laf. Only the methods of `Db`/`Collection`
 * common to driver 5 and 6 are used: `DriverDb` names them, and both drivers' `Db` must fit it
 * (driver 6 where connectMongo passes one, driver 5 where lib/adapters/laf passes laf's).
 */
import type { MongoClient } from 'mongodb';
import type { Backend, Collection, Filter, IndexSpec, Update } from './collection';

const DUPLICATE_KEY = 11000;

type Doc = Record<string, unknown>;

/** What this backend uses of a driver `Db`, in the shapes driver 5 and driver 6 share. */
export interface DriverDb {
  collection(name: string): {
    createIndex(spec: Record<string, 1>, options: { name: string; expireAfterSeconds?: number; sparse?: boolean }): Promise<string>;
    insertOne(doc: Doc): Promise<unknown>;
    findOne(filter: Doc): Promise<unknown>;
    find(filter: Doc): DriverCursor;
    /** Driver 5 answers a `ModifyResult` (`{ value, lastErrorObject }`), driver 6 the document. */
    findOneAndUpdate(filter: Doc, update: object, options: { returnDocument: 'after' }): Promise<unknown>;
    updateMany(filter: Doc, update: object): Promise<{ matchedCount: number }>;
    updateOne(filter: Doc, update: object, options: { upsert: boolean }): Promise<unknown>;
    deleteMany(filter: Doc): Promise<{ deletedCount: number }>;
  };
}

interface DriverCursor {
  sort(spec: Record<string, -1>): DriverCursor;
  limit(n: number): DriverCursor;
  toArray(): Promise<unknown[]>;
}

export function mongoBackend(db: DriverDb, client?: MongoClient): Backend {
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
            await c.insertOne(doc);
            return true;
          } catch (err) {
            if ((err as { code?: number }).code === DUPLICATE_KEY) return false;
            throw err;
          }
        },
        async findOne(filter: Filter) {
          return (await c.findOne(filter)) as T | null;
        },
        async find(filter: Filter, limit, newestBy) {
          const cursor = c.find(filter);
          return (await (newestBy ? cursor.sort({ [newestBy]: -1 }) : cursor).limit(limit).toArray()) as unknown as T[];
        },
        async updateOne(filter: Filter, update: Update) {
          const res: unknown = await c.findOneAndUpdate(filter, update, { returnDocument: 'after' });
          // Driver 5 (laf) wraps the document in a ModifyResult; driver 6 returns it directly.
          if (res && typeof res === 'object' && 'lastErrorObject' in res && 'value' in res) return (res as { value: T | null }).value;
          return (res as T | null) ?? null;
        },
        async updateMany(filter: Filter, update: Update) {
          return (await c.updateMany(filter, update)).matchedCount;
        },
        async upsert(id, update: Update) {
          await c.updateOne({ _id: id }, update, { upsert: true });
        },
        async deleteMany(filter: Filter) {
          return (await c.deleteMany(filter)).deletedCount;
        },
      };
    },
    async close() {
      await client?.close();
    },
  };
}

/** Connect with the official driver (self-hosted). */
export async function connectMongo(uri: string, dbName: string | undefined): Promise<Backend> {
  const { MongoClient } = await import('mongodb');
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  return mongoBackend(client.db(dbName), client);
}

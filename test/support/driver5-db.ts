/**
 * A stand-in for laf's `cloud.mongo.db` (MongoDB driver 5.9.2) for the laf compatibility test: no
 * MongoDB server can run here. It answers the calls lib/store/mongo.ts makes in driver 5's shapes
 * (findOneAndUpdate → a ModifyResult, duplicate _id → error code 11000, updateMany → matchedCount),
 * and evaluates filters and updates with NeDB in memory, which implements the same operators. It
 * tests our adapter's use of the driver, not MongoDB; the conformance suite runs against a real
 * server when MONGODB_URI is set. `listIndexes` and `drop` answer as the driver does, for the
 * doctor's conformance pass (lib/store/check.ts).
 */
import Datastore from '@seald-io/nedb';
import type { Db } from 'mongodb';

type Doc = { _id: string };

export function driver5Db(): { db: Db; collections: Map<string, Datastore<Doc>> } {
  const collections = new Map<string, Datastore<Doc>>();
  const get = (name: string): Datastore<Doc> => {
    let c = collections.get(name);
    if (!c) collections.set(name, (c = new Datastore<Doc>({ inMemoryOnly: true })));
    return c;
  };
  const indexes = new Map<string, { key: Record<string, 1>; name: string; sparse?: boolean; expireAfterSeconds?: number }[]>();
  const collection = (name: string) => {
    const c = get(name);
    return {
      async createIndex(spec: Record<string, 1>, opts: { name: string; expireAfterSeconds?: number; sparse?: boolean }) {
        const fieldName = Object.keys(spec)[0] as string;
        await c.ensureIndexAsync({ fieldName, ...(opts.expireAfterSeconds === undefined ? {} : { expireAfterSeconds: opts.expireAfterSeconds }), ...(opts.sparse ? { sparse: true } : {}) });
        const list = indexes.get(name) ?? [{ key: { _id: 1 }, name: '_id_' }];
        if (!list.some((ix) => ix.name === opts.name)) list.push({ key: spec, name: opts.name, ...(opts.sparse ? { sparse: true } : {}), ...(opts.expireAfterSeconds === undefined ? {} : { expireAfterSeconds: opts.expireAfterSeconds }) });
        indexes.set(name, list);
        return opts.name;
      },
      listIndexes() {
        return { toArray: async () => [...(indexes.get(name) ?? [{ key: { _id: 1 }, name: '_id_' }])] };
      },
      async drop() {
        collections.delete(name);
        indexes.delete(name);
        return true;
      },
      async insertOne(doc: Doc) {
        try {
          await c.insertAsync(doc);
        } catch (err) {
          if ((err as { errorType?: string }).errorType === 'uniqueViolated') throw Object.assign(new Error('E11000 duplicate key error collection'), { code: 11000 });
          throw err;
        }
        return { acknowledged: true, insertedId: doc._id };
      },
      async findOne(filter: object) {
        return (await c.findOneAsync(filter as never)) ?? null;
      },
      find(filter: object) {
        let limit = 0;
        let sort: Record<string, 1 | -1> | undefined;
        const cursor = {
          limit(n: number) {
            limit = n;
            return cursor;
          },
          sort(s: Record<string, 1 | -1>) {
            sort = s;
            return cursor;
          },
          toArray: async () => {
            const found = c.findAsync(filter as never);
            return await (sort ? found.sort(sort) : found).limit(limit);
          },
        };
        return cursor;
      },
      async findOneAndUpdate(filter: object, update: object, opts: { returnDocument?: 'after' | 'before' }) {
        if (opts.returnDocument !== 'after') throw new Error('the adapter always asks for the document after the update');
        const res = await c.updateAsync(filter as never, update as never, { multi: false, returnUpdatedDocs: true });
        const value = res.numAffected > 0 ? ((res.affectedDocuments as Doc | null) ?? null) : null;
        return { value, ok: 1, lastErrorObject: { n: res.numAffected, updatedExisting: res.numAffected > 0 } };
      },
      async updateOne(filter: object, update: object, opts: { upsert?: boolean } = {}) {
        const res = await c.updateAsync(filter as never, update as never, { upsert: opts.upsert ?? false });
        return { acknowledged: true, matchedCount: res.upsert ? 0 : res.numAffected, modifiedCount: res.numAffected, upsertedCount: res.upsert ? 1 : 0 };
      },
      async updateMany(filter: object, update: object) {
        const res = await c.updateAsync(filter as never, update as never, { multi: true });
        return { acknowledged: true, matchedCount: res.numAffected, modifiedCount: res.numAffected };
      },
      async deleteMany(filter: object) {
        return { acknowledged: true, deletedCount: await c.removeAsync(filter as never, { multi: true }) };
      },
    };
  };
  return { db: { collection } as unknown as Db, collections };
}

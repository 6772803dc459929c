/**
 * The MongoDB adapter's own logic, without a server (none can be installed here; the conformance
 * suite runs it against a real MongoDB when MONGODB_URI is set): driver 5 (laf's cloud.mongo.db)
 * wraps findOneAndUpdate results in a ModifyResult, driver 6 does not; a duplicate _id (11000) is a
 * lost claim, not an error; indexes are declared with fixed names so every start repeats them safely.
 */
import type { Db } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { mongoBackend } from '../../lib/store/mongo';

type Doc = { _id: string; n?: number };

/** Just enough of a driver `Db` to record calls and answer in driver 5's or driver 6's shape. */
function driverDb(version: 5 | 6) {
  const docs = new Map<string, Doc>();
  const indexes: unknown[] = [];
  const collection = {
    createIndex: async (spec: unknown, opts: unknown) => {
      indexes.push([spec, opts]);
      return 'ok';
    },
    insertOne: async (doc: Doc) => {
      if (docs.has(doc._id)) throw Object.assign(new Error('E11000 duplicate key error'), { code: 11000 });
      docs.set(doc._id, { ...doc });
      return { acknowledged: true };
    },
    findOneAndUpdate: async (filter: { _id: string }, update: { $inc?: { n: number } }) => {
      const doc = docs.get(filter._id);
      if (doc && update.$inc) doc.n = (doc.n ?? 0) + update.$inc.n;
      const value = doc ? { ...doc } : null;
      return version === 5 ? { value, ok: 1, lastErrorObject: { n: doc ? 1 : 0, updatedExisting: Boolean(doc) } } : value;
    },
  };
  return { db: { collection: () => collection } as unknown as Db, indexes };
}

describe.each([5, 6] as const)('mongoBackend on driver %i', (version) => {
  it('returns the updated document, or null when nothing matched', async () => {
    const { db } = driverDb(version);
    const c = await mongoBackend(db).collection<Doc>('t', []);
    expect(await c.insert({ _id: 'a', n: 1 })).toBe(true);
    expect(await c.updateOne({ _id: 'a' }, { $inc: { n: 2 } })).toEqual({ _id: 'a', n: 3 });
    expect(await c.updateOne({ _id: 'missing' }, { $inc: { n: 1 } })).toBeNull();
  });

  it('reports a duplicate _id as a lost claim', async () => {
    const { db } = driverDb(version);
    const c = await mongoBackend(db).collection<Doc>('t', []);
    expect(await c.insert({ _id: 'a' })).toBe(true);
    expect(await c.insert({ _id: 'a' })).toBe(false);
  });

  it('declares named indexes, the TTL one with expireAfterSeconds', async () => {
    const { db, indexes } = driverDb(version);
    await mongoBackend(db).collection<Doc>('t', [{ field: 'status' }, { field: 'expireAt', expireAfterSeconds: 0 }]);
    expect(indexes).toEqual([
      [{ status: 1 }, { name: 'status_1' }],
      [{ expireAt: 1 }, { name: 'expireAt_ttl', expireAfterSeconds: 0 }],
    ]);
  });
});

/**
 * Embedded file store on @seald-io/nedb: the maintained fork of NeDB, pure JavaScript, CommonJS,
 * an append-only file per collection that survives kill -9 (a torn last line is skipped on load).
 * One process only: two processes on the same files would overwrite each other.
 */
import Datastore from '@seald-io/nedb';
import { mkdirSync } from 'fs';
import { join } from 'path';
import type { Backend, Collection, Filter, IndexSpec, Update } from './collection';

function wrap<T extends { _id: string }>(db: Datastore<T>): Collection<T> {
  return {
    async insert(doc) {
      try {
        await db.insertAsync(doc);
        return true;
      } catch (err) {
        if ((err as { errorType?: string }).errorType === 'uniqueViolated') return false;
        throw err;
      }
    },
    async findOne(filter: Filter) {
      return (await db.findOneAsync(filter as never)) ?? null;
    },
    async find(filter: Filter, limit) {
      return await db.findAsync(filter as never).limit(limit);
    },
    async updateOne(filter: Filter, update: Update) {
      const res = await db.updateAsync(filter as never, update as never, { multi: false, returnUpdatedDocs: true });
      return res.numAffected > 0 ? ((res.affectedDocuments as T | null) ?? null) : null;
    },
    async upsert(id, update: Update) {
      await db.updateAsync({ _id: id } as never, update as never, { upsert: true });
    },
    async deleteMany(filter: Filter) {
      return await db.removeAsync(filter as never, { multi: true });
    },
  };
}

export function nedbBackend(opts: { dataDir: string } | { inMemory: true }): Backend {
  const open: Datastore<{ _id: string }>[] = [];
  if ('dataDir' in opts) mkdirSync(opts.dataDir, { recursive: true });
  return {
    async collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]) {
      const db =
        'dataDir' in opts
          ? new Datastore<T>({ filename: join(opts.dataDir, `${name}.db`) })
          : new Datastore<T>({ inMemoryOnly: true });
      await db.loadDatabaseAsync();
      for (const ix of indexes) {
        await db.ensureIndexAsync(
          ix.expireAfterSeconds === undefined ? { fieldName: ix.field } : { fieldName: ix.field, expireAfterSeconds: ix.expireAfterSeconds },
        );
      }
      // The file only grows between compactions; compact hourly.
      db.setAutocompactionInterval(3_600_000);
      open.push(db as unknown as Datastore<{ _id: string }>);
      return wrap(db);
    },
    async close() {
      for (const db of open) {
        db.stopAutocompaction();
        await db.compactDatafileAsync().catch(() => undefined);
      }
    },
  };
}

/**
 * Embedded file store (docs/store.md): @seald-io/nedb, the maintained fork of NeDB (pure
 * JavaScript, CommonJS), answers every query and update in memory with its indexes and MongoDB's
 * operators; the file is our append-only journal with group commit (lib/store/journal.ts), so a
 * burst of writes shares a few file writes and reads never queue behind the disk. Every operation
 * returns only after all changes before it are in the file.
 *
 * It belongs to one process, enforced with a lock file in the directory (lib/store/dirlock.ts).
 * A record torn by a crash or a full disk at the end of a file is dropped with a warning; an
 * unreadable record anywhere else refuses to open, with a clear error.
 */
import Datastore from '@seald-io/nedb';
import { mkdirSync } from 'fs';
import { join } from 'path';
import type { Backend, Collection, Filter, IndexSpec, Update } from './collection';
import { lockDirectory } from './dirlock';
import { embeddedChecks } from './check';
import { Journal, loadJournal, repairTornTail } from './journal';

function wrap<T extends { _id: string }>(db: Datastore<T>, journal: Journal): Collection<T> {
  /** A read's answer may rest on changes still being written: return it once they are. */
  const afterSync = async <R>(value: R): Promise<R> => {
    await journal.synced();
    return value;
  };
  return {
    async insert(doc) {
      try {
        const inserted = await db.insertAsync(doc);
        await journal.append([inserted]);
        return true;
      } catch (err) {
        if ((err as { errorType?: string }).errorType === 'uniqueViolated') return afterSync(false);
        throw err;
      }
    },
    async findOne(filter: Filter) {
      return afterSync((await db.findOneAsync(filter as never)) ?? null);
    },
    async find(filter: Filter, limit, newestBy) {
      const cursor = db.findAsync(filter as never);
      return afterSync(await (newestBy ? cursor.sort({ [newestBy]: -1 }) : cursor).limit(limit));
    },
    async updateOne(filter: Filter, update: Update) {
      const res = await db.updateAsync(filter as never, update as never, { multi: false, returnUpdatedDocs: true });
      const doc = res.numAffected > 0 ? ((res.affectedDocuments as T | null) ?? null) : null;
      if (!doc) return afterSync(null);
      await journal.append([doc]);
      return doc;
    },
    async updateMany(filter: Filter, update: Update) {
      const res = await db.updateAsync(filter as never, update as never, { multi: true, returnUpdatedDocs: true });
      await journal.append((res.affectedDocuments as T[] | null) ?? []);
      return res.numAffected;
    },
    async upsert(id, update: Update) {
      const res = await db.updateAsync({ _id: id } as never, update as never, { upsert: true, returnUpdatedDocs: true });
      await journal.append(res.affectedDocuments ? [res.affectedDocuments as T] : []);
    },
    async deleteMany(filter: Filter) {
      const ids = (await db.findAsync(filter as never)).map((d) => d._id);
      if (ids.length === 0) return afterSync(0);
      const n = await db.removeAsync({ _id: { $in: ids } } as never, { multi: true });
      await journal.append(ids.map((_id) => ({ $$deleted: true, _id })));
      return n;
    },
  };
}

export interface NedbOptions {
  dataDir: string;
  /** Told about repairs (a torn last record dropped, a dead owner's lock taken over). */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
  /** Rewrite each file this often, dropping superseded lines (default hourly, and at close). */
  compactEveryMs?: number;
}

export function nedbBackend(opts: NedbOptions | { inMemory: true }): Backend {
  const open: { db: Datastore<{ _id: string }>; journal: Journal }[] = [];
  let release: (() => void) | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  if ('dataDir' in opts) {
    mkdirSync(opts.dataDir, { recursive: true });
    const lock = lockDirectory(opts.dataDir, (h) => opts.warn?.('took over the embedded store from a process that is gone', { pid: h.pid }));
    release = () => lock.release();
  }
  const compactAll = async () => {
    for (const { db, journal } of open) await journal.rewrite(() => db.getAllData());
  };
  let closed = false;
  return {
    kind: 'embedded',
    async collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]) {
      const db = new Datastore<T>({ inMemoryOnly: true });
      for (const ix of indexes) {
        if (ix.only && ix.only !== 'embedded') continue;
        await db.ensureIndexAsync({
          fieldName: ix.field,
          ...(ix.expireAfterSeconds === undefined ? {} : { expireAfterSeconds: ix.expireAfterSeconds }),
          ...(ix.sparse ? { sparse: true } : {}),
        });
      }
      let journal = new Journal(null);
      if ('dataDir' in opts) {
        const filename = join(opts.dataDir, `${name}.db`);
        const dropped = repairTornTail(filename);
        if (dropped > 0) opts.warn?.('dropped a torn last record from the embedded store (a crash or a full disk cut it short)', { file: filename, bytes: dropped });
        const { docs, lines } = await loadJournal(filename);
        if (docs.length > 0) await db.insertAsync(docs as unknown as T[]);
        journal = new Journal(filename);
        // Superseded lines (not closed cleanly, or an older NeDB file): start from each document once.
        if (lines > docs.length) await journal.rewrite(() => db.getAllData());
        if (!timer) {
          timer = setInterval(() => void compactAll().catch((err) => opts.warn?.('compaction failed', { message: String(err) })), opts.compactEveryMs ?? 3_600_000);
          timer.unref();
        }
      }
      open.push({ db: db as unknown as Datastore<{ _id: string }>, journal });
      return wrap(db, journal);
    },
    ...('dataDir' in opts ? { check: async () => embeddedChecks(opts.dataDir, process.pid) } : {}),
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await compactAll().catch(() => undefined);
      for (const { journal } of open) await journal.close();
      release?.();
    },
  };
}

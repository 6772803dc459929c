/**
 * Embedded file store on @seald-io/nedb: the maintained fork of NeDB, pure JavaScript, CommonJS,
 * an append-only file per collection (docs/store.md).
 *
 * It belongs to one process, enforced with a lock file in the directory (lib/store/dirlock.ts).
 * A record torn by a crash or a full disk at the end of a file is dropped with a warning before
 * NeDB loads it (NeDB would count it against its 10% corruption threshold and refuse a small file);
 * unreadable data anywhere else still refuses to open, with a clear error.
 */
import Datastore from '@seald-io/nedb';
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'fs';
import { join } from 'path';
import { StoreError } from '../errors';
import type { Backend, Collection, Filter, IndexSpec, Update } from './collection';
import { lockDirectory } from './dirlock';

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
    async updateMany(filter: Filter, update: Update) {
      return (await db.updateAsync(filter as never, update as never, { multi: true })).numAffected;
    },
    async upsert(id, update: Update) {
      await db.updateAsync({ _id: id } as never, update as never, { upsert: true });
    },
    async deleteMany(filter: Filter) {
      return await db.removeAsync(filter as never, { multi: true });
    },
  };
}

/**
 * If `file` ends in a partial record (no final newline, not valid JSON), cut it off and return
 * how many bytes were dropped; a complete record that only lacks its newline gets one. Reads only
 * the last line, so a large file costs no more than a small one.
 */
export function repairTornTail(file: string): number {
  if (!existsSync(file)) return 0;
  const fd = openSync(file, 'r+');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return 0;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    if (last[0] === 0x0a) return 0;
    // Walk back to the previous newline.
    const chunk = Buffer.alloc(64 * 1024);
    let lineStart = 0;
    for (let end = size; end > 0; ) {
      const from = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - from, from);
      const nl = chunk.subarray(0, n).lastIndexOf(0x0a);
      if (nl !== -1) {
        lineStart = from + nl + 1;
        break;
      }
      end = from;
    }
    const tail = Buffer.alloc(size - lineStart);
    readSync(fd, tail, 0, tail.length, lineStart);
    try {
      JSON.parse(tail.toString('utf8'));
      writeSync(fd, '\n', size);
      return 0;
    } catch {
      ftruncateSync(fd, lineStart);
      return tail.length;
    }
  } finally {
    closeSync(fd);
  }
}

export interface NedbOptions {
  dataDir: string;
  /** Told about repairs (a torn last record dropped, a dead owner's lock taken over). */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
}

export function nedbBackend(opts: NedbOptions | { inMemory: true }): Backend {
  const open: Datastore<{ _id: string }>[] = [];
  let release: (() => void) | undefined;
  if ('dataDir' in opts) {
    mkdirSync(opts.dataDir, { recursive: true });
    const lock = lockDirectory(opts.dataDir, (h) => opts.warn?.('took over the embedded store from a process that is gone', { pid: h.pid }));
    release = () => lock.release();
  }
  let closed = false;
  return {
    kind: 'embedded',
    async collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]) {
      let db: Datastore<T>;
      if ('dataDir' in opts) {
        const filename = join(opts.dataDir, `${name}.db`);
        const dropped = repairTornTail(filename);
        if (dropped > 0) opts.warn?.('dropped a torn last record from the embedded store (a crash or a full disk cut it short)', { file: filename, bytes: dropped });
        db = new Datastore<T>({ filename });
        try {
          await db.loadDatabaseAsync();
        } catch (err) {
          throw new StoreError(
            'store_corrupt',
            `cannot load ${filename}: ${(err as Error).message}. Records in the middle of the file are unreadable; ` +
              'restore the file from a backup, or move it aside to start with an empty store',
            { cause: err },
          );
        }
      } else {
        db = new Datastore<T>({ inMemoryOnly: true });
      }
      for (const ix of indexes) {
        await db.ensureIndexAsync({
          fieldName: ix.field,
          ...(ix.expireAfterSeconds === undefined ? {} : { expireAfterSeconds: ix.expireAfterSeconds }),
          ...(ix.sparse ? { sparse: true } : {}),
        });
      }
      // The file only grows between compactions; compact hourly.
      db.setAutocompactionInterval(3_600_000);
      open.push(db as unknown as Datastore<{ _id: string }>);
      return wrap(db);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const db of open) {
        db.stopAutocompaction();
        await db.compactDatafileAsync().catch(() => undefined);
      }
      release?.();
    },
  };
}

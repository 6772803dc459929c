/**
 * The store's own checks for `npm run doctor` and the console (docs/store.md "Checking a store"):
 *
 * - MongoDB (any: self-hosted, Atlas, laf's `cloud.mongo.db`): a fast conformance pass of exactly what
 *   the store relies on, through our own adapter (lib/store/mongo.ts) on a temporary collection it
 *   drops afterwards: an insert, a duplicate `_id` refused, find-and-update answering the document
 *   after the update (driver 5's `ModifyResult` or driver 6's document) and null when nothing
 *   matched, `$push` with `$each`/`$slice`, and the sparse and TTL indexes created as asked.
 * - The embedded store: its directory exists or can be made, can be written, and who holds its lock.
 */
import { randomBytes } from 'crypto';
import { mkdirSync, unlinkSync, writeFileSync } from 'fs';
import { join } from 'path';
import type { Check } from '../util/checks';
import { lockHolder } from './dirlock';
import { mongoBackend } from './mongo';
import type { DriverDb } from './mongo';

interface Probe {
  _id: string;
  n?: number;
  list?: string[];
  inbox?: string;
  expireAt?: Date;
}

interface IndexInfo {
  key?: Record<string, unknown>;
  sparse?: boolean;
  expireAfterSeconds?: number;
}

/** The conformance pass on `db`; every check a line, the temporary collection dropped at the end. */
export async function mongoChecks(db: DriverDb): Promise<Check[]> {
  const name = `wdb_doctor_${randomBytes(6).toString('hex')}`;
  const out: Check[] = [];
  const step = async (label: string, fix: string, run: () => Promise<string>): Promise<boolean> => {
    try {
      out.push({ name: `MongoDB: ${label}`, ok: true, detail: await run() });
      return true;
    } catch (err) {
      out.push({ name: `MongoDB: ${label}`, ok: false, detail: err instanceof Error ? err.message : String(err), fix });
      return false;
    }
  };
  const must = (cond: boolean, what: string) => {
    if (!cond) throw new Error(what);
  };
  let started = Date.now();
  const c = await mongoBackend(db)
    .collection<Probe>(name, [
      { field: 'inbox', sparse: true },
      { field: 'expireAt', expireAfterSeconds: 0 },
    ])
    .then(
      (col) => (out.push({ name: 'MongoDB: reachable, collection and indexes created', ok: true, detail: `${Date.now() - started} ms` }), col),
      (err: unknown) => {
        out.push({ name: 'MongoDB: reachable, collection and indexes created', ok: false, detail: err instanceof Error ? err.message : String(err), fix: 'check MONGODB_URI (user, password, host, database) and that this user may create collections and indexes' });
        return undefined;
      },
    );
  if (!c) return out;
  try {
    started = Date.now();
    await step('create', 'the database refused a plain insert: check the user’s write permission', async () => {
      must((await c.insert({ _id: 'a', n: 1 })) === true, 'insert did not report success');
      return 'a document inserted';
    });
    await step('unique key refused', 'a second document with the same _id was accepted: this database does not enforce unique _id, which the claim of every message relies on', async () => {
      must((await c.insert({ _id: 'a', n: 99 })) === false, 'a duplicate _id was accepted');
      must((await c.findOne({ _id: 'a' }))?.n === 1, 'the duplicate replaced the first document');
      return 'a duplicate _id is refused (E11000)';
    });
    await step('find-and-update result', 'findOneAndUpdate does not answer the document after the update in a shape this driver is known to use (driver 5 ModifyResult or driver 6 document)', async () => {
      const after = await c.updateOne({ _id: 'a', n: 1 }, { $set: { n: 2 } });
      must(after?._id === 'a' && after.n === 2, `the answer is not the document after the update: ${JSON.stringify(after)}`);
      must((await c.updateOne({ _id: 'a', n: 1 }, { $set: { n: 3 } })) === null, 'an update that matched nothing did not answer null');
      return 'the document after the update; null when nothing matched';
    });
    await step('$push with $slice', '$push with $each and $slice is not supported as MongoDB does it', async () => {
      for (const v of ['x1', 'x2', 'x3']) await c.updateOne({ _id: 'a' }, { $push: { list: { $each: [v], $slice: -2 } } });
      const list = (await c.findOne({ _id: 'a' }))?.list;
      must(JSON.stringify(list) === '["x2","x3"]', `kept ${JSON.stringify(list)}, expected ["x2","x3"]`);
      return 'appends and keeps the last n';
    });
    const indexes = (await db.collection(name).listIndexes().toArray()) as IndexInfo[];
    const index = (field: string) => indexes.find((ix) => ix.key && Object.keys(ix.key).length === 1 && ix.key[field] === 1);
    await step('sparse index', 'the sparse index on inbox is missing: check that this user may create indexes', async () => {
      must(index('inbox')?.sparse === true, 'no sparse index on inbox');
      await c.insert({ _id: 'b', inbox: 'u1' });
      const found = await c.find({ inbox: 'u1' }, 10);
      must(found.length === 1 && found[0]?._id === 'b', 'a lookup on the sparse field found the wrong documents');
      return 'created, and a lookup on it finds exactly the documents that have the field';
    });
    await step('TTL index', 'the TTL index on expireAt is missing: old records would never be removed', async () => {
      must(index('expireAt')?.expireAfterSeconds === 0, 'no TTL index (expireAfterSeconds 0) on expireAt');
      return 'created (expireAfterSeconds 0 on expireAt)';
    });
    out.push({ name: 'MongoDB: conformance pass', ok: out.every((x) => x.ok !== false), detail: `${Date.now() - started} ms on a temporary collection` });
  } finally {
    await db
      .collection(name)
      .drop()
      .catch((err: unknown) => out.push({ name: 'MongoDB: temporary collection removed', ok: false, detail: err instanceof Error ? err.message : String(err), fix: `drop the collection ${name} by hand` }));
  }
  return out;
}

/**
 * The embedded store's directory: there or makeable, writable, and its lock. `self`: the pid of the
 * process asking, when it holds the store itself (the console of a running server).
 */
export function embeddedChecks(dataDir: string, self?: number): Check[] {
  const out: Check[] = [];
  try {
    mkdirSync(dataDir, { recursive: true });
    const probe = join(dataDir, `.doctor-${process.pid}-${randomBytes(4).toString('hex')}`);
    writeFileSync(probe, 'ok');
    unlinkSync(probe);
    out.push({ name: 'embedded store: directory writable', ok: true, detail: dataDir });
  } catch (err) {
    out.push({ name: 'embedded store: directory writable', ok: false, detail: `${dataDir}: ${err instanceof Error ? err.message : String(err)}`, fix: 'set DATA_DIR to a directory this user can create and write (in a container, a volume owned by its user)' });
    return out;
  }
  const holder = lockHolder(dataDir);
  if (!holder) out.push({ name: 'embedded store: lock', ok: true, detail: 'not locked' });
  else if (!holder.alive) out.push({ name: 'embedded store: lock', ok: true, detail: `left by process ${holder.pid}, which is gone: the next start takes it over` });
  else if (holder.pid === self) out.push({ name: 'embedded store: lock', ok: true, detail: `held by this server (process ${holder.pid})` });
  else
    out.push({
      name: 'embedded store: lock',
      ok: undefined,
      detail: `held by process ${holder.pid}${holder.host ? ` on ${holder.host}` : ''}, which runs: a second server on this DATA_DIR would be refused`,
      fix: 'if that is your server, this is expected (its console’s 健康 → 检查 page checks it running); otherwise stop it or use another DATA_DIR',
    });
  return out;
}

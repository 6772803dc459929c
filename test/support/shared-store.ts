/**
 * One store shared by several server processes, for tests of what instances do together (pollers'
 * leases, takeover after kill -9, rolling restarts) on a machine without a MongoDB server. The test
 * process keeps the collections (the embedded store's engine, in memory) and serves each collection
 * operation over loopback HTTP; every child process opens it as a `mongodb`-kind backend (shared:
 * changes made by another process are not announced, as on MongoDB). Each operation runs whole in
 * the test process, one at a time, so it is as atomic as MongoDB's single-document operations.
 */
import { createServer } from 'http';
import type { AddressInfo } from 'net';
import { nedbBackend } from '../../lib/store/nedb';
import type { Backend, Collection, IndexSpec } from '../../lib/store/collection';
import { call } from '../../lib/util/http';

/** Dates cross as {$date: ms}. */
const encode = (v: unknown): string => JSON.stringify(v, function (this: Record<string, unknown>, k: string) {
  const raw = this[k];
  return raw instanceof Date ? { $date: raw.getTime() } : (raw as unknown);
});
const decode = (text: string): unknown =>
  JSON.parse(text, (_k, v: unknown) => (v && typeof v === 'object' && '$date' in v && typeof (v as { $date: unknown }).$date === 'number' ? new Date((v as { $date: number }).$date) : v));

type Op = 'insert' | 'findOne' | 'find' | 'updateOne' | 'updateMany' | 'upsert' | 'deleteMany';

export interface SharedStore {
  url: string;
  /** Operations served so far. */
  ops: number;
  close(): Promise<void>;
}

export async function startSharedStore(): Promise<SharedStore> {
  const inner = nedbBackend({ inMemory: true });
  const open = new Map<string, Promise<Collection<{ _id: string }>>>();
  let chain: Promise<unknown> = Promise.resolve();
  const state = { ops: 0 };
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const { name, indexes, op, args } = decode(Buffer.concat(parts).toString('utf8')) as { name: string; indexes: IndexSpec[]; op: Op | 'open'; args: unknown[] };
      // One operation at a time, whole: the atomicity MongoDB gives one document's update.
      const run = (chain = chain.then(async () => {
        if (!open.has(name)) open.set(name, inner.collection(name, indexes));
        const c = (await open.get(name)) as Collection<{ _id: string }>;
        state.ops++;
        if (op === 'open') return null;
        return (c[op] as (...a: unknown[]) => Promise<unknown>)(...args);
      }));
      run.then(
        (out) => {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(encode({ out: out === undefined ? null : out }));
        },
        (err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' });
          res.end(String(err));
        },
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get ops() {
      return state.ops;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await inner.close();
    },
  };
}

/** The backend a child process opens on the shared store at `url`. */
export function sharedStoreBackend(url: string): Backend {
  const rpc = async (name: string, indexes: readonly IndexSpec[], op: Op | 'open', args: unknown[]): Promise<unknown> => {
    const res = await call({ method: 'POST', url, body: encode({ name, indexes, op, args }), headers: { 'Content-Type': 'application/json' }, timeoutMs: 10_000 });
    if (res.status !== 200) throw new Error(`shared store: ${res.body.toString('utf8')}`);
    return (decode(res.body.toString('utf8')) as { out: unknown }).out;
  };
  return {
    kind: 'mongodb',
    async collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]): Promise<Collection<T>> {
      await rpc(name, indexes, 'open', []);
      const op =
        (o: Op) =>
        (...args: unknown[]) => {
          // An optional argument left out stays out (JSON would make it null).
          while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
          return rpc(name, indexes, o, args);
        };
      return {
        insert: op('insert') as Collection<T>['insert'],
        findOne: op('findOne') as Collection<T>['findOne'],
        find: op('find') as Collection<T>['find'],
        updateOne: op('updateOne') as Collection<T>['updateOne'],
        updateMany: op('updateMany') as Collection<T>['updateMany'],
        upsert: op('upsert') as Collection<T>['upsert'],
        deleteMany: op('deleteMany') as Collection<T>['deleteMany'],
      };
    },
    close: async () => undefined,
  };
}

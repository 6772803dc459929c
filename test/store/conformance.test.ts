/**
 * One conformance suite for every store backend: the embedded file store always, MongoDB when
 * MONGODB_URI is set (each run uses a fresh database and drops it).
 */
import { randomBytes } from 'crypto';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../lib/store/collection';
import { connectMongo } from '../../lib/store/mongo';
import { nedbBackend } from '../../lib/store/nedb';
import { Store } from '../../lib/store/store';
import type { MessageRecord } from '../../lib/store/store';

interface Kind {
  name: string;
  open(): Promise<Backend>;
  /** Open a second handle on the same data (a restart, or another instance). */
  reopen(): Promise<Backend>;
  cleanup(): Promise<void>;
}

const dir = mkdtempSync(join(tmpdir(), 'wdb-store-'));
const kinds: Kind[] = [
  {
    name: 'embedded file store (nedb)',
    open: async () => nedbBackend({ dataDir: dir }),
    reopen: async () => nedbBackend({ dataDir: dir }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  },
];
const mongoUri = process.env['MONGODB_URI'];
if (mongoUri) {
  const db = `wdb_test_${randomBytes(4).toString('hex')}`;
  kinds.push({
    name: 'mongodb',
    open: () => connectMongo(mongoUri, db),
    reopen: () => connectMongo(mongoUri, db),
    cleanup: async () => {
      const { MongoClient } = await import('mongodb');
      const c = new MongoClient(mongoUri);
      await c.connect();
      await c.db(db).dropDatabase();
      await c.close();
    },
  });
}

const T0 = Date.now();
const question = (id: string, user = 'oU', now = T0): Omit<MessageRecord, 'deliveries' | 'expireAt'> => ({
  _id: id,
  user,
  kind: 'question',
  createdAt: now,
  question: 'q',
  status: 'pending',
  generation: 0,
  pagesDelivered: 0,
  attempts: 1,
  heartbeatAt: now,
});

describe.each(kinds)('store conformance: $name', (kind) => {
  let store: Store;
  afterAll(async () => {
    await store?.close();
    await kind.cleanup();
  });
  const open = async () => (store ??= await Store.open(await kind.open()));

  it('claims a message exactly once, counting every delivery, even when deliveries race', async () => {
    const s = await open();
    const results = await Promise.all(Array.from({ length: 20 }, () => s.claim(question('oU:race'))));
    expect(results.filter((r) => r.first)).toHaveLength(1);
    expect(results.map((r) => r.record.deliveries).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('keeps MsgIds of different users apart (sender + MsgId)', async () => {
    const s = await open();
    expect((await s.claim(question('oA:6054768590064713728', 'oA'))).first).toBe(true);
    expect((await s.claim(question('oB:6054768590064713728', 'oB'))).first).toBe(true);
  });

  it('fixes a reply once: the first writer wins and every later caller gets it', async () => {
    const s = await open();
    await s.claim({ _id: 'oU:fetch1', user: 'oU', kind: 'fetch', createdAt: T0 });
    const replies = await Promise.all(['page A', 'page B', 'page C'].map((r) => s.fixReply('oU:fetch1', r)));
    expect(new Set(replies).size).toBe(1);
    expect((await s.message('oU:fetch1'))?.reply).toBe(replies[0]);
  });

  it('hands out each page once (compare-and-set on pagesDelivered)', async () => {
    const s = await open();
    await s.claim(question('oU:paged'));
    await s.messages.updateOne({ _id: 'oU:paged' }, { $set: { status: 'answered', pages: ['1', '2', '3'] } });
    const took = await Promise.all([s.takePage('oU:paged', 0), s.takePage('oU:paged', 0), s.takePage('oU:paged', 0)]);
    expect(took.filter(Boolean)).toHaveLength(1);
    expect((await s.message('oU:paged'))?.pagesDelivered).toBe(1);
    expect(await s.takePage('oU:paged', 0)).toBe(false);
  });

  it('$max never lowers a counter; updateOne returns the document after the update, or null', async () => {
    const s = await open();
    await s.claim(question('oU:max'));
    await s.messages.updateOne({ _id: 'oU:max' }, { $set: { pagesDelivered: 2 } });
    const after = await s.messages.updateOne({ _id: 'oU:max' }, { $max: { pagesDelivered: 1 } });
    expect(after?.pagesDelivered).toBe(2);
    expect(await s.messages.updateOne({ _id: 'oU:max', status: 'answered' }, { $set: { answer: 'x' } })).toBeNull();
  });

  it('stores the conversation per user and generation; /clear starts a new generation', async () => {
    const s = await open();
    await s.setConversation('oC', 0, 'conv-1', 1);
    expect((await s.user('oC'))?.conversationId).toBe('conv-1');
    const { conversationId } = await s.clearUser('oC', 2);
    expect(conversationId).toBe('conv-1');
    const u = await s.user('oC');
    expect(u?.conversationId).toBeUndefined();
    expect(u?.generation).toBe(1);
    // An answer asked before the clear must not bring the old conversation back.
    await s.setConversation('oC', 0, 'conv-old', 3);
    expect((await s.user('oC'))?.conversationId).toBeUndefined();
    await s.setConversation('oC', 1, 'conv-2', 4);
    expect((await s.user('oC'))?.conversationId).toBe('conv-2');
    await s.forgetConversation('oC', 'conv-other');
    expect((await s.user('oC'))?.conversationId).toBe('conv-2');
    await s.forgetConversation('oC', 'conv-2');
    expect((await s.user('oC'))?.conversationId).toBeUndefined();
  });

  it('tracks the latest question per user', async () => {
    const s = await open();
    await s.setLatest('oL', 'oL:1', 1);
    await s.setLatest('oL', 'oL:2', 2);
    expect((await s.user('oL'))?.latest).toBe('oL:2');
  });

  it('finds pending questions whose heartbeat is stale, and only those', async () => {
    const s = await open();
    await s.claim(question('oS:old', 'oS', T0 - 60_000));
    await s.claim(question('oS:fresh', 'oS', T0));
    const stale = await s.stalePending(T0 - 30_000);
    expect(stale.map((r) => r._id)).toContain('oS:old');
    expect(stale.map((r) => r._id)).not.toContain('oS:fresh');
  });

  it('deletes everything of a user who unsubscribes, and nobody else’s', async () => {
    const s = await open();
    await s.claim(question('oD:1', 'oD'));
    await s.setLatest('oD', 'oD:1', 1);
    await s.claim(question('oKeep:1', 'oKeep'));
    await s.deleteUser('oD');
    expect(await s.message('oD:1')).toBeNull();
    expect(await s.user('oD')).toBeNull();
    expect(await s.message('oKeep:1')).not.toBeNull();
  });

  it('removes messages once their retention has passed (TTL on expireAt)', async () => {
    const s = await open();
    await s.claim(question('oT:old', 'oT', T0 - 8 * 86_400_000));
    await s.claim(question('oT:new', 'oT', T0));
    // MongoDB's TTL monitor runs once a minute; the document is then gone. NeDB drops it on read.
    const r = await s.message('oT:old');
    if (r) expect(r.expireAt.getTime()).toBeLessThan(Date.now());
    else expect(r).toBeNull();
    expect(await s.message('oT:new')).not.toBeNull();
  });

  it('keeps the data across a restart', async () => {
    const s = await open();
    await s.claim(question('oP:persist', 'oP'));
    await s.messages.updateOne({ _id: 'oP:persist' }, { $set: { status: 'answered', answer: '持久化' } });
    await s.close();
    store = await Store.open(await kind.reopen());
    expect((await store.message('oP:persist'))?.answer).toBe('持久化');
    // indexes are created idempotently on every open
    await expect(Store.open(await kind.reopen()).then((x) => x.close())).resolves.toBeUndefined();
  });
});

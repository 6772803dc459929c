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
import { Store, pageCount, statCount } from '../../lib/store/store';
import type { ClaimResult, MessageRecord, Settlement } from '../../lib/store/store';

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
type Doc = Omit<MessageRecord, 'deliveries' | 'expireAt'>;
const question = (id: string, user = 'oU', now = T0, extra: Partial<Doc> = {}): Doc => ({
  _id: id,
  user,
  kind: 'question',
  createdAt: now,
  sentAt: Math.floor(now / 1000),
  question: 'q',
  status: 'pending',
  generation: 0,
  pagesDelivered: 0,
  takers: [],
  attempts: 1,
  heartbeatAt: now,
  ...extra,
});

function claimed(r: ClaimResult): { record: MessageRecord; first: boolean } {
  if (r.gone) throw new Error('unexpectedly gone');
  return r;
}

describe.each(kinds)('store conformance: $name', (kind) => {
  let store: Store;
  afterAll(async () => {
    await store?.close();
    await kind.cleanup();
  });
  const open = async () => (store ??= await Store.open(await kind.open()));
  /** A question answered with `pages` (or failed when none). */
  const answered = async (s: Store, id: string, user: string, pages: string[] | null, now = T0) => {
    claimed(await s.claim(question(id, user, now)));
    const result: Settlement = pages ? { status: 'answered', answer: pages.join(''), pages } : { status: 'failed', failure: { kind: 'busy', code: 'x', status: 503, backendCode: '' } };
    const done = await s.settle(id, 1, result, now + 1);
    if (!done) throw new Error('settle failed');
    return done;
  };

  it('claims a message exactly once, counting every delivery, even when deliveries race', async () => {
    const s = await open();
    const results = (await Promise.all(Array.from({ length: 20 }, () => s.claim(question('oU:race'))))).map(claimed);
    expect(results.filter((r) => r.first)).toHaveLength(1);
    expect(results.map((r) => r.record.deliveries).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('keeps MsgIds of different users apart (sender + MsgId)', async () => {
    const s = await open();
    expect(claimed(await s.claim(question('oA:6054768590064713728', 'oA'))).first).toBe(true);
    expect(claimed(await s.claim(question('oB:6054768590064713728', 'oB'))).first).toBe(true);
  });

  it('puts questions in the user’s inbox in the order they were asked, and nothing else', async () => {
    const s = await open();
    claimed(await s.claim(question('oI:3', 'oI', T0 + 3)));
    claimed(await s.claim(question('oI:1', 'oI', T0 + 1)));
    claimed(await s.claim(question('oI:2', 'oI', T0 + 2)));
    claimed(await s.claim({ _id: 'oI:fetch', user: 'oI', kind: 'fetch', createdAt: T0 }));
    claimed(await s.claim(question('oOther:1', 'oOther', T0)));
    expect((await s.inbox('oI')).map((r) => r._id)).toEqual(['oI:1', 'oI:2', 'oI:3']);
  });

  it('hands out each page once across racing takers, remembers who took it, and empties the inbox after the last', async () => {
    const s = await open();
    const q = await answered(s, 'oP:1', 'oP', ['p1', 'p2']);
    const first = await Promise.all(['oP:a', 'oP:b', 'oP:c'].map((k) => s.takePage(q, 0, k, 'fetch', T0)));
    expect(first.filter(Boolean)).toHaveLength(1);
    const winner = first.find(Boolean) as MessageRecord;
    expect(winner.pagesDelivered).toBe(1);
    expect(await s.takePage(q, 0, 'oP:late', 'fetch', T0)).toBeNull();
    expect((await s.inbox('oP')).map((r) => r._id)).toEqual(['oP:1']);
    const second = await s.takePage(winner, 1, 'oP:d', 'fetch', T0);
    expect(second?.takers).toEqual([winner.takers?.[0], 'oP:d']);
    expect(await s.inbox('oP')).toEqual([]);
    expect(await s.takePage(second as MessageRecord, 2, 'oP:e', 'fetch', T0)).toBeNull();
    expect(await s.takenBy('oP', 'oP:d')).toMatchObject({ page: 1, record: { _id: 'oP:1' } });
    expect(await s.takenBy('oP', 'oP:nobody')).toBeNull();
  });

  it('counts a failure notice as one page', async () => {
    const s = await open();
    const q = await answered(s, 'oF:1', 'oF', null);
    expect(pageCount(q)).toBe(1);
    expect(await s.takePage(q, 0, 'oF:one', 'fetch', T0)).not.toBeNull();
    expect(await s.inbox('oF')).toEqual([]);
  });

  it('gives a page that could not be sent back to the inbox', async () => {
    const s = await open();
    const q = await answered(s, 'oR:1', 'oR', ['only']);
    const took = (await s.takePage(q, 0, 'push', 'fetch', T0)) as MessageRecord;
    expect(await s.inbox('oR')).toEqual([]);
    expect(await s.returnPage(took, 0, 'someone-else')).toBe(false);
    expect(await s.returnPage(took, 0, 'push')).toBe(true);
    const back = await s.inbox('oR');
    expect(back.map((r) => [r._id, r.pagesDelivered, r.takers])).toEqual([['oR:1', 0, []]]);
    expect(await s.takePage(back[0] as MessageRecord, 0, 'oR:one', 'fetch', T0)).not.toBeNull();
  });

  it('announces in its process what a waiting delivery must hear: settle, /clear, a page given back, unsubscribe; once each, per user', async () => {
    const s = await open();
    const heard: string[] = [];
    const offs = ['oN', 'oM'].map((u) => s.onChange(u, () => heard.push(u)));
    claimed(await s.claim(question('oN:1', 'oN')));
    await s.heartbeat('oN:1', 1, T0 + 1, 'so far');
    expect(heard).toEqual([]); // claims and progress change nothing a delivery waits for
    const q = (await s.settle('oN:1', 1, { status: 'answered', answer: 'a', pages: ['a'] }, T0 + 2)) as MessageRecord;
    expect(await s.settle('oN:1', 1, { status: 'answered', answer: 'b', pages: ['b'] }, T0 + 3)).toBeNull();
    expect(heard).toEqual(['oN']); // the settle that did not match says nothing
    const took = (await s.takePage(q, 0, 'oN:9', 'fetch', T0)) as MessageRecord;
    expect(await s.returnPage(took, 0, 'someone-else')).toBe(false);
    expect(await s.returnPage(took, 0, 'oN:9')).toBe(true);
    await s.clearUser('oN', T0 + 4);
    await s.forgetUser('oM', T0, T0 + 5);
    expect(heard).toEqual(['oN', 'oN', 'oN', 'oM']);
    for (const off of offs) off();
    await s.clearUser('oN', T0 + 6);
    expect(heard).toHaveLength(4);
  });

  it('keeps a heartbeat only while the question is this attempt’s to answer', async () => {
    const s = await open();
    claimed(await s.claim(question('oH:1', 'oH')));
    expect(await s.heartbeat('oH:1', 1, T0 + 5, 'partial')).toBe(true);
    expect((await s.message('oH:1'))?.answer).toBe('partial');
    expect(await s.heartbeat('oH:1', 2, T0 + 6)).toBe(false);
    await s.settle('oH:1', 1, { status: 'answered', answer: 'a', pages: ['a'] }, T0 + 7);
    expect(await s.heartbeat('oH:1', 1, T0 + 8)).toBe(false);
    expect((await s.message('oH:1'))?.heartbeatAt).toBeUndefined();
    expect(await s.settle('oH:1', 1, { status: 'answered', answer: 'b', pages: ['b'] }, T0 + 9)).toBeNull();
    expect((await s.message('oH:1'))?.answer).toBe('a');
    expect(await s.heartbeat('oH:missing', 1, T0)).toBe(false);
  });

  it('lets exactly one instance take over a stale question, and gives up after the second attempt', async () => {
    const s = await open();
    claimed(await s.claim(question('oT:1', 'oT', T0 - 60_000)));
    const q = (await s.message('oT:1')) as MessageRecord;
    const takes = await Promise.all([1, 2, 3].map(() => s.takeOver(q, T0 - 30_000, T0)));
    expect(takes.filter(Boolean)).toHaveLength(1);
    expect(await s.takeOver(q, T0 - 30_000, T0)).toBeNull(); // fresh heartbeat now
    const again = (await s.message('oT:1')) as MessageRecord;
    expect(again.attempts).toBe(2);
    expect(await s.settle('oT:1', 1, { status: 'answered', answer: 'old worker', pages: ['x'] }, T0)).toBeNull();
    const failure = { kind: 'failed' as const, code: 'worker_lost', status: 0, backendCode: '' };
    expect(await s.abandon(again, T0 + 1, failure, T0 + 2)).not.toBeNull();
    expect((await s.message('oT:1'))?.status).toBe('failed');
  });

  it('a hand-over (a stopping process) makes the question stale at once, counted, only for its own attempt and only while pending', async () => {
    const s = await open();
    claimed(await s.claim(question('oHo:1', 'oHo', T0)));
    expect(await s.handOver('oHo:1', 2)).toBe(false); // not this attempt's
    expect(await s.heartbeat('oHo:1', 1, T0)).toBe(true);
    expect(await s.handOver('oHo:1', 1)).toBe(true);
    const q = (await s.message('oHo:1')) as MessageRecord;
    expect(q).toMatchObject({ heartbeatAt: 0, handovers: 1, attempts: 1 });
    // Stale at once: taken over however recent its last heartbeat was.
    expect(await s.takeOver(q, T0 - 1, T0)).toMatchObject({ attempts: 2, handovers: 1 });
    claimed(await s.claim(question('oHo:2', 'oHo', T0)));
    await s.settle('oHo:2', 1, { status: 'answered', answer: 'a', pages: ['a'] }, T0);
    expect(await s.handOver('oHo:2', 1)).toBe(false); // settled: nothing to hand over
  });

  it('finds pending questions whose heartbeat is stale, and only those', async () => {
    const s = await open();
    claimed(await s.claim(question('oS:old', 'oS', T0 - 60_000)));
    claimed(await s.claim(question('oS:fresh', 'oS', T0)));
    await answered(s, 'oS:done', 'oS', ['x'], T0 - 60_000);
    const stale = (await s.stalePending(T0 - 30_000)).map((r) => r._id);
    expect(stale).toContain('oS:old');
    expect(stale).not.toContain('oS:fresh');
    expect(stale).not.toContain('oS:done');
  });

  it('keeps at most the newest answers in an inbox', async () => {
    const s = await open();
    for (let i = 0; i < 5; i++) claimed(await s.claim(question(`oCap:${i}`, 'oCap', T0 + i)));
    const trimmed = await s.trimInbox('oCap', 3);
    expect(trimmed.dropped).toEqual(['oCap:0', 'oCap:1']);
    expect(trimmed.kept.map((r) => r._id)).toEqual(['oCap:2', 'oCap:3', 'oCap:4']);
    expect((await s.inbox('oCap')).map((r) => r._id)).toEqual(['oCap:2', 'oCap:3', 'oCap:4']);
  });

  it('/clear starts a new generation and cancels every undelivered answer, leaving delivered ones alone', async () => {
    const s = await open();
    await s.setConversation('oC', 0, 'conv-1', 1);
    claimed(await s.claim(question('oC:pending', 'oC')));
    const ready = await answered(s, 'oC:ready', 'oC', ['a', 'b']);
    const done = await answered(s, 'oC:done', 'oC', ['x']);
    await s.takePage(done, 0, 'oC:done', 'fetch', T0);
    await s.takePage(ready, 0, 'oC:ready', 'fetch', T0);
    const { conversationId, cancelled } = await s.clearUser('oC', 2);
    expect(conversationId).toBe('conv-1');
    expect(cancelled).toBe(2);
    expect(await s.inbox('oC')).toEqual([]);
    expect((await s.message('oC:pending'))?.status).toBe('cleared');
    expect((await s.message('oC:ready'))?.status).toBe('cleared');
    expect((await s.message('oC:done'))?.status).toBe('answered');
    expect(await s.heartbeat('oC:pending', 1, 3)).toBe(false);
    expect(await s.settle('oC:pending', 1, { status: 'answered', answer: 'late', pages: ['late'] }, 3)).toBeNull();
    expect(await s.stalePending(Date.now() + 1e9)).not.toContainEqual(expect.objectContaining({ _id: 'oC:pending' }));
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

  it('deletes everything of a user who unsubscribes, keeps no OpenID, and refuses their older messages afterwards', async () => {
    const s = await open();
    const sentAt = Math.floor(T0 / 1000);
    claimed(await s.claim(question('oD:1', 'oDgone')));
    await s.setConversation('oDgone', 0, 'conv', 1);
    claimed(await s.claim(question('oKeep:1', 'oKeep')));
    await s.forgetUser('oDgone', sentAt, T0);
    expect(await s.message('oD:1')).toBeNull();
    expect(await s.user('oDgone')).toBeNull();
    expect(await s.message('oKeep:1')).not.toBeNull();
    const snap = await s.snapshot();
    expect(JSON.stringify(snap)).not.toContain('oDgone');
    // WeChat re-delivers a message sent before the unsubscribe: nothing is recorded.
    expect(await s.claim(question('oD:1', 'oDgone', T0, { sentAt }))).toEqual({ gone: true });
    expect(await s.message('oD:1')).toBeNull();
    // A message sent after it (they followed again) is new.
    expect(claimed(await s.claim(question('oD:2', 'oDgone', T0, { sentAt: sentAt + 5 }))).first).toBe(true);
  });

  it('keeps shared values until they expire, expires them on request, and leases them to one owner', async () => {
    const s = await open();
    await s.kvPut('k:1', 'v1', T0 + 1000);
    expect(await s.kvGet('k:1', T0)).toBe('v1');
    expect(await s.kvGet('k:1', T0 + 1000)).toBeUndefined();
    await s.kvExpire('k:1', 'other');
    expect(await s.kvGet('k:1', T0)).toBe('v1');
    await s.kvExpire('k:1', 'v1');
    expect(await s.kvGet('k:1', T0)).toBeUndefined();
    const got = await Promise.all(['a', 'b', 'c'].map((o) => s.acquireLease('lease:1', o, T0 + 100, T0)));
    expect(got.filter(Boolean)).toHaveLength(1);
    await s.releaseLease('lease:1', 'not-the-owner');
    expect(await s.acquireLease('lease:1', 'd', T0 + 100, T0 + 50)).toBe(false);
    expect(await s.acquireLease('lease:1', 'd', T0 + 300, T0 + 200)).toBe(true); // expired: taken over
    await s.releaseLease('lease:1', 'd');
    expect(await s.acquireLease('lease:1', 'e', T0 + 300, T0 + 200)).toBe(true);
    // Renewed by its owner only: another owner's renewal changes nothing, and it still expires when it said.
    expect(await s.renewLease('lease:1', 'd', T0 + 900)).toBe(false);
    expect(await s.acquireLease('lease:1', 'f', T0 + 900, T0 + 250)).toBe(false);
    expect(await s.renewLease('lease:1', 'e', T0 + 900)).toBe(true);
    expect(await s.acquireLease('lease:1', 'f', T0 + 1000, T0 + 400)).toBe(false); // past its first end (T0 + 300): renewed
    expect(await s.acquireLease('lease:1', 'f', T0 + 1000, T0 + 901)).toBe(true);
    expect(await s.renewLease('lease:1', 'e', T0 + 2000)).toBe(false); // taken over: no longer e's
    expect(await s.renewLease('lease:gone', 'e', T0 + 2000)).toBe(false);
  });

  it('pollers: one owner of a lease however many race; renewed by its owner only; taken over once expired; the cursor moves only for the owner and outlives the lease', async () => {
    const s = await open();
    const acct = `acct-${randomBytes(3).toString('hex')}`;
    const got = await Promise.all(['a', 'b', 'c'].map((o) => s.claimPoller(acct, o, T0 + 1000, T0)));
    expect(got.filter((g) => g !== null)).toEqual([{ cursor: undefined }]);
    const owner = ['a', 'b', 'c'][got.findIndex((g) => g !== null)] as string;
    const other = owner === 'a' ? 'b' : 'a';
    // The owner renews and moves the cursor; another may do neither while the lease lives.
    expect(await s.claimPoller(acct, owner, T0 + 2000, T0 + 500)).toEqual({ cursor: undefined });
    expect(await s.savePollCursor(acct, owner, 'c1')).toBe(true);
    expect(await s.claimPoller(acct, other, T0 + 3000, T0 + 1500)).toBeNull();
    expect(await s.savePollCursor(acct, other, 'forged')).toBe(false);
    // Expired (its owner died): taken over, cursor and all; the old owner can no longer write it.
    expect(await s.claimPoller(acct, other, T0 + 4000, T0 + 2500)).toEqual({ cursor: 'c1' });
    expect(await s.savePollCursor(acct, owner, 'stale')).toBe(false);
    expect(await s.claimPoller(acct, owner, T0 + 4000, T0 + 2600)).toBeNull();
    // A release frees the lease at once and keeps the cursor; a reset forgets the cursor.
    await s.releasePoller(acct, owner); // not the owner: nothing happens
    expect(await s.claimPoller(acct, owner, T0 + 5000, T0 + 2700)).toBeNull();
    await s.releasePoller(acct, other);
    expect(await s.claimPoller(acct, owner, T0 + 5000, T0 + 2700)).toEqual({ cursor: 'c1' });
    expect(await s.pollerState(acct)).toEqual({ owner, until: T0 + 5000, hasCursor: true });
    await s.resetPollCursor(acct);
    expect(await s.claimPoller(acct, owner, T0 + 6000, T0 + 2800)).toEqual({ cursor: undefined });
  });

  it('answer pages: one shared secret, lookup by token hash, progress only once a link is out', async () => {
    const s = await open();
    const secrets = await Promise.all([s.pageSecret(), s.pageSecret(), s.pageSecret()]);
    expect(secrets[0]).toHaveLength(32);
    expect(new Set(secrets.map((b) => b.toString('hex'))).size).toBe(1);
    claimed(await s.claim(question('oG:1', 'oG', T0, { pageToken: 'h1' })));
    expect((await s.byPageToken('h1'))?._id).toBe('oG:1');
    expect(await s.byPageToken('h2')).toBeNull();
    await s.saveProgress('oG:1', 1, '还没有链接');
    expect((await s.message('oG:1'))?.answer ?? '').toBe('');
    await s.markPlaceholderSent('oG:1');
    await s.saveProgress('oG:1', 2, '别的尝试');
    expect((await s.message('oG:1'))?.answer ?? '').toBe('');
    await s.saveProgress('oG:1', 1, '写到一半');
    expect((await s.message('oG:1'))?.answer).toBe('写到一半');
    await s.notePageView('oG:1', T0 + 500);
    await s.notePageView('oG:1', T0 + 100);
    expect((await s.message('oG:1'))?.pageViewUntil).toBe(T0 + 500);
  });

  it('answer pages: reading to the end delivers the rest once, keeps who took the first pages, notes it for `1`', async () => {
    const s = await open();
    const q = await answered(s, 'oRead:1', 'oRead', ['p1', 'p2', 'p3']);
    const after1 = (await s.takePage(q, 0, 'oRead:reply', 'fetch', T0)) as MessageRecord;
    const [a, b] = await Promise.all([s.markReadOnPage(after1, T0 + 10, 'q'), s.markReadOnPage(after1, T0 + 10, 'q')]);
    expect([a, b].filter(Boolean)).toHaveLength(1);
    const read = await s.message('oRead:1');
    expect(read).toMatchObject({ pagesDelivered: 3, takers: ['oRead:reply', 'page', 'page'], readOnPage: true });
    expect(read?.inbox).toBeUndefined();
    expect(await s.takePage(read as MessageRecord, 3, 'oRead:late', 'fetch', T0)).toBeNull();
    expect((await s.user('oRead'))?.pageRead).toEqual({ question: 'q', at: T0 + 10 });
    expect(await s.markReadOnPage(read as MessageRecord, T0 + 20, 'q')).toBe(false);
    // A pending question has nothing to mark.
    claimed(await s.claim(question('oRead:2', 'oRead')));
    expect(await s.markReadOnPage((await s.message('oRead:2')) as MessageRecord, T0, 'q')).toBe(false);
  });

  it('cancels one pending question (its asker left): the others stay, its worker hears it once, settled ones are not touched', async () => {
    const s = await open();
    claimed(await s.claim(question('oX:a', 'oX', T0, { outbox: 'api' })));
    claimed(await s.claim(question('oX:b', 'oX')));
    const done = await answered(s, 'oX:c', 'oX', ['c']);
    let stopped = 0;
    let changed = 0;
    const offStop = s.onStopped('oX:a', () => stopped++);
    const offChange = s.onChange('oX', () => changed++);
    const racing = await Promise.all([s.cancelQuestion('oX:a', T0 + 1), s.cancelQuestion('oX:a', T0 + 1)]);
    expect(racing.filter(Boolean)).toHaveLength(1);
    expect(stopped).toBe(1);
    expect(changed).toBe(1);
    offStop();
    offChange();
    const a = (await s.message('oX:a')) as MessageRecord;
    expect(a.status).toBe('cleared');
    expect(a.inbox).toBeUndefined();
    expect(a.outbox).toBeUndefined();
    expect(await s.heartbeat('oX:a', 1, T0 + 2)).toBe(false);
    expect(await s.settle('oX:a', 1, { status: 'answered', answer: 'late', pages: ['late'] }, T0 + 2)).toBeNull();
    expect((await s.message('oX:b'))?.status).toBe('pending');
    expect(await s.cancelQuestion('oX:c', T0 + 3)).toBeNull();
    expect((await s.message('oX:c'))?.status).toBe(done.status);
    expect(await s.cancelQuestion('oX:none', T0 + 3)).toBeNull();
    expect((await s.inbox('oX')).map((q) => q._id)).toEqual(['oX:b', 'oX:c']);
  });

  it('a new conversation: forgets the backend conversation and history, cancels nothing, never goes back past a later /clear', async () => {
    const s = await open();
    await s.setConversation('oNC', 0, 'conv-1', T0);
    await s.addTurn('oNC', 0, { question: 'q', answer: 'a', askedAt: T0 }, 5, T0);
    claimed(await s.claim(question('oNC:pending', 'oNC')));
    await s.startConversation('oNC', 1, T0 + 1);
    expect(await s.user('oNC')).toMatchObject({ generation: 1 });
    expect((await s.user('oNC'))?.conversationId).toBeUndefined();
    expect((await s.user('oNC'))?.history).toBeUndefined();
    expect((await s.message('oNC:pending'))?.status).toBe('pending');
    // The old conversation's answer does not come back into the new one; the new one's does.
    await s.setConversation('oNC', 0, 'conv-old', T0 + 2);
    expect((await s.user('oNC'))?.conversationId).toBeUndefined();
    await s.setConversation('oNC', 1, 'conv-2', T0 + 2);
    expect((await s.user('oNC'))?.conversationId).toBe('conv-2');
    // A /clear went further meanwhile: an older start changes nothing.
    await s.clearUser('oNC', T0 + 3);
    await s.startConversation('oNC', 2, T0 + 4);
    expect(await s.user('oNC')).toMatchObject({ generation: 2 });
    // A user with no record yet starts at the generation given.
    await s.startConversation('oNew', 1, T0 + 5);
    expect(await s.user('oNew')).toMatchObject({ generation: 1 });
  });

  it('history: turns appended atomically and capped, not after a /clear, gone with the user', async () => {
    const s = await open();
    const turn = (n: number) => ({ question: `q${n}`, answer: `a${n}`, askedAt: T0 + n });
    await Promise.all([1, 2, 3, 4, 5].map((n) => s.addTurn('oT', 0, turn(n), 3, T0 + n)));
    const kept = (await s.user('oT'))?.history ?? [];
    expect(kept).toHaveLength(3);
    expect(new Set(kept.map((t) => t.question)).size).toBe(3);
    await s.clearUser('oT', T0 + 10);
    expect((await s.user('oT'))?.history).toBeUndefined();
    // An answer to a question asked before the /clear (generation 0) does not join the new conversation.
    await s.addTurn('oT', 0, turn(6), 3, T0 + 11);
    expect((await s.user('oT'))?.history).toBeUndefined();
    await s.addTurn('oT', 1, turn(7), 3, T0 + 12);
    expect((await s.user('oT'))?.history?.map((t) => t.question)).toEqual(['q7']);
    await s.forgetUser('oT', Math.floor((T0 + 13) / 1000), T0 + 13);
    expect(await s.user('oT')).toBeNull();
  });

  it('limits: racing messages never pass a window’s limit; a full window undoes the others; a message keeps its verdict', async () => {
    const s = await open();
    const until = T0 + 3_600_000;
    const hour = { id: 'rate:h:oLimit:1', limit: 5, until };
    const budget = { id: 'budget:d:1', limit: 7, until };
    // 20 different messages at once, each delivered three times at once: exactly 5 admitted.
    const verdicts = await Promise.all(Array.from({ length: 60 }, (_, i) => s.admit(`oLimit:m${i % 20}`, [hour, budget], T0)));
    const byMessage = new Map<string, boolean>();
    verdicts.forEach((v, i) => {
      const key = `m${i % 20}`;
      expect(byMessage.get(key) ?? v.ok).toBe(v.ok); // every delivery of one message: the same verdict
      byMessage.set(key, v.ok);
    });
    expect([...byMessage.values()].filter(Boolean)).toHaveLength(5);
    // The refusals by the hourly window gave their budget counts back: 2 more fit the budget.
    const other = { id: 'rate:h:oOther:1', limit: 100, until };
    const more = await Promise.all(Array.from({ length: 4 }, (_, i) => s.admit(`oOther:m${i}`, [other, budget], T0)));
    expect(more.filter((v) => v.ok)).toHaveLength(2);
    const refused = more.find((v) => !v.ok);
    expect(refused).toEqual({ ok: false, window: 'budget:d:1', until });
    // A window that has passed is a new window (its id names it).
    expect((await s.admit('oLimit:next-hour', [{ ...hour, id: 'rate:h:oLimit:2', until: until + 3_600_000 }], until + 1)).ok).toBe(true);
  });

  it('countUnder: racing events never pass the limit; the window slides with each counted event, then starts again', async () => {
    const s = await open();
    const W = 600_000;
    // 100 at once on one window of 20: exactly 20 counted, whatever the interleaving.
    const first = await Promise.all(Array.from({ length: 100 }, () => s.countUnder('login:a', 20, W, T0)));
    expect(first.filter(Boolean)).toHaveLength(20);
    expect(await s.countUnder('login:a', 20, W, T0 + 1)).toBe(false);
    // Another window is not affected.
    expect(await s.countUnder('login:b', 20, W, T0 + 1)).toBe(true);
    // A refused event does not extend the window: it runs out W after the last counted one.
    expect(await s.countUnder('login:a', 20, W, T0 + W - 1)).toBe(false);
    const next = await Promise.all(Array.from({ length: 30 }, () => s.countUnder('login:a', 20, W, T0 + W + 1)));
    expect(next.filter(Boolean)).toHaveLength(20);
    // Each counted event slides the window: counted at T0 + W + 1, so still full just before T0 + 2W + 1.
    expect(await s.countUnder('login:a', 20, W, T0 + 2 * W)).toBe(false);
    expect(await s.countUnder('login:a', 20, W, T0 + 2 * W + 2)).toBe(true);
    // A limit of 1 admits one of many racers.
    const one = await Promise.all(Array.from({ length: 10 }, () => s.countUnder('login:c', 1, W, T0)));
    expect(one.filter(Boolean)).toHaveLength(1);
  });

  it('an answer keeps its parts; each channel’s outcome and cached copy are noted on the part, only on parts that exist', async () => {
    const s = await open();
    claimed(await s.claim(question('parts:1', 'oParts')));
    const parts = [{ url: 'https://x.example/a.png', kind: 'image' as const }, { url: 'https://x.example/b.pdf', kind: 'file' as const, name: 'b.pdf' }];
    await s.settle('parts:1', 1, { status: 'answered', answer: '![a](https://x.example/a.png)', pages: ['[a]'], parts }, T0 + 1);
    await s.notePart('parts:1', 0, 'wechat-oa', 'image message');
    await s.notePart('parts:1', 1, 'line@shop.2', 'link');
    await s.cachePart('parts:1', 0, 'wechat-oa', 'MEDIA_ID_1', T0 + 3 * 86_400_000);
    await s.notePart('parts:1', 5, 'wechat-oa', 'nothing there');
    const q = await s.message('parts:1');
    expect(q?.parts).toEqual([
      { ...parts[0], sent: { 'wechat-oa': 'image message' }, cached: { 'wechat-oa': { id: 'MEDIA_ID_1', until: T0 + 3 * 86_400_000 } } },
      // A channel name is one level of the path: a dot in it cannot reach into another field.
      { ...parts[1], sent: { 'line@shop_2': 'link' } },
    ]);
    expect(q?.parts).toHaveLength(2);
  });

  it('pictures wait in the user’s record; a transcript is set once, by the attempt answering; push attempts are kept', async () => {
    const s = await open();
    await s.keepImage('oPicS', { picUrl: 'http://x/1.jpg', mediaId: 'm1' }, T0);
    expect((await s.user('oPicS'))?.image).toEqual({ picUrl: 'http://x/1.jpg', mediaId: 'm1', at: T0 });
    await s.dropImage('oPicS', T0 - 1); // not that picture: nothing happens
    expect((await s.user('oPicS'))?.image?.mediaId).toBe('m1');
    await s.dropImage('oPicS', T0);
    expect((await s.user('oPicS'))?.image).toBeUndefined();
    await s.noteScene('oPicS', 'poster', T0);
    expect((await s.user('oPicS'))?.scene).toBe('poster');
    claimed(await s.claim(question('oPicS:v', 'oPicS', T0, { question: '', voice: { mediaId: 'v1', format: 'amr' } })));
    expect(await s.setQuestion('oPicS:v', 2, 'wrong attempt')).toBe(false);
    expect(await s.setQuestion('oPicS:v', 1, '听到的话')).toBe(true);
    expect((await s.message('oPicS:v'))?.question).toBe('听到的话');
    for (let i = 0; i < 25; i++) await s.notePush('oPicS:v', { page: 1, at: T0 + i, errcode: 45015 });
    const pushes = (await s.message('oPicS:v'))?.pushes ?? [];
    expect(pushes).toHaveLength(20);
    expect(pushes.at(-1)?.at).toBe(T0 + 24);
  });

  it('other channels: one taker sends a whole answer; unsent answers are found for the sweep until sent or given up', async () => {
    const s = await open();
    claimed(await s.claim(question('discord:1:a', 'discord:1', T0, { outbox: 'discord', replyHandle: { token: 't', until: T0 + 1000 } })));
    claimed(await s.claim(question('discord:1:b', 'discord:1', T0, { outbox: 'discord' })));
    expect(await s.unsentChannelAnswers(T0 + 100)).toEqual([]); // pending: not yet the sweep's
    await s.settle('discord:1:a', 1, { status: 'answered', answer: 'x', pages: ['x', 'y'] }, T0 + 10);
    await s.settle('discord:1:b', 1, { status: 'answered', answer: 'z', pages: ['z'] }, T0 + 10);
    expect((await s.unsentChannelAnswers(T0 + 100)).map((q) => q._id).sort()).toEqual(['discord:1:a', 'discord:1:b']);
    const a = (await s.message('discord:1:a')) as MessageRecord;
    const takes = await Promise.all(Array.from({ length: 8 }, () => s.takeAll(a, 'discord', 'discord', T0 + 20)));
    expect(takes.filter(Boolean)).toHaveLength(1);
    const sent = (await s.message('discord:1:a')) as MessageRecord;
    expect(sent).toMatchObject({ pagesDelivered: 2, deliveredVia: 'discord' });
    expect(sent.inbox).toBeUndefined();
    expect(sent.outbox).toBeUndefined();
    // Nothing of it arrived: back to the outbox (by its taker only), a bounded number of times.
    expect(await s.returnAll(sent, 'someone-else', 'discord', 3)).toBe(false);
    expect(await s.returnAll(sent, 'discord', 'discord', 3)).toBe(true);
    const back = (await s.message('discord:1:a')) as MessageRecord;
    expect(back).toMatchObject({ pagesDelivered: 0, outbox: 'discord', inbox: 'discord:1', sendFailures: 1 });
    const again = (await s.takeAll(back, 'discord', 'discord', T0 + 30)) as MessageRecord;
    expect(await s.returnAll(again, 'discord', 'discord', 2)).toBe(false); // the second failure is the last
    await s.dropOutbox('discord:1:b');
    expect((await s.unsentChannelAnswers(T0 + 100)).map((q) => q._id)).toEqual([]);
  });

  it('a user’s questions, newest first, paged backwards by the time they were asked, and no one else’s', async () => {
    const s = await open();
    for (let i = 0; i < 5; i++) claimed(await s.claim(question(`web:v1:${i}`, 'web:v1', T0 + i * 10)));
    claimed(await s.claim(question('web:v2:0', 'web:v2', T0 + 15)));
    await s.keywordReplied('web:v1:kw', 'web:v1', 'hi', undefined, T0 + 100);
    expect((await s.questionsOf('web:v1', 3)).map((q) => q._id)).toEqual(['web:v1:4', 'web:v1:3', 'web:v1:2']);
    expect((await s.questionsOf('web:v1', 3, T0 + 20)).map((q) => q._id)).toEqual(['web:v1:1', 'web:v1:0']);
    expect(await s.questionsOf('web:v1', 3, T0)).toEqual([]);
    expect((await s.questionsOf('web:v2', 10)).map((q) => q._id)).toEqual(['web:v2:0']);
    expect(await s.questionsOf('web:nobody', 10)).toEqual([]);
  });

  it('cancelQuestion stops one pending question of its own user, once: its heartbeat and settle fail, it leaves inbox and outbox, it counts as cleared', async () => {
    const s = await open();
    claimed(await s.claim(question('web:c:1', 'web:c', T0, { outbox: 'web' })));
    claimed(await s.claim(question('web:c:2', 'web:c', T0 + 1, { outbox: 'web' })));
    await s.heartbeat('web:c:1', 1, T0 + 2, 'so far');
    const clearedCount = async () => statCount((await s.statsBetween(s.dayOf(T0), s.dayOf(T0))).at(0), 'cleared');
    const clearedBefore = await clearedCount();
    const heard: string[] = [];
    const off = s.onChange('web:c', () => heard.push('change'));
    expect(await s.cancelQuestion('web:c:1', T0 + 3, 'web:other')).toBeNull(); // not theirs
    const racing = await Promise.all(Array.from({ length: 6 }, () => s.cancelQuestion('web:c:1', T0 + 3, 'web:c')));
    expect(racing.filter(Boolean)).toHaveLength(1);
    off();
    expect(heard).toEqual(['change']);
    const q = (await s.message('web:c:1')) as MessageRecord;
    expect(q).toMatchObject({ status: 'cleared', answer: 'so far' });
    expect(q.inbox).toBeUndefined();
    expect(q.outbox).toBeUndefined();
    expect(q.heartbeatAt).toBeUndefined();
    expect(await s.heartbeat('web:c:1', 1, T0 + 4)).toBe(false);
    expect(await s.settle('web:c:1', 1, { status: 'answered', answer: 'late', pages: ['late'] }, T0 + 5)).toBeNull();
    // The other question is untouched; a settled one cannot be cancelled.
    expect((await s.inbox('web:c')).map((m) => m._id)).toEqual(['web:c:2']);
    await s.settle('web:c:2', 1, { status: 'answered', answer: 'a', pages: ['a'] }, T0 + 6);
    expect(await s.cancelQuestion('web:c:2', T0 + 7, 'web:c')).toBeNull();
    expect((await s.message('web:c:2'))?.status).toBe('answered');
    expect(await clearedCount()).toBe(clearedBefore + 1);
  });

  it('statistics: each question counted once at its claim, settle and first page, whatever races', async () => {
    const s = await open();
    const day = s.dayOf(T0);
    const before = (await s.statsBetween(day, day))[0] ?? {};
    await Promise.all(Array.from({ length: 10 }, () => s.claim(question('oS:1', 'oS'))));
    await Promise.all([1, 1, 1].map((a) => s.settle('oS:1', a, { status: 'answered', answer: 'x', pages: ['x'], usage: { total_tokens: 7 }, backend: 'dify' }, T0 + 2500)));
    const q = (await s.message('oS:1')) as MessageRecord;
    const takes = await Promise.all(['oS:1', 'oS:f1', 'oS:f2'].map((k, i) => s.takePage(q, 0, k, i === 0 ? 'reply1' : 'fetch', T0 + 3000)));
    const winner = takes.find(Boolean) as MessageRecord;
    let now = (await s.statsBetween(day, day))[0] ?? {};
    expect(statCount(now, 'questions') - statCount(before, 'questions')).toBe(1);
    expect(statCount(now, 'answered') - statCount(before, 'answered')).toBe(1);
    expect(statCount(now, 'latency.3') - statCount(before, 'latency.3')).toBe(1);
    expect(statCount(now, 'tokens') - statCount(before, 'tokens')).toBe(7);
    expect(statCount(now, 'backend.dify') - statCount(before, 'backend.dify')).toBe(1);
    expect(statCount(now, 'via.reply1') + statCount(now, 'via.fetch') - statCount(before, 'via.reply1') - statCount(before, 'via.fetch')).toBe(1);
    // A first page given back is uncounted, and counted again by whoever delivers it.
    expect(await s.returnPage(winner, 0, winner.takers?.[0] as string)).toBe(true);
    await s.takePage((await s.message('oS:1')) as MessageRecord, 0, 'push', 'push', T0 + 4000);
    now = (await s.statsBetween(day, day))[0] ?? {};
    expect(statCount(now, 'via.reply1') + statCount(now, 'via.fetch') - statCount(before, 'via.reply1') - statCount(before, 'via.fetch')).toBe(0);
    expect(statCount(now, 'via.push') - statCount(before, 'via.push')).toBe(1);
    expect((await s.message('oS:1'))?.deliveredVia).toBe('push');
    // Failures by code; hours of the day.
    claimed(await s.claim(question('oS:2', 'oS')));
    await s.settle('oS:2', 1, { status: 'failed', failure: { kind: 'busy', code: 'dify_http_503', status: 503, backendCode: '' } }, T0 + 100);
    now = (await s.statsBetween(day, day))[0] ?? {};
    expect(statCount(now, 'fail.dify_http_503') - statCount(before, 'fail.dify_http_503')).toBe(1);
    expect(Object.keys((now as { hour?: object }).hour ?? {}).every((k) => /^\d\d$/.test(k))).toBe(true);
    expect(statCount(now, `hour.${new Date(T0 + 480 * 60_000).toISOString().slice(11, 13)}`)).toBeGreaterThan(0);
  });

  it('removes messages once their retention has passed (TTL on expireAt)', async () => {
    const s = await open();
    claimed(await s.claim(question('oX:old', 'oX', T0 - 8 * 86_400_000)));
    claimed(await s.claim(question('oX:new', 'oX', T0)));
    // MongoDB's TTL monitor runs once a minute; the document is then gone. NeDB drops it on read.
    const r = await s.message('oX:old');
    if (kind.name.startsWith('mongodb')) expect(r === null || r.expireAt.getTime() < Date.now()).toBe(true);
    else expect(r).toBeNull();
    expect(await s.message('oX:new')).not.toBeNull();
  });

  it('keeps the data across a restart, and opens again idempotently', async () => {
    const s = await open();
    await answered(s, 'oZ:persist', 'oZ', ['持久化']);
    await s.close();
    store = await Store.open(await kind.reopen());
    expect((await store.message('oZ:persist'))?.answer).toBe('持久化');
    expect((await store.inbox('oZ')).map((r) => r._id)).toEqual(['oZ:persist']);
  });
});

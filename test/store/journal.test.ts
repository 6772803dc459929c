/**
 * The embedded store's journal (lib/store/journal.ts) on real files: group commit keeps every
 * acknowledged change, compaction racing writes loses none, and files NeDB wrote itself load.
 */
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { describe, expect, it } from 'vitest';
import { Journal, serialize } from '../../lib/store/journal';
import { nedbBackend } from '../../lib/store/nedb';
import { Store } from '../../lib/store/store';
import { tempDirs } from '../support/temp-dirs';

const tempDir = tempDirs('wdb-journal-');

const T0 = Date.now();
const question = (i: number) => ({
  _id: `oJ${i % 50}:${i}`,
  user: `oJ${i % 50}`,
  kind: 'question' as const,
  createdAt: T0 + i,
  question: `q${i}`,
  status: 'pending' as const,
  generation: 0,
  pagesDelivered: 0,
  takers: [],
  attempts: 1,
  heartbeatAt: T0,
});

describe('the journal', () => {
  it('writes Dates anywhere in a record as {$$date}, and leaves the record itself unchanged', () => {
    const at = new Date(1_700_000_000_123);
    const doc = { _id: 'x', expireAt: at, nested: { when: at, list: [1, at, { d: at }], plain: { a: 1 } }, text: 'a"\n', none: null };
    const line = serialize(doc);
    expect(JSON.parse(line)).toEqual({ _id: 'x', expireAt: { $$date: at.getTime() }, nested: { when: { $$date: at.getTime() }, list: [1, { $$date: at.getTime() }, { d: { $$date: at.getTime() } }], plain: { a: 1 } }, text: 'a"\n', none: null });
    expect(doc.expireAt).toBe(at);
    expect(doc.nested.list[1]).toBe(at);
  });


  it('keeps every acknowledged change of a burst of concurrent writes, and loads them back', async () => {
    const dir = tempDir();
    const store = await Store.open(nedbBackend({ dataDir: dir }));
    await Promise.all(Array.from({ length: 2000 }, (_, i) => store.claim(question(i))));
    await Promise.all(Array.from({ length: 2000 }, (_, i) => store.settle(`oJ${i % 50}:${i}`, 1, { status: 'answered', answer: `a${i}`, pages: [`a${i}`] }, T0 + 5000)));
    await Promise.all(Array.from({ length: 5 }, (_, u) => store.forgetUser(`oJ${u}`, 0, T0)));
    await store.close();
    const again = await Store.open(nedbBackend({ dataDir: dir }));
    const { messages, kv } = await again.snapshot(10_000);
    await again.close();
    expect(messages).toHaveLength(2000 - 5 * 40);
    for (const m of messages) expect(m).toMatchObject({ status: 'answered', answer: `a${/:(\d+)$/.exec(m._id)?.[1]}` });
    expect(messages.every((m) => m.expireAt instanceof Date)).toBe(true);
    expect(kv).toHaveLength(5);
  });

  it('lets a reader wait for the writes before it, never for the writes that keep coming after', async () => {
    const file = join(tempDir(), 'j.db');
    const journal = new Journal(file);
    let appended = 0;
    let stopped = false;
    // Steady traffic: a change every turn, made before that turn's write, so a write always follows a write.
    const tick = (): void => {
      if (stopped || appended >= 500) return;
      setImmediate(tick);
      void journal.append([{ _id: `d${appended++}` }]);
    };
    tick();
    await new Promise((r) => setImmediate(r));
    const before = appended;
    await journal.synced();
    const after = appended;
    stopped = true;
    await journal.close();
    // Every change made before the read is in the file once it returns...
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { _id: string })._id);
    for (let i = 0; i < before; i++) expect(lines).toContain(`d${i}`);
    // ...and it returned while the traffic went on (it used to wait for a quiet moment: here, the 500th change).
    expect(after).toBeLessThan(before + 5);
  });

  it('writes every change made in a turn by the end of that turn', async () => {
    const journal = new Journal(join(tempDir(), 'j.db'));
    const order: string[] = [];
    const a = journal.append([{ _id: 'a' }]).then(() => order.push('a'));
    await Promise.resolve();
    const b = journal.append([{ _id: 'b' }]).then(() => order.push('b'));
    setImmediate(() => order.push('next turn'));
    await Promise.all([a, b]);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['a', 'b', 'next turn']);
    await journal.close();
  });

  it('writes the change a released caller makes next at once, without waiting a turn, and still lets the loop in', async () => {
    const journal = new Journal(join(tempDir(), 'j.db'));
    await journal.append([{ _id: 'first' }]);
    // A claim, then its count: the second change does not wait for the loop's next turn.
    let turned = false;
    setImmediate(() => (turned = true));
    await journal.append([{ _id: 'second' }]);
    expect(turned).toBe(false);
    // A long run of changes, each made as the one before is written, gives the loop its turns.
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    for (let i = 0; i < 200; i++) await journal.append([{ _id: `c${i}` }]);
    clearInterval(ticker);
    expect(turns).toBeGreaterThan(0);
    await journal.close();
  });

  it('loses nothing when compaction runs while changes stream in', async () => {
    const dir = tempDir();
    const store = await Store.open(nedbBackend({ dataDir: dir, compactEveryMs: 2 }));
    for (let round = 0; round < 20; round++) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => store.claim(question(round * 100 + k))));
      await new Promise((r) => setTimeout(r, 3));
    }
    await store.close();
    const again = await Store.open(nedbBackend({ dataDir: dir }));
    expect((await again.snapshot(10_000)).messages).toHaveLength(2000);
    await again.close();
    // Compacted: each document once.
    expect(readFileSync(join(dir, 'messages.db'), 'utf8').trim().split('\n')).toHaveLength(2000);
  });

  it('loads a file NeDB wrote itself: index notes, updates and removals, dates', async () => {
    const dir = tempDir();
    const expire = T0 + 86_400_000;
    writeFileSync(
      join(dir, 'kv.db'),
      [
        { $$indexCreated: { fieldName: 'expireAt', unique: false, sparse: false, expireAfterSeconds: 0 } },
        { _id: 'a', value: 'old', expiresAt: 1, expireAt: { $$date: expire } },
        { _id: 'b', value: 'gone', expiresAt: 1, expireAt: { $$date: expire } },
        { _id: 'a', value: 'new', expiresAt: 2, expireAt: { $$date: expire } },
        { $$deleted: true, _id: 'b' },
      ]
        .map((l) => JSON.stringify(l))
        .join('\n') + '\n',
    );
    const store = await Store.open(nedbBackend({ dataDir: dir }));
    const { kv } = await store.snapshot();
    await store.close();
    expect(kv).toEqual([{ _id: 'a', value: 'new', expiresAt: 2, expireAt: new Date(expire) }]);
  });
});

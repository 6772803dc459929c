/**
 * Store.claim over a backend that keeps reporting a duplicate key it cannot show (a broken or
 * inconsistent store): a bounded number of rounds, then a named error, never unbounded recursion.
 * The backend here is a plain implementation of lib/store/collection.ts's interface.
 */
import { describe, expect, it } from 'vitest';
import { StoreError } from '../../lib/errors';
import type { Backend, Collection } from '../../lib/store/collection';
import { Store, openStore, storeKind } from '../../lib/store';
import { ConfigError } from '../../lib/errors';

function phantomDuplicates(calls: { insert: number }): Backend {
  const empty = <T extends { _id: string }>(): Collection<T> => ({
    insert: async () => (calls.insert++, false),
    findOne: async () => null,
    find: async () => [],
    updateOne: async () => null,
    updateMany: async () => 0,
    upsert: async () => undefined,
    deleteMany: async () => 0,
  });
  return { kind: 'embedded', collection: async () => empty(), close: async () => undefined };
}

describe('Store.claim', () => {
  it('gives up with a StoreError after a few rounds when the store reports a duplicate it cannot show', async () => {
    const calls = { insert: 0 };
    const store = await Store.open(phantomDuplicates(calls));
    const err = await store.claim({ _id: 'oX:1', user: 'oX', kind: 'fetch', createdAt: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('claim_conflict');
    expect(calls.insert).toBe(3);
  });
});

describe('store selection (one rule for every entry)', () => {
  const base = { dataDir: '/nonexistent', mongoDb: undefined, statsUtcOffsetMin: 480 };
  it('follows STORE, then MONGODB_URI or a platform database', () => {
    expect(storeKind({ ...base, kind: 'embedded', mongoUri: 'mongodb://x' })).toBe('embedded');
    expect(storeKind({ ...base, kind: 'auto', mongoUri: 'mongodb://x' })).toBe('mongodb');
    expect(storeKind({ ...base, kind: 'auto', mongoUri: undefined })).toBe('embedded');
    expect(storeKind({ ...base, kind: 'auto', mongoUri: undefined }, { db: {} as never })).toBe('mongodb');
    expect(() => storeKind({ ...base, kind: 'mongodb', mongoUri: undefined })).toThrow(ConfigError);
  });

  it('refuses the embedded store where the entry did not provide it', async () => {
    await expect(openStore({ ...base, kind: 'embedded', mongoUri: undefined })).rejects.toThrow(/embedded store is not available here/);
  });
});

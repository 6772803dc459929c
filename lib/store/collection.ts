/**
 * The small document-collection interface the store is written against. MongoDB and NeDB
 * (the embedded file store) both implement it; filters and updates use the operator subset
 * both understand ($set, $unset, $inc, $max, $push, $pop; $lt, $exists, $in). Only lib/store/
 * uses it: every state change goes through a named operation of `Store` (lib/store/store.ts).
 */
import type { Check } from '../util/checks';

export type FilterValue = string | number | boolean | null | { $lt: number } | { $exists: boolean } | { $in: readonly (string | number)[] };
export type Filter = Record<string, FilterValue>;

export interface Update {
  $set?: Record<string, unknown>;
  $unset?: Record<string, true>;
  $inc?: Record<string, number>;
  $max?: Record<string, number>;
  /** Append one value to an array field; `{$each: [v], $slice: -n}` appends and keeps the last n. */
  $push?: Record<string, unknown>;
  /** Remove the last (1) element of an array field. */
  $pop?: Record<string, 1>;
}

export interface Collection<T extends { _id: string }> {
  /** Insert; `false` when a document with this `_id` already exists (the atomic claim). */
  insert(doc: T): Promise<boolean>;
  findOne(filter: Filter): Promise<T | null>;
  /** Up to `limit` matches; with `newestBy`, those with the highest values of that field first. */
  find(filter: Filter, limit: number, newestBy?: string): Promise<T[]>;
  /** Update the first match; the document after the update, or null when nothing matched. */
  updateOne(filter: Filter, update: Update): Promise<T | null>;
  /** Update every match; how many matched. */
  updateMany(filter: Filter, update: Update): Promise<number>;
  /** Update-or-insert by `_id` (no return value needed). */
  upsert(id: string, update: Update): Promise<void>;
  deleteMany(filter: Filter): Promise<number>;
}

export interface Backend {
  /** `embedded` or `mongodb`, as /healthz reports it. */
  readonly kind: 'embedded' | 'mongodb';
  collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]): Promise<Collection<T>>;
  close(): Promise<void>;
  /** Checks that it behaves as the store needs, for `npm run doctor` and the console (lib/store/check.ts). */
  check?(): Promise<Check[]>;
}

export interface IndexSpec {
  field: string;
  /** Remove documents once this Date field is in the past. */
  expireAfterSeconds?: number;
  /** Index only the documents that have the field (a field present only while it matters). */
  sparse?: boolean;
  /** Create this index on one backend only. */
  only?: Backend['kind'];
}

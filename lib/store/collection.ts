/**
 * The small document-collection interface the store is written against. MongoDB and NeDB
 * (the embedded file store) both implement it; filters and updates use the operator subset
 * both understand ($set, $unset, $inc, $max; $lt, $lte, $exists, $in).
 */

export type FilterValue = string | number | boolean | null | { $lt: number } | { $lte: number } | { $exists: boolean } | { $in: readonly (string | number)[] };
export type Filter = Record<string, FilterValue>;

export interface Update {
  $set?: Record<string, unknown>;
  $unset?: Record<string, true>;
  $inc?: Record<string, number>;
  $max?: Record<string, number>;
}

export interface Collection<T extends { _id: string }> {
  /** Insert; `false` when a document with this `_id` already exists (the atomic claim). */
  insert(doc: T): Promise<boolean>;
  findOne(filter: Filter): Promise<T | null>;
  find(filter: Filter, limit: number): Promise<T[]>;
  /** Update the first match; the document after the update, or null when nothing matched. */
  updateOne(filter: Filter, update: Update): Promise<T | null>;
  /** Update-or-insert by `_id` (no return value needed). */
  upsert(id: string, update: Update): Promise<void>;
  deleteMany(filter: Filter): Promise<number>;
}

export interface Backend {
  collection<T extends { _id: string }>(name: string, indexes: readonly IndexSpec[]): Promise<Collection<T>>;
  close(): Promise<void>;
}

export interface IndexSpec {
  field: string;
  /** Remove documents once this Date field is in the past. */
  expireAfterSeconds?: number;
}

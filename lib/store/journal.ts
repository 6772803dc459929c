/**
 * The embedded store's append-only file with group commit (docs/store.md). Each change appends one
 * line; lines that arrive while a write is in progress go out together in the next write, so a
 * burst of changes costs a few writes instead of one open/append/close each. `append` and `synced`
 * resolve once everything appended before them is in the file, so nothing a reply depends on is
 * acknowledged before it is written.
 *
 * The format is NeDB's (one JSON document per line, `{"$$deleted":true,"_id":…}` for a removal,
 * dates as `{"$$date":ms}`), so data directories written by earlier versions load unchanged.
 */
import { closeSync, createReadStream, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync, writeFileSync, writeSync } from 'fs';
import { createInterface } from 'readline';
import { StoreError } from '../errors';

type Doc = Record<string, unknown> & { _id: string };

function reviver(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && '$$date' in value && Object.keys(value).length === 1) return new Date((value as { $$date: number }).$$date);
  return value;
}

/**
 * `value` with every Date as `{$$date: ms}`, copying only the objects on the way to a Date (records
 * hold one, `expireAt`). Twice as fast as a JSON.stringify replacer, which is called for every key.
 */
function encodeDates(value: unknown): unknown {
  if (value instanceof Date) return { $$date: value.getTime() };
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const e = encodeDates(value[i]);
      if (e !== value[i]) (out ??= value.slice())[i] = e;
    }
    return out ?? value;
  }
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    let out: Record<string, unknown> | undefined;
    for (const k in obj) {
      const x = obj[k];
      if (x === null || typeof x !== 'object') continue;
      const e = encodeDates(x);
      if (e !== x) (out ??= { ...obj })[k] = e;
    }
    return out ?? value;
  }
  return value;
}

export const serialize = (doc: unknown): string => JSON.stringify(encodeDates(doc));

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

/**
 * Read a journal into the documents it describes (later lines win), and how many lines that took
 * (more lines than documents: the file holds superseded ones and is worth compacting). A line that
 * is not a document is corruption: refuse, naming the file and line, rather than silently lose data.
 */
export async function loadJournal(file: string): Promise<{ docs: Doc[]; lines: number }> {
  const docs = new Map<string, Doc>();
  if (!existsSync(file)) return { docs: [], lines: 0 };
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line === '') continue;
    let doc: Doc;
    try {
      doc = JSON.parse(line, reviver) as Doc;
    } catch {
      throw new StoreError('store_corrupt', `cannot load ${file}: line ${n} is unreadable. Records in the middle of the file are damaged; restore it from a backup, or move it aside to start with an empty store`);
    }
    if (doc === null || typeof doc !== 'object') continue;
    if ('$$indexCreated' in doc || '$$indexRemoved' in doc) continue; // NeDB's index notes
    if (typeof doc._id !== 'string') continue;
    if ((doc as { $$deleted?: boolean }).$$deleted === true) docs.delete(doc._id);
    else docs.set(doc._id, doc);
  }
  return { docs: [...docs.values()], lines: n };
}

type Waiter = { resolve: () => void; reject: (err: Error) => void };

/** Writes that may follow one another in one run of callbacks (see `kick`). */
const CHAINED_WRITES = 4;

export class Journal {
  private fd: number | undefined;
  private buffer: string[] = [];
  /** Waiters for the lines in `buffer`. */
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;
  /**
   * Writes left that may follow the one just done without waiting for the next turn; undefined
   * once the loop's turn has come again.
   */
  private chain: number | undefined;
  private paused = false;
  private closed = false;

  /** `null`: no file (an in-memory store), every append resolves at once. */
  constructor(private readonly file: string | null) {
    this.fd = file === null ? undefined : openSync(file, 'a');
  }

  /** Append documents (or removal notes); resolves once they are in the file. */
  append(docs: readonly unknown[]): Promise<void> {
    if (this.closed) return Promise.reject(new StoreError('store_closed', 'the embedded store is closed'));
    if (docs.length === 0 || this.fd === undefined) return this.synced();
    for (const d of docs) this.buffer.push(serialize(d) + '\n');
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.kick();
    });
  }

  /**
   * Resolves once everything appended so far is in the file: with the next write, never a later
   * one (under steady traffic a write follows a write without pause).
   */
  synced(): Promise<void> {
    if (this.buffer.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /**
   * Group commit: one write takes every line appended until it runs, which is once this turn's
   * I/O callbacks are done, so a burst of changes shares it. The callers it releases often make
   * their next change at once (a claim, then its count); those lines are written as soon as the
   * callers have run, not a whole turn later, a few times over before the loop gets its turn
   * back, so a long chain of changes cannot hold the loop.
   */
  private kick(): void {
    if (this.writing || this.paused || this.buffer.length === 0) return;
    const left = this.chain ?? 0;
    const soon = left > 0;
    if (soon) this.chain = left - 1;
    this.writing = (soon ? Promise.resolve() : new Promise<void>((resolve) => setImmediate(resolve))).then(() => this.write());
  }

  private write(): void {
    const lines = this.buffer.join('');
    const waiters = this.waiters;
    this.buffer = [];
    this.waiters = [];
    try {
      writeSync(this.fd as number, lines);
      if (this.chain === undefined) {
        this.chain = CHAINED_WRITES;
        // Once the released callers and what they set off have run, the loop's turn comes first again.
        process.nextTick(() => (this.chain = undefined));
      }
      for (const w of waiters) w.resolve();
    } catch (err) {
      // Disk full or gone: the changes are not durable; put them back in order and fail the callers.
      this.buffer.unshift(lines);
      const e = new StoreError('store_unwritable', `cannot write ${this.file}: ${(err as Error).message}`, { cause: err });
      for (const w of waiters) w.reject(e);
      this.paused = true;
      setTimeout(() => {
        this.paused = false;
        this.kick();
      }, 1000).unref();
    } finally {
      this.writing = undefined;
      this.kick();
    }
  }

  /**
   * Replace the file with the documents `snapshot` returns (compaction): written to a temporary
   * file, flushed to disk and renamed over the journal; appending then goes on in the new file.
   * Lines waiting meanwhile are written after it (a change already in the snapshot is written
   * twice, which loading reads as the same state).
   */
  async rewrite(snapshot: () => readonly unknown[]): Promise<void> {
    if (this.file === null || this.fd === undefined) return;
    this.paused = true;
    try {
      while (this.writing) await this.writing;
      const docs = snapshot();
      const tmp = `${this.file}~`;
      writeFileSync(tmp, docs.map((d) => serialize(d) + '\n').join(''));
      const tfd = openSync(tmp, 'r+');
      fsyncSync(tfd);
      closeSync(tfd);
      renameSync(tmp, this.file);
      closeSync(this.fd);
      this.fd = openSync(this.file, 'a');
    } finally {
      this.paused = false;
      this.kick();
    }
  }

  async close(): Promise<void> {
    await this.synced().catch(() => undefined);
    this.closed = true;
    if (this.fd !== undefined) closeSync(this.fd);
  }
}

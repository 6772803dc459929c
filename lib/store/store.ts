/**
 * The store is the truth (docs/architecture.md): every inbound message, every question's progress
 * and answer, each user's inbox of undelivered answers, conversations, and shared values such as
 * the access token live here, so retries, other instances and restarts all see the same state.
 *
 * Every state change is one of the named operations below, each a single atomic document update
 * (a compare-and-set where a race is possible), written once over `Collection` for both backends
 * and covered by one conformance suite (test/store/conformance.test.ts).
 */
import type { Check } from '../util/checks';
import { createHash, randomBytes } from 'crypto';
import type { FailureKind } from '../errors';
import { StoreError } from '../errors';
import { Listeners } from '../util/listeners';
import type { Backend, Collection, Filter, Update } from './collection';

/** A backend's token counts and cost for one answer, as it reports them (kept on the record). */
export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  total_price?: string;
  currency?: string;
  latency?: number;
}

/** One earlier exchange of the user's, as the prompt carries it (kept in the user's record). */
export interface Turn {
  question: string;
  answer: string;
  /** When the question was asked (ms). */
  askedAt: number;
  tokens?: number | undefined;
}

/** Messages and their answers are kept this long, then removed by a TTL index. */
export const RETENTION_DAYS = 7;
/** At most this many undelivered answers wait for `1` per user; older ones are dropped. */
export const INBOX_MAX = 20;
/** How long an unsubscribe is remembered (as a hash), so WeChat's re-deliveries of the user's
 * last messages are not asked again; re-deliveries stop within a minute. */
const UNSUBSCRIBE_MEMORY_MS = 10 * 60_000;

export type QuestionStatus = 'pending' | 'answered' | 'failed' | 'cleared';

/**
 * The console's "Try it" user (lib/web/console/), the one conversation of the `console` channel
 * (lib/core/keys.ts). Its questions go through the whole lifecycle, but are counted apart (`test.*`),
 * so the owner's numbers are their users' only.
 */
export const TEST_USER = 'console:try';
export const isTestUser = (user: string) => user === TEST_USER;

export interface Failure {
  kind: FailureKind;
  code: string;
  status: number;
  backendCode: string;
  /** An input failure's text for the user (lib/errors.ts `InputError`). */
  note?: string;
}

/** One inbound message (deduplicated on its key) and, for questions, the answer's life. */
export interface MessageRecord {
  _id: string;
  /** The conversation key (lib/core/keys.ts). */
  user: string;
  /** The channel instance it came through (`wechat-oa`, `line@shop`…); absent on records older than channels. */
  channel?: string;
  /** WeChat's MsgId (a 64-bit integer kept as text); '' for events, which are keyed by CreateTime. */
  msgId?: string;
  /** `question` asks the model; `fetch` is a `1`; `command` any other stateful command. */
  kind: 'question' | 'fetch' | 'command';
  /** When the first delivery arrived here (ms). */
  createdAt: number;
  /** WeChat's CreateTime (s): when the user sent it. */
  sentAt?: number;
  expireAt: Date;
  /** How many deliveries of this message have arrived. */
  deliveries: number;

  // question fields
  question?: string;
  status?: QuestionStatus;
  /** The user's conversation generation when asked (a `/clear` starts a new one). */
  generation?: number;
  /** Answer text so far (pending) or in full (answered). */
  answer?: string;
  pages?: string[];
  /** Pages handed out so far (the failure notice counts as one page). */
  pagesDelivered?: number;
  /** Who took each page, by index: the key of the message whose reply carried it, or `push`. */
  takers?: string[];
  /** The user's id, present only while they have not received all of it: the inbox is
   * `{inbox: user}`, indexed sparsely, so it costs the same however many records the user has. */
  inbox?: string;
  /** Model calls made for this question: 1, and one more after each takeover (a worker that died, or one handed over by a stopping process). */
  attempts?: number;
  /** Last sign of life from the worker producing the answer; present only while pending. */
  heartbeatAt?: number;
  /** Attempts handed over by a process that was stopped (SIGTERM) before they finished: not deaths. */
  handovers?: number;
  placeholderSent?: boolean;
  conversationId?: string;
  messageId?: string;
  usage?: Usage;
  failure?: Failure;
  answeredAt?: number;
  /** SHA-256 of the question's answer-page token (lib/web/page/token.ts); never the token itself. */
  pageToken?: string;
  /** The answer was read to its end on the answer page (its pages count as delivered). */
  readOnPage?: boolean;
  /** An answer page is open on this question until then (push waits for it). */
  pageViewUntil?: number;
  /** Which backend answered (`dify`, `openai`). */
  backend?: string;
  /** When the model's first text arrived (ms). */
  firstTextAt?: number;
  /** How the first page reached the user, and when. */
  deliveredVia?: DeliveryPath;
  deliveredAt?: number;
  /** Push attempts (lib/channels/wechat-oa/push.ts), the latest few: which page, when, and WeChat's errcode (0: sent). */
  pushes?: PushAttempt[];
  /** The picture the question is about (it was sent just before, or with IMAGE_PROMPT). */
  image?: PictureRef;
  /** Files that are part of the answer: pictures the model made or showed (docs/rich-answers.md). */
  parts?: AnswerPart[];
  /** A voice message WeChat did not transcribe: the worker transcribes it, then `question` is set. */
  voice?: { mediaId: string; format: string };
  /** What kind of message asked (DIFY_INPUTS `{msgType}`, `{eventKey}`). */
  origin?: { msgType: string; eventKey?: string };
  /**
   * The channel's handle for answering this message (LINE's reply token, Discord's interaction
   * token) and until when it is valid (docs/channels.md). Never logged.
   */
  replyHandle?: { token: string; until: number };
  /** `send` channels (docs/channels.md): the channel (its name) still owes the user this answer; present until it is sent or given up. */
  outbox?: string;
  /** `send` channels: sends that failed before anything reached the user (retried by the sweep, a few times). */
  sendFailures?: number;
}

/** A file that is part of an answer (docs/rich-answers.md), kept with it. */
export interface AnswerPart {
  url: string;
  kind: 'image' | 'file';
  name?: string;
  mime?: string;
  size?: number;
  /** How each channel (by name) delivered it, or why it could not: the console's record view shows it. */
  sent?: Record<string, string>;
  /** Copies a platform keeps for us (WeChat's temporary media, 3 days), by channel: their id and until when. */
  cached?: Record<string, { id: string; until: number }>;
}

/** A picture a user sent: WeChat's PicUrl and the MediaId to download it with. */
export interface PictureRef {
  picUrl: string;
  mediaId: string;
}

/** One window a question is counted in (RATE_LIMIT, DAILY_QUESTION_BUDGET): at most `limit` until `until`. */
export interface CountWindow {
  id: string;
  limit: number;
  until: number;
}

/** Whether a message may be asked: once decided, the same for every delivery of it. */
export type Admission = { ok: true } | { ok: false; window: string; until: number };

export interface PushAttempt {
  page: number;
  at: number;
  errcode: number;
}

/** Push attempts a record keeps (a page refused again and again must not grow it without bound). */
const PUSH_ATTEMPTS_KEPT = 20;

export interface UserRecord {
  _id: string;
  conversationId?: string;
  /** Incremented by `/clear`; answers of an older generation don't restore the old conversation. */
  generation: number;
  /** WeChat refused a push to this user then (45015/45047); questions asked up to then use `1`. */
  pushBlockedUntil?: number;
  /** The last answer the user read to its end on the answer page, so `1` can say so. */
  pageRead?: { question: string; at: number };
  /** Recent turns for backends that keep no conversation (OpenAI-compatible), this generation only. */
  history?: Turn[];
  /** A picture waiting for the question about it, and when it came. */
  image?: PictureRef & { at: number };
  /** The QR scene the user last came through (DIFY_INPUTS `{scene}`). */
  scene?: string;
  updatedAt: number;
}

/** Small shared values with an expiry: the access token, leases, account-wide flags. */
export interface KvRecord {
  _id: string;
  value: string;
  expiresAt: number;
  expireAt: Date;
  /** A counter (`countUnder`, `countIn`). */
  hits?: number;
  /** A poller's cursor (`claimPoller`), kept while the lease comes and goes. */
  cursor?: string;
}

/** What the worker saves when an answer settles (`backend`: which answered; `firstTextAt`: its first text). */
export type Settlement = { backend?: string; firstTextAt?: number } & (
  | { status: 'answered'; answer: string; pages: string[]; parts?: AnswerPart[]; conversationId?: string; messageId?: string; usage?: Usage }
  | { status: 'failed'; failure: Failure; answer?: string }
);

/**
 * How a question's first page reached its user: its own reply on delivery N, `1`, push, the answer
 * page, or a channel's own path (`line-reply`, `discord`, …: each `send` channel names its own).
 */
export type DeliveryPath = string;

/**
 * One day's counters (docs/store.md "Statistics"), each changed only by `$inc` at a transition that
 * happens once per question (the claim, the settle, the first page taken), so no number drifts
 * however many deliveries or instances touch a question.
 */
export interface StatsRecord {
  _id: string;
  expireAt: Date;
  /** Flat counters (`questions`, `answered`, `failed`, `cleared`, `tokens`) and groups of them
   * (`hour`, `latency`, `via`, `fail`, `backend`), as `$inc` on dotted names makes them. */
  [counter: string]: number | string | Date | Record<string, number>;
}

/** A poller's record (its cursor) is kept this long after its lease's last renewal. */
const POLLER_KEEP_MS = 90 * 86_400_000;

/** Counts are written together at most this long after they happen. */
const COUNT_FLUSH_MS = 1000;

/** Daily statistics are kept this long. */
export const STATS_DAYS = 90;

/** Answer time buckets (upper bounds in seconds), WeChat's 5, 10 and 15 s windows among them. */
export const LATENCY_BUCKETS = [1, 2, 3, 5, 10, 15, 30, 60, 120] as const;

/** A counter of a day's record by its dotted name (`via.fetch` is `{via: {fetch}}`); 0 when absent. */
export function statCount(rec: object | undefined, path: string): number {
  let v: unknown = rec;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return typeof v === 'number' ? v : 0;
}

/** A name usable as one level of a dotted counter path (no dots, no leading `$`), bounded. */
export function statKey(name: string): string {
  return name.replace(/[.$]/g, '_').slice(0, 64) || '_';
}

export function latencyBucket(ms: number): string {
  const b = LATENCY_BUCKETS.find((limit) => ms < limit * 1000);
  return b === undefined ? 'inf' : String(b);
}

export type ClaimResult = { record: MessageRecord; first: boolean; gone?: false } | { gone: true };

const tombstoneKey = (user: string) => `unsubscribed:${createHash('sha256').update(user).digest('hex')}`;

/** How many pages a settled question hands out: its pages, or the one failure notice. */
export function pageCount(q: MessageRecord): number {
  return q.status === 'answered' ? (q.pages?.length ?? 0) : q.status === 'failed' ? 1 : 0;
}

export class Store {
  private readonly pendingCounts = new Map<string, Record<string, number>>();
  private readonly listeners = new Listeners<void>();
  private readonly stops = new Listeners<void>();
  private countTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    private readonly messages: Collection<MessageRecord>,
    private readonly users: Collection<UserRecord>,
    private readonly kv: Collection<KvRecord>,
    private readonly stats: Collection<StatsRecord>,
    private readonly backend: Backend,
    private readonly utcOffsetMs: number,
  ) {}

  /** Open the collections and create their indexes (idempotent). `statsUtcOffsetMin`: the time zone days are counted in. */
  static async open(backend: Backend, opts: { statsUtcOffsetMin?: number } = {}): Promise<Store> {
    try {
      const messages = await backend.collection<MessageRecord>('messages', [
        // Each user's undelivered answers; only those carry the field.
        { field: 'inbox', sparse: true },
        // Which message took a page (a re-delivered `1` repeats it).
        { field: 'takers' },
        // Unsubscribe deletes by user: indexed on MongoDB; the embedded store scans memory for it,
        // as one index key per user would grow with every message of an active user.
        { field: 'user', only: 'mongodb' },
        // Only pending questions carry a heartbeat, so the recovery scan's index stays small.
        { field: 'heartbeatAt', sparse: true },
        // The console's newest questions (MongoDB; the embedded store sorts in memory).
        { field: 'createdAt', only: 'mongodb' },
        // Answer-page lookups; only questions asked with the page on carry it.
        { field: 'pageToken', sparse: true },
        // Other channels' answers not yet sent: only those carry it.
        { field: 'outbox', sparse: true },
        { field: 'expireAt', expireAfterSeconds: 0 },
      ]);
      const users = await backend.collection<UserRecord>('users', []);
      const kv = await backend.collection<KvRecord>('kv', [{ field: 'expireAt', expireAfterSeconds: 0 }]);
      const stats = await backend.collection<StatsRecord>('stats', [{ field: 'expireAt', expireAfterSeconds: 0 }]);
      await Store.migrate(messages);
      return new Store(messages, users, kv, stats, backend, (opts.statsUtcOffsetMin ?? 480) * 60_000);
    } catch (err) {
      await backend.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Questions written before the inbox existed have no `takers`. Once, at open: an answer still
   * pending, or promised by a placeholder and not fully delivered, joins its user's inbox (with a
   * taker noted for each page already sent, so page numbers line up); the others are marked done.
   */
  private static async migrate(messages: Collection<MessageRecord>): Promise<void> {
    for (;;) {
      const legacy = await messages.find({ kind: 'question', takers: { $exists: false } }, 1000);
      if (legacy.length === 0) return;
      for (const q of legacy) {
        const sent = q.pagesDelivered ?? 0;
        const waiting = q.status === 'pending' || (q.placeholderSent === true && sent < pageCount(q));
        const update: Update = { $set: { takers: Array.from({ length: sent }, () => 'before-upgrade'), ...(waiting ? { inbox: q.user } : {}) } };
        if (q.status !== 'pending') update.$unset = { heartbeatAt: true };
        await messages.updateOne({ _id: q._id, takers: { $exists: false } }, update);
      }
    }
  }

  get kind(): Backend['kind'] {
    return this.backend.kind;
  }

  /**
   * Whether other processes may change these records (MongoDB). The embedded store belongs to one
   * process (lib/store/dirlock.ts), so every change goes through this object and `onChange` hears it.
   */
  get shared(): boolean {
    return this.backend.kind === 'mongodb';
  }

  /**
   * Call `listener` when one of `user`'s questions settles, is cleared, deleted, or gets a page back
   * through this object (in-process news, for deliveries waiting on them: lib/core/wakeups.ts). It
   * only shortens a wait; what the waiter does next it reads from the records. Returns the unsubscribe.
   */
  onChange(user: string, listener: () => void): () => void {
    return this.listeners.on(user, listener);
  }

  private changed(user: string): void {
    this.listeners.emit(user, undefined);
  }

  /** The backend's own checks (lib/store/check.ts): MongoDB's conformance pass, the embedded store's directory. */
  async check(): Promise<Check[]> {
    if (!this.backend.check) return [{ name: 'store', ok: undefined, detail: `${this.backend.kind}: this backend has no checks of its own` }];
    return this.backend.check();
  }

  async close(): Promise<void> {
    await this.flushCounts().catch(() => undefined);
    await this.backend.close();
  }

  // ---- reads

  async message(key: string): Promise<MessageRecord | null> {
    return this.messages.findOne({ _id: key });
  }

  async user(id: string): Promise<UserRecord | null> {
    return this.users.findOne({ _id: id });
  }

  /** The user's undelivered answers, oldest question first. */
  async inbox(user: string): Promise<MessageRecord[]> {
    const items = await this.messages.find({ inbox: user }, INBOX_MAX * 2);
    return items.sort((a, b) => a.createdAt - b.createdAt || (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
  }

  /** The page that message `key` carried, if it took one (a re-delivery repeats it). */
  async takenBy(user: string, key: string): Promise<{ record: MessageRecord; page: number } | null> {
    const record = await this.messages.findOne({ takers: key, user });
    const page = record?.takers?.indexOf(key) ?? -1;
    return record && page >= 0 ? { record, page } : null;
  }

  /** The question an answer-page token (its hash) belongs to. */
  async byPageToken(hash: string): Promise<MessageRecord | null> {
    return this.messages.findOne({ pageToken: hash });
  }

  /**
   * A user's questions, newest first: up to `limit` (at most 100) asked before `before` (ms) when
   * given. The web chat's history, paged backwards (lib/web/chat/).
   */
  async questionsOf(user: string, limit: number, before?: number): Promise<MessageRecord[]> {
    const filter: Filter = { user, kind: 'question', ...(before !== undefined ? { createdAt: { $lt: before } } : {}) };
    return this.messages.find(filter, Math.max(1, Math.min(limit, 100)), 'createdAt');
  }

  /** Pending questions whose worker has shown no sign of life since `before`. */
  async stalePending(before: number, limit = 50): Promise<MessageRecord[]> {
    return this.messages.find({ heartbeatAt: { $lt: before }, status: 'pending' }, limit);
  }

  /** The newest questions, for the console (bounded); only those in `status`, or of `channel`, when given. */
  async recentQuestions(limit: number, status?: QuestionStatus, channel?: string): Promise<MessageRecord[]> {
    return this.messages.find({ kind: 'question', ...(status ? { status } : {}), ...(channel ? { channel } : {}) }, Math.min(limit, 500), 'createdAt');
  }

  /** Everything, for tests and diagnostics (bounded). */
  async snapshot(limit = 10_000): Promise<{ messages: MessageRecord[]; users: UserRecord[]; kv: KvRecord[] }> {
    const [messages, users, kv] = await Promise.all([this.messages.find({}, limit), this.users.find({}, limit), this.kv.find({}, limit)]);
    return { messages, users, kv };
  }

  // ---- message lifecycle

  /**
   * Record one delivery of a message. The first delivery inserts it (the atomic claim: exactly
   * one caller, on any instance, gets `first: true`); later ones count themselves. A message the
   * user sent before they unsubscribed is not recorded again (`gone`).
   */
  async claim(doc: Omit<MessageRecord, 'deliveries' | 'expireAt'>): Promise<ClaimResult> {
    const fresh: MessageRecord = { ...doc, deliveries: 1, expireAt: new Date(doc.createdAt + RETENTION_DAYS * 86_400_000) };
    if (doc.kind === 'question') fresh.inbox = doc.user;
    // Insert and increment can only both miss while the record is being deleted; three rounds
    // settle that, and more would mean a store that reports duplicates it cannot show.
    for (let round = 0; round < 3; round++) {
      if (await this.messages.insert(fresh)) {
        if (doc.sentAt !== undefined && (await this.unsubscribedAfter(doc.user, doc.sentAt))) {
          await this.messages.deleteMany({ _id: doc._id });
          return { gone: true };
        }
        if (doc.kind === 'question') await this.count(doc.createdAt, { questions: 1, [`hour.${this.hourOf(doc.createdAt)}`]: 1 }, doc.user);
        return { record: fresh, first: true };
      }
      const record = await this.messages.updateOne({ _id: doc._id }, { $inc: { deliveries: 1 } });
      if (record) return { record, first: false };
    }
    throw new StoreError('claim_conflict', `message ${doc._id} is reported as a duplicate but cannot be read`);
  }

  /** The worker is alive (and, when given, the answer so far). False: the question is no longer its to answer. */
  async heartbeat(key: string, attempt: number, now: number, answerSoFar?: string): Promise<boolean> {
    const set: Record<string, unknown> = { heartbeatAt: now };
    if (answerSoFar !== undefined) set['answer'] = answerSoFar;
    return (await this.messages.updateOne({ _id: key, status: 'pending', attempts: attempt }, { $set: set })) !== null;
  }

  /**
   * The answer so far, for answer pages served by other instances: only once a link to the page
   * has gone out (with the placeholder), before which nobody can be watching; or `always`, for a
   * channel whose platform asks for it (lib/core/channel.ts `savesProgress`).
   */
  async saveProgress(key: string, attempt: number, answerSoFar: string, always = false): Promise<void> {
    await this.messages.updateOne({ _id: key, status: 'pending', attempts: attempt, ...(always ? {} : { placeholderSent: true }) }, { $set: { answer: answerSoFar } });
  }

  /** Save a settled answer, if the question is still this attempt's to answer. */
  async settle(key: string, attempt: number, result: Settlement, now: number): Promise<MessageRecord | null> {
    const done = await this.messages.updateOne(
      { _id: key, status: 'pending', attempts: attempt },
      { $set: { ...result, answeredAt: now }, $unset: { heartbeatAt: true } },
    );
    if (done) {
      this.changed(done.user);
      await this.countSettled(done, now);
    }
    return done;
  }

  /** The counters of a question that just settled (once: only the settle that matched gets here). */
  private countSettled(q: MessageRecord, now: number): Promise<void> {
    const fields: Record<string, number> = { [`latency.${latencyBucket(now - q.createdAt)}`]: 1 };
    if (q.backend) fields[`backend.${q.backend}`] = 1;
    if (q.status === 'answered') {
      fields['answered'] = 1;
      if (q.usage?.total_tokens) fields['tokens'] = q.usage.total_tokens;
    } else {
      fields['failed'] = 1;
      fields[`fail.${statKey(q.failure?.code ?? 'unknown')}`] = 1;
    }
    return this.count(now, fields, q.user);
  }

  /** Take over a pending question whose worker went silent before `staleBefore` (one instance wins). */
  async takeOver(q: MessageRecord, staleBefore: number, now: number): Promise<MessageRecord | null> {
    const attempts = q.attempts ?? 1;
    return this.messages.updateOne(
      { _id: q._id, status: 'pending', attempts, heartbeatAt: { $lt: staleBefore } },
      { $set: { attempts: attempts + 1, heartbeatAt: now, answer: '' } },
    );
  }

  /**
   * A process that is stopping hands an answer it could not finish back (lib/core/worker.ts
   * `handOver`): stale at once, so the next sweep, delivery or `1` on any instance takes it over
   * without waiting for STALE_AFTER_MS, and counted, so a deliberate restart is not a death.
   */
  async handOver(key: string, attempt: number): Promise<boolean> {
    return (await this.messages.updateOne({ _id: key, status: 'pending', attempts: attempt }, { $set: { heartbeatAt: 0 }, $inc: { handovers: 1 } })) !== null;
  }

  /** Give up on a question whose workers died too often. */
  async abandon(q: MessageRecord, staleBefore: number, failure: Failure, now: number): Promise<MessageRecord | null> {
    const done = await this.messages.updateOne(
      { _id: q._id, status: 'pending', attempts: q.attempts ?? 1, heartbeatAt: { $lt: staleBefore } },
      { $set: { status: 'failed', failure, answeredAt: now }, $unset: { heartbeatAt: true } },
    );
    if (done) {
      this.changed(done.user);
      await this.countSettled(done, now);
    }
    return done;
  }

  async markPlaceholderSent(key: string): Promise<void> {
    await this.messages.updateOne({ _id: key }, { $set: { placeholderSent: true } });
  }

  /**
   * Hand out page `page` of a settled question to `taker` (compare-and-set on the cursor, so each
   * page goes out once across all requests and instances). The last page leaves the inbox.
   */
  async takePage(q: MessageRecord, page: number, taker: string, via: DeliveryPath, now: number): Promise<MessageRecord | null> {
    const set: Record<string, unknown> = { pagesDelivered: page + 1 };
    if (page === 0) Object.assign(set, { deliveredVia: via, deliveredAt: now });
    const update: Update = { $set: set, $push: { takers: taker } };
    if (page + 1 >= pageCount(q)) update.$unset = { inbox: true };
    const took = await this.messages.updateOne({ _id: q._id, pagesDelivered: page, inbox: { $exists: true } }, update);
    if (took && page === 0) await this.count(now, { [`via.${via}`]: 1 }, q.user);
    return took;
  }

  /**
   * A `send` channel delivers an answer whole, by one taker (docs/channels.md): every page at once,
   * by compare-and-set on the cursor (so however many instances and recoveries race, one sends
   * it), and the question leaves the inbox. Null when someone else took it, or it is not settled.
   */
  async takeAll(q: MessageRecord, taker: string, via: DeliveryPath, now: number): Promise<MessageRecord | null> {
    const total = pageCount(q);
    if (total === 0) return null;
    const took = await this.messages.updateOne(
      { _id: q._id, pagesDelivered: 0, inbox: { $exists: true }, status: { $in: ['answered', 'failed'] } },
      { $set: { pagesDelivered: total, takers: Array.from({ length: total }, () => taker), deliveredVia: via, deliveredAt: now }, $unset: { inbox: true, outbox: true } },
    );
    if (took) await this.count(now, { [`via.${via}`]: 1 }, q.user);
    return took;
  }

  /**
   * Nothing of an answer `taker` took could be sent (the platform was unreachable): it goes back to
   * the outbox for the recovery sweep, if it is still `taker`'s. False once it failed `maxFailures` times.
   */
  async returnAll(q: MessageRecord, taker: string, channel: string, maxFailures: number): Promise<boolean> {
    const failures = (q.sendFailures ?? 0) + 1;
    if (failures >= maxFailures) return false;
    const back = await this.messages.updateOne(
      { _id: q._id, pagesDelivered: pageCount(q), 'takers.0': taker, inbox: { $exists: false } },
      { $set: { pagesDelivered: 0, takers: [], inbox: q.user, outbox: channel, sendFailures: failures }, $unset: { deliveredVia: true, deliveredAt: true } },
    );
    if (back && q.deliveredVia) await this.count(q.deliveredAt ?? 0, { [`via.${q.deliveredVia}`]: -1 }, q.user);
    return back !== null;
  }

  /** Another channel gives up on sending an answer (its token died): no sweep tries again. */
  async dropOutbox(key: string): Promise<void> {
    await this.messages.updateOne({ _id: key, outbox: { $exists: true } }, { $unset: { outbox: true } });
  }

  /**
   * Answers settled before `before` that their `send` channel has not sent: the process
   * that settled one died before sending it. The recovery sweep sends them.
   */
  async unsentChannelAnswers(before: number, limit = 50): Promise<MessageRecord[]> {
    const found = await this.messages.find({ outbox: { $exists: true }, answeredAt: { $lt: before } }, limit);
    return found.filter((q) => q.status === 'answered' || q.status === 'failed');
  }

  /**
   * A page `taker` took never reached the user (push refused, WeChat hung up before the reply):
   * give it back to the inbox, if it is still the last page taken and still `taker`'s.
   */
  async returnPage(q: MessageRecord, page: number, taker: string): Promise<boolean> {
    const update: Update = { $set: { pagesDelivered: page, inbox: q.user }, $pop: { takers: 1 } };
    if (page === 0) update.$unset = { deliveredVia: true, deliveredAt: true };
    const back = await this.messages.updateOne(
      { _id: q._id, pagesDelivered: page + 1, [`takers.${page}`]: taker, status: { $in: ['answered', 'failed'] } },
      update,
    );
    if (!back) return false;
    this.changed(q.user);
    // The first page did not arrive after all: it is counted again by whoever delivers it.
    if (page === 0 && q.deliveredVia) await this.count(q.deliveredAt ?? 0, { [`via.${q.deliveredVia}`]: -1 }, q.user);
    return true;
  }

  /**
   * The answer page showed `q`'s settled answer to its end: every page not yet handed out counts
   * as delivered (taker `page`), it leaves the inbox, and the user's record notes it for `1`.
   * False when nothing was left to deliver (or another taker moved the cursor first).
   */
  async markReadOnPage(q: MessageRecord, now: number, question: string): Promise<boolean> {
    const sent = q.pagesDelivered ?? 0;
    const total = pageCount(q);
    if (sent >= total) return false;
    const takers = [...(q.takers ?? []).slice(0, sent), ...Array.from({ length: total - sent }, () => 'page')];
    const first = sent === 0 ? { deliveredVia: 'page', deliveredAt: now } : {};
    const done = await this.messages.updateOne(
      { _id: q._id, pagesDelivered: sent, inbox: { $exists: true }, status: { $in: ['answered', 'failed'] } },
      { $set: { pagesDelivered: total, takers, readOnPage: true, ...first }, $unset: { inbox: true } },
    );
    if (!done) return false;
    if (sent === 0) await this.count(now, { 'via.page': 1 }, q.user);
    await this.users.upsert(q.user, { $set: { pageRead: { question, at: now }, updatedAt: now }, $max: { generation: 0 } });
    return true;
  }

  /** An answer page is watching `key` until `until` (push holds back meanwhile). */
  async notePageView(key: string, until: number): Promise<void> {
    await this.messages.updateOne({ _id: key, status: { $in: ['pending', 'answered', 'failed'] } }, { $max: { pageViewUntil: until } });
  }

  /**
   * The secret answer-page tokens are derived from: made once, by whichever instance comes first,
   * and shared by all through the store (it never expires).
   */
  async pageSecret(): Promise<Buffer> {
    const id = 'answer-page-secret';
    const forever = 8.64e15; // the latest time a Date can hold
    await this.kv.insert({ _id: id, value: randomBytes(32).toString('hex'), expiresAt: forever, expireAt: new Date(forever) });
    const r = await this.kv.findOne({ _id: id });
    if (!r || !/^[0-9a-f]{64}$/.test(r.value)) throw new StoreError('claim_conflict', 'the answer-page secret cannot be read back');
    return Buffer.from(r.value, 'hex');
  }

  /** Keep at most `max` answers in the user's inbox: the ids of the oldest ones dropped, and what remains. */
  async trimInbox(user: string, max = INBOX_MAX): Promise<{ dropped: string[]; kept: MessageRecord[] }> {
    const items = await this.inbox(user);
    const dropped: string[] = [];
    const over = Math.max(0, items.length - max);
    for (const q of items.slice(0, over)) {
      if (await this.messages.updateOne({ _id: q._id, inbox: { $exists: true } }, { $unset: { inbox: true } })) dropped.push(q._id);
    }
    return { dropped, kept: items.slice(over) };
  }

  // ---- users

  /** `/clear`: forget the conversation, start a new generation, cancel every undelivered answer. */
  async clearUser(user: string, now: number): Promise<{ conversationId: string | undefined; cancelled: number }> {
    const before = await this.user(user);
    await this.users.upsert(user, { $inc: { generation: 1 }, $unset: { conversationId: true, history: true }, $set: { updatedAt: now } });
    const cancelled = await this.messages.updateMany(
      { inbox: user },
      { $set: { status: 'cleared' }, $unset: { inbox: true, heartbeatAt: true, outbox: true } },
    );
    // Deliveries waiting for a cancelled answer answer now, truthfully.
    this.changed(user);
    if (cancelled > 0) await this.count(now, { cleared: cancelled }, user);
    return { conversationId: before?.conversationId, cancelled };
  }

  /**
   * Cancel one pending question (the web chat's stop button; an HTTP client that disconnected): it
   * is `cleared` like the questions of a `/clear`, so its worker stops at its next heartbeat (at once
   * in this process: `onStopped`), nothing can settle it, the answer so far stays on the record, and
   * it leaves the inbox and the outbox. Only `user`'s, when given. Null when it was not pending
   * (settled, cleared, gone) or not that user's.
   */
  async cancelQuestion(key: string, now: number, user?: string): Promise<MessageRecord | null> {
    const done = await this.messages.updateOne(
      { _id: key, status: 'pending', ...(user !== undefined ? { user } : {}) },
      { $set: { status: 'cleared' }, $unset: { inbox: true, heartbeatAt: true, outbox: true } },
    );
    if (!done) return null;
    this.changed(done.user);
    this.stops.emit(key, undefined);
    await this.count(now, { cleared: 1 }, done.user);
    return done;
  }

  /** Call `listener` when question `key` is cancelled through this object (its worker stops its model call). */
  onStopped(key: string, listener: () => void): () => void {
    return this.stops.on(key, listener);
  }

  /**
   * `user`'s conversation starts again at `generation` (a question with `Inbound.newConversation`):
   * the backend's conversation and the history are forgotten, unless a later generation already began
   * (a `/clear` meanwhile). Unlike `clearUser`, nothing pending is cancelled.
   */
  async startConversation(user: string, generation: number, now: number): Promise<void> {
    const moved = await this.users.updateOne({ _id: user, generation: { $lt: generation } }, { $set: { generation, updatedAt: now }, $unset: { conversationId: true, history: true } });
    if (!moved && !(await this.user(user))) await this.users.upsert(user, { $set: { updatedAt: now }, $max: { generation } });
  }

  /** Store the conversation an answer belongs to, unless the user cleared it meanwhile. */
  async setConversation(user: string, generation: number, conversationId: string, now: number): Promise<void> {
    if (generation === 0 && !(await this.user(user))) {
      // generation 0 may not have a user document yet
      await this.users.upsert(user, { $set: { conversationId, updatedAt: now }, $max: { generation: 0 } });
      return;
    }
    await this.users.updateOne({ _id: user, generation }, { $set: { conversationId, updatedAt: now } });
  }

  /**
   * Record an answered turn in the user's history (OpenAI-compatible backends), unless `/clear`
   * started a new generation meanwhile; at most `keep` turns are kept. Called once per question,
   * by the worker whose answer was saved.
   */
  async addTurn(user: string, generation: number, turn: Turn, keep: number, now: number): Promise<void> {
    const push = { $push: { history: { $each: [turn], $slice: -keep } } };
    if (generation === 0 && !(await this.user(user))) {
      await this.users.upsert(user, { ...push, $set: { updatedAt: now }, $max: { generation: 0 } });
      return;
    }
    await this.users.updateOne({ _id: user, generation }, { ...push, $set: { updatedAt: now } });
  }

  /** Forget a conversation the backend no longer knows (404), if it is still the stored one. */
  async forgetConversation(user: string, conversationId: string): Promise<void> {
    await this.users.updateOne({ _id: user, conversationId }, { $unset: { conversationId: true } });
  }

  /**
   * Unsubscribe: the owner must delete the user's data (docs/wechat.md). Only a hash of the
   * OpenID and the unsubscribe time remain, for ten minutes, so WeChat's re-deliveries of the
   * user's last messages are not recorded or asked again.
   */
  async forgetUser(user: string, sentAt: number, now: number): Promise<void> {
    const until = now + UNSUBSCRIBE_MEMORY_MS;
    await this.kv.upsert(tombstoneKey(user), { $set: { value: String(sentAt), expiresAt: until, expireAt: new Date(until) } });
    await this.messages.deleteMany({ user });
    await this.users.deleteMany({ _id: user });
    this.changed(user);
  }

  private async unsubscribedAfter(user: string, sentAt: number): Promise<boolean> {
    const t = await this.kv.findOne({ _id: tombstoneKey(user) });
    return t !== null && Number(t.value) >= sentAt;
  }

  /** How `channel` delivered part `index` of the answer, or why it could not (the console shows it). */
  async notePart(key: string, index: number, channel: string, outcome: string): Promise<void> {
    await this.messages.updateOne({ _id: key, [`parts.${index}`]: { $exists: true } }, { $set: { [`parts.${index}.sent.${statKey(channel)}`]: outcome.slice(0, 200) } });
  }

  /**
   * `channel` is about to send part `index` of the answer: true for exactly one caller, however many
   * instances and recoveries race (compare-and-set on the part's outcome); `notePart` then says how it went.
   */
  async claimPart(key: string, index: number, channel: string): Promise<boolean> {
    const path = `parts.${index}.sent.${statKey(channel)}`;
    return (await this.messages.updateOne({ _id: key, [`parts.${index}`]: { $exists: true }, [path]: { $exists: false } }, { $set: { [path]: 'sending' } })) !== null;
  }

  /** A platform keeps a copy of part `index` for `channel` (its id) until `until`: reuse it meanwhile. */
  async cachePart(key: string, index: number, channel: string, id: string, until: number): Promise<void> {
    await this.messages.updateOne({ _id: key, [`parts.${index}`]: { $exists: true } }, { $set: { [`parts.${index}.cached.${statKey(channel)}`]: { id, until } } });
  }

  /** Note a push attempt on the question's record, for the console's record view. */
  async notePush(key: string, attempt: PushAttempt): Promise<void> {
    await this.messages.updateOne({ _id: key }, { $push: { pushes: { $each: [attempt], $slice: -PUSH_ATTEMPTS_KEPT } } });
  }

  /** A picture arrived: it waits for the user's next question (the newest one wins). */
  async keepImage(user: string, image: PictureRef, at: number): Promise<void> {
    await this.users.upsert(user, { $set: { image: { ...image, at }, updatedAt: at }, $max: { generation: 0 } });
  }

  /** The picture sent at `at` was taken by a question: it is not used again. */
  async dropImage(user: string, at: number): Promise<void> {
    await this.users.updateOne({ _id: user, 'image.at': at }, { $unset: { image: true } });
  }

  /** The QR scene a user came through (subscribe with a scene, SCAN). */
  async noteScene(user: string, scene: string, now: number): Promise<void> {
    await this.users.upsert(user, { $set: { scene, updatedAt: now }, $max: { generation: 0 } });
  }

  /** A voice question's transcript, once, by the worker answering it. False: no longer this attempt's. */
  async setQuestion(key: string, attempt: number, question: string): Promise<boolean> {
    return (await this.messages.updateOne({ _id: key, status: 'pending', attempts: attempt }, { $set: { question } })) !== null;
  }

  /**
   * May message `key` be asked, within every window? Each window is a counter that only a
   * compare-and-set increments while it is below its limit, so however many deliveries and
   * instances race, no window ever admits more than its limit; one that is full undoes the others'
   * counts. One delivery of a message decides and counts; its re-deliveries wait for and get the
   * same verdict, so a message is counted once.
   */
  async admit(key: string, windows: readonly CountWindow[], now: number): Promise<Admission> {
    const mark = `admit:${key}`;
    const keep = now + 10 * 60_000; // longer than WeChat re-delivers
    // One delivery decides (the insert is the claim); the others wait for its verdict.
    if (!(await this.kv.insert({ _id: mark, value: 'deciding', expiresAt: keep, expireAt: new Date(keep) }))) {
      for (let i = 0; i < 100; i++) {
        const r = await this.kv.findOne({ _id: mark });
        if (r && r.value !== 'deciding') return JSON.parse(r.value) as Admission;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return { ok: true }; // the deciding delivery died mid-way: let the question through rather than lose it
    }
    const counted: CountWindow[] = [];
    let verdict: Admission = { ok: true };
    for (const w of windows) {
      if (await this.countIn(w)) counted.push(w);
      else {
        verdict = { ok: false, window: w.id, until: w.until };
        break;
      }
    }
    if (!verdict.ok) for (const w of counted) await this.kv.updateOne({ _id: w.id }, { $inc: { hits: -1 } });
    await this.kv.updateOne({ _id: mark }, { $set: { value: JSON.stringify(verdict) } });
    return verdict;
  }

  /** One more in window `w`, if it is below its limit. */
  private async countIn(w: CountWindow): Promise<boolean> {
    // Each round either counts, finds the window full, or lost a race that moved the count: bounded.
    for (let round = 0; round < 20; round++) {
      if (await this.kv.updateOne({ _id: w.id, hits: { $lt: w.limit } }, { $inc: { hits: 1 } })) return true;
      const cur = await this.kv.findOne({ _id: w.id });
      if (cur && (cur.hits ?? 0) >= w.limit) return false; // full
      if (!cur && (await this.kv.insert({ _id: w.id, value: 'window', hits: 1, expiresAt: w.until, expireAt: new Date(w.until + 60_000) }))) return true;
    }
    return false;
  }

  /** WeChat refused to push to this user (45015/45047) at `now`. */
  async blockUserPush(user: string, now: number): Promise<void> {
    await this.users.updateOne({ _id: user }, { $set: { pushBlockedUntil: now } });
  }

  // ---- statistics

  /** The day (`YYYY-MM-DD` in the configured time zone) and hour a moment falls in. */
  dayOf(at: number): string {
    return new Date(at + this.utcOffsetMs).toISOString().slice(0, 10);
  }

  private hourOf(at: number): string {
    return new Date(at + this.utcOffsetMs).toISOString().slice(11, 13);
  }

  /**
   * A keyword's fixed reply went out, for the first delivery of message `key` (a re-delivery
   * repeats the reply but is not counted again). True the first time.
   */
  async keywordReplied(key: string, user: string, keyword: string, sentAt: number | undefined, now: number): Promise<boolean> {
    const claim = await this.claim({ _id: key, user, kind: 'command', createdAt: now, ...(sentAt !== undefined ? { sentAt } : {}) });
    if (claim.gone || !claim.first) return false;
    await this.count(now, { keywords: 1, [`keyword.${statKey(keyword)}`]: 1 }, user);
    return true;
  }

  /**
   * Add to a day's counters (the console's test user's apart, under `test.`). Increments are
   * summed here and written together at most a second later (one `$inc` per day), so a burst of
   * questions costs one write a second instead of three each; a crash can lose the last second's
   * counts, never double one.
   */
  private count(at: number, fields: Record<string, number>, user: string): Promise<void> {
    const day = this.dayOf(at);
    const sums = this.pendingCounts.get(day) ?? {};
    const prefix = isTestUser(user) ? 'test.' : '';
    for (const [k, v] of Object.entries(fields)) sums[prefix + k] = (sums[prefix + k] ?? 0) + v;
    this.pendingCounts.set(day, sums);
    if (!this.countTimer) {
      this.countTimer = setTimeout(() => void this.flushCounts().catch(() => undefined), COUNT_FLUSH_MS);
      this.countTimer.unref?.();
    }
    return Promise.resolve();
  }

  private async flushCounts(): Promise<void> {
    clearTimeout(this.countTimer);
    this.countTimer = undefined;
    const days = [...this.pendingCounts];
    this.pendingCounts.clear();
    for (const [day, sums] of days) {
      const keep = Date.parse(day) - this.utcOffsetMs + (STATS_DAYS + 1) * 86_400_000;
      const inc = Object.fromEntries(Object.entries(sums).filter(([, v]) => v !== 0));
      if (Object.keys(inc).length > 0) await this.stats.upsert(day, { $inc: inc, $set: { expireAt: new Date(keep) } });
    }
  }

  /** The counters of the days from `fromDay` to `toDay` (inclusive, `YYYY-MM-DD`), oldest first. */
  async statsBetween(fromDay: string, toDay: string): Promise<StatsRecord[]> {
    await this.flushCounts();
    const all = await this.stats.find({}, STATS_DAYS * 2);
    return all.filter((d) => d._id >= fromDay && d._id <= toDay).sort((a, b) => (a._id < b._id ? -1 : 1));
  }

  // ---- shared values (kv)

  async kvGet(id: string, now: number): Promise<string | undefined> {
    const r = await this.kv.findOne({ _id: id });
    return r && r.expiresAt > now ? r.value : undefined;
  }

  /** Set a value valid until `expiresAt`; the record itself is kept until `keepUntil`. */
  async kvPut(id: string, value: string, expiresAt: number, keepUntil = expiresAt): Promise<void> {
    await this.kv.upsert(id, { $set: { value, expiresAt, expireAt: new Date(keepUntil) } });
  }

  /** A value and until when it is valid, while it is (for the console's health view). */
  async kvEntry(id: string, now: number): Promise<{ value: string; expiresAt: number } | undefined> {
    const r = await this.kv.findOne({ _id: id });
    return r && r.expiresAt > now ? { value: r.value, expiresAt: r.expiresAt } : undefined;
  }

  /** Is the store answering? A read of one small document; throws when it is not. */
  async ping(): Promise<void> {
    await this.kv.findOne({ _id: 'answer-page-secret' });
  }

  /** Mark `id` expired if it still holds `value`. */
  async kvExpire(id: string, value: string): Promise<void> {
    await this.kv.updateOne({ _id: id, value }, { $set: { expiresAt: 0 } });
  }

  /**
   * Count one more event in the sliding window `id` if it holds fewer than `limit`; true if it was
   * counted. Each counted event extends the window to `now + windowMs`; a window that has run out
   * starts again from this event. Check and count are one compare-and-set (as `countIn`), so
   * however many requests race, at most `limit` are counted per window.
   */
  async countUnder(id: string, limit: number, windowMs: number, now: number): Promise<boolean> {
    const until = now + windowMs;
    const extend = { expiresAt: until, expireAt: new Date(until + 60_000) };
    // Each round counts, finds the window full, or lost a race that changed the window: bounded.
    for (let round = 0; round < 20; round++) {
      // A window that has run out: this event starts the next one (only one racer can match).
      if (await this.kv.updateOne({ _id: id, expiresAt: { $lt: now } }, { $set: { value: 'counter', hits: 1, ...extend } })) return true;
      if (await this.kv.updateOne({ _id: id, hits: { $lt: limit } }, { $inc: { hits: 1 }, $set: extend })) return true;
      const cur = await this.kv.findOne({ _id: id });
      if (cur && cur.expiresAt >= now && (cur.hits ?? 0) >= limit) return false; // full
      if (!cur && (await this.kv.insert({ _id: id, value: 'counter', hits: 1, ...extend }))) return true;
    }
    return false;
  }

  /** Take the lease `id` for `owner` until `until`, when it is free or has expired (not when `owner` holds it already). */
  async acquireLease(id: string, owner: string, until: number, now: number): Promise<boolean> {
    if (await this.kv.insert({ _id: id, value: owner, expiresAt: until, expireAt: new Date(until + 60_000) })) return true;
    return (await this.kv.updateOne({ _id: id, expiresAt: { $lt: now } }, { $set: { value: owner, expiresAt: until, expireAt: new Date(until + 60_000) } })) !== null;
  }

  async releaseLease(id: string, owner: string): Promise<void> {
    await this.kv.deleteMany({ _id: id, value: owner });
  }

  /** Extend `owner`'s lease `id` to `until`; false when someone else has taken it (or it is gone). */
  async renewLease(id: string, owner: string, until: number): Promise<boolean> {
    return (await this.kv.updateOne({ _id: id, value: owner }, { $set: { expiresAt: until, expireAt: new Date(until + 60_000) } })) !== null;
  }

  // ---- pollers (lib/core/poller.ts)

  /**
   * Take or renew the poller lease of `account` for `owner` until `until`: when it is free,
   * expired, or already `owner`'s. The cursor saved with it, or null when another owner holds it.
   * The record is kept long after the lease (the cursor must outlive a quiet month).
   */
  async claimPoller(account: string, owner: string, until: number, now: number): Promise<{ cursor: string | undefined } | null> {
    const id = `poller:${account}`;
    const keep = new Date(until + POLLER_KEEP_MS);
    const set = { $set: { value: owner, expiresAt: until, expireAt: keep } };
    if (await this.kv.insert({ _id: id, value: owner, expiresAt: until, expireAt: keep })) return { cursor: undefined };
    const got = (await this.kv.updateOne({ _id: id, value: owner }, set)) ?? (await this.kv.updateOne({ _id: id, expiresAt: { $lt: now } }, set));
    return got ? { cursor: got.cursor } : null;
  }

  /** Move `account`'s cursor, if `owner` still holds its poller's lease. False: it does not (nothing written). */
  async savePollCursor(account: string, owner: string, cursor: string): Promise<boolean> {
    return (await this.kv.updateOne({ _id: `poller:${account}`, value: owner }, { $set: { cursor } })) !== null;
  }

  /** `owner` stops polling `account`: the lease is free at once; the cursor stays. */
  async releasePoller(account: string, owner: string): Promise<void> {
    await this.kv.updateOne({ _id: `poller:${account}`, value: owner }, { $set: { value: '', expiresAt: 0 } });
  }

  /** Forget `account`'s cursor (the platform's session ended: the next session starts afresh). */
  async resetPollCursor(account: string): Promise<void> {
    await this.kv.updateOne({ _id: `poller:${account}` }, { $unset: { cursor: true } });
  }

  /** The poller of `account`, for the console: who holds it until when, and whether a cursor is saved. */
  async pollerState(account: string): Promise<{ owner: string; until: number; hasCursor: boolean } | null> {
    const r = await this.kv.findOne({ _id: `poller:${account}` });
    return r ? { owner: r.value, until: r.expiresAt, hasCursor: r.cursor !== undefined } : null;
  }
}

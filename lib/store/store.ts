/**
 * The store is the truth (DEVELOPERS.md): every inbound message, every question's progress and
 * answer, and each user's Dify conversation live here, so retries, other instances and restarts
 * all see the same state. Domain operations are written once over `Collection`.
 */
import type { DifyFailureKind } from '../errors';
import type { Usage } from '../dify/events';
import type { Backend, Collection } from './collection';

/** Messages and their answers are kept this long, then removed by a TTL index. */
export const RETENTION_DAYS = 7;

export type QuestionStatus = 'pending' | 'answered' | 'failed';

export interface Failure {
  kind: DifyFailureKind;
  code: string;
  status: number;
  difyCode: string;
}

/** One inbound message (deduplicated on its key) and, for questions, the answer's life. */
export interface MessageRecord {
  _id: string;
  user: string;
  /** WeChat's MsgId (a 64-bit integer kept as text); '' for events, which are keyed by CreateTime. */
  msgId?: string;
  /** `question` asks Dify; `fetch` is a `1`; `command` any other stateful command. */
  kind: 'question' | 'fetch' | 'command';
  createdAt: number;
  expireAt: Date;
  /** How many deliveries of this message have arrived. */
  deliveries: number;
  /** The final reply of a fetch/command, fixed once chosen so retries repeat it. */
  reply?: string;
  /** fetch: the question it fetches from (the user's latest at the time). */
  target?: string;

  // question fields
  question?: string;
  status?: QuestionStatus;
  /** The user's conversation generation when asked (a `/clear` starts a new one). */
  generation?: number;
  /** Answer text so far (pending) or in full (answered). */
  answer?: string;
  pages?: string[];
  /** Pages handed to WeChat so far (page 1 by the question's own reply, later ones by `1`). */
  pagesDelivered?: number;
  /** Dify calls made for this question: 1, or 2 after its worker died and it was taken over. */
  attempts?: number;
  /** Last sign of life from the worker producing the answer. */
  heartbeatAt?: number;
  placeholderSent?: boolean;
  conversationId?: string;
  messageId?: string;
  usage?: Usage;
  failure?: Failure;
  answeredAt?: number;
}

export interface UserRecord {
  _id: string;
  conversationId?: string;
  /** Incremented by `/clear`; answers of an older generation don't restore the old conversation. */
  generation: number;
  /** Key of the user's latest question. */
  latest?: string;
  /** WeChat refused a push to this user then (45015/45047); questions asked up to then use `1`. */
  pushBlockedUntil?: number;
  updatedAt: number;
}

/** Small shared values with an expiry: the access token, its refresh lock, account-wide flags. */
export interface KvRecord {
  _id: string;
  value: string;
  expiresAt: number;
  expireAt: Date;
}

export class Store {
  private constructor(
    readonly messages: Collection<MessageRecord>,
    readonly users: Collection<UserRecord>,
    readonly kv: Collection<KvRecord>,
    private readonly backend: Backend,
  ) {}

  /** Open the collections and create their indexes (idempotent). */
  static async open(backend: Backend): Promise<Store> {
    const messages = await backend.collection<MessageRecord>('messages', [
      { field: 'status' },
      { field: 'expireAt', expireAfterSeconds: 0 },
    ]);
    const users = await backend.collection<UserRecord>('users', []);
    const kv = await backend.collection<KvRecord>('kv', [{ field: 'expireAt', expireAfterSeconds: 0 }]);
    return new Store(messages, users, kv, backend);
  }

  async close(): Promise<void> {
    await this.backend.close();
  }

  /**
   * Record one delivery of a message. The first delivery inserts it (the atomic claim: exactly
   * one caller, on any instance, gets `first: true`); later ones count themselves.
   */
  async claim(doc: Omit<MessageRecord, 'deliveries' | 'expireAt'>): Promise<{ record: MessageRecord; first: boolean }> {
    const fresh: MessageRecord = { ...doc, deliveries: 1, expireAt: new Date(doc.createdAt + RETENTION_DAYS * 86_400_000) };
    if (await this.messages.insert(fresh)) return { record: fresh, first: true };
    const record = await this.messages.updateOne({ _id: doc._id }, { $inc: { deliveries: 1 } });
    // Removed between the two calls (unsubscribe): treat as new.
    if (!record) return this.claim(doc);
    return { record, first: false };
  }

  async message(key: string): Promise<MessageRecord | null> {
    return this.messages.findOne({ _id: key });
  }

  async user(id: string): Promise<UserRecord | null> {
    return this.users.findOne({ _id: id });
  }

  async setLatest(user: string, key: string, now: number): Promise<void> {
    await this.users.upsert(user, { $set: { latest: key, updatedAt: now }, $max: { generation: 0 } });
  }

  /** Fix the reply of a fetch/command once; the first writer wins. Returns the reply in force. */
  async fixReply(key: string, reply: string, extra: Partial<MessageRecord> = {}): Promise<string> {
    const done = await this.messages.updateOne({ _id: key, reply: { $exists: false } }, { $set: { reply, ...extra } });
    if (done) return reply;
    return (await this.message(key))?.reply ?? reply;
  }

  /** Advance an answered question's page cursor from `expected` (compare-and-set); false if someone else did. */
  async takePage(key: string, expected: number, status: QuestionStatus = 'answered'): Promise<boolean> {
    return (await this.messages.updateOne({ _id: key, status, pagesDelivered: expected }, { $set: { pagesDelivered: expected + 1 } })) !== null;
  }

  /** `/clear`: forget the conversation, start a new generation, drop undelivered pages. */
  async clearUser(user: string, now: number): Promise<{ conversationId: string | undefined }> {
    const before = await this.user(user);
    await this.users.upsert(user, { $inc: { generation: 1 }, $unset: { conversationId: true, latest: true }, $set: { updatedAt: now } });
    return { conversationId: before?.conversationId };
  }

  /** Store the conversation an answer belongs to, unless the user cleared it meanwhile. */
  async setConversation(user: string, generation: number, conversationId: string, now: number): Promise<void> {
    if (generation === 0) {
      // generation 0 may not have a user document yet
      const existing = await this.user(user);
      if (!existing) {
        await this.users.upsert(user, { $set: { conversationId, updatedAt: now }, $max: { generation: 0 } });
        return;
      }
    }
    await this.users.updateOne({ _id: user, generation }, { $set: { conversationId, updatedAt: now } });
  }

  /** Forget a conversation Dify no longer knows (404), if it is still the stored one. */
  async forgetConversation(user: string, conversationId: string): Promise<void> {
    await this.users.updateOne({ _id: user, conversationId }, { $unset: { conversationId: true } });
  }

  /** Unsubscribe: owners must delete a user's data (wechat-protocol.md §4.2). */
  async deleteUser(user: string): Promise<void> {
    await this.messages.deleteMany({ user });
    await this.users.deleteMany({ _id: user });
  }

  /** Pending questions whose worker has shown no sign of life since `before`. */
  async stalePending(before: number, limit = 50): Promise<MessageRecord[]> {
    return this.messages.find({ status: 'pending', heartbeatAt: { $lt: before } }, limit);
  }
}

/**
 * What the bot says to one inbound message, within WeChat's reply window (wechat-protocol.md §2.1).
 *
 * Every delivery of a message waits for its answer until its reply deadline. Ready: the answer.
 * Not ready and WeChat will deliver again: no reply in time (`drop`), so the next delivery gets a
 * fresh window. Last delivery: a placeholder, and the answer waits in the store for `1`.
 */
import type { Config } from '../config';
import { fill } from '../config';
import type { DifyClient } from '../dify/client';
import { errorLogFields, failureText } from '../errors';
import type { Logger } from '../log';
import type { MessageRecord, Store } from '../store';
import type { InboundMessage } from '../wechat/xml';
import type { Clock } from './clock';
import type { Pusher } from './push';
import { failedAnswerText, quote } from './replies';
import type { AnswerWorker } from './worker';

/** What to answer one delivery with. */
export type Decision = { reply: string } | { success: true } | { drop: true };

const SUCCESS: Decision = { success: true };
const DROP: Decision = { drop: true };

/** What WeChat turns stickers and other unsupported input into (pitfalls.md #27): never send it to Dify. */
const UNSUPPORTED_PLACEHOLDER = '【收到不支持的消息类型，暂无法显示】';

export interface BotDeps {
  config: Config;
  store: Store;
  clock: Clock;
  logger: Logger;
  worker: AnswerWorker;
  dify: DifyClient;
  /** Push mode: late answers are sent by the customer-service API (lib/bot/push.ts). */
  push?: Pick<Pusher, 'available' | 'afterPlaceholder'> | undefined;
}

interface Incoming {
  msg: InboundMessage;
  /** Dedupe key: sender + MsgId for messages, sender + CreateTime + event for events. */
  key: string;
  /** When this delivery arrived (ms). */
  arrival: number;
}

type Command = (bot: Bot, m: Incoming) => Promise<Decision>;

/** Commands are a table (DEVELOPERS.md): typed text and menu keys both land here. */
export const COMMANDS: Readonly<Record<string, Command>> = {
  '1': (bot, m) => bot.fetch(m),
  '/clear': (bot, m) => bot.clear(m),
  '/help': (bot) => Promise.resolve({ reply: bot.texts.help }),
};

/** Full-width digits and slashes, surrounding space and case don't change a command. */
export function normalizeCommand(text: string): string {
  return text
    .trim()
    .replace(/[０-９]/g, (d) => String.fromCharCode(d.charCodeAt(0) - 0xfee0))
    .replace(/^[／]/, '/')
    .toLowerCase();
}

export function dedupeKey(msg: InboundMessage): string {
  if ('msgId' in msg && msg.msgId) return `${msg.fromUser}:${msg.msgId}`;
  const event = msg.kind === 'unknown' ? msg.event : msg.kind;
  const eventKey = 'eventKey' in msg ? msg.eventKey : '';
  return `${msg.fromUser}:e${msg.createTime}:${event}:${eventKey}`;
}


export class Bot {
  constructor(private readonly deps: BotDeps) {}

  get texts(): Config['texts'] {
    return this.deps.config.texts;
  }

  /** Route one delivery of a parsed message. */
  async handle(msg: InboundMessage, arrival: number): Promise<Decision> {
    const m: Incoming = { msg, key: dedupeKey(msg), arrival };
    const { texts, menu, scenes } = this.deps.config;
    switch (msg.kind) {
      case 'text': {
        const command = COMMANDS[normalizeCommand(msg.content)];
        if (command) return command(this, m);
        if (msg.content.trim() === '') return { reply: texts.help };
        if (msg.content.trim() === UNSUPPORTED_PLACEHOLDER) return { reply: texts.unsupported };
        return this.ask(m, msg.content);
      }
      case 'voice':
        // Recognition is optional and reported empty in production (wechat-protocol.md §4.1).
        return msg.recognition ? this.ask(m, msg.recognition) : { reply: texts.voiceNoRecognition };
      case 'image':
      case 'video':
      case 'shortvideo':
      case 'location':
      case 'link':
        return { reply: texts.unsupported };
      case 'subscribe': {
        if (!msg.eventKey.startsWith('qrscene_')) return { reply: texts.welcome };
        const scene = msg.eventKey.slice('qrscene_'.length);
        return { reply: scenes[scene] ?? scenes['*'] ?? texts.welcome };
      }
      case 'scan': {
        const text = scenes[msg.eventKey] ?? scenes['*'];
        return text ? { reply: text } : SUCCESS;
      }
      case 'unsubscribe':
        await this.deps.store.deleteUser(msg.fromUser);
        return SUCCESS;
      case 'click': {
        const action = menu[msg.eventKey];
        if (!action) return SUCCESS;
        if ('ask' in action) return this.ask(m, action.ask);
        const command = COMMANDS[action.command];
        return command ? command(this, m) : SUCCESS;
      }
      case 'view':
        return SUCCESS;
      case 'unknown':
        // An unknown message type gets a polite text; unknown events (LOCATION, …) need no answer.
        return msg.msgType === 'event' ? SUCCESS : { reply: texts.unsupported };
    }
  }

  /** A question for Dify: claim it (one Dify call however many deliveries), then wait for it. */
  async ask(m: Incoming, question: string): Promise<Decision> {
    const { store, clock, worker } = this.deps;
    const now = clock.now();
    const user = await store.user(m.msg.fromUser);
    const { record, first } = await store.claim({
      _id: m.key,
      user: m.msg.fromUser,
      msgId: 'msgId' in m.msg ? m.msg.msgId : '',
      kind: 'question',
      createdAt: now,
      question,
      status: 'pending',
      generation: user?.generation ?? 0,
      answer: '',
      pagesDelivered: 0,
      attempts: 1,
      heartbeatAt: now,
    });
    if (first) {
      await store.setLatest(m.msg.fromUser, m.key, now);
      worker.start(record);
    }
    const outcome = await this.waitFor(m.key, m.arrival, record.deliveries);
    if (outcome === 'drop') return DROP;
    if (outcome === 'gone') return SUCCESS;
    const q = outcome.record;
    if (q.status === 'answered' && q.pages?.length) {
      await store.messages.updateOne({ _id: q._id }, { $max: { pagesDelivered: 1 } });
      return { reply: q.pages[0] as string };
    }
    if (q.status === 'failed') return { reply: failureText(q.failure?.kind ?? 'failed', this.texts) };
    await store.messages.updateOne({ _id: q._id }, { $set: { placeholderSent: true } });
    const { push, logger } = this.deps;
    const pushing = push ? await push.available(q.user, q.createdAt) : false;
    if (push && pushing) {
      void push.afterPlaceholder(q._id).catch((err) => logger.warn('push failed', { key: q._id, ...errorLogFields(err) }));
    }
    return { reply: fill(pushing ? this.texts.placeholderPush : this.texts.placeholder, this.timing(q)) };
  }

  /** `1`: the next undelivered page of the user's latest answer, honestly. */
  async fetch(m: Incoming): Promise<Decision> {
    const { store, clock } = this.deps;
    const user = await store.user(m.msg.fromUser);
    const claim: Omit<MessageRecord, 'deliveries' | 'expireAt'> = { _id: m.key, user: m.msg.fromUser, kind: 'fetch', createdAt: clock.now() };
    if (user?.latest) claim.target = user.latest;
    const { record } = await store.claim(claim);
    // A retry of this very `1` repeats what the first delivery chose, so no page is skipped.
    if (record.reply !== undefined) return { reply: record.reply };
    if (!record.target) return { reply: await this.fixReply(m.key, this.texts.nothingPending) };

    const outcome = await this.waitFor(record.target, m.arrival, record.deliveries);
    if (outcome === 'drop') return DROP;
    if (outcome === 'gone') return { reply: await this.fixReply(m.key, this.texts.nothingPending) };
    const q = outcome.record;
    if (q.status === 'failed') return { reply: await this.fixReply(m.key, failedAnswerText(q, this.texts)) };
    if (q.status === 'answered') {
      const pages = q.pages ?? [];
      const next = q.pagesDelivered ?? 0;
      if (next >= pages.length) return { reply: await this.fixReply(m.key, this.texts.nothingPending) };
      const page = pages[next] as string;
      const reply = await this.fixReply(m.key, page);
      // Only the delivery that fixed this reply advances the page; a concurrent `1` may repeat a page, never skip one.
      if (reply === page) await store.takePage(q._id, next);
      return { reply };
    }
    return { reply: fill(this.texts.stillThinking, this.timing(q)) };
  }

  /** `/clear`: forget the conversation here and (best effort) at Dify; drop undelivered pages. */
  async clear(m: Incoming): Promise<Decision> {
    const { store, clock } = this.deps;
    const { record, first } = await store.claim({ _id: m.key, user: m.msg.fromUser, kind: 'command', createdAt: clock.now() });
    if (!first) return { reply: record.reply ?? this.texts.cleared };
    const { conversationId } = await store.clearUser(m.msg.fromUser, clock.now());
    if (conversationId) {
      // Best effort: the conversation is already forgotten here, whatever Dify answers.
      this.deps.dify
        .deleteConversation(conversationId, m.msg.fromUser)
        .catch((err) => this.deps.logger.warn('could not delete the conversation at Dify', { user: m.msg.fromUser, ...errorLogFields(err) }));
    }
    return { reply: await this.fixReply(m.key, this.texts.cleared) };
  }

  private async fixReply(key: string, reply: string): Promise<string> {
    return this.deps.store.fixReply(key, reply);
  }

  private timing(q: MessageRecord): { question: string; seconds: number } {
    return { question: quote(q.question ?? ''), seconds: Math.max(1, Math.round((this.deps.clock.now() - q.createdAt) / 1000)) };
  }

  /**
   * Wait for question `key` to settle until this delivery's reply deadline. Returns the record
   * (settled, or still pending on the last delivery), `drop` when WeChat will deliver again, or
   * `gone` when the question no longer exists. A stale worker is taken over on the way.
   */
  private async waitFor(key: string, arrival: number, deliveryNo: number): Promise<{ record: MessageRecord } | 'drop' | 'gone'> {
    const { store, clock, config, worker } = this.deps;
    const deadline = arrival + config.delivery.replyDeadlineMs;
    const last = config.delivery.placeholderMode === 'first' || deliveryNo >= config.wechat.deliveries;
    for (;;) {
      const q = await store.message(key);
      if (!q) return 'gone';
      if (q.status !== 'pending') return { record: q };
      const now = clock.now();
      if ((q.heartbeatAt ?? 0) < now - config.delivery.staleAfterMs) await worker.takeOver(q);
      if (now >= deadline) {
        if (last) return { record: q };
        // Let this delivery time out so WeChat delivers again with a fresh window; an answer that
        // lands meanwhile is served to that next delivery. Hold past WeChat's own timeout, so it
        // sees exactly the timeout it retries on (a reset might count as an abnormal reply).
        const grace = Math.min(1000, config.wechat.timeoutMs / 5);
        await clock.sleep(arrival + config.wechat.timeoutMs + grace - now);
        return 'drop';
      }
      await clock.sleep(Math.min(config.delivery.pollMs, deadline - now));
    }
  }
}

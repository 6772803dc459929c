/**
 * The lifecycle of one message, whatever channel it came through (docs/architecture.md): commands,
 * keyword replies, limits and filters, then the claim (one model call however often the message
 * arrives) and the answer worker. A `send` channel gets the claimed question back at once (`queued`)
 * and delivers the answer when it settles. A `reply` channel's delivery waits for the answer here,
 * inside the platform's reply window (WeChat's 5 s and re-deliveries): ready, it is the reply; not
 * ready and the platform will deliver again, no reply in time (`drop`), so the next delivery gets a
 * fresh window; on the last delivery a placeholder, and the answer waits in the user's inbox for
 * `1`. Each page is handed out once, by a compare-and-set in the store, whoever asks for it; only a
 * re-delivery of the same message gets the same page again.
 */
import { createHash } from 'crypto';
import type { Clock } from '../util/clock';
import type { CoreConfig, CommandName } from './settings';
import { COMMAND_NAMES } from './settings';
import { fill } from '../text/fill';
import { errorLogFields } from '../errors';
import type { Logger } from '../util/log';
import type { MessageRecord, Store } from '../store';
import { TEST_USER, isTestUser, pageCount } from '../store';
import type { CountWindow, PictureRef } from '../store';
import type { WordFilter } from '../text/filter';
import { quote } from '../text/quote';
import type { Channel, Links } from './channel';
import { keywordReply } from './keywords';
import { pageReply } from './replies';
import type { Wakeups } from './wakeups';
import type { AnswerWorker } from './worker';

/**
 * What to answer one delivery with. A reply that carries a page says which, so the page can be
 * given back if the reply never reaches the user (`giveBack`).
 */
export type Decision = { reply: string; giveBack?: () => Promise<void>; limited?: Limited } | { success: true } | { drop: true } | Queued;

/** A reply that refuses a question over a limit (RATE_LIMIT, DAILY_QUESTION_BUDGET) says until when, for channels that report it (HTTP 429). */
export interface Limited {
  until: number;
}

/** A `send` channel's question: claimed, its worker started; the channel delivers it when it settles. */
export interface Queued {
  queued: MessageRecord;
  /** This delivery claimed it (a re-delivered event is not `first`). */
  first: boolean;
}

/** What a message is, as its channel parsed it. */
export type Content =
  | { type: 'text'; text: string }
  /** A voice: its transcript when the platform made one, else the media to download and transcribe. */
  | { type: 'voice'; transcript?: string | undefined; media?: { id: string; format: string } | undefined }
  | { type: 'image'; image: PictureRef }
  /** A fixed question (a menu button): no keyword reply, no command. */
  | { type: 'ask'; text: string }
  | { type: 'command'; name: CommandName };

/** One delivery of a message (docs/channels.md "Messages"). */
export interface Inbound {
  channel: Channel;
  /** Whose conversation (lib/core/keys.ts). */
  user: string;
  /** The message's dedupe key: one claim however often it comes (unique across channels: built on `user`). */
  key: string;
  /** When the user sent it (s): a message sent before they left is not asked again. */
  sentAt: number;
  /** When this delivery arrived (ms). */
  arrival: number;
  /** The platform's id of the message, as it gives it (WeChat's 64-bit MsgId as text), for the record. */
  msgId?: string | undefined;
  content: Content;
  /** What kind of message asked (DIFY_INPUTS `{msgType}`, `{eventKey}`); from `content` when absent. */
  origin?: { msgType: string; eventKey?: string } | undefined;
  /** How to answer it (a reply or interaction token) and until when; kept on the question, never logged. */
  replyHandle?: { token: string; until: number } | undefined;
  /** No re-delivery will come (the console's Try it): the first delivery is the last. */
  single?: boolean;
  /**
   * The question starts a new conversation (a client that keeps the transcript itself began a new
   * chat): no history or backend conversation of before goes with it, and the user's next questions
   * continue from it. Nothing pending is cancelled (unlike `/clear`).
   */
  newConversation?: boolean;
}

/** How long `1` mentions an answer read on its page, instead of "nothing pending". */
const READ_NOTE_MS = 3_600_000;
/** How often a delivery looks at the store when no change is announced, on a store no other process shares. */
const SOLO_POLL_MS = 2_000;

const SUCCESS: Decision = { success: true };
const DROP: Decision = { drop: true };

export interface BotDeps {
  config: CoreConfig;
  store: Store;
  clock: Clock;
  logger: Logger;
  worker: AnswerWorker;
  wakeups: Wakeups;
  /** The answer page is on: placeholders and long answers link to it (lib/web/page/). */
  links?: Links | undefined;
  /** BLOCKED_WORDS: a question containing one is refused without asking the model. */
  filter?: WordFilter | undefined;
}

/** What a question carries besides its text: a voice to transcribe first, a picture given with it, the kind of message. */
interface AskExtra {
  voice?: { mediaId: string; format: string };
  image?: PictureRef;
  origin?: { msgType: string; eventKey?: string };
}

type Command = (bot: Bot, m: Inbound) => Promise<Decision>;

/** Commands are a table: typed text and menu keys both land here. Its keys are exactly the
 * names config validation accepts (COMMAND_NAMES), which the type checker enforces. */
export const COMMANDS: Readonly<Record<CommandName, Command>> = {
  '1': (bot, m) => (m.channel.delivery === 'reply' ? bot.fetch(m) : (m.channel.more?.(m) ?? Promise.resolve(SUCCESS))),
  '/clear': (bot, m) => bot.clear(m),
  '/help': (_bot, m) => Promise.resolve({ reply: m.channel.help }),
};

/** Full-width digits and slashes, surrounding space and case don't change a command. */
export function normalizeCommand(text: string): string {
  return text
    .trim()
    .replace(/[０-９]/g, (d) => String.fromCharCode(d.charCodeAt(0) - 0xfee0))
    .replace(/^[／]/, '/')
    .toLowerCase();
}

/**
 * Is `name` a command on `channel`? Typed text is checked against the table, not trusted. `1`
 * fetches what waits for the user to ask: where answers travel in replies, or where the channel
 * can stop an answer part-way (`Channel.more`); elsewhere it is an ordinary question.
 */
function commandFor(channel: Channel, name: string): Command | undefined {
  if (!(COMMAND_NAMES as readonly string[]).includes(name)) return undefined;
  if (name === '1' && channel.delivery !== 'reply' && !channel.more) return undefined;
  return COMMANDS[name as CommandName];
}

/** Something for `1` to hand out now: an answer with pages left, or an unsent failure notice. */
const deliverable = (q: MessageRecord) => (q.status === 'answered' || q.status === 'failed') && (q.pagesDelivered ?? 0) < pageCount(q);

/** An inbox item the user is waiting for: promised by a placeholder, or already partly read. Not
 * yet: a question inside its own reply window, which will most likely be answered there. */
const waitedFor = (q: MessageRecord) => q.placeholderSent === true || (q.pagesDelivered ?? 0) > 0;

/** How many of `items`, other than `exceptId`, the user is waiting for. */
const waitingBesides = (items: readonly MessageRecord[], exceptId: string) => items.filter((i) => i._id !== exceptId && waitedFor(i)).length;

export class Bot {
  constructor(private readonly deps: BotDeps) {}

  get texts(): CoreConfig['texts'] {
    return this.deps.config.texts;
  }

  /**
   * The console's Try it: `text` from the test user (lib/store TEST_USER) through `channel` (the
   * console's own, answering like WeChat with one delivery): commands, keywords and `1` included.
   * The reply the user would read, and the key of the message (a question's answer can be followed by it).
   */
  async tryIt(channel: Channel, text: string, arrival: number): Promise<{ reply: string | undefined; key: string }> {
    const key = `${TEST_USER}:${arrival.toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const decision = await this.receive({ channel, user: TEST_USER, key, sentAt: Math.floor(arrival / 1000), arrival, content: { type: 'text', text }, single: true });
    return { reply: 'reply' in decision ? decision.reply : undefined, key };
  }

  /** One delivery of a message from any channel. */
  receive(m: Inbound): Promise<Decision> {
    const { content } = m;
    switch (content.type) {
      case 'text': {
        const command = commandFor(m.channel, normalizeCommand(content.text));
        if (command) return command(this, m);
        if (content.text.trim() === '') return Promise.resolve({ reply: m.channel.help });
        return this.askOrKeyword(m, content.text, { origin: m.origin ?? { msgType: 'text' } });
      }
      case 'voice':
        // A transcript is optional on WeChat and reported empty in production (docs/wechat.md): then
        // the voice itself is downloaded and transcribed, when the channel and the backend allow.
        if (content.transcript) return this.askOrKeyword(m, content.transcript, { origin: { msgType: 'voice' } });
        if (!content.media || !m.channel.media || !m.channel.answerer.transcribes) return Promise.resolve({ reply: this.texts.voiceNoRecognition });
        return this.guarded(m) ?? this.ask(m, '', { voice: { mediaId: content.media.id, format: content.media.format }, origin: { msgType: 'voice' } });
      case 'image':
        return this.picture(m, content.image);
      case 'ask':
        return this.guarded(m) ?? this.ask(m, content.text, { origin: m.origin ?? { msgType: 'event' } });
      case 'command': {
        const command = commandFor(m.channel, content.name);
        return command ? command(this, m) : Promise.resolve(SUCCESS);
      }
    }
  }

  /** A picture: asked about at once (IMAGE_PROMPT), or kept for the user's next question. */
  private async picture(m: Inbound, image: PictureRef): Promise<Decision> {
    const refused = this.guarded(m);
    if (refused) return refused;
    const { imagePrompt, imageWindowMs } = this.deps.config.media;
    if (imagePrompt) return this.ask(m, imagePrompt, { image, origin: { msgType: 'image' } });
    // Kept for the next question; the time is the message's own, so a re-delivery keeps the same one.
    await this.deps.store.keepImage(m.user, image, m.sentAt * 1000);
    return { reply: fill(this.texts.imageReceived, { seconds: Math.round(imageWindowMs / 1000) }) };
  }

  /** A keyword's fixed reply (the model never sees it), or else a question for the model. */
  private async askOrKeyword(m: Inbound, text: string, extra: AskExtra): Promise<Decision> {
    const refused = this.guarded(m);
    if (refused) return refused;
    const fixed = keywordReply(this.deps.config.keywords, text);
    if (fixed === undefined) {
      const word = this.deps.filter?.find(text);
      if (word !== undefined) {
        // Logged with the word that matched, never the question.
        this.deps.logger.info('question refused: blocked word', { key: m.key, word });
        return { reply: this.texts.inputBlocked };
      }
      return this.ask(m, text, extra);
    }
    // Counted once per message (its first delivery); a re-delivery gets the same reply.
    await this.deps.store.keywordReplied(m.key, m.user, fixed.keyword, m.sentAt, this.deps.clock.now());
    return { reply: fixed.reply };
  }

  /** A private bot (ALLOWED_USERS, BLOCKED_USERS) says no to everyone else. */
  private guarded(m: Inbound): Promise<Decision> | undefined {
    const { allowedUsers, blockedUsers } = this.deps.config.guards;
    const user = m.user;
    if (isTestUser(user)) return undefined;
    // A key's last part is the platform's own id (an OpenID, a LINE user id): lists may name either.
    const id = user.slice(user.lastIndexOf(':') + 1);
    const listed = (set: ReadonlySet<string>) => set.has(user) || set.has(id);
    if (listed(blockedUsers) || (allowedUsers !== undefined && !listed(allowedUsers))) return Promise.resolve({ reply: this.texts.notAllowed });
    return undefined;
  }

  /** The windows a question of `user` at `now` is counted in (RATE_LIMIT per user, DAILY_QUESTION_BUDGET for the account). */
  private windows(user: string, now: number): CountWindow[] {
    const { rateLimits, dailyBudget } = this.deps.config.guards;
    const offset = this.deps.config.store.statsUtcOffsetMin * 60_000;
    const windowOf = (id: string, limit: number, ms: number) => {
      // Aligned to the clock in the configured time zone: an hour from :00, a day from midnight.
      const index = Math.floor((now + offset) / ms);
      return { id: `${id}:${index}`, limit, until: (index + 1) * ms - offset };
    };
    const out = rateLimits.map((w) => windowOf(`rate:${w.unit}:${createHash('sha256').update(user).digest('hex').slice(0, 32)}`, w.count, w.windowMs));
    if (dailyBudget !== undefined) out.push(windowOf('budget:d', dailyBudget, 86_400_000));
    return out;
  }

  /** When a refused user may ask again, as they read it: the time, with the date if it is not today. */
  private whenText(until: number): string {
    const offset = this.deps.config.store.statsUtcOffsetMin * 60_000;
    const at = new Date(until + offset).toISOString();
    const sameDay = at.slice(0, 10) === new Date(this.deps.clock.now() + offset).toISOString().slice(0, 10);
    return sameDay ? at.slice(11, 16) : `${at.slice(5, 10).replace('-', '月')}日 ${at.slice(11, 16)}`;
  }

  /** A question for the model: claim it (one model call however many deliveries), then wait for it or queue it. */
  async ask(m: Inbound, question: string, extra: AskExtra = {}): Promise<Decision> {
    const { store, clock, worker, logger, config } = this.deps;
    const now = clock.now();
    const user = m.user;
    // Limits count questions, once per message; commands, keywords and `1` never get here.
    const windows = isTestUser(user) ? [] : this.windows(user, now);
    if (windows.length > 0) {
      const admitted = await store.admit(m.key, windows, now);
      if (!admitted.ok) {
        logger.info('question refused: over a limit', { key: m.key, window: admitted.window.split(':').slice(0, 2).join(':') });
        const template = admitted.window.startsWith('budget:') ? this.texts.budgetExhausted : this.texts.rateLimited;
        return { reply: fill(template, { when: this.whenText(admitted.until) }), limited: { until: admitted.until } };
      }
    }
    const existing = await store.user(user);
    // A picture sent just before is the question's, if it came within the window.
    const pending = existing?.image;
    const image = extra.image ?? (pending && m.arrival - pending.at <= config.media.imageWindowMs ? { picUrl: pending.picUrl, mediaId: pending.mediaId } : undefined);
    const claim = await store.claim({
      _id: m.key,
      user,
      channel: m.channel.name,
      ...(m.msgId ? { msgId: m.msgId } : {}),
      kind: 'question',
      createdAt: now,
      sentAt: m.sentAt,
      question,
      status: 'pending',
      generation: (existing?.generation ?? 0) + (m.newConversation ? 1 : 0),
      answer: '',
      pagesDelivered: 0,
      takers: [],
      attempts: 1,
      heartbeatAt: now,
      ...(this.deps.links ? { pageToken: await this.deps.links.hash(m.key) } : {}),
      ...(image ? { image } : {}),
      ...(extra.voice ? { voice: extra.voice } : {}),
      ...(extra.origin ? { origin: extra.origin } : {}),
      ...(m.replyHandle ? { replyHandle: m.replyHandle } : {}),
      ...(m.channel.delivery === 'send' ? { outbox: m.channel.name } : {}),
    });
    // Sent before the user unsubscribed: WeChat is re-delivering it to an account they left.
    if (claim.gone) return SUCCESS;
    // Who else was waiting when this question came in: for the 20-answer cap, and for the footer.
    let othersWaiting: number | undefined;
    if (claim.first) {
      if (image && !extra.image && pending) await store.dropImage(user, pending.at);
      // Before the worker runs: its answer is saved to the new conversation's generation.
      if (m.newConversation) await store.startConversation(user, claim.record.generation ?? 0, now);
      worker.start(claim.record, existing);
      const { dropped, kept } = await store.trimInbox(user);
      for (const key of dropped) logger.warn('inbox full: dropped the oldest undelivered answer', { key });
      othersWaiting = waitingBesides(kept, m.key);
    }
    // A `send` channel delivers by itself once the answer settles; nothing waits here.
    if (m.channel.delivery === 'send') return { queued: claim.record, first: claim.first };
    let latest: MessageRecord | undefined;
    const outcome = await this.until(m, this.deliveryNo(m, claim.record), async () => {
      const q = await store.message(m.key);
      if (!q) return 'gone' as const;
      if (q.status !== 'pending') return q;
      latest = q;
      await this.recover(q);
      return undefined;
    });
    if (outcome === 'drop') return DROP;
    if (outcome === 'deadline') return this.placeholder(m, latest as MessageRecord);
    if (outcome === 'gone') return SUCCESS;
    return this.answerOwn(m, outcome, m.single ? 1 : claim.record.deliveries, othersWaiting);
  }

  /** Which delivery of its message this is, as the reply window counts: the console's one is the last. */
  private deliveryNo(m: Inbound, record: MessageRecord): number {
    return m.single ? (m.channel.window?.deliveries ?? 1) : record.deliveries;
  }

  /**
   * A settled question, in its own delivery: its first page, once. `othersWaiting`: answers the
   * user was already waiting for when this question arrived (read again when not known).
   */
  private async answerOwn(m: Inbound, q: MessageRecord, deliveryNo: number, othersWaiting?: number): Promise<Decision> {
    const { store, config } = this.deps;
    const { key } = m;
    let took: MessageRecord | null = null;
    // A few rounds: an earlier delivery of this message may be giving the page back right now.
    for (let round = 0, cur: MessageRecord | null = q; cur && round < 3; round++, cur = await store.message(key)) {
      if (cur.status === 'cleared') return { reply: fill(this.texts.questionCleared, this.timing(cur)) };
      // A re-delivery of a question whose first page this message already carried: the same reply.
      if (cur.takers?.[0] === key) {
        took = cur;
        break;
      }
      // Someone else (a `1`, push) already gave the user this page: nothing to add.
      if ((cur.pagesDelivered ?? 0) > 0 || cur.inbox === undefined) return SUCCESS;
      if (this.tooLate(m)) return DROP;
      took = await store.takePage(cur, 0, key, `reply${deliveryNo}`, this.deps.clock.now());
      if (took) break;
    }
    if (!took) return SUCCESS;
    const single = pageCount(took) === 1;
    const more = !single ? 0 : (othersWaiting ?? waitingBesides(await store.inbox(took.user), key));
    const link = await this.fullLink(took, 0);
    return this.carrying(took, 0, key, pageReply(took, 0, config.texts, { quoteQuestion: false, moreWaiting: more, passive: true, link }));
  }

  /** A reply carrying page `page` of `q`, taken by message `key`; given back if it never arrives. */
  private carrying(q: MessageRecord, page: number, key: string, reply: string): Decision {
    const { store, logger } = this.deps;
    return {
      reply,
      giveBack: async () => {
        if (await store.returnPage(q, page, key)) {
          logger.warn('reply did not reach WeChat: its page is back in the inbox for 1', { key: q._id, page: page + 1 });
        }
      },
    };
  }

  /** A link to the question's page: for a question asked with the page on, while it is on. */
  private async pageLink(q: MessageRecord, text: string): Promise<string | undefined> {
    return this.deps.links && q.pageToken ? this.deps.links.markup(q._id, text) : undefined;
  }

  /** "查看全文" on the first page of an answer that has more; "查看图片和文件" on one that has files. */
  private fullLink(q: MessageRecord, page: number): Promise<string | undefined> {
    if (page !== 0 || q.status !== 'answered') return Promise.resolve(undefined);
    // An answer with pictures or files: they are on its page (docs/rich-answers.md).
    if ((q.parts?.length ?? 0) > 0) return this.pageLink(q, this.texts.pageLinkParts);
    return pageCount(q) > 1 ? this.pageLink(q, this.texts.pageLinkFull) : Promise.resolve(undefined);
  }

  /** A "still thinking" text, with the live page's link when there is one. */
  private async thinking(template: string, q: MessageRecord): Promise<string> {
    const link = await this.pageLink(q, this.texts.pageLinkLive);
    return fill(template, this.timing(q)) + (link ? '\n' + link : '');
  }

  /** The platform stops listening to a delivery at its timeout: a page taken later would be lost. */
  private tooLate(m: Inbound): boolean {
    return this.deps.clock.now() >= m.arrival + this.timeoutMs(m);
  }

  private timeoutMs(m: Inbound): number {
    return m.channel.window?.timeoutMs ?? this.deps.config.delivery.replyDeadlineMs + 500;
  }

  /** The last delivery and no answer yet: say so, and promise `1` (or push). */
  private async placeholder(m: Inbound, q: MessageRecord): Promise<Decision> {
    const { store, logger } = this.deps;
    const push = m.channel.push;
    await store.markPlaceholderSent(q._id);
    const pushing = push ? await push.available(q.user, q.createdAt) : false;
    if (push && pushing) {
      void push.afterPlaceholder(q._id).catch((err) => logger.warn('push failed', { key: q._id, ...errorLogFields(err) }));
    }
    return { reply: await this.thinking(pushing ? this.texts.placeholderPush : this.texts.placeholder, q) };
  }

  /**
   * `1`: the next page from the user's inbox: the oldest question's answer that is ready, each
   * page once. While nothing is ready, it waits like a question does, then says what is still
   * being written.
   */
  async fetch(m: Inbound): Promise<Decision> {
    const { store, config } = this.deps;
    const user = m.user;
    const claim = await this.claimCommand(m, 'fetch');
    if (claim.gone) return SUCCESS;
    if (!claim.first) {
      // A retry of this very `1` repeats the page the first delivery took, so none is skipped.
      const prior = await store.takenBy(user, m.key);
      if (prior) {
        const others = waitingBesides(await store.inbox(user), prior.record._id);
        const link = await this.fullLink(prior.record, prior.page);
        return this.carrying(prior.record, prior.page, m.key, pageReply(prior.record, prior.page, config.texts, { quoteQuestion: others > 0, moreWaiting: others, link }));
      }
    }
    let oldestPending: MessageRecord | undefined;
    const outcome = await this.until(m, this.deliveryNo(m, claim.record), async () => {
      // A page lost to a concurrent taker means the inbox changed: look again, a bounded number of times.
      for (let round = 0; round < 5; round++) {
        const items = await store.inbox(user);
        if (items.length === 0) return { reply: await this.nothingPending(user) };
        const q = items.find(deliverable);
        if (!q) {
          oldestPending = items.find(waitedFor) ?? items[0];
          for (const item of items) await this.recover(item);
          return undefined;
        }
        const page = q.pagesDelivered ?? 0;
        if (this.tooLate(m)) return DROP;
        const took = await store.takePage(q, page, m.key, 'fetch', this.deps.clock.now());
        if (!took) continue;
        const others = items.filter((i) => i._id !== q._id && (waitedFor(i) || deliverable(i)));
        const last = page + 1 >= pageCount(took);
        const link = await this.fullLink(took, page);
        return this.carrying(took, page, m.key, pageReply(took, page, config.texts, { quoteQuestion: others.length > 0, moreWaiting: last ? others.length : 0, link }));
      }
      return undefined;
    });
    if (outcome === 'drop') return DROP;
    if (outcome === 'deadline') {
      return oldestPending ? { reply: await this.thinking(this.texts.stillThinking, oldestPending) } : { reply: await this.nothingPending(user) };
    }
    return outcome;
  }

  /** `1` with an empty inbox; says so when the last answer was just read on its page. */
  private async nothingPending(user: string): Promise<string> {
    if (!this.deps.links) return this.texts.nothingPending;
    const read = (await this.deps.store.user(user))?.pageRead;
    const recent = read !== undefined && this.deps.clock.now() - read.at < READ_NOTE_MS;
    return recent ? fill(this.texts.readOnPage, { question: read.question }) : this.texts.nothingPending;
  }

  /** `/clear`: forget the conversation here and (best effort) at the backend; cancel undelivered answers. */
  async clear(m: Inbound): Promise<Decision> {
    const { store, clock } = this.deps;
    const user = m.user;
    const claim = await this.claimCommand(m, 'command');
    if (claim.gone) return SUCCESS;
    if (!claim.first) return { reply: this.texts.cleared };
    const { conversationId } = await store.clearUser(user, clock.now());
    if (conversationId) {
      // Best effort: the conversation is already forgotten here, whatever Dify answers.
      m.channel.answerer
        .deleteConversation(conversationId, user)
        .catch((err) => this.deps.logger.warn('could not delete the conversation at the backend', { user, ...errorLogFields(err) }));
    }
    return { reply: this.texts.cleared };
  }

  /** Record a delivery of a `1` or a stateful command (its deliveries are counted, its reply is not stored). */
  private claimCommand(m: Inbound, kind: 'fetch' | 'command') {
    return this.deps.store.claim({ _id: m.key, user: m.user, channel: m.channel.name, kind, createdAt: this.deps.clock.now(), sentAt: m.sentAt });
  }

  private timing(q: MessageRecord): { question: string; seconds: number } {
    return { question: quote(q.question || (q.voice ? '🎤' : '')), seconds: Math.max(1, Math.round((this.deps.clock.now() - q.createdAt) / 1000)) };
  }

  /** A pending question whose worker went silent (its process died) is taken over. */
  private async recover(q: MessageRecord): Promise<void> {
    const { clock, config, worker } = this.deps;
    if (q.status === 'pending' && (q.heartbeatAt ?? 0) < clock.now() - config.delivery.staleAfterMs) await worker.takeOver(q);
  }

  /**
   * Run `probe` until it has a result or this delivery's reply deadline passes. Between probes it
   * sleeps until this process settles one of the user's answers, or a poll interval (growing, for
   * answers settled by another instance) passes. At the deadline: `deadline` on the last delivery,
   * else `drop`, held until WeChat's own timeout so WeChat delivers again with a fresh window.
   */
  private async until<T>(m: Inbound, deliveryNo: number, probe: () => Promise<T | undefined>): Promise<T | 'deadline' | 'drop'> {
    const { clock, config, wakeups, store } = this.deps;
    const { user, arrival } = m;
    const deadline = arrival + config.delivery.replyDeadlineMs;
    const last = config.delivery.placeholderMode === 'first' || deliveryNo >= (m.channel.window?.deliveries ?? 1);
    // Another process may settle the answer (MongoDB): poll, growing. Alone on its store, this process
    // hears every change (Store.onChange); a rare poll covers only what no change announces.
    const longest = store.shared ? config.delivery.pollMs * 4 : Math.max(config.delivery.pollMs, SOLO_POLL_MS);
    let pause = store.shared ? config.delivery.pollMs : longest;
    for (;;) {
      const result = await probe();
      if (result !== undefined) return result;
      const now = clock.now();
      if (now >= deadline) {
        if (last) return 'deadline';
        // Hold past WeChat's own timeout, so it sees exactly the timeout it retries on (a reset
        // might count as an abnormal reply); an answer that lands meanwhile goes to the next delivery.
        const timeoutMs = this.timeoutMs(m);
        const grace = Math.min(1000, timeoutMs / 5);
        await clock.sleep(arrival + timeoutMs + grace - now);
        return 'drop';
      }
      await wakeups.wait(user, Math.min(pause, deadline - now));
      pause = Math.min(pause * 2, longest);
    }
  }
}

/**
 * Personal WeChat through Tencent's iLink bot API (docs/ilink.md): the bot is a contact in the
 * owner's own WeChat; it long-polls `getupdates` (no public URL needed) and answers with
 * `sendmessage`, one text item per request, echoing the `context_token` of the user's latest message.
 *
 * In: one poller per channel instance (lib/core/poller.ts: one holder across instances, the cursor in
 * the store). The service acknowledges a batch when it hands it out, so the batch is first written to
 * the store, then handed to the core, and replayed by whoever polls next if its handler died. Each
 * message goes to the core once: duplicates (the same message again 1–9 s later with the same, a new
 * or no id) are recognised by id, and by sender and content within DEDUPE_MS.
 *
 * Out: answers are sent page by page (`Store.takePage`, each page once across instances), with the
 * typing indicator while the model works. A context token allows about 10 sends: the last one allowed
 * says so and offers `1`, and what is left waits in the user's inbox for `1` (`Channel.more`) or their
 * next message, whose token brings a new budget. An answer's pictures follow its text as image
 * messages (encrypted, uploaded to the CDN), within what is left of that budget. When the service ends
 * the session (-14), polling stops, the cursor is cleared, nothing is lost: answers wait in the inbox
 * until a new login and the user's next message.
 */
import { createHash, randomBytes } from 'crypto';
import type { StopSignal } from '../../core/answerer';
import type { Channel, ChannelDeps, ChannelKind, HealthItem } from '../../core/channel';
import { answerMessages } from '../../core/channel';
import type { Content, Decision, Inbound } from '../../core/bot';
import { normalizeCommand } from '../../core/bot';
import { conversationKey, parseKey } from '../../core/keys';
import type { PollBatch } from '../../core/poller';
import { MediaError, errorLogFields } from '../../errors';
import type { MessageRecord } from '../../store';
import { pageCount, statKey } from '../../store';
import { fill } from '../../text/fill';
import { markdownToText, withoutImages } from '../../text/markdown';
import type { IlinkApi, IlinkSession } from './api';
import { IlinkApiError, createIlinkApi } from './api';
import { ilinkCheckReads, ilinkSelfCheck } from './check';
import { qrLogin } from './login';
import type { LoginOutcome } from './login';
import type { Credentials, LoginState, SessionState } from './session';
import { SessionStore, maskId } from './session';
import type { IlinkSettings } from './settings';
import { ILINK_VARIABLES, ilinkSettings } from './settings';
import { splitMessages } from './split';
import type { IlinkMessage, OutboundImage } from './wire';
import { decodeMediaId, decryptMedia, downloadUrl, encodeMediaId, fingerprintOf, messageIdOf, parseMessage, planUpload, sniffImageType, uploadUrl } from './wire';

export const ILINK = 'ilink';

/** Text beyond about 2,000 characters is cut off silently (docs/ilink.md §4.3): messages stay within it. */
export const TEXT_MAX = 2000;
/** Sends one context token allows (~10 per inbound message, docs/ilink.md §4.3). */
export const CONTEXT_SENDS = 10;
/** How long a context token is used after its message arrived (the longest window reported: 24 h). */
export const CONTEXT_MAX_AGE_MS = 24 * 3_600_000;
/** A repeat of a message (same sender and content, any id) this soon after it is a duplicate (observed: 1–9 s). */
export const DEDUPE_MS = 15_000;
/** The typing indicator is renewed this often while the model works (the official client: 5 s). */
export const TYPING_EVERY_MS = 5000;
/** …and given up after this long, however long the answer takes. */
const TYPING_MAX_MS = 10 * 60_000;
/** Without a session, the poller looks for a new login this often. */
const SESSION_LOOK_MS = 1000;
/** The client's long-poll timeout until the service suggests its own (`longpolling_timeout_ms`). */
const DEFAULT_HOLD_MS = 35_000;
/** Kept so a quote that names only its `svr_id` can be resolved (newer WeChat clients send only that). */
const QUOTE_TEXT_MS = 7 * 86_400_000;
const QUOTE_CHARS = 300;
/** Senders of one batch handed to the core side by side. */
const BATCH_PARALLEL = 32;
/** How long one delivery may hold a user's outbox, besides the gaps between its messages. */
const OUTBOX_LEASE_MS = 30_000;
/** Sends that fail for a reason a retry can help (no answer, 5xx, a rate refusal): tried this many times. */
const SEND_TRIES = 3;
/** A picture's upload to the CDN: tried this many times when the CDN fails (5xx) or does not answer; a 4xx is final. */
const UPLOAD_TRIES = 3;
const UPLOAD_TIMEOUT_MS = 20_000;

/** What the console needs of an iLink channel (lib/web/console). */
export interface IlinkControl {
  status(): Promise<{ session: SessionState; login: LoginState | undefined; poller: { owner: string; until: number; hasCursor: boolean } | null }>;
  /** Start a QR login in this process; the console follows it through the store. */
  startLogin(): Promise<LoginState>;
  /** The digits the phone shows, for the login in progress. */
  submitVerifyCode(code: string): Promise<boolean>;
}

export interface IlinkChannel extends Channel {
  readonly ilink: IlinkControl;
}

export const isIlink = (c: Channel): c is IlinkChannel => c.kind === ILINK && 'ilink' in c;

/** The poller lease (and cursor) of a channel instance: `ilink:<name>`. */
export const pollAccountOf = (name: string) => `ilink:${name}`;

/** A login's outcome saved as the instance's session; a new session starts its cursor afresh. */
export async function adoptLogin(sessions: SessionStore, deps: { store: ChannelDeps['store'] }, outcome: LoginOutcome, apiBase: string, now: number): Promise<string> {
  if (outcome.kind === 'bound') {
    await sessions.revive();
    return 'already bound: the session held is kept';
  }
  if (outcome.kind === 'failed') return `failed: ${outcome.reason}`;
  await sessions.save({ token: outcome.token, botId: outcome.botId, baseUrl: outcome.baseUrl ?? apiBase, userId: outcome.userId, savedAt: now, source: 'qr' }, now);
  await deps.store.resetPollCursor(pollAccountOf(sessions.account));
  return `logged in as ${maskId(outcome.botId)}`;
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);

/** The latest context token of a user, and which session it belongs to. */
interface ContextToken {
  token: string;
  at: number;
  /** Hash of the session token it came with: tokens of an earlier session are refused. */
  session: string;
}

type Budget = 'more' | 'last' | 'none';
type SendOutcome = 'sent' | 'expired' | 'refused' | 'failed';

/** One delivery's sends to a user on one context token: its pace and what is left of its budget. */
interface Sending {
  creds: Credentials;
  to: string;
  ctx: ContextToken;
  /** When the last message went out (the gap between messages is kept from it). */
  lastAt: number;
  /** The budget is known to be used up (a send took the last allowed, or was refused). */
  spent: boolean;
  /** The session ended meanwhile (-14): nothing more is sent. */
  ended: boolean;
}

export interface IlinkOptions {
  api?: IlinkApi;
  /** The login's pause between status polls (tests shorten it). */
  loginPauseMs?: number;
}

export function createIlinkChannel(settings: IlinkSettings, deps: ChannelDeps, opts: IlinkOptions = {}): IlinkChannel {
  const { config, bot, store, clock, logger, instance } = deps;
  const texts = config.texts;
  const api = opts.api ?? createIlinkApi({ apiBase: settings.apiBase, now: () => clock.now() });
  const sessions = new SessionStore(store, deps.name, logger);
  const pollAccount = pollAccountOf(deps.name);
  const me = randomBytes(8).toString('hex');
  const stashKey = `ilink:batch:${deps.name}`;
  const keyOf = (userId: string) => conversationKey(ILINK, instance, [userId]);
  const userIdOf = (key: string) => parseKey(key).parts[0] ?? '';
  const hintRoom = Math.max(fill(texts.pageHint, { page: 9999, total: 9999 }).length, fill(texts.moreWaiting, { count: 999 }).length) + 2;
  let holdMs = DEFAULT_HOLD_MS;
  /** The session this process polls with (the store is the truth; this is what the loop last read). */
  let polling: Credentials | undefined;
  const notified = new Set<string>();
  /** The batch this process handed to the core last; once the next poll starts, it was handled. */
  let handedBatch: string | undefined;

  // ---- the session

  let provisioning: Promise<void> | undefined;
  /** ILINK_BOT_TOKEN/ILINK_BOT_ID: a session without the QR step, unless a QR login has replaced it. */
  const provisioned = () =>
    (provisioning ??= (async () => {
      const p = settings.provisioned;
      if (!p) return;
      logger.addSecret(p.token);
      const s = await sessions.state(clock.now());
      const held = s.credentials;
      if (held && (held.source === 'qr' || held.token === p.token)) return;
      await sessions.save({ token: p.token, botId: p.botId, baseUrl: settings.apiBase, userId: '', savedAt: clock.now(), source: 'env' }, clock.now());
      await store.resetPollCursor(pollAccount);
      logger.info('iLink: session from ILINK_BOT_TOKEN', { channel: deps.name, bot: maskId(p.botId) });
    })().catch((err) => {
      provisioning = undefined;
      throw err;
    }));

  async function live(): Promise<Credentials | undefined> {
    await provisioned();
    return sessions.live(clock.now());
  }

  const sessionOf = (c: Credentials): IlinkSession => ({ baseUrl: c.baseUrl, token: c.token });

  /** The service ended the session: said once (across instances), polling stops, the cursor is cleared. */
  async function expired(token: string, op: string): Promise<void> {
    stopAllTyping();
    if (!(await sessions.expire(token, clock.now()).catch(() => false))) return;
    await store.resetPollCursor(pollAccount).catch(() => undefined);
    logger.error('iLink session ended by the service (-14): polling stops until a new QR login (npm run ilink -- login, or the console’s iLink page); undelivered answers wait in their users’ inboxes', {
      channel: deps.name,
      op,
    });
  }

  // ---- the typing indicator

  const tickets = new Map<string, { ticket: string; until: number }>();
  const typing = new Map<string, { keys: Set<string>; timer: ReturnType<typeof setInterval>; since: number; shown: boolean; session: IlinkSession }>();

  async function ticketFor(s: IlinkSession, user: string, contextToken: string | undefined): Promise<string> {
    const cached = tickets.get(user);
    if (cached && cached.until > clock.now()) return cached.ticket;
    const ticket = await api.getTypingTicket(s, user, contextToken);
    // The official client refreshes within a day; a random time spreads the refreshes.
    tickets.set(user, { ticket, until: clock.now() + 12 * 3_600_000 + Math.floor(Math.random() * 12 * 3_600_000) });
    return ticket;
  }

  async function typingCall(s: IlinkSession, user: string, on: boolean): Promise<boolean> {
    try {
      const ticket = await ticketFor(s, user, (await latestContext(userKeyOf(user)))?.token);
      await api.sendTyping(s, user, ticket, on);
      return true;
    } catch (err) {
      if (err instanceof IlinkApiError && err.failure === 'expired') await expired(s.token, 'sendtyping');
      else {
        if (err instanceof IlinkApiError && err.failure === 'refused') tickets.delete(user);
        logger.debug('iLink typing indicator failed', errorLogFields(err));
      }
      return false;
    }
  }

  const userKeyOf = (userId: string) => keyOf(userId);

  /** "Typing…" while question `key` of `userKey` is being answered, renewed until it settles. */
  async function startTyping(userKey: string, key: string): Promise<void> {
    const creds = await live();
    if (!creds) return;
    const user = userIdOf(userKey);
    const entry = typing.get(user);
    if (entry) {
      entry.keys.add(key);
      return;
    }
    const s = sessionOf(creds);
    const renew = async () => {
      const e = typing.get(user);
      if (!e) return;
      for (const k of [...e.keys]) {
        const q = await store.message(k).catch(() => undefined);
        if (q !== undefined && q?.status !== 'pending') e.keys.delete(k); // settled here or elsewhere, or gone
      }
      if (e.keys.size === 0 || clock.now() - e.since > TYPING_MAX_MS) return void stopTyping(user);
      await typingCall(e.session, user, true);
    };
    const fresh = { keys: new Set([key]), timer: setInterval(() => void renew(), TYPING_EVERY_MS), since: clock.now(), shown: false, session: s };
    typing.set(user, fresh);
    fresh.shown = await typingCall(s, user, true);
  }

  /** Question `key` is done (or all of the user's): "typing…" ends when nothing else is being written. */
  async function stopTyping(user: string, key?: string): Promise<void> {
    const e = typing.get(user);
    if (!e) return;
    if (key !== undefined) e.keys.delete(key);
    if (key !== undefined && e.keys.size > 0) return;
    typing.delete(user);
    clearInterval(e.timer);
    if (e.shown) await typingCall(e.session, user, false);
  }

  function stopAllTyping(): void {
    for (const e of typing.values()) clearInterval(e.timer);
    typing.clear();
  }

  // ---- context tokens and their budget

  const contextKey = (userKey: string) => `ilink:ctx:${userKey}`;

  async function latestContext(userKey: string): Promise<ContextToken | undefined> {
    const raw = await store.kvGet(contextKey(userKey), clock.now());
    if (!raw) return undefined;
    try {
      return JSON.parse(raw) as ContextToken;
    } catch {
      return undefined;
    }
  }

  /** A context token still usable for this session. */
  const usable = (c: ContextToken | undefined, creds: Credentials): c is ContextToken => c !== undefined && c.session === sha(creds.token) && clock.now() - c.at < CONTEXT_MAX_AGE_MS;

  /** One more send on `token`: more may follow (`more`), it is the last allowed (`last`), or none is left. */
  async function reserve(token: string): Promise<Budget> {
    const id = `ilink:sends:${sha(token)}`;
    const now = clock.now();
    if (await store.countUnder(id, CONTEXT_SENDS - 1, CONTEXT_MAX_AGE_MS, now)) return 'more';
    if (await store.countUnder(id, CONTEXT_SENDS, CONTEXT_MAX_AGE_MS, now)) return 'last';
    return 'none';
  }

  /**
   * One more send on `token` for a picture, if the budget has room: the last allowed send only when
   * no text waits for this token (`keepLast` false), so a picture never takes the place of the
   * message that says "reply 1", nor of another answer's text.
   */
  function reservePicture(token: string, keepLast: boolean): Promise<boolean> {
    return store.countUnder(`ilink:sends:${sha(token)}`, keepLast ? CONTEXT_SENDS - 1 : CONTEXT_SENDS, CONTEXT_MAX_AGE_MS, clock.now());
  }

  // ---- sending

  /** Send one text or picture; retried where a retry can help (no answer, HTTP errors, a rate refusal). */
  async function sendOne(creds: Credentials, to: string, what: string | OutboundImage, ctx: ContextToken): Promise<SendOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        const s = sessionOf(creds);
        const { messageId } = typeof what === 'string' ? await api.sendText(s, to, what, ctx.token) : await api.sendImage(s, to, what, ctx.token);
        // Kept for quotes that name only this message's id (a picture is quoted as what it is).
        const quoted = typeof what === 'string' ? what.slice(0, QUOTE_CHARS) : '[图片]';
        if (messageId) await store.kvPut(`ilink:text:${deps.name}:${messageId}`, quoted, clock.now() + QUOTE_TEXT_MS).catch(() => undefined);
        return 'sent';
      } catch (err) {
        if (!(err instanceof IlinkApiError)) throw err;
        if (err.failure === 'expired') {
          await expired(creds.token, 'sendmessage');
          return 'expired';
        }
        // `prepare failed`: this token's quota or age is spent (the user must write again);
        // `unknown error`: a stale session. Neither is helped by trying again.
        const final = err.failure === 'refused' && (err.errmsg === 'prepare failed' || err.errmsg === 'unknown error' || err.ret !== -2);
        logger.warn('iLink send refused', { channel: deps.name, ret: err.ret, errcode: err.errcode, errmsg: err.errmsg, status: err.status, failure: err.failure, attempt, retry: !final && attempt < SEND_TRIES });
        if (final) return 'refused';
        if (attempt >= SEND_TRIES) return 'failed';
        await clock.sleep(1500 * 2 ** (attempt - 1));
      }
    }
  }

  /** One user's sends, in order, in this process. */
  const chains = new Map<string, Promise<unknown>>();
  function serial<T>(userKey: string, fn: () => Promise<T>): Promise<T> {
    const prev = chains.get(userKey) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    chains.set(userKey, tail);
    void tail.then(() => {
      if (chains.get(userKey) === tail) chains.delete(userKey);
    });
    return next;
  }

  /** A reply that is not an answer (a command's, a keyword's, a refusal): one message on the latest token. */
  function replyTo(userKey: string, text: string): Promise<void> {
    return serial(userKey, async () => {
      const creds = await live();
      const ctx = await latestContext(userKey);
      if (!creds || !usable(ctx, creds)) return;
      if ((await reserve(ctx.token)) === 'none') return void logger.warn('iLink reply not sent: the context token has no sends left', { channel: deps.name });
      await sendOne(creds, userIdOf(userKey), markdownToText(text) || text, ctx);
    }).catch((err) => logger.warn('iLink reply failed', { channel: deps.name, ...errorLogFields(err) }));
  }

  const settled = (q: MessageRecord) => q.status === 'answered' || q.status === 'failed';
  const deliverable = (q: MessageRecord) => q.channel === deps.name && settled(q) && (q.pagesDelivered ?? 0) < pageCount(q);
  /** The user was told to reply `1` for the rest of it (the page that said so is taken as `ilink:more`). */
  const waitsForOne = (q: MessageRecord) => (q.pagesDelivered ?? 0) > 0 && q.takers?.[(q.pagesDelivered ?? 0) - 1] === 'ilink:more';

  /**
   * Hold the user's outbox across instances (one sender at a time keeps their messages in order). The
   * lease outlives the longest delivery of text (10 messages, their gaps and retries), and is renewed
   * while pictures are uploaded; one left by a process that died is free again after it.
   */
  const outboxLease = (userKey: string) => `ilink:out:${userKey}`;
  const outboxUntil = () => clock.now() + OUTBOX_LEASE_MS + CONTEXT_SENDS * settings.sendGapMs;
  async function holdOutbox(userKey: string): Promise<boolean> {
    const until = clock.now() + 15_000;
    for (;;) {
      if (await store.acquireLease(outboxLease(userKey), me, outboxUntil(), clock.now())) return true;
      if (clock.now() >= until) return false;
      await clock.sleep(250);
    }
  }

  /** The answer's pictures this channel has not yet sent, nor noted why not. */
  const picturesLeft = (q: MessageRecord) => (q.status === 'answered' ? (q.parts ?? []).flatMap((p, i) => (p.kind === 'image' && p.sent?.[statKey(deps.name)] === undefined ? [i] : [])) : []);
  /**
   * An answer whose text was all taken but which is still in the outbox (a delivery takes it out only
   * when it is done): its sender died after the text, perhaps before its pictures.
   */
  const leftBehind = (q: MessageRecord | null): q is MessageRecord =>
    q !== null && q.channel === deps.name && settled(q) && q.outbox !== undefined && q.inbox === undefined && (q.pagesDelivered ?? 0) >= pageCount(q);

  /**
   * Send what `userKey` is owed, oldest answer first, page by page on their latest context token, each
   * answer's pictures after its text. `all`: also the rest of answers that wait for `1`. Pages the
   * budget does not allow stay in the inbox. `owedKey`: an answer the recovery sweep found, whose
   * sender may have died after its text: its pictures that did not go out are sent.
   */
  function deliverUser(userKey: string, all: boolean, owedKey?: string): Promise<void> {
    return serial(userKey, async () => {
      // Most messages find nothing owed: no lease for them.
      const owed = owedKey !== undefined ? await store.message(owedKey) : null;
      if (!(await store.inbox(userKey)).some((q) => deliverable(q) && (all || !waitsForOne(q))) && !leftBehind(owed)) return;
      if (!(await holdOutbox(userKey))) {
        logger.warn('iLink: another instance holds this user’s outbox; the recovery sweep sends what is left', { channel: deps.name });
        return;
      }
      try {
        await deliverHeld(userKey, all, owedKey);
      } finally {
        await store.releaseLease(outboxLease(userKey), me).catch(() => undefined);
      }
    }).catch((err) => logger.warn('iLink answer not delivered', { channel: deps.name, ...errorLogFields(err) }));
  }

  async function deliverHeld(userKey: string, all: boolean, owedKey: string | undefined): Promise<void> {
    const inbox = await store.inbox(userKey);
    const items = inbox.filter((q) => deliverable(q) && (all || !waitsForOne(q)));
    // Read again under the lease: a delivery that held it before may have finished it.
    const owedRecord = owedKey !== undefined ? await store.message(owedKey) : null;
    const owed = leftBehind(owedRecord) ? owedRecord : undefined;
    if (items.length === 0 && !owed) return;
    const to = userIdOf(userKey);
    const creds = await live();
    const ctx = await latestContext(userKey);
    // Without a session, or a token of this session, nothing can be sent: the answers wait in the
    // inbox for the user's next message (the sweep need not try them again); pictures whose text
    // went out already are not sent.
    if (!creds || !usable(ctx, creds)) {
      const why = creds ? 'no usable context token' : 'no live session';
      for (const q of items) await store.dropOutbox(q._id);
      if (owed) await leavePictures(owed, `not sent: ${why}`);
      logger.info('iLink: answers wait for the user’s next message', { channel: deps.name, answers: items.length, why });
      return;
    }
    const out: Sending = { creds, to, ctx, lastAt: 0, spent: false, ended: false };
    // Another answer still being written will want this token's sends too.
    const writing = inbox.some((q) => q.channel === deps.name && q.status === 'pending');
    if (owed) {
      if (picturesLeft(owed).length > 0) {
        logger.info('iLink: sending the pictures of an answer whose sender stopped after its text', { key: owed._id });
        await sendPictures(out, owed, items.length > 0 || writing);
      }
      await store.dropOutbox(owed._id);
    }
    let stopped = out.ended;
    for (let i = 0; i < items.length && !stopped; i++) {
      let cur = items[i] as MessageRecord;
      await stopTyping(to, cur._id);
      const pages = answerMessages(cur, texts);
      const total = pages.length;
      for (let page = cur.pagesDelivered ?? 0; page < total; page++) {
        const budget = await reserve(ctx.token);
        if (budget !== 'more') out.spent = true;
        if (budget === 'none') {
          stopped = true;
          logger.info('iLink: the context token’s sends are used up; the rest waits for 1', { key: cur._id, page: page + 1, of: total });
          break;
        }
        const moreHere = page + 1 < total;
        const moreAfter = items.length - i - 1;
        const hint = budget === 'last' && (moreHere || moreAfter > 0);
        const took = await store.takePage(cur, page, hint ? 'ilink:more' : 'ilink', 'ilink', clock.now());
        if (!took) break; // someone else sent it (a race the outbox lease leaves only to a dead holder)
        const text = (pages[page] ?? '') + (hint ? `\n\n${moreHere ? fill(texts.pageHint, { page: page + 1, total }) : fill(texts.moreWaiting, { count: moreAfter })}` : '');
        const outcome = await sendOne(creds, to, text, ctx);
        if (outcome !== 'sent') {
          await store.returnPage(took, page, hint ? 'ilink:more' : 'ilink');
          logger.warn('iLink answer page not sent; it waits in the inbox', { key: cur._id, page: page + 1, of: total, outcome });
          stopped = true;
          break;
        }
        out.lastAt = clock.now();
        cur = took;
        if (hint) {
          stopped = true;
          break;
        }
        if (moreHere && settings.sendGapMs > 0) await clock.sleep(settings.sendGapMs);
      }
      // The whole text went out (here): its pictures follow, with what is left of the budget.
      if ((cur.pagesDelivered ?? 0) >= total && picturesLeft(cur).length > 0) {
        await sendPictures(out, cur, i + 1 < items.length || writing);
        if (out.ended) stopped = true;
      }
      if (!stopped && i + 1 < items.length && settings.sendGapMs > 0) await clock.sleep(settings.sendGapMs);
    }
    // Sent, or waiting for `1` or the next message: the recovery sweep has nothing to do for these.
    for (const q of items) await store.dropOutbox(q._id);
  }

  /** Pictures of `q` that will not be sent, noted with why (each once: claimed first). */
  async function leavePictures(q: MessageRecord, why: string): Promise<void> {
    for (const i of picturesLeft(q)) if (await store.claimPart(q._id, i, deps.name)) await store.notePart(q._id, i, deps.name, why);
    await store.dropOutbox(q._id);
  }

  /**
   * An answer's pictures (docs/ilink.md "Pictures"), after its text, on the same context token: each
   * fetched as if hostile (lib/util/media.ts), encrypted under a fresh key, uploaded to the CDN, and
   * sent as one image message, while the budget has room (`keepLast`: text still waits for this token,
   * so a picture never takes the last allowed send). Once across instances and recoveries
   * (Store.claimPart, before anything is fetched: a sender that dies leaves that picture unsent rather
   * than risk it twice); what becomes of each is noted on the answer's record. A picture that cannot
   * go costs nothing else: the text has been sent already.
   */
  async function sendPictures(out: Sending, q: MessageRecord, keepLast: boolean): Promise<void> {
    const note = (i: number, outcome: string) => store.notePart(q._id, i, deps.name, outcome);
    for (const i of picturesLeft(q)) {
      const part = q.parts?.[i];
      if (!part || !(await store.claimPart(q._id, i, deps.name))) continue;
      if (out.ended) {
        await note(i, 'not sent: session ended');
        continue;
      }
      if (out.spent || !deps.fetchPart) {
        await note(i, out.spent ? 'not sent: budget' : 'not sent: no fetcher');
        continue;
      }
      try {
        await store.renewLease(outboxLease(q.user), me, outboxUntil());
        const f = await deps.fetchPart(q.user, part.url);
        if (f.kind !== 'image') {
          await note(i, 'not sent: not a picture');
          continue;
        }
        const image = await uploadPicture(out, q.user, f.bytes);
        if (!(await reservePicture(out.ctx.token, keepLast))) {
          out.spent = true;
          await note(i, 'not sent: budget');
          logger.info('iLink: no sends left on the context token for an answer’s picture', { key: q._id, part: i });
          continue;
        }
        const wait = out.lastAt + settings.sendGapMs - clock.now();
        if (wait > 0) await clock.sleep(wait);
        await store.renewLease(outboxLease(q.user), me, outboxUntil());
        const outcome = await sendOne(out.creds, out.to, image, out.ctx);
        out.lastAt = clock.now();
        if (outcome === 'expired') out.ended = true;
        if (outcome === 'refused') out.spent = true; // the token's quota or age, as the service counts it
        await note(i, outcome === 'sent' ? 'image message' : outcome === 'expired' ? 'not sent: session ended' : `not sent: iLink ${outcome}`);
        if (outcome === 'sent') logger.info('iLink answer picture sent', { key: q._id, part: i, bytes: f.bytes.length });
        else logger.warn('iLink answer picture not sent', { key: q._id, part: i, outcome });
      } catch (err) {
        if (err instanceof IlinkApiError && err.failure === 'expired') {
          out.ended = true;
          await expired(out.creds.token, 'getuploadurl'); // the CDN itself answers only in HTTP statuses
        }
        await note(i, `not sent: ${pictureFailure(err)}`).catch(() => undefined);
        logger.warn('iLink answer picture not sent; the text named it', { key: q._id, part: i, ...errorLogFields(err), ...(err instanceof IlinkApiError ? { status: err.status, errmsg: err.errmsg } : {}) });
      }
    }
  }

  /** Why a picture could not go, briefly, for the record (the console shows it). */
  function pictureFailure(err: unknown): string {
    if (err instanceof MediaError) return `fetch ${err.detail}`;
    if (err instanceof IlinkApiError) {
      if (err.failure === 'expired') return 'session ended';
      if (err.failure === 'http') return `CDN ${err.status === 200 ? err.errmsg : `HTTP ${err.status}${err.errmsg ? ` ${err.errmsg}` : ''}`}`;
      if (err.failure === 'network') return `no answer (${err.errmsg})`;
      return `iLink ret ${err.ret} errcode ${err.errcode}${err.errmsg ? ` ${err.errmsg}` : ''}`;
    }
    return errorLogFields(err)['code'] as string;
  }

  /**
   * A picture onto the CDN for `userKey`: encrypted under a fresh key (AES-128-ECB), `getuploadurl`,
   * then the ciphertext POSTed; the CDN's failures (5xx, no answer) are tried UPLOAD_TRIES times, a
   * refusal (4xx, or an answer without the download parameter) is final.
   */
  async function uploadPicture(out: Sending, userKey: string, bytes: Buffer): Promise<OutboundImage> {
    const plan = planUpload(bytes, randomBytes(16).toString('hex'), randomBytes(16).toString('hex'));
    const { uploadParam, fullUrl } = await api.getUploadUrl(sessionOf(out.creds), plan, out.to);
    const url = uploadUrl(settings.cdnBase, uploadParam, plan.filekey, fullUrl);
    for (let attempt = 1; ; attempt++) {
      try {
        await store.renewLease(outboxLease(userKey), me, outboxUntil());
        const param = await api.upload(url, plan.ciphertext, UPLOAD_TIMEOUT_MS);
        return { param, keyHex: plan.keyHex, cipherSize: plan.ciphertext.length };
      } catch (err) {
        const passing = err instanceof IlinkApiError && (err.failure === 'network' || err.status >= 500);
        if (!passing || attempt >= UPLOAD_TRIES) throw err;
        logger.info('iLink picture upload failed; trying again', { channel: deps.name, status: err.status, errmsg: err.errmsg, attempt });
        await clock.sleep(1000 * attempt);
      }
    }
  }

  // ---- receiving

  /** What the core is given for a message: its content, with a quote's text in front. */
  async function contentOf(m: IlinkMessage): Promise<Content | { unsupported: true }> {
    const c = m.content;
    switch (c.type) {
      case 'text': {
        let text = c.text;
        if (m.quote && !isCommand(text)) {
          let quoted = m.quote.text;
          if (!quoted && m.quote.svrId) quoted = await store.kvGet(`ilink:text:${deps.name}:${m.quote.svrId}`, clock.now());
          if (quoted) text = `${quoted.slice(0, QUOTE_CHARS).split('\n').map((l) => `> ${l}`).join('\n')}\n\n${text}`;
        }
        return { type: 'text', text };
      }
      case 'image':
        return { type: 'image', image: { picUrl: downloadUrl(settings.cdnBase, c.media), mediaId: encodeMediaId(c.media) } };
      case 'voice':
        return c.transcript ? { type: 'voice', transcript: c.transcript } : { unsupported: true };
      default:
        return { unsupported: true };
    }
  }

  const isCommand = (text: string) => ['1', '/clear', '/help'].includes(normalizeCommand(text));

  /**
   * A batch, handed to the core as one item of the poller's (so the cursor still moves only once all
   * of it is claimed): each sender's messages in order, different senders side by side (at most
   * BATCH_PARALLEL at once), so a burst of users is not claimed one by one.
   */
  async function handleBatch(batch: unknown): Promise<void> {
    const msgs = Array.isArray(batch) ? (batch as unknown[]) : [batch];
    const bySender = new Map<string, unknown[]>();
    for (const raw of msgs) {
      const from = String((raw as { from_user_id?: unknown } | null)?.from_user_id ?? '');
      bySender.set(from, [...(bySender.get(from) ?? []), raw]);
    }
    const queues = [...bySender.values()];
    let failed: unknown;
    const worker = async () => {
      for (let q = queues.shift(); q; q = queues.shift()) {
        for (const raw of q) await handle(raw).catch((err: unknown) => void (failed ??= err));
      }
    };
    await Promise.all(Array.from({ length: Math.min(BATCH_PARALLEL, queues.length) }, worker));
    // A store failure: the runner polls again, and the stashed batch comes first (claims dedupe it).
    if (failed !== undefined) throw failed;
  }

  async function handle(raw: unknown): Promise<void> {
    let m: IlinkMessage;
    try {
      m = parseMessage(raw);
    } catch (err) {
      logger.warn('iLink: a message that cannot be read was skipped', { channel: deps.name, ...errorLogFields(err) });
      return;
    }
    // Our own messages, progress updates, and groups (the bot answers people one to one).
    if (m.messageType === 2 || m.messageState === 1 || (polling && m.from === polling.botId)) return;
    if (m.groupId) {
      logger.debug('iLink: group message ignored', { channel: deps.name });
      return;
    }
    const now = clock.now();
    const user = keyOf(m.from);
    const own = `${user}:${messageIdOf(m)}`;
    // The first delivery of a sender's content names the message; a repeat within DEDUPE_MS (a new
    // id, or none) is the same message. Once it was handled, a repeat changes nothing.
    const fp = `ilink:fp:${fingerprintOf(deps.name, m)}`;
    let key = own;
    if (!(await store.acquireLease(fp, own, now + DEDUPE_MS, now))) {
      const held = await store.kvGet(fp, now);
      if (held?.startsWith('done:')) {
        logger.info('iLink: duplicate delivery ignored', { key: held.slice(5), ...(held.slice(5) !== own ? { as: own } : {}) });
        return;
      }
      if (held) key = held;
    }
    const creds = polling;
    if (m.contextToken && creds) {
      const ctx: ContextToken = { token: m.contextToken, at: now, session: sha(creds.token) };
      await store.kvPut(contextKey(user), JSON.stringify(ctx), now + CONTEXT_MAX_AGE_MS);
    }
    if (m.id && m.content.type === 'text') await store.kvPut(`ilink:text:${deps.name}:${m.id}`, m.content.text.slice(0, QUOTE_CHARS), now + QUOTE_TEXT_MS);
    const content = await contentOf(m);
    let decision: Decision;
    if ('unsupported' in content) decision = { reply: texts.channelUnsupported };
    else {
      // A new message brings a new budget: what the user is owed goes first (`1` sends it all itself).
      const one = content.type === 'text' && normalizeCommand(content.text) === '1';
      if (!one) void deliverUser(user, false);
      decision = await bot.receive({
        channel,
        user,
        key,
        sentAt: Math.floor((m.createTimeMs ?? now) / 1000),
        arrival: now,
        msgId: m.id,
        content,
      });
    }
    if ('reply' in decision) void replyTo(user, decision.reply);
    else if ('queued' in decision && decision.first) void startTyping(user, decision.queued._id).catch(() => undefined);
    await store.kvPut(fp, `done:${key}`, now + DEDUPE_MS);
  }

  interface Stash {
    id: string;
    session: string;
    cursor: string;
    msgs: unknown[];
  }

  async function poll(cursor: string | undefined, stop: StopSignal): Promise<PollBatch<unknown>> {
    const from = cursor ?? '';
    // Without a live session (never logged in, or ended: -14) nothing is polled; this waits for a
    // login instead, looking at the store every second, so polling resumes at once after one.
    let creds = await live();
    const until = clock.now() + holdMs;
    while (!creds) {
      polling = undefined;
      if (stop.stopped || clock.now() >= until) return { messages: [], cursor: from };
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, SESSION_LOOK_MS);
        stop.onStop(() => {
          clearTimeout(t);
          resolve();
        });
      });
      creds = await live();
    }
    polling = creds;
    // The batch handed to the core last time was handled (the runner polls again only after that).
    if (handedBatch !== undefined) {
      await store.kvPut(stashKey, '', 0);
      handedBatch = undefined;
    }
    // A batch the service handed out but whose handler died (it acknowledges on delivery): again, first.
    const raw = await store.kvGet(stashKey, clock.now());
    if (raw) {
      const stash = JSON.parse(raw) as Stash;
      if (stash.session === sha(creds.token)) {
        logger.info('iLink: handing over a batch whose handler stopped', { channel: deps.name, messages: stash.msgs.length });
        handedBatch = stash.id;
        return { messages: stash.msgs.length ? [stash.msgs] : [], cursor: stash.cursor };
      }
    }
    const s = sessionOf(creds);
    try {
      if (!notified.has(creds.token)) {
        // The official client announces itself before it polls (replies were dropped without it).
        await api.notify(s, 'start');
        notified.add(creds.token);
      }
      const batch = await api.getUpdates(s, from, holdMs + 5000, stop);
      if (batch.holdMs !== undefined) holdMs = Math.min(Math.max(batch.holdMs, 1000), 120_000);
      if (batch.msgs.length > 0) {
        const stash: Stash = { id: randomBytes(6).toString('hex'), session: sha(creds.token), cursor: batch.cursor, msgs: batch.msgs };
        await store.kvPut(stashKey, JSON.stringify(stash), clock.now() + 86_400_000);
        handedBatch = stash.id;
      }
      return { messages: batch.msgs.length ? [batch.msgs] : [], cursor: batch.cursor };
    } catch (err) {
      if (err instanceof IlinkApiError && err.failure === 'expired') {
        await expired(creds.token, 'getupdates');
        return { messages: [], cursor: '' };
      }
      throw err;
    }
  }

  // ---- a login from the console

  async function runLogin(id: string): Promise<void> {
    const update = async (patch: Partial<LoginState>) => {
      const cur = await sessions.login(clock.now());
      if (cur?.id !== id) return;
      await sessions.setLogin({ ...cur, ...patch, updatedAt: clock.now() });
    };
    const held = (await sessions.state(clock.now())).credentials;
    const outcome = await qrLogin({
      api,
      clock,
      apiBase: settings.apiBase,
      localTokens: held ? [held.token] : [],
      showQr: (content) => update({ qr: content, status: 'wait' }),
      status: (status) => update({ status }),
      verifyCode: async () => {
        // The owner types the digits on the console (any instance); wait for them.
        const until = clock.now() + 5 * 60_000;
        while (clock.now() < until) {
          const code = await sessions.takeVerifyCode(id, clock.now());
          if (code !== undefined) return code;
          if ((await sessions.login(clock.now()))?.id !== id) return undefined;
          await clock.sleep(500);
        }
        return undefined;
      },
      cancelled: async () => (await sessions.login(clock.now()))?.id !== id,
      ...(opts.loginPauseMs !== undefined ? { pauseMs: opts.loginPauseMs } : {}),
    });
    const result = await adoptLogin(sessions, { store }, outcome, settings.apiBase, clock.now());
    logger.info('iLink login from the console', { channel: deps.name, result });
    await update({ done: true, qr: undefined, status: outcome.kind, result });
  }

  const control: IlinkControl = {
    async status() {
      const now = clock.now();
      await provisioned().catch(() => undefined);
      const [session, login, poller] = await Promise.all([sessions.state(now), sessions.login(now), store.pollerState(pollAccount)]);
      return { session, login, poller };
    },
    async startLogin() {
      const now = clock.now();
      const state: LoginState = { id: randomBytes(9).toString('base64url'), status: 'starting', qr: undefined, startedAt: now, updatedAt: now, result: undefined, done: false };
      await sessions.setLogin(state);
      void runLogin(state.id).catch(async (err) => {
        logger.warn('iLink login failed', { channel: deps.name, ...errorLogFields(err) });
        const cur = await sessions.login(clock.now()).catch(() => undefined);
        if (cur?.id === state.id) await sessions.setLogin({ ...cur, done: true, qr: undefined, status: 'failed', result: `failed: ${err instanceof Error ? err.message : String(err)}`, updatedAt: clock.now() }).catch(() => undefined);
      });
      return state;
    },
    async submitVerifyCode(code) {
      if (!/^\d{1,12}$/.test(code)) return false;
      const cur = await sessions.login(clock.now());
      if (!cur || cur.done) return false;
      await sessions.putVerifyCode(cur.id, code, clock.now());
      return true;
    },
  };

  async function health(): Promise<HealthItem[]> {
    const { session, login, poller } = await control.status();
    const now = clock.now();
    const c = session.credentials;
    const at = (t: number) => new Date(t + config.store.statsUtcOffsetMin * 60_000).toISOString().slice(0, 16).replace('T', ' ');
    const sessionItem: HealthItem = !c
      ? { name: `${deps.name} 会话`, ok: false, text: '未登录：运行 npm run ilink -- login，或在控制台的 iLink 页面扫码登录' }
      : session.expiredAt !== undefined
        ? { name: `${deps.name} 会话`, ok: false, text: `已失效（-14，${at(session.expiredAt)}）：请重新扫码登录；未送达的回答保留在用户的收件箱里，用户下次发消息时送达` }
        : { name: `${deps.name} 会话`, ok: true, text: `已登录 ${maskId(c.botId)}（${c.source === 'env' ? 'ILINK_BOT_TOKEN' : '扫码'}，${at(c.savedAt)}）` };
    const pollerItem: HealthItem = {
      name: `${deps.name} 轮询`,
      ok: !c || session.expiredAt !== undefined ? undefined : poller !== null && poller.until > now,
      text: !poller ? '还没有开始' : poller.until > now ? `进行中（${poller.hasCursor ? '游标已保存' : '从头开始'}）` : '无人持有（等待登录，或实例已停止）',
    };
    const items = [sessionItem, pollerItem];
    if (login && !login.done) items.push({ name: `${deps.name} 登录`, ok: undefined, text: `扫码登录进行中：${login.status}` });
    return items;
  }

  const channel: IlinkChannel = {
    kind: ILINK,
    instance,
    name: deps.name,
    answerer: deps.answerer,
    delivery: 'send',
    poller: {
      account: pollAccount,
      // The lease outlives the longest poll: the service's suggested hold, plus our margin.
      get holdMs() {
        return holdMs + 5000;
      },
      poll,
      handle: handleBatch,
    },
    // Plain text (WeChat shows no Markdown), with room for the "reply 1" line on the last allowed
    // message. Pictures that are parts follow as image messages, so the text names them (`[猫]`)
    // instead of showing their URLs; files stay as the answer wrote them.
    pages: (answer, parts) => {
      const pictures = parts.filter((p) => p.kind === 'image').map((p) => p.url);
      return splitMessages(markdownToText(pictures.length > 0 ? withoutImages(answer, pictures) : answer), TEXT_MAX - hintRoom);
    },
    async deliver(key) {
      const q = await store.message(key);
      if (!q || !settled(q)) return;
      await stopTyping(userIdOf(q.user), key);
      await deliverUser(q.user, false, key);
    },
    async more(m: Inbound): Promise<Decision> {
      const items = (await store.inbox(m.user)).filter((q) => q.channel === deps.name);
      if (items.some(deliverable)) {
        void deliverUser(m.user, true);
        return { success: true };
      }
      // Still being written: it comes by itself (the typing indicator shows it).
      if (items.some((q) => q.status === 'pending')) return { success: true };
      return { reply: texts.nothingPending };
    },
    async media(mediaId) {
      const ref = decodeMediaId(mediaId);
      if (!ref) throw new MediaError('bad_id', 'not an iLink media id');
      let bytes: Buffer;
      try {
        bytes = await api.download(downloadUrl(settings.cdnBase, ref), config.media.maxBytes + 16);
      } catch (err) {
        const large = err instanceof IlinkApiError && err.errmsg === 'ETOOLARGE';
        throw new MediaError(large ? 'too_large' : err instanceof IlinkApiError ? `cdn_${err.failure}` : 'failed', err instanceof Error ? err.message : String(err), { tooLarge: large, cause: err });
      }
      if (ref.keyHex) {
        try {
          bytes = decryptMedia(bytes, ref.keyHex);
        } catch (err) {
          throw new MediaError('decrypt', 'the picture could not be decrypted with its key', { cause: err });
        }
      }
      return { bytes, contentType: sniffImageType(bytes) };
    },
    carries: { images: true, files: false },
    help: texts.help,
    health,
    ilink: control,
    selfCheck: () => ilinkSelfCheck({ label: instance ? `iLink ${instance}` : 'iLink', sessions, provisioned: settings.provisioned, apiBase: settings.apiBase, now: clock.now() }),
    stop() {
      stopAllTyping();
      const creds = polling;
      if (creds && notified.has(creds.token)) void api.notify(sessionOf(creds), 'stop').catch(() => undefined);
    },
  };
  return channel;
}

export const ilink: ChannelKind<IlinkSettings> = {
  kind: ILINK,
  variables: ILINK_VARIABLES,
  checkReads: ilinkCheckReads,
  settings: (env, ctx) => ilinkSettings(env, ctx),
  secrets: (s) => [s.provisioned?.token],
  create: (s, deps) => createIlinkChannel(s, deps),
};

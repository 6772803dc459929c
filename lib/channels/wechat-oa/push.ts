/**
 * Push mode (verified service accounts, test accounts): an answer that missed the passive reply
 * window is sent with the customer-service API as soon as it is ready, page by page, instead of
 * waiting for `1` (docs/wechat.md). Where WeChat refuses (45015 outside the 48-hour window,
 * 45047 over quota, 48001 not allowed), the bot falls back to `1` and remembers it for a while.
 */
import type { Texts } from '../../core/texts';
import { WechatApiError, errorLogFields } from '../../errors';
import type { Logger } from '../../util/log';
import type { MessageRecord, Store, UserRecord } from '../../store';
import { isTestUser, pageCount, statKey } from '../../store';
import type { WechatApi } from './api';
import { ACCOUNT_PUSH_UNAVAILABLE, TOKEN_INVALID, USER_PUSH_CLOSED } from './api';
import type { TokenCache } from './token';
import type { Clock } from '../../util/clock';
import { failedAnswerText } from '../../core/replies';

/** How long the account stays on `1` after WeChat said it may not push (48001). */
const ACCOUNT_BLOCK_MS = 3_600_000;

/** WeChat keeps a temporary picture this long; a copy is reused for a little less. */
const TEMP_MEDIA_MS = 3 * 86_400_000 - 3_600_000;
/** How long an answer's pictures wait for its text to reach the user first. */
const PARTS_WAIT_MS = 60_000;

export interface PusherDeps {
  texts: Texts;
  /** The account (its AppID): WeChat's refusal (48001) holds for it alone. */
  appId: string;
  /** The OpenID a conversation key stands for on this account. */
  openidOf(user: string): string;
  store: Store;
  clock: Clock;
  logger: Logger;
  api: WechatApi;
  tokens: TokenCache;
  /** Re-send the typing indicator this often while the answer is generated (it lasts about 15 s). */
  typingEveryMs?: number;
  /** This channel's name (where it notes what it did with an answer's files). */
  channel: string;
  /** Fetch one of an answer's files safely (lib/util/media.ts). */
  fetchPart?: ((userKey: string, url: string) => Promise<{ bytes: Buffer; contentType: string; kind: 'image' | 'file'; name: string }>) | undefined;
}

export class Pusher {
  private stopped = false;

  private readonly blockKey: string;

  constructor(private readonly d: PusherDeps) {
    this.blockKey = `push:account-unavailable:${d.appId}`;
  }

  stop(): void {
    this.stopped = true;
  }

  /** Can an answer to a question asked at `askedAt` be pushed to `user`? */
  async available(user: string, askedAt: number): Promise<boolean> {
    // The console's test user has no OpenID to push to.
    return !isTestUser(user) && this.allows(await this.d.store.user(user), askedAt);
  }

  /** The account's push state, for the console: suspended after WeChat refused it (48001), until when. */
  async status(): Promise<{ state: 'on' } | { state: 'suspended'; errcode: number; until: number }> {
    const block = await this.d.store.kvEntry(this.blockKey, this.d.clock.now());
    return block ? { state: 'suspended', errcode: Number(block.value), until: block.expiresAt } : { state: 'on' };
  }

  private async allows(u: UserRecord | null, askedAt: number): Promise<boolean> {
    if ((await this.d.store.kvGet(this.blockKey, this.d.clock.now())) !== undefined) return false;
    // A new message from the user opens a new window (5 messages / 48 h), so a block only holds
    // for questions asked before it.
    return !(u?.pushBlockedUntil !== undefined && u.pushBlockedUntil >= askedAt);
  }

  /** The placeholder went out: show "typing" while generating, and push if it is already done. */
  async afterPlaceholder(key: string): Promise<void> {
    const every = this.d.typingEveryMs ?? 10_000;
    const started = this.d.clock.now();
    for (;;) {
      const q = await this.d.store.message(key);
      if (!q || q.status !== 'pending') return this.deliver(key);
      if (this.stopped || this.d.clock.now() - started > 10 * 60_000) return;
      await this.withToken((t) => this.d.api.typing(t, this.d.openidOf(q.user))).catch(() => undefined); // cosmetic
      await this.d.clock.sleep(every);
    }
  }

  /** Push what the user has not received of a settled question whose placeholder went out. */
  async deliver(key: string): Promise<void> {
    const { store, logger } = this.d;
    let q = await store.message(key);
    // Not in the inbox: fully delivered already, or cancelled by `/clear`.
    if (!q || !q.placeholderSent || q.inbox === undefined || (q.status !== 'answered' && q.status !== 'failed')) return;
    // The user is watching the answer page: it may well be read there. Look again once the page
    // has been quiet (it renews this while open); an answer read to its end has left the inbox.
    const watched = (q.pageViewUntil ?? 0) - this.d.clock.now();
    if (watched > 0 && !this.stopped) {
      void this.d.clock
        .sleep(watched + 500)
        .then(() => this.deliver(key))
        .catch((err) => logger.warn('push failed', { key, ...errorLogFields(err) }));
      return;
    }
    if (isTestUser(q.user) || !(await this.allows(await store.user(q.user), q.createdAt))) return;
    try {
      for (let k = q.pagesDelivered ?? 0; k < pageCount(q) && !this.stopped; k++) {
        // Take the page first, so a concurrent `1` or another instance never sends it too.
        const took: MessageRecord | null = await store.takePage(q, k, 'push', 'push', this.d.clock.now());
        if (!took) return;
        q = took;
        // The failure notice is one message, counted as the one page.
        await this.send(q, q.status === 'failed' ? failedAnswerText(q, this.d.texts) : (q.pages?.[k] as string), k);
      }
    } catch (err) {
      logger.warn('push stopped; the user can fetch the rest with 1', { key, ...errorLogFields(err) });
    }
  }

  /**
   * An answer's pictures (docs/rich-answers.md) as image messages, once its text reached the user (so
   * they come after it): each uploaded as temporary material (reused for its 3 days) and sent with
   * the customer-service API, once across instances (Store.claimPart). Files and pictures that cannot
   * go this way stay on the answer's page, which the reply links to.
   */
  async deliverParts(key: string): Promise<void> {
    const { store, clock, logger, channel } = this.d;
    const started = clock.now();
    let q = await store.message(key);
    while (q && q.status === 'answered' && (q.parts?.length ?? 0) > 0 && q.deliveredAt === undefined && q.inbox !== undefined) {
      if (this.stopped || clock.now() - started > PARTS_WAIT_MS) return;
      await clock.sleep(500);
      q = await store.message(key);
    }
    if (!q || q.status !== 'answered' || !q.parts?.length || isTestUser(q.user) || q.deliveredAt === undefined) return;
    if (!(await this.allows(await store.user(q.user), q.createdAt))) return;
    for (const [i, part] of q.parts.entries()) {
      if (this.stopped) return;
      if (part.kind !== 'image' || !this.d.fetchPart || !(await store.claimPart(key, i, channel))) continue;
      try {
        let mediaId = part.cached?.[statKey(channel)];
        if (!mediaId || mediaId.until <= clock.now()) {
          const f = await this.d.fetchPart(q.user, part.url);
          if (f.kind !== 'image') {
            await store.notePart(key, i, channel, 'page link (not a picture)');
            continue;
          }
          const ext = f.contentType.split('/')[1] ?? 'png';
          const id = await this.withToken((t) => this.d.api.uploadImage(t, { bytes: f.bytes, contentType: f.contentType, filename: `answer.${ext}` }));
          mediaId = { id, until: clock.now() + TEMP_MEDIA_MS };
          await store.cachePart(key, i, channel, id, mediaId.until);
        }
        const media = mediaId.id;
        await this.withToken((t) => this.d.api.sendImage(t, this.d.openidOf(q.user), media));
        await store.notePart(key, i, channel, 'image message');
        logger.info('answer picture pushed', { key, part: i });
      } catch (err) {
        await store.notePart(key, i, channel, `page link (${err instanceof WechatApiError ? `WeChat ${err.errcode}` : errorLogFields(err)['code'] ?? 'failed'})`);
        logger.warn('answer picture not pushed; it stays on the answer page', { key, part: i, ...errorLogFields(err) });
      }
    }
  }

  /** Send one page; on refusal give the page back and remember why. */
  private async send(q: MessageRecord, text: string, page: number): Promise<void> {
    const { store, clock, logger } = this.d;
    const note = (errcode: number) => store.notePush(q._id, { page: page + 1, at: clock.now(), errcode }).catch(() => undefined);
    try {
      await this.withToken((t) => this.d.api.sendText(t, this.d.openidOf(q.user), text));
      logger.info('answer pushed', { key: q._id, page: page + 1 });
      await note(0);
    } catch (err) {
      // Not sent: the page goes back to the inbox for `1`.
      await note(err instanceof WechatApiError ? err.errcode : -1);
      await store.returnPage(q, page, 'push');
      if (err instanceof WechatApiError && USER_PUSH_CLOSED.has(err.errcode)) {
        await store.blockUserPush(q.user, clock.now());
      } else if (err instanceof WechatApiError && ACCOUNT_PUSH_UNAVAILABLE.has(err.errcode)) {
        await store.kvPut(this.blockKey, String(err.errcode), clock.now() + ACCOUNT_BLOCK_MS);
      }
      throw err;
    }
  }

  private async withToken<T>(call: (token: string) => Promise<T>): Promise<T> {
    const token = await this.d.tokens.get();
    try {
      return await call(token);
    } catch (err) {
      if (!(err instanceof WechatApiError && TOKEN_INVALID.has(err.errcode))) throw err;
      await this.d.tokens.invalidate(token);
      return call(await this.d.tokens.get());
    }
  }
}

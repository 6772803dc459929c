/**
 * Pulling customer-service messages (docs/wecom.md "WeChat customer service"): a callback carries no
 * message, only "something happened on this account" and a sync token; the messages are read with
 * `kf/sync_msg` from a cursor, page after page while `has_more`. Bridges that keep no cursor and read
 * only the newest message lose every message of a burst but one; here the cursor lives in the store
 * per account (open_kfid) and every message of every page is handed over, in order.
 *
 * Callbacks of one account can arrive at once on several instances. One sync runs at a time per
 * account: it holds the account's poller lease (Store.claimPoller) for the length of one pull, moves
 * the cursor only while it holds it (Store.savePollCursor), and releases it at the end. A callback
 * that finds the lease held leaves a note ("look again") and tries once more; the holder, after
 * releasing, reads the note and pulls again, so a message that landed just after the holder's last
 * page is never left waiting for the next callback. A crash between handing messages over and
 * saving the cursor means the page is read again; the core's claim answers each message once.
 */
import { randomBytes } from 'crypto';
import { WechatApiError } from '../../errors';
import type { Store } from '../../store';
import type { Clock } from '../../util/clock';
import type { Logger } from '../../util/log';

/** One message or event as sync_msg lists it. */
export interface KfItem {
  msgid: string;
  open_kfid?: string;
  external_userid?: string;
  send_time?: number;
  /** 3 the customer, 4 a system event, 5 a human servicer in WeCom. */
  origin?: number;
  msgtype?: string;
  [field: string]: unknown;
}

export interface SyncDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  corpId: string;
  /** kf/sync_msg. */
  call(body: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Hand one item to the core, in order (it claims messages: one answer each, however often seen). */
  handle(item: KfItem): Promise<void>;
  /** A pull of an account starts (per-pull caches, such as session states, start empty). */
  starting?(openKfid: string): void;
}

/** A pull holds the account this long at most without renewing (a dead holder is taken over after it). */
const LEASE_MS = 60_000;
/** Pages of one pull at most (1,000 messages each); the next callback goes on from the cursor. */
const MAX_PAGES = 50;
/** How many times a holder pulls again for notes left while it held the account. */
const MAX_ROUNDS = 5;
/** The errcode of a sync token WeCom no longer accepts (docs/wecom.md: 10 minutes; the code is assumed). */
const BAD_SYNC_TOKEN = new Set([95007]);

let counter = 0;
const me = randomBytes(6).toString('hex');

export class KfSync {
  constructor(private readonly d: SyncDeps) {}

  private account(openKfid: string): string {
    return `wecom-kf:${this.d.corpId}:${openKfid}`;
  }

  /** Pull everything new on `openKfid` (with the callback's `token`). Rejects when the store or WeCom fails. */
  async run(openKfid: string, token: string | undefined): Promise<void> {
    const { store, clock } = this.d;
    const account = this.account(openKfid);
    const again = `${account}:again`;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      // One owner per pull, not per process: two callbacks in one process must not both hold it.
      const owner = `${me}:${++counter}`;
      let lease = await store.claimPoller(account, owner, clock.now() + LEASE_MS, clock.now());
      if (!lease) {
        // Another pull holds the account: note that there is news, then try once more (see above).
        await store.kvPut(again, owner, clock.now() + LEASE_MS);
        lease = await store.claimPoller(account, owner, clock.now() + LEASE_MS, clock.now());
        if (!lease) return;
      }
      try {
        await this.pull(openKfid, token, owner, lease.cursor);
      } finally {
        await store.releasePoller(account, owner).catch(() => undefined);
      }
      const note = await store.kvGet(again, clock.now());
      if (note === undefined) return;
      await store.kvExpire(again, note);
    }
  }

  private async pull(openKfid: string, token: string | undefined, owner: string, from: string | undefined): Promise<void> {
    const { store, clock, logger } = this.d;
    const account = this.account(openKfid);
    this.d.starting?.(openKfid);
    let cursor = from;
    let useToken = token;
    for (let page = 0; page < MAX_PAGES; page++) {
      let r: Record<string, unknown>;
      try {
        r = await this.d.call({ ...(cursor ? { cursor } : {}), ...(useToken ? { token: useToken } : {}), limit: 1000, open_kfid: openKfid });
      } catch (err) {
        // An expired sync token (a late or re-delivered callback): pull without one, which WeCom allows, rate-limited.
        if (!(useToken && err instanceof WechatApiError && BAD_SYNC_TOKEN.has(err.errcode))) throw err;
        logger.info('WeCom customer service: the sync token was refused; pulling without it', { openKfid });
        useToken = undefined;
        page--;
        continue;
      }
      const list = Array.isArray(r['msg_list']) ? (r['msg_list'] as KfItem[]) : [];
      for (const item of list) if (item && typeof item.msgid === 'string') await this.d.handle(item);
      const next = typeof r['next_cursor'] === 'string' ? r['next_cursor'] : cursor;
      if (next !== undefined && next !== cursor) {
        if (!(await store.savePollCursor(account, owner, next))) throw new Error('lost the customer-service lease before saving the cursor; the page will be read again');
        cursor = next;
      }
      if (r['has_more'] !== 1 && r['has_more'] !== true) return;
      // Renew the lease for the next page (a long burst).
      await store.claimPoller(account, owner, clock.now() + LEASE_MS, clock.now());
    }
    logger.warn('WeCom customer service: stopped after many pages; the next callback goes on', { openKfid, pages: MAX_PAGES });
  }
}

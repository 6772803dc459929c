/**
 * An access token shared through the store by every instance (docs/wechat.md, docs/wecom.md): one
 * refresher at a time (a lease), refreshed before it expires and when an API call says it is
 * invalid. Both platforms hand out the same token while it is valid (the Official Account's
 * stable_token, WeCom's gettoken), so an instance that loses the lease race loses nothing. The
 * token is registered with the logger's redaction as soon as it is seen.
 */
import { randomBytes } from 'crypto';
import type { Clock } from '../../util/clock';
import { WechatApiError } from '../../errors';
import type { Logger } from '../../util/log';
import type { Store } from '../../store';

export interface SharedTokenOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** Which token: the store keeps it as `access_token:<id>` (the AppID; WeCom's corp and secret). */
  id: string;
  /** Ask the platform for a token. */
  fetch(): Promise<{ token: string; expiresInS: number }>;
  /** How long a refresher may hold the lease. */
  lockMs?: number;
  /** How long a caller waits for another instance's refresh; longer than the lease, so a dead
   * refresher's lease is taken over within one call. */
  waitMs?: number;
}

export class SharedToken {
  private readonly key: string;
  private readonly lockKey: string;
  private readonly me = randomBytes(8).toString('hex');

  constructor(private readonly o: SharedTokenOptions) {
    this.key = `access_token:${o.id}`;
    this.lockKey = `lock:access_token:${o.id}`;
  }

  /** A token that is valid now. Throws `WechatApiError` when none can be had. */
  async get(): Promise<string> {
    const { store, clock, logger } = this.o;
    const until = clock.now() + (this.o.waitMs ?? (this.o.lockMs ?? 10_000) + 2000);
    for (;;) {
      const cached = await store.kvGet(this.key, clock.now());
      if (cached !== undefined) {
        logger.addSecret(cached);
        return cached;
      }
      // One refresher at a time; a lease left by a refresher that died is taken over once it expires.
      if (await store.acquireLease(this.lockKey, this.me, clock.now() + (this.o.lockMs ?? 10_000), clock.now())) {
        try {
          return await this.refresh();
        } finally {
          await store.releaseLease(this.lockKey, this.me);
        }
      }
      if (clock.now() >= until) throw new WechatApiError(-1, 'timed out waiting for another instance to refresh the access token');
      await clock.sleep(100);
    }
  }

  /** Until when the shared token is valid, if one is held (the console's health view; never the token). */
  async validUntil(): Promise<number | undefined> {
    return (await this.o.store.kvEntry(this.key, this.o.clock.now()))?.expiresAt;
  }

  /** An API call said `token` is invalid or expired: don't hand it out again. */
  async invalidate(token: string): Promise<void> {
    await this.o.store.kvExpire(this.key, token);
  }

  private async refresh(): Promise<string> {
    const { store, clock, logger } = this.o;
    const { token, expiresInS } = await this.o.fetch();
    logger.addSecret(token);
    const now = clock.now();
    // Refresh ahead of expiry: WeChat renews 5 min early and both tokens work meanwhile (§7.2).
    const marginMs = Math.min(300_000, (expiresInS * 1000) / 2);
    await store.kvPut(this.key, token, now + expiresInS * 1000 - marginMs, now + expiresInS * 1000);
    logger.info('access token refreshed', { expiresInS });
    return token;
  }
}

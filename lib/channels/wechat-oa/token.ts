/**
 * The Official Account's access token (docs/wechat.md): the shared token of lib/channels/wxbiz/token.ts,
 * fetched with stable_token, which returns the same token while it is valid.
 */
import type { Clock } from '../../util/clock';
import type { Logger } from '../../util/log';
import type { Store } from '../../store';
import { SharedToken } from '../wxbiz/token';
import type { WechatApi } from './api';

export interface TokenCacheOptions {
  store: Store;
  api: WechatApi;
  clock: Clock;
  logger: Logger;
  appId: string;
  /** How long a refresher may hold the lock. */
  lockMs?: number;
  /** How long a caller waits for another instance's refresh. */
  waitMs?: number;
}

export class TokenCache extends SharedToken {
  constructor(o: TokenCacheOptions) {
    const { api, appId, ...rest } = o;
    super({ ...rest, id: appId, fetch: () => api.stableToken() });
  }
}

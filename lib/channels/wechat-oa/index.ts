/**
 * The WeChat Official Account as a channel (docs/wechat.md, docs/channels.md): the webhook at
 * `/wechat` (signatures, safe mode, XML), answers in the reply window with `1` for the rest, the
 * answer page's links, and with the app's secret, push (the customer-service API), the menu and
 * media downloads, through an access token the instances share.
 */
import type { Channel, ChannelDeps, ChannelKind, HealthItem, MediaDownload } from '../../core/channel';
import { wechatSelfCheck } from './check';
import { conversationKey, parseKey } from '../../core/keys';
import { MediaError, WechatApiError } from '../../errors';
import type { Clock } from '../../util/clock';
import type { Logger } from '../../util/log';
import type { Store } from '../../store';
import type { WechatApi } from './api';
import { MEDIA_TOO_LARGE, TOKEN_INVALID, WECHAT_ERRORS, createWechatApi } from './api';
import { createWechatWebhook } from './handler';
import { onWechatMessage } from './inbound';
import { wechatPages } from './pages';
import { Pusher } from './push';
import type { WechatOaSettings } from './settings';
import { WECHAT_OA_VARIABLES, wechatOaSettings } from './settings';
import { TokenCache } from './token';

export const WECHAT_OA = 'wechat-oa';

/** The account's server API, when its AppID and secret are set: the menu, push, media. */
export interface WechatAccount {
  api: WechatApi;
  tokens: TokenCache;
}

/** The Official Account's channel, with what the console's menu page needs. */
export interface WechatOaChannel extends Channel {
  readonly settings: WechatOaSettings;
  readonly account: WechatAccount | undefined;
  readonly pusher: Pusher | undefined;
}

export function isWechatOa(c: Channel): c is WechatOaChannel {
  return c.kind === WECHAT_OA;
}

/** Tests and tools may put their own API client in (a simulator needs none: WECHAT_API_BASE points at it). */
export function wechatAccount(settings: WechatOaSettings, store: Store, clock: Clock, logger: Logger, api?: WechatApi): WechatAccount | undefined {
  const { appId, appSecret } = settings;
  if (!appId || !appSecret) return undefined;
  const client = api ?? createWechatApi({ baseUrl: settings.apiBase, appId, appSecret });
  return { api: client, tokens: new TokenCache({ store, api: client, clock, logger, appId }) };
}

/** Download a user's media by MediaId with the shared access token (fetched again once when WeChat says it expired). */
function mediaDownloader(account: WechatAccount, maxBytes: number): MediaDownload {
  const get = (token: string, id: string) => account.api.media(token, id, maxBytes);
  return async (mediaId) => {
    try {
      const token = await account.tokens.get();
      try {
        return await get(token, mediaId);
      } catch (err) {
        if (!(err instanceof WechatApiError && TOKEN_INVALID.has(err.errcode))) throw err;
        await account.tokens.invalidate(token);
        return await get(await account.tokens.get(), mediaId);
      }
    } catch (err) {
      if (err instanceof WechatApiError) throw new MediaError(String(err.errcode), err.message, { tooLarge: err.errcode === MEDIA_TOO_LARGE, cause: err });
      throw new MediaError('failed', err instanceof Error ? err.message : String(err), { cause: err });
    }
  };
}

function createWechatOa(settings: WechatOaSettings, deps: ChannelDeps): WechatOaChannel {
  const { config, store, clock, logger, instance } = deps;
  // Keys of the default account are bare OpenIDs (as stored before channels had tags).
  const keyOf = (openid: string) => (instance ? conversationKey(WECHAT_OA, instance, [openid]) : openid);
  const openidOf = (user: string) => parseKey(user).parts[0] ?? user;
  const account = wechatAccount(settings, store, clock, logger);
  const pusher =
    settings.push && account && settings.appId
      ? new Pusher({ texts: config.texts, appId: settings.appId, openidOf, store, clock, logger, channel: deps.name, fetchPart: deps.fetchPart, ...account })
      : undefined;
  const at = (ms: number) => new Date(ms + config.store.statsUtcOffsetMin * 60_000).toISOString().slice(0, 16).replace('T', ' ');
  const label = instance ? `微信公众号 ${instance}` : '微信公众号';
  const channel: WechatOaChannel = {
    kind: WECHAT_OA,
    instance,
    name: deps.name,
    answerer: deps.answerer,
    settings,
    account,
    pusher,
    delivery: 'reply',
    window: { deliveries: settings.deliveries, timeoutMs: settings.timeoutMs },
    pages: (answer, parts) => wechatPages(answer, settings.pageBytes, config.texts, config.page, parts),
    // Settled: late pages are pushed (after a placeholder), pictures after the text (docs/rich-answers.md).
    ...(pusher ? { deliver: async (key: string) => void (await Promise.all([pusher.deliver(key), pusher.deliverParts(key)])), push: pusher } : {}),
    ...(account ? { media: mediaDownloader(account, config.media.maxBytes) } : {}),
    carries: { images: false, files: false },
    help: config.texts.help,
    async health(): Promise<HealthItem[]> {
      const push: HealthItem = { name: `${label}：推送`, ok: undefined, text: '关闭（WECHAT_PUSH 未开启：晚到的回答由用户回复 1 取回）' };
      if (pusher) {
        const st = await pusher.status();
        Object.assign(
          push,
          st.state === 'suspended'
            ? { ok: false, text: `暂停到 ${at(st.until)}：微信拒绝推送（${st.errcode}${WECHAT_ERRORS[st.errcode] ? `，${WECHAT_ERRORS[st.errcode]}` : ''}），期间用回复 1` }
            : { ok: true, text: '开启' },
        );
      }
      const token: HealthItem = { name: `${label}：access token`, ok: undefined, text: '未配置 WECHAT_APPID / WECHAT_APPSECRET（推送和菜单需要）' };
      if (account) {
        const until = await account.tokens.validUntil();
        Object.assign(
          token,
          until === undefined ? { text: '还没有取过（第一次推送或读取菜单时获取）' } : { ok: true, text: `有效，还有 ${Math.round((until - clock.now()) / 60_000)} 分钟（到 ${at(until)}）` },
        );
      }
      return [push, token];
    },
    selfCheck: () => wechatSelfCheck(settings, account, config, instance, label),
    stop: () => pusher?.stop(),
  };
  return Object.assign(channel, {
    webhook: createWechatWebhook({
      settings,
      maxBodyBytes: config.server.maxBodyBytes,
      clock,
      logger,
      onMessage: (msg, arrival) => onWechatMessage({ bot: deps.bot, channel, store, clock, texts: config.texts, settings, keyOf }, msg, arrival),
    }),
  });
}

export const wechatOa: ChannelKind<WechatOaSettings> = {
  kind: WECHAT_OA,
  path: '/wechat',
  variables: WECHAT_OA_VARIABLES,
  bareKeys: true,
  // Placeholders and long answers link to the answer page.
  usesPage: true,
  settings: wechatOaSettings,
  secrets: (s) => [s.token, s.aesKey, s.appSecret],
  create: createWechatOa,
};

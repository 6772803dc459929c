/**
 * The WeChat Official Account as a channel (docs/wechat.md, docs/channels.md): the webhook at
 * `/wechat` (signatures, safe mode, XML), answers in the reply window with `1` for the rest, the
 * answer page's links, and with the app's secret, push (the customer-service API), the menu and
 * media downloads, through an access token the instances share.
 */
import { randomBytes } from 'crypto';
import type { Channel, ChannelDeps, ChannelKind, HealthItem, MediaDownload } from '../../core/channel';
import type { CoreConfig } from '../../core/settings';
import type { Check } from '../../util/checks';
import { call } from '../../util/http';
import { sha1Signature } from '../wxbiz/signature';
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

/** What to do about a refused token fetch, by WeChat's errcode (docs/wechat.md). */
function tokenFix(errcode: number): string {
  if (errcode === 40164 || errcode === 61004) return 'add this server’s public IP to the IP whitelist (微信开发者平台 → 我的业务 → 公众号 → 基础信息 → 开发密钥 → IP白名单), or route the calls through a whitelisted proxy with WECHAT_API_BASE';
  if (errcode === 40001 || errcode === 40125) return 'WECHAT_APPSECRET is not the account’s AppSecret: copy or reset it under 基础信息 → 开发密钥';
  if (errcode === 40013) return 'WECHAT_APPID is not the account’s AppID (基础信息)';
  if (errcode === -1) return 'WeChat’s API could not be reached from here (WECHAT_API_BASE, the network, an outbound proxy)';
  return 'see WeChat’s error code in the detail';
}

/**
 * The URL WeChat is given and checks: PUBLIC_URL with the webhook's path, where one host serves both
 * (`/wechat`, another account `/wechat/<id>`; laf `/wechat?bot=<id>`).
 */
export function wechatUrl(page: CoreConfig['page'], instance: string): string | undefined {
  if (!page.publicUrl) return undefined;
  if (!instance) return `${page.publicUrl}/wechat`;
  return page.routes === 'laf' ? `${page.publicUrl}/wechat?bot=${instance}` : `${page.publicUrl}/wechat/${instance}`;
}

/**
 * The URL check WeChat makes when the server URL is saved, made from here: a signed GET with an
 * echostr, as an HTTP client calling itself Mozilla/4.0; it passes when the answer is 200,
 * `text/plain` and exactly the echostr. Ports other than 80/443 fail first: WeChat calls no other.
 */
export async function wechatUrlCheck(url: string, token: string, label: string, opts: { anyPort?: boolean } = {}): Promise<Check[]> {
  const out: Check[] = [];
  const parsed = new URL(url);
  if (!opts.anyPort && parsed.port && parsed.port !== '80' && parsed.port !== '443') {
    out.push({ name: `${label}: server URL`, ok: false, detail: `${url} uses port ${parsed.port}`, fix: 'WeChat calls only ports 80 (http) and 443 (https): put a reverse proxy there (compose.yaml’s Caddy)' });
    return out;
  }
  if (/^\d+\.\d+\.\d+\.\d+$|^\[/.test(parsed.hostname)) {
    out.push({ name: `${label}: server URL host`, ok: undefined, detail: `${parsed.hostname} is a bare IP address`, fix: 'WeChat is reported to refuse bare IP addresses in practice: use a domain name' });
  }
  // What WeChat's check sends: a signed GET with an echostr, from an HTTP/1.0 client calling itself Mozilla/4.0.
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(randomBytes(4).readUInt32BE(0));
  const echostr = String(randomBytes(8).readBigUInt64BE(0));
  const query = `signature=${sha1Signature([token, timestamp, nonce])}&timestamp=${timestamp}&nonce=${nonce}&echostr=${echostr}`;
  try {
    const res = await call({ method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}${query}`, headers: { 'User-Agent': 'Mozilla/4.0', Accept: '*/*' }, timeoutMs: 10_000 }, 64 * 1024);
    const body = res.body.toString('utf8');
    const type = String(res.headers['content-type'] ?? '');
    if (res.status === 200 && body === echostr && type.startsWith('text/plain')) {
      out.push({ name: `${label}: server URL`, ok: true, detail: `${url} answers WeChat’s check (200, text/plain, exactly the echostr)` });
    } else {
      const fix =
        res.status === 401
          ? 'the server there has another WECHAT_TOKEN, or its clock is off'
          : res.status === 404
            ? 'nothing serves the webhook at this path there: is PUBLIC_URL this deployment’s address?'
            : res.status === 200
              ? 'the answer is not exactly the echostr as text/plain: something in between (a proxy, a WAF, a CDN page) changes it; WeChat says “200302 verify token fail”'
              : 'a proxy or WAF in front answers instead of the bot (README “Troubleshooting”: 200302)';
      out.push({ name: `${label}: server URL`, ok: false, detail: `${url}: HTTP ${res.status}, ${type || 'no type'}, ${JSON.stringify(body.slice(0, 60))}`, fix });
    }
  } catch (err) {
    out.push({ name: `${label}: server URL`, ok: false, detail: `${url}: ${err instanceof Error ? err.message : String(err)}`, fix: 'PUBLIC_URL must be reachable (DNS, firewall, HTTPS certificate); WeChat calls it from the internet' });
  }
  return out;
}

/** The checks of `npm run doctor` for one account: its credentials, and its URL answered as WeChat's check wants. */
async function wechatSelfCheck(settings: WechatOaSettings, account: WechatAccount | undefined, config: CoreConfig, instance: string, label: string): Promise<Check[]> {
  const out: Check[] = [];
  if (!account) out.push({ name: `${label}: AppID/AppSecret`, ok: undefined, detail: 'not set (WECHAT_APPID, WECHAT_APPSECRET: push, the menu and media downloads need them)' });
  else {
    try {
      const { expiresInS } = await account.api.stableToken();
      out.push({ name: `${label}: AppID/AppSecret`, ok: true, detail: `accepted: an access token was issued (valid ${Math.round(expiresInS / 60)} min)` });
    } catch (err) {
      const errcode = err instanceof WechatApiError ? err.errcode : -1;
      out.push({ name: `${label}: AppID/AppSecret`, ok: false, detail: `token fetch refused: ${errcode} ${err instanceof Error ? err.message : ''}`.trim(), fix: tokenFix(errcode) });
    }
  }
  const url = wechatUrl(config.page, instance);
  if (!url) {
    out.push({ name: `${label}: server URL`, ok: undefined, detail: 'not checked: set PUBLIC_URL to check the URL WeChat will call' });
    return out;
  }
  out.push(...(await wechatUrlCheck(url, settings.token, label)));
  return out;
}

function createWechatOa(settings: WechatOaSettings, deps: ChannelDeps): WechatOaChannel {
  const { config, store, clock, logger, instance } = deps;
  // Keys of the default account are bare OpenIDs (as stored before channels had tags).
  const keyOf = (openid: string) => (instance ? conversationKey(WECHAT_OA, instance, [openid]) : openid);
  const openidOf = (user: string) => parseKey(user).parts[0] ?? user;
  const account = wechatAccount(settings, store, clock, logger);
  const pusher =
    settings.push && account && settings.appId
      ? new Pusher({ texts: config.texts, appId: settings.appId, openidOf, store, clock, logger, ...account })
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
    pages: (answer) => wechatPages(answer, settings.pageBytes, config.texts, config.page),
    ...(pusher ? { deliver: (key: string) => pusher.deliver(key), push: pusher } : {}),
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
  settings: wechatOaSettings,
  secrets: (s) => [s.token, s.aesKey, s.appSecret],
  create: createWechatOa,
};

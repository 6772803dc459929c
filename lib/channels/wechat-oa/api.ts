/**
 * The WeChat server API calls the bot makes (docs/wechat.md): the stable access token,
 * customer-service text messages and the typing indicator (push mode), and the custom menu. The base URL is configurable (owners
 * behind an IP whitelist route through a proxy). No access token or secret ever reaches an error.
 */
import { NetworkError, call as send } from '../../util/http';
import { WechatApiError } from '../../errors';
import { wecomCall } from '../wxbiz/wecom';
import { multipart } from '../../util/multipart';
import type { Menu } from './menu';

export interface WechatApi {
  /** getStableAccessToken (§7.2): the same token while valid; `expires_in` seconds. */
  stableToken(): Promise<{ token: string; expiresInS: number }>;
  /** message/custom/send with a text message (§6.1). */
  sendText(accessToken: string, openId: string, content: string): Promise<void>;
  /** media/upload (type image): a temporary picture, kept 3 days; its media_id. */
  uploadImage(accessToken: string, file: { bytes: Buffer; contentType: string; filename: string }): Promise<string>;
  /** message/custom/send with an image message (a media_id from `uploadImage`). */
  sendImage(accessToken: string, openId: string, mediaId: string): Promise<void>;
  /** message/custom/typing: "Typing" shows the indicator for about 15 s. */
  typing(accessToken: string, openId: string): Promise<void>;
  /** menu/create: replace the account's custom menu. */
  createMenu(accessToken: string, menu: Menu): Promise<void>;
  /** get_current_selfmenu_info: the menu users see (made here or in the console), and whether it is on. */
  currentMenu(accessToken: string): Promise<{ open: boolean; menu: Menu | undefined }>;
  /** menu/delete: remove the custom menu. */
  deleteMenu(accessToken: string): Promise<void>;
  /**
   * media/get: a temporary media file a user sent (a picture's or voice's MediaId, kept 3 days),
   * at most `maxBytes`. Errors: WeChat's errcode (40007 invalid media_id), -2 over `maxBytes`, -3 empty.
   */
  media(accessToken: string, mediaId: string, maxBytes: number): Promise<{ bytes: Buffer; contentType: string }>;
}

export interface WechatApiOptions {
  baseUrl: string;
  appId: string;
  appSecret: string;
  timeoutMs?: number;
}

// WeChat answers errors as HTTP 200 with `errcode`; network failures get errcode -1 ("system busy"):
// the same contract as WeCom's API, so one call serves both (lib/channels/wxbiz/wecom.ts).
const call = wecomCall;

export function createWechatApi(opts: WechatApiOptions): WechatApi {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const base = opts.baseUrl;
  return {
    async stableToken() {
      const d = await call(`${base}/cgi-bin/stable_token`, { grant_type: 'client_credential', appid: opts.appId, secret: opts.appSecret, force_refresh: false }, timeoutMs);
      const token = d['access_token'];
      const expires = d['expires_in'];
      if (typeof token !== 'string' || !token || typeof expires !== 'number') throw new WechatApiError(-1, 'stable_token answer has no access_token');
      return { token, expiresInS: expires };
    },
    async sendText(accessToken, openId, content) {
      await call(`${base}/cgi-bin/message/custom/send?access_token=${encodeURIComponent(accessToken)}`, { touser: openId, msgtype: 'text', text: { content } }, timeoutMs);
    },
    async uploadImage(accessToken, file) {
      const { body, contentType } = multipart({}, { name: 'media', filename: file.filename, contentType: file.contentType, bytes: file.bytes });
      const d = await call(`${base}/cgi-bin/media/upload?access_token=${encodeURIComponent(accessToken)}&type=image`, body, timeoutMs, { 'Content-Type': contentType });
      if (typeof d['media_id'] !== 'string' || !d['media_id']) throw new WechatApiError(-1, 'media/upload answered no media_id');
      return d['media_id'];
    },
    async sendImage(accessToken, openId, mediaId) {
      await call(`${base}/cgi-bin/message/custom/send?access_token=${encodeURIComponent(accessToken)}`, { touser: openId, msgtype: 'image', image: { media_id: mediaId } }, timeoutMs);
    },
    async typing(accessToken, openId) {
      await call(`${base}/cgi-bin/message/custom/typing?access_token=${encodeURIComponent(accessToken)}`, { touser: openId, command: 'Typing' }, timeoutMs);
    },
    async createMenu(accessToken, menu) {
      await call(`${base}/cgi-bin/menu/create?access_token=${encodeURIComponent(accessToken)}`, menu, timeoutMs);
    },
    async currentMenu(accessToken) {
      const d = await call(`${base}/cgi-bin/get_current_selfmenu_info?access_token=${encodeURIComponent(accessToken)}`, undefined, timeoutMs);
      const info = d['selfmenu_info'] as { button?: unknown } | undefined;
      return { open: d['is_menu_open'] === 1, menu: Array.isArray(info?.button) ? (info as Menu) : undefined };
    },
    async deleteMenu(accessToken) {
      await call(`${base}/cgi-bin/menu/delete?access_token=${encodeURIComponent(accessToken)}`, undefined, timeoutMs);
    },
    async media(accessToken, mediaId, maxBytes) {
      let res;
      try {
        res = await send({ url: `${base}/cgi-bin/media/get?access_token=${encodeURIComponent(accessToken)}&media_id=${encodeURIComponent(mediaId)}`, timeoutMs }, maxBytes);
      } catch (err) {
        if (err instanceof NetworkError && err.code === 'ETOOLARGE') throw new WechatApiError(MEDIA_TOO_LARGE, `over ${maxBytes} bytes`);
        throw new WechatApiError(-1, `network error ${(err as { code?: string }).code ?? ''}`.trim());
      }
      if (res.status !== 200) throw new WechatApiError(-1, `HTTP ${res.status}`);
      const bytes = res.body;
      const type = String(res.headers['content-type'] ?? 'application/octet-stream').split(';')[0]?.trim() ?? '';
      // Errors come as JSON (or text/plain holding JSON) instead of the file.
      if (type === 'application/json' || type === 'text/plain') {
        let d: { errcode?: unknown; errmsg?: unknown } = {};
        try {
          d = JSON.parse(bytes.toString('utf8')) as typeof d;
        } catch {
          throw new WechatApiError(-1, 'media/get answered text that is not JSON');
        }
        throw new WechatApiError(typeof d.errcode === 'number' ? d.errcode : -1, String(d.errmsg ?? ''));
      }
      if (bytes.length === 0) throw new WechatApiError(MEDIA_EMPTY, 'the file is empty');
      if (bytes.length > maxBytes) throw new WechatApiError(MEDIA_TOO_LARGE, `over ${maxBytes} bytes`);
      return { bytes, contentType: type };
    },
  };
}

/** Our own codes for a download WeChat answered but we cannot use (`media`). */
export const MEDIA_TOO_LARGE = -2;
export const MEDIA_EMPTY = -3;

/** Error codes that mean the access token must be fetched again (§7.3). */
export const TOKEN_INVALID = new Set([40001, 40014, 42001]);
/** The user is outside the 48-hour window or over the per-message quota (§6.3): use `1` instead. */
export const USER_PUSH_CLOSED = new Set([45015, 45047]);
/** The account may not use the customer-service API (§6.4). */
export const ACCOUNT_PUSH_UNAVAILABLE = new Set([48001]);

/** What WeChat's error codes mean for the menu and push calls, for people (the codes are kept beside). */
export const WECHAT_ERRORS: Readonly<Record<number, string>> = {
  40016: 'wrong number of buttons',
  40017: 'a button type is invalid',
  40018: 'a button name is too long',
  40019: 'a button key is too long',
  40054: 'a sub-button url is invalid',
  40055: 'a button url is invalid',
  40125: 'WECHAT_APPSECRET is wrong',
  40164: "this machine's IP is not on the account's IP whitelist (微信开发者平台 → 我的业务 → 公众号 → 基础信息 → 开发密钥 → IP白名单)",
  40003: 'not an OpenID of this account',
  40007: 'the media_id is invalid or expired (temporary media are kept 3 days)',
  45015: 'the user has not written to the account in the last 48 hours',
  45047: 'over the customer-service message quota for this user',
  46003: 'the account has no menu',
  48001: 'this account may not use this API (unverified subscription accounts cannot push or use the menu API; edit the menu in the WeChat console instead)',
};

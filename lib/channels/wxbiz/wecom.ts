/**
 * What WeCom's self-built app and customer service share (docs/wecom.md): the server API at
 * qyapi.weixin.qq.com (every answer is HTTP 200 with `errcode`; branch on the code, never the
 * wording), the access token per corp and secret (the same token while it is valid, shared by every
 * instance through the store, fetched again on 40014/42001), media downloads, and the errors that
 * mean the setup is wrong (60020 untrusted IP, 40001 wrong secret, 48002 no permission, …), which
 * are explained once on the console with their fix instead of once per message.
 */
import { createHash } from 'crypto';
import type { HealthItem } from '../../core/channel';
import type { Env } from '../../core/env';
import { ConfigError, MediaError, WechatApiError, errorLogFields } from '../../errors';
import type { Store } from '../../store';
import type { Clock } from '../../util/clock';
import { NetworkError, call as send, jsonOf } from '../../util/http';
import { multipart } from '../../util/multipart';
import type { Logger } from '../../util/log';
import { SharedToken } from './token';

export const WECOM_API_BASE = 'https://qyapi.weixin.qq.com';

/** Where each value is found in the WeCom admin console, for the error that asks for it. */
export const WECOM_WHERE = {
  WECOM_CORP_ID: '我的企业 → 企业信息 → 企业ID',
  WECOM_AGENT_ID: '应用管理 → the app → AgentId',
  WECOM_SECRET: '应用管理 → the app → Secret',
  WECOM_TOKEN: '应用管理 → the app → 接收消息 → 设置API接收 → Token',
  WECOM_AES_KEY: '应用管理 → the app → 接收消息 → 设置API接收 → EncodingAESKey',
} as const;

/** The corp's callback values, shared by the self-built app and customer service (checked the same way). */
export function corpCallback(env: Env<'WECOM_CORP_ID' | 'WECOM_TOKEN' | 'WECOM_AES_KEY'>, forWhat: string): { corpId: string; token: string; aesKey: string } {
  const corpId = env.required('WECOM_CORP_ID', `${forWhat} needs the CorpID: ${WECOM_WHERE.WECOM_CORP_ID}`);
  const token = env.required('WECOM_TOKEN', `${forWhat} needs the callback Token: ${WECOM_WHERE.WECOM_TOKEN}`);
  const aesKey = env.required('WECOM_AES_KEY', `${forWhat} needs the callback EncodingAESKey: ${WECOM_WHERE.WECOM_AES_KEY}`);
  if (!/^[A-Za-z0-9]{4,64}$/.test(corpId)) throw new ConfigError('WECOM_CORP_ID', `must be the CorpID (letters and digits, ww…): ${WECOM_WHERE.WECOM_CORP_ID}`);
  if (!/^[A-Za-z0-9]{1,32}$/.test(token)) throw new ConfigError('WECOM_TOKEN', 'must be at most 32 letters or digits, as WeCom requires');
  if (!/^[A-Za-z0-9]{43}$/.test(aesKey)) throw new ConfigError('WECOM_AES_KEY', 'must be the 43-character EncodingAESKey (letters and digits)');
  return { corpId, token, aesKey };
}

/** The access token is invalid (40014: revoked early) or expired (42001): fetch it again and retry once. */
export const WECOM_TOKEN_INVALID = new Set([40014, 42001]);

/** Our own codes for a download WeCom answered but we cannot use. */
export const MEDIA_TOO_LARGE = -2;
const MEDIA_EMPTY = -3;

/**
 * One call to WeCom's or WeChat's server API (the Official Account uses it too: errors as HTTP 200 with
 * `errcode`): GET without a body, POST JSON with one. Network failures and non-200s are errcode -1
 * ("system busy", retried later). The URL carries the access token, so no error ever repeats the request.
 */
export async function wecomCall(url: string, body: unknown, timeoutMs: number, headers?: Record<string, string>): Promise<Record<string, unknown>> {
  let data: unknown;
  try {
    const res = await send({ method: body === undefined ? 'GET' : 'POST', url, body, timeoutMs, ...(headers ? { headers } : {}) });
    if (res.status !== 200) throw new WechatApiError(-1, `HTTP ${res.status}`);
    data = jsonOf(res.body);
  } catch (err) {
    if (err instanceof WechatApiError) throw err;
    throw new WechatApiError(-1, `network error ${(err as { code?: string }).code ?? ''}`.trim());
  }
  if (!data || typeof data !== 'object') throw new WechatApiError(-1, 'answer is not JSON');
  const d = data as Record<string, unknown>;
  const errcode = typeof d['errcode'] === 'number' ? d['errcode'] : 0;
  if (errcode !== 0) throw new WechatApiError(errcode, String(d['errmsg'] ?? ''));
  return d;
}

export interface WecomAccount {
  apiBase: string;
  corpId: string;
  secret: string;
  /** The variable the secret comes from (WECOM_SECRET, WECOM_KF_SECRET), for the fix of a 40001. */
  secretVariable: string;
  timeoutMs?: number;
}

/** The API of one secret (an app's): calls with the shared access token, fetched again once when it died. */
export class WecomClient {
  readonly tokens: SharedToken;
  private readonly timeoutMs: number;

  constructor(
    readonly account: WecomAccount,
    deps: { store: Store; clock: Clock; logger: Logger },
  ) {
    this.timeoutMs = account.timeoutMs ?? 10_000;
    // Keyed by the corp and a hash of the secret: each app has its own token, and two channels
    // using the same app share it (WeCom hands out the same one while it is valid anyway).
    const id = `wecom:${account.corpId}:${createHash('sha256').update(account.secret).digest('hex').slice(0, 16)}`;
    this.tokens = new SharedToken({ ...deps, id, fetch: () => this.fetchToken() });
  }

  private async fetchToken(): Promise<{ token: string; expiresInS: number }> {
    const { apiBase, corpId, secret } = this.account;
    const d = await wecomCall(`${apiBase}/cgi-bin/gettoken?corpid=${encodeURIComponent(corpId)}&corpsecret=${encodeURIComponent(secret)}`, undefined, this.timeoutMs);
    const token = d['access_token'];
    const expires = d['expires_in'];
    if (typeof token !== 'string' || !token || typeof expires !== 'number') throw new WechatApiError(-1, 'gettoken answer has no access_token');
    return { token, expiresInS: expires };
  }

  /** `POST /cgi-bin/<path>` (or GET without `body`) with the access token. Throws `WechatApiError`. */
  async call(path: string, body?: unknown): Promise<Record<string, unknown>> {
    return this.withToken((t) => wecomCall(`${this.account.apiBase}/cgi-bin/${path}${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(t)}`, body, this.timeoutMs));
  }

  /**
   * media/upload (docs/wecom.md "Pictures"): a file as temporary media, multipart field `media`; its
   * media_id, which WeCom keeps 3 days. Throws `WechatApiError`.
   */
  async upload(type: 'image', file: { bytes: Buffer; filename: string; contentType: string }): Promise<string> {
    const { body, contentType } = multipart({}, { name: 'media', ...file });
    const d = await this.withToken((t) =>
      wecomCall(`${this.account.apiBase}/cgi-bin/media/upload?access_token=${encodeURIComponent(t)}&type=${type}`, body, this.timeoutMs, { 'Content-Type': contentType }),
    );
    const id = d['media_id'];
    if (typeof id !== 'string' || !id) throw new WechatApiError(-1, 'media/upload answered no media_id');
    return id;
  }

  /** media/get: a file a user sent (3 days), at most `maxBytes`. Failures are `MediaError`s. */
  async media(mediaId: string, maxBytes: number): Promise<{ bytes: Buffer; contentType: string }> {
    try {
      return await this.withToken((t) => this.download(t, mediaId, maxBytes));
    } catch (err) {
      if (err instanceof WechatApiError) throw new MediaError(String(err.errcode), err.message, { tooLarge: err.errcode === MEDIA_TOO_LARGE, cause: err });
      throw new MediaError('failed', err instanceof Error ? err.message : String(err), { cause: err });
    }
  }

  private async download(token: string, mediaId: string, maxBytes: number): Promise<{ bytes: Buffer; contentType: string }> {
    let res;
    try {
      res = await send({ url: `${this.account.apiBase}/cgi-bin/media/get?access_token=${encodeURIComponent(token)}&media_id=${encodeURIComponent(mediaId)}`, timeoutMs: this.timeoutMs }, maxBytes);
    } catch (err) {
      if (err instanceof NetworkError && err.code === 'ETOOLARGE') throw new WechatApiError(MEDIA_TOO_LARGE, `over ${maxBytes} bytes`);
      throw new WechatApiError(-1, `network error ${(err as { code?: string }).code ?? ''}`.trim());
    }
    if (res.status !== 200) throw new WechatApiError(-1, `HTTP ${res.status}`);
    const type = String(res.headers['content-type'] ?? 'application/octet-stream').split(';')[0]?.trim() ?? '';
    // Errors come back as JSON instead of the file.
    if (type === 'application/json' || type === 'text/plain') {
      let d: { errcode?: unknown; errmsg?: unknown } = {};
      try {
        d = JSON.parse(res.body.toString('utf8')) as typeof d;
      } catch {
        throw new WechatApiError(-1, 'media/get answered text that is not JSON');
      }
      throw new WechatApiError(typeof d.errcode === 'number' ? d.errcode : -1, String(d.errmsg ?? ''));
    }
    if (res.body.length === 0) throw new WechatApiError(MEDIA_EMPTY, 'the file is empty');
    if (res.body.length > maxBytes) throw new WechatApiError(MEDIA_TOO_LARGE, `over ${maxBytes} bytes`);
    return { bytes: res.body, contentType: type };
  }

  private async withToken<T>(call: (token: string) => Promise<T>): Promise<T> {
    const token = await this.tokens.get();
    try {
      return await call(token);
    } catch (err) {
      if (!(err instanceof WechatApiError && WECOM_TOKEN_INVALID.has(err.errcode))) throw err;
      await this.tokens.invalidate(token);
      return call(await this.tokens.get());
    }
  }
}

/** The caller's IP as WeCom saw it, from a 60020's errmsg (`from ip: 1.2.3.4`): the one to trust. */
export function ipOf(err: WechatApiError): string | undefined {
  return /from ip: ?([0-9a-fA-F.:]+)/.exec(err.message)?.[1];
}

/**
 * The errors that mean the setup is wrong, not this message: what to fix, where (README "WeCom"
 * has the same with the console's clicks). `secret` names the variable of the secret in use.
 */
export function setupFix(err: WechatApiError, secret: string): string | undefined {
  switch (err.errcode) {
    case 60020: {
      const ip = ipOf(err);
      return `this server's IP${ip ? ` (${ip})` : ''} is not a trusted IP of the app: WeCom admin → 应用管理 → the app → 企业可信IP → add it (a trusted domain or the callback URL must be saved first; serverless platforms need a fixed egress: HTTPS_PROXY or WECOM_API_BASE)`;
    }
    case 40001:
      return `${secret} is wrong: copy the app's Secret again (应用管理 → the app → Secret → 查看, sent to the admin's WeCom)`;
    case 40013:
      return 'WECOM_CORP_ID is wrong: 我的企业 → 企业信息 → 企业ID';
    case 40056:
    case 301002:
      return `WECOM_AGENT_ID is not the AgentId of the app whose secret is ${secret} (应用管理 → the app → AgentId)`;
    case 48002:
      return secret === 'WECOM_KF_SECRET'
        ? 'the app may not call the customer-service API: 微信客服 → API → 可调用接口的应用 → add this app, and set the account to be managed through the API'
        : "the app may not send to this member: add them (or their department) to the app's 可见范围 (应用管理 → the app)";
    case 95017:
      return 'the customer-service API is not enabled for this corp: 微信客服 → API → 开启';
    default:
      return undefined;
  }
}

/**
 * The last setup error of a channel instance, kept in the store (every instance shows the same on
 * the console) and logged once per process and code, not once per message. A later successful
 * call clears it.
 */
export class SetupProblems {
  private readonly key: string;
  private readonly logged = new Set<number | string>();
  /** Whether the store may hold a problem (unknown at start). */
  private maybe = true;

  constructor(
    private readonly d: { store: Store; clock: Clock; logger: Logger; name: string; secret: string },
  ) {
    this.key = `setup-problem:${d.name}`;
  }

  /** An API call failed: note it when it is a setup error. True when it was one. */
  async note(err: unknown): Promise<boolean> {
    if (!(err instanceof WechatApiError)) return false;
    const fix = setupFix(err, this.d.secret);
    if (!fix) return false;
    await this.record(err.errcode, fix);
    return true;
  }

  /** A setup problem seen some other way (a callback that belongs elsewhere): `code` names it. */
  async record(code: number | string, fix: string): Promise<void> {
    const { store, clock, logger, name } = this.d;
    if (!this.logged.has(code)) {
      this.logged.add(code);
      logger.error(`${name}: the WeCom setup is wrong (${code}): ${fix}`);
    }
    this.maybe = true;
    const at = clock.now();
    await store.kvPut(this.key, JSON.stringify({ code, fix, at }), at + 365 * 86_400_000).catch((e) => logger.warn('could not keep the setup problem', errorLogFields(e)));
  }

  /** A call went through: whatever was wrong is fixed. */
  async ok(): Promise<void> {
    if (!this.maybe) return;
    this.maybe = false;
    const { store, clock } = this.d;
    const cur = await store.kvGet(this.key, clock.now()).catch(() => undefined);
    if (cur !== undefined) await store.kvExpire(this.key, cur).catch(() => undefined);
  }

  /** The console's line: the last setup error and its fix, or none. */
  async health(label: string, at: (ms: number) => string): Promise<HealthItem> {
    const raw = await this.d.store.kvGet(this.key, this.d.clock.now());
    if (raw === undefined) return { name: `${label}：设置`, ok: true, text: '没有发现设置问题（WeCom 没有拒绝过调用）' };
    const p = JSON.parse(raw) as { code: number | string; fix: string; at: number };
    return { name: `${label}：设置`, ok: false, text: `${at(p.at)} 设置有误（${p.code}）：${p.fix}` };
  }
}

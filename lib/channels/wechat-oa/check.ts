/**
 * The Official Account's part of `npm run doctor` (Channel.selfCheck): its AppID and AppSecret
 * accepted (a stable_token fetch), and its server URL answering WeChat's check as WeChat makes it.
 * Only the console's checks page and the doctor reach it (the laf build leaves it out of the page
 * functions, scripts/build-laf.ts).
 */
import { randomBytes } from 'crypto';
import type { CoreConfig } from '../../core/settings';
import { WechatApiError } from '../../errors';
import type { Check } from '../../util/checks';
import { call } from '../../util/http';
import { sha1Signature } from '../wxbiz/signature';
import type { WechatAccount } from '.';
import type { WechatOaSettings } from './settings';

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
export async function wechatSelfCheck(settings: WechatOaSettings, account: WechatAccount | undefined, config: CoreConfig, instance: string, label: string): Promise<Check[]> {
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


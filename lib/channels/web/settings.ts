/** The web chat's settings (README "Web chat and API"): off unless WEB_CHAT=on. */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';
import type { SettingsContext } from '../../core/channel';
import { parseRateLimit } from '../../core/settings';
import type { RateWindow } from '../../core/settings';

export const WEB_VARIABLES = ['WEB_CHAT', 'WEB_CHAT_ACCESS_CODE', 'WEB_CHAT_EMBED_ORIGINS', 'WEB_CHAT_IP_LIMIT', 'WEB_CHAT_TITLE'] as const;

/** Questions one client address may ask, whatever visitor cookies it holds (an open page must not drain the model budget). */
export const DEFAULT_IP_LIMIT = '60/h,300/d';
/** Shorter codes are guessable despite the per-address limit on attempts. */
const ACCESS_CODE_MIN = 6;

export interface WebChatSettings {
  /** Visitors type it once (per cookie) before they can chat; undefined: the page is open. */
  accessCode: string | undefined;
  /** Sites that may embed the chat (CSP `frame-ancestors`); empty: none. */
  embedOrigins: string[];
  /** Per client address (TRUSTED_PROXY_HEADER behind a proxy): at most `count` questions per window. */
  ipLimits: RateWindow[];
  /** The page's title and heading. */
  title: string;
}

/**
 * One origin a browser may compare against `frame-ancestors`: `https://host[:port]` (or http for
 * a test site), `*.` allowed as the first label. Nothing that could end or extend the policy.
 */
const ORIGIN = /^https?:\/\/(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:\d{1,5})?$/;

function embedOrigins(v: string | undefined): string[] {
  if (v === undefined) return [];
  const out: string[] = [];
  for (const raw of v.split(/[\s,]+/).filter(Boolean)) {
    const origin = raw.replace(/\/+$/, '').toLowerCase();
    if (!ORIGIN.test(origin)) throw new ConfigError('WEB_CHAT_EMBED_ORIGINS', `"${raw}" is not an origin such as https://www.example.com (scheme, host and port only)`);
    if (!out.includes(origin)) out.push(origin);
  }
  return out;
}

export function webChatSettings(whole: Env, ctx: Pick<SettingsContext, 'instance'>): WebChatSettings | undefined {
  const env = whole.only(WEB_VARIABLES);
  if (!env.bool('WEB_CHAT', false)) return undefined;
  // One chat page per deployment: it is served at /chat, and its visitors' keys carry no instance.
  if (ctx.instance !== '') throw new ConfigError('BOTS', `"${ctx.instance}": the web chat has one instance (WEB_CHAT=on), not one per BOTS entry`);
  const accessCode = env.str('WEB_CHAT_ACCESS_CODE');
  if (accessCode !== undefined && accessCode.length < ACCESS_CODE_MIN) throw new ConfigError('WEB_CHAT_ACCESS_CODE', `must be at least ${ACCESS_CODE_MIN} characters (got ${accessCode.length})`);
  const limit = env.str('WEB_CHAT_IP_LIMIT') ?? DEFAULT_IP_LIMIT;
  let ipLimits: RateWindow[];
  try {
    ipLimits = limit.toLowerCase() === 'off' ? [] : parseRateLimit(limit);
  } catch {
    throw new ConfigError('WEB_CHAT_IP_LIMIT', `must be N/m, N/h or N/d, comma-separated (e.g. "${DEFAULT_IP_LIMIT}"), or off; got "${limit}"`);
  }
  const title = env.str('WEB_CHAT_TITLE') ?? '在线问答';
  if (title.length > 60) throw new ConfigError('WEB_CHAT_TITLE', 'must be at most 60 characters');
  return { accessCode, embedOrigins: embedOrigins(env.str('WEB_CHAT_EMBED_ORIGINS')), ipLimits, title };
}

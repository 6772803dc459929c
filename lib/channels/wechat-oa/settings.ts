/**
 * The Official Account's settings (README "Configuration", "WeChat console settings"): on when
 * WECHAT_TOKEN is set. Safe mode, push, menus, QR scenes and the reply window's timings are the
 * account's own; the core's settings (texts, keyword replies, the reply deadline) are checked
 * against them here, where WeChat's limits are known.
 */
import { ConfigError } from '../../errors';
import { Env, stringRecord } from '../../core/env';
import type { SettingsContext } from '../../core/channel';
import type { CommandName } from '../../core/settings';
import { COMMAND_NAMES } from '../../core/settings';
import { fill } from '../../text/fill';
import type { Menu } from './menu';
import { menuProblems } from './menu';
import { replyReserveBytes } from './pages';

export const WECHAT_OA_VARIABLES = [
  'WECHAT_TOKEN', 'WECHAT_AES_KEY', 'WECHAT_APPID', 'WECHAT_APPSECRET', 'WECHAT_PUSH', 'WECHAT_API_BASE',
  'WECHAT_TIMEOUT_MS', 'WECHAT_DELIVERIES', 'PAGE_BYTES', 'MENU_KEYS', 'MENU', 'SCENE_REPLIES',
] as const;
type Variable = (typeof WECHAT_OA_VARIABLES)[number];

/** What a menu CLICK EventKey does: run a command, or ask the model a fixed question. */
export type MenuAction = { command: CommandName } | { ask: string };

export interface WechatOaSettings {
  token: string;
  /** EncodingAESKey (43 chars) for safe/compatible mode; with `appId`. */
  aesKey: string | undefined;
  appId: string | undefined;
  appSecret: string | undefined;
  /** Push late answers with the customer-service API (needs appId + appSecret). */
  push: boolean;
  apiBase: string;
  /** Signed timestamps further than this from now are rejected; 0 disables the check. */
  timestampToleranceS: number;
  /** How long WeChat waits for one delivery before re-delivering. */
  timeoutMs: number;
  /** How many deliveries WeChat makes of one message (observed: 3). */
  deliveries: number;
  /** UTF-8 bytes per reply page, page hint included (WeChat drops ~2048). */
  pageBytes: number;
  menu: Record<string, MenuAction>;
  /** The custom menu to publish (`MENU`, WeChat's format), checked against MENU_KEYS. */
  menuDefinition: Menu | undefined;
  /** Replies to subscribe-with-scene and SCAN events, by scene value; `*` is the default. */
  scenes: Record<string, string>;
}

/** Menu table: `{"KEY": "/help"}` runs a command, `{"KEY": {"ask": "question"}}` asks the model. */
export function parseMenuKeys(v: unknown): Record<string, MenuAction> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('MENU_KEYS', 'must be a JSON object');
  const out: Record<string, MenuAction> = {};
  const commands: readonly string[] = COMMAND_NAMES;
  for (const [key, val] of Object.entries(v)) {
    if (typeof val === 'string') {
      if (!commands.includes(val)) throw new ConfigError('MENU_KEYS', `"${key}" maps to unknown command "${val}"; known: ${commands.join(', ')}`);
      out[key] = { command: val as CommandName };
    } else if (val && typeof val === 'object' && typeof (val as { ask?: unknown }).ask === 'string' && (val as { ask: string }).ask.trim()) {
      out[key] = { ask: (val as { ask: string }).ask.trim() };
    } else {
      throw new ConfigError('MENU_KEYS', `"${key}" must be a command string or {"ask": "question"}`);
    }
  }
  return out;
}

/** `MENU`: the menu to publish, every problem named at once. */
function menuDefinition(env: Env<Variable>, keys: Record<string, MenuAction>): Menu | undefined {
  return env.json('MENU', (v) => {
    const problems = menuProblems(v, Object.keys(keys));
    if (problems.length > 0) throw new ConfigError('MENU', problems.join('; '));
    return v as Menu;
  }, undefined);
}

export function wechatOaSettings(whole: Env, ctx: SettingsContext): WechatOaSettings | undefined {
  const env = whole.only(WECHAT_OA_VARIABLES);
  const token = env.str('WECHAT_TOKEN');
  if (token === undefined) return undefined;
  if (!/^[A-Za-z0-9]{3,32}$/.test(token)) throw new ConfigError('WECHAT_TOKEN', 'must be 3-32 letters or digits, as the WeChat console requires');
  const aesKey = env.str('WECHAT_AES_KEY');
  const appId = env.str('WECHAT_APPID');
  const appSecret = env.str('WECHAT_APPSECRET');
  if (aesKey !== undefined) {
    if (!/^[A-Za-z0-9]{43}$/.test(aesKey)) throw new ConfigError('WECHAT_AES_KEY', 'must be the 43-character EncodingAESKey (letters and digits)');
    if (appId === undefined) throw new ConfigError('WECHAT_APPID', 'is required when WECHAT_AES_KEY is set (safe mode checks it)');
  }
  const push = env.bool('WECHAT_PUSH', false);
  if (push && (appId === undefined || appSecret === undefined)) {
    throw new ConfigError(appId === undefined ? 'WECHAT_APPID' : 'WECHAT_APPSECRET', 'is required when WECHAT_PUSH is on');
  }
  const timeoutMs = env.int('WECHAT_TIMEOUT_MS', 5000, 100, 60_000);
  if (ctx.core.delivery.replyDeadlineMs >= timeoutMs) {
    throw new ConfigError('REPLY_DEADLINE_MS', `must be below WECHAT_TIMEOUT_MS (${timeoutMs}), or WeChat gives up first`);
  }
  const { texts, page, keywords } = ctx.core;
  const pageBytes = env.int('PAGE_BYTES', 1800, 200, 2048);
  const room = pageBytes - replyReserveBytes(texts, page) - Buffer.byteLength('\n\n' + fill(texts.pageHint, { page: 9999, total: 9999 }));
  if (room < 100) {
    throw new ConfigError('PAGE_BYTES', `${pageBytes} leaves only ${room} bytes of answer per page beside the pageHint, answerQuote and moreWaiting texts; raise it or shorten those texts`);
  }
  // A keyword's reply is one WeChat reply: it must fit a page.
  for (const [key, reply] of [...Object.entries(keywords.exact), ...keywords.prefixes]) {
    if (Buffer.byteLength(reply) > pageBytes) throw new ConfigError('KEYWORD_REPLIES', `the reply to "${key}" is over ${pageBytes} bytes (PAGE_BYTES); WeChat would not show it`);
  }
  const menu = env.json('MENU_KEYS', parseMenuKeys, {});
  return {
    token,
    aesKey,
    appId,
    appSecret,
    push,
    apiBase: env.url('WECHAT_API_BASE', 'https://api.weixin.qq.com'),
    timestampToleranceS: ctx.core.signatureToleranceS,
    timeoutMs,
    deliveries: env.int('WECHAT_DELIVERIES', 3, 1, 10),
    pageBytes,
    menu,
    menuDefinition: menuDefinition(env, menu),
    scenes: env.json('SCENE_REPLIES', (v) => stringRecord('SCENE_REPLIES', v), {}),
  };
}

/** What `npm run menu` needs: the account's credentials and the menu, without the bot's other settings. */
export function loadMenuSettings(raw: Readonly<Record<string, string | undefined>>): { appId: string; appSecret: string; apiBase: string; menu: Menu | undefined } {
  const env = Env.of(raw).only(WECHAT_OA_VARIABLES);
  const appId = env.required('WECHAT_APPID', 'the account\'s AppID (微信开发者平台 → 我的业务 → 公众号 → 基础信息)');
  const appSecret = env.required('WECHAT_APPSECRET', 'the account\'s AppSecret (same page; the menu API needs it)');
  const keys = env.json('MENU_KEYS', parseMenuKeys, {});
  return { appId, appSecret, apiBase: env.url('WECHAT_API_BASE', 'https://api.weixin.qq.com'), menu: menuDefinition(env, keys) };
}

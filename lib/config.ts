/**
 * Configuration: read once from the environment, validated, then injected everywhere.
 * Every error names the variable to fix. README "Configuration" documents each setting.
 */
import { readFileSync } from 'fs';
import { ConfigError } from './errors';
import type { LogLevel } from './log';
import type { Menu } from './menu';
import { menuProblems } from './menu';
import { PROXY_VARIABLES, parseProxy } from './http';

/** All user-facing texts. Defaults are Chinese; override any subset with the JSON in `BOT_TEXTS`. */
export interface Texts {
  welcome: string;
  help: string;
  /** Last delivery and the answer is not ready. {question} {seconds} */
  placeholder: string;
  /** The same, when the answer will be pushed by the customer-service API. {question} {seconds} */
  placeholderPush: string;
  /** `1` while the answer is still being generated. {question} {seconds} */
  stillThinking: string;
  /** `1` with nothing left to send. */
  nothingPending: string;
  /** `1` on a failed answer. {question} {reason} */
  failedAnswer: string;
  /** Appended to every page but the last. {page} {total} */
  pageHint: string;
  /** The line above a reply from `1` when several answers are waiting. {question} */
  answerQuote: string;
  /** After the last page of an answer, when more answers are waiting. {count} */
  moreWaiting: string;
  cleared: string;
  /** A later delivery of a question that `/clear` cancelled while it was being answered. {question} */
  questionCleared: string;
  unsupported: string;
  voiceNoRecognition: string;
  failQuota: string;
  failBusy: string;
  failConfig: string;
  failDown: string;
  failFailed: string;
  /** The link to the live answer page, offered in placeholders. */
  pageLinkLive: string;
  /** The link to the whole answer, offered on the first page of a multi-page answer. */
  pageLinkFull: string;
  /** `1` after the answer was read to the end on its page. {question} */
  readOnPage: string;
  /** The answer page while the answer is being written. {seconds} */
  pageThinking: string;
  /** The answer page for an unknown, expired or revoked link. */
  pageGone: string;
  /** After an answer the model stopped at its token limit. */
  answerCut: string;
  /** After an answer the model's content filter cut short. */
  answerFiltered: string;
  /** The reply to a picture: it is kept for the next question. {seconds} */
  imageReceived: string;
  /** Above an answer given without the user's picture. {reason} */
  imageIgnored: string;
  /** A question about a picture the bot cannot use; the model is not asked. {reason} */
  imageUnusable: string;
  /** Why a picture could not be used. */
  imageNoVision: string;
  imageTooLarge: string;
  imageExpired: string;
  /** Above the answer to a voice message WeChat did not transcribe: what was heard. {text} */
  voiceHeard: string;
  /** Over RATE_LIMIT. {when} */
  rateLimited: string;
  /** Over DAILY_QUESTION_BUDGET. {when} */
  budgetExhausted: string;
  /** A user not in ALLOWED_USERS, or in BLOCKED_USERS. */
  notAllowed: string;
  /** A question containing a BLOCKED_WORDS word: the model is not asked. */
  inputBlocked: string;
  /** Replaces an answer containing a BLOCKED_WORDS word. */
  answerBlocked: string;
  /** The line above the sources list (CITATIONS=on). */
  sourcesTitle: string;
  /** `/help` on LINE and Discord (no `1` there: answers arrive by themselves). */
  channelHelp: string;
  /** LINE: other kinds of messages (stickers, pictures, …). */
  channelUnsupported: string;
  /** Discord: the answer took longer than the interaction token lives (15 minutes). */
  channelTooSlow: string;
}

export const DEFAULT_TEXTS: Texts = {
  welcome: '感谢关注！我是 AI 助手，直接发消息向我提问即可。\n发送 /help 查看用法。',
  help:
    '直接发送文字向我提问。\n' +
    '· 回答较长或还没生成完时，回复 1 获取后续内容\n' +
    '· 发送 /clear 开始新的对话（忘记之前的上下文）\n' +
    '· 发送 /help 查看本说明',
  placeholder: '「{question}」\n正在思考中（已 {seconds} 秒），请稍后回复 1 获取回答。',
  placeholderPush: '「{question}」\n正在思考中（已 {seconds} 秒），回答生成后会自动发给你。',
  stillThinking: '「{question}」\n还在思考中（已 {seconds} 秒），请稍后再回复 1。',
  nothingPending: '没有待发送的内容了，直接发消息即可提问。',
  failedAnswer: '「{question}」\n{reason}',
  pageHint: '({page}/{total}) 回复 1 查看后续',
  answerQuote: '「{question}」',
  moreWaiting: '还有 {count} 条回答，回复 1 继续',
  cleared: '已清除对话记录，我们重新开始吧。',
  questionCleared: '「{question}」\n这个问题已随 /clear 清除，不再回答。需要的话请重新提问。',
  unsupported: '暂时只支持文字消息哦，请用文字提问。',
  voiceNoRecognition: '暂时没能识别这条语音，请用文字提问。（管理员可在公众号后台开启「接收语音识别结果」。）',
  failQuota: '抱歉，AI 服务的额度已用完，请联系公众号管理员。',
  failBusy: '抱歉，AI 服务正忙，请稍后重新提问。',
  failConfig: '抱歉，AI 服务配置有误，请联系公众号管理员。',
  failDown: '抱歉，暂时连不上 AI 服务，请稍后重新提问。',
  failFailed: '抱歉，这次回答生成失败了，请重新提问。',
  pageLinkLive: '点此查看实时回答',
  pageLinkFull: '查看全文',
  readOnPage: '「{question}」的回答你已在网页中看完了，没有待发送的内容。',
  pageThinking: '正在思考（已 {seconds} 秒）…',
  pageGone: '这个链接不存在或已失效。',
  answerCut: '（回答太长，已被截断。可以让我接着说。）',
  answerFiltered: '（部分内容被模型的安全策略过滤了。）',
  imageReceived: '收到图片了。想问关于这张图片的什么？请在 {seconds} 秒内发文字提问。',
  imageIgnored: '（{reason}，下面只回答了文字部分。）',
  imageUnusable: '{reason}，请用文字描述你的问题。',
  imageNoVision: '这个 AI 看不了图片',
  imageTooLarge: '图片太大了，没能发给 AI',
  imageExpired: '没能取到这张图片（可能已过期）',
  voiceHeard: '🎤「{text}」',
  rateLimited: '提问太频繁了，请在 {when} 之后再问。',
  budgetExhausted: '今天的提问名额已经用完了，请在 {when} 之后再来。',
  notAllowed: '抱歉，这个助手暂不对你开放。',
  inputBlocked: '抱歉，这个问题无法回答。',
  answerBlocked: '抱歉，这个回答包含不适宜的内容，已被拦截。',
  sourcesTitle: '参考资料：',
  channelHelp: '直接发消息向我提问，回答写好后会自动发给你。\n· /clear 开始新的对话（忘记之前的上下文）\n· /help 查看本说明',
  channelUnsupported: '暂时只支持文字消息，请用文字提问。',
  channelTooSlow: '抱歉，这次回答太久了，没能及时送达。请重新提问。',
};

/** Keyword replies: exact matches, and prefixes longest first; keys are normalised (`normalizeKeyword`). */
export interface KeywordReplies {
  exact: Record<string, string>;
  prefixes: [prefix: string, reply: string][];
}

/** How text is compared with keywords: NFKC (full-width letters and digits become ASCII), trimmed, lower case. */
export function normalizeKeyword(text: string): string {
  return text.normalize('NFKC').trim().toLowerCase();
}

/**
 * `{"价格": "…", "prefix:订单": "…"}`: a key matches the whole message, or with `prefix:` its start.
 * Replies must fit one WeChat reply.
 */
function parseKeywords(v: unknown, maxBytes: number): KeywordReplies {
  const rec = stringRecord('KEYWORD_REPLIES', v);
  const out: KeywordReplies = { exact: Object.create(null) as Record<string, string>, prefixes: [] };
  for (const [key, reply] of Object.entries(rec)) {
    const isPrefix = key.startsWith('prefix:');
    const word = normalizeKeyword(isPrefix ? key.slice('prefix:'.length) : key);
    if (word === '') throw new ConfigError('KEYWORD_REPLIES', `"${key}" has no keyword`);
    if (reply.trim() === '') throw new ConfigError('KEYWORD_REPLIES', `the reply to "${key}" is empty`);
    if (Buffer.byteLength(reply) > maxBytes) throw new ConfigError('KEYWORD_REPLIES', `the reply to "${key}" is over ${maxBytes} bytes (PAGE_BYTES); WeChat would not show it`);
    if (isPrefix) out.prefixes.push([word, reply]);
    else out.exact[word] = reply;
  }
  out.prefixes.sort((a, b) => b[0].length - a[0].length);
  return out;
}

/** One RATE_LIMIT window: at most `count` questions per `windowMs`, `label` as written (`20/h`). */
export interface RateWindow {
  count: number;
  windowMs: number;
  unit: 'm' | 'h' | 'd';
  label: string;
}

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `RATE_LIMIT`: comma-separated `N/m`, `N/h` or `N/d` (questions per minute, hour, day). */
export function parseRateLimit(v: string): RateWindow[] {
  const out: RateWindow[] = [];
  for (const part of v.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^(\d{1,6})\s*\/\s*([mhd])$/i.exec(part);
    if (!m || Number(m[1]) < 1) throw new ConfigError('RATE_LIMIT', `"${part}" is not N/m, N/h or N/d with N ≥ 1 (e.g. "20/h,100/d")`);
    const unit = (m[2] as string).toLowerCase() as 'm' | 'h' | 'd';
    if (out.some((w) => w.unit === unit)) throw new ConfigError('RATE_LIMIT', `gives /${unit} twice`);
    out.push({ count: Number(m[1]), windowMs: UNIT_MS[unit], unit, label: part });
  }
  return out;
}

/** A list of OpenIDs, separated by commas, spaces or new lines. */
function idList(env: Env, name: string): Set<string> | undefined {
  const v = str(env, name);
  if (v === undefined) return undefined;
  const ids = v.split(/[\s,]+/).filter(Boolean);
  for (const id of ids) if (!/^[A-Za-z0-9_-]{6,64}$/.test(id)) throw new ConfigError(name, `"${id}" does not look like an OpenID`);
  return new Set(ids);
}

/** BLOCKED_WORDS (comma or new-line separated) and BLOCKED_WORDS_FILE (one word per line, # comments). */
function blockedWords(env: Env, readFile: ((path: string) => string) | undefined): string[] {
  const words = (str(env, 'BLOCKED_WORDS') ?? '').split(/[,\n]/);
  const file = str(env, 'BLOCKED_WORDS_FILE');
  if (file !== undefined) {
    if (!readFile) throw new ConfigError('BLOCKED_WORDS_FILE', 'cannot be read here (laf has no files): put the words in BLOCKED_WORDS');
    let text: string;
    try {
      text = readFile(file);
    } catch (err) {
      throw new ConfigError('BLOCKED_WORDS_FILE', `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    words.push(...text.split('\n').filter((l) => !l.trimStart().startsWith('#')));
  }
  return [...new Set(words.map((w) => w.trim()).filter(Boolean))];
}

/** DIFY_INPUTS: a JSON object; string values may hold placeholders (lib/dify/inputs.ts). */
function difyInputs(v: unknown): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('DIFY_INPUTS', 'must be a JSON object of the app\'s input variables, e.g. {"name": "{openid}"}');
  return v as Record<string, unknown>;
}

/** What a menu CLICK EventKey does: run a command, or ask Dify a fixed question. */
export type MenuAction = { command: string } | { ask: string };

export interface Config {
  wechat: {
    token: string;
    /** EncodingAESKey (43 chars) for safe/compatible mode; with `appId`. */
    aesKey: string | undefined;
    appId: string | undefined;
    appSecret: string | undefined;
    /** Push late answers with the customer-service API (needs appId + appSecret). */
    push: boolean;
    apiBase: string;
    /** Signed timestamps further than this from now are rejected (WeChat and Discord); 0 disables the check. */
    timestampToleranceS: number;
    /** How long WeChat waits for one delivery before re-delivering. */
    timeoutMs: number;
    /** How many deliveries WeChat makes of one message (observed: 3). */
    deliveries: number;
  };
  /** Which backend answers (lib/answerer.ts): Dify, or any OpenAI-compatible server. */
  llm: { provider: 'dify' | 'openai' };
  /** With `LLM_PROVIDER=dify`; `apiKey` is '' otherwise. */
  dify: {
    apiKey: string;
    baseUrl: string;
    /** Abort a Dify call after this long without a single byte (pings count). */
    idleTimeoutMs: number;
    /** Abort a Dify call after this long in all, however lively the stream. */
    answerTimeoutMs: number;
    /** The app's input variables (DIFY_INPUTS), with `{openid}`-style placeholders filled per question. */
    inputs: Record<string, unknown>;
    /** Append the knowledge documents an answer used (CITATIONS=on). */
    citations: boolean;
    /** How pictures reach the app: PicUrl (`remote_url`), or downloaded and uploaded (`local_file`). */
    imageUpload: 'remote_url' | 'local_file';
  };
  /** Pictures and voice (README "Pictures and voice"). */
  media: {
    /** A picture waits this long for the question about it. */
    imageWindowMs: number;
    /** Ask about a picture at once, with this prompt (IMAGE_PROMPT). */
    imagePrompt: string | undefined;
    /** Downloads (pictures, voice) larger than this are refused. */
    maxBytes: number;
    /** OpenAI-compatible: the model takes images (OPENAI_VISION). */
    openaiVision: boolean;
    /** OpenAI-compatible: the transcription model for voice (OPENAI_TRANSCRIBE_MODEL); none: no transcription. */
    openaiTranscribeModel: string | undefined;
  };
  /** Who may ask, how often, and what may be said (README "Limits and filters"). */
  guards: {
    /** Per user: at most `count` questions per window. */
    rateLimits: RateWindow[];
    /** For the whole account, per day (DAILY_QUESTION_BUDGET). */
    dailyBudget: number | undefined;
    /** Only these OpenIDs may ask (ALLOWED_USERS); undefined: everyone. */
    allowedUsers: ReadonlySet<string> | undefined;
    blockedUsers: ReadonlySet<string>;
    /** BLOCKED_WORDS and the lines of BLOCKED_WORDS_FILE. */
    blockedWords: string[];
  };
  /** With `LLM_PROVIDER=openai` (docs/openai.md). */
  openai: OpenAIConfig | undefined;
  /** What an OpenAI-compatible prompt carries of the user's earlier turns. */
  history: { maxTurns: number; maxChars: number; idleResetMs: number };
  delivery: {
    /** Each delivery answers by this long after it arrived. */
    replyDeadlineMs: number;
    /** `last`: wait through WeChat's retries before the placeholder; `first`: placeholder at once. */
    placeholderMode: 'last' | 'first';
    /** UTF-8 bytes per reply page, page hint included (WeChat rejects ~2048). */
    pageBytes: number;
    /** A pending answer with no heartbeat for this long is taken over and asked again. */
    staleAfterMs: number;
    /** How often a waiting delivery looks at the store. */
    pollMs: number;
  };
  /** `auto`: MongoDB when one is configured (MONGODB_URI, or laf's cloud.mongo.db), else the embedded store. */
  store: {
    kind: 'auto' | 'mongodb' | 'embedded';
    mongoUri: string | undefined;
    mongoDb: string | undefined;
    dataDir: string;
    /** Daily statistics count days in this time zone (minutes east of UTC; China +480). */
    statsUtcOffsetMin: number;
  };
  server: { port: number; host: string; maxBodyBytes: number };
  texts: Texts;
  menu: Record<string, MenuAction>;
  /** The custom menu to publish (`MENU`, WeChat's format), checked against MENU_KEYS. */
  menuDefinition: Menu | undefined;
  /** Fixed replies to keywords, answered before the model and never sent to it (lib/bot/keywords.ts). */
  keywords: KeywordReplies;
  /** Replies to subscribe-with-scene and SCAN events, by scene value; `*` is the default. */
  scenes: Record<string, string>;
  /** The answer page (lib/page/): off unless a public base URL is known. */
  page: PageConfig;
  /**
   * The operator console (lib/console/): off without ADMIN_TOKEN. `trustedProxyHeader`: the header
   * (lower-case) a reverse proxy in front writes the client's address into; none = the socket's peer.
   */
  console: { token: string | undefined; trustedProxyHeader: string | undefined };
  /** LINE (lib/line/): on with LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN. */
  line: { channelSecret: string; accessToken: string; apiBase: string } | undefined;
  /** Discord (lib/discord/): on with DISCORD_PUBLIC_KEY and DISCORD_APPLICATION_ID. */
  discord: { publicKey: string; applicationId: string; botToken: string | undefined; apiBase: string } | undefined;
  logLevel: LogLevel;
}

export interface OpenAIConfig {
  baseUrl: string;
  apiKey: string | undefined;
  model: string;
  systemPrompt: string | undefined;
  temperature: number | undefined;
  maxTokens: number | undefined;
  /** Provider options merged into the request body (e.g. DeepSeek's `thinking`, DashScope's `enable_thinking`). */
  extraBody: Record<string, unknown>;
  idleTimeoutMs: number;
  answerTimeoutMs: number;
}

export interface PageConfig {
  enabled: boolean;
  /** Where links point, e.g. https://bot.example.com (no trailing slash). */
  publicUrl: string | undefined;
  /** `path`: /a/<token> on the Node server; `laf`: the `answer` function, /answer?t=<token>. */
  routes: 'path' | 'laf';
  /** Links stop working this long after the question was asked. */
  ttlMs: number;
  /** Live streams open at once, in all. */
  maxStreams: number;
  /** Why the page is off although it was not switched off (logged once at start). */
  warning?: string;
}

/** Which platform reads the config: laf derives PUBLIC_URL and serves pages from its own function. */
export interface LoadOptions {
  platform?: 'node' | 'laf';
  /** Reads BLOCKED_WORDS_FILE; the file system by default, none on laf. */
  readFile?: (path: string) => string;
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function required(env: Env, name: string, hint: string): string {
  const v = str(env, name);
  if (v === undefined) throw new ConfigError(name, `is required (${hint})`);
  return v;
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const v = str(env, name);
  if (v === undefined) return def;
  if (!/^-?\d+$/.test(v)) throw new ConfigError(name, `must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const v = str(env, name)?.toLowerCase();
  if (v === undefined) return def;
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `must be true or false, got "${v}"`);
}

function url(env: Env, name: string, def: string): string {
  const v = str(env, name) ?? def;
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigError(name, `must be an http(s) URL, got "${v}"`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConfigError(name, `must be an http(s) URL, got "${v}"`);
  return v.replace(/\/+$/, '');
}

function json<T>(env: Env, name: string, check: (v: unknown) => T, def: T): T {
  const v = str(env, name);
  if (v === undefined) return def;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    throw new ConfigError(name, 'must be valid JSON');
  }
  return check(parsed);
}

function stringRecord(name: string, v: unknown): Record<string, string> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(name, 'must be a JSON object');
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new ConfigError(name, `value of "${k}" must be a string`);
  }
  return v as Record<string, string>;
}

function parseTexts(v: unknown): Texts {
  const rec = stringRecord('BOT_TEXTS', v);
  for (const k of Object.keys(rec)) {
    if (!(k in DEFAULT_TEXTS)) {
      throw new ConfigError('BOT_TEXTS', `unknown text "${k}"; known: ${Object.keys(DEFAULT_TEXTS).join(', ')}`);
    }
  }
  return { ...DEFAULT_TEXTS, ...rec };
}

/** Menu table: `{"KEY": "/help"}` runs a command, `{"KEY": {"ask": "question"}}` asks Dify. */
function parseMenu(v: unknown, commands: readonly string[]): Record<string, MenuAction> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('MENU_KEYS', 'must be a JSON object');
  const out: Record<string, MenuAction> = {};
  for (const [key, val] of Object.entries(v)) {
    if (typeof val === 'string') {
      if (!commands.includes(val)) throw new ConfigError('MENU_KEYS', `"${key}" maps to unknown command "${val}"; known: ${commands.join(', ')}`);
      out[key] = { command: val };
    } else if (val && typeof val === 'object' && typeof (val as { ask?: unknown }).ask === 'string' && (val as { ask: string }).ask.trim()) {
      out[key] = { ask: (val as { ask: string }).ask.trim() };
    } else {
      throw new ConfigError('MENU_KEYS', `"${key}" must be a command string or {"ask": "question"}`);
    }
  }
  return out;
}

/** DIFY_IMAGE_UPLOAD: `local_file` needs the app secret (to download the picture); default: it when possible. */
function imageUpload(env: Env, canDownload: boolean): 'remote_url' | 'local_file' {
  const v = str(env, 'DIFY_IMAGE_UPLOAD');
  if (v === undefined) return canDownload ? 'local_file' : 'remote_url';
  if (v !== 'remote_url' && v !== 'local_file') throw new ConfigError('DIFY_IMAGE_UPLOAD', 'must be remote_url or local_file');
  if (v === 'local_file' && !canDownload) throw new ConfigError('DIFY_IMAGE_UPLOAD', 'local_file needs WECHAT_APPID and WECHAT_APPSECRET (to download the picture from WeChat)');
  return v;
}

/** ADMIN_TOKEN: long enough that guessing it is hopeless (the console also limits attempts). */
function adminToken(env: Env): string | undefined {
  const t = str(env, 'ADMIN_TOKEN');
  if (t !== undefined && t.length < 24) throw new ConfigError('ADMIN_TOKEN', `must be at least 24 characters (got ${t.length}); e.g. the output of: openssl rand -base64 24`);
  return t;
}

/** TRUSTED_PROXY_HEADER: one header name, such as x-forwarded-for or x-real-ip. */
function trustedProxyHeader(env: Env): string | undefined {
  const v = str(env, 'TRUSTED_PROXY_HEADER');
  if (v === undefined) return undefined;
  if (!/^[A-Za-z0-9-]{1,64}$/.test(v)) throw new ConfigError('TRUSTED_PROXY_HEADER', `must be one header name, such as x-forwarded-for or x-real-ip (got "${v}")`);
  return v.toLowerCase();
}

/** `MENU`: the menu to publish, every problem named at once. */
function menuDefinition(env: Env, keys: Record<string, MenuAction>): Menu | undefined {
  return json(env, 'MENU', (v) => {
    const problems = menuProblems(v, Object.keys(keys));
    if (problems.length > 0) throw new ConfigError('MENU', problems.join('; '));
    return v as Menu;
  }, undefined);
}

/** What `npm run menu` needs: the account's credentials and the menu, without the bot's other settings. */
export function loadMenuSettings(env: Env = process.env): { appId: string; appSecret: string; apiBase: string; menu: Menu | undefined } {
  const appId = required(env, 'WECHAT_APPID', 'the account\'s AppID (公众号后台 → 设置与开发 → 基本配置)');
  const appSecret = required(env, 'WECHAT_APPSECRET', 'the account\'s AppSecret (same page; the menu API needs it)');
  const keys = json(env, 'MENU_KEYS', (v) => parseMenu(v, COMMAND_NAMES), {});
  return { appId, appSecret, apiBase: url(env, 'WECHAT_API_BASE', 'https://api.weixin.qq.com'), menu: menuDefinition(env, keys) };
}

/** Commands a menu key may name; kept here so config validation needs no import of the bot. */
export const COMMAND_NAMES = ['1', '/clear', '/help'] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/** `7d`, `12h`, `30m`, `90s` or plain seconds, as milliseconds. */
function duration(env: Env, name: string, defMs: number, minMs: number, maxMs: number): number {
  const v = str(env, name);
  if (v === undefined) return defMs;
  const m = /^(\d+)\s*(s|m|h|d)?$/i.exec(v);
  if (!m) throw new ConfigError(name, `must be a duration such as 7d, 12h, 30m or 3600 (seconds), got "${v}"`);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's').toLowerCase() as 's' | 'm' | 'h' | 'd'];
  const ms = Number(m[1]) * unit;
  if (ms < minMs || ms > maxMs) throw new ConfigError(name, `must be between ${minMs / 1000} s and ${maxMs / 86_400_000} days, got "${v}"`);
  return ms;
}

/**
 * laf serves each app at https://<appid>.<domain>, and its storage at https://oss.<domain>
 * (docs/laf.md): with APPID and OSS_EXTERNAL_ENDPOINT the app's own URL can be derived.
 */
export function lafPublicUrl(env: Env): string | undefined {
  const appId = str(env, 'APPID') ?? str(env, 'APP_ID');
  const oss = /^(https?):\/\/oss\.([a-z0-9.-]+?)\/?$/i.exec(str(env, 'OSS_EXTERNAL_ENDPOINT') ?? '');
  if (!appId || !/^[a-z0-9-]+$/i.test(appId) || !oss) return undefined;
  return `${(oss[1] as string).toLowerCase()}://${appId.toLowerCase()}.${(oss[2] as string).toLowerCase()}`;
}

function pageConfig(env: Env, platform: 'node' | 'laf'): PageConfig {
  const wanted = bool(env, 'ANSWER_PAGE', true);
  const given = str(env, 'PUBLIC_URL');
  let publicUrl: string | undefined;
  if (given !== undefined) {
    const parsed = new URL(url(env, 'PUBLIC_URL', given));
    if (parsed.search || parsed.hash || parsed.username || parsed.password) throw new ConfigError('PUBLIC_URL', 'must be a plain base URL such as https://bot.example.com (no query, fragment or credentials)');
    // The normalised form: links are written into replies, so nothing odd from the input survives.
    publicUrl = parsed.href.replace(/\/+$/, '');
  } else if (platform === 'laf') {
    publicUrl = lafPublicUrl(env);
  }
  const base = {
    publicUrl,
    routes: platform === 'laf' ? ('laf' as const) : ('path' as const),
    ttlMs: duration(env, 'ANSWER_PAGE_TTL', 7 * 86_400_000, 60_000, 7 * 86_400_000),
    maxStreams: int(env, 'ANSWER_PAGE_MAX_STREAMS', 2000, 1, 100_000),
  };
  if (!wanted) return { enabled: false, ...base };
  if (!publicUrl) {
    const warning =
      platform === 'laf'
        ? 'answer page off: set PUBLIC_URL to this app\'s address (e.g. https://<appid>.laf.run); it could not be derived from APPID and OSS_EXTERNAL_ENDPOINT'
        : 'answer page off: set PUBLIC_URL to the address WeChat users can open (e.g. https://bot.example.com), or ANSWER_PAGE=off to silence this';
    return { enabled: false, ...base, warning };
  }
  return { enabled: true, ...base };
}

/** A number in [min, max], or undefined when unset. */
function num(env: Env, name: string, min: number, max: number): number | undefined {
  const v = str(env, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new ConfigError(name, `must be a number between ${min} and ${max}, got "${v}"`);
  return n;
}

function openaiConfig(env: Env): OpenAIConfig {
  const extraBody = json(env, 'OPENAI_EXTRA_BODY', (v) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('OPENAI_EXTRA_BODY', 'must be a JSON object of request fields, e.g. {"enable_thinking": false}');
    for (const k of ['model', 'messages', 'stream']) {
      if (k in v) throw new ConfigError('OPENAI_EXTRA_BODY', `may not set "${k}" (the bot sets it)`);
    }
    return v as Record<string, unknown>;
  }, {});
  const maxTokens = num(env, 'OPENAI_MAX_TOKENS', 1, 10_000_000);
  const baseUrl = url(env, 'OPENAI_BASE_URL', 'https://api.openai.com/v1');
  // A common slip: the full endpoint instead of its base (requests would go to …/chat/completions/chat/completions).
  if (/\/chat\/completions$/i.test(baseUrl)) throw new ConfigError('OPENAI_BASE_URL', `must be the base URL, without /chat/completions (e.g. ${baseUrl.replace(/\/chat\/completions$/i, '')})`);
  return {
    baseUrl,
    apiKey: str(env, 'OPENAI_API_KEY'),
    model: required(env, 'OPENAI_MODEL', 'the model name your server knows, e.g. gpt-4o-mini, deepseek-chat, qwen-plus, llama3.1'),
    systemPrompt: env['SYSTEM_PROMPT']?.trim() ? (env['SYSTEM_PROMPT'] as string).trim() : undefined,
    temperature: num(env, 'OPENAI_TEMPERATURE', 0, 2),
    maxTokens: maxTokens === undefined ? undefined : Math.floor(maxTokens),
    extraBody,
    idleTimeoutMs: int(env, 'OPENAI_TIMEOUT_MS', 120_000, 100, 3_600_000),
    answerTimeoutMs: int(env, 'OPENAI_ANSWER_TIMEOUT_MS', 300_000, 100, 3_600_000),
  };
}

/** LINE: both the channel secret (signatures) and the access token (replies); one without the other is a mistake. */
function lineConfig(env: Env): Config['line'] {
  const channelSecret = str(env, 'LINE_CHANNEL_SECRET');
  const accessToken = str(env, 'LINE_CHANNEL_ACCESS_TOKEN');
  if (channelSecret === undefined && accessToken === undefined) return undefined;
  if (channelSecret === undefined) throw new ConfigError('LINE_CHANNEL_SECRET', 'is required with LINE_CHANNEL_ACCESS_TOKEN (LINE Developers console → the channel → Basic settings)');
  if (accessToken === undefined) throw new ConfigError('LINE_CHANNEL_ACCESS_TOKEN', 'is required with LINE_CHANNEL_SECRET (the channel → Messaging API → Channel access token)');
  if (!/^[0-9a-f]{32}$/i.test(channelSecret)) throw new ConfigError('LINE_CHANNEL_SECRET', 'must be the 32-character hex channel secret');
  return { channelSecret, accessToken, apiBase: url(env, 'LINE_API_BASE', 'https://api.line.me') };
}

/** Discord: the public key verifies interactions; the application id addresses their responses. */
function discordConfig(env: Env): Config['discord'] {
  const publicKey = str(env, 'DISCORD_PUBLIC_KEY');
  const applicationId = str(env, 'DISCORD_APPLICATION_ID');
  if (publicKey === undefined && applicationId === undefined) return undefined;
  if (publicKey === undefined || !/^[0-9a-f]{64}$/i.test(publicKey)) throw new ConfigError('DISCORD_PUBLIC_KEY', 'must be the application\'s 64-character hex Public Key (Developer Portal → General Information), not the bot token');
  if (applicationId === undefined || !/^\d{5,25}$/.test(applicationId)) throw new ConfigError('DISCORD_APPLICATION_ID', 'must be the numeric Application ID (Developer Portal → General Information)');
  return { publicKey: publicKey.toLowerCase(), applicationId, botToken: str(env, 'DISCORD_BOT_TOKEN'), apiBase: url(env, 'DISCORD_API_BASE', 'https://discord.com/api/v10') };
}

export function loadConfig(env: Env = process.env, opts: LoadOptions = {}): Config {
  const line = lineConfig(env);
  const discord = discordConfig(env);
  // WeChat is the default channel; a LINE- or Discord-only bot may leave it out (its webhook then refuses every request).
  const token = line || discord ? (str(env, 'WECHAT_TOKEN') ?? '') : required(env, 'WECHAT_TOKEN', 'the Token from the WeChat console, 3-32 letters or digits');
  if (token !== '' && !/^[A-Za-z0-9]{3,32}$/.test(token)) throw new ConfigError('WECHAT_TOKEN', 'must be 3-32 letters or digits, as the WeChat console requires');
  const providerName = str(env, 'LLM_PROVIDER') ?? (str(env, 'DIFY_API_KEY') === undefined && str(env, 'OPENAI_MODEL') !== undefined ? 'openai' : 'dify');
  if (providerName !== 'dify' && providerName !== 'openai') throw new ConfigError('LLM_PROVIDER', `must be dify or openai, got "${providerName}"`);
  const provider: 'dify' | 'openai' = providerName;
  const apiKey = provider === 'dify' ? required(env, 'DIFY_API_KEY', 'the API key of your Dify app, "app-…" (or LLM_PROVIDER=openai with OPENAI_MODEL)') : '';
  const openai = provider === 'openai' ? openaiConfig(env) : undefined;

  const aesKey = str(env, 'WECHAT_AES_KEY');
  const appId = str(env, 'WECHAT_APPID');
  const appSecret = str(env, 'WECHAT_APPSECRET');
  if (aesKey !== undefined) {
    if (!/^[A-Za-z0-9]{43}$/.test(aesKey)) throw new ConfigError('WECHAT_AES_KEY', 'must be the 43-character EncodingAESKey (letters and digits)');
    if (appId === undefined) throw new ConfigError('WECHAT_APPID', 'is required when WECHAT_AES_KEY is set (safe mode checks it)');
  }
  const push = bool(env, 'WECHAT_PUSH', false);
  if (push && (appId === undefined || appSecret === undefined)) {
    throw new ConfigError(appId === undefined ? 'WECHAT_APPID' : 'WECHAT_APPSECRET', 'is required when WECHAT_PUSH is on');
  }

  const timeoutMs = int(env, 'WECHAT_TIMEOUT_MS', 5000, 100, 60_000);
  const replyDeadlineMs = int(env, 'REPLY_DEADLINE_MS', 4500, 50, 60_000);
  if (replyDeadlineMs >= timeoutMs) {
    throw new ConfigError('REPLY_DEADLINE_MS', `must be below WECHAT_TIMEOUT_MS (${timeoutMs}), or WeChat gives up first`);
  }
  const placeholderMode = str(env, 'PLACEHOLDER_MODE') ?? 'last';
  if (placeholderMode !== 'last' && placeholderMode !== 'first') throw new ConfigError('PLACEHOLDER_MODE', 'must be "last" or "first"');
  const logLevel = str(env, 'LOG_LEVEL') ?? 'info';
  const storeKind = str(env, 'STORE') ?? 'auto';
  if (storeKind !== 'auto' && storeKind !== 'mongodb' && storeKind !== 'embedded') throw new ConfigError('STORE', 'must be auto, mongodb or embedded');
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError('LOG_LEVEL', 'must be debug, info, warn or error');
  // Read by lib/http.ts on each call out; a value that is no proxy would fail every one of them.
  for (const name of PROXY_VARIABLES) {
    const v = env[name];
    if (v && !parseProxy(v)) throw new ConfigError(name, 'must be a proxy URL, e.g. http://proxy.example:3128');
  }

  const texts = json(env, 'BOT_TEXTS', parseTexts, DEFAULT_TEXTS);
  const page = pageConfig(env, opts.platform ?? 'node');
  const menu = json(env, 'MENU_KEYS', (v) => parseMenu(v, COMMAND_NAMES), {});
  const pageBytes = int(env, 'PAGE_BYTES', 1800, 200, 2048);
  const room = pageBytes - replyReserveBytes(texts, page) - Buffer.byteLength('\n\n' + fill(texts.pageHint, { page: 9999, total: 9999 }));
  if (room < 100) {
    throw new ConfigError('PAGE_BYTES', `${pageBytes} leaves only ${room} bytes of answer per page beside the pageHint, answerQuote and moreWaiting texts; raise it or shorten those texts`);
  }

  return {
    wechat: {
      token,
      aesKey,
      appId,
      appSecret,
      push,
      apiBase: url(env, 'WECHAT_API_BASE', 'https://api.weixin.qq.com'),
      timestampToleranceS: int(env, 'SIGNATURE_TOLERANCE_S', 300, 0, 86_400 * 366),
      timeoutMs,
      deliveries: int(env, 'WECHAT_DELIVERIES', 3, 1, 10),
    },
    llm: { provider },
    openai,
    history: {
      maxTurns: int(env, 'HISTORY_MAX_TURNS', 10, 0, 100),
      maxChars: int(env, 'HISTORY_MAX_CHARS', 12_000, 0, 1_000_000),
      idleResetMs: duration(env, 'HISTORY_IDLE_RESET', 2 * 3_600_000, 1000, 30 * 86_400_000),
    },
    dify: {
      apiKey,
      baseUrl: url(env, 'DIFY_BASE_URL', 'https://api.dify.ai/v1'),
      idleTimeoutMs: int(env, 'DIFY_TIMEOUT_MS', 120_000, 100, 3_600_000),
      answerTimeoutMs: int(env, 'DIFY_ANSWER_TIMEOUT_MS', 300_000, 100, 3_600_000),
      inputs: json(env, 'DIFY_INPUTS', difyInputs, {}),
      citations: bool(env, 'CITATIONS', false),
      imageUpload: imageUpload(env, appId !== undefined && appSecret !== undefined),
    },
    media: {
      imageWindowMs: int(env, 'IMAGE_WINDOW_S', 180, 10, 86_400) * 1000,
      imagePrompt: str(env, 'IMAGE_PROMPT'),
      maxBytes: int(env, 'MEDIA_MAX_BYTES', 10 * 1024 * 1024, 1024, 64 * 1024 * 1024),
      openaiVision: bool(env, 'OPENAI_VISION', false),
      openaiTranscribeModel: str(env, 'OPENAI_TRANSCRIBE_MODEL'),
    },
    guards: {
      rateLimits: parseRateLimit(str(env, 'RATE_LIMIT') ?? ''),
      dailyBudget: str(env, 'DAILY_QUESTION_BUDGET') === undefined ? undefined : int(env, 'DAILY_QUESTION_BUDGET', 0, 1, 10_000_000),
      allowedUsers: idList(env, 'ALLOWED_USERS'),
      blockedUsers: idList(env, 'BLOCKED_USERS') ?? new Set(),
      blockedWords: blockedWords(env, opts.readFile ?? (opts.platform === 'laf' ? undefined : (path) => readFileSync(path, 'utf8'))),
    },
    delivery: {
      replyDeadlineMs,
      placeholderMode,
      pageBytes,
      staleAfterMs: int(env, 'STALE_AFTER_MS', 30_000, 300, 3_600_000),
      pollMs: int(env, 'POLL_MS', 150, 5, 5000),
    },
    store: {
      kind: storeKind,
      mongoUri: str(env, 'MONGODB_URI'),
      mongoDb: str(env, 'MONGODB_DB'),
      dataDir: str(env, 'DATA_DIR') ?? './data',
      statsUtcOffsetMin: int(env, 'STATS_UTC_OFFSET_MIN', 480, -720, 840),
    },
    server: {
      port: int(env, 'PORT', 3000, 0, 65_535),
      host: str(env, 'HOST') ?? '0.0.0.0',
      maxBodyBytes: int(env, 'MAX_BODY_BYTES', 256 * 1024, 1024, 16 * 1024 * 1024),
    },
    texts,
    menu,
    menuDefinition: menuDefinition(env, menu),
    keywords: json(env, 'KEYWORD_REPLIES', (v) => parseKeywords(v, pageBytes), { exact: {}, prefixes: [] }),
    scenes: json(env, 'SCENE_REPLIES', (v) => stringRecord('SCENE_REPLIES', v), {}),
    page,
    console: { token: adminToken(env), trustedProxyHeader: trustedProxyHeader(env) },
    line,
    discord,
    logLevel: logLevel as LogLevel,
  };
}

/** Every variable `loadConfig` reads (laf re-reads the environment when one of them changes). */
export const CONFIG_VARIABLES = [
  'WECHAT_TOKEN', 'WECHAT_AES_KEY', 'WECHAT_APPID', 'WECHAT_APPSECRET', 'WECHAT_PUSH', 'WECHAT_API_BASE',
  'SIGNATURE_TOLERANCE_S', 'WECHAT_TIMEOUT_MS', 'WECHAT_DELIVERIES', 'DIFY_API_KEY', 'DIFY_BASE_URL', 'DIFY_TIMEOUT_MS', 'DIFY_ANSWER_TIMEOUT_MS',
  'REPLY_DEADLINE_MS', 'PLACEHOLDER_MODE', 'PAGE_BYTES', 'STALE_AFTER_MS', 'POLL_MS', 'STORE', 'MONGODB_URI', 'MONGODB_DB', 'STATS_UTC_OFFSET_MIN',
  'DATA_DIR', 'PORT', 'HOST', 'MAX_BODY_BYTES', 'TRUSTED_PROXY_HEADER', 'BOT_TEXTS', 'MENU_KEYS', 'MENU', 'KEYWORD_REPLIES', 'SCENE_REPLIES', 'LOG_LEVEL',
  'LLM_PROVIDER', 'OPENAI_BASE_URL', 'OPENAI_API_KEY', 'OPENAI_MODEL', 'SYSTEM_PROMPT', 'OPENAI_TEMPERATURE', 'OPENAI_MAX_TOKENS',
  'OPENAI_EXTRA_BODY', 'OPENAI_TIMEOUT_MS', 'OPENAI_ANSWER_TIMEOUT_MS', 'HISTORY_MAX_TURNS', 'HISTORY_MAX_CHARS', 'HISTORY_IDLE_RESET',
  'ADMIN_TOKEN', 'ANSWER_PAGE', 'PUBLIC_URL', 'ANSWER_PAGE_TTL', 'ANSWER_PAGE_MAX_STREAMS', 'APPID', 'APP_ID', 'OSS_EXTERNAL_ENDPOINT',
  'DIFY_INPUTS', 'CITATIONS', 'DIFY_IMAGE_UPLOAD', 'IMAGE_WINDOW_S', 'IMAGE_PROMPT', 'MEDIA_MAX_BYTES', 'OPENAI_VISION', 'OPENAI_TRANSCRIBE_MODEL',
  'RATE_LIMIT', 'DAILY_QUESTION_BUDGET', 'ALLOWED_USERS', 'BLOCKED_USERS', 'BLOCKED_WORDS', 'BLOCKED_WORDS_FILE',
  'LINE_CHANNEL_SECRET', 'LINE_CHANNEL_ACCESS_TOKEN', 'LINE_API_BASE', 'DISCORD_PUBLIC_KEY', 'DISCORD_APPLICATION_ID', 'DISCORD_BOT_TOKEN', 'DISCORD_API_BASE',
] as const;

/** The secrets in a config, for log redaction. */
export function secretsOf(config: Config): string[] {
  return [
    config.wechat.token,
    config.dify.apiKey,
    config.openai?.apiKey,
    config.console.token,
    config.wechat.aesKey,
    config.wechat.appSecret,
    config.store.mongoUri,
    config.line?.channelSecret,
    config.line?.accessToken,
    config.discord?.botToken,
  ].filter(
    (s): s is string => typeof s === 'string' && s !== '',
  );
}

/** The longest question quote (lib/bot/replies.ts `quote`): 30 code points of up to 4 bytes, and "…". */
const WORST_QUOTE = '\u{20000}'.repeat(30) + '…';

/** The answer page's token in links: 22 base64url characters (lib/page/token.ts). */
export const PAGE_TOKEN_CHARS = 22;

/** The link to a question's answer page, as a path and query under PUBLIC_URL. */
export function pagePath(routes: PageConfig['routes'], token: string): string {
  return routes === 'laf' ? `/answer?t=${token}` : `/a/${token}`;
}

/** A WeChat text link: `<a href="…">text</a>` (the URL is ours: no quote or markup can be in it). */
export function linkMarkup(page: PageConfig, token: string, text: string): string {
  return `<a href="${page.publicUrl ?? ''}${pagePath(page.routes, token)}">${text}</a>`;
}

/**
 * Bytes a reply may add around a page: the quote line above it when several answers are waiting,
 * the "more waiting" footer after the last page, and with the answer page on, the link to it on
 * the first page. Pages are cut this much smaller.
 */
export function replyReserveBytes(texts: Texts, page?: PageConfig): number {
  const head = Buffer.byteLength(fill(texts.answerQuote, { question: WORST_QUOTE }) + '\n');
  const tail = Buffer.byteLength('\n\n' + fill(texts.moreWaiting, { count: 99 }));
  const link = page?.enabled ? Buffer.byteLength('\n' + linkMarkup(page, 'x'.repeat(PAGE_TOKEN_CHARS), texts.pageLinkFull)) : 0;
  return head + tail + link;
}

/** Fill `{name}` placeholders. */
export function fill(template: string, vars: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m));
}

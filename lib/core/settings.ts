/**
 * The core's settings: what every deployment has, whatever channels and backend it runs (texts,
 * keyword replies, limits and filters, history, the reply window, the store, the server, the answer
 * page, the console, logs). Channels and backends read their own (a `settings.ts` in each folder of
 * lib/channels/ and lib/backends/); lib/config.ts puts them together.
 */
import { readFileSync } from 'fs';
import { ConfigError } from '../errors';
import type { StoreSettings } from '../store';
import type { LogFormatSetting, LogLevel } from '../util/log';
import { PROXY_VARIABLES, parseProxy } from '../util/http';
import type { ChannelKind } from './channel';
import type { Env } from './env';
import { stringRecord } from './env';
import type { Texts } from './texts';
import { DEFAULT_TEXTS, parseTexts } from './texts';

/** The variables the core reads (README "Configuration"). */
export const CORE_VARIABLES = [
  'REPLY_DEADLINE_MS', 'PLACEHOLDER_MODE', 'STALE_AFTER_MS', 'POLL_MS', 'POLLER_TAKEOVER_S', 'SIGNATURE_TOLERANCE_S',
  'STORE', 'MONGODB_URI', 'MONGODB_DB', 'STATS_UTC_OFFSET_MIN', 'DATA_DIR', 'PORT', 'HOST', 'MAX_BODY_BYTES', 'MAX_CONNECTIONS', 'STOP_GRACE_S',
  'BOT_TEXTS', 'KEYWORD_REPLIES', 'LOG_LEVEL', 'LOG_FORMAT', 'HISTORY_MAX_TURNS', 'HISTORY_MAX_CHARS', 'HISTORY_IDLE_RESET',
  'ADMIN_TOKEN', 'TRUSTED_PROXY_HEADER', 'ANSWER_PAGE', 'PUBLIC_URL', 'ANSWER_PAGE_TTL', 'ANSWER_PAGE_MAX_STREAMS', 'APPID', 'APP_ID', 'OSS_EXTERNAL_ENDPOINT', 'IS_SEALAF',
  'CITATIONS', 'IMAGE_WINDOW_S', 'IMAGE_PROMPT', 'MEDIA_MAX_BYTES', 'MEDIA_ALLOW_HOSTS', 'MEDIA_MAX_PER_ANSWER',
  'RATE_LIMIT', 'DAILY_QUESTION_BUDGET', 'ALLOWED_USERS', 'BLOCKED_USERS', 'BLOCKED_WORDS', 'BLOCKED_WORDS_FILE',
  ...PROXY_VARIABLES,
] as const;
export type CoreVariable = (typeof CORE_VARIABLES)[number];

/** A keyword reply must fit one message on every channel (WeChat drops text over ~2,048 bytes; Discord takes 2,000 characters). */
export const KEYWORD_REPLY_MAX_BYTES = 2000;

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
function idList(env: Env<CoreVariable>, name: 'ALLOWED_USERS' | 'BLOCKED_USERS'): Set<string> | undefined {
  const v = env.str(name);
  if (v === undefined) return undefined;
  const ids = v.split(/[\s,]+/).filter(Boolean);
  for (const id of ids) if (!/^[A-Za-z0-9_-]{6,64}$/.test(id)) throw new ConfigError(name, `"${id}" does not look like an OpenID`);
  return new Set(ids);
}

/** BLOCKED_WORDS (comma or new-line separated) and BLOCKED_WORDS_FILE (one word per line, # comments). */
function blockedWords(env: Env<CoreVariable>, readFile: ((path: string) => string) | undefined): string[] {
  const words = (env.str('BLOCKED_WORDS') ?? '').split(/[,\n]/);
  const file = env.str('BLOCKED_WORDS_FILE');
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


export interface CoreConfig {
  texts: Texts;
  /** Fixed replies to keywords, answered before the model and never sent to it (lib/core/keywords.ts). */
  keywords: KeywordReplies;
  /** Who may ask, how often, and what may be said (README "Limits and filters"). */
  guards: {
    /** Per user: at most `count` questions per window. */
    rateLimits: RateWindow[];
    /** For the whole deployment, per day (DAILY_QUESTION_BUDGET). */
    dailyBudget: number | undefined;
    /** Only these users may ask (ALLOWED_USERS); undefined: everyone. */
    allowedUsers: ReadonlySet<string> | undefined;
    blockedUsers: ReadonlySet<string>;
    /** BLOCKED_WORDS and the lines of BLOCKED_WORDS_FILE. */
    blockedWords: string[];
  };
  /** What a prompt carries of the user's earlier turns, for backends that keep no conversation. */
  history: { maxTurns: number; maxChars: number; idleResetMs: number };
  /** Pictures and voice (README "Pictures and voice"). */
  media: {
    /** A picture waits this long for the question about it. */
    imageWindowMs: number;
    /** Ask about a picture at once, with this prompt (IMAGE_PROMPT). */
    imagePrompt: string | undefined;
    /** Downloads (pictures, voice, an answer's files) larger than this are refused. */
    maxBytes: number;
    /** Hosts an answer's files are fetched from even on a private network (MEDIA_ALLOW_HOSTS, any port; a self-hosted Dify's /files/ always is: Answerer.filesUrl). */
    allowHosts: ReadonlySet<string>;
    /** At most this many files of an answer are delivered as files; the rest stay links (MEDIA_MAX_PER_ANSWER). */
    maxPerAnswer: number;
  };
  /** List the knowledge documents an answer used under it (CITATIONS=on). */
  citations: boolean;
  /** Answers in the request (lib/core/bot.ts): how long a delivery waits, and recovery. */
  delivery: {
    /** Each delivery answers by this long after it arrived. */
    replyDeadlineMs: number;
    /** `last`: wait through the platform's re-deliveries before the placeholder; `first`: placeholder at once. */
    placeholderMode: 'last' | 'first';
    /** A pending answer with no heartbeat for this long is taken over and asked again. */
    staleAfterMs: number;
    /** How often a waiting delivery looks at the store. */
    pollMs: number;
    /** A long-poll loop's lease outlives its last renewal by this long: after a crash another instance takes over then. */
    pollerTakeoverMs: number;
  };
  /** Signed requests further than this from now are rejected, on every channel that signs a time (WeChat, Discord); 0 disables the check. */
  signatureToleranceS: number;
  store: StoreSettings;
  /**
   * The Node server. `stopGraceMs`: after SIGTERM, how long deliveries in their reply window and
   * answers being written get before what is left is handed over for recovery (STOP_GRACE_S).
   */
  server: { port: number; host: string; maxBodyBytes: number; maxConnections: number; stopGraceMs: number };
  /** The answer page (lib/web/page/): off unless a public base URL is known. */
  page: PageConfig;
  /**
   * The operator console (lib/web/console/): off without ADMIN_TOKEN. `trustedProxyHeader`: the header
   * (lower-case) a reverse proxy in front writes the client's address into; none = the socket's peer.
   */
  console: { token: string | undefined; trustedProxyHeader: string | undefined };
  logLevel: LogLevel;
  /** LOG_FORMAT: JSON lines, readable lines, or readable when stdout is a terminal (`auto`). */
  logFormat: LogFormatSetting;
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
  /** Why the page is off although it was not switched off (logged once at start when a channel on uses the page: `ChannelKind.usesPage`). */
  warning?: string;
}


/** Which platform reads the config: laf derives PUBLIC_URL and serves pages from its own function. */
export interface LoadOptions {
  platform?: 'node' | 'laf';
  /** Reads BLOCKED_WORDS_FILE (and BOTS_FILE); the file system by default, none on laf. */
  readFile?: (path: string) => string;
  /** Channel kinds besides the registered ones (tests: the example channel of docs/channels.md). */
  extraKinds?: readonly ChannelKind[];
}

/** ADMIN_TOKEN: long enough that guessing it is hopeless (the console also limits attempts). */
function adminToken(env: Env<CoreVariable>): string | undefined {
  const t = env.str('ADMIN_TOKEN');
  if (t !== undefined && t.length < 24) throw new ConfigError('ADMIN_TOKEN', `must be at least 24 characters (got ${t.length}); e.g. the output of: openssl rand -base64 24`);
  return t;
}

/** MEDIA_ALLOW_HOSTS: host names (comma or space separated), lower case. */
function hostList(env: Env<CoreVariable>): ReadonlySet<string> {
  const hosts = (env.str('MEDIA_ALLOW_HOSTS') ?? '').split(/[\s,]+/).filter(Boolean).map((h) => h.toLowerCase());
  for (const h of hosts) if (!/^[a-z0-9.-]{1,253}$|^[0-9a-f:]{2,39}$/.test(h)) throw new ConfigError('MEDIA_ALLOW_HOSTS', `"${h}" is not a host name or address (no scheme, no port)`);
  return new Set(hosts);
}

/** TRUSTED_PROXY_HEADER: one header name, such as x-forwarded-for or x-real-ip. */
function trustedProxyHeader(env: Env<CoreVariable>): string | undefined {
  const v = env.str('TRUSTED_PROXY_HEADER');
  if (v === undefined) return undefined;
  if (!/^[A-Za-z0-9-]{1,64}$/.test(v)) throw new ConfigError('TRUSTED_PROXY_HEADER', `must be one header name, such as x-forwarded-for or x-real-ip (got "${v}")`);
  return v.toLowerCase();
}

export function loadCoreConfig(whole: Env, opts: LoadOptions = {}): CoreConfig {
  const env = whole.only(CORE_VARIABLES);
  // Read by lib/util/http.ts on each call out; a value that is no proxy would fail every one of them.
  for (const name of PROXY_VARIABLES) {
    const v = env.str(name);
    if (v && !parseProxy(v)) throw new ConfigError(name, 'must be a proxy URL, e.g. http://proxy.example:3128');
  }
  return {
    texts: env.json('BOT_TEXTS', parseTexts, DEFAULT_TEXTS),
    keywords: env.json('KEYWORD_REPLIES', (v) => parseKeywords(v, KEYWORD_REPLY_MAX_BYTES), { exact: {}, prefixes: [] }),
    guards: {
      rateLimits: parseRateLimit(env.str('RATE_LIMIT') ?? ''),
      dailyBudget: env.str('DAILY_QUESTION_BUDGET') === undefined ? undefined : env.int('DAILY_QUESTION_BUDGET', 0, 1, 10_000_000),
      allowedUsers: idList(env, 'ALLOWED_USERS'),
      blockedUsers: idList(env, 'BLOCKED_USERS') ?? new Set(),
      blockedWords: blockedWords(env, opts.readFile ?? (opts.platform === 'laf' ? undefined : (path) => readFileSync(path, 'utf8'))),
    },
    history: {
      maxTurns: env.int('HISTORY_MAX_TURNS', 10, 0, 100),
      maxChars: env.int('HISTORY_MAX_CHARS', 12_000, 0, 1_000_000),
      idleResetMs: env.duration('HISTORY_IDLE_RESET', 2 * 3_600_000, 1000, 30 * 86_400_000),
    },
    media: {
      imageWindowMs: env.int('IMAGE_WINDOW_S', 180, 10, 86_400) * 1000,
      imagePrompt: env.str('IMAGE_PROMPT'),
      maxBytes: env.int('MEDIA_MAX_BYTES', 10 * 1024 * 1024, 1024, 64 * 1024 * 1024),
      allowHosts: hostList(env),
      maxPerAnswer: env.int('MEDIA_MAX_PER_ANSWER', 4, 0, 20),
    },
    citations: env.bool('CITATIONS', false),
    delivery: {
      replyDeadlineMs: env.int('REPLY_DEADLINE_MS', 4500, 50, 60_000),
      placeholderMode: env.oneOf('PLACEHOLDER_MODE', ['last', 'first'] as const, 'last'),
      staleAfterMs: env.int('STALE_AFTER_MS', 30_000, 300, 3_600_000),
      pollMs: env.int('POLL_MS', 150, 5, 5000),
      pollerTakeoverMs: env.int('POLLER_TAKEOVER_S', 30, 1, 600) * 1000,
    },
    signatureToleranceS: env.int('SIGNATURE_TOLERANCE_S', 300, 0, 86_400 * 366),
    store: {
      kind: env.oneOf('STORE', ['auto', 'mongodb', 'embedded'] as const, 'auto'),
      mongoUri: env.str('MONGODB_URI'),
      mongoDb: env.str('MONGODB_DB'),
      dataDir: env.str('DATA_DIR') ?? './data',
      statsUtcOffsetMin: env.int('STATS_UTC_OFFSET_MIN', 480, -720, 840),
    },
    server: {
      port: env.int('PORT', 3000, 0, 65_535),
      host: env.str('HOST') ?? '0.0.0.0',
      maxBodyBytes: env.int('MAX_BODY_BYTES', 256 * 1024, 1024, 16 * 1024 * 1024),
      maxConnections: env.int('MAX_CONNECTIONS', 10_000, 100, 1_000_000),
      stopGraceMs: env.int('STOP_GRACE_S', 8, 0, 300) * 1000,
    },
    page: pageConfig(env, opts.platform ?? 'node'),
    console: { token: adminToken(env), trustedProxyHeader: trustedProxyHeader(env) },
    logLevel: env.oneOf('LOG_LEVEL', ['debug', 'info', 'warn', 'error'] as const, 'info'),
    logFormat: env.oneOf('LOG_FORMAT', ['auto', 'json', 'pretty'] as const, 'auto'),
  };
}

/** The core's secrets, for log redaction. */
export function coreSecrets(config: CoreConfig): (string | undefined)[] {
  return [config.console.token, config.store.mongoUri];
}

/** Commands a menu key may name and a user may type. */
export const COMMAND_NAMES = ['1', '/clear', '/help'] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/**
 * laf serves each app at https://<appid>.<domain>, and its storage at https://oss.<domain>
 * (docs/laf.md): with APPID and OSS_EXTERNAL_ENDPOINT the app's own URL can be derived. Not on
 * sealaf (IS_SEALAF=true: laf inside Sealos), whose storage is Sealos' own (objectstorageapi.…) and
 * whose app domains (`<appid>.sealos<region>.site`) no variable names: there PUBLIC_URL must be set.
 */
export function lafPublicUrl(env: Env<CoreVariable>): string | undefined {
  if (env.bool('IS_SEALAF', false)) return undefined;
  const appId = env.str('APPID') ?? env.str('APP_ID');
  const oss = /^(https?):\/\/oss\.([a-z0-9.-]+?)\/?$/i.exec(env.str('OSS_EXTERNAL_ENDPOINT') ?? '');
  if (!appId || !/^[a-z0-9-]+$/i.test(appId) || !oss) return undefined;
  return `${(oss[1] as string).toLowerCase()}://${appId.toLowerCase()}.${(oss[2] as string).toLowerCase()}`;
}

function pageConfig(env: Env<CoreVariable>, platform: 'node' | 'laf'): PageConfig {
  const wanted = env.bool('ANSWER_PAGE', true);
  const given = env.str('PUBLIC_URL');
  let publicUrl: string | undefined;
  if (given !== undefined) {
    const parsed = new URL(env.url('PUBLIC_URL', given));
    if (parsed.search || parsed.hash || parsed.username || parsed.password) throw new ConfigError('PUBLIC_URL', 'must be a plain base URL such as https://bot.example.com (no query, fragment or credentials)');
    // The normalised form: links are written into replies, so nothing odd from the input survives.
    publicUrl = parsed.href.replace(/\/+$/, '');
  } else if (platform === 'laf') {
    publicUrl = lafPublicUrl(env);
  }
  const base = {
    publicUrl,
    routes: platform === 'laf' ? ('laf' as const) : ('path' as const),
    ttlMs: env.duration('ANSWER_PAGE_TTL', 7 * 86_400_000, 60_000, 7 * 86_400_000),
    maxStreams: env.int('ANSWER_PAGE_MAX_STREAMS', 2000, 1, 100_000),
  };
  if (!wanted) return { enabled: false, ...base };
  if (!publicUrl) {
    const warning =
      platform !== 'laf'
        ? 'answer page off: set PUBLIC_URL to the address your users’ browsers can open (e.g. https://bot.example.com), so that replies can link to their answers, or ANSWER_PAGE=off to silence this'
        : env.bool('IS_SEALAF', false)
          ? 'answer page off: on sealaf set PUBLIC_URL to this app\'s address, https://<appid>.sealos<region>.site as the function list shows it (e.g. https://abc1234567.sealosbja.site), or ANSWER_PAGE=off'
          : 'answer page off: set PUBLIC_URL to this app\'s address (e.g. https://<appid>.laf.run); it could not be derived from APPID and OSS_EXTERNAL_ENDPOINT';
    return { enabled: false, ...base, warning };
  }
  return { enabled: true, ...base };
}

/** The answer page's token in links: 22 base64url characters (lib/web/page/token.ts). */
export const PAGE_TOKEN_CHARS = 22;

/** The link to a question's answer page, as a path and query under PUBLIC_URL. */
export function pagePath(routes: PageConfig['routes'], token: string): string {
  return routes === 'laf' ? `/answer?t=${token}` : `/a/${token}`;
}

/** A WeChat text link: `<a href="…">text</a>` (the URL is ours: no quote or markup can be in it). */
export function linkMarkup(page: PageConfig, token: string, text: string): string {
  return `<a href="${page.publicUrl ?? ''}${pagePath(page.routes, token)}">${text}</a>`;
}


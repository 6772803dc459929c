/**
 * Structured logging: one JSON object a line, for services and log collectors (the default), or,
 * for a person at a terminal (LOG_FORMAT=pretty, or `auto` on a TTY), one readable line per event:
 * time, level, message and the fields as `key=value`, coloured where the terminal shows colour.
 * Every line passes through `redact`, which replaces any configured secret (token, keys, access
 * tokens) wherever it appears, so a secret that slips into an error message still never reaches the log;
 * users' ids in key fields are masked (`maskIds`).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** LOG_FORMAT: `auto` is `pretty` when stdout is a terminal, else `json`. */
export type LogFormatSetting = 'auto' | 'json' | 'pretty';
export type LogFormat = 'json' | 'pretty';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Add a secret discovered at run time (e.g. a fresh access_token). */
  addSecret(secret: string): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  level?: LogLevel;
  secrets?: readonly string[];
  /** Where lines go; defaults to stdout/stderr. */
  sink?: (line: string, level: LogLevel) => void;
  now?: () => number;
  /** `json` (default): one JSON object a line; `pretty`: one readable line. */
  format?: LogFormat;
  /** Colour the pretty lines (ANSI escapes): only when they go to a terminal. */
  color?: boolean;
}

/** The format and colour for LOG_FORMAT, given whether the output is a terminal. */
export function logFormatFor(setting: LogFormatSetting, isTty: boolean | undefined): { format: LogFormat; color: boolean } {
  const format = setting === 'auto' ? (isTty ? 'pretty' : 'json') : setting;
  return { format, color: format === 'pretty' && isTty === true };
}

const COLORS: Record<LogLevel, string> = { debug: '\x1b[90m', info: '\x1b[36m', warn: '\x1b[33m', error: '\x1b[31m' };
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
const BOLD = '\x1b[1m';

const pad2 = (n: number) => String(n).padStart(2, '0');

/** A field's value as a person reads it: plain words bare, anything with spaces or quotes as JSON. */
function fieldText(v: unknown): string {
  if (typeof v === 'string') return v !== '' && /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v);
  if (v === undefined) return 'undefined';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return '[unserialisable]';
  }
}

/**
 * One event as a readable line: `12:03:04.567 INFO  answer ready key=o1:42 ms=2345`, the time in
 * this machine's zone. Each part is redacted before colour goes between them.
 */
export function prettyLine(t: number, level: LogLevel, msg: string, fields: Record<string, unknown> | undefined, secrets: Iterable<string>, color: boolean): string {
  const d = new Date(t);
  const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  const lvl = level.toUpperCase().padEnd(5);
  const parts = Object.entries(fields ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [redact(k, secrets), redact(fieldText(v), secrets)] as const);
  const text = redact(msg, secrets);
  if (!color) return [time, lvl, text, ...parts.map(([k, v]) => `${k}=${v}`)].join(' ');
  const c = COLORS[level];
  return [`${DIM}${time}${RESET}`, `${c}${lvl}${RESET}`, level === 'error' || level === 'warn' ? `${BOLD}${text}${RESET}` : text, ...parts.map(([k, v]) => `${DIM}${k}=${RESET}${v}`)].join(' ');
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const min = ORDER[opts.level ?? 'info'];
  const secrets = new Set<string>();
  const add = (s: string) => {
    // Very short values would redact ordinary words; settings validation rejects such secrets anyway.
    if (s && s.length >= 6) secrets.add(s);
  };
  (opts.secrets ?? []).forEach(add);
  const now = opts.now ?? Date.now;
  // console, not process.stdout: on laf only console output reaches the function log.
  const sink = opts.sink ?? ((line: string, level: LogLevel) => (level === 'error' || level === 'warn' ? console.error(line) : console.log(line)));

  const pretty = opts.format === 'pretty';
  const color = opts.color === true;
  const write = (level: LogLevel, msg: string, given?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const fields = given && maskUserFields(given);
    if (pretty) {
      sink(prettyLine(now(), level, msg, fields, secrets, color), level);
      return;
    }
    let line: string;
    try {
      line = JSON.stringify({ t: new Date(now()).toISOString(), level, msg, ...fields });
    } catch {
      line = JSON.stringify({ t: new Date(now()).toISOString(), level, msg, note: 'unserialisable fields' });
    }
    sink(redact(line, secrets), level);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    addSecret: add,
  };
}

/**
 * A logger for lines anyone on the internet can cause (a refused signature, a wrong login): each message
 * is written at most `perMinute` times a minute, and the first of it in a later minute says how many
 * were left out (`notLogged`), so a flood of bad requests cannot flood the log. Errors always pass.
 */
export function floodGuard(logger: Logger, perMinute = 10, now: () => number = Date.now): Logger {
  const seen = new Map<string, { minute: number; n: number; left: number }>();
  const pass = (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => {
    const minute = Math.floor(now() / 60_000);
    let s = seen.get(msg);
    if (!s || s.minute !== minute) {
      const left = s?.left ?? 0;
      if (!s && seen.size >= 1000) seen.clear();
      s = { minute, n: 0, left: 0 };
      seen.set(msg, s);
      if (left > 0) fields = { ...fields, notLogged: left };
    }
    if (++s.n > perMinute) {
      s.left++;
      return;
    }
    logger[level](msg, fields);
  };
  return {
    debug: (m, f) => pass('debug', m, f),
    info: (m, f) => pass('info', m, f),
    warn: (m, f) => pass('warn', m, f),
    error: (m, f) => logger.error(m, f),
    addSecret: (x) => logger.addSecret(x),
  };
}

/** Fields that hold a conversation or message key, or a platform's user id. */
const USER_FIELDS = new Set(['key', 'user', 'to', 'from', 'openid']);
/** A channel's tag at the head of a key (`ilink`, `wechat-oa@shop`): kept, it says where a line is from. */
const KEY_TAG = /^[a-z][a-z0-9-]{0,15}(?:@[a-z][a-z0-9-]{0,31})?$/;

/**
 * Users' ids (OpenIDs, LINE and WeCom user ids, personal-WeChat ids) masked in keys as the console masks
 * them (docs/console.md): the first and last 4 characters, enough to follow one user through the log
 * and tell users apart, not enough to reuse. A key's channel tag, message numbers and short names (an
 * API client's own user names, instance ids) stay readable.
 */
export function maskIds(value: string): string {
  const segs = value.split(':');
  return segs
    .map((seg, i) => (seg.length <= 8 || /^\d+$/.test(seg) || (i === 0 && segs.length > 1 && KEY_TAG.test(seg)) ? seg : `${seg.slice(0, 4)}…${seg.slice(-4)}`))
    .join(':');
}

function maskUserFields(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k of Object.keys(fields)) {
    const v = fields[k];
    if (!USER_FIELDS.has(k) || typeof v !== 'string') continue;
    out ??= { ...fields };
    out[k] = maskIds(v);
  }
  return out ?? fields;
}

export function redact(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join('[redacted]');
    // JSON.stringify may have escaped characters of the secret; check that form too.
    const escaped = JSON.stringify(s).slice(1, -1);
    if (escaped !== s && out.includes(escaped)) out = out.split(escaped).join('[redacted]');
  }
  return out;
}

/** A logger that keeps lines in memory: for tests and the demo. */
export function memoryLogger(opts: Omit<LoggerOptions, 'sink'> = {}): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', ...opts, sink: (line) => lines.push(line) });
  return Object.assign(logger, { lines });
}

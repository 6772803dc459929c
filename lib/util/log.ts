/**
 * Structured logging: one JSON object a line. Every line passes through `redact`, which replaces
 * any configured secret (token, keys, access tokens) wherever it appears, so a secret that slips
 * into an error message still never reaches the log.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

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

  const write = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
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

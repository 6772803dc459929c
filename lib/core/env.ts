/**
 * Reading the environment (README "Configuration"). Each module (the core, every channel, every
 * backend) declares the variables it reads in one list and reads them only through `Env.only(list)`,
 * whose methods accept exactly those names (checked by the compiler, and again at run time). So the
 * list of every variable the bot reads, which laf's rebuild fingerprint needs (lib/adapters/laf/entry.ts),
 * is the union of the modules' lists and cannot drift from what they read. Every error names the
 * variable to fix and never carries its value when the value may be a secret.
 */
import { ConfigError } from '../errors';

export type RawEnv = Readonly<Record<string, string | undefined>>;

export class Env<N extends string = string> {
  private constructor(
    private readonly raw: RawEnv,
    private readonly names: ReadonlySet<string> | undefined,
  ) {}

  /** The whole environment; narrow it with `only` before reading. */
  static of(raw: RawEnv): Env<never> {
    return new Env<never>(raw, new Set());
  }

  /** A reader of just `names` (a module's declared variables). */
  only<M extends string>(names: readonly M[]): Env<M> {
    return new Env<M>(this.raw, new Set(names));
  }

  /** The same names over other values (an instance's overrides on top: lib/config.ts `BOTS`). */
  over(extra: RawEnv): Env<N> {
    return new Env<N>({ ...this.raw, ...extra }, this.names);
  }

  private value(name: N): string | undefined {
    if (this.names && !this.names.has(name)) throw new Error(`${name} is read but not declared in its module's variable list`);
    return this.raw[name];
  }

  /** The trimmed value; undefined when unset or blank. */
  str(name: N): string | undefined {
    const v = this.value(name);
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  /** The value exactly as set (multi-line texts), undefined when blank. */
  text(name: N): string | undefined {
    const v = this.value(name);
    return v === undefined || v.trim() === '' ? undefined : v;
  }

  has(name: N): boolean {
    return this.str(name) !== undefined;
  }

  required(name: N, hint: string): string {
    const v = this.str(name);
    if (v === undefined) throw new ConfigError(name, `is required (${hint})`);
    return v;
  }

  int(name: N, def: number, min: number, max: number): number {
    const v = this.str(name);
    if (v === undefined) return def;
    if (!/^-?\d+$/.test(v)) throw new ConfigError(name, `must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  /** A number in [min, max], or undefined when unset. */
  num(name: N, min: number, max: number): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new ConfigError(name, `must be a number between ${min} and ${max}, got "${v}"`);
    return n;
  }

  bool(name: N, def: boolean): boolean {
    const v = this.str(name)?.toLowerCase();
    if (v === undefined) return def;
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw new ConfigError(name, `must be true or false, got "${v}"`);
  }

  /** An http(s) URL without trailing slashes. */
  url(name: N, def: string): string {
    const v = this.str(name) ?? def;
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      throw new ConfigError(name, `must be an http(s) URL, got "${v}"`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConfigError(name, `must be an http(s) URL, got "${v}"`);
    return v.replace(/\/+$/, '');
  }

  json<T>(name: N, check: (v: unknown) => T, def: T): T {
    const v = this.str(name);
    if (v === undefined) return def;
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      throw new ConfigError(name, 'must be valid JSON');
    }
    return check(parsed);
  }

  /** `7d`, `12h`, `30m`, `90s` or plain seconds, as milliseconds. */
  duration(name: N, defMs: number, minMs: number, maxMs: number): number {
    const v = this.str(name);
    if (v === undefined) return defMs;
    const m = /^(\d+)\s*(s|m|h|d)?$/i.exec(v);
    if (!m) throw new ConfigError(name, `must be a duration such as 7d, 12h, 30m or 3600 (seconds), got "${v}"`);
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's').toLowerCase() as 's' | 'm' | 'h' | 'd'];
    const ms = Number(m[1]) * unit;
    if (ms < minMs || ms > maxMs) throw new ConfigError(name, `must be between ${minMs / 1000} s and ${maxMs / 86_400_000} days, got "${v}"`);
    return ms;
  }

  /** One of `allowed`, or `def` when unset. */
  oneOf<T extends string>(name: N, allowed: readonly T[], def: T): T {
    const v = this.str(name) ?? def;
    if (!(allowed as readonly string[]).includes(v)) throw new ConfigError(name, `must be ${allowed.slice(0, -1).join(', ')}${allowed.length > 1 ? ' or ' : ''}${allowed[allowed.length - 1]}, got "${v}"`);
    return v as T;
  }
}

/** A JSON object whose values are all strings. */
export function stringRecord(name: string, v: unknown): Record<string, string> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(name, 'must be a JSON object');
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new ConfigError(name, `value of "${k}" must be a string`);
  }
  return v as Record<string, string>;
}

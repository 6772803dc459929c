/**
 * The HTTP API's settings (README "Web chat and API"): on with API_KEYS. Keys are kept only as
 * SHA-256 digests (lib/channels/api/keys.ts); no error message ever carries one.
 */
import type { SettingsContext } from '../../core/channel';
import type { Env } from '../../core/env';
import type { RateWindow } from '../../core/settings';
import { parseRateLimit } from '../../core/settings';
import { ConfigError } from '../../errors';
import type { ApiKey } from './keys';
import { hashKey } from './keys';

export const API_VARIABLES = ['API_KEYS', 'API_RATE_LIMIT', 'API_CORS_ORIGINS', 'API_MAX_STREAMS', 'API_MODEL_NAME'] as const;

/** A key is at least this long: guessing one is hopeless. */
export const API_KEY_MIN_CHARS = 24;

/** Path segments under the API's prefixes: an instance (BOTS) id equal to one would hide them. */
const RESERVED_INSTANCE_IDS = ['chat', 'conversations', 'models', 'openapi'];

export interface ApiSettings {
  keys: ApiKey[];
  /** Per key (all its users together): at most `count` requests per window (API_RATE_LIMIT). */
  rateLimits: RateWindow[];
  /** Origins a browser may call the API from (API_CORS_ORIGINS); `*` any; none: CORS off. */
  corsOrigins: readonly string[];
  /** Requests that wait for an answer (streams and JSON) one process holds at once. */
  maxStreams: number;
  /** The model id `GET /v1/models` lists and `/v1/chat/completions` accepts. */
  modelName: string;
}

/** `name:key` pairs, separated by commas, spaces or new lines. */
function parseKeys(text: string): ApiKey[] {
  const keys: ApiKey[] = [];
  const names = new Set<string>();
  const digests = new Set<string>();
  for (const [i, pair] of text.split(/[\s,]+/).filter(Boolean).entries()) {
    const at = pair.indexOf(':');
    const name = at === -1 ? '' : pair.slice(0, at);
    const key = at === -1 ? '' : pair.slice(at + 1);
    // The message names the pair by position and name, never by its key.
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(name)) throw new ConfigError('API_KEYS', `pair ${i + 1} must be name:key with a name of 1-32 letters, digits, _ or - (e.g. app1:$(openssl rand -base64 24))`);
    if (names.has(name)) throw new ConfigError('API_KEYS', `the name "${name}" is given twice`);
    if (key.length < API_KEY_MIN_CHARS) throw new ConfigError('API_KEYS', `the key of "${name}" must be at least ${API_KEY_MIN_CHARS} characters (e.g. openssl rand -base64 24)`);
    if (key.length > 256 || !/^[\x21-\x7e]+$/.test(key)) throw new ConfigError('API_KEYS', `the key of "${name}" must be at most 256 printable ASCII characters without spaces or commas`);
    const hash = hashKey(key);
    if (digests.has(hash.toString('hex'))) throw new ConfigError('API_KEYS', `the key of "${name}" is also another name's key`);
    names.add(name);
    digests.add(hash.toString('hex'));
    keys.push({ name, hash });
  }
  return keys;
}

function parseOrigins(text: string | undefined): string[] {
  const out: string[] = [];
  for (const o of (text ?? '').split(/[\s,]+/).filter(Boolean)) {
    if (o === '*') {
      out.push(o);
      continue;
    }
    let u: URL;
    try {
      u = new URL(o);
    } catch {
      throw new ConfigError('API_CORS_ORIGINS', `"${o}" is not an origin such as https://chat.example.com (or *)`);
    }
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.origin !== o.replace(/\/$/, '')) throw new ConfigError('API_CORS_ORIGINS', `"${o}" is not an origin such as https://chat.example.com (scheme, host and port only)`);
    out.push(u.origin);
  }
  return out;
}

export function apiSettings(whole: Env, ctx: SettingsContext): ApiSettings | undefined {
  const env = whole.only(API_VARIABLES);
  const text = env.str('API_KEYS');
  if (text === undefined) return undefined;
  if (RESERVED_INSTANCE_IDS.includes(ctx.instance)) throw new ConfigError('BOTS', `"${ctx.instance}" cannot be the id of an API instance: its paths would hide the API's own (${RESERVED_INSTANCE_IDS.join(', ')})`);
  const keys = parseKeys(text);
  if (keys.length === 0) throw new ConfigError('API_KEYS', 'lists no name:key pair');
  let rateLimits: RateWindow[];
  try {
    rateLimits = parseRateLimit(env.str('API_RATE_LIMIT') ?? '');
  } catch (err) {
    throw err instanceof ConfigError ? new ConfigError('API_RATE_LIMIT', err.message.replace(/^RATE_LIMIT: /, '')) : err;
  }
  const modelName = env.str('API_MODEL_NAME') ?? 'wechat-dify-bot';
  if (!/^[A-Za-z0-9._:/-]{1,64}$/.test(modelName)) throw new ConfigError('API_MODEL_NAME', `must be 1-64 letters, digits or . _ : / - (got "${modelName}")`);
  return {
    keys,
    rateLimits,
    corsOrigins: parseOrigins(env.str('API_CORS_ORIGINS')),
    maxStreams: env.int('API_MAX_STREAMS', 5000, 1, 100_000),
    modelName,
  };
}

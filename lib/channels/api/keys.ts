/**
 * API keys (README "Web chat and API"): only their SHA-256 digests are kept, and a presented key is
 * hashed and compared with every one of them in constant time, so neither the comparison nor which
 * key matched shows in the time taken. Every bad credential (none, another scheme, malformed,
 * unknown) is the same failure.
 */
import { createHash, timingSafeEqual } from 'crypto';

export interface ApiKey {
  /** The name it was given in API_KEYS: part of its users' conversation keys, and of logs. */
  name: string;
  /** SHA-256 of the key. */
  hash: Buffer;
}

export const hashKey = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

/** The key an `Authorization: Bearer <key>` header presents, if it is one of `keys`. */
export function findKey(keys: readonly ApiKey[], authorization: string | undefined): ApiKey | undefined {
  const m = /^Bearer[ \t]+(\S{1,512})[ \t]*$/i.exec(authorization ?? '');
  // A missing or malformed header still costs one hash and every comparison.
  const presented = hashKey(m?.[1] ?? '');
  let found: ApiKey | undefined;
  for (const k of keys) {
    if (timingSafeEqual(k.hash, presented) && m) found ??= k;
  }
  return found;
}

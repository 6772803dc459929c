/**
 * Answer-page tokens (docs/answer-page.md). A question's token is an HMAC of its key under a random
 * secret the store keeps, so any instance and any delivery can write the same link without
 * storing the token itself; the record keeps only the token's SHA-256, by which a page request
 * finds it. 22 base64url characters carry 132 bits: not guessable, and nothing in it names the user.
 */
import { createHash, createHmac } from 'crypto';
import { PAGE_TOKEN_CHARS } from '../../core/settings';

export function pageToken(secret: Buffer, questionKey: string): string {
  return createHmac('sha256', secret).update(`answer-page:${questionKey}`).digest('base64url').slice(0, PAGE_TOKEN_CHARS);
}

/** What the store keeps and looks up: the token's hash (a lookup by it leaks no timing about the token). */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

const SHAPE = new RegExp(`^[A-Za-z0-9_-]{${PAGE_TOKEN_CHARS}}$`);

/** Could this be a token at all? Anything else is answered like an unknown token, without a lookup. */
export function wellFormedToken(token: string): boolean {
  return SHAPE.test(token);
}

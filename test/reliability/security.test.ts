/**
 * Security: signature checks that can't be guessed byte by byte, replays refused, secrets never
 * logged. (Every harness-based test also fails if a secret reaches a log line: test/support/harness.ts.)
 */
import { readFileSync, readdirSync } from 'fs';
import { join } from 'path';
import { fileURLToPath } from 'url';
import { afterEach, describe, expect, it } from 'vitest';
import { sha1Signature } from '../../lib/wechat/signature';
import { DIFY_KEY, TOKEN, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { call, textXml } from '../support/wire';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let h: Harness;
afterEach(async () => h?.close());

const libFiles = () =>
  readdirSync(join(ROOT, 'lib'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.startsWith('sim'))
    .map((f) => [f, readFileSync(join(ROOT, 'lib', f), 'utf8')] as const);

/** Lines comparing a signature/digest with ===, !==, startsWith or includes (not with undefined). */
function unsafeComparisons(src: string): string[] {
  return src
    .split('\n')
    .filter((line) => /signature|Signature|(?<![A-Za-z])(expected|digest)\b/.test(line) && /===|!==|\.startsWith\(|\.includes\(/.test(line))
    .filter((line) => !/[!=]==\s*(undefined|null)\b|typeof|\.length/.test(line))
    .map((line) => line.trim());
}

describe('signature comparison', () => {
  it('the structural check catches a plain comparison', () => {
    expect(unsafeComparisons("if (expected === q['signature']) return;")).toHaveLength(1);
    expect(unsafeComparisons('return sig.startsWith(expected);')).toHaveLength(1);
    expect(unsafeComparisons("if (fields['MsgSignature'] !== sig) fail();")).toHaveLength(1);
    expect(unsafeComparisons("if (q['msg_signature'] !== undefined) x();")).toHaveLength(0);
    expect(unsafeComparisons('if (open.pop() !== name) throw malformed(`unexpected </${name}>`);')).toHaveLength(0);
  });

  it('compares digests only with crypto.timingSafeEqual, never with ===, startsWith or includes', () => {
    // A timing test can't see a 40-byte === on a noisy machine; the structure can (bench/ measures timing).
    for (const [file, src] of libFiles()) expect({ file, unsafe: unsafeComparisons(src) }).toEqual({ file, unsafe: [] });
    const sig = readFileSync(join(ROOT, 'lib/wechat/signature.ts'), 'utf8');
    expect(sig).toMatch(/timingSafeEqual\(a, b\)/);
    const handler = readFileSync(join(ROOT, 'lib/bot/handler.ts'), 'utf8');
    expect(handler).toMatch(/safeEqualHex\(expected, q\['msg_signature'\]/);
  });

  it('refuses every prefix, extension and one-character change of a valid signature over HTTP', async () => {
    h = await startHarness();
    const ts = String(Math.floor(Date.now() / 1000));
    const good = sha1Signature([TOKEN, ts, 'n']);
    const tries = [good.slice(0, 39), good.slice(0, 20), good + 'a', good.slice(1), good.replace(/.$/, (c) => (c === '0' ? '1' : '0')), ''];
    for (const sig of tries) {
      const r = await call(`${h.url}?signature=${sig}&timestamp=${ts}&nonce=n`, { method: 'POST', body: textXml('oSig', 'x', '1') });
      expect(r.status).toBe(401);
    }
    expect((await call(`${h.url}?signature=${good}&timestamp=${ts}&nonce=n`, { method: 'POST', body: textXml('oSig', '/help', '2') })).status).toBe(200);
  });

  it('refuses a correctly signed request replayed after the tolerance, and one from the future', async () => {
    h = await startHarness({ env: { SIGNATURE_TOLERANCE_S: '60' } });
    for (const offset of [-61, 61]) {
      const ts = String(Math.floor(Date.now() / 1000) + offset);
      const r = await call(`${h.url}?signature=${sha1Signature([TOKEN, ts, 'n'])}&timestamp=${ts}&nonce=n`, { method: 'POST', body: textXml('oReplay', 'x', '3') });
      expect(r.status).toBe(401);
    }
  });
});

describe('secrets in logs', () => {
  it('a Dify error page that echoes the key is logged with the key redacted', async () => {
    h = await startHarness({ dify: { script: () => ({ kind: 'http', status: 502, body: `<html>upstream rejected Authorization: Bearer ${DIFY_KEY}</html>` }) } });
    await h.wechat.send('oEcho', 'hi');
    const log = h.logs.join('\n');
    expect(log).toContain('[redacted]');
    expect(log).not.toContain(DIFY_KEY);
  });

  it('configuration errors name the variable, never its value', async () => {
    const { loadConfig } = await import('../../lib/config');
    expect(() => loadConfig({ WECHAT_TOKEN: 'bad token with spaces', DIFY_API_KEY: 'app-secret-value-1' })).toThrow(/^WECHAT_TOKEN: /);
    try {
      loadConfig({ WECHAT_TOKEN: 'bad token with spaces', DIFY_API_KEY: 'app-secret-value-1' });
    } catch (err) {
      expect(String(err)).not.toContain('bad token with spaces');
    }
  });
});

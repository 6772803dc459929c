/**
 * Security: signature checks that can't be guessed byte by byte, replays refused, secrets never
 * logged. (Every harness-based test also fails if a secret reaches a log line: test/support/harness.ts.)
 */
import { join } from 'path';
import { fileURLToPath } from 'url';
import { afterEach, describe, expect, it } from 'vitest';
import { sha1Signature } from '../../lib/channels/wxbiz/signature';
import { DIFY_KEY, TOKEN, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { call, textXml } from '../support/wire';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let h: Harness;
afterEach(async () => h?.close());

describe('signature comparison', () => {
  // A timing test can't see a 40-byte === on a noisy machine (bench/ measures the ratio); the lint rule
  // in eslint.config.mjs, run on lib/ by `npm test`, forbids the comparison itself.
  it('the lint rule refuses a signature or digest compared with ===, startsWith or includes, and allows presence checks', async () => {
    const { ESLint } = await import('eslint');
    const eslint = new ESLint({ cwd: ROOT });
    const lint = async (code: string) =>
      (await eslint.lintText(code, { filePath: join(ROOT, 'lib/probe.ts') }))[0]?.messages.filter((m) => m.ruleId === 'no-restricted-syntax').length ?? 0;
    const wrap = (body: string) => `export function f(expected: string, q: Record<string, string>, signature: string, d: { digest: string }): boolean {\n${body}\n  return false;\n}\n`;
    expect(await lint(wrap("  if (expected === q['signature']) return true;"))).toBeGreaterThan(0);
    expect(await lint(wrap('  if (signature.startsWith(expected)) return true;'))).toBeGreaterThan(0);
    expect(await lint(wrap("  if (q['msg_signature'] !== signature) return true;"))).toBeGreaterThan(0);
    expect(await lint(wrap("  if (d.digest == 'x') return true;"))).toBeGreaterThan(0);
    expect(await lint(wrap("  if (q['msg_signature'] !== undefined && q['signature'] !== null) return true;"))).toBe(0);
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

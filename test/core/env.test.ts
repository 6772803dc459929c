/**
 * Configuration per module (lib/core/env.ts): a module reads only the variables it declares, the
 * list of every variable (laf's rebuild fingerprint) is their union, and the README's table names
 * each one; a deployment runs any subset of channels, needing only their variables.
 */
import { readFileSync } from 'fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, loadConfig } from '../../lib/config';
import { Env } from '../../lib/core/env';
import { ConfigError } from '../../lib/errors';

describe('configuration per module', () => {
  it('a module cannot read a variable it did not declare', () => {
    const env = Env.of({ A: '1', B: '2' }).only(['A'] as const);
    expect(env.str('A')).toBe('1');
    expect(() => (env as unknown as Env<'B'>).str('B')).toThrow(/not declared/);
  });

  it('the README’s configuration table names every variable the bot reads', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const rows = readme.split('\n').filter((l) => l.startsWith('| `'));
    const named = new Set(rows.flatMap((r) => [...(r.split('|')[1] ?? '').matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1] as string)));
    const missing = CONFIG_VARIABLES.map((v) => v.toUpperCase()).filter((v) => !named.has(v));
    expect(missing).toEqual([]);
  });

  it('runs any subset of channels: only the variables of those on are required', () => {
    const line = { LINE_CHANNEL_SECRET: '0123456789abcdef0123456789abcdef', LINE_CHANNEL_ACCESS_TOKEN: 'tok', DIFY_API_KEY: 'app-x' };
    expect(loadConfig(line).channels.map((c) => c.kind.kind)).toEqual(['line']);
    expect(loadConfig({ ...line, WECHAT_TOKEN: 'token123' }).channels.map((c) => c.kind.kind)).toEqual(['wechat-oa', 'line']);
    // Nothing on at all is an error that says what turns a channel on.
    let err: unknown;
    try {
      loadConfig({ DIFY_API_KEY: 'app-x' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/no channel is on.*wechat-oa, line, discord/);
  });
});

/**
 * The web chat's settings and its visitor cookie codec (lib/channels/web/settings.ts,
 * lib/web/chat/visitor.ts): off by default, every bad value named, a deployment with only the chat
 * on, and a cookie nobody can make up or move to another visitor.
 */
import { randomBytes } from 'crypto';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../lib/config';
import { web } from '../../../lib/channels/web/channel';
import { ConfigError } from '../../../lib/errors';
import { csrfOf, gateOf, newVisitorId, openVisitor, sealVisitor } from '../../../lib/web/chat/visitor';

const base = { DIFY_API_KEY: 'app-x' };
const chat = (env: Record<string, string>) => loadConfig({ ...base, WEB_CHAT: 'on', ...env }).channels.find((c) => c.kind === web)?.settings;

describe('web chat settings', () => {
  it('is off unless WEB_CHAT=on; on, it is a deployment of its own (no other channel needed)', () => {
    expect(loadConfig({ ...base, WECHAT_TOKEN: 'token123' }).channels.map((c) => c.kind.kind)).toEqual(['wechat-oa']);
    expect(loadConfig({ ...base, WEB_CHAT: 'on' }).channels.map((c) => c.kind.kind)).toEqual(['web']);
    expect(chat({})).toEqual({ accessCode: undefined, embedOrigins: [], ipLimits: [expect.objectContaining({ count: 60, unit: 'h' }), expect.objectContaining({ count: 300, unit: 'd' })], title: '在线问答' });
  });

  it('reads the access code, the embedding origins, the per-address limit and the title', () => {
    expect(chat({ WEB_CHAT_ACCESS_CODE: 'abcdef', WEB_CHAT_EMBED_ORIGINS: 'https://a.example/ http://localhost:8080,https://*.b.example', WEB_CHAT_IP_LIMIT: '5/m', WEB_CHAT_TITLE: '小助手' })).toEqual({
      accessCode: 'abcdef',
      embedOrigins: ['https://a.example', 'http://localhost:8080', 'https://*.b.example'],
      ipLimits: [expect.objectContaining({ count: 5, unit: 'm', windowMs: 60_000 })],
      title: '小助手',
    });
    expect(chat({ WEB_CHAT_IP_LIMIT: 'off' })).toMatchObject({ ipLimits: [] });
  });

  it('names the variable of every bad value', () => {
    const bad: [Record<string, string>, string][] = [
      [{ WEB_CHAT: 'maybe' }, 'WEB_CHAT'],
      [{ WEB_CHAT_ACCESS_CODE: '12345' }, 'WEB_CHAT_ACCESS_CODE'],
      [{ WEB_CHAT_EMBED_ORIGINS: "https://a.example; script-src 'unsafe-inline'" }, 'WEB_CHAT_EMBED_ORIGINS'],
      [{ WEB_CHAT_EMBED_ORIGINS: 'https://a.example/path' }, 'WEB_CHAT_EMBED_ORIGINS'],
      [{ WEB_CHAT_EMBED_ORIGINS: '*' }, 'WEB_CHAT_EMBED_ORIGINS'],
      [{ WEB_CHAT_IP_LIMIT: '10 per hour' }, 'WEB_CHAT_IP_LIMIT'],
      [{ WEB_CHAT_TITLE: 'x'.repeat(61) }, 'WEB_CHAT_TITLE'],
    ];
    for (const [env, variable] of bad) {
      let err: unknown;
      try {
        chat(env);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(env)).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
    }
  });

  it('has one instance: a BOTS entry for it is refused', () => {
    expect(() => loadConfig({ ...base, WEB_CHAT: 'on', BOTS: JSON.stringify([{ id: 'two', channel: 'web', env: { WEB_CHAT: 'on' } }]) })).toThrow(/one instance/);
  });
});

describe('the visitor cookie', () => {
  const secret = randomBytes(32);
  it('opens what it sealed, with its access-code mark', () => {
    const v = { id: newVisitorId(), gate: gateOf(secret, 'abcdef') };
    expect(openVisitor(secret, sealVisitor(secret, v))).toEqual(v);
    expect(openVisitor(secret, sealVisitor(secret, { id: v.id, gate: '' }))).toEqual({ id: v.id, gate: '' });
  });

  it('refuses another key, another id, an added mark, and anything malformed', () => {
    const v = { id: newVisitorId(), gate: '' };
    const sealed = sealVisitor(secret, v);
    const [, , sig] = sealed.split('.');
    expect(openVisitor(randomBytes(32), sealed)).toBeUndefined();
    expect(openVisitor(secret, `${newVisitorId()}..${sig}`)).toBeUndefined();
    expect(openVisitor(secret, `${v.id}.${gateOf(secret, 'abcdef')}.${sig}`)).toBeUndefined();
    for (const junk of [undefined, '', 'x', `${v.id}.`, `${sealed}x`, `${v.id}..${'A'.repeat(43)}`]) expect(openVisitor(secret, junk)).toBeUndefined();
  });

  it('a CSRF token per visitor; an access-code mark per code', () => {
    expect(csrfOf(secret, 'a'.repeat(22))).not.toBe(csrfOf(secret, 'b'.repeat(22)));
    expect(gateOf(secret, 'abcdef')).not.toBe(gateOf(secret, 'abcdeg'));
    expect(gateOf(secret, 'abcdef')).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });
});

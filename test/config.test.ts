import { describe, expect, it } from 'vitest';
import { loadConfig, secretsOf } from '../lib/config';
import type { Config } from '../lib/config';
import { DEFAULT_TEXTS } from '../lib/core/texts';
import { replyReserveBytes } from '../lib/channels/wechat-oa/pages';
import type { DifySettings } from '../lib/backends/dify/settings';
import type { OpenAISettings } from '../lib/backends/openai/settings';
import { wechatSettings } from './support/harness';

const dify = (c: Config) => c.backend.settings as DifySettings;
const openai = (c: Config) => c.backend.settings as OpenAISettings;
import { ConfigError } from '../lib/errors';

const base = { WECHAT_TOKEN: 'token123', DIFY_API_KEY: 'app-xyz' };
const fails = (env: Record<string, string>, variable: string) => {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe(variable);
    expect((err as Error).message.startsWith(variable)).toBe(true);
    return;
  }
  throw new Error(`expected ${variable} to be rejected`);
};

describe('loadConfig', () => {
  it('has documented defaults', () => {
    const c = loadConfig(base);
    expect(dify(c).baseUrl).toBe('https://api.dify.ai/v1');
    expect(c.store).toEqual({ kind: 'auto', mongoUri: undefined, mongoDb: undefined, dataDir: './data', statsUtcOffsetMin: 480 });
    expect(c.server).toEqual({ port: 3000, host: '0.0.0.0', maxBodyBytes: 262144, maxConnections: 10000, stopGraceMs: 8000 });
    expect(c.delivery).toMatchObject({ replyDeadlineMs: 4500, placeholderMode: 'last' });
    expect(wechatSettings(c)).toMatchObject({ deliveries: 3, timeoutMs: 5000, timestampToleranceS: 300, push: false, pageBytes: 1800 });
    expect(dify(c).idleTimeoutMs).toBe(120_000);
    expect(c.texts).toEqual(DEFAULT_TEXTS);
  });

  it('names the variable in every error', () => {
    fails({ DIFY_API_KEY: 'k' }, 'WECHAT_TOKEN');
    fails({ WECHAT_TOKEN: 'token123' }, 'DIFY_API_KEY');
    fails({ ...base, WECHAT_TOKEN: 'has space' }, 'WECHAT_TOKEN');
    fails({ ...base, PORT: 'abc' }, 'PORT');
    fails({ ...base, PORT: '70000' }, 'PORT');
    fails({ ...base, DIFY_BASE_URL: 'ftp://x' }, 'DIFY_BASE_URL');
    fails({ ...base, REPLY_DEADLINE_MS: '6000' }, 'REPLY_DEADLINE_MS');
    fails({ ...base, PLACEHOLDER_MODE: 'never' }, 'PLACEHOLDER_MODE');
    fails({ ...base, BOT_TEXTS: '{"nope": "x"}' }, 'BOT_TEXTS');
    fails({ ...base, BOT_TEXTS: 'not json' }, 'BOT_TEXTS');
    fails({ ...base, MENU_KEYS: '{"K": "/unknown"}' }, 'MENU_KEYS');
    fails({ ...base, MENU_KEYS: '{"K": {"ask": ""}}' }, 'MENU_KEYS');
    fails({ ...base, WECHAT_AES_KEY: 'short' }, 'WECHAT_AES_KEY');
    fails({ ...base, WECHAT_AES_KEY: 'A'.repeat(43) }, 'WECHAT_APPID');
    fails({ ...base, WECHAT_PUSH: 'true', WECHAT_APPID: 'wx1' }, 'WECHAT_APPSECRET');
    fails({ ...base, WECHAT_PUSH: 'maybe' }, 'WECHAT_PUSH');
    fails({ ...base, LOG_LEVEL: 'loud' }, 'LOG_LEVEL');
    fails({ ...base, STORE: 'redis' }, 'STORE');
    fails({ ...base, HTTPS_PROXY: 'ftp://proxy.example' }, 'HTTPS_PROXY');
    fails({ ...base, http_proxy: 'http://user:hunter2@[bad' }, 'http_proxy');
    expect(() => loadConfig({ ...base, http_proxy: 'http://user:hunter2@[bad' })).toThrow(/^(?!.*hunter2)/);
    expect(() => loadConfig({ ...base, HTTPS_PROXY: 'proxy.example:3128', ALL_PROXY: 'https://u:p@proxy.example' })).not.toThrow();
  });

  it('never puts a secret value into an error message', () => {
    let message = '';
    expect(() => {
      try {
        loadConfig({ ...base, WECHAT_AES_KEY: 'secret-aes-key-value' });
      } catch (err) {
        message = (err as Error).message;
        throw err;
      }
    }).toThrow(ConfigError);
    expect(message).toMatch(/^WECHAT_AES_KEY: /);
    expect(message).not.toContain('secret-aes-key-value');
  });

  it('merges text overrides and reads menus', () => {
    const c = loadConfig({ ...base, BOT_TEXTS: '{"help": "H"}', MENU_KEYS: '{"A": "/help", "B": {"ask": " q "}}' });
    expect(c.texts.help).toBe('H');
    expect(c.texts.welcome).toBe(DEFAULT_TEXTS.welcome);
    expect(wechatSettings(c).menu).toEqual({ A: { command: '/help' }, B: { ask: 'q' } });
  });

  it('lists the secrets for log redaction', () => {
    const uri = 'mongodb://user:pa55word@db.example:27017/bot';
    expect(secretsOf(loadConfig({ ...base, WECHAT_APPID: 'wx1', WECHAT_APPSECRET: 'sec-ret-123', WECHAT_AES_KEY: 'A'.repeat(43), MONGODB_URI: uri })).sort()).toEqual(
      ['token123', 'app-xyz', 'A'.repeat(43), 'sec-ret-123', uri].sort(),
    );
  });
});

describe('answer page settings', () => {
  it('is on with PUBLIC_URL, off with a warning without it, and off without one when switched off', () => {
    expect(loadConfig({ ...base, PUBLIC_URL: 'https://bot.example.com/' }).page).toMatchObject({ enabled: true, publicUrl: 'https://bot.example.com', routes: 'path', ttlMs: 7 * 86_400_000, maxStreams: 2000 });
    const off = loadConfig(base).page;
    expect(off.enabled).toBe(false);
    expect(off.warning).toMatch(/PUBLIC_URL/);
    const switchedOff = loadConfig({ ...base, ANSWER_PAGE: 'off', PUBLIC_URL: 'https://bot.example.com' }).page;
    expect([switchedOff.enabled, 'warning' in switchedOff]).toEqual([false, false]);
  });

  it('rejects base URLs that are not plain http(s), and bad durations', () => {
    fails({ ...base, PUBLIC_URL: 'ftp://x.example' }, 'PUBLIC_URL');
    fails({ ...base, PUBLIC_URL: 'https://x.example/?a=1' }, 'PUBLIC_URL');
    fails({ ...base, PUBLIC_URL: 'https://user:pw@x.example' }, 'PUBLIC_URL');
    fails({ ...base, ANSWER_PAGE_TTL: 'forever' }, 'ANSWER_PAGE_TTL');
    fails({ ...base, ANSWER_PAGE_TTL: '8d' }, 'ANSWER_PAGE_TTL');
    // A path prefix is kept (a proxy may serve the bot under one); anything odd is normalised away.
    expect(loadConfig({ ...base, PUBLIC_URL: 'https://X.example/bot/' }).page.publicUrl).toBe('https://x.example/bot');
    expect(loadConfig({ ...base, PUBLIC_URL: 'https://x.example/b"<i>' }).page.publicUrl).toBe('https://x.example/b%22%3Ci%3E');
    expect(loadConfig({ ...base, ANSWER_PAGE_TTL: '12h' }).page.ttlMs).toBe(12 * 3_600_000);
    expect(loadConfig({ ...base, ANSWER_PAGE_TTL: '3600' }).page.ttlMs).toBe(3_600_000);
  });

  it('on laf, derives the app URL from APPID and OSS_EXTERNAL_ENDPOINT, or says to set PUBLIC_URL', () => {
    const laf = { platform: 'laf' as const };
    expect(loadConfig({ ...base, APPID: 'Abc123', OSS_EXTERNAL_ENDPOINT: 'https://oss.laf.run' }, laf).page).toMatchObject({ enabled: true, publicUrl: 'https://abc123.laf.run', routes: 'laf' });
    expect(loadConfig({ ...base, APPID: 'abc123', OSS_EXTERNAL_ENDPOINT: 'https://oss.bja.sealos.run/' }, laf).page.publicUrl).toBe('https://abc123.bja.sealos.run');
    expect(loadConfig({ ...base, APPID: 'abc123', OSS_EXTERNAL_ENDPOINT: 'https://oss.laf.run', PUBLIC_URL: 'https://bot.example.com' }, laf).page.publicUrl).toBe('https://bot.example.com');
    const unknown = loadConfig({ ...base, APPID: 'abc123', OSS_EXTERNAL_ENDPOINT: 'https://minio.internal:9000' }, laf).page;
    expect(unknown).toMatchObject({ enabled: false });
    expect(unknown.warning).toMatch(/PUBLIC_URL/);
    // The Node server never guesses from laf's variables.
    expect(loadConfig({ ...base, APPID: 'abc123', OSS_EXTERNAL_ENDPOINT: 'https://oss.laf.run' }).page.enabled).toBe(false);
  });

  it('reserves room for the link on every page, so pages never outgrow PAGE_BYTES', () => {
    const on = loadConfig({ ...base, PUBLIC_URL: 'https://a-rather-long-domain-name.example.com' });
    const off = loadConfig(base);
    expect(replyReserveBytes(on.texts, on.page) - replyReserveBytes(off.texts, off.page)).toBe(Buffer.byteLength(`\n<a href="https://a-rather-long-domain-name.example.com/a/${'x'.repeat(22)}">${on.texts.pageLinkParts}</a>`));
  });
});

describe('model backend settings', () => {
  it('Dify by default; openai when chosen (or when only OPENAI_MODEL is set), with every option', () => {
    expect(loadConfig(base).backend.kind.kind).toBe('dify');
    expect(loadConfig({ WECHAT_TOKEN: 'token123', OPENAI_MODEL: 'deepseek-chat' }).backend.kind.kind).toBe('openai');
    const c = loadConfig({
      WECHAT_TOKEN: 'token123',
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: 'https://api.deepseek.com/',
      OPENAI_API_KEY: 'sk-abc',
      OPENAI_MODEL: 'deepseek-chat',
      SYSTEM_PROMPT: '  你是助手。 ',
      OPENAI_TEMPERATURE: '0.7',
      OPENAI_MAX_TOKENS: '800',
      OPENAI_EXTRA_BODY: '{"thinking": {"type": "disabled"}}',
      HISTORY_MAX_TURNS: '6',
      HISTORY_IDLE_RESET: '30m',
    });
    expect(openai(c)).toMatchObject({ baseUrl: 'https://api.deepseek.com', apiKey: 'sk-abc', model: 'deepseek-chat', systemPrompt: '你是助手。', temperature: 0.7, maxTokens: 800, extraBody: { thinking: { type: 'disabled' } } });
    expect(c.history).toEqual({ maxTurns: 6, maxChars: 12_000, idleResetMs: 30 * 60_000 });
    expect(secretsOf(c)).toContain('sk-abc');
    expect(openai(loadConfig({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'llama3.1' })).apiKey).toBeUndefined();
  });

  it('names the variable to fix', () => {
    fails({ WECHAT_TOKEN: 'token123' }, 'DIFY_API_KEY');
    fails({ ...base, LLM_PROVIDER: 'claude' }, 'LLM_PROVIDER');
    fails({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai' }, 'OPENAI_MODEL');
    fails({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'm', OPENAI_TEMPERATURE: '3' }, 'OPENAI_TEMPERATURE');
    fails({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'm', OPENAI_EXTRA_BODY: '[1]' }, 'OPENAI_EXTRA_BODY');
    fails({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'm', OPENAI_EXTRA_BODY: '{"messages": []}' }, 'OPENAI_EXTRA_BODY');
    fails({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'm', OPENAI_BASE_URL: 'localhost:11434' }, 'OPENAI_BASE_URL');
    fails({ WECHAT_TOKEN: 'token123', LLM_PROVIDER: 'openai', OPENAI_MODEL: 'm', OPENAI_BASE_URL: 'https://api.deepseek.com/v1/chat/completions' }, 'OPENAI_BASE_URL');
  });
});

/**
 * The three WeCom channels' settings (README "WeCom"): each is on only with its own variables, shares the
 * corp's callback values where it should, and names the variable to fix (and where to find it) when a
 * value is missing or malformed; secrets are redacted; BOTS makes more instances.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig, secretsOf } from '../../../lib/config';
import { ConfigError } from '../../../lib/errors';

const AES = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const CORP = { WECOM_CORP_ID: 'ww5a1c9e3b7d20f864', WECOM_TOKEN: 'QDG6eK', WECOM_AES_KEY: AES };
const APP = { ...CORP, WECOM_AGENT_ID: '1000002', WECOM_SECRET: 'app-secret-value-0001' };
const base = { DIFY_API_KEY: 'app-xyz' };

const variableOf = (env: Record<string, string>) => {
  try {
    loadConfig({ ...base, ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).variable;
  }
  return undefined;
};

describe('WeCom settings', () => {
  it('turns on each channel with its own variables, and only those', () => {
    expect(loadConfig({ ...base, ...APP }).channels.map((c) => c.kind.kind)).toEqual(['wecom-app']);
    expect(loadConfig({ ...base, ...CORP, WECOM_KF_SECRET: 'kf-secret-value-0001' }).channels.map((c) => c.kind.kind)).toEqual(['wecom-kf']);
    expect(loadConfig({ ...base, WECOM_BOT_TOKEN: 'BotToken1', WECOM_BOT_AES_KEY: AES }).channels.map((c) => c.kind.kind)).toEqual(['wecom-bot']);
    const all = loadConfig({ ...base, ...APP, WECOM_KF_SECRET: 'kf-secret-value-0001', WECOM_BOT_TOKEN: 'BotToken1', WECOM_BOT_AES_KEY: AES });
    expect(all.channels.map((c) => c.kind.kind)).toEqual(['wecom-app', 'wecom-kf', 'wecom-bot']);
    expect(all.channels[0]?.settings).toMatchObject({ corpId: 'ww5a1c9e3b7d20f864', agentId: 1000002, apiBase: 'https://qyapi.weixin.qq.com', markdown: false, timestampToleranceS: 300 });
  });

  it('names the variable to fix', () => {
    expect(variableOf({ ...APP, WECOM_SECRET: '' })).toBe('WECOM_SECRET');
    expect(variableOf({ ...APP, WECOM_AGENT_ID: 'abc' })).toBe('WECOM_AGENT_ID');
    expect(variableOf({ ...APP, WECOM_CORP_ID: '' })).toBe('WECOM_CORP_ID');
    expect(variableOf({ ...APP, WECOM_TOKEN: 'has space' })).toBe('WECOM_TOKEN');
    expect(variableOf({ ...APP, WECOM_AES_KEY: 'short' })).toBe('WECOM_AES_KEY');
    expect(variableOf({ WECOM_KF_SECRET: 'kf', WECOM_TOKEN: 'QDG6eK', WECOM_AES_KEY: AES })).toBe('WECOM_CORP_ID');
    expect(variableOf({ WECOM_BOT_TOKEN: 'BotToken1' })).toBe('WECOM_BOT_AES_KEY');
    expect(variableOf({ WECOM_BOT_TOKEN: 'BotToken1', WECOM_BOT_AES_KEY: AES.slice(1) })).toBe('WECOM_BOT_AES_KEY');
    expect(variableOf({ ...APP, WECOM_MARKDOWN: 'maybe' })).toBe('WECOM_MARKDOWN');
  });

  it('says where in the console a missing value is', () => {
    expect(() => loadConfig({ ...base, ...APP, WECOM_CORP_ID: '' })).toThrow(/我的企业 → 企业信息 → 企业ID/);
  });

  it('keeps every secret out of the logs', () => {
    const c = loadConfig({ ...base, ...APP, WECOM_KF_SECRET: 'kf-secret-value-0001', WECOM_BOT_TOKEN: 'BotToken1', WECOM_BOT_AES_KEY: AES });
    expect(secretsOf(c)).toEqual(expect.arrayContaining(['app-secret-value-0001', 'kf-secret-value-0001', 'QDG6eK', AES, 'BotToken1']));
  });

  it('serves more instances with BOTS', () => {
    const c = loadConfig({ ...base, ...APP, BOTS: JSON.stringify([{ id: 'shop', channel: 'wecom-bot', env: { WECOM_BOT_TOKEN: 'ShopBot1', WECOM_BOT_AES_KEY: AES } }]) });
    expect(c.channels.map((x) => `${x.kind.kind}@${x.instance}`)).toEqual(['wecom-app@', 'wecom-bot@shop']);
  });
});

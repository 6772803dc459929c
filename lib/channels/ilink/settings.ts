/**
 * The personal-WeChat (iLink) channel's settings (README "Personal WeChat (iLink)"): on with
 * `ILINK=on`. The session itself comes from a QR login (`npm run ilink -- login`, or the console's
 * iLink page) and lives in the store; ILINK_BOT_TOKEN with ILINK_BOT_ID provision one without the QR
 * step. Refused on laf: the channel is a long-poll loop, which this project runs on the Node server only.
 */
import type { Env } from '../../core/env';
import type { SettingsContext } from '../../core/channel';
import { ConfigError } from '../../errors';

export const ILINK_VARIABLES = ['ILINK', 'ILINK_API_BASE', 'ILINK_CDN_BASE', 'ILINK_BOT_TOKEN', 'ILINK_BOT_ID', 'ILINK_SEND_GAP_MS'] as const;

/** Tencent's service and CDN (docs/ilink.md §1). */
export const DEFAULT_API_BASE = 'https://ilinkai.weixin.qq.com';
export const DEFAULT_CDN_BASE = 'https://novac2c.cdn.weixin.qq.com/c2c';

export interface IlinkSettings {
  /** QR login calls, and authenticated calls until a login names its own base URL. */
  apiBase: string;
  cdnBase: string;
  /** A session given by the environment instead of a QR login. */
  provisioned: { token: string; botId: string } | undefined;
  /** Pause between the messages of one answer (the service rate-limits rapid sends). */
  sendGapMs: number;
}

export function ilinkSettings(whole: Env, ctx: Pick<SettingsContext, 'platform'>): IlinkSettings | undefined {
  const env = whole.only(ILINK_VARIABLES);
  if (!env.bool('ILINK', false)) return undefined;
  if (ctx.platform === 'laf') {
    throw new ConfigError(
      'ILINK',
      'personal WeChat (iLink) is a long-poll loop, which this project does not run on laf (docs/ilink.md "Where it runs"): run it on the Node server (npm start), which needs no public URL for it',
    );
  }
  const token = env.str('ILINK_BOT_TOKEN');
  const botId = env.str('ILINK_BOT_ID');
  if ((token === undefined) !== (botId === undefined)) {
    throw new ConfigError(token === undefined ? 'ILINK_BOT_TOKEN' : 'ILINK_BOT_ID', 'ILINK_BOT_TOKEN and ILINK_BOT_ID go together (both from a QR login: npm run ilink -- status shows the bot id), or leave both unset and log in by QR');
  }
  if (botId !== undefined && !/^[^\s@]+@im\.bot$/.test(botId)) throw new ConfigError('ILINK_BOT_ID', 'must be the bot id a login returned, ending in @im.bot');
  if (token !== undefined && token.length < 16) throw new ConfigError('ILINK_BOT_TOKEN', 'is too short to be a bot token');
  return {
    apiBase: env.url('ILINK_API_BASE', DEFAULT_API_BASE),
    cdnBase: env.url('ILINK_CDN_BASE', DEFAULT_CDN_BASE),
    provisioned: token !== undefined && botId !== undefined ? { token, botId } : undefined,
    sendGapMs: env.int('ILINK_SEND_GAP_MS', 1000, 0, 10_000),
  };
}

/** LINE's settings (README "LINE and Discord"): on with the channel secret and the access token. */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';

export const LINE_VARIABLES = ['LINE_CHANNEL_SECRET', 'LINE_CHANNEL_ACCESS_TOKEN', 'LINE_API_BASE'] as const;

export interface LineSettings {
  channelSecret: string;
  accessToken: string;
  apiBase: string;
}

/** Both the channel secret (signatures) and the access token (replies); one without the other is a mistake. */
export function lineSettings(whole: Env): LineSettings | undefined {
  const env = whole.only(LINE_VARIABLES);
  const channelSecret = env.str('LINE_CHANNEL_SECRET');
  const accessToken = env.str('LINE_CHANNEL_ACCESS_TOKEN');
  if (channelSecret === undefined && accessToken === undefined) return undefined;
  if (channelSecret === undefined) throw new ConfigError('LINE_CHANNEL_SECRET', 'is required with LINE_CHANNEL_ACCESS_TOKEN (LINE Developers console → the channel → Basic settings)');
  if (accessToken === undefined) throw new ConfigError('LINE_CHANNEL_ACCESS_TOKEN', 'is required with LINE_CHANNEL_SECRET (the channel → Messaging API → Channel access token)');
  if (!/^[0-9a-f]{32}$/i.test(channelSecret)) throw new ConfigError('LINE_CHANNEL_SECRET', 'must be the 32-character hex channel secret');
  return { channelSecret, accessToken, apiBase: env.url('LINE_API_BASE', 'https://api.line.me') };
}

/** Discord's settings (README "LINE and Discord"): on with the application's public key and id. */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';
import type { SettingsContext } from '../../core/channel';

export const DISCORD_VARIABLES = ['DISCORD_PUBLIC_KEY', 'DISCORD_APPLICATION_ID', 'DISCORD_BOT_TOKEN', 'DISCORD_API_BASE'] as const;

export interface DiscordSettings {
  publicKey: string;
  applicationId: string;
  botToken: string | undefined;
  apiBase: string;
  /** Signed timestamps further than this from now are rejected; 0 disables the check. */
  timestampToleranceS: number;
}

/** The public key verifies interactions; the application id addresses their responses. */
export function discordSettings(whole: Env, ctx: Pick<SettingsContext, 'core'>): DiscordSettings | undefined {
  const env = whole.only(DISCORD_VARIABLES);
  const publicKey = env.str('DISCORD_PUBLIC_KEY');
  const applicationId = env.str('DISCORD_APPLICATION_ID');
  if (publicKey === undefined && applicationId === undefined) return undefined;
  if (publicKey === undefined || !/^[0-9a-f]{64}$/i.test(publicKey)) throw new ConfigError('DISCORD_PUBLIC_KEY', 'must be the application\'s 64-character hex Public Key (Developer Portal → General Information), not the bot token');
  if (applicationId === undefined || !/^\d{5,25}$/.test(applicationId)) throw new ConfigError('DISCORD_APPLICATION_ID', 'must be the numeric Application ID (Developer Portal → General Information)');
  return {
    publicKey: publicKey.toLowerCase(),
    applicationId,
    botToken: env.str('DISCORD_BOT_TOKEN'),
    apiBase: env.url('DISCORD_API_BASE', 'https://discord.com/api/v10'),
    timestampToleranceS: ctx.core.signatureToleranceS,
  };
}

/**
 * The WeCom intelligent bot's settings (README "WeCom"): on with WECOM_BOT_TOKEN, the Token of the
 * bot's API-mode callback, with its EncodingAESKey. The bot has no CorpID in its crypto (the
 * receiveid is empty) and makes no API calls of its own: answers travel in the callback's replies.
 */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';
import type { SettingsContext } from '../../core/channel';

export const WECOM_BOT_VARIABLES = ['WECOM_BOT_TOKEN', 'WECOM_BOT_AES_KEY', 'WECOM_BOT_NAME'] as const;

export interface WecomBotSettings {
  token: string;
  aesKey: string;
  /** The name members @-mention in groups; the mention is cut from the question. */
  name: string | undefined;
  /** SIGNATURE_TOLERANCE_S. */
  timestampToleranceS: number;
}

const WHERE = 'WeCom client → 工作台 → 智能机器人 → the bot → API 模式 → 接收消息';

export function wecomBotSettings(whole: Env, ctx: SettingsContext): WecomBotSettings | undefined {
  const env = whole.only(WECOM_BOT_VARIABLES);
  const token = env.str('WECOM_BOT_TOKEN');
  if (token === undefined) return undefined;
  if (!/^[A-Za-z0-9]{1,32}$/.test(token)) throw new ConfigError('WECOM_BOT_TOKEN', `must be at most 32 letters or digits (${WHERE} → Token)`);
  const aesKey = env.required('WECOM_BOT_AES_KEY', `the bot's EncodingAESKey: ${WHERE} → EncodingAESKey`);
  if (!/^[A-Za-z0-9]{43}$/.test(aesKey)) throw new ConfigError('WECOM_BOT_AES_KEY', 'must be the 43-character EncodingAESKey (letters and digits)');
  const name = env.str('WECOM_BOT_NAME')?.replace(/^@/, '');
  return { token, aesKey, name, timestampToleranceS: ctx.core.signatureToleranceS };
}

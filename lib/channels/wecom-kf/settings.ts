/**
 * WeChat customer service's settings (README "WeCom"): on with WECOM_KF_SECRET, the Secret of the
 * self-built app allowed to call the customer-service API; its callback uses the corp's token and
 * EncodingAESKey (the same values typed into that app's 接收消息 page).
 */
import type { Env } from '../../core/env';
import type { SettingsContext } from '../../core/channel';
import { WECOM_API_BASE, corpCallback } from '../wxbiz/wecom';

export const WECOM_KF_VARIABLES = ['WECOM_CORP_ID', 'WECOM_KF_SECRET', 'WECOM_TOKEN', 'WECOM_AES_KEY', 'WECOM_API_BASE'] as const;

export interface WecomKfSettings {
  corpId: string;
  secret: string;
  token: string;
  aesKey: string;
  apiBase: string;
  /** SIGNATURE_TOLERANCE_S. */
  timestampToleranceS: number;
}

export function wecomKfSettings(whole: Env, ctx: SettingsContext): WecomKfSettings | undefined {
  const env = whole.only(WECOM_KF_VARIABLES);
  const secret = env.str('WECOM_KF_SECRET');
  if (secret === undefined) return undefined;
  return {
    ...corpCallback(env, 'WeChat customer service'),
    secret,
    apiBase: env.url('WECOM_API_BASE', WECOM_API_BASE),
    timestampToleranceS: ctx.core.signatureToleranceS,
  };
}

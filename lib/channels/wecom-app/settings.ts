/**
 * The WeCom self-built app's settings (README "WeCom"): on when WECOM_AGENT_ID or WECOM_SECRET is
 * set, and then every one of the app's values is required: WeCom has no plaintext mode, so the
 * callback always needs the token and the EncodingAESKey, and answers always go out through the API.
 */
import { ConfigError } from '../../errors';
import type { Env } from '../../core/env';
import type { SettingsContext } from '../../core/channel';
import { WECOM_API_BASE, WECOM_WHERE, corpCallback } from '../wxbiz/wecom';

export const WECOM_APP_VARIABLES = ['WECOM_CORP_ID', 'WECOM_AGENT_ID', 'WECOM_SECRET', 'WECOM_TOKEN', 'WECOM_AES_KEY', 'WECOM_API_BASE', 'WECOM_MARKDOWN'] as const;

export interface WecomAppSettings {
  corpId: string;
  agentId: number;
  secret: string;
  token: string;
  aesKey: string;
  apiBase: string;
  /** Send answers as WeCom markdown (shown in the WeCom client, not to members on the WeChat plugin). */
  markdown: boolean;
  /** SIGNATURE_TOLERANCE_S. */
  timestampToleranceS: number;
}

export function wecomAppSettings(whole: Env, ctx: SettingsContext): WecomAppSettings | undefined {
  const env = whole.only(WECOM_APP_VARIABLES);
  if (!env.has('WECOM_AGENT_ID') && !env.has('WECOM_SECRET')) return undefined;
  const agent = env.required('WECOM_AGENT_ID', `the app's AgentId: ${WECOM_WHERE.WECOM_AGENT_ID}`);
  if (!/^\d{1,10}$/.test(agent) || Number(agent) < 1 || Number(agent) > 2 ** 31 - 1) throw new ConfigError('WECOM_AGENT_ID', `must be the app's numeric AgentId (${WECOM_WHERE.WECOM_AGENT_ID})`);
  const secret = env.required('WECOM_SECRET', `the app's Secret: ${WECOM_WHERE.WECOM_SECRET}`);
  return {
    ...corpCallback(env, 'the self-built app'),
    agentId: Number(agent),
    secret,
    apiBase: env.url('WECOM_API_BASE', WECOM_API_BASE),
    markdown: env.bool('WECOM_MARKDOWN', false),
    timestampToleranceS: ctx.core.signatureToleranceS,
  };
}

/**
 * QR login (docs/ilink.md "Login"): fetch a QR code, then long-poll its status until the owner has
 * scanned it and confirmed on the phone. Every status the service gives is followed: `wait`,
 * `scaned`, `need_verifycode` (the digits shown on the phone, asked for again when wrong),
 * `verify_code_blocked` and `expired` (a new QR code, at most three), `scaned_but_redirect` (poll
 * the host it names, keeping our scheme), `binded_redirect` (the bot is already bound to this client:
 * the credentials we hold stay), and `confirmed` (the credentials; without a bot id it failed).
 * Shared by `npm run ilink -- login` and the console's iLink page; what to show is the caller's.
 */
import type { Clock } from '../../util/clock';
import type { IlinkApi } from './api';

export type LoginOutcome =
  | { kind: 'confirmed'; token: string; botId: string; baseUrl: string | undefined; userId: string }
  | { kind: 'bound' }
  | { kind: 'failed'; reason: string };

export interface LoginOptions {
  api: IlinkApi;
  clock: Clock;
  /** The fixed base QR calls go to (ILINK_API_BASE). */
  apiBase: string;
  /** Tokens this client holds (the service recognises a bot already bound to it). */
  localTokens: readonly string[];
  /** A QR code to show (what it encodes); called again for each new one. */
  showQr(content: string, n: number): void | Promise<void>;
  /** Each status as it comes. */
  status?(status: string): void | Promise<void>;
  /** The digits the phone shows, when the service asks for them (undefined: give up). */
  verifyCode(wrong: boolean): Promise<string | undefined>;
  /** Stop early (a newer login replaced this one). */
  cancelled?(): boolean | Promise<boolean>;
  /** The whole login gives up after this long (the official client: 480 s). */
  deadlineMs?: number;
  /** QR codes to try before giving up. */
  maxQrCodes?: number;
  /** One status poll's client timeout (35 s) and the pause after each answer (1 s). */
  pollTimeoutMs?: number;
  pauseMs?: number;
}

/** The status host after a redirect: `redirect_host` with our own scheme (https in production). */
export function redirectBase(current: string, host: string): string {
  if (/^https?:\/\//i.test(host)) return host.replace(/\/+$/, '');
  const scheme = /^http:\/\//i.test(current) ? 'http' : 'https';
  return `${scheme}://${host.replace(/\/+$/, '')}`;
}

export async function qrLogin(o: LoginOptions): Promise<LoginOutcome> {
  const { api, clock } = o;
  const until = clock.now() + (o.deadlineMs ?? 480_000);
  const maxQr = o.maxQrCodes ?? 3;
  const timeoutMs = o.pollTimeoutMs ?? 35_000;
  const pause = o.pauseMs ?? 1000;
  let codes = 0;
  let qr: { qrcode: string; imgContent: string } | undefined;
  let base = o.apiBase;
  let verify: string | undefined;
  let asked = false;
  const fresh = async (): Promise<boolean> => {
    if (codes >= maxQr) return false;
    qr = await api.getQrCode(o.localTokens);
    codes++;
    base = o.apiBase;
    verify = undefined;
    asked = false;
    await o.showQr(qr.imgContent, codes);
    return true;
  };
  if (!(await fresh())) return { kind: 'failed', reason: 'no QR code' };
  let last = '';
  while (clock.now() < until) {
    if (await o.cancelled?.()) return { kind: 'failed', reason: 'cancelled' };
    const current = qr as { qrcode: string };
    const answer = await api.qrStatus(base, current.qrcode, verify, Math.min(timeoutMs, Math.max(1000, until - clock.now())));
    const status = answer.status;
    if (status !== last || status === 'need_verifycode') await o.status?.(status);
    last = status;
    switch (status) {
      case 'wait':
      case 'scaned':
        verify = undefined; // a code accepted (scaned) is not sent again
        break;
      case 'need_verifycode': {
        verify = await o.verifyCode(asked);
        asked = true;
        if (verify === undefined) return { kind: 'failed', reason: 'no verify code given' };
        continue; // straight back with the code
      }
      case 'verify_code_blocked':
      case 'expired':
        if (!(await fresh())) return { kind: 'failed', reason: status === 'expired' ? `the QR code expired ${maxQr} times` : 'too many wrong verify codes' };
        last = '';
        continue;
      case 'scaned_but_redirect': {
        const host = answer['redirect_host'];
        if (typeof host === 'string' && host) base = redirectBase(base, host);
        continue;
      }
      case 'binded_redirect':
        return { kind: 'bound' };
      case 'confirmed': {
        const token = answer['bot_token'];
        const botId = answer['ilink_bot_id'];
        if (typeof token !== 'string' || !token || typeof botId !== 'string' || !botId) return { kind: 'failed', reason: 'the service confirmed without a bot id' };
        const baseUrl = typeof answer['baseurl'] === 'string' && answer['baseurl'] ? answer['baseurl'].replace(/\/+$/, '') : undefined;
        return { kind: 'confirmed', token, botId, baseUrl, userId: typeof answer['ilink_user_id'] === 'string' ? answer['ilink_user_id'] : '' };
      }
      default:
        break; // a status this client does not know: keep waiting
    }
    await clock.sleep(pause);
  }
  return { kind: 'failed', reason: 'timed out waiting for the scan' };
}

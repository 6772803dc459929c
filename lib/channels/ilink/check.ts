/**
 * The iLink channel's part of `npm run doctor` and the console's checks page (Channel.selfCheck): a
 * session the poller would use (a QR login in the store, or ILINK_BOT_TOKEN), whether the service has
 * ended it (-14), and the service's host answering at all. The token itself is not tried: every call
 * that carries it does something (getupdates hands messages to whoever polls, which would take them
 * from a running server; notifystart/stop announce a client; a QR code starts a login), and none is
 * known to be a pure check (docs/ilink.md). So a session that looks live may still be refused at the
 * first poll; the server says so then (log, health page).
 */
import type { Check } from '../../util/checks';
import { checked } from '../../util/checks';
import { call } from '../../util/http';
import type { SessionStore } from './session';
import { maskId, sessionRecordIds } from './session';

const when = (t: number) => `${new Date(t).toISOString().replace('T', ' ').slice(0, 16)} UTC`;

const LOGIN_FIX =
  'log in: npm run ilink -- login (on the embedded store, while the server is stopped), or the console’s iLink page (/admin/ilink, with ADMIN_TOKEN); on a server without either, set ILINK_BOT_TOKEN and ILINK_BOT_ID from a login elsewhere (npm run ilink -- status --reveal)';

export interface IlinkCheckDeps {
  /** How the lines are named: `iLink`, or `iLink <instance>`. */
  label: string;
  sessions: SessionStore;
  /** ILINK_BOT_TOKEN and ILINK_BOT_ID, when set. */
  provisioned: { token: string; botId: string } | undefined;
  /** ILINK_API_BASE (where a login starts, and calls go until a login names its own base URL). */
  apiBase: string;
  now: number;
}

/** The store values `ilinkSelfCheck` reads (`ChannelKind.checkReads`: the doctor copies them from the configured store). */
export const ilinkCheckReads = (name: string): readonly string[] => sessionRecordIds(name);

export async function ilinkSelfCheck(d: IlinkCheckDeps): Promise<Check[]> {
  const name = `${d.label}: session`;
  const { credentials: held, expiredAt } = await d.sessions.state(d.now);
  // What the server would poll with: the stored session, unless the environment gives a token it has
  // not seen (the channel saves that one at start, lib/channels/ilink/channel.ts `provisioned`).
  const p = d.provisioned;
  const stored = held && (!p || held.source === 'qr' || held.token === p.token) ? held : undefined;
  let session: Check;
  if (stored && expiredAt !== undefined) {
    session = {
      name,
      ok: false,
      detail: `bot ${maskId(stored.botId)}: ended by the service (-14) at ${when(expiredAt)}; polling has stopped, unsent answers wait`,
      fix: `log in again (${LOGIN_FIX.replace(/^log in: /, '')}); keep the ClawBot plugin on the phone (README "Personal WeChat (iLink)")`,
    };
  } else if (stored) {
    session = { name, ok: true, detail: `bot ${maskId(stored.botId)}, ${stored.source === 'env' ? 'from ILINK_BOT_TOKEN' : 'QR login'} at ${when(stored.savedAt)}; not ended by the service so far` };
  } else if (p) {
    session = { name, ok: true, detail: `bot ${maskId(p.botId)} from ILINK_BOT_TOKEN (not used yet: the server starts with it)` };
  } else {
    session = { name, ok: false, detail: 'not logged in: the server would have nothing to poll', fix: LOGIN_FIX };
  }
  const base = stored?.baseUrl ?? d.apiBase;
  const host = new URL(base).host;
  // Any HTTP answer will do: the service's host is reached (its root is no iLink call).
  const reach = await checked(
    `${d.label}: service reachable`,
    async () => {
      const res = await call({ method: 'GET', url: `${new URL(base).origin}/`, timeoutMs: 10_000 }, 64 * 1024);
      return { ok: true, detail: `${host} answers (HTTP ${res.status})` };
    },
    () => `this server must reach ${host}, where it polls and sends: the network, DNS, a firewall, or an outbound proxy (HTTPS_PROXY); ILINK_API_BASE names the service`,
  );
  return [session, reach.ok === false ? { ...reach, detail: `${host}: ${reach.detail}` } : reach];
}

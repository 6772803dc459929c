/**
 * `npm run ilink -- login|status|logout [--bot ID] [--reveal]`: the personal-WeChat (iLink) session,
 * in the store the server uses (MONGODB_URI, else DATA_DIR; README "Personal WeChat (iLink)").
 *
 * - `login` shows a QR code in the terminal; scan it with the WeChat that will own the bot, confirm
 *   on the phone (type the digits the phone shows if asked). An expired code is replaced by a new one.
 *   The credentials go to the store; a running server on MongoDB picks them up within a second.
 * - `status` shows the session (masked; `--reveal` prints the bot token and id, for ILINK_BOT_TOKEN and
 *   ILINK_BOT_ID on a headless server), whether the service ended it (-14), and who polls.
 * - `logout` forgets the session.
 *
 * `--bot ID` acts on a BOTS instance (`ilink@ID`). ILINK_API_BASE points at a simulator (npm run ilink-sim).
 * With the embedded store, stop the server first (it holds DATA_DIR), or log in on the console's iLink page.
 */
import { createInterface } from 'readline';
import { Env } from '../lib/core/env';
import { channelName } from '../lib/core/channel';
import { loadCoreConfig } from '../lib/core/settings';
import { ConfigError, StoreError } from '../lib/errors';
import { ILINK, SessionStore, adoptLogin, createIlinkApi, maskId, maskSecret, pollAccountOf, qrLogin, qrTerminal } from '../lib/channels/ilink';
import { IlinkApiError } from '../lib/channels/ilink/api';
import { DEFAULT_API_BASE } from '../lib/channels/ilink/settings';
import { openStore } from '../lib/store';
import type { Store } from '../lib/store';
import { nedbBackend } from '../lib/store/nedb';
import { systemClock } from '../lib/util/clock';
import { PROXY_VARIABLES } from '../lib/util/http';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const when = (t: number) => new Date(t).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';

function ask(question: string): Promise<string | undefined> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  return new Promise((resolve) => {
    rl.question(question, (a) => {
      rl.close();
      resolve(a.trim() || undefined);
    });
    rl.on('close', () => resolve(undefined));
  });
}

/** Why a call found no answer, for the codes a newcomer meets. */
const NETWORK_CAUSES: Record<string, string> = {
  ENOTFOUND: 'the name does not resolve: no network, or no DNS',
  EAI_AGAIN: 'the name could not be resolved: no network, or DNS not answering',
  ECONNREFUSED: 'nothing listens there',
  ETIMEDOUT: 'no answer in time',
  ECONNRESET: 'the connection was cut',
  EPROXY: 'the proxy refused the call',
};

/**
 * The iLink service could not be reached, or something else answered: which host, and the variables that
 * fix it. Names the host only (a base URL or a proxy variable may carry credentials).
 */
function serviceProblem(err: IlinkApiError, apiBase: string): string | undefined {
  const host = err.host || new URL(apiBase).host;
  const where = apiBase === DEFAULT_API_BASE ? "Tencent's, the default" : `${new URL(apiBase).origin}, from ILINK_API_BASE`;
  const base = `ILINK_API_BASE names the iLink service (now ${where}); for the offline simulator, run npm run ilink-sim and set the ILINK_API_BASE and ILINK_CDN_BASE it prints`;
  if (err.failure === 'network') {
    const cause = NETWORK_CAUSES[err.errmsg];
    const proxied = PROXY_VARIABLES.some((n) => process.env[n]);
    return [
      `Cannot reach the iLink service at ${host} (${err.errmsg}${cause ? `: ${cause}` : ''}).`,
      `- Check that this machine can reach it: curl -sI ${new URL(apiBase).origin}`,
      proxied ? '- A proxy is set (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY): check that it is running and lets this through.' : '- Behind a proxy, set HTTPS_PROXY, e.g. HTTPS_PROXY=http://proxy.example.com:3128.',
      `- ${base}.`,
    ].join('\n');
  }
  if (err.failure === 'http') return `The server at ${host} did not answer as the iLink service does (${err.message}).\n- ${base}.`;
  return undefined;
}

async function main(): Promise<number> {
  const command = process.argv[2];
  if (command !== 'login' && command !== 'status' && command !== 'logout') {
    console.error('usage: npm run ilink -- login|status|logout [--bot ID] [--reveal]');
    return 2;
  }
  const env = Env.of(process.env);
  const core = loadCoreConfig(env);
  const apiBase = env.only(['ILINK_API_BASE']).url('ILINK_API_BASE', DEFAULT_API_BASE);
  const bot = arg('bot');
  if (bot !== undefined && !/^[a-z][a-z0-9-]{0,31}$/.test(bot)) throw new ConfigError('--bot', 'must be the id of a BOTS entry');
  const name = channelName(ILINK, bot ?? '');
  let store: Store;
  try {
    store = await openStore(core.store, { embedded: nedbBackend });
  } catch (err) {
    if (err instanceof StoreError) {
      console.error(`Cannot open the store: ${err.message}\nIs the server running on this DATA_DIR? Stop it first, or log in on the console's iLink page (/admin/ilink).`);
      return 1;
    }
    throw err;
  }
  const sessions = new SessionStore(store, name);
  try {
    const now = systemClock.now();
    if (command === 'status') {
      const s = await sessions.state(now);
      const c = s.credentials;
      if (!c) console.log(`${name}: not logged in (npm run ilink -- login)`);
      else {
        console.log(`${name}: bot ${maskId(c.botId)}, token ${maskSecret(c.token)}, owner ${c.userId ? maskId(c.userId) : '—'}, base ${c.baseUrl}, ${c.source === 'env' ? 'from ILINK_BOT_TOKEN' : 'QR login'} at ${when(c.savedAt)}`);
        console.log(s.expiredAt !== undefined ? `session ENDED by the service (-14) at ${when(s.expiredAt)}: log in again` : 'session live');
        if (process.argv.includes('--reveal')) console.log(`ILINK_BOT_ID=${c.botId}\nILINK_BOT_TOKEN=${c.token}`);
      }
      const p = await store.pollerState(pollAccountOf(name));
      console.log(p && p.until > now ? `polled by instance ${p.owner.slice(0, 6)}… (lease until ${when(p.until)})` : 'nobody polls right now');
      return 0;
    }
    if (command === 'logout') {
      await sessions.clear();
      await store.resetPollCursor(pollAccountOf(name));
      console.log(`${name}: logged out (the phone's ClawBot plugin can also remove the bot)`);
      return 0;
    }
    const held = (await sessions.state(now)).credentials;
    const outcome = await qrLogin({
      api: createIlinkApi({ apiBase }),
      clock: systemClock,
      apiBase,
      localTokens: held ? [held.token] : [],
      showQr: async (content, n) => {
        console.log(`\n${n > 1 ? 'The code expired; a new one. ' : ''}Scan with WeChat (the account that will own the bot), then confirm on the phone:\n`);
        console.log(await qrTerminal(content));
        console.log(`If the code does not scan, open this on the phone: ${content}\n`);
      },
      status: (s) => {
        const said: Record<string, string> = { scaned: 'Scanned: confirm on the phone…', scaned_but_redirect: 'Scanned (another data centre): following it…', confirmed: 'Confirmed.', expired: 'The code expired.', verify_code_blocked: 'Too many wrong codes.' };
        if (said[s]) console.log(said[s]);
      },
      verifyCode: (wrong) => ask(wrong ? 'Wrong code. The digits on the phone: ' : 'The phone shows digits; type them here: '),
    }).catch((err: unknown) => {
      const said = err instanceof IlinkApiError ? serviceProblem(err, apiBase) : undefined;
      if (said === undefined) throw err;
      console.error(said);
      return undefined;
    });
    if (!outcome) return 1;
    const result = await adoptLogin(sessions, { store }, outcome, apiBase, systemClock.now());
    console.log(`${name}: ${result}`);
    if (outcome.kind === 'confirmed') console.log('Keep the ClawBot plugin on the phone: removing it ends the session. Start the server with ILINK=on (it resumes polling by itself).');
    return outcome.kind === 'failed' ? 1 : 0;
  } finally {
    await store.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? `Configuration error: ${err.message}` : err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);

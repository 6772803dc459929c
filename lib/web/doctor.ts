/**
 * The checks of `npm run doctor` and of the console's 检查 page (README "Check a deployment"): the
 * model backend reachable with its key accepted, each channel's own checks (its credentials, its URL
 * as the platform calls it), the store (lib/store/check.ts), the clock against the backend's,
 * PUBLIC_URL serving this bot's answer page, and the web chat and the API as browsers and clients
 * reach them there. Each is a line that passes or fails with the fix; none changes anything in the store.
 */
import type { Answerer } from '../core/answerer';
import { MODEL_NOT_SERVED } from '../core/answerer';
import type { Channel } from '../core/channel';
import type { CoreConfig } from '../core/settings';
import { ModelError } from '../errors';
import type { Check } from '../util/checks';
import { checked } from '../util/checks';
import type { Clock } from '../util/clock';
import { call } from '../util/http';
import { isWebChannel } from '../channels/web/channel';
import { CHAT_JS } from './chat/assets';
import { PAGE_JS } from './page/assets';

/** A clock further than this from the backend's fails: signatures carry a time (SIGNATURE_TOLERANCE_S) and limits count by it. */
export const CLOCK_SKEW_MAX_S = 60;

export interface DoctorDeps {
  config: CoreConfig;
  /** Every channel instance on. */
  channels: readonly Channel[];
  /** Each backend once, with the names of the instances bound to it ([] for the deployment's). */
  backends: ReadonlyMap<Answerer, readonly string[]>;
  /** The store's own checks (the running store's, or the CLI's look at the configured one). */
  store: () => Promise<Check[]>;
  clock: Clock;
}

/** What to do when a backend refuses or cannot be reached. */
function backendFix(a: Answerer, err: unknown): string {
  const vars = a.kind === 'dify' ? { key: 'DIFY_API_KEY', base: 'DIFY_BASE_URL' } : { key: 'OPENAI_API_KEY', base: 'OPENAI_BASE_URL' };
  if (err instanceof ModelError) {
    if (err.code === MODEL_NOT_SERVED) return 'set OPENAI_MODEL to a model this server lists (above, the closest first), or OPENAI_BASE_URL to the server that serves it';
    if (err.status === 401 || err.status === 403) return `the key is refused: set ${vars.key} to the app's (or account's) current key`;
    if (err.status === 404) return `nothing answers there: ${vars.base} must be the API base, up to /v1`;
    if (err.status === 0) return `${vars.base} (${a.endpoint ?? ''}) cannot be reached from here: the address, DNS, a firewall, or an outbound proxy (HTTPS_PROXY)`;
  }
  return `check ${vars.base} and ${vars.key}`;
}

/** How far this clock is from the server at `url`, by its Date header (±1 s, its resolution, plus half the round trip). */
async function clockSkew(url: string, clock: Clock): Promise<Check> {
  const judged = await checked(
    'clock',
    async () => {
      const t0 = clock.now();
      const res = await call({ method: 'GET', url, timeoutMs: 10_000 }, 64 * 1024);
      const t1 = clock.now();
      const date = Date.parse(String(res.headers['date'] ?? ''));
      if (Number.isNaN(date)) return { ok: undefined, detail: `${new URL(url).host} sent no Date header to compare with` };
      const skewS = Math.round((t0 + t1) / 2 - date) / 1000;
      const slack = 1 + (t1 - t0) / 2000;
      const off = Math.abs(skewS) <= slack ? 0 : skewS;
      if (Math.abs(off) > CLOCK_SKEW_MAX_S) {
        return { ok: false, detail: `this clock is ${Math.abs(Math.round(off))} s ${off > 0 ? 'ahead of' : 'behind'} ${new URL(url).host}`, fix: 'synchronise the clock (NTP: timedatectl set-ntp true, or chrony): WeChat’s and Discord’s signed requests are refused beyond SIGNATURE_TOLERANCE_S' };
      }
      return { ok: true, detail: off === 0 ? `agrees with ${new URL(url).host} (within ${slack.toFixed(1)} s)` : `${Math.abs(Math.round(off))} s off ${new URL(url).host}: within ${CLOCK_SKEW_MAX_S} s` };
    },
  );
  // Not compared (the backend did not answer: its own line says so) is no verdict on the clock.
  return judged.ok === false && !judged.fix ? { name: 'clock', ok: undefined, detail: `not compared: ${judged.detail}` } : judged;
}

/** PUBLIC_URL serves this bot's answer page: its script, byte for byte. */
async function publicUrlCheck(config: CoreConfig): Promise<Check> {
  const base = config.page.publicUrl;
  if (!base) return { name: 'PUBLIC_URL', ok: undefined, detail: 'not set: the answer page is off and placeholders carry no link' };
  if (!config.page.enabled) return { name: 'PUBLIC_URL', ok: undefined, detail: `${base} (the answer page is off: ANSWER_PAGE=off)` };
  const asset = config.page.routes === 'laf' ? '/answer?asset=page.js' : '/a/assets/page.js';
  return checked(
    'PUBLIC_URL',
    async () => {
      const res = await call({ method: 'GET', url: `${base}${asset}`, timeoutMs: 10_000 }, 1024 * 1024);
      if (res.status === 200 && res.body.toString('utf8') === PAGE_JS) {
        return { ok: true, detail: `${base} serves this bot (its answer page’s script, byte for byte)${base.startsWith('http://') ? '; plain http: phones may warn' : ''}` };
      }
      return {
        ok: false,
        detail: `${base}${asset}: HTTP ${res.status}${res.status === 200 ? ', another script' : ''}`,
        fix: res.status === 200 ? 'PUBLIC_URL serves another version or another site: point it at this deployment (and restart it after an upgrade)' : 'PUBLIC_URL must reach this server: the reverse proxy must pass /a/ (laf: the answer function) through',
      };
    },
    () => 'PUBLIC_URL cannot be reached from here: DNS, the reverse proxy, its certificate, a firewall',
  );
}

/**
 * The web chat: framed on other sites (WEB_CHAT_EMBED_ORIGINS) its visitor cookie is `SameSite=None;
 * Secure`, which browsers keep only over https (docs/web-chat.md), so PUBLIC_URL must be https; and
 * PUBLIC_URL/chat serves this bot's chat (its script, byte for byte). The API: PUBLIC_URL/api/v1 answers
 * with its OpenAPI document (no key needed, nothing asked).
 */
async function webChecks(config: CoreConfig, channels: readonly Channel[]): Promise<Check[]> {
  const base = config.page.publicUrl;
  const out: Promise<Check>[] = [];
  const web = channels.find(isWebChannel);
  if (web && web.settings.embedOrigins.length > 0) {
    const sites = `${web.settings.embedOrigins.length} site${web.settings.embedOrigins.length > 1 ? 's' : ''} (${web.settings.embedOrigins.join(' ')})`;
    out.push(
      Promise.resolve<Check>(
        !base
          ? { name: 'web chat: embedding', ok: undefined, detail: `${sites} may frame it, which works only if the chat is served over https (its cookie is then Secure): set PUBLIC_URL to its https address to have this checked` }
          : base.startsWith('https://')
            ? { name: 'web chat: embedding', ok: true, detail: `${sites} may frame it; PUBLIC_URL is https, as its Secure cookie needs` }
            : {
                name: 'web chat: embedding',
                ok: false,
                detail: `WEB_CHAT_EMBED_ORIGINS lets ${sites} frame the chat, but PUBLIC_URL is ${base}: a framed chat’s visitor cookie is Secure (SameSite=None), which browsers keep only over https, so the chat would not work there`,
                fix: 'serve the bot over https (compose.yaml’s Caddy gets a certificate) and set PUBLIC_URL to that address, or leave WEB_CHAT_EMBED_ORIGINS unset',
              },
      ),
    );
  }
  const laf = config.page.routes === 'laf';
  if (web && base) {
    const url = `${base}${laf ? '/chat?p=/assets/chat.js' : '/chat/assets/chat.js'}`;
    out.push(
      checked(
        'web chat: PUBLIC_URL',
        async () => {
          const res = await call({ method: 'GET', url, timeoutMs: 10_000 }, 1024 * 1024);
          if (res.status === 200 && res.body.toString('utf8') === CHAT_JS) return { ok: true, detail: `${base}/chat serves this bot’s chat` };
          return {
            ok: false,
            detail: `${url}: HTTP ${res.status}${res.status === 200 ? ', another script' : ''}`,
            fix: res.status === 200 ? 'PUBLIC_URL serves another version or another site: point it at this deployment (and restart it after an upgrade)' : `the reverse proxy must pass /chat through to this server${laf ? ' (laf: the chat function)' : ''}`,
          };
        },
        () => 'PUBLIC_URL cannot be reached from here: DNS, the reverse proxy, its certificate, a firewall',
      ),
    );
  }
  if (base && channels.some((c) => c.kind === 'api' && c.instance === '')) {
    const url = `${base}/api/v1/openapi.json`;
    out.push(
      checked(
        'API: PUBLIC_URL',
        async () => {
          const res = await call({ method: 'GET', url, timeoutMs: 10_000 }, 1024 * 1024);
          const doc = res.status === 200 ? (JSON.parse(res.body.toString('utf8') || 'null') as { openapi?: unknown } | null) : null;
          if (typeof doc?.openapi === 'string') return { ok: true, detail: `${base}/api/v1 and ${base}/v1 answer (the API’s OpenAPI document)` };
          return { ok: false, detail: `${url}: HTTP ${res.status}${res.status === 200 ? ', not this bot’s OpenAPI document' : ''}`, fix: `the reverse proxy must pass /api/v1 and /v1 through to this server${laf ? ' (laf: the api/v1/… and v1/… functions)' : ''}` };
        },
        (err) => (err instanceof SyntaxError ? 'PUBLIC_URL/api/v1/openapi.json answers something that is not JSON: the reverse proxy must pass /api/v1 and /v1 through' : 'PUBLIC_URL cannot be reached from here: DNS, the reverse proxy, its certificate, a firewall'),
      ),
    );
  }
  return Promise.all(out);
}

export async function runChecks(deps: DoctorDeps): Promise<Check[]> {
  const several = deps.backends.size > 1;
  const backendChecks = [...deps.backends].map(([a, names]) =>
    checked(
      several && names.length > 0 ? `model backend (${names.join(', ')})` : 'model backend',
      async () => ({ ok: true, detail: `${a.kind}: ${await a.probe()}` }),
      (err) => backendFix(a, err),
    ),
  );
  const channelChecks = deps.channels.map(async (c) => (c.selfCheck ? c.selfCheck().catch((err: unknown) => [{ name: c.name, ok: false, detail: err instanceof Error ? err.message : String(err) } as Check]) : []));
  const endpoints = [...new Set([...deps.backends.keys()].map((a) => a.endpoint).filter((e): e is string => typeof e === 'string'))];
  const [backends, channels, store, clocks, page, web] = await Promise.all([
    Promise.all(backendChecks),
    Promise.all(channelChecks),
    deps.store().catch((err: unknown) => [{ name: 'store', ok: false, detail: err instanceof Error ? err.message : String(err) } as Check]),
    Promise.all(endpoints.slice(0, 2).map((e) => clockSkew(e, deps.clock))),
    publicUrlCheck(deps.config),
    webChecks(deps.config, deps.channels),
  ]);
  return [...backends, ...channels.flat(), ...store, ...clocks, page, ...web];
}

/** The checks as lines for a terminal: ✓/✗/– name: detail, and the fix under a failure. */
export function checkLines(checks: readonly Check[]): string[] {
  return checks.flatMap((c) => {
    const mark = c.ok === true ? '✓' : c.ok === false ? '✗' : '–';
    return [`${mark} ${c.name}: ${c.detail}`, ...(c.fix && c.ok !== true ? [`    fix: ${c.fix}`] : [])];
  });
}

/**
 * The iLink session of one channel instance, kept in the store so every instance (and the `npm run
 * ilink` tool) shares it: the credentials a QR login returned (bot token, bot id, base URL, owner),
 * whether the service ended them (-14), and the progress of a login the console started. The token
 * is a secret: registered with the logger's redaction whenever it is read, never written to a log,
 * shown masked. There is no refresh: an ended session comes back only with a new QR login.
 */
import { createHash } from 'crypto';
import type { Store } from '../../store';
import type { Logger } from '../../util/log';

/** Kept "forever" (the store wants an expiry): about 30 years. */
const FOREVER_MS = 30 * 365 * 86_400_000;

export interface Credentials {
  token: string;
  botId: string;
  baseUrl: string;
  /** The WeChat user who scanned (the owner); '' for a session from the environment. */
  userId: string;
  savedAt: number;
  source: 'qr' | 'env';
}

export interface SessionState {
  credentials: Credentials | undefined;
  /** The service ended the session (-14) at this time; polling waits for a new login. */
  expiredAt: number | undefined;
}

/** A login in progress (or just ended), as the console shows it. */
export interface LoginState {
  id: string;
  status: string;
  /** What the current QR code encodes, while one is being shown. */
  qr: string | undefined;
  startedAt: number;
  updatedAt: number;
  /** How it ended, when it did: the bot id, or why not. */
  result: string | undefined;
  done: boolean;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);

/** A secret as the console and tools show it: only its last four characters. */
export function maskSecret(s: string): string {
  return s.length <= 8 ? '…' : `…${s.slice(-4)}`;
}

/** A bot or user id as the console shows it: enough to tell it apart. */
export function maskId(id: string): string {
  const at = id.indexOf('@');
  const head = at === -1 ? id : id.slice(0, at);
  const tail = at === -1 ? '' : id.slice(at);
  return head.length <= 8 ? `${head.slice(0, 2)}…${tail}` : `${head.slice(0, 4)}…${head.slice(-2)}${tail}`;
}

/** The store values (kv ids) that hold an instance's session and its end (-14): what `state` reads. */
export function sessionRecordIds(account: string): [credentials: string, expired: string] {
  return [`ilink:session:${account}`, `ilink:expired:${account}`];
}

export class SessionStore {
  private readonly credKey: string;
  private readonly expiredKey: string;
  private readonly loginKey: string;
  private readonly verifyKey: string;

  constructor(
    private readonly store: Store,
    /** The channel instance's name (`ilink`, `ilink@shop`): one session each. */
    readonly account: string,
    private readonly logger?: Logger,
  ) {
    [this.credKey, this.expiredKey] = sessionRecordIds(account);
    this.loginKey = `ilink:login:${account}`;
    this.verifyKey = `ilink:verify:${account}`;
  }

  async state(now: number): Promise<SessionState> {
    const [raw, expired] = await Promise.all([this.store.kvGet(this.credKey, now), this.store.kvGet(this.expiredKey, now)]);
    const credentials = raw !== undefined ? parseCredentials(raw) : undefined;
    if (credentials) this.logger?.addSecret(credentials.token);
    // An expiry counts only for the token it was seen with (a newer login is not expired).
    const expiredAt = credentials && expired?.startsWith(`${hash(credentials.token)}:`) ? Number(expired.slice(33)) : undefined;
    return { credentials, expiredAt };
  }

  /** The credentials, if they are there and the service has not ended them. */
  async live(now: number): Promise<Credentials | undefined> {
    const s = await this.state(now);
    return s.expiredAt === undefined ? s.credentials : undefined;
  }

  /** A new session (a login, or one from the environment): saved, and no longer expired. */
  async save(c: Credentials, now: number): Promise<void> {
    this.logger?.addSecret(c.token);
    await this.store.kvPut(this.credKey, JSON.stringify(c), now + FOREVER_MS);
    await this.store.kvPut(this.expiredKey, '', 0);
  }

  /** The service ended the session with `token` (-14). False when the stored session is another (newer) one, or already marked. */
  async expire(token: string, now: number): Promise<boolean> {
    const s = await this.state(now);
    if (!s.credentials || s.credentials.token !== token || s.expiredAt !== undefined) return false;
    // The expiry names the token: a login saved meanwhile is not affected.
    if (!(await this.store.acquireLease(this.expiredKey, `${hash(token)}:${now}`, now + FOREVER_MS, now))) return false;
    return true;
  }

  /** The session is back (the service said the bot is still bound to this client). */
  async revive(): Promise<void> {
    await this.store.kvPut(this.expiredKey, '', 0);
  }

  /** Log out: forget the credentials. */
  async clear(): Promise<void> {
    await this.store.kvPut(this.credKey, '', 0);
    await this.store.kvPut(this.expiredKey, '', 0);
  }

  // ---- a login started from the console (any instance may show it; one instance runs it)

  async login(now: number): Promise<LoginState | undefined> {
    const raw = await this.store.kvGet(this.loginKey, now);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as LoginState;
    } catch {
      return undefined;
    }
  }

  async setLogin(s: LoginState): Promise<void> {
    // Kept a day after it ends, for the console's page.
    await this.store.kvPut(this.loginKey, JSON.stringify(s), s.updatedAt + 86_400_000);
  }

  /** The verify code the owner typed on the console for login `id`, once. */
  async takeVerifyCode(id: string, now: number): Promise<string | undefined> {
    const raw = await this.store.kvGet(this.verifyKey, now);
    if (raw === undefined || !raw.startsWith(`${id}:`)) return undefined;
    await this.store.kvExpire(this.verifyKey, raw);
    return raw.slice(id.length + 1);
  }

  async putVerifyCode(id: string, code: string, now: number): Promise<void> {
    await this.store.kvPut(this.verifyKey, `${id}:${code}`, now + 10 * 60_000);
  }
}

function parseCredentials(raw: string): Credentials | undefined {
  try {
    const c = JSON.parse(raw) as Partial<Credentials>;
    if (typeof c.token !== 'string' || !c.token || typeof c.botId !== 'string' || typeof c.baseUrl !== 'string') return undefined;
    return { token: c.token, botId: c.botId, baseUrl: c.baseUrl, userId: typeof c.userId === 'string' ? c.userId : '', savedAt: typeof c.savedAt === 'number' ? c.savedAt : 0, source: c.source === 'env' ? 'env' : 'qr' };
  } catch {
    return undefined;
  }
}

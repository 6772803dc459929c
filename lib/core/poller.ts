/**
 * Inbound by long-polling (docs/channels.md "Pollers"), for platforms that push nothing to a URL:
 * the bot asks "anything since <cursor>?", the platform holds the request until a message comes or
 * its timeout passes, and answers with the messages and a new cursor.
 *
 * Exactly one poller per account runs across all instances: it holds a lease in the store
 * (`Store.claimPoller`), renewed before every poll, so a second instance waits on standby and takes
 * over when the holder stops renewing (a crash: once the lease has expired). The cursor lives in the
 * same store record and moves only after every message of a batch has been handed to the core,
 * which claims each one (one answer per message, however often it is seen). So a crash between the
 * two only means a batch is seen again: nothing is lost, nothing answered twice. A stale holder
 * (paused past its lease) cannot move the cursor any more: the write checks the owner.
 */
import { randomBytes } from 'crypto';
import { errorLogFields } from '../errors';
import type { Store } from '../store';
import type { Clock } from '../util/clock';
import type { Logger } from '../util/log';
import { Stop } from '../util/stop';
import type { StopSignal } from './answerer';

export interface PollBatch<M> {
  messages: readonly M[];
  /** Where the next poll starts. */
  cursor: string;
}

export interface PollSource<M = unknown> {
  /** The account polled: one poller per account (the lease's name). */
  readonly account: string;
  /** Longest the platform holds one poll; the lease outlives it. */
  readonly holdMs: number;
  /** One long-poll from `cursor` (undefined: wherever the platform starts). Rejects on failure; ends early on `stop`. */
  poll(cursor: string | undefined, stop: StopSignal): Promise<PollBatch<M>>;
  /** Hand one message to the core (it claims it: a message seen again is answered once). */
  handle(message: M): Promise<void>;
  /**
   * Polling cannot go on until something outside changes (the session expired, a new login is
   * needed): the runner stands by, asking this again every standby period. Optional.
   */
  paused?(): Promise<boolean>;
}

export interface PollerOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** Who this process is (a random id by default). */
  owner?: string;
  /** The lease outlives the longest poll by this long (POLLER_TAKEOVER_S): after a crash another instance takes over then. */
  takeoverMs?: number;
  /** Backoff after a failed poll: from `baseMs`, doubling, at most `maxMs`, each with jitter. */
  backoff?: { baseMs: number; maxMs: number };
  /** How often a process without the lease looks whether it is free (default: a third of the lease). */
  standbyMs?: number;
  /** [0, 1): the jitter's randomness (tests pass their own). */
  random?: () => number;
}

/** The wait after `failures` failed polls in a row: exponential, capped, with "equal jitter" (half fixed, half random). */
export function backoffDelay(failures: number, base: number, max: number, random: () => number): number {
  const full = Math.min(max, base * 2 ** Math.max(0, failures - 1));
  return Math.round(full / 2 + (full / 2) * random());
}

export type PollerState = 'starting' | 'polling' | 'standby' | 'paused' | 'backoff' | 'stopped';

export class Poller<M = unknown> {
  readonly owner: string;
  private readonly stopSignal = new Stop();
  private loop: Promise<void> | undefined;
  private current: Stop | undefined;
  private stateNow: PollerState = 'starting';
  private failures = 0;

  constructor(
    private readonly source: PollSource<M>,
    private readonly o: PollerOptions,
  ) {
    this.owner = o.owner ?? randomBytes(9).toString('base64url');
  }

  get state(): PollerState {
    return this.stateNow;
  }

  private get leaseMs(): number {
    return this.source.holdMs + (this.o.takeoverMs ?? 30_000);
  }

  start(): void {
    this.loop ??= this.run().catch((err) => this.o.logger.error('poller stopped by an error', { account: this.source.account, ...errorLogFields(err) }));
  }

  /** Stop polling: the poll in progress is ended, the lease released (the cursor stays), the loop awaited. */
  async stop(): Promise<void> {
    this.stopSignal.stop();
    this.current?.stop();
    await this.loop;
    this.stateNow = 'stopped';
  }

  /** Sleep `ms`, or less if the poller is stopped meanwhile. */
  private rest(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const wake = () => {
        if (!done) {
          done = true;
          resolve();
        }
      };
      this.stopSignal.onStop(wake);
      void this.o.clock.sleep(ms).then(wake);
    });
  }

  private async run(): Promise<void> {
    const { store, clock, logger } = this.o;
    const { account } = this.source;
    const standby = this.o.standbyMs ?? Math.max(50, Math.floor(this.leaseMs / 3));
    const backoff = this.o.backoff ?? { baseMs: 1000, maxMs: 60_000 };
    const random = this.o.random ?? Math.random;
    let holding = false;
    while (!this.stopSignal.stopped) {
      if (this.source.paused && (await this.source.paused().catch(() => false))) {
        this.stateNow = 'paused';
        await this.rest(standby);
        continue;
      }
      let lease: { cursor: string | undefined } | null;
      try {
        lease = await store.claimPoller(account, this.owner, clock.now() + this.leaseMs, clock.now());
      } catch (err) {
        logger.warn('poller: the store did not answer', { account, ...errorLogFields(err) });
        lease = null;
      }
      if (!lease) {
        if (holding) logger.warn('poller: the lease went to another instance', { account });
        holding = false;
        this.stateNow = 'standby';
        await this.rest(standby);
        continue;
      }
      if (!holding) logger.info('poller: holding the lease', { account });
      holding = true;
      this.stateNow = 'polling';
      const stop = (this.current = new Stop());
      try {
        const batch = await this.source.poll(lease.cursor, stop);
        if (this.stopSignal.stopped && batch.messages.length === 0) break;
        for (const m of batch.messages) await this.source.handle(m);
        if (!(await store.savePollCursor(account, this.owner, batch.cursor))) {
          logger.warn('poller: lost the lease before saving the cursor; the batch will be seen again', { account });
          holding = false;
        }
        this.failures = 0;
      } catch (err) {
        if (this.stopSignal.stopped) break;
        this.failures++;
        const wait = backoffDelay(this.failures, backoff.baseMs, backoff.maxMs, random);
        logger.warn('poll failed; trying again', { account, failures: this.failures, waitMs: wait, ...errorLogFields(err) });
        this.stateNow = 'backoff';
        await this.rest(wait);
      } finally {
        this.current = undefined;
      }
    }
    if (holding) await store.releasePoller(account, this.owner).catch(() => undefined);
  }
}

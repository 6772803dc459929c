/**
 * The poller contract (lib/core/poller.ts) in one process, on a real store: the cursor moves only
 * after a batch is handed over and survives a restart, failures back off with jitter and lose
 * nothing, one of two pollers polls at a time, a stale holder can no longer move the cursor, and a
 * stop ends the poll in progress and frees the lease at once. Processes and kill -9:
 * test/reliability/poller-crash.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Poller, backoffDelay } from '../../lib/core/poller';
import type { PollBatch, PollSource } from '../../lib/core/poller';
import type { StopSignal } from '../../lib/core/answerer';
import { Store } from '../../lib/store';
import { nedbBackend } from '../../lib/store/nedb';
import { memoryLogger } from '../../lib/util/log';
import { systemClock } from '../../lib/util/clock';
import { eventually, sleep } from '../support/harness';

/** A platform's queue: messages numbered from 1; a poll from cursor n gets those after n, held until one exists. */
class Platform {
  readonly messages: string[] = [];
  polling = 0;
  most = 0;
  failNext = 0;
  private wake: (() => void)[] = [];

  add(...m: string[]): void {
    this.messages.push(...m);
    for (const w of this.wake.splice(0)) w();
  }

  /** A source reading this platform, handing each message to `seen` (as the core's claim would). */
  source(seen: string[], holdMs = 200): PollSource<string> {
    return {
      account: 'acct-1',
      holdMs,
      poll: async (cursor: string | undefined, stop: StopSignal): Promise<PollBatch<string>> => {
        this.polling++;
        this.most = Math.max(this.most, this.polling);
        try {
          if (this.failNext > 0) {
            this.failNext--;
            throw new Error('platform down');
          }
          const from = Number(cursor ?? '0');
          if (this.messages.length <= from) {
            await new Promise<void>((resolve) => {
              const t = setTimeout(resolve, holdMs);
              this.wake.push(() => (clearTimeout(t), resolve()));
              stop.onStop(() => (clearTimeout(t), resolve()));
            });
          }
          const batch = this.messages.slice(from);
          return { messages: batch, cursor: String(from + batch.length) };
        } finally {
          this.polling--;
        }
      },
      handle: async (m) => void seen.push(m),
    };
  }
}

const logger = memoryLogger();
let stores: Store[] = [];
const pollers: Poller<string>[] = [];
afterEach(async () => {
  for (const p of pollers.splice(0)) await p.stop();
  for (const s of stores) await s.close();
  stores = [];
});

async function openStore(): Promise<Store> {
  const s = await Store.open(nedbBackend({ inMemory: true }));
  stores.push(s);
  return s;
}

function poller(store: Store, source: PollSource<string>, owner: string, takeoverMs = 300): Poller<string> {
  const p = new Poller(source, { store, clock: systemClock, logger, owner, takeoverMs, standbyMs: 50, backoff: { baseMs: 20, maxMs: 80 } });
  pollers.push(p);
  return p;
}

describe('backoff', () => {
  it('doubles from the base to the cap, each wait between half and all of it', () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, 1000, 60_000, () => 0))).toEqual([500, 1000, 2000, 4000, 8000, 30_000]);
    expect([1, 2, 3, 9].map((n) => backoffDelay(n, 1000, 60_000, () => 0.999999))).toEqual([1000, 2000, 4000, 60_000]);
  });
});

describe('a poller', () => {
  it('hands every message over once, saves the cursor after each batch, and a new process resumes from it', async () => {
    const store = await openStore();
    const platform = new Platform();
    const seen: string[] = [];
    const first = poller(store, platform.source(seen), 'p1');
    first.start();
    platform.add('a', 'b');
    await eventually(() => seen.length === 2);
    platform.add('c');
    await eventually(() => seen.length === 3);
    await eventually(async () => (await store.claimPoller('acct-1', 'p1', Date.now() + 1000, Date.now()))?.cursor === '3');
    await first.stop();
    expect(first.state).toBe('stopped');
    // Stopped: the lease is free at once for anyone, and the cursor is kept.
    platform.add('d');
    const second = poller(store, platform.source(seen), 'p2');
    second.start();
    await eventually(() => seen.length === 4);
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
  });

  it('backs off while polls fail, and loses nothing', async () => {
    const store = await openStore();
    const platform = new Platform();
    const seen: string[] = [];
    platform.add('a');
    platform.failNext = 3;
    const p = poller(store, platform.source(seen), 'p1');
    p.start();
    await eventually(() => seen.length === 1);
    expect(seen).toEqual(['a']);
    expect(logger.lines.filter((l) => l.includes('poll failed')).length).toBeGreaterThanOrEqual(3);
  });

  it('two pollers on one store: one polls at a time; when the holder stops, the other takes over', async () => {
    const store = await openStore();
    const platform = new Platform();
    const seen: string[] = [];
    const a = poller(store, platform.source(seen), 'pa');
    const b = poller(store, platform.source(seen), 'pb');
    a.start();
    b.start();
    for (let i = 0; i < 5; i++) {
      platform.add(`m${i}`);
      await sleep(60);
    }
    await eventually(() => seen.length === 5);
    const holder = a.state === 'polling' ? a : b;
    const standby = holder === a ? b : a;
    expect(standby.state).toBe('standby');
    await holder.stop();
    platform.add('after');
    await eventually(() => seen.includes('after'));
    expect(seen).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'after']);
    expect(platform.most).toBe(1);
  });

  it('a holder that stops renewing (hung) loses the lease once it expires; its late batch cannot move the cursor', async () => {
    const store = await openStore();
    const platform = new Platform();
    const seenA: string[] = [];
    const seenB: string[] = [];
    const sourceA = platform.source(seenA);
    let polls = 0;
    // A's second poll never returns (until stopped): it renews its lease no more.
    const hung: PollSource<string> = {
      ...sourceA,
      poll: async (cursor, stop) => {
        if (++polls === 1) return sourceA.poll(cursor, stop);
        await new Promise<void>((resolve) => stop.onStop(resolve));
        return { messages: ['late'], cursor: '99' };
      },
    };
    const a = poller(store, hung, 'pa', 200);
    a.start();
    platform.add('x');
    await eventually(() => seenA.length === 1);
    const b = poller(store, platform.source(seenB), 'pb', 200);
    b.start();
    platform.add('y');
    await eventually(() => seenB.includes('y'), 5000);
    // B started from A's saved cursor: nothing A handed over is seen again.
    expect(seenB).toEqual(['y']);
    expect(await store.savePollCursor('acct-1', 'pa', '0')).toBe(false);
  });

  it('stops at once even in the middle of a long hold', async () => {
    const store = await openStore();
    const platform = new Platform();
    const p = poller(store, platform.source([], 60_000), 'p1');
    p.start();
    await eventually(() => p.state === 'polling' && platform.polling === 1);
    await p.stop(); // would hang for a minute if the poll in progress were not ended
    expect(await store.pollerState('acct-1')).toMatchObject({ owner: '', until: 0 });
  });
});

/**
 * A clock that moves only when a test says so (lib/util/clock.ts's interface): `sleep` resolves when
 * `advance` reaches its time, so timing decisions can be checked to the millisecond, at real WeChat
 * timings, in no real time.
 */
import type { Clock } from '../../lib/util/clock';

/** Let promise chains and I/O callbacks started by a timer run to their next wait. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

export class ManualClock implements Clock {
  private t: number;
  private timers: { at: number; seq: number; resolve: () => void }[] = [];
  private seq = 0;

  // Starts at the real time: stores expire records by the real date (TTL).
  constructor(start = Date.now()) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.timers.push({ at: this.t + Math.max(0, ms), seq: this.seq++, resolve }));
  }

  /** Move time forward by `ms`, firing each timer at its own time, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers.splice(this.timers.indexOf(due), 1);
      this.t = due.at;
      due.resolve();
    }
    this.t = end;
    await settle();
  }

  /** Advance to an absolute time (ms since this clock's start). */
  async to(offset: number, start: number): Promise<void> {
    await this.advance(start + offset - this.t);
  }
}

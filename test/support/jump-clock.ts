/**
 * A clock that runs in real time and can also jump ahead (lib/util/clock.ts's interface): for
 * protocol rules measured in hours or minutes (WeCom's 48-hour window, the intelligent bot's
 * 6-minute stream) while the servers under test keep their real timers. A simulator given
 * `now: () => clock.now()` sees the same jumps. A `sleep` ends when the clock reaches its time,
 * whether by waiting or by a jump.
 */
import type { Clock } from '../../lib/util/clock';

export class JumpClock implements Clock {
  private offset = 0;
  private readonly sleepers = new Set<{ at: number; wake: () => void }>();

  now(): number {
    return Date.now() + this.offset;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = {
        at: this.now() + Math.max(0, ms),
        wake: () => {
          clearTimeout(timer);
          this.sleepers.delete(s);
          resolve();
        },
      };
      const timer = setTimeout(s.wake, Math.max(0, ms));
      this.sleepers.add(s);
    });
  }

  /** Move the clock `ms` ahead at once; sleeps that end by then end now. */
  jump(ms: number): void {
    this.offset += ms;
    for (const s of [...this.sleepers]) if (s.at <= this.now()) s.wake();
  }
}

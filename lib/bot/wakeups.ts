/**
 * In-process wake-ups: a delivery waiting for an answer sleeps until the answer settles in this
 * process (`notify`) or its poll interval passes, whichever is first. The store stays the truth;
 * this only shortens the wait (docs/architecture.md). Keyed by user, since `1` waits for any of
 * the user's answers and a question's own delivery for one of them.
 */
import type { Clock } from '../clock';

export class Wakeups {
  private readonly waiting = new Map<string, Set<() => void>>();

  constructor(private readonly clock: Clock) {}

  /** Resolves on `notify(key)` or after `ms`, whichever comes first. */
  wait(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiting.get(key);
      if (!set) this.waiting.set(key, (set = new Set()));
      const waiters = set;
      const wake = () => {
        if (!waiters.delete(wake)) return;
        if (waiters.size === 0 && this.waiting.get(key) === waiters) this.waiting.delete(key);
        resolve();
      };
      waiters.add(wake);
      void this.clock.sleep(ms).then(wake);
    });
  }

  notify(key: string): void {
    const set = this.waiting.get(key);
    if (!set) return;
    this.waiting.delete(key);
    for (const wake of [...set]) wake();
  }

  /** How many deliveries are waiting (diagnostics). */
  get size(): number {
    let n = 0;
    for (const s of this.waiting.values()) n += s.size;
    return n;
  }
}

/**
 * A delivery waiting for an answer sleeps until the store reports a change to one of the user's
 * questions through this process (`Store.onChange`) or its poll interval passes, whichever is first.
 * The store stays the truth; this only shortens the wait (docs/architecture.md). Keyed by user,
 * since `1` waits for any of the user's answers and a question's own delivery for one of them.
 */
import type { Clock } from '../util/clock';
import type { Store } from '../store/store';

export class Wakeups {
  constructor(
    private readonly clock: Clock,
    private readonly store: Store,
  ) {}

  /** Resolves when one of `user`'s questions changes here, or after `ms`, whichever comes first. */
  wait(user: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const wake = () => {
        if (done) return;
        done = true;
        off();
        resolve();
      };
      const off = this.store.onChange(user, wake);
      void this.clock.sleep(ms).then(wake);
    });
  }
}

/** A one-shot stop signal: AbortController's idea, which laf's function sandbox lacks (docs/laf.md). */
export class Stop {
  private listeners: (() => void)[] = [];
  private done = false;

  get stopped(): boolean {
    return this.done;
  }

  stop(): void {
    if (this.done) return;
    this.done = true;
    const listeners = this.listeners;
    this.listeners = [];
    for (const l of listeners) l();
  }

  onStop(listener: () => void): void {
    if (this.done) listener();
    else this.listeners.push(listener);
  }
}

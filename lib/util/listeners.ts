/** Listeners by key, for in-process news (lib/core/live.ts, Store.onChange): add one, tell a key's. */
export class Listeners<E> {
  private readonly byKey = new Map<string, Set<(e: E) => void>>();

  /** Call `listener` on each `emit(key, …)`; call the returned function to stop. */
  on(key: string, listener: (e: E) => void): () => void {
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    const mine = set;
    mine.add(listener);
    return () => {
      mine.delete(listener);
      if (mine.size === 0 && this.byKey.get(key) === mine) this.byKey.delete(key);
    };
  }

  emit(key: string, event: E): void {
    const set = this.byKey.get(key);
    if (!set) return;
    for (const listener of [...set]) listener(event);
  }
}

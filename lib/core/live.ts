/**
 * In-process news about answers being written: the worker tells answer pages served by this
 * process about each new piece of text, and when the answer settles, so they update at once. The
 * store stays the truth: a page served by another instance reads the progress the worker saves
 * there (docs/answer-page.md); this only makes the same process faster.
 */
import { Listeners } from '../util/listeners';

export type LiveEvent = { text: string; attempt: number } | { settled: true };

export class LiveAnswers {
  private readonly listeners = new Listeners<LiveEvent>();
  /** The latest text of each answer being written in this process. */
  private readonly latest = new Map<string, { text: string; attempt: number }>();

  publish(key: string, event: LiveEvent): void {
    if ('text' in event) this.latest.set(key, event);
    else this.latest.delete(key);
    this.listeners.emit(key, event);
  }

  /** The text so far, when this process is writing the answer. */
  current(key: string): { text: string; attempt: number } | undefined {
    return this.latest.get(key);
  }

  /** Listen to `key`'s news; call the returned function to stop. */
  subscribe(key: string, listener: (e: LiveEvent) => void): () => void {
    return this.listeners.on(key, listener);
  }
}

/**
 * Following an answer while it is written, for whatever shows it live (the answer page, a web chat,
 * an HTTP stream): the text so far as deltas, then the settled answer, or word that it is gone. This
 * process's own news comes at once (lib/core/live.ts); the store, the truth and the only news from
 * other instances, is read every `pollMs`. A follower that resumes (`from`, the position it last
 * saw) gets only what it is missing, or everything again after a takeover restarted the answer.
 */
import { errorLogFields } from '../errors';
import type { MessageRecord } from '../store';
import type { Logger } from '../util/log';
import type { LiveAnswers } from './live';

/** Where a follower is in an answer: which attempt (a takeover starts the text again), how far. */
export interface Position {
  attempt: number;
  at: number;
}

/** `"<attempt>.<at>"`, as a follower sends it back (an SSE id); undefined when malformed. */
export function parsePosition(v: string | undefined): Position | undefined {
  const m = /^(\d{1,3})\.(\d{1,9})$/.exec(v ?? '');
  return m ? { attempt: Number(m[1]), at: Number(m[2]) } : undefined;
}

export const formatPosition = (p: Position) => `${p.attempt}.${p.at}`;

/** What a follower at `from` is missing of `p`: the rest of the text, or all of it after a takeover. */
export function delta(p: { text: string; attempt: number }, from: Position | undefined): { attempt: number; at: number; add: string } {
  const at = from && from.attempt === p.attempt && from.at <= p.text.length ? from.at : 0;
  return { attempt: p.attempt, at, add: p.text.slice(at) };
}

/** The text so far: this process's own when it is writing the answer (fresher), else the store's. */
export function progressOf(live: LiveAnswers, q: MessageRecord): { text: string; attempt: number } {
  const mine = live.current(q._id);
  const stored = { text: q.answer ?? '', attempt: q.attempts ?? 1 };
  return mine && mine.attempt >= stored.attempt && mine.text.length >= stored.text.length ? mine : stored;
}

export interface FollowHandlers {
  /** More text: `add` goes at `at` of attempt `attempt` (at 0 after a takeover: start again). */
  text(d: { attempt: number; at: number; add: string }, position: Position): void;
  /** The answer settled (answered or failed): the follow is over. */
  settled(q: MessageRecord): void;
  /** The question is gone (cleared, deleted, no longer visible): the follow is over. */
  gone(): void;
}

export interface FollowOptions {
  live: LiveAnswers;
  logger: Logger;
  /** How often the store is read (for news from other instances). */
  pollMs: number;
  /** The question as it is now in the store, or null when the follower may no longer see it. */
  lookup(): Promise<MessageRecord | null>;
  /** Resume from here. */
  from?: Position | undefined;
}

/** Follow pending question `q`; `stop()` ends it (the handlers are not called after). */
export function followAnswer(q: MessageRecord, o: FollowOptions, on: FollowHandlers): { stop(): void; check(): void } {
  let pos = o.from;
  let over = false;
  const sendText = (p: { text: string; attempt: number }) => {
    if (over) return;
    const d = delta(p, pos);
    if (pos && d.attempt === pos.attempt && d.at === pos.at && d.add === '') return;
    if (pos && d.attempt === pos.attempt && p.text.length < pos.at) return; // the store lags this process
    pos = { attempt: d.attempt, at: d.at + d.add.length };
    on.text(d, pos);
  };
  const end = (q2: MessageRecord | null) => {
    if (over) return;
    stop();
    if (q2 && (q2.status === 'answered' || q2.status === 'failed')) on.settled(q2);
    else on.gone();
  };
  let checking = false;
  let ticks = 0;
  const check = async (tick = false) => {
    if (over || checking) return;
    // While this process writes the answer, its news comes in memory; the store is read every
    // few polls still, for a /clear or an unsubscribe handled elsewhere.
    if (tick && o.live.current(q._id) && ++ticks % 5 !== 0) return;
    checking = true;
    try {
      const cur = await o.lookup();
      if (!cur) return end(null);
      if (cur.status !== 'pending') return end(cur);
      sendText(progressOf(o.live, cur));
    } catch (err) {
      o.logger.warn('could not read the store while following an answer', errorLogFields(err));
    } finally {
      checking = false;
    }
  };
  const unsubscribe = o.live.subscribe(q._id, (e) => {
    if ('text' in e) sendText(e);
    else void check();
  });
  const timer = setInterval(() => void check(true), o.pollMs);
  function stop() {
    if (over) return;
    over = true;
    clearInterval(timer);
    unsubscribe();
  }
  void check();
  return { stop, check: () => void check() };
}

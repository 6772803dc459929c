/**
 * An exclusive lock on the embedded store's directory, so two processes can never share its files
 * (they would each keep a copy in memory and overwrite each other's writes; docs/store.md).
 *
 * The lock is a file created with O_EXCL holding the owner's pid, host, boot id and process start
 * time. A lock whose owner is gone is stale and is taken over, so a process killed with `kill -9`
 * never blocks its restart. "Gone" is decided without trusting the pid alone, since pids are reused
 * (a container's server is often pid 1 or 7 on every start): on Linux the recorded start time must
 * match /proc/<pid>/stat, on a new boot every old lock is stale, and a lock naming our own pid
 * but another start time is a previous life of this container. A killed process that its parent has
 * not reaped yet (a zombie, state `Z` in /proc/<pid>/stat) still answers `kill(pid, 0)` but holds
 * nothing: where the init process reaps slowly it stays so for seconds after `kill -9`.
 * A live holder is given a few seconds to finish exiting (a restart issued while the old server is
 * still in its shutdown grace) before the lock is refused.
 */
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'fs';
import { hostname } from 'os';
import { join } from 'path';
import { StoreError } from '../errors';

export const LOCK_FILE = 'LOCK';

interface Holder {
  pid: number;
  host: string;
  boot: string;
  /** Process start: clock ticks since boot on Linux, else a millisecond timestamp. */
  start: string;
  at: string;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

const bootId = (): string => readText('/proc/sys/kernel/random/boot_id')?.trim() ?? '';

/** How long a live holder is given to exit before the lock is refused. */
export const HOLDER_EXIT_WAIT_MS = 3000;
const POLL_MS = 50;

/**
 * Fields 3 (state) and 22 (start time in ticks since boot) of /proc/<pid>/stat; the command before
 * them, in parentheses, may contain spaces.
 */
function procStat(pid: number | 'self'): { state: string; start: string } | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: fields[19] ?? '' };
}

function me(): Holder {
  const start = procStat('self')?.start ?? String(Math.round((Date.now() - process.uptime() * 1000) / 1000));
  return { pid: process.pid, host: hostname(), boot: bootId(), start, at: new Date().toISOString() };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Is the process that wrote `h` still running? */
function holderLives(h: Holder, self: Holder): boolean {
  if (h.host !== self.host) return true; // another machine sharing the directory: we can't tell, so respect it
  if (h.boot && self.boot && h.boot !== self.boot) return false; // written before the last reboot
  if (h.pid === self.pid) return h.start === self.start; // our own pid: this process (alive) or an earlier one
  if (!alive(h.pid)) return false;
  const stat = procStat(h.pid);
  if (stat === undefined) return true; // no /proc (not Linux): the pid exists, and that is all we can tell
  if (stat.state === 'Z' || stat.state === 'X') return false; // killed, waiting to be reaped: holds nothing
  return stat.start === h.start;
}

/** Block this thread for `ms` (the lock is taken while the server starts, before it serves anything). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Who holds the lock on `dir`, without taking it (`npm run doctor`): undefined when nobody does;
 * `alive` false for a lock left by a process that is gone (the next start takes it over).
 */
export function lockHolder(dir: string): { pid: number; host: string; alive: boolean } | undefined {
  const text = readText(join(dir, LOCK_FILE));
  if (text === undefined) return undefined;
  let holder: Holder;
  try {
    holder = JSON.parse(text) as Holder;
  } catch {
    return { pid: 0, host: '', alive: false };
  }
  if (typeof holder.pid !== 'number') return { pid: 0, host: '', alive: false };
  const self = me();
  return { pid: holder.pid, host: holder.host === self.host ? '' : holder.host, alive: holderLives(holder, self) };
}

export interface DirLock {
  readonly path: string;
  release(): void;
}

/**
 * Take the lock on `dir` or throw a `StoreError` naming the directory and the holder's pid.
 * `onStale` is told when a dead owner's lock is taken over. A live holder on this host (another pid)
 * is polled for up to `HOLDER_EXIT_WAIT_MS` before the lock is refused, blocking the caller meanwhile.
 */
export function lockDirectory(dir: string, onStale?: (holder: { pid: number }) => void): DirLock {
  const path = join(dir, LOCK_FILE);
  const self = me();
  const content = JSON.stringify(self);
  const giveUpAt = Date.now() + HOLDER_EXIT_WAIT_MS;
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      const text = readText(path);
      if (text === undefined) continue; // released meanwhile: try again
      let holder: Holder | undefined;
      try {
        holder = JSON.parse(text) as Holder;
      } catch {
        holder = undefined; // torn by a crash while it was being written: nobody holds it
      }
      if (holder && typeof holder.pid === 'number' && holderLives(holder, self)) {
        const mayExit = holder.host === self.host && holder.pid !== self.pid;
        if (mayExit && Date.now() < giveUpAt) {
          sleepSync(POLL_MS);
          attempt--; // waiting for the holder is not a lost race
          continue;
        }
        const where = holder.host === self.host ? '' : ` on host ${holder.host}`;
        const who = holder.pid === self.pid ? 'this process already has it open' : `process ${holder.pid}${where} holds it`;
        throw new StoreError(
          'store_locked',
          `the embedded store in ${dir} is in use (${who}); it belongs to one process. Stop the other process, ` +
            'or use MongoDB (MONGODB_URI) for several instances',
        );
      }
      // Move the stale lock aside atomically; if what we moved is not what we judged stale, a
      // competing restarter got there first: put it back and report it as held.
      const aside = `${path}.stale-${self.pid}-${attempt}`;
      try {
        renameSync(path, aside);
      } catch {
        continue;
      }
      if (readText(aside) !== text) {
        renameSync(aside, path);
        continue;
      }
      unlinkSync(aside);
      onStale?.({ pid: holder?.pid ?? 0 });
      continue;
    }
    try {
      writeSync(fd, content);
    } finally {
      closeSync(fd);
    }
    return {
      path,
      release() {
        // Remove it only if it is still ours.
        if (readText(path) === content) {
          try {
            unlinkSync(path);
          } catch {
            // already gone
          }
        }
      },
    };
  }
  throw new StoreError('store_locked', `could not take the lock on the embedded store in ${dir}; another process is starting on it`);
}

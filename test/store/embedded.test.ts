/**
 * The embedded store belongs to one process (a lock file with stale-holder detection), and
 * survives a torn last record; real files, real child processes killed with SIGKILL.
 */
import { spawn } from 'child_process';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { hostname } from 'os';
import { join } from 'path';
import { describe, expect, it } from 'vitest';
import { StoreError } from '../../lib/errors';
import { LOCK_FILE, lockDirectory } from '../../lib/store/dirlock';
import { repairTornTail } from '../../lib/store/journal';
import { nedbBackend } from '../../lib/store/nedb';
import { Store } from '../../lib/store/store';
import { tempDirs } from '../support/temp-dirs';
import type { MessageRecord } from '../../lib/store/store';

const tempDir = tempDirs('wdb-emb-');

/** Node code that takes the lock on `dir`, says so, and then runs `then`. */
const lockingCode = (dir: string, then = 'setInterval(() => {}, 1000);') =>
  `const { lockDirectory } = require(${JSON.stringify(join(__dirname, '../../lib/store/dirlock.ts'))}); lockDirectory(${JSON.stringify(dir)}); console.log('locked'); ${then}`;

/** A child process that takes the lock on `dir`, says so, and waits to be killed. */
function lockingChild(dir: string, then?: string): Promise<{ pid: number; kill9(): Promise<void> }> {
  const code = lockingCode(dir, then);
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      if (b.toString().includes('locked')) resolve({ pid: child.pid as number, kill9: async () => void (child.kill('SIGKILL'), await exited) });
    });
    child.on('exit', (c) => reject(new Error(`locking child exited with ${c}`)));
  });
}

/** Field 3 of /proc/<pid>/stat: R, S, D, Z (zombie)… or undefined when the pid is gone. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/**
 * A process that took the lock on `dir`, was killed with SIGKILL and is not reaped: a shell starts it
 * in the background and then becomes `sleep`, which never waits for children, so the killed
 * grandchild stays a zombie until `reap()` ends the sleep (its orphan is then reaped by init).
 */
async function zombieLockHolder(dir: string): Promise<{ pid: number; reap(): Promise<void> }> {
  const parent = spawn('sh', ['-c', '"$0" --import tsx -e "$1" & echo "pid $!"; exec sleep 600', process.execPath, lockingCode(dir)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const parentExited = new Promise<void>((r) => parent.on('exit', () => r()));
  const reap = async () => void (parent.kill('SIGKILL'), await parentExited);
  try {
    const pid = await new Promise<number>((resolve, reject) => {
      let out = '';
      parent.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /pid (\d+)\n/.exec(out);
        if (m && out.includes('locked')) resolve(Number(m[1]));
      });
      parent.on('exit', (c) => reject(new Error(`zombie's parent exited with ${c}`)));
    });
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 500 && procState(pid) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
    return { pid, reap };
  } catch (err) {
    await reap();
    throw err;
  }
}

describe('the lock on DATA_DIR', () => {
  it('refuses a second opener in another process, naming the directory and the holder’s pid', async () => {
    const dir = tempDir();
    const child = await lockingChild(dir);
    try {
      // One attempt: each waits a few seconds for the holder to exit before refusing.
      const err = (() => {
        try {
          nedbBackend({ dataDir: dir });
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).code).toBe('store_locked');
      expect((err as Error).message).toMatch(new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*process ${child.pid} holds it`));
      expect(['R', 'S']).toContain(procState(child.pid)); // alive all along, not a zombie
    } finally {
      await child.kill9();
    }
  });

  it('takes over the lock of a process killed with SIGKILL, at once', async () => {
    const dir = tempDir();
    const child = await lockingChild(dir);
    await child.kill9();
    const stale: number[] = [];
    const lock = lockDirectory(dir, (h) => stale.push(h.pid));
    expect(stale).toEqual([child.pid]);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('takes over the lock of a process killed with SIGKILL and not yet reaped (a zombie)', async () => {
    const dir = tempDir();
    const zombie = await zombieLockHolder(dir);
    try {
      expect(procState(zombie.pid)).toBe('Z');
      const stale: number[] = [];
      const lock = lockDirectory(dir, (h) => stale.push(h.pid));
      expect(stale).toEqual([zombie.pid]);
      expect(procState(zombie.pid)).toBe('Z'); // still unreaped: the lock was taken because it is a zombie
      lock.release();
      const store = await Store.open(nedbBackend({ dataDir: dir }));
      await store.close();
    } finally {
      await zombie.reap();
    }
  });

  it('waits for a holder that exits within a few seconds instead of refusing', async () => {
    const dir = tempDir();
    // It kills itself a moment after taking the lock; our lockDirectory call below blocks this
    // process's event loop, so nobody reaps the child meanwhile and it ends as a zombie.
    const child = await lockingChild(dir, "setTimeout(() => process.kill(process.pid, 'SIGKILL'), 300);");
    expect(procState(child.pid)).not.toBe('Z');
    const stale: number[] = [];
    const lock = lockDirectory(dir, (h) => stale.push(h.pid));
    expect(stale).toEqual([child.pid]);
    lock.release();
    await child.kill9();
  });

  it('refuses a second open in this very process, and releases on close', async () => {
    const dir = tempDir();
    const store = await Store.open(nedbBackend({ dataDir: dir }));
    expect(() => nedbBackend({ dataDir: dir })).toThrow(/this process already has it open/);
    await store.close();
    const again = await Store.open(nedbBackend({ dataDir: dir }));
    await again.close();
  });

  it('treats a lock with our pid but another start time as a previous life (a container restart), and a torn lock as free', () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, host: hostname(), boot: '', start: '1', at: '' }));
    lockDirectory(dir).release();
    writeFileSync(join(dir, LOCK_FILE), '{"pid": 12');
    lockDirectory(dir).release();
  });

  it('respects a lock held from another host (a shared volume): it cannot tell whether that process lives', () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 1, host: 'another-host', boot: 'x', start: '1', at: '' }));
    expect(() => lockDirectory(dir)).toThrow(/process 1 on host another-host holds it/);
  });
});

describe('data written before the inbox existed', () => {
  it('puts pending and promised-but-undelivered answers in their user’s inbox, once', async () => {
    const dir = tempDir();
    const now = Date.now();
    const q = (id: string, extra: Record<string, unknown>) =>
      JSON.stringify({ _id: `oOld:${id}`, user: 'oOld', kind: 'question', createdAt: now + Number(id), expireAt: { $$date: now + 86_400_000 }, deliveries: 3, question: `q${id}`, generation: 0, attempts: 1, heartbeatAt: now, ...extra });
    writeFileSync(
      join(dir, 'messages.db'),
      [
        q('1', { status: 'pending', answer: '', pagesDelivered: 0 }),
        q('2', { status: 'answered', pages: ['a', 'b', 'c'], pagesDelivered: 1, placeholderSent: true }),
        q('3', { status: 'answered', pages: ['x'], pagesDelivered: 1 }),
        q('4', { status: 'answered', pages: ['y', 'z'], pagesDelivered: 1 }),
      ].join('\n') + '\n',
    );
    const store = await Store.open(nedbBackend({ dataDir: dir }));
    const inbox = await store.inbox('oOld');
    expect(inbox.map((r) => r._id)).toEqual(['oOld:1', 'oOld:2']);
    // Page 2 of the promised answer is the next to go out, to whoever asks.
    const took = await store.takePage(inbox[1] as MessageRecord, 1, 'oOld:one', 'fetch', Date.now());
    expect(took?.takers).toEqual(['before-upgrade', 'oOld:one']);
    expect((await store.stalePending(now + 60_000)).map((r) => r._id)).toEqual(['oOld:1']);
    await store.close();
    const again = await Store.open(nedbBackend({ dataDir: dir }));
    expect((await again.inbox('oOld')).map((r) => r._id)).toEqual(['oOld:1', 'oOld:2']);
    await again.close();
  });
});

describe('a torn last record', () => {
  const KEEP_UNTIL = Date.now() + 86_400_000;
  const rec = (id: string) => JSON.stringify({ _id: id, value: 'v', expiresAt: 0, expireAt: { $$date: KEEP_UNTIL } });

  it('is dropped with a warning, and the store opens with every complete record', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'kv.db'), `${rec('a')}\n${rec('b')}\n{"_id":"c","val`);
    const warnings: unknown[] = [];
    const store = await Store.open(nedbBackend({ dataDir: dir, warn: (msg, fields) => warnings.push({ msg, ...fields }) }));
    const ids = (await store.snapshot()).kv.map((r) => r._id).sort();
    await store.close();
    expect(ids).toEqual(['a', 'b']);
    expect(warnings).toEqual([expect.objectContaining({ msg: expect.stringContaining('torn'), bytes: '{"_id":"c","val'.length })]);
  });

  it('keeps a complete last record that only lacks its newline', () => {
    const dir = tempDir();
    const file = join(dir, 'x.db');
    writeFileSync(file, `${rec('a')}\n${rec('b')}`);
    expect(repairTornTail(file)).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(`${rec('a')}\n${rec('b')}\n`);
    appendFileSync(file, '{"_id');
    expect(repairTornTail(file)).toBe(5);
    expect(readFileSync(file, 'utf8')).toBe(`${rec('a')}\n${rec('b')}\n`);
    expect(repairTornTail(file)).toBe(0);
  });

  it('a long torn record (longer than the read buffer) is cut at its line start', () => {
    const dir = tempDir();
    const file = join(dir, 'x.db');
    writeFileSync(file, `${rec('a')}\n{"_id":"big","v":"${'x'.repeat(200_000)}`);
    expect(repairTornTail(file)).toBe(200_000 + 18);
    expect(readFileSync(file, 'utf8')).toBe(`${rec('a')}\n`);
  });

  it('corruption in the middle still refuses to open, with a clear error, and leaves the lock free', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'kv.db'), `${rec('a')}\nnot json at all\n${rec('b')}\n`);
    const err = await Store.open(nedbBackend({ dataDir: dir })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('store_corrupt');
    expect((err as Error).message).toMatch(/kv\.db.*unreadable.*backup/);
    rmSync(join(dir, 'kv.db'));
    const store = await Store.open(nedbBackend({ dataDir: dir }));
    await store.close();
  });
});

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

/** A child process that takes the lock on `dir`, says so, and waits to be killed. */
function lockingChild(dir: string): Promise<{ pid: number; kill9(): Promise<void> }> {
  const code = `const { lockDirectory } = require(${JSON.stringify(join(__dirname, '../../lib/store/dirlock.ts'))}); lockDirectory(${JSON.stringify(dir)}); console.log('locked'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      if (b.toString().includes('locked')) resolve({ pid: child.pid as number, kill9: async () => void (child.kill('SIGKILL'), await exited) });
    });
    child.on('exit', (c) => reject(new Error(`locking child exited with ${c}`)));
  });
}

describe('the lock on DATA_DIR', () => {
  it('refuses a second opener in another process, naming the directory and the holder’s pid', async () => {
    const dir = tempDir();
    const child = await lockingChild(dir);
    try {
      expect(() => nedbBackend({ dataDir: dir })).toThrow(StoreError);
      expect(() => nedbBackend({ dataDir: dir })).toThrow(new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*process ${child.pid} holds it`));
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

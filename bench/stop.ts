/**
 * Graceful stop (`--only=stop`): the built server (`npm start`'s dist/server.js) on the embedded
 * store, WeChat's real timings (5 s window, deadline 4.5 s), STOP_GRACE_S at its default (8 s).
 * Timed from SIGTERM to exit: an idle server; one whose only answer lands 2 s after the signal (it
 * waits for it); one whose answer outlives the grace (handed over). Then how soon the restarted
 * server takes the handed-over answer over, next to a kill -9 (whose answer waits for STALE_AFTER_MS).
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { spawn } from 'child_process';
import type { ChildProcess } from 'child_process';
import { startDifySim } from '../lib/sim/dify-sim';
import { WechatSim } from '../lib/sim/wechat-sim';
import { BUILT_SERVER, KEY, ROOT, TOKEN } from './support';

const RUNS = Number(process.env['BENCH_STOP_RUNS'] ?? 3);
/** Every server started here, so none outlives a failed run. */
const children = new Set<ChildProcess>();

interface Running {
  child: ChildProcess;
  url: string;
  /** When each log message was first seen (ms since the epoch). */
  seen: Map<string, number>;
  exit: Promise<number | null>;
  /** When the process was started. */
  startedAt: number;
}

function start(env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, [BUILT_SERVER], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', HOST: '127.0.0.1', PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const seen = new Map<string, number>();
  const startedAt = Date.now();
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    // Warnings (a takeover) go to stderr, the rest to stdout.
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream?.on('data', (b: Buffer) => {
        buf += b.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const line of lines) {
          const msg = /"msg":"([^"]+)"/.exec(line)?.[1];
          if (msg && !seen.has(msg)) seen.set(msg, Date.now());
          const url = /"url":"(http:\/\/[^"]+)"/.exec(line)?.[1];
          if (url) resolve({ child, url: `${url.replace('0.0.0.0', '127.0.0.1')}/wechat`, seen, exit, startedAt });
        }
      });
    }
    child.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

export async function benchStop(say: (line?: string) => void): Promise<void> {
  const dify = await startDifySim({ apiKey: KEY, script: (b) => (String(b.query).startsWith('long') ? { kind: 'answer', text: '长'.repeat(100), durationMs: 60_000, pieceChars: 2 } : { kind: 'answer', text: 'done', durationMs: 3000 }) });
  const base = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: KEY, DIFY_BASE_URL: dify.url, ANSWER_PAGE: 'off' };
  const idle: number[] = [];
  const waits: number[] = [];
  const handed: number[] = [];
  const takeover: number[] = [];
  let crashTakeover = NaN;
  try {
    for (let run = 0; run < RUNS; run++) {
      const dir = mkdtempSync(join(tmpdir(), 'wdb-bench-stop-'));
      try {
        const env = { ...base, DATA_DIR: dir };
        // Idle.
        let s = await start(env);
        let t0 = Date.now();
        s.child.kill('SIGTERM');
        await s.exit;
        idle.push(Date.now() - t0);
        // An answer that lands 2 s after the signal: the stop waits for it.
        s = await start(env);
        const calls = dify.calls.length;
        const asked = new WechatSim({ url: s.url, token: TOKEN }).send(`oStopWait${run}`, `short ${run}`);
        await until(() => dify.calls.length > calls, 5000);
        await sleep(1000);
        t0 = Date.now();
        s.child.kill('SIGTERM');
        await s.exit;
        waits.push(Date.now() - t0);
        await asked;
        // An answer that outlives the grace: handed over; the restart takes it over at once.
        s = await start(env);
        const before = dify.calls.length;
        void new WechatSim({ url: s.url, token: TOKEN }).send(`oStopLong${run}`, `long ${run}`);
        await until(() => dify.calls.length > before, 5000);
        t0 = Date.now();
        s.child.kill('SIGTERM');
        await s.exit;
        handed.push(Date.now() - t0);
        s = await start(env);
        await until(() => s.seen.has('answer taken over: its worker stopped'), 60_000);
        takeover.push((s.seen.get('answer taken over: its worker stopped') as number) - s.startedAt);
        s.child.kill('SIGKILL');
        await s.exit;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    // The same answer after kill -9: recovered once its heartbeat is STALE_AFTER_MS (30 s) old.
    const dir = mkdtempSync(join(tmpdir(), 'wdb-bench-stop-'));
    try {
      const env = { ...base, DATA_DIR: dir };
      let s = await start(env);
      const before = dify.calls.length;
      void new WechatSim({ url: s.url, token: TOKEN }).send('oStopCrash', 'long crash');
      await until(() => dify.calls.length > before, 5000);
      s.child.kill('SIGKILL');
      await s.exit;
      s = await start(env);
      await until(() => s.seen.has('answer taken over: its worker stopped'), 90_000);
      crashTakeover = (s.seen.get('answer taken over: its worker stopped') as number) - s.startedAt;
      s.child.kill('SIGKILL');
      await s.exit;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await dify.close();
  }
  say('### Graceful stop');
  say();
  say(`The built server on the embedded store, WeChat's real timings, STOP_GRACE_S=8 (the default); SIGTERM to exit, median of ${RUNS}:`);
  say();
  say('| case | SIGTERM → exit |');
  say('|---|---|');
  say(`| idle | ${median(idle)} ms |`);
  say(`| an answer landing 2 s after the signal (waited for; its delivery replied) | ${median(waits)} ms |`);
  say(`| an answer outliving the grace (handed over) | ${median(handed)} ms |`);
  say();
  say(`Restarted after the hand-over, the server took the answer over ${median(takeover)} ms after it was started (its first sweep runs at once); restarted after a kill -9 instead, ${crashTakeover} ms (the heartbeat must first be STALE_AFTER_MS, 30 s, old): ${(crashTakeover / Math.max(1, median(takeover))).toFixed(0)}× sooner.`);
  say();
}

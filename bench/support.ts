/** What the benchmark cases share: child processes, their memory, seeded randomness. */
import { spawn } from 'child_process';
import type { ChildProcess } from 'child_process';
import { readFileSync } from 'fs';
import type { AddressInfo } from 'net';
import { createServer } from 'net';
import { resolve } from 'path';

export const ROOT = resolve(__dirname, '..');
/**
 * What `npm start` runs (built by its first step); BENCH_SERVER names another build of it (e.g. one
 * made from another commit with the same esbuild command) to measure two versions side by side.
 */
export const BUILT_SERVER = process.env['BENCH_SERVER'] ?? 'dist/server.js';
export const TOKEN = 'benchtoken';
export const KEY = 'app-bench-key-000001';

/**
 * Start `node args…` and resolve once it prints the URL it listens on. `wechat` is where it takes
 * WeChat's POSTs: our server logs its root and its webhooks (`/wechat` among them); the peers log
 * their WeChat URL itself.
 */
export function spawnChild(args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; url: string; wechat: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolveUrl, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      const line = b.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(line);
      if (!m) return;
      const url = (m[1] as string).replace('0.0.0.0', '127.0.0.1');
      resolveUrl({ child, url, wechat: /"webhooks":\[[^\]]*"\/wechat"/.test(line) ? `${url}/wechat` : url });
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
}

/** Stop a child and wait until it is gone (its files can be removed then). */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill();
  await gone;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Seeded PRNG (mulberry32) so every run draws the same latencies. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A port nothing listens on right now (for a child that must know its own URL before it starts). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolvePort(port));
    });
  });
}

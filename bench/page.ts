/**
 * The answer page under `npm run bench` (docs/answer-page.md):
 * - how long after Dify's first token a page shows it, when the page is served by the process that
 *   asks Dify (in-process news) and by another instance on the same store (progress saved twice a
 *   second, each stream re-reading the store every second);
 * - how many live page streams one process holds, and what they cost in memory.
 */
import { spawn } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { startDifySim } from '../lib/sim/dify-sim';
import { openSse } from '../lib/sim/sse-client';
import type { SseStream } from '../lib/sim/sse-client';
import { WechatSim } from '../lib/sim/wechat-sim';
import { BUILT_SERVER, KEY, ROOT, TOKEN, freePort, rssMb, spawnChild, stop } from './support';

const QUESTIONS = Number(process.env['BENCH_PAGE_QUESTIONS'] ?? 20);
const STREAMS = (process.env['BENCH_PAGE_STREAMS'] ?? '1000,2000').split(',').map(Number);
const FAST = { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100', LOG_LEVEL: 'warn' };

const linkIn = (text: string | null) => /<a href="([^"]+)">/.exec(text ?? '')?.[1];
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] as number;

/** First token → page, on the instance asking Dify (A) and on another one (B), side by side. */
async function firstToken(say: (line?: string) => void): Promise<void> {
  // Dify sends its headers after 1 s, so every page is open before the first token.
  const dify = await startDifySim({ apiKey: KEY, awkwardChunks: false, script: () => ({ kind: 'answer', text: '首'.repeat(400), durationMs: 2000, pieceChars: 4, headerDelayMs: 1000 }) });
  const dataDir = mkdtempSync(join(tmpdir(), 'wdb-bench-page-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/page-servers.ts'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', WECHAT_TOKEN: TOKEN, DIFY_API_KEY: KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...FAST },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const urls = await new Promise<{ a: string; b: string }>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      const m = /\{"a":.*\}/.exec(b.toString());
      if (m) resolve(JSON.parse(m[0]) as { a: string; b: string });
    });
    child.on('exit', (code) => reject(new Error(`page servers exited ${code}`)));
  });
  const wechat = new WechatSim({ url: `${urls.a}/wechat`, token: TOKEN });
  const delays: Record<'a' | 'b', number[]> = { a: [], b: [] };
  try {
    for (let i = 0; i < QUESTIONS; i++) {
      for (const where of ['a', 'b'] as const) {
        const link = linkIn((await wechat.send(`oFirst${where}${i}`, `问题${i}`)).text);
        if (!link) throw new Error('no link in the placeholder');
        const call = dify.calls.at(-1);
        const sse = await openSse(`${link.replace(urls.a, urls[where])}/events`);
        await sse.until((e) => e.event === 'text' && (JSON.parse(e.data) as { add: string }).add !== '', 10_000);
        const at = Date.now();
        sse.close();
        if (call?.firstFrameAt === undefined) throw new Error('the page showed text before Dify sent any');
        delays[where].push(at - call.firstFrameAt);
      }
    }
  } finally {
    await stop(child);
    await dify.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  say('### The answer page: first token to the page');
  say();
  say(
    `${QUESTIONS} questions each; the page is open before Dify's first token, which is timed from the moment the Dify simulator writes it ` +
      'to the moment the page\'s stream delivers it. "Another instance": a second app on the same store in the same process, which learns only through the store.',
  );
  say();
  say('| page served by | median ms | p90 ms | max ms |');
  say('|---|---:|---:|---:|');
  for (const [where, label] of [['a', 'the instance asking Dify (in-process)'], ['b', 'another instance (through the store)']] as const) {
    const xs = delays[where];
    say(`| ${label} | ${quantile(xs, 0.5)} | ${quantile(xs, 0.9)} | ${Math.max(...xs)} |`);
  }
  say();
}

/** N live page streams on one server process (`npm start`'s build), each on its own question. */
async function streams(say: (line?: string) => void): Promise<void> {
  const rows: string[] = [];
  for (const n of STREAMS) {
    // Answers that keep coming for a minute: one piece a second per answer.
    const dify = await startDifySim({ apiKey: KEY, awkwardChunks: false, script: () => ({ kind: 'answer', text: '流'.repeat(300), durationMs: 75_000, pieceChars: 4 }) });
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-bench-streams-'));
    const port = await freePort();
    const bot = await spawnChild([BUILT_SERVER], {
      WECHAT_TOKEN: TOKEN, DIFY_API_KEY: KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: String(port),
      PUBLIC_URL: `http://127.0.0.1:${port}`, ANSWER_PAGE_MAX_STREAMS: String(n), ...FAST, LOG_LEVEL: 'info',
    });
    const wechat = new WechatSim({ url: bot.wechat, token: TOKEN });
    const opened: SseStream[] = [];
    try {
      const links: string[] = [];
      for (let i = 0; i < n; i += 200) {
        const batch = await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, k) => wechat.send(`oStream${i + k}`, `长问题${i + k}`)));
        for (const r of batch) links.push(linkIn(r.text) as string);
      }
      await new Promise((r) => setTimeout(r, 2000));
      const before = rssMb(bot.child.pid as number);
      for (let i = 0; i < links.length; i += 100) opened.push(...(await Promise.all(links.slice(i, i + 100).map((l) => openSse(`${l}/events`)))));
      const ok = opened.filter((s) => s.status === 200).length;
      // Some seconds of streaming: every stream should hear its answer grow.
      const mark = opened.map((s) => s.events.length);
      await new Promise((r) => setTimeout(r, 8000));
      const after = rssMb(bot.child.pid as number);
      const alive = opened.filter((s, i) => s.events.length > (mark[i] as number)).length;
      rows.push(`| ${n} | ${ok} | ${alive} | ${before.toFixed(0)} | ${after.toFixed(0)} | ${(after - before).toFixed(0)} |`);
    } finally {
      for (const s of opened) s.close();
      await stop(bot.child);
      await dify.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  say('### The answer page: live streams one process holds');
  say();
  say('N users each wait for a slow answer (one piece a second) with its page open: one stream per question, all at once. Memory is the server\'s resident set before the streams opened and after 8 s of streaming.');
  say();
  say('| streams | opened | still receiving after 8 s | RSS before MB | RSS with streams MB | extra MB |');
  say('|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) say(r);
  say();
}

export async function benchPage(say: (line?: string) => void): Promise<void> {
  await firstToken(say);
  await streams(say);
}

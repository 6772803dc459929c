/**
 * The HTTP API under `npm run bench -- --only=api` (docs/api.md), against the built server (`npm start`'s
 * dist/server.js) with only the API on and an OpenAI-compatible simulator as the model:
 * - time to first token through `/v1/chat/completions` next to calling the model directly, both with the
 *   `openai` SDK as the client: the difference is what the bot adds (claim, worker, follower, SSE);
 * - how many concurrent streams one process holds, and their cost in memory (each one a question being
 *   answered: its store record, its model call and its stream).
 */
import { request } from 'http';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import OpenAI from 'openai';
import { startOpenAISim } from '../lib/sim/openai-sim';
import { BUILT_SERVER, rssMb, spawnChild, stop } from './support';

const ROUNDS = Number(process.env['BENCH_API_ROUNDS'] ?? 40);
const STREAMS = (process.env['BENCH_API_STREAMS'] ?? '1000,2000').split(',').map(Number);
const KEY = 'bench-api-key-0123456789abcdef';
const MODEL = 'bench-model';

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] as number;

/** Milliseconds from the request to its first content chunk. */
async function firstContent(client: OpenAI, model: string, user: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: `问题 ${user}` }], stream: true, user });
  let at: number | undefined;
  for await (const c of stream) {
    if (at === undefined && c.choices[0]?.delta.content) at = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  if (at === undefined) throw new Error('no content');
  return at;
}

async function server(simUrl: string, extra: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'wdb-bench-api-'));
  const { child, url } = await spawnChild([BUILT_SERVER], {
    API_KEYS: `bench:${KEY}`,
    API_MODEL_NAME: MODEL,
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: simUrl,
    OPENAI_MODEL: MODEL,
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    // `listening` (info) says where it listens; spawnChild waits for it.
    LOG_LEVEL: 'info',
    ANSWER_PAGE: 'off',
    ...extra,
  });
  return { child, url, close: async () => (await stop(child), rmSync(dataDir, { recursive: true, force: true })) };
}

async function firstToken(say: (line?: string) => void): Promise<void> {
  // The model's 21 pieces come about 29 ms apart, the first one 29 ms after the request.
  const sim = await startOpenAISim({ model: MODEL, awkwardChunks: false, script: () => ({ kind: 'answer', text: '答'.repeat(42), durationMs: 600, pieceChars: 2 }) });
  const s = await server(sim.url);
  try {
    const direct = new OpenAI({ apiKey: 'unused', baseURL: sim.url, maxRetries: 0 });
    const through = new OpenAI({ apiKey: KEY, baseURL: `${s.url}/v1`, maxRetries: 0 });
    // Warm both paths (connections, the server's first compile of its code paths).
    for (let i = 0; i < 3; i++) {
      await firstContent(direct, MODEL, `warm-d${i}`);
      await firstContent(through, MODEL, `warm-t${i}`);
    }
    const d: number[] = [];
    const t: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      d.push(await firstContent(direct, MODEL, `d${i}`));
      t.push(await firstContent(through, MODEL, `t${i}`));
    }
    const row = (name: string, xs: number[]) => say(`| ${name} | ${quantile(xs, 0.5).toFixed(1)} | ${quantile(xs, 0.9).toFixed(1)} |`);
    say('### HTTP API: time to first token (`/v1/chat/completions`, streaming, the `openai` SDK as the client)');
    say();
    say(`${ROUNDS} questions each way, one at a time; the model sends its first token about 30 ms after the request (the simulator's pause), then the rest.`);
    say();
    say('| path | median ms | p90 ms |');
    say('|---|---:|---:|');
    row('the model directly', d);
    row('through the bot (claim, worker, follower, SSE)', t);
    say();
    say(`The bot adds ${(quantile(t, 0.5) - quantile(d, 0.5)).toFixed(1)} ms at the median (${(quantile(t, 0.5) / quantile(d, 0.5)).toFixed(2)}× the direct time to first token).`);
    say();
  } finally {
    await s.close();
    await sim.close();
  }
}

/** Open one stream and resolve at its first chunk (the bot writes it once the question is claimed); the stream stays open. */
function openStream(url: string, user: string): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' }, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
      res.setEncoding('utf8');
      let buf = '';
      const onData = (c: string) => {
        buf += c;
        if (buf.includes('chat.completion.chunk')) {
          res.off('data', onData);
          res.resume();
          resolve(() => req.destroy());
        }
      };
      res.on('data', onData);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `长问题 ${user}` }], stream: true, user }));
  });
}

async function streams(say: (line?: string) => void): Promise<void> {
  say('### HTTP API: concurrent streams one process holds');
  say();
  say('Each stream is a question being answered: its record in the store, its model call (held open by the simulator, which sends nothing yet) and its SSE stream to the client. Memory is the server process\'s RSS; "all open" is when every stream had its first chunk.');
  say();
  say('| streams | all open after (s) | RSS before (MB) | RSS with all open (MB) | extra (MB) | per stream (KB) |');
  say('|---:|---:|---:|---:|---:|---:|');
  for (const n of STREAMS) {
    // The model answers nothing for two minutes: every question stays pending, its stream open, while it is measured.
    const sim = await startOpenAISim({ model: MODEL, awkwardChunks: false, script: () => ({ kind: 'answer', text: '答'.repeat(2), durationMs: 240_000, pieceChars: 1 }) });
    const s = await server(sim.url, { API_MAX_STREAMS: String(n + 10) });
    const closers: (() => void)[] = [];
    try {
      // Warm up: a few streams, so the baseline includes loaded code and a live store.
      for (let i = 0; i < 5; i++) closers.push(await openStream(s.url, `warm${i}`));
      await new Promise((r) => setTimeout(r, 1000));
      const pid = s.child.pid as number;
      const before = rssMb(pid);
      const t0 = Date.now();
      for (let i = 0; i < n; i += 100) {
        const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => openStream(s.url, `u${i + j}`)));
        closers.push(...batch);
      }
      const openS = (Date.now() - t0) / 1000;
      await new Promise((r) => setTimeout(r, 2000));
      const during = rssMb(pid);
      say(`| ${n} | ${openS.toFixed(1)} | ${before.toFixed(0)} | ${during.toFixed(0)} | ${(during - before).toFixed(0)} | ${(((during - before) * 1024) / n).toFixed(0)} |`);
    } finally {
      for (const c of closers) c();
      await s.close();
      await sim.close();
    }
  }
  say();
}

export async function benchApi(say: (line?: string) => void): Promise<void> {
  await firstToken(say);
  await streams(say);
}

/**
 * kill -9 the server repeatedly while answers are streaming. After the last restart every question
 * that was accepted is answered (asked again at most once) or clearly marked failed; none is
 * silently lost, and the store file still loads.
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../lib/sim/dify-sim';
import type { DifySim } from '../../lib/sim/dify-sim';
import { WechatSim } from '../../lib/sim/wechat-sim';
import type { SendResult } from '../../lib/sim/wechat-sim';
import { Store } from '../../lib/store';
import { nedbBackend } from '../../lib/store/nedb';
import { DIFY_KEY, TIMINGS, TOKEN, eventually, sleep } from '../support/harness';
import { spawnServer } from '../support/process';
import type { ServerProcess } from '../support/process';

let dify: DifySim | undefined;
let server: ServerProcess | undefined;
let dataDir = '';
afterEach(async () => {
  await server?.stop();
  await dify?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('repeated kill -9 while answers stream', () => {
  it('ends with every accepted question answered or marked failed, and a loadable store', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wdb-kill-'));
    dify = await startDifySim({ apiKey: DIFY_KEY, script: (b) => ({ kind: 'answer', text: `done:${String(b.query)}`, durationMs: 2500, pieceChars: 2 }) });
    const env = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS, STALE_AFTER_MS: '1000' };
    const sent: Promise<SendResult>[] = [];
    for (let round = 0; round < 3; round++) {
      server = await spawnServer(env);
      const wechat = new WechatSim({ url: server.url, token: TOKEN, timeoutMs: 1000 });
      for (let u = 0; u < 4; u++) sent.push(wechat.send(`oKill${round}${u}`, `q${round}-${u}`));
      await sleep(700 + round * 300);
      await server.kill9();
    }
    const results = await Promise.all(sent);
    server = await spawnServer(env);
    // The running server's recovery sweep takes over what the dead processes left pending.
    await eventually(async () => {
      const health = await fetch(server!.url.replace('/wechat', '/healthz'));
      return health.ok;
    });
    // Wait until a sweep finds nothing left to take over and every answer it took over has settled
    // (the server's log says both).
    const log = () => server!.output.join('');
    const count = (what: string) => log().split(what).length - 1;
    await eventually(() => {
      const sweeps = log().split('\n').filter((l) => l.includes('"recovery sweep"'));
      const settled = count('"answer ready"') + count('"answer failed"') >= count('answer taken over');
      return sweeps.length >= 2 && sweeps.at(-1)?.includes('"recovered":0') && settled;
    }, 20_000);
    await server.stop();
    server = undefined;

    const store = await Store.open(nedbBackend({ dataDir }));
    const questions = (await store.snapshot()).messages.filter((r) => r.kind === 'question');
    await store.close();
    expect(questions.length).toBeGreaterThan(0);
    for (const q of questions) {
      expect(['answered', 'failed']).toContain(q.status);
      expect(q.attempts).toBeLessThanOrEqual(2);
      if (q.status === 'answered') expect(q.answer).toBe(`done:${q.question}`);
      else expect(q.failure?.code).toMatch(/worker_lost|dify_/);
      const calls = dify.calls.filter((c) => c.body.query === q.question).length;
      expect(calls).toBeLessThanOrEqual(2);
    }
    // A message the server never accepted was not silently dropped: WeChat showed its notice.
    const accepted = new Set(questions.map((q) => q.question));
    results.forEach((r, i) => {
      const q = `q${Math.floor(i / 4)}-${i % 4}`;
      if (!accepted.has(q)) expect(r.notice).toBe(true);
    });
    // Every line of the data file is intact JSON (a torn final line would be skipped by the loader).
    const lines = readFileSync(join(dataDir, 'messages.db'), 'utf8').split('\n').filter(Boolean);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
  });
});

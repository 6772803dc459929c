/**
 * Graceful stop with real processes (lib/adapters/server/main.ts): on SIGTERM a delivery in its reply
 * window still replies; an answer that finishes within STOP_GRACE_S is saved before the exit; one that
 * does not is handed over and, after a restart, asked again once and delivered once; the embedded
 * store's lock is released and the exit code is 0. A second SIGTERM exits at once.
 */
import { existsSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../../lib/sim/dify-sim';
import type { DifySim } from '../../../lib/sim/dify-sim';
import { WechatSim } from '../../../lib/sim/wechat-sim';
import { DEFAULT_TEXTS } from '../../../lib/core/texts';
import { Store } from '../../../lib/store';
import { nedbBackend } from '../../../lib/store/nedb';
import { DIFY_KEY, TIMINGS, TOKEN, eventually } from '../../support/harness';
import { spawnServer } from '../../support/process';
import type { ServerProcess } from '../../support/process';

let dify: DifySim | undefined;
const servers: ServerProcess[] = [];
let dataDir = '';
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  await dify?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const logOf = (s: ServerProcess) => s.output.join('');
/** The fields of the server's `stopped` line. */
function stoppedLine(s: ServerProcess): Record<string, unknown> {
  const line = logOf(s).split('\n').find((l) => l.includes('"msg":"stopped"'));
  if (!line) throw new Error(`no stopped line:\n${logOf(s)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

/** Everything `user` can still fetch with `1`, in order, until nothing is pending (bounded). */
async function fetchAll(wechat: WechatSim, user: string): Promise<string[]> {
  const texts: string[] = [];
  for (let i = 0; i < 20; i++) {
    const t = (await wechat.send(user, '1')).text ?? '';
    if (t === DEFAULT_TEXTS.nothingPending) return texts;
    if (t.includes('还在思考')) {
      await new Promise((r) => setTimeout(r, 300));
      continue;
    }
    texts.push(t);
  }
  return texts;
}

function start(env: Record<string, string>) {
  return spawnServer(env).then((s) => (servers.push(s), s));
}

describe('SIGTERM', () => {
  it('lets a delivery in its window reply, saves an answer that finishes within the grace, releases the lock and exits 0', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wdb-stop-'));
    dify = await startDifySim({ apiKey: DIFY_KEY, script: () => ({ kind: 'answer', text: '停机前写完的回答', durationMs: 500 }) });
    const env = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS, STOP_GRACE_S: '8' };
    const a = await start(env);
    const wechat = new WechatSim({ url: a.url, token: TOKEN, timeoutMs: 1000 });
    const asked = wechat.send('oStop1', '停机时的问题');
    await eventually(() => dify?.calls.length === 1);
    a.child.kill('SIGTERM');
    const r = await asked;
    // The delivery that was waiting when the signal came still got its answer.
    expect(r.text).toBe('停机前写完的回答');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['reply']);
    expect(await a.exit).toBe(0);
    expect(stoppedLine(a)).toMatchObject({ inTime: true });
    expect(existsSync(join(dataDir, 'LOCK'))).toBe(false);

    const b = await start(env);
    expect(logOf(b)).not.toContain('took over the embedded store'); // a clean release, not a dead owner's lock
    expect(await fetchAll(new WechatSim({ url: b.url, token: TOKEN, timeoutMs: 1000 }), 'oStop1')).toEqual([]);
    expect(dify.calls).toHaveLength(1);
  });

  it('hands over an answer that outlives the grace; after a restart it is asked again once and delivered once', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wdb-stop-'));
    dify = await startDifySim({
      apiKey: DIFY_KEY,
      script: (_b, i) => (i === 0 ? { kind: 'answer', text: '太慢'.repeat(50), durationMs: 60_000, pieceChars: 2 } : { kind: 'answer', text: '重启后的回答' }),
    });
    const env = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS, STOP_GRACE_S: '2' };
    const a = await start(env);
    const wechat = new WechatSim({ url: a.url, token: TOKEN, timeoutMs: 1000 });
    const asked = wechat.send('oStop2', '写不完的问题');
    await eventually(() => dify?.calls.length === 1);
    a.child.kill('SIGTERM');
    expect(await a.exit).toBe(0);
    await asked;
    expect(stoppedLine(a)).toMatchObject({ inTime: false, handedOver: 1 });
    expect(logOf(a)).toContain('answer handed over');

    const b = await start(env);
    const texts = await fetchAll(new WechatSim({ url: b.url, token: TOKEN, timeoutMs: 1000 }), 'oStop2');
    expect(texts.filter((t) => t.includes('重启后的回答'))).toHaveLength(1);
    expect(dify.calls).toHaveLength(2);
    expect(dify.calls[1]?.body.query).toBe('写不完的问题');
    await b.stop();
    servers.splice(servers.indexOf(b), 1);
    const store = await Store.open(nedbBackend({ dataDir }));
    const q = (await store.snapshot()).messages.find((m) => m.question === '写不完的问题');
    await store.close();
    // A hand-over is not a death: the question could be handed over again without being given up.
    expect(q).toMatchObject({ status: 'answered', attempts: 2, handovers: 1 });
  });

  it('twice exits at once', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wdb-stop-'));
    dify = await startDifySim({ apiKey: DIFY_KEY, script: () => ({ kind: 'answer', text: '很慢', durationMs: 60_000 }) });
    const env = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS, STOP_GRACE_S: '120' };
    const a = await start(env);
    void new WechatSim({ url: a.url, token: TOKEN, timeoutMs: 1000 }).send('oStop3', '问题');
    await eventually(() => dify?.calls.length === 1);
    a.child.kill('SIGTERM');
    await eventually(() => logOf(a).includes('"msg":"stopping"'));
    a.child.kill('SIGTERM');
    // Long before the 120 s grace (the test's own timeout is far shorter).
    expect(await a.exit).toBe(1);
    expect(logOf(a)).toContain('stopping at once: a second signal');
    // The next start takes the dead process's lock over.
    const b = await start(env);
    expect(logOf(b)).toContain('took over the embedded store');
    await b.kill9(); // it would take the 60 s answer over and give it the 120 s grace
  }, 30_000);
});

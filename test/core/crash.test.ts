/**
 * Nothing is lost when the process producing an answer dies: kill -9 mid-answer, restart on the
 * same store, and a later `1` (or delivery) notices the stalled answer and asks Dify again, once.
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../lib/sim/dify-sim';
import type { DifySim } from '../../lib/sim/dify-sim';
import { WechatSim } from '../../lib/sim/wechat-sim';
import { Store } from '../../lib/store';
import { nedbBackend } from '../../lib/store/nedb';
import { DIFY_KEY, TIMINGS, TOKEN, eventually } from '../support/harness';
import { spawnServer } from '../support/process';
import type { ServerProcess } from '../support/process';

let dify: DifySim | undefined;
const servers: ServerProcess[] = [];
let dataDir = '';
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  await dify?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('kill -9 mid-answer', () => {
  it('a later `1` takes the stalled answer over, asks Dify once more, and delivers it', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wdb-crash-'));
    // First call streams slowly (the process dies during it); the re-ask answers quickly.
    dify = await startDifySim({
      apiKey: DIFY_KEY,
      script: (_b, i) => (i === 0 ? { kind: 'answer', text: '第一次很慢的回答'.repeat(10), durationMs: 60_000, pieceChars: 2 } : { kind: 'answer', text: '重新生成的回答' }),
    });
    const env = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS };
    const a = await spawnServer(env);
    servers.push(a);
    const wechatA = new WechatSim({ url: a.url, token: TOKEN, timeoutMs: 1000 });
    const asked = wechatA.send('oCrash', '会被打断的问题');
    // Wait until the answer is streaming, then kill the process that produces it.
    await eventually(() => dify?.calls.length === 1);
    await new Promise((r) => setTimeout(r, 1500));
    await a.kill9();
    const first = await asked;
    expect(first.notice).toBe(true); // the server died under WeChat's deliveries

    const b = await spawnServer(env);
    servers.push(b);
    const wechatB = new WechatSim({ url: b.url, token: TOKEN, timeoutMs: 1000 });
    const one = await wechatB.send('oCrash', '1');
    // The `1` either gets the re-generated answer, or "still thinking" and a second `1` gets it.
    const text = one.text?.includes('重新生成的回答') ? one.text : (await wechatB.send('oCrash', '1')).text;
    expect(text).toBe('重新生成的回答');
    expect(dify.calls).toHaveLength(2);
    expect(dify.calls[1]?.body.query).toBe('会被打断的问题');

    // The store file survived the crash: it loads, and the question is answered after 2 attempts.
    await b.stop();
    const files = readFileSync(join(dataDir, 'messages.db'), 'utf8').trim().split('\n');
    for (const line of files) expect(() => JSON.parse(line)).not.toThrow();
    const store = await Store.open(nedbBackend({ dataDir }));
    const q = (await store.snapshot()).messages.find((r) => r.question === '会被打断的问题');
    expect(q).toMatchObject({ status: 'answered', attempts: 2 });
    await store.close();
  });
});

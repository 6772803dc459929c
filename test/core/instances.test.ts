/**
 * Several instances on one store (MongoDB only: the embedded file store belongs to one process).
 * Runs when MONGODB_URI is set; skipped otherwise, and says so.
 */
import { randomBytes } from 'crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { startDifySim } from '../../lib/sim/dify-sim';
import { WechatSim } from '../../lib/sim/wechat-sim';
import { DIFY_KEY, SCALE, TIMINGS, TOKEN } from '../support/harness';
import { spawnServer } from '../support/process';
import type { ServerProcess } from '../support/process';

const mongoUri = process.env['MONGODB_URI'];
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

describe.skipIf(!mongoUri)('two server processes on one MongoDB', () => {
  it('make one Dify call for a message whose deliveries alternate between them', async () => {
    const dify = await startDifySim({ apiKey: DIFY_KEY, script: () => ({ kind: 'answer', text: '两个实例一个回答', durationMs: 7000 * SCALE }) });
    const env = { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, MONGODB_URI: mongoUri as string, MONGODB_DB: `wdb_inst_${randomBytes(4).toString('hex')}`, ...TIMINGS };
    servers.push(await spawnServer(env), await spawnServer(env));
    const wechat = new WechatSim({ url: servers.map((s) => s.url), token: TOKEN, timeoutMs: 1000 });
    const r = await wechat.send('oTwoInst', '一个问题');
    expect(r.text).toBe('两个实例一个回答');
    expect(r.deliveries.map((d) => d.outcome)).toEqual(['timeout', 'reply']);
    expect(dify.calls).toHaveLength(1);
    await dify.close();
  });
});

/**
 * kill -9 mid-answer on the three WeCom channels: the real server process dies while the model
 * writes; the next process's recovery sweep takes the question over and the answer reaches the user
 * exactly once: by message/send (self-built app), kf/send_msg (customer service), or the stream WeCom
 * keeps polling (intelligent bot; the restarted server listens on the same port, as a deployment would).
 */
import { mkdtempSync, rmSync } from 'fs';
import { createServer } from 'net';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../lib/sim/dify-sim';
import type { DifySim } from '../../lib/sim/dify-sim';
import { startWecomBotSim } from '../../lib/sim/wecom-bot-sim';
import { startWecomSim } from '../../lib/sim/wecom-sim';
import { DIFY_KEY, TIMINGS, eventually, sleep } from '../support/harness';
import { spawnServer } from '../support/process';
import type { ServerProcess } from '../support/process';

const CORP = 'ww5a1c9e3b7d20f864';
const TOKEN = 'QDG6eK';
const AES = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';

let dify: DifySim | undefined;
let server: ServerProcess | undefined;
let dataDir = '';
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await server?.stop();
  server = undefined;
  await dify?.close();
  for (const c of closers.splice(0)) await c();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function base(): Promise<Record<string, string>> {
  dataDir = mkdtempSync(join(tmpdir(), 'wdb-wecom-kill-'));
  dify = await startDifySim({ apiKey: DIFY_KEY, script: (b) => ({ kind: 'answer', text: `done:${String(b.query)}`, durationMs: 2500, pieceChars: 2 }) });
  return { DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir, ...TIMINGS, STALE_AFTER_MS: '1000' };
}

/** A port free now, for a server that must come back where WeCom calls it. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('kill -9 mid-answer on WeCom', () => {
  it('self-built app and customer service: the restarted server sends each answer once', async () => {
    const env = await base();
    const app = { url: '', token: TOKEN, encodingAesKey: AES };
    const kf = { url: '', token: TOKEN, encodingAesKey: AES };
    const wecom = await startWecomSim({ corpId: CORP, apps: [{ agentId: 1000002, secret: 'app-secret-kill', callback: app }, { agentId: 1000003, secret: 'kf-secret-kill', callback: kf }], kfAgentId: 1000003 });
    closers.push(() => wecom.close());
    const all = { ...env, WECOM_CORP_ID: CORP, WECOM_TOKEN: TOKEN, WECOM_AES_KEY: AES, WECOM_AGENT_ID: '1000002', WECOM_SECRET: 'app-secret-kill', WECOM_KF_SECRET: 'kf-secret-kill', WECOM_API_BASE: wecom.url };
    server = await spawnServer(all);
    app.url = `${server.origin}/wecom`;
    kf.url = `${server.origin}/wecom-kf`;
    expect((await wecom.memberSends('killme', '崩溃前')).acked).toBe(true);
    expect((await wecom.customerSends('wkSimKf0000000001', 'wmKill', '崩溃前')).callback?.acked).toBe(true);
    await sleep(800); // the model is writing both answers
    await server.kill9();
    server = await spawnServer(all);
    await eventually(() => wecom.sentTo('killme').length === 1 && wecom.kfSentTo('wkSimKf0000000001', 'wmKill').length === 1, 20_000);
    await sleep(1500); // nothing more arrives
    expect(wecom.sentTo('killme').map((m) => m.content)).toEqual(['done:崩溃前']);
    expect(wecom.kfSentTo('wkSimKf0000000001', 'wmKill').map((m) => m.content)).toEqual(['done:崩溃前']);
    expect(dify?.calls.filter((c) => c.body.query === '崩溃前')).toHaveLength(4); // two before the kill, two after
    expect(wecom.violations).toEqual([]);
  }, 60_000);

  it('intelligent bot: WeCom keeps polling through the restart; the stream finishes once with the answer', async () => {
    const env = await base();
    const port = await freePort();
    const all = { ...env, PORT: String(port), WECOM_BOT_TOKEN: 'BotToken123', WECOM_BOT_AES_KEY: AES };
    server = await spawnServer(all);
    const bot = await startWecomBotSim({ url: `${server.origin}/wecom-bot`, token: 'BotToken123', encodingAesKey: AES, pollIntervalMs: 200 });
    closers.push(() => bot.close());
    const conv = bot.start('killme', '崩溃前');
    await eventually(() => conv.state === 'streaming' && conv.shown.length > 0, 10_000);
    await server.kill9();
    server = await spawnServer(all);
    await conv.done;
    expect(conv.state).toBe('finished');
    expect(conv.shown).toBe('done:崩溃前');
    expect(conv.frames.filter((f) => f.accepted && f.finish)).toHaveLength(1);
    expect(bot.lateReplies).toHaveLength(0);
    // Only the polls that found no server while it was down went wrong.
    expect(conv.problems.every((p) => /^poll \d+: network-error$/.test(p))).toBe(true);
    expect(dify?.calls.filter((c) => c.body.query === '崩溃前')).toHaveLength(2);
  }, 60_000);
});

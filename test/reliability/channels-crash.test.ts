/**
 * kill -9 mid-answer on LINE and Discord: the real server process dies while the model writes;
 * the next process's recovery sweep takes the question over and the answer is delivered exactly
 * once, by the channel's own way (Discord: the edited original; LINE: push, the token having died).
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../lib/sim/dify-sim';
import type { DifySim } from '../../lib/sim/dify-sim';
import { startDiscordSim } from '../../lib/sim/discord-sim';
import { startLineSim } from '../../lib/sim/line-sim';
import { DIFY_KEY, TIMINGS, eventually, sleep } from '../support/harness';
import { spawnServer } from '../support/process';
import type { ServerProcess } from '../support/process';

let dify: DifySim | undefined;
let server: ServerProcess | undefined;
let dataDir = '';
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await server?.stop();
  await dify?.close();
  for (const c of closers.splice(0)) await c();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('kill -9 mid-answer on other channels', () => {
  it('recovers and delivers once on Discord and on LINE', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wdb-chan-kill-'));
    dify = await startDifySim({ apiKey: DIFY_KEY, script: (b) => ({ kind: 'answer', text: `done:${String(b.query)}`, durationMs: 2500, pieceChars: 2 }) });
    const discord = await startDiscordSim();
    const line = await startLineSim({ channelSecret: '0123456789abcdef0123456789abcdef', accessToken: 'line-token-000000000000', replyTokenMs: 2000 });
    closers.push(() => discord.close(), () => line.close());
    const env = {
      DIFY_API_KEY: DIFY_KEY,
      DIFY_BASE_URL: dify.url,
      DATA_DIR: dataDir,
      ...TIMINGS,
      STALE_AFTER_MS: '1000',
      DISCORD_PUBLIC_KEY: discord.publicKeyHex,
      DISCORD_APPLICATION_ID: discord.applicationId,
      DISCORD_API_BASE: discord.url,
      LINE_CHANNEL_SECRET: '0123456789abcdef0123456789abcdef',
      LINE_CHANNEL_ACCESS_TOKEN: 'line-token-000000000000',
      LINE_API_BASE: line.url,
    };
    server = await spawnServer(env);
    const origin = server.url.replace(/\/wechat$/, '');
    expect((await discord.send(`${origin}/discord`, discord.ask('1150000000000000009', '崩溃前'))).body).toEqual({ type: 5 });
    expect((await line.deliver(`${origin}/line`, [line.text('U000000000000000000000000000kill', '崩溃前')])).status).toBe(200);
    await sleep(800); // the model is writing both answers
    await server.kill9();
    server = await spawnServer(env);
    await eventually(() => discord.edits.at(-1)?.content === 'done:崩溃前' && line.pushes.length === 1, 20_000);
    await sleep(1500); // nothing more arrives
    // Discord shows the answer as it is written (edits ending in " …"), then the final answer once, last.
    const contents = discord.edits.map((e) => e.content);
    expect(contents.filter((c) => c === 'done:崩溃前')).toHaveLength(1);
    expect(contents.at(-1)).toBe('done:崩溃前');
    for (const c of contents.slice(0, -1)) expect(c).toMatch(/ …$/);
    expect(line.pushes).toEqual([{ to: 'U000000000000000000000000000kill', texts: ['done:崩溃前'] }]);
    expect(line.replies).toHaveLength(0);
    expect(dify.calls.filter((c) => c.body.query === '崩溃前')).toHaveLength(4); // two before the kill, two after
  }, 40_000);
});

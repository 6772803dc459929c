/**
 * The poller contract with real processes: two server processes on one shared store, each running
 * the example long-poll channel of docs/channels.md. One of them polls; `kill -9` it, and the other
 * takes the lease over once it expires and goes on from the saved cursor: every message is answered
 * exactly once, nothing lost, nothing repeated, and the model is asked once per message.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startDifySim } from '../../lib/sim/dify-sim';
import type { DifySim } from '../../lib/sim/dify-sim';
import { DIFY_KEY, TIMINGS, eventually, sleep } from '../support/harness';
import { startExampleChat } from '../support/example-channel';
import type { ExampleChat } from '../support/example-channel';
import { spawnServer } from '../support/process';
import type { ServerProcess } from '../support/process';
import { startSharedStore } from '../support/shared-store';
import type { SharedStore } from '../support/shared-store';

let dify: DifySim | undefined;
let chat: ExampleChat | undefined;
let shared: SharedStore | undefined;
const servers: ServerProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  await dify?.close();
  await chat?.close();
  await shared?.close();
});

const holds = (s: ServerProcess) => s.output.join('').includes('poller: holding the lease');

describe('a long-poll channel on two instances', () => {
  it('one instance polls; after kill -9 of it the other takes over from the saved cursor; every message answered once', async () => {
    dify = await startDifySim({ apiKey: DIFY_KEY, script: (b) => ({ kind: 'answer', text: `答:${String(b.query)}`, durationMs: 300 }) });
    chat = await startExampleChat();
    shared = await startSharedStore();
    const env = { DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, EXAMPLE_CHAT_URL: chat.url, SHARED_STORE_URL: shared.url, ...TIMINGS, POLLER_TAKEOVER_S: '1' };
    servers.push(await spawnServer(env, { instance: true }), await spawnServer(env, { instance: true }));
    await eventually(() => servers.some(holds), 15_000);
    await sleep(500);
    // Exactly one holds the lease; the other stands by.
    expect(servers.filter(holds)).toHaveLength(1);
    const [holder, standby] = holds(servers[0] as ServerProcess) ? [servers[0], servers[1]] : [servers[1], servers[0]];

    for (let i = 1; i <= 5; i++) chat.say(`alice`, `问${i}`);
    await eventually(() => chat?.sent.length === 5, 15_000);

    // The holder dies mid-batch: messages keep coming while nobody polls.
    chat.say('bob', '问6');
    chat.say('bob', '问7');
    await (holder as ServerProcess).kill9();
    chat.say('carol', '问8');
    await eventually(() => holds(standby as ServerProcess) && chat?.sent.length === 8, 30_000);
    await sleep(1500); // nothing more arrives

    const texts = chat.sent.map((m) => m.text).sort();
    expect(texts).toEqual(['答:问1', '答:问2', '答:问3', '答:问4', '答:问5', '答:问6', '答:问7', '答:问8']);
    expect(chat.sent.find((m) => m.text === '答:问8')?.to).toBe('carol');
    // One model call per message, however the batch around the kill was seen.
    const asked = dify.calls.map((c) => String(c.body.query));
    expect(new Set(asked).size).toBe(8);
    expect(asked.length).toBeLessThanOrEqual(9); // a question claimed but not answered by the dead one is asked once more at most
  }, 60_000);
});

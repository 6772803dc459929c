/**
 * Personal WeChat (iLink) under `npm run bench -- --only=ilink` (docs/ilink.md): the real server
 * (`npm start`'s build, embedded store) polls the iLink simulator while 500 users write at once.
 * Measured: every user answered, once; one model call each; and the poll-to-answer overhead (from the
 * message entering the service to its answer reaching it, minus the model's own time), next to the
 * same for one user at a time; and the iLink calls each answer costs.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { startDifySim } from '../lib/sim/dify-sim';
import { startIlinkSim } from '../lib/sim/ilink-sim';
import { BUILT_SERVER, KEY, spawnChild, stop } from './support';

const USERS = Number(process.env['BENCH_ILINK_USERS'] ?? 500);
const SOLO = Number(process.env['BENCH_ILINK_SOLO'] ?? 20);
/** The model's own time for every answer (subtracted from what is measured). */
const MODEL_MS = 1000;

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] as number;

export async function benchIlink(say: (line?: string) => void): Promise<void> {
  const dify = await startDifySim({ apiKey: KEY, awkwardChunks: false, script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: MODEL_MS }) });
  const sentAt = new Map<string, number>();
  const overhead: number[] = [];
  const answered = new Map<string, number>();
  const sim = await startIlinkSim({
    onSend: (m) => {
      answered.set(m.to, (answered.get(m.to) ?? 0) + 1);
      const t = sentAt.get(m.to);
      if (t !== undefined && answered.get(m.to) === 1) overhead.push(Date.now() - t - MODEL_MS);
    },
  });
  const account = sim.login();
  const dataDir = mkdtempSync(join(tmpdir(), 'wdb-bench-ilink-'));
  const { child } = await spawnChild([BUILT_SERVER], {
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    DIFY_API_KEY: KEY,
    DIFY_BASE_URL: dify.url,
    ILINK: 'on',
    ILINK_API_BASE: sim.url,
    ILINK_CDN_BASE: sim.cdnUrl,
    ILINK_BOT_TOKEN: account.token,
    ILINK_BOT_ID: account.botId,
    ANSWER_PAGE: 'off',
    // info: spawnChild waits for the "listening" line.
    LOG_LEVEL: 'info',
  });
  const waitFor = async (done: () => boolean, ms: number) => {
    const until = Date.now() + ms;
    while (!done()) {
      if (Date.now() > until) throw new Error('iLink bench: not every user was answered in time');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await waitFor(() => sim.polls.length > 0 || sim.requests.some((r) => r.op === 'getupdates'), 20_000);
    // One user at a time: the overhead with nothing else going on.
    for (let i = 0; i < SOLO; i++) {
      const user = `solo${i}@im.wechat`;
      sentAt.set(user, Date.now());
      sim.sendText(user, `单独${i}`);
      await waitFor(() => answered.has(user), 30_000);
    }
    const solo = overhead.splice(0);
    const before = { requests: sim.requests.length, calls: dify.calls.length };
    // Everyone at once.
    const t0 = Date.now();
    for (let i = 0; i < USERS; i++) {
      const user = `u${i}@im.wechat`;
      sentAt.set(user, Date.now());
      sim.sendText(user, `问题${i}`);
    }
    await waitFor(() => overhead.length >= USERS, 180_000);
    const wall = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 1500)); // nothing more comes
    const once = [...Array(USERS).keys()].every((i) => answered.get(`u${i}@im.wechat`) === 1);
    const calls = dify.calls.length - before.calls;
    const ops = new Map<string, number>();
    for (const r of sim.requests.slice(before.requests)) ops.set(r.op, (ops.get(r.op) ?? 0) + 1);
    const per = (op: string) => ((ops.get(op) ?? 0) / USERS).toFixed(2);
    say('### Personal WeChat (iLink): everyone at once');
    say();
    say(`The built server polls the iLink simulator (embedded store); the model takes ${MODEL_MS} ms for every answer. Overhead = from the message entering the service to its answer reaching it, minus the model's ${MODEL_MS} ms.`);
    say();
    say('| | users | answered once each | model calls | overhead p50 | p95 | p99 | max | all answered after |');
    say('|---|---|---|---|---|---|---|---|---|');
    say(`| one at a time | ${SOLO} | yes | ${SOLO} | ${quantile(solo, 0.5)} ms | ${quantile(solo, 0.95)} ms | ${quantile(solo, 0.99)} ms | ${Math.max(...solo)} ms | — |`);
    say(`| all at once | ${USERS} | ${once ? 'yes' : 'NO'} | ${calls} | ${quantile(overhead, 0.5)} ms | ${quantile(overhead, 0.95)} ms | ${quantile(overhead, 0.99)} ms | ${Math.max(...overhead)} ms | ${(wall / 1000).toFixed(1)} s |`);
    say();
    say(`At once, the median overhead is ${(quantile(overhead, 0.5) / Math.max(1, quantile(solo, 0.5))).toFixed(1)}× the one-at-a-time median. iLink calls per answer: sendmessage ${per('sendmessage')}, sendtyping ${per('sendtyping')}, getconfig ${per('getconfig')}, getupdates ${per('getupdates')} (polls for the whole burst, per user). Simulator violations: ${sim.violations.length}.`);
    say();
  } finally {
    await stop(child);
    await sim.close();
    await dify.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

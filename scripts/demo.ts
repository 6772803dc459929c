/**
 * `npm run demo`: the whole bot offline on one machine. Starts the Dify simulator, the real
 * server on the embedded store, and a WeChat client simulator that signs, waits 5 s and
 * re-delivers like WeChat, then plays a short conversation.
 *
 * DEMO_SCALE=0.2 runs every timing five times faster (WeChat's window and Dify's latency alike).
 * The placeholder carries a link to the live answer page; the demo follows it in the terminal, and
 * DEMO_OPEN=1 also opens it in your browser (the server then stays up until you press Ctrl-C).
 * DEMO_BACKEND=openai asks the OpenAI-compatible simulator instead (a model that thinks first).
 * `npm run demo -- --channel ilink` plays personal WeChat through the iLink simulator (scripts/demo-ilink.ts).
 */
import { spawn } from 'child_process';
import { randomBytes } from 'crypto';
import { mkdtempSync, rmSync } from 'fs';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { createApp } from '../lib/app';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/util/log';
import { createHttpServer } from '../lib/adapters/server/http';
import { startDifySim } from '../lib/sim/dify-sim';
import { openSse } from '../lib/sim/sse-client';
import type { Script } from '../lib/sim/dify-sim';
import { startOpenAISim } from '../lib/sim/openai-sim';
import { WechatSim } from '../lib/sim/wechat-sim';
import type { Push, SendResult } from '../lib/sim/wechat-sim';
import { openStore } from '../lib/store';
import { nedbBackend } from '../lib/store/nedb';
import { dim } from './colour';

const scale = Number(process.env['DEMO_SCALE'] ?? '1');
if (!(scale > 0 && scale <= 1)) throw new Error('DEMO_SCALE must be a number in (0, 1]');
const ms = (realMs: number) => Math.round(realMs * scale);

const LONG_ARTICLE =
  '# 如何写好一份周报\n\n' +
  Array.from(
    { length: 8 },
    (_, i) =>
      `## 第 ${i + 1} 点\n\n**要点**：${'把事情讲清楚，先说结论，再说过程，最后说下一步。'.repeat(6)}\n\n` +
      `- 列出完成的事\n- 列出遇到的问题\n- 参考 [写作指南](https://example.com/guide)`,
  ).join('\n\n');

const ANSWERS: Record<string, Script> = {
  你好: { kind: 'answer', text: '你好！我是演示用的 AI 助手，有什么可以帮你？', durationMs: ms(800) },
  讲讲公众号的5秒限制: {
    kind: 'answer',
    text: '微信会等待 **5 秒**。没等到回复就会重发同一条消息，最多三次；我们利用这几次重发，把回答送到你手上。',
    durationMs: ms(7000),
  },
  写一篇关于周报的长文: { kind: 'answer', text: LONG_ARTICLE, durationMs: ms(18_000), pieceChars: 20 },
};

function show(label: string, r: SendResult, started: number): void {
  const tries = r.deliveries.map((d) => `${d.outcome}@${((d.startedAt - started) / 1000).toFixed(1)}s`).join(' → ');
  console.log(dim(`   deliveries: ${tries}`));
  const text = r.text ?? '(nothing shown: the server answered "success")';
  console.log(`🤖 ${label}\n${text.replace(/^/gm, '   ')}\n`);
}

/** Follow the answer page's live stream in the terminal (and open it in a browser with DEMO_OPEN=1). */
async function follow(link: string): Promise<void> {
  console.log(dim(`   the link opens the live answer page: ${link}`));
  if (process.env['DEMO_OPEN'] === '1') {
    const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
    spawn(opener, [link], { stdio: 'ignore', detached: true }).on('error', () => console.log(`   (could not run ${opener}: open the link yourself)`)).unref();
  }
  const sse = await openSse(`${link}/events`);
  let shown = 0;
  const progress = setInterval(() => {
    let chars = 0;
    for (const e of sse.events) if (e.event === 'text') chars = (JSON.parse(e.data) as { at: number; add: string }).at + (JSON.parse(e.data) as { add: string }).add.length;
    if (chars > shown) {
      shown = chars;
      console.log(dim(`   page: ${chars} characters of the answer so far…`));
    }
  }, 1000);
  await sse.until((e) => e.event === 'final' || e.event === 'gone', 10 * 60_000).finally(() => clearInterval(progress));
  console.log(`${dim('   page: the whole answer is there, rendered')}\n`);
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'wechat-dify-demo-'));
  const scriptFor = (query: string): Script => ANSWERS[query] ?? { kind: 'answer', text: `（演示）你问的是：${query}`, durationMs: ms(500) };
  const openai = process.env['DEMO_BACKEND'] === 'openai';
  // The same answers from either backend; the OpenAI-compatible one thinks first (its thoughts never show).
  const sim = openai
    ? await startOpenAISim({
        model: 'demo-model',
        script: (body) => {
          const s = scriptFor(String(body.messages?.at(-1)?.content ?? ''));
          const text = s.kind === 'answer' ? s.text : '';
          const durationMs = s.kind === 'answer' ? (s.durationMs ?? 0) : 0;
          return { kind: 'answer', text, reasoning: '（演示中的思考过程，用户看不到）', durationMs, pieceChars: (s.kind === 'answer' ? s.pieceChars : undefined) ?? 12 };
        },
      })
    : await startDifySim({ apiKey: 'app-demo-key', script: (body) => scriptFor(String(body.query)) });
  const backend = openai
    ? { LLM_PROVIDER: 'openai', OPENAI_BASE_URL: sim.url, OPENAI_MODEL: 'demo-model', SYSTEM_PROMPT: '你是公众号里的 AI 助手。' }
    : { DIFY_API_KEY: 'app-demo-key', DIFY_BASE_URL: sim.url };
  // Listen first: the answer page's links need the server's address.
  const ref: { app?: ReturnType<typeof createApp> } = {};
  const server = createHttpServer({
    webhook: (path) => (ref.app as ReturnType<typeof createApp>).routes.get(path),
    page: (r) => (ref.app as ReturnType<typeof createApp>).page(r),
    logger: createLogger({ level: 'warn' }),
    maxBodyBytes: 256 * 1024,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${origin}/wechat`;
  const adminToken = randomBytes(18).toString('base64url');
  const config = loadConfig({
    PUBLIC_URL: origin,
    ADMIN_TOKEN: adminToken,
    WECHAT_TOKEN: 'demotoken',
    ...backend,
    DATA_DIR: dataDir,
    WECHAT_TIMEOUT_MS: String(ms(5000)),
    REPLY_DEADLINE_MS: String(ms(4500)),
    POLL_MS: String(Math.max(10, ms(150))),
    STALE_AFTER_MS: String(Math.max(1000, ms(30_000))),
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn',
  });
  const store = await openStore(config.store, { embedded: nedbBackend });
  const app = (ref.app = createApp(config, { store, logger: createLogger({ level: config.logLevel }) }));
  const wechatTimeoutMs = ms(5000);
  const wechat = new WechatSim({ url, token: 'demotoken', timeoutMs: wechatTimeoutMs });

  console.log(`wechat-dify-bot demo — server ${url}, ${openai ? 'OpenAI-compatible' : 'Dify'} simulator ${sim.url}, embedded store ${dataDir}`);
  console.log(`WeChat waits ${wechatTimeoutMs / 1000}s per delivery and delivers up to 3 times (DEMO_SCALE=${scale}).\n`);

  const user = 'oDemoUser';
  const say = async (what: Push | string, label: string, note?: string) => {
    const shown = typeof what === 'string' ? what : `[${what.type === 'event' ? `${what.event} event` : what.type}]`;
    console.log(`🧑 ${shown}${note ? `   ${dim(`(${note})`)}` : ''}`);
    const started = Date.now();
    const r = await wechat.send(user, what);
    show(label, r, started);
    return r;
  };

  const hs = await wechat.handshake('1234567890');
  console.log(`URL verification (GET): HTTP ${hs.status}, body "${hs.body}"\n`);
  await say({ type: 'event', event: 'subscribe' }, 'welcome');
  await say('你好', 'fast answer', 'Dify answers in under a second');
  await say('讲讲公众号的5秒限制', 'slow answer', 'Dify needs ~7 s: the first delivery times out, the second gets the answer');
  const placeholder = await say('写一篇关于周报的长文', 'placeholder', 'Dify needs ~18 s: longer than all three deliveries');
  const link = /<a href="([^"]+)">/.exec(placeholder.text ?? '')?.[1];
  if (link) await follow(link);
  let r = await say('1', 'page 1', 'fetch the answer');
  while (r.text && r.text.includes('回复 1 查看后续')) r = await say('1', 'next page', 'fetch the next page');
  await say('1', 'nothing left');
  await say('/clear', 'cleared', 'forget the conversation');
  await say('/help', 'help');
  console.log(`The model was called ${sim.calls.length} times for ${Object.keys(ANSWERS).length} questions: WeChat's re-deliveries never ask twice.`);

  console.log(`Console for this run: ${origin}/admin  (ADMIN_TOKEN ${adminToken})${process.env['DEMO_OPEN'] === '1' ? '' : ' — run with DEMO_OPEN=1 to keep it up'}`);
  if (link && process.env['DEMO_OPEN'] === '1') {
    console.log(`The answer page stays open at ${link} — press Ctrl-C to stop.`);
    await new Promise<void>((r) => process.once('SIGINT', () => r()));
  }
  server.closeAllConnections();
  server.close();
  await sim.close();
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}

// `--channel ilink`: the personal-WeChat channel instead (scripts/demo-ilink.ts).
const channelArg = process.argv[process.argv.indexOf('--channel') + 1];
(process.argv.includes('--channel') && channelArg === 'ilink' ? import('./demo-ilink').then((m) => m.demoIlink()) : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});

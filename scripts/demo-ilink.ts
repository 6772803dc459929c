/**
 * `npm run demo -- --channel ilink`: the personal-WeChat (iLink) channel offline. Starts the Dify and
 * iLink simulators and the real server on the embedded store, logs in by QR (the code is shown; the
 * simulator "scans" it and confirms), then plays a conversation as a WeChat user: a question with the
 * typing indicator, a duplicate delivery answered once, an answer too long for one context token
 * (the last allowed message offers `1`), `1` for the rest, a picture and a question about it.
 */
import { randomBytes } from 'crypto';
import { mkdtempSync, rmSync } from 'fs';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { createApp } from '../lib/app';
import { loadConfig } from '../lib/config';
import { isIlink, qrTerminal } from '../lib/channels/ilink';
import type { IlinkChannel } from '../lib/channels/ilink';
import { createHttpServer } from '../lib/adapters/server/http';
import { DEFAULT_PARAMETERS, startDifySim } from '../lib/sim/dify-sim';
import { startIlinkSim } from '../lib/sim/ilink-sim';
import { openStore } from '../lib/store';
import { nedbBackend } from '../lib/store/nedb';
import { createLogger } from '../lib/util/log';
import { dim, plain } from './colour';

const LONG = Array.from({ length: 12 }, (_, i) => `## 第 ${i + 1} 部分\n\n${'一段足够长的说明文字，用来演示一条很长的回答如何被拆成多条微信消息。'.repeat(40)}`).join('\n\n');
/** A tiny PNG (1×1, red). */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC', 'base64');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function demoIlink(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'wdb-demo-ilink-'));
  const dify = await startDifySim({
    apiKey: 'app-demo-key',
    parameters: { ...DEFAULT_PARAMETERS, file_upload: { image: { enabled: true, number_limits: 3, detail: 'high', transfer_methods: ['local_file'] } } },
    script: (body) => {
      const q = String(body.query);
      if (q.includes('长文')) return { kind: 'answer', text: LONG, durationMs: 3000 };
      if (Array.isArray(body.files) && body.files.length > 0) return { kind: 'answer', text: '图里是一个红色的小方块（演示：图片已从 CDN 下载、解密后交给了模型）。', durationMs: 1500 };
      return { kind: 'answer', text: `你好！我是演示用的 AI 助手。你刚才说的是「${q}」。`, durationMs: 2500 };
    },
  });
  const user = 'o9cqdemo0user@im.wechat';
  const sim = await startIlinkSim({
    qrHoldMs: 1000,
    onSend: (m) => console.log(`🤖 ${m.text.length > 120 ? `${m.text.slice(0, 40).replace(/\n/g, ' ')} … ${m.text.slice(-24).replace(/\n/g, ' ')}   ${dim(`(${m.text.length} 字)`)}` : m.text}`),
  });
  const server = createHttpServer({ webhook: () => undefined, page: (r) => app.page(r), console: (r) => app.console(r), logger: createLogger({ level: 'warn' }), maxBodyBytes: 256 * 1024 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const adminToken = randomBytes(18).toString('base64url');
  const config = loadConfig({
    ILINK: 'on',
    ILINK_API_BASE: sim.url,
    ILINK_CDN_BASE: sim.cdnUrl,
    ILINK_SEND_GAP_MS: '300',
    ANSWER_PAGE: 'off',
    ADMIN_TOKEN: adminToken,
    DIFY_API_KEY: 'app-demo-key',
    DIFY_BASE_URL: dify.url,
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn',
  });
  const store = await openStore(config.store, { embedded: nedbBackend });
  const app = createApp(config, { store, logger: createLogger({ level: config.logLevel }) });
  app.startPollers();
  const channel = app.channels.list.find(isIlink) as IlinkChannel;
  console.log(`wechat-dify-bot iLink demo — iLink simulator ${sim.url}, Dify simulator ${dify.url}, console ${origin}/admin (ADMIN_TOKEN ${adminToken})\n`);

  // 1. Log in by QR, as the console's "log in" button does.
  await channel.ilink.startLogin();
  let login = await channel.ilink.status();
  while (!login.login?.qr) {
    await sleep(100);
    login = await channel.ilink.status();
  }
  console.log('Scan with WeChat (here the simulator scans it for you):');
  console.log(plain(await qrTerminal(login.login.qr)));
  await sleep(1000);
  sim.scan({ user });
  console.log('📱 scanned');
  await sleep(800);
  sim.confirm();
  while (!(await channel.ilink.status()).login?.done) await sleep(100);
  console.log(`📱 confirmed: ${(await channel.ilink.status()).login?.result ?? ''}\n`);

  /** Write as the user, then wait until the bot has been quiet for a while. */
  const say = async (text: string, note: string, o: Parameters<typeof sim.sendText>[2] = {}) => {
    console.log(`🧑 ${text}   ${dim(`(${note})`)}`);
    sim.sendText(user, text, o);
    await quiet();
  };
  const quiet = async () => {
    let seen = -1;
    let stable = 0;
    while (stable < 12) {
      await sleep(250);
      const n = sim.sent.length + sim.typing.length;
      stable = n === seen && !sim.isTyping(user) ? stable + 1 : 0;
      seen = n;
    }
    console.log('');
  };

  await say('你好', 'the typing indicator shows while the model writes');
  console.log(`   typing events: ${sim.typing.map((t) => (t.status === 1 ? 'on' : 'off')).join(' → ')}\n`);
  await say('今天天气怎么样', 'the service delivers it twice, with a new id: answered once', { duplicate: 'new-id', duplicateAfterMs: 1500 });
  await say('写一篇很长的长文', `an answer of ${LONG.length} characters: one context token allows 10 messages`);
  await say('1', 'a new message, a new token: the rest');
  console.log('🧑 [picture]');
  sim.sendImage(user, PNG);
  await quiet();
  await say('图里是什么？', 'the picture is downloaded from the CDN, decrypted, and given to the model');
  console.log(`The model was called ${dify.calls.length} times for 4 questions (the duplicate was not asked again). Nothing the official client never does: ${sim.violations.length === 0 ? 'none seen' : sim.violations.join('; ')}.`);

  server.closeAllConnections();
  server.close();
  await app.close();
  await sim.close();
  await dify.close();
  rmSync(dataDir, { recursive: true, force: true });
}

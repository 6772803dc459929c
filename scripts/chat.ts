/**
 * `npm run chat -- [--url URL] [--user OPENID]`: chat with a running bot as WeChat would, from a
 * terminal. Signs with WECHAT_TOKEN, waits 5 s per delivery and re-delivers up to 3 times.
 * Safe mode: set WECHAT_AES_KEY and WECHAT_APPID as on the server.
 *
 * Besides text: `:subscribe`, `:unsubscribe`, `:click KEY`, `:scan KEY`, `:voice TEXT`, `:image`, `:quit`.
 */
import { createInterface } from 'readline';
import { WechatSim, randomOpenId } from '../lib/sim/wechat-sim';
import type { Push } from '../lib/sim/wechat-sim';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const url = arg('url') ?? process.env['BOT_URL'] ?? 'http://127.0.0.1:3000/wechat';
const token = arg('token') ?? process.env['WECHAT_TOKEN'];
const user = arg('user') ?? randomOpenId();
if (!token) {
  console.error('Set WECHAT_TOKEN (the same Token as the server) or pass --token.');
  process.exit(2);
}
const aesKey = process.env['WECHAT_AES_KEY'];
const appId = process.env['WECHAT_APPID'];
const wechat = new WechatSim({
  url,
  token,
  timeoutMs: Number(process.env['WECHAT_TIMEOUT_MS'] ?? 5000),
  ...(aesKey && appId ? { aes: { encodingAesKey: aesKey, appId } } : {}),
});

function parse(line: string): Push | 'quit' | undefined {
  const [cmd, ...rest] = line.trim().split(/\s+/);
  const tail = rest.join(' ');
  switch (cmd) {
    case ':quit':
      return 'quit';
    case ':subscribe':
      return { type: 'event', event: 'subscribe', ...(tail ? { eventKey: `qrscene_${tail}` } : {}) };
    case ':unsubscribe':
      return { type: 'event', event: 'unsubscribe' };
    case ':click':
      return { type: 'event', event: 'CLICK', eventKey: tail };
    case ':scan':
      return { type: 'event', event: 'SCAN', eventKey: tail };
    case ':voice':
      return { type: 'voice', recognition: tail };
    case ':image':
      return { type: 'image' };
    default:
      return line.trim() === '' ? undefined : { type: 'text', content: line };
  }
}

async function main(): Promise<void> {
  const hs = await wechat.handshake().catch((err: Error) => ({ status: 0, body: err.message }));
  console.log(`Bot at ${url} — handshake: ${hs.status === 200 ? 'ok' : `FAILED (${hs.status} ${hs.body})`}. You are ${user}.`);
  console.log('Type a message (":quit" to leave; ":subscribe", ":click KEY", ":voice TEXT", ":image" send events).\n');
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '你> ' });
  rl.prompt();
  for await (const line of rl) {
    const push = parse(line);
    if (push === 'quit') break;
    if (push) {
      const started = Date.now();
      const r = await wechat.send(user, push);
      const tries = r.deliveries.map((d) => `${d.outcome}${d.detail ? ` (${d.detail})` : ''} after ${(d.ms / 1000).toFixed(1)}s`).join(', ');
      console.log(`\x1b[2m[${tries}; ${((Date.now() - started) / 1000).toFixed(1)}s]\x1b[0m`);
      console.log(`bot> ${r.text ?? '(nothing shown)'}\n`);
    }
    rl.prompt();
  }
  rl.close();
}

void main();

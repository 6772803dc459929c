/**
 * `npm run chat -- [--url URL] [--user OPENID]`: chat with a running bot as WeChat would, from a
 * terminal. Signs with WECHAT_TOKEN, waits 5 s per delivery and re-delivers up to 3 times.
 * Safe mode: set WECHAT_AES_KEY and WECHAT_APPID as on the server.
 *
 * Besides text: `:subscribe`, `:unsubscribe`, `:click KEY`, `:scan KEY`, `:voice TEXT`, `:image`, `:quit`.
 *
 * `npm run chat -- --channel line|discord [--url http://127.0.0.1:3000] [--api-port 3100]`: the same
 * as LINE or Discord. It plays the platform: its API answers on --api-port (start the server with the
 * settings it prints), and it signs each message to the bot's /line or /discord.
 *
 * `npm run chat -- --channel wecom|wecom-kf|wecom-bot [--url http://127.0.0.1:3000] [--api-port 3100]`: the
 * same as a member writing to the WeCom self-built app, a WeChat customer writing to customer service, or a
 * member writing to the intelligent bot (lib/sim/wecom-sim.ts, lib/sim/wecom-bot-sim.ts; docs/wecom.md).
 * The URL check runs first; the bot's stream shows as it is polled.
 * `npm run chat -- --channel ilink [--api-port 3100] [--user ID@im.wechat]`: personal WeChat. It plays the
 * iLink service (the bot polls it; QR codes are confirmed by themselves); each line is a message from you.
 */
import { createInterface } from 'readline';
import { WechatSim, randomOpenId } from '../lib/sim/wechat-sim';
import type { Push } from '../lib/sim/wechat-sim';
import { startLineSim } from '../lib/sim/line-sim';
import { startDiscordSim } from '../lib/sim/discord-sim';
import { startWecomSim } from '../lib/sim/wecom-sim';
import { startWecomBotSim } from '../lib/sim/wecom-bot-sim';
import { dim } from './colour';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const channel = arg('channel');
if (channel === 'ilink') {
  // Personal WeChat: this process plays the iLink service (scripts/ilink-sim.ts), which scans and
  // confirms every QR code by itself; each line typed is a message to the bot.
  const port = arg('api-port') ?? '3100';
  process.env['ILINK_SIM_PORT'] = port;
  if (arg('user')) process.env['ILINK_SIM_USER'] = arg('user');
  console.log(`Playing iLink. Start the server with:\n  ILINK=on ILINK_API_BASE=http://127.0.0.1:${port} ILINK_CDN_BASE=http://127.0.0.1:${port}/c2c\nthen log in (npm run ilink -- login, or the console's iLink page).\n`);
  void import('./ilink-sim');
} else if (channel === 'line' || channel === 'discord') {
  void chatOther(channel).then(() => process.exit(0));
} else if (channel === 'wecom' || channel === 'wecom-kf' || channel === 'wecom-bot') {
  void chatWecom(channel).then(() => process.exit(0));
} else {
  void wechatMain();
}

/** LINE or Discord: this process plays the platform (its API on --api-port), the bot answers through it. */
async function chatOther(name: 'line' | 'discord'): Promise<void> {
  const origin = (arg('url') ?? 'http://127.0.0.1:3000').replace(/\/(line|discord|wechat)?$/, '');
  const port = Number(arg('api-port') ?? 3100);
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '你> ' });
  const show = (text: string) => console.log(`\nbot> ${text}\n`);
  let send: (text: string) => Promise<void>;
  if (name === 'line') {
    const secret = process.env['LINE_CHANNEL_SECRET'] ?? '0123456789abcdef0123456789abcdef';
    const access = process.env['LINE_CHANNEL_ACCESS_TOKEN'] ?? 'local-line-access-token';
    const sim = await startLineSim({ channelSecret: secret, accessToken: access, port });
    console.log(`Playing LINE. Start the server with:\n  LINE_CHANNEL_SECRET=${secret} LINE_CHANNEL_ACCESS_TOKEN=${access} LINE_API_BASE=${sim.url}\n`);
    let seen = 0;
    setInterval(() => {
      const all = [...sim.replies.map((r) => r.texts), ...sim.pushes.map((p) => p.texts)];
      for (const texts of all.slice(seen)) show(texts.join('\n---\n'));
      seen = all.length;
    }, 200).unref();
    const user = arg('user') ?? 'U0000000000000000000000000000chat';
    send = async (text) => {
      const r = await sim.deliver(`${origin}/line`, [sim.text(user, text)]);
      if (r.status !== 200) console.log(dim(`[/line answered ${r.status}: ${r.body}]`));
    };
  } else {
    const sim = await startDiscordSim({ port });
    console.log(`Playing Discord. Start the server with:\n  DISCORD_PUBLIC_KEY=${sim.publicKeyHex} DISCORD_APPLICATION_ID=${sim.applicationId} DISCORD_API_BASE=${sim.url}\n`);
    let seen = 0;
    setInterval(() => {
      const all = [...sim.edits.map((e) => e.content), ...sim.followUps.map((f) => f.content)];
      for (const t of all.slice(seen)) show(t);
      seen = all.length;
    }, 200).unref();
    const channelId = arg('user') ?? '1150000000000000000';
    send = async (text) => {
      const interaction = text.trim() === '/clear' ? sim.clear(channelId) : sim.ask(channelId, text);
      const r = await sim.send(`${origin}/discord`, interaction);
      const d = r.body as { type?: number; data?: { content?: string } };
      if (r.status !== 200) console.log(dim(`[/discord answered ${r.status}]`));
      else if (d.type === 4) show(d.data?.content ?? '');
      else if (d.type === 5) console.log(dim('[deferred: thinking…]'));
    };
  }
  console.log('Type a message (":quit" to leave).\n');
  rl.prompt();
  for await (const line of rl) {
    if (line.trim() === ':quit') break;
    if (line.trim()) await send(line.trim());
    rl.prompt();
  }
  rl.close();
}

async function wechatMain(): Promise<void> {
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

  await main(wechat, url, user);
}

async function main(wechat: WechatSim, url: string, user: string): Promise<void> {
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
      console.log(dim(`[${tries}; ${((Date.now() - started) / 1000).toFixed(1)}s]`));
      console.log(`bot> ${r.text ?? '(nothing shown)'}\n`);
    }
    rl.prompt();
  }
  rl.close();
}

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

/** WeCom: this process plays WeCom (its API on --api-port for the app and customer service), the bot answers through it. */
async function chatWecom(name: 'wecom' | 'wecom-kf' | 'wecom-bot'): Promise<void> {
  const origin = (arg('url') ?? 'http://127.0.0.1:3000').replace(/\/(wecom|wecom-kf|wecom-bot|wechat)?$/, '');
  const port = Number(arg('api-port') ?? 3100);
  const corpId = process.env['WECOM_CORP_ID'] ?? 'ww5a1c9e3b7d20f864';
  const token = process.env[name === 'wecom-bot' ? 'WECOM_BOT_TOKEN' : 'WECOM_TOKEN'] ?? 'localwecom1';
  const aesKey = process.env[name === 'wecom-bot' ? 'WECOM_BOT_AES_KEY' : 'WECOM_AES_KEY'] ?? 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR';
  const secret = process.env[name === 'wecom-kf' ? 'WECOM_KF_SECRET' : 'WECOM_SECRET'] ?? 'local-wecom-secret';
  const user = arg('user') ?? (name === 'wecom-kf' ? 'wmLocalCustomer01' : 'zhangsan');
  const show = (text: string) => console.log(`\nbot> ${text}\n`);
  let send: (text: string) => Promise<void>;
  let verify: () => Promise<{ ok: boolean; problem?: string }>;
  if (name === 'wecom-bot') {
    const sim = await startWecomBotSim({ url: `${origin}/wecom-bot`, token, encodingAesKey: aesKey });
    console.log(`Playing WeCom's intelligent bot. Start the server with:\n  WECOM_BOT_TOKEN=${token} WECOM_BOT_AES_KEY=${aesKey}\n`);
    verify = () => sim.verifyUrl();
    send = async (text) => {
      const group = text.startsWith('@');
      const conv = sim.start(user, group ? text.replace(/^@\S*\s*/, '') : text, group ? { chatid: 'wrLocalGroup' } : {});
      let shown = '';
      const timer = setInterval(() => {
        if (conv.shown !== shown) process.stdout.write(`${dim(`[stream] ${(shown = conv.shown).slice(-60).replace(/\n/g, ' ')}`)}\n`);
      }, 300);
      await conv.done;
      clearInterval(timer);
      show(`${conv.shown}${conv.problems.length ? `\n${dim(`[problems: ${conv.problems.join('; ')}]`)}` : ''} ${dim(`[${conv.state}]`)}`);
      if (conv.state === 'expired' || conv.state === 'finished') for (const late of conv.lateReplies) show(`(response_url) ${late.content ?? ''}`);
    };
  } else {
    const callback = { url: `${origin}/${name}`, token, encodingAesKey: aesKey };
    const sim = await startWecomSim({
      corpId,
      port,
      apps: [{ agentId: 1000002, secret, callback }],
      onSend: (m) => show(`${m.content ?? `[${m.msgtype}]`}${m.channel === 'app' && !m.shown ? ' (not shown)' : ''}`),
    });
    const vars = name === 'wecom' ? `WECOM_AGENT_ID=1000002 WECOM_SECRET=${secret}` : `WECOM_KF_SECRET=${secret}`;
    console.log(`Playing WeCom (${name === 'wecom' ? 'the self-built app' : 'WeChat customer service'}). Start the server with:\n  WECOM_CORP_ID=${corpId} WECOM_TOKEN=${token} WECOM_AES_KEY=${aesKey} ${vars} WECOM_API_BASE=${sim.url}\n`);
    verify = () => sim.verifyUrl();
    send = async (text) => {
      if (name === 'wecom') {
        const r = await sim.memberSends(user, text);
        if (r.reply?.content) show(r.reply.content);
        if (!r.acked || r.problem) console.log(dim(`[${r.problem ?? r.deliveries.map((d) => d.outcome).join(', ')}]`));
      } else {
        const r = text === ':enter' ? await sim.customerEnters('wkSimKf0000000001', user) : await sim.customerSends('wkSimKf0000000001', user, text);
        if (!r.callback?.acked) console.log(dim('[the notice was not acknowledged]'));
      }
    };
  }
  const hs = await verify().catch((err: Error) => ({ ok: false, problem: err.message }));
  console.log(`URL check: ${hs.ok ? 'ok' : `FAILED (${hs.problem ?? ''})`}. Type a message (":quit" to leave${name === 'wecom-kf' ? ', ":enter" opens the chat' : name === 'wecom-bot' ? ', "@…" writes in a group' : ''}).\n`);
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '你> ' });
  rl.prompt();
  for await (const line of rl) {
    if (line.trim() === ':quit') break;
    if (line.trim()) await send(line.trim());
    rl.prompt();
  }
  rl.close();
}

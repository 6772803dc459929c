/**
 * `npm run wecom-sim`: the WeCom simulators (docs/wecom.md) by hand, to run the WeCom channels offline.
 * The API (gettoken, message/send, media, the customer-service calls) listens on WECOM_SIM_PORT (default
 * 8792); point the bot's WeCom API base URL at it. Messages go to the bot's self-built-app callback
 * WECOM_SIM_CALLBACK_URL (it gets customer-service notices too, unless WECOM_SIM_KF_URL names the URL of a
 * second app, AgentID + 1 with the secret WECOM_SIM_SECRET + "-kf", that calls the customer-service API,
 * as the bot's /wecom-kf expects) and to its intelligent-bot URL WECOM_SIM_BOT_URL; response_url and media
 * of the intelligent bot are served on WECOM_BOT_SIM_PORT (8793).
 * Token, EncodingAESKey, CorpID, secret and AgentID come from WECOM_SIM_TOKEN, WECOM_SIM_AES_KEY,
 * WECOM_SIM_CORP_ID, WECOM_SIM_SECRET and WECOM_SIM_AGENT_ID (defaults printed at start).
 *
 * Type `app <text>` (a member writes to the app), `kf <text>` (a WeChat customer writes to customer
 * service), `bot <text>` or `group <text>` (the intelligent bot, single chat or @-mentioned in a group),
 * `!verify app|bot` (URL verification), `!enter` (the customer opens the KF chat), `!human on|off`
 * (a human servicer takes the KF session), `!expire` (the app's access token expires).
 */
import { createInterface } from 'readline';
import { startWecomBotSim } from '../lib/sim/wecom-bot-sim';
import type { WecomBotSim } from '../lib/sim/wecom-bot-sim';
import { startWecomSim } from '../lib/sim/wecom-sim';
import { runSim, simPort } from './sim-cli';

const apiPort = simPort('wecom-sim', 'WECOM_SIM_PORT');
const botPort = simPort('wecom-sim', 'WECOM_BOT_SIM_PORT');

runSim('wecom-sim', [{ port: apiPort, variable: 'WECOM_SIM_PORT' }, { port: botPort, variable: 'WECOM_BOT_SIM_PORT' }], async () => {
  const env = process.env;
  const token = env['WECOM_SIM_TOKEN'] ?? 'wecomsimtoken';
  const encodingAesKey = env['WECOM_SIM_AES_KEY'] ?? 'kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR';
  const corpId = env['WECOM_SIM_CORP_ID'] ?? 'ww5a1c9e3b7d20f864';
  const secret = env['WECOM_SIM_SECRET'] ?? 'sim-app-secret';
  const agentId = Number(env['WECOM_SIM_AGENT_ID'] ?? 1000002);
  const user = env['WECOM_SIM_USER'] ?? 'zhangsan';
  const customer = env['WECOM_SIM_CUSTOMER'] ?? 'wmSimCustomer01';
  const openKfid = 'wkSimKf0000000001';
  const callbackUrl = env['WECOM_SIM_CALLBACK_URL'];
  const botUrl = env['WECOM_SIM_BOT_URL'];
  const kfUrl = env['WECOM_SIM_KF_URL'];

  const api = await startWecomSim({
    corpId,
    port: apiPort,
    apps: [
      { agentId, secret, ...(callbackUrl ? { callback: { url: callbackUrl, token, encodingAesKey } } : {}) },
      ...(kfUrl ? [{ agentId: agentId + 1, secret: `${secret}-kf`, callback: { url: kfUrl, token, encodingAesKey } }] : []),
    ],
    kfAccounts: [openKfid],
    ...(kfUrl ? { kfAgentId: agentId + 1 } : {}),
    onSend: (m) => {
      const what = m.content ?? `[${m.msgtype}]`;
      if (m.channel === 'app') console.log(`app → ${m.touser}${m.dropped ? ' (dropped: over the rate)' : m.shown ? '' : ' (not shown)'}: ${what}`);
      else console.log(`kf ${m.via} → ${m.touser}${m.failType ? ` (will fail: ${m.failType})` : ''}: ${what}`);
    },
  });
  let bot: WecomBotSim | undefined;
  if (botUrl) {
    bot = await startWecomBotSim({
      url: botUrl,
      token,
      encodingAesKey,
      port: botPort,
      onFrame: (c, f) => console.log(`bot ${c.msgid.slice(0, 6)} ${f.source}${f.finish ? ' (finish)' : ''}${f.accepted ? '' : ` refused: ${f.problem}`}: ${f.content}`),
      onLateReply: (r) => console.log(`bot response_url → ${r.user}: ${r.content ?? `[${r.msgtype}]`}`),
    });
  }
  console.log(`WeCom API simulator on ${api.url} (CorpID ${corpId}, secret ${secret}, AgentID ${agentId}, open_kfid ${openKfid}).`);
  console.log(`Callbacks: app${kfUrl ? '' : '/KF'} → ${callbackUrl ?? '(set WECOM_SIM_CALLBACK_URL)'}${kfUrl ? `; KF (AgentID ${agentId + 1}, secret ${secret}-kf) → ${kfUrl}` : ''}; intelligent bot → ${botUrl ?? '(set WECOM_SIM_BOT_URL)'}; Token ${token}, EncodingAESKey ${encodingAesKey}.`);
  console.log('Type: app <text> | kf <text> | bot <text> | group <text> | !verify app|bot | !enter | !human on|off | !expire');

  const show = (label: string, r: { acked: boolean; deliveries: { outcome: string }[]; reply?: { content?: string }; problem?: string }) =>
    console.log(`${label}: ${r.deliveries.map((d) => d.outcome).join(', ')}${r.reply?.content !== undefined ? ` — passive reply: ${r.reply.content}` : ''}${r.problem ? ` — ${r.problem}` : ''}`);

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    void (async () => {
      const [cmd = '', ...rest] = line.trim().split(' ');
      const text = rest.join(' ');
      if (cmd === 'app') show('app callback', await api.memberSends(user, text));
      else if (cmd === 'kf') show('kf notice', (await api.customerSends(openKfid, customer, text)).callback ?? { acked: false, deliveries: [] });
      else if (cmd === 'bot' || cmd === 'group') {
        if (!bot) return console.log('set WECOM_SIM_BOT_URL');
        const c = await bot.send(user, text, cmd === 'group' ? { chatid: 'wrSimGroup01' } : {});
        console.log(`bot ${c.msgid.slice(0, 6)}: ${c.state}${c.problems.length ? ` (${c.problems.join('; ')})` : ''}`);
      } else if (cmd === '!verify') {
        const r = text === 'bot' ? await bot?.verifyUrl() : await api.verifyUrl();
        console.log(r ? `URL verification: ${r.ok ? 'ok' : `failed: ${r.problem}`}` : 'set WECOM_SIM_BOT_URL');
      } else if (cmd === '!enter') {
        const r = await api.customerEnters(openKfid, customer);
        console.log(`enter_session${r.welcomeCode ? ` with welcome_code ${r.welcomeCode}` : ''}`);
      } else if (cmd === '!human') api.setServiceState(openKfid, customer, text === 'on' ? 3 : 1, 'servicer01');
      else if (cmd === '!expire') api.expireToken();
      else if (cmd) console.log('unknown command');
    })().catch((err: unknown) => console.log((err as Error).message));
  });
});

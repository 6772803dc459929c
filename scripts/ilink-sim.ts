/**
 * `npm run ilink-sim`: a standalone iLink simulator (docs/ilink.md), to run the personal-WeChat channel
 * offline. Every QR code the bot fetches is scanned and confirmed ILINK_SIM_CONFIRM_MS (default 3000)
 * later by ILINK_SIM_USER; each line typed here is a message from that user, and what the bot sends is
 * printed. `!expire` ends the session (-14), `!drop on|off` switches risk control's silent drop.
 * Listens on ILINK_SIM_PORT (default 8794), the redirect host on the port after it (0: any free ports). The banner prints
 * the variables that point `npm run ilink -- login` and the server at it (README "Personal WeChat (iLink)").
 */
import { createInterface } from 'readline';
import { startIlinkSim } from '../lib/sim/ilink-sim';
import { runSim, simPort } from './sim-cli';

const port = simPort('ilink-sim', 'ILINK_SIM_PORT', 1);
const altPort = port === 0 ? 0 : port + 1;

runSim(
  'ilink-sim',
  [
    { port, variable: 'ILINK_SIM_PORT' },
    { port: altPort, variable: 'ILINK_SIM_PORT', what: 'the redirect host, always ILINK_SIM_PORT + 1' },
  ],
  async () => {
    const user = process.env['ILINK_SIM_USER'] ?? 'o9cq80owner@im.wechat';
    const confirmMs = Number(process.env['ILINK_SIM_CONFIRM_MS'] ?? 3000);
    const sim = await startIlinkSim({
      port,
      altPort,
      onQrCode: (qr) => {
        console.log(`QR code issued: ${qr.imgContent}`);
        setTimeout(() => {
          try {
            sim.scan({ user, qrcode: qr.qrcode });
            const done = sim.confirm({ qrcode: qr.qrcode });
            console.log(`${user} scanned and confirmed: bot ${done.account?.botId}`);
          } catch (err) {
            console.log(`QR code not confirmed: ${(err as Error).message}`);
          }
        }, confirmMs);
      },
      onSend: (m) => {
        const body = m.text || m.media.map((x) => `[${x.type}${x.fileName ? ` ${x.fileName}` : ''}${x.grey ? ', grey' : ''}]`).join(' ') || JSON.stringify(m.items);
        console.log(`${m.delivered ? 'bot →' : 'bot (dropped) →'} ${m.to}: ${body}${m.truncatedFrom ? ` (cut from ${m.truncatedFrom} characters)` : ''}`);
      },
    });
    console.log(`iLink simulator on ${sim.url} (CDN ${sim.cdnUrl}, redirect host ${sim.altHost}). Type a line to send it as ${user}.`);
    console.log(`Set ILINK=on ILINK_API_BASE=${sim.url} ILINK_CDN_BASE=${sim.cdnUrl} for npm run ilink -- login and npm start; each QR code is confirmed ${confirmMs / 1000} s after it is fetched.`);
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      try {
        if (line === '!expire') sim.expireSession();
        else if (line === '!drop on' || line === '!drop off') sim.settings.silentDrop = line === '!drop on';
        else if (line.trim()) sim.sendText(user, line);
      } catch (err) {
        console.log((err as Error).message);
      }
    });
  },
);

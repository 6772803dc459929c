/**
 * `npm run ilink-sim`: a standalone iLink simulator (docs/ilink.md), to run the personal-WeChat channel
 * offline. Every QR code the bot fetches is scanned and confirmed ILINK_SIM_CONFIRM_MS (default 3000)
 * later by ILINK_SIM_USER; each line typed here is a message from that user, and what the bot sends is
 * printed. `!expire` ends the session (-14), `!drop on|off` switches risk control's silent drop.
 * Listens on ILINK_SIM_PORT (default 8791), the redirect host on the port after it.
 */
import { createInterface } from 'readline';
import { startIlinkSim } from '../lib/sim/ilink-sim';

async function main(): Promise<void> {
  const port = Number(process.env['ILINK_SIM_PORT'] ?? 8791);
  const user = process.env['ILINK_SIM_USER'] ?? 'o9cq80owner@im.wechat';
  const confirmMs = Number(process.env['ILINK_SIM_CONFIRM_MS'] ?? 3000);
  const sim = await startIlinkSim({
    port,
    altPort: port + 1,
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
}

void main();

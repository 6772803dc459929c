/** Peer: `wechat` (node-webot), the most used Node WeChat middleware, on Express 4. Replies /help. */
import express from 'express';
import type { AddressInfo } from 'net';
import wechat from 'wechat';
import { DEFAULT_TEXTS } from '../../lib/core/texts';

const app = express();
app.use('/wechat', wechat(process.env['WECHAT_TOKEN'] ?? 'benchtoken', (req: { weixin: { Content?: string } }, res: { reply(text: string): void }) => {
  res.reply(req.weixin.Content === '/help' ? DEFAULT_TEXTS.help : 'ok');
}));
const server = app.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/wechat` })));

/** Peer: `co-wechat` (node-webot) on Koa 2. Replies /help. */
import Koa from 'koa';
import type { AddressInfo } from 'net';
import wechat from 'co-wechat';
import { DEFAULT_TEXTS } from '../../lib/core/texts';

const app = new Koa();
app.use(wechat({ token: process.env['WECHAT_TOKEN'] ?? 'benchtoken', appid: 'wxbench' }).middleware(async (message: { Content?: string }) => (message.Content === '/help' ? DEFAULT_TEXTS.help : 'ok')));
const server = app.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/wechat` })));

/**
 * Peer: a WeChat handler shaped like a laf cloud function, run the way laf runs one (docs/laf.md):
 * Express 4.18.2 with laf's body parsers (json, urlencoded, raw, express-xml-bodyparser 0.3.0),
 * a `ctx` built per request, the function's return value sent with `res.send`. The function is
 * the usual laf template: sha1 over the sorted token, timestamp and nonce, fields read from the
 * parsed body, a reply built with a template string.
 */
import { createHash } from 'crypto';
import express from 'express';
import type { Request, Response } from 'express';
import type { AddressInfo } from 'net';
import xmlparser from 'express-xml-bodyparser';
import { DEFAULT_TEXTS } from '../../lib/core/texts';

const TOKEN = process.env['WECHAT_TOKEN'] ?? 'benchtoken';

interface Ctx {
  query: Record<string, unknown>;
  body: { xml?: Record<string, string[]> };
  headers: Request['headers'];
  method: string;
  response: Response;
}

async function main(ctx: Ctx): Promise<unknown> {
  const { signature, timestamp, nonce, echostr } = ctx.query as Record<string, string>;
  const sha1 = createHash('sha1').update([TOKEN, timestamp, nonce].sort().join('')).digest('hex');
  if (sha1 !== signature) return 'Invalid signature';
  if (ctx.method === 'GET') return echostr;
  const msg = ctx.body.xml ?? {};
  const from = msg['fromusername']?.[0] ?? '';
  const to = msg['tousername']?.[0] ?? '';
  const content = msg['content']?.[0] === '/help' ? DEFAULT_TEXTS.help : 'ok';
  ctx.response.setHeader('Content-Type', 'application/xml');
  return `<xml><ToUserName><![CDATA[${from}]]></ToUserName><FromUserName><![CDATA[${to}]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content></xml>`;
}

const app = express();
app.use(express.json({ limit: '10mb' }));
app.use(express.urlencoded({ extended: true, limit: '10mb' }));
app.use(express.raw({ limit: '10mb' }));
app.use(xmlparser());
app.all('/wechat', (req, res) => {
  const ctx: Ctx = { query: req.query as Record<string, unknown>, body: req.body as Ctx['body'], headers: req.headers, method: req.method, response: res };
  main(ctx).then(
    (result) => {
      if (!res.writableEnded) res.send(result);
    },
    () => res.status(500).send('Internal Server Error'),
  );
});
const server = app.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/wechat` })));

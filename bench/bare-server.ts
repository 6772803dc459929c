/** The ceiling: a bare node:http server answering every request with a fixed XML reply. */
import { createServer } from 'http';
import type { AddressInfo } from 'net';

const REPLY =
  '<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_bench]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[fixed reply]]></Content></xml>';

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(REPLY) });
    res.end(REPLY);
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/wechat` })));

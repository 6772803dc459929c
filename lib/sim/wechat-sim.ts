/**
 * A WeChat server simulator acting as the client of our webhook, with WeChat's semantics
 * (docs/wechat.md): it signs every request, waits `timeoutMs` (5 s) for each delivery,
 * re-delivers the same message (same MsgId) up to `deliveries` times, and reports what the user
 * would see: the reply text, nothing (`success`/empty), or the error notice. Replies are checked
 * the way WeChat is reported to check them (well-formed XML, addressed correctly, ≤ 2048 bytes).
 */
import { randomBytes } from 'crypto';
import { request } from 'http';
import { aesKeyFrom, decryptMessage, encryptMessage } from '../channels/wxbiz/crypto';
import { cdata } from '../channels/wechat-oa/reply';
import { msgSignature, sha1Signature } from '../channels/wxbiz/signature';
import { parseXmlFields } from '../channels/wechat-oa/xml';

export const ERROR_NOTICE = '该公众号暂时无法提供服务，请稍后再试';

/** What one delivery got back. */
export interface DeliveryResult {
  n: number;
  startedAt: number;
  ms: number;
  outcome: 'reply' | 'success' | 'timeout' | 'bad-reply' | 'http-error';
  status?: number;
  detail?: string;
}

/** What the user sees for one message. */
export interface SendResult {
  /** The reply text shown in the chat, or null when nothing is shown. */
  text: string | null;
  /** WeChat showed its error notice (no valid reply in any delivery). */
  notice: boolean;
  deliveries: DeliveryResult[];
  msgId: string;
}

export interface WechatSimOptions {
  /** The webhook URL, e.g. http://127.0.0.1:3000/wechat; several: deliveries go round-robin (instances behind a balancer). */
  url: string | string[];
  token: string;
  /** The account's original id. */
  account?: string;
  timeoutMs?: number;
  deliveries?: number;
  /** Safe mode: encrypt pushes and decrypt replies. */
  aes?: { encodingAesKey: string; appId: string };
  /** Send the plaintext fields beside Encrypt (compatible mode). */
  compatible?: boolean;
  /** Byte limit WeChat is reported to enforce on reply Content. */
  maxContentBytes?: number;
}

export type Push =
  | { type: 'text'; content: string }
  | { type: 'voice'; recognition?: string; mediaId?: string }
  | { type: 'image'; mediaId?: string; picUrl?: string }
  | { type: 'event'; event: string; eventKey?: string };

let msgCounter = 0n;
/** 64-bit MsgIds beyond 2^53, as real ones are (docs/wechat.md). */
function nextMsgId(): string {
  msgCounter += 1n;
  return (6054768590064713728n + BigInt(Date.now()) * 1000n + msgCounter).toString();
}

function pushXml(user: string, account: string, createTime: number, msgId: string, p: Push): string {
  const head = `<ToUserName>${cdata(account)}</ToUserName>\n<FromUserName>${cdata(user)}</FromUserName>\n<CreateTime>${createTime}</CreateTime>\n`;
  switch (p.type) {
    case 'text':
      return `<xml>${head}<MsgType><![CDATA[text]]></MsgType>\n<Content>${cdata(p.content)}</Content>\n<MsgId>${msgId}</MsgId>\n</xml>`;
    case 'voice':
      return (
        `<xml>${head}<MsgType><![CDATA[voice]]></MsgType>\n<MediaId>${cdata(p.mediaId ?? `media_${msgId}`)}</MediaId>\n<Format><![CDATA[amr]]></Format>\n` +
        (p.recognition === undefined ? '' : `<Recognition>${cdata(p.recognition)}</Recognition>\n`) +
        `<MsgId>${msgId}</MsgId>\n</xml>`
      );
    case 'image':
      return `<xml>${head}<MsgType><![CDATA[image]]></MsgType>\n<PicUrl>${cdata(p.picUrl ?? 'http://example.com/p.jpg')}</PicUrl>\n<MediaId>${cdata(p.mediaId ?? `m${msgId}`)}</MediaId>\n<MsgId>${msgId}</MsgId>\n</xml>`;
    case 'event':
      return (
        `<xml>${head}<MsgType><![CDATA[event]]></MsgType>\n<Event>${cdata(p.event)}</Event>\n` +
        (p.eventKey === undefined ? '' : `<EventKey>${cdata(p.eventKey)}</EventKey>\n`) +
        '</xml>'
      );
  }
}

/**
 * One delivery. WeChat's 5 s count from when it sends, so the timer starts once the connection is
 * open (a simulator that starts thousands of requests at once would otherwise charge its own queueing
 * to the server). `sentAt` is that moment.
 */
function post(url: string, body: string, timeoutMs: number): Promise<{ status: number; body: string; sentAt: number } | { timeout: true; sentAt: number }> {
  return new Promise((resolve) => {
    let sentAt = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const req = request(url, { method: 'POST', headers: { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8'), sentAt });
      });
      res.on('error', () => resolve({ timeout: true, sentAt }));
    });
    // WeChat gives up on a delivery after its timeout, whatever the server is doing.
    const start = () => {
      sentAt = Date.now();
      timer = setTimeout(() => {
        req.destroy();
        resolve({ timeout: true, sentAt });
      }, timeoutMs);
    };
    req.on('socket', (socket) => {
      if (socket.connecting) socket.once('connect', start);
      else start();
    });
    req.on('error', () => {
      clearTimeout(timer);
      resolve({ timeout: true, sentAt });
    });
    req.end(body);
  });
}

export class WechatSim {
  readonly account: string;
  private readonly timeoutMs: number;
  private readonly deliveries: number;
  private readonly maxContentBytes: number;
  private readonly aesKey: Buffer | undefined;

  constructor(private readonly opts: WechatSimOptions) {
    this.account = opts.account ?? 'gh_sim_account';
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.deliveries = opts.deliveries ?? 3;
    this.maxContentBytes = opts.maxContentBytes ?? 2048;
    this.aesKey = opts.aes ? aesKeyFrom(opts.aes.encodingAesKey) : undefined;
  }

  private urlFor(delivery: number): string {
    const urls = Array.isArray(this.opts.url) ? this.opts.url : [this.opts.url];
    return urls[(delivery - 1) % urls.length] as string;
  }

  /** The signed query for a request at `timestamp` (seconds). */
  signedQuery(timestamp: string, nonce: string, encrypt?: string): string {
    const q = new URLSearchParams({ signature: sha1Signature([this.opts.token, timestamp, nonce]), timestamp, nonce });
    if (encrypt !== undefined) {
      q.set('encrypt_type', 'aes');
      q.set('msg_signature', msgSignature(this.opts.token, timestamp, nonce, encrypt));
    }
    return q.toString();
  }

  /** The URL verification handshake; resolves to the response body. */
  async handshake(echostr = '4375120948345356249'): Promise<{ status: number; body: string }> {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const q = this.signedQuery(timestamp, String(Math.floor(Math.random() * 1e9))) + `&echostr=${encodeURIComponent(echostr)}`;
    return new Promise((resolve, reject) => {
      request(`${this.urlFor(1)}?${q}`, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
      })
        .on('error', reject)
        .end();
    });
  }

  /** Send one user message or event and follow WeChat's delivery rules. */
  async send(user: string, push: Push | string): Promise<SendResult> {
    const p: Push = typeof push === 'string' ? { type: 'text', content: push } : push;
    const createTime = Math.floor(Date.now() / 1000);
    const msgId = p.type === 'event' ? '' : nextMsgId();
    const inner = pushXml(user, this.account, createTime, msgId, p);
    const results: DeliveryResult[] = [];
    for (let n = 1; n <= this.deliveries; n++) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = String(Math.floor(Math.random() * 1e9));
      let body = inner;
      let query: string;
      if (this.aesKey && this.opts.aes) {
        const encrypt = encryptMessage(this.aesKey, inner, this.opts.aes.appId);
        const extra = this.opts.compatible ? inner.replace(/^<xml>|<\/xml>$/g, '') : `<ToUserName>${cdata(this.account)}</ToUserName>`;
        body = `<xml>${extra}<Encrypt>${cdata(encrypt)}</Encrypt></xml>`;
        query = this.signedQuery(timestamp, nonce, encrypt);
      } else {
        query = this.signedQuery(timestamp, nonce);
      }
      const res = await post(`${this.urlFor(n)}?${query}`, body, this.timeoutMs);
      const ms = Date.now() - res.sentAt;
      const sent = res.sentAt;
      if ('timeout' in res) {
        results.push({ n, startedAt: sent, ms, outcome: 'timeout' });
        continue;
      }
      if (res.status !== 200) {
        results.push({ n, startedAt: sent, ms, outcome: 'http-error', status: res.status, detail: res.body.slice(0, 200) });
        return { text: ERROR_NOTICE, notice: true, deliveries: results, msgId };
      }
      if (res.body === '' || res.body === 'success') {
        results.push({ n, startedAt: sent, ms, outcome: 'success', status: 200 });
        return { text: null, notice: false, deliveries: results, msgId };
      }
      const checked = this.readReply(res.body, user, nonce);
      if (typeof checked !== 'string') {
        results.push({ n, startedAt: sent, ms, outcome: 'bad-reply', status: 200, detail: checked.problem });
        return { text: ERROR_NOTICE, notice: true, deliveries: results, msgId };
      }
      results.push({ n, startedAt: sent, ms, outcome: 'reply', status: 200 });
      return { text: checked, notice: false, deliveries: results, msgId };
    }
    return { text: ERROR_NOTICE, notice: true, deliveries: results, msgId };
  }

  /** Validate a reply like WeChat would and return its Content. */
  private readReply(body: string, user: string, nonce: string): string | { problem: string } {
    let fields: Record<string, string>;
    try {
      fields = parseXmlFields(body, 1024 * 1024);
      if (this.aesKey && this.opts.aes && fields['Encrypt'] !== undefined) {
        const sig = msgSignature(this.opts.token, fields['TimeStamp'] ?? '', fields['Nonce'] ?? '', fields['Encrypt']);
        if (sig !== fields['MsgSignature']) return { problem: 'reply MsgSignature does not match' };
        if (fields['Nonce'] !== nonce) return { problem: 'reply Nonce differs' };
        fields = parseXmlFields(decryptMessage(this.aesKey, fields['Encrypt'], this.opts.aes.appId).message, 1024 * 1024);
      } else if (this.aesKey && !this.opts.compatible) {
        return { problem: 'safe mode requires an encrypted reply' };
      }
    } catch (err) {
      return { problem: `invalid reply XML: ${(err as Error).message}` };
    }
    if (fields['ToUserName'] !== user) return { problem: 'reply ToUserName is not the sender' };
    if (fields['FromUserName'] !== this.account) return { problem: 'reply FromUserName is not the account' };
    if (!/^\d{9,10}$/.test(fields['CreateTime'] ?? '')) return { problem: 'reply CreateTime is not Unix seconds' };
    if (fields['MsgType'] !== 'text') return { problem: 'reply MsgType is not text' };
    const content = fields['Content'] ?? '';
    if (Buffer.byteLength(content, 'utf8') > this.maxContentBytes) return { problem: `reply Content over ${this.maxContentBytes} bytes` };
    return content;
  }
}

/** A random OpenID-like user id. */
export function randomOpenId(): string {
  return 'o' + randomBytes(14).toString('base64url');
}

/**
 * What a WeChat message or event means to the bot (docs/wechat.md): messages go to the core as
 * text, voice or picture; the account's own events (subscribe, QR scans, menu clicks, unsubscribe)
 * are answered here from the account's settings.
 */
import type { Bot, Content, Decision } from '../../core/bot';
import type { Channel } from '../../core/channel';
import type { Texts } from '../../core/texts';
import type { Store } from '../../store';
import type { Clock } from '../../util/clock';
import type { WechatOaSettings } from './settings';
import type { InboundMessage } from './xml';

/** What WeChat turns stickers and other unsupported input into (docs/wechat.md): never send it to the model. */
const UNSUPPORTED_PLACEHOLDER = '【收到不支持的消息类型，暂无法显示】';

const SUCCESS: Decision = { success: true };

export interface WechatInboundDeps {
  bot: Pick<Bot, 'receive'>;
  channel: Channel;
  store: Store;
  clock: Clock;
  texts: Texts;
  settings: WechatOaSettings;
  /** The conversation key of an OpenID on this account (lib/core/keys.ts). */
  keyOf(openid: string): string;
}

/** The dedupe key of a message: sender + MsgId; of an event: sender + CreateTime + event + key. */
export function dedupeKey(user: string, msg: InboundMessage): string {
  if ('msgId' in msg && msg.msgId) return `${user}:${msg.msgId}`;
  const event = msg.kind === 'unknown' ? msg.event : msg.kind;
  const eventKey = 'eventKey' in msg ? msg.eventKey : '';
  return `${user}:e${msg.createTime}:${event}:${eventKey}`;
}

/** One delivery of a parsed message. */
export async function onWechatMessage(d: WechatInboundDeps, msg: InboundMessage, arrival: number): Promise<Decision> {
  const user = d.keyOf(msg.fromUser);
  const receive = (content: Content, origin?: { msgType: string; eventKey?: string }) =>
    d.bot.receive({ channel: d.channel, user, key: dedupeKey(user, msg), sentAt: msg.createTime, arrival, msgId: 'msgId' in msg ? msg.msgId : undefined, content, origin });
  const { texts, settings } = d;
  switch (msg.kind) {
    case 'text':
      if (msg.content.trim() === UNSUPPORTED_PLACEHOLDER) return { reply: texts.unsupported };
      return receive({ type: 'text', text: msg.content });
    case 'voice':
      return receive({ type: 'voice', transcript: msg.recognition || undefined, media: msg.mediaId ? { id: msg.mediaId, format: msg.format } : undefined });
    case 'image':
      return receive({ type: 'image', image: { picUrl: msg.picUrl, mediaId: msg.mediaId } });
    case 'video':
    case 'shortvideo':
    case 'location':
    case 'link':
      return { reply: texts.unsupported };
    case 'subscribe': {
      if (!msg.eventKey.startsWith('qrscene_')) return { reply: texts.welcome };
      const scene = msg.eventKey.slice('qrscene_'.length);
      await d.store.noteScene(user, scene, d.clock.now());
      return { reply: settings.scenes[scene] ?? settings.scenes['*'] ?? texts.welcome };
    }
    case 'scan': {
      await d.store.noteScene(user, msg.eventKey, d.clock.now());
      const text = settings.scenes[msg.eventKey] ?? settings.scenes['*'];
      return text ? { reply: text } : SUCCESS;
    }
    case 'unsubscribe':
      await d.store.forgetUser(user, msg.createTime, d.clock.now());
      return SUCCESS;
    case 'click': {
      const action = settings.menu[msg.eventKey];
      if (!action) return SUCCESS;
      if ('ask' in action) return receive({ type: 'ask', text: action.ask }, { msgType: 'event', eventKey: msg.eventKey });
      return receive({ type: 'command', name: action.command });
    }
    case 'view':
      return SUCCESS;
    case 'unknown':
      // An unknown message type gets a polite text; unknown events (LOCATION, …) need no answer.
      return msg.msgType === 'event' ? SUCCESS : { reply: texts.unsupported };
  }
}

/**
 * The web chat as a channel (docs/web-chat.md): a visitor of /chat (lib/web/chat/) is a conversation,
 * `web:<visitor id>`, and each message their page sends is keyed by the id the page gave it, so a
 * send the page retries is claimed once. Messages come from the chat page's own endpoints, not a
 * webhook. Answers are `send`, but nothing is sent: the visitor's page reads them from the store,
 * following them while they are written (the answer so far is saved for a reload or another
 * instance: `savesProgress`). An answer counts as delivered when the page has shown it
 * (`Store.takeAll`, by the page's report), so one whose page was closed stays undelivered in the
 * visitor's history and shows on the next visit.
 */
import type { Channel, ChannelDeps, ChannelKind } from '../../core/channel';
import type { Content, Decision } from '../../core/bot';
import { conversationKey } from '../../core/keys';
import type { MessageRecord } from '../../store';
import type { WebChatSettings } from './settings';
import { WEB_VARIABLES, webChatSettings } from './settings';

export const WEB_KIND = 'web';
/** How the console names the delivery of an answer the page showed. */
export const WEB_DELIVERY = 'web';

/** A visitor id: 128 random bits, base64url (lib/web/chat/visitor.ts makes them). */
export const VISITOR_ID = /^[A-Za-z0-9_-]{22}$/;
/** A message id as the page makes it. */
export const MESSAGE_ID = /^[A-Za-z0-9_-]{8,40}$/;

const HELP = '直接输入问题，回答会边写边显示。\n· 点「新对话」（或发送 /clear）开始新的对话，忘记之前的上下文\n· 回答时点「停止」可以中止\n· /help 查看本说明';

export interface WebChannel extends Channel {
  readonly settings: WebChatSettings;
  /** A visitor's conversation key. */
  userKey(visitor: string): string;
  /** The key of a visitor's message, by the id its page gave it. */
  messageKey(visitor: string, messageId: string): string;
  /** One message from a visitor's page, to the core. */
  receive(visitor: string, messageId: string, content: Content, arrival: number): Promise<Decision>;
  /** The page showed a settled answer: it is delivered (once, whoever reports it). */
  shown(q: MessageRecord): Promise<boolean>;
}

export function isWebChannel(c: Channel | undefined): c is WebChannel {
  return c?.kind === WEB_KIND && typeof (c as Partial<WebChannel>).receive === 'function';
}

export function createWebChannel(settings: WebChatSettings, deps: ChannelDeps): WebChannel {
  const { bot, store, clock } = deps;
  const userKey = (visitor: string) => conversationKey(WEB_KIND, deps.instance, [visitor]);
  const messageKey = (visitor: string, messageId: string) => conversationKey(WEB_KIND, deps.instance, [visitor, messageId]);

  const channel: WebChannel = {
    kind: WEB_KIND,
    instance: deps.instance,
    name: deps.name,
    answerer: deps.answerer,
    settings,
    delivery: 'send',
    // The page renders the answer's Markdown itself: one page, the answer as written.
    pages: (answer) => [answer],
    // Nothing to send: the answer waits in the visitor's inbox until their page shows it. It leaves
    // the outbox at once, so the recovery sweep does not come back for it.
    deliver: (key) => store.dropOutbox(key),
    savesProgress: true,
    carries: { images: false, files: false },
    help: HELP,
    userKey,
    messageKey,
    receive(visitor, messageId, content, arrival) {
      const user = userKey(visitor);
      return bot.receive({ channel, user, key: messageKey(visitor, messageId), sentAt: Math.floor(arrival / 1000), arrival, content });
    },
    async shown(q) {
      if (q.status !== 'answered' && q.status !== 'failed') return false;
      return (await store.takeAll(q, WEB_DELIVERY, WEB_DELIVERY, clock.now())) !== null;
    },
  };
  return channel;
}

export const web: ChannelKind<WebChatSettings> = {
  kind: WEB_KIND,
  // Its pages follow answers as they are written (lib/core/follow.ts).
  follows: true,
  variables: WEB_VARIABLES,
  settings: (env, ctx) => webChatSettings(env, ctx),
  secrets: (s) => [s.accessCode],
  create: (s, deps) => createWebChannel(s, deps),
};

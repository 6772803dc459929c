/**
 * Every text a user reads, in one table: defaults in Chinese, any subset overridden with the JSON in
 * `BOT_TEXTS` (README "Texts"). Channels use the same table; the core fills placeholders (lib/text/fill.ts).
 */
import { ConfigError } from '../errors';
import { stringRecord } from './env';

/** All user-facing texts. Defaults are Chinese; override any subset with the JSON in `BOT_TEXTS`. */
export interface Texts {
  welcome: string;
  help: string;
  /** Last delivery and the answer is not ready. {question} {seconds} */
  placeholder: string;
  /** The same, when the answer will be pushed by the customer-service API. {question} {seconds} */
  placeholderPush: string;
  /** `1` while the answer is still being generated. {question} {seconds} */
  stillThinking: string;
  /** `1` with nothing left to send. */
  nothingPending: string;
  /** `1` on a failed answer. {question} {reason} */
  failedAnswer: string;
  /** Appended to every page but the last. {page} {total} */
  pageHint: string;
  /** The line above a reply from `1` when several answers are waiting. {question} */
  answerQuote: string;
  /** After the last page of an answer, when more answers are waiting. {count} */
  moreWaiting: string;
  cleared: string;
  /** A later delivery of a question that `/clear` cancelled while it was being answered. {question} */
  questionCleared: string;
  unsupported: string;
  voiceNoRecognition: string;
  failQuota: string;
  failBusy: string;
  failConfig: string;
  failDown: string;
  failFailed: string;
  /** The link to the live answer page, offered in placeholders. */
  pageLinkLive: string;
  /** The link to the whole answer, offered on the first page of a multi-page answer. */
  pageLinkFull: string;
  /** The link to the answer's page where its pictures and files are, on the first page of an answer that has some. */
  pageLinkParts: string;
  /** `1` after the answer was read to the end on its page. {question} */
  readOnPage: string;
  /** The answer page while the answer is being written. {seconds} */
  pageThinking: string;
  /** The answer page for an unknown, expired or revoked link. */
  pageGone: string;
  /** After an answer the model stopped at its token limit. */
  answerCut: string;
  /** After an answer the model's content filter cut short. */
  answerFiltered: string;
  /** The reply to a picture: it is kept for the next question. {seconds} */
  imageReceived: string;
  /** Above an answer given without the user's picture. {reason} */
  imageIgnored: string;
  /** A question about a picture the bot cannot use; the model is not asked. {reason} */
  imageUnusable: string;
  /** Why a picture could not be used. */
  imageNoVision: string;
  imageTooLarge: string;
  imageExpired: string;
  /** Above the answer to a voice message WeChat did not transcribe: what was heard. {text} */
  voiceHeard: string;
  /** Over RATE_LIMIT. {when} */
  rateLimited: string;
  /** Over DAILY_QUESTION_BUDGET. {when} */
  budgetExhausted: string;
  /** A user not in ALLOWED_USERS, or in BLOCKED_USERS. */
  notAllowed: string;
  /** A question containing a BLOCKED_WORDS word: the model is not asked. */
  inputBlocked: string;
  /** Replaces an answer containing a BLOCKED_WORDS word. */
  answerBlocked: string;
  /** The line above the sources list (CITATIONS=on). */
  sourcesTitle: string;
  /** `/help` on LINE and Discord (no `1` there: answers arrive by themselves). */
  channelHelp: string;
  /** LINE: other kinds of messages (stickers, pictures, …). */
  channelUnsupported: string;
  /** Discord: the answer took longer than the interaction token lives (15 minutes). */
  channelTooSlow: string;
}

export const DEFAULT_TEXTS: Texts = {
  welcome: '感谢关注！我是 AI 助手，直接发消息向我提问即可。\n发送 /help 查看用法。',
  help:
    '直接发送文字向我提问。\n' +
    '· 回答较长或还没生成完时，回复 1 获取后续内容\n' +
    '· 发送 /clear 开始新的对话（忘记之前的上下文）\n' +
    '· 发送 /help 查看本说明',
  placeholder: '「{question}」\n正在思考中（已 {seconds} 秒），请稍后回复 1 获取回答。',
  placeholderPush: '「{question}」\n正在思考中（已 {seconds} 秒），回答生成后会自动发给你。',
  stillThinking: '「{question}」\n还在思考中（已 {seconds} 秒），请稍后再回复 1。',
  nothingPending: '没有待发送的内容了，直接发消息即可提问。',
  failedAnswer: '「{question}」\n{reason}',
  pageHint: '({page}/{total}) 回复 1 查看后续',
  answerQuote: '「{question}」',
  moreWaiting: '还有 {count} 条回答，回复 1 继续',
  cleared: '已清除对话记录，我们重新开始吧。',
  questionCleared: '「{question}」\n这个问题已随 /clear 清除，不再回答。需要的话请重新提问。',
  unsupported: '暂时只支持文字消息哦，请用文字提问。',
  voiceNoRecognition: '暂时没能识别这条语音，请用文字提问。（管理员可在公众号后台开启「接收语音识别结果」。）',
  failQuota: '抱歉，AI 服务的额度已用完，请联系公众号管理员。',
  failBusy: '抱歉，AI 服务正忙，请稍后重新提问。',
  failConfig: '抱歉，AI 服务配置有误，请联系公众号管理员。',
  failDown: '抱歉，暂时连不上 AI 服务，请稍后重新提问。',
  failFailed: '抱歉，这次回答生成失败了，请重新提问。',
  pageLinkLive: '点此查看实时回答',
  pageLinkFull: '查看全文',
  pageLinkParts: '查看图片和文件',
  readOnPage: '「{question}」的回答你已在网页中看完了，没有待发送的内容。',
  pageThinking: '正在思考（已 {seconds} 秒）…',
  pageGone: '这个链接不存在或已失效。',
  answerCut: '（回答太长，已被截断。可以让我接着说。）',
  answerFiltered: '（部分内容被模型的安全策略过滤了。）',
  imageReceived: '收到图片了。想问关于这张图片的什么？请在 {seconds} 秒内发文字提问。',
  imageIgnored: '（{reason}，下面只回答了文字部分。）',
  imageUnusable: '{reason}，请用文字描述你的问题。',
  imageNoVision: '这个 AI 看不了图片',
  imageTooLarge: '图片太大了，没能发给 AI',
  imageExpired: '没能取到这张图片（可能已过期）',
  voiceHeard: '🎤「{text}」',
  rateLimited: '提问太频繁了，请在 {when} 之后再问。',
  budgetExhausted: '今天的提问名额已经用完了，请在 {when} 之后再来。',
  notAllowed: '抱歉，这个助手暂不对你开放。',
  inputBlocked: '抱歉，这个问题无法回答。',
  answerBlocked: '抱歉，这个回答包含不适宜的内容，已被拦截。',
  sourcesTitle: '参考资料：',
  channelHelp: '直接发消息向我提问，回答写好后会自动发给你。\n· /clear 开始新的对话（忘记之前的上下文）\n· /help 查看本说明',
  channelUnsupported: '暂时只支持文字消息，请用文字提问。',
  channelTooSlow: '抱歉，这次回答太久了，没能及时送达。请重新提问。',
};

/** BOT_TEXTS: known keys only, merged over the defaults. */
export function parseTexts(v: unknown): Texts {
  const rec = stringRecord('BOT_TEXTS', v);
  for (const k of Object.keys(rec)) {
    if (!(k in DEFAULT_TEXTS)) {
      throw new ConfigError('BOT_TEXTS', `unknown text "${k}"; known: ${Object.keys(DEFAULT_TEXTS).join(', ')}`);
    }
  }
  return { ...DEFAULT_TEXTS, ...rec };
}

/**
 * The delivery timing, deterministically: the real Bot, worker and store on an injected manual
 * clock at WeChat's real timings (5 s per delivery, 4.5 s deadline, 3 deliveries), with a scripted
 * implementation of the Dify port that answers exactly when the test says. Each decision is
 * checked at the millisecond it is made.
 */
import { describe, expect, it } from 'vitest';
import { createApp } from '../../lib/app';
import type { Decision } from '../../lib/core/bot';
import type { Channel } from '../../lib/core/channel';
import { onWechatMessage } from '../../lib/channels/wechat-oa/inbound';
import { loadConfig } from '../../lib/config';
import { wechatSettings } from '../support/harness';
import type { Answer, AnswerRequest, Answerer, ChatHooks } from '../../lib/core/answerer';
import { memoryLogger } from '../../lib/util/log';
import { Store } from '../../lib/store';
import { nedbBackend } from '../../lib/store/nedb';
import type { Backend, Collection } from '../../lib/store/collection';
import type { InboundMessage } from '../../lib/channels/wechat-oa/xml';
import { ManualClock } from '../support/manual-clock';

/** The answerer port, answering each question when the test calls `answer`. */
class ScriptedDify implements Answerer {
  readonly kind = 'dify';
  readonly keepsConversation = true;
  readonly asked: string[] = [];
  private readonly pending = new Map<string, { resolve: (a: Answer) => void }>();
  chat(req: AnswerRequest, hooks: ChatHooks = {}): Promise<Answer> {
    this.asked.push(req.query);
    return new Promise((resolve, reject) => {
      this.pending.set(req.query, { resolve });
      hooks.stop?.onStop(() => reject(new Error('stopped')));
    });
  }
  answer(query: string, text: string): void {
    this.pending.get(query)?.resolve({ text, conversationId: '', messageId: '', usage: undefined });
    this.pending.delete(query);
  }
  async deleteConversation(): Promise<void> {}
  async probe(): Promise<string> {
    return 'scripted';
  }
  readonly transcribes = false;
  async imageInput(): Promise<'none'> {
    return 'none';
  }
  async transcribe(): Promise<string> {
    throw new Error('no transcription here');
  }
  async setupProblems(): Promise<string[]> {
    return [];
  }
}

/**
 * One set of in-memory collections behind any number of Store objects, reported as `kind`:
 * `mongodb` is what two processes on one MongoDB see (a change made through one Store is not
 * announced to the other). `reads` counts the lookups of one message by its key.
 */
function backendOf(kind: Backend['kind']): Backend & { reads: number } {
  const inner = nedbBackend({ inMemory: true });
  const open = new Map<string, Promise<unknown>>();
  const backend = {
    kind,
    reads: 0,
    collection<T extends { _id: string }>(name: string, indexes: Parameters<Backend['collection']>[1]) {
      if (!open.has(name)) {
        open.set(
          name,
          inner.collection<T>(name, indexes).then((c): Collection<T> => ({
            ...c,
            findOne: (filter) => {
              if (name === 'messages' && Object.keys(filter).join() === '_id') backend.reads++;
              return c.findOne(filter);
            },
          })),
        );
      }
      return open.get(name) as Promise<Collection<T>>;
    },
    close: async () => undefined,
  };
  return backend;
}

async function setup(env: Record<string, string> = {}, backend: Backend = nedbBackend({ inMemory: true })) {
  const clock = new ManualClock();
  const start = clock.now();
  const config = loadConfig({ WECHAT_TOKEN: 'lifecycle1', DIFY_API_KEY: 'app-lifecycle-0001', ...env });
  const store = await Store.open(backend);
  const logger = memoryLogger({ secrets: [] });
  const dify = new ScriptedDify();
  const app = createApp(config, { store, clock, logger, answerer: dify });
  const { bot } = app;
  const channel = app.channels.forKey('oLife') as Channel;
  const inbound = { bot, channel, store, clock, texts: config.texts, settings: wechatSettings(config), keyOf: (openid: string) => openid };
  let msgId = 1000n;
  /** One delivery arriving now; resolves to the decision and the (virtual) ms it was made at. */
  const deliver = (m: InboundMessage) => {
    const p = onWechatMessage(inbound, m, clock.now()).then((d) => ({ d, at: clock.now() - start }));
    let done: { d: Decision; at: number } | undefined;
    void p.then((r) => (done = r));
    return { p, done: () => done };
  };
  const text = (content: string, id = String(msgId++)): InboundMessage => ({ kind: 'text', toUser: 'gh_x', fromUser: 'oLife', createTime: Math.floor(clock.now() / 1000), msgId: id, content });
  return { clock, start, config, store, backend, dify, bot, deliver, text, at: (ms: number) => clock.to(ms, start) };
}

describe('delivery timing on a manual clock, at WeChat’s real timings', () => {
  it('an answer ready at 1.2 s is the reply of the first delivery, at 1.2 s exactly', async () => {
    const t = await setup();
    const q = t.text('快');
    const d1 = t.deliver(q);
    await t.at(1200);
    t.dify.answer('快', '快的回答');
    await t.at(1200);
    expect(await d1.p).toEqual({ d: { reply: '快的回答', giveBack: expect.any(Function) }, at: 1200 });
  });

  it('not ready: the first delivery is dropped after WeChat’s 5 s plus a grace second; the second gets the answer the moment it lands', async () => {
    const t = await setup();
    const q = t.text('七秒');
    const d1 = t.deliver(q);
    await t.at(5000);
    const d2 = t.deliver(q); // WeChat gives up on the first at 5 s and delivers again
    await t.at(5999);
    expect(d1.done()).toBeUndefined();
    await t.at(6000);
    expect(d1.done()).toEqual({ d: { drop: true }, at: 6000 });
    await t.at(7000);
    t.dify.answer('七秒', '七秒后的回答');
    await t.at(7000);
    expect(d2.done()).toEqual({ d: { reply: '七秒后的回答', giveBack: expect.any(Function) }, at: 7000 });
    expect(t.dify.asked).toEqual(['七秒']);
  });

  it('the last delivery answers with the placeholder at its 4.5 s deadline; `1` then gets the answer when it lands', async () => {
    const t = await setup();
    const q = t.text('二十秒');
    t.deliver(q);
    await t.at(5000);
    t.deliver(q);
    await t.at(10_000);
    const d3 = t.deliver(q);
    await t.at(14_499);
    expect(d3.done()).toBeUndefined();
    await t.at(14_500);
    expect(d3.done()).toEqual({ d: { reply: '「二十秒」\n正在思考中（已 15 秒），请稍后回复 1 获取回答。' }, at: 14_500 });
    await t.at(20_000);
    const one = t.deliver(t.text('1'));
    await t.at(21_000);
    t.dify.answer('二十秒', '终于好了');
    await t.at(21_000);
    expect(one.done()).toEqual({ d: { reply: '终于好了', giveBack: expect.any(Function) }, at: 21_000 });
    expect(t.dify.asked).toEqual(['二十秒']);
  });

  it('on a store other processes share, an answer settled by another instance is seen within the polling back-off (150 ms doubling to 600 ms)', async () => {
    const t = await setup({}, backendOf('mongodb'));
    const other = await Store.open(t.backend);
    const q = t.text('别处');
    const d1 = t.deliver(q);
    await t.at(2000);
    // Another instance's worker saves the answer: no news of it reaches this process.
    const key = `oLife:${(q as { msgId: string }).msgId}`;
    await other.settle(key, 1, { status: 'answered', answer: '别处的回答', pages: ['别处的回答'] }, t.clock.now());
    await t.at(2000);
    expect(d1.done()).toBeUndefined();
    await t.at(2600);
    const r = d1.done();
    expect(r?.d).toEqual({ reply: '别处的回答', giveBack: expect.any(Function) });
    expect(r?.at).toBeGreaterThan(2000);
    expect(r?.at).toBeLessThanOrEqual(2600);
  });

  it('alone on its store, a delivery hears a settle at once and polls only every 2 s', async () => {
    const backend = backendOf('embedded');
    const t = await setup({}, backend);
    const q = t.text('这里');
    const d1 = t.deliver(q);
    await t.at(3900);
    // Looked at on arrival and at 2 s only: nothing else can change it unannounced.
    expect(backend.reads).toBe(2);
    const key = `oLife:${(q as { msgId: string }).msgId}`;
    await t.store.settle(key, 1, { status: 'answered', answer: '这里的回答', pages: ['这里的回答'] }, t.clock.now());
    await t.at(3900);
    expect(d1.done()).toEqual({ d: { reply: '这里的回答', giveBack: expect.any(Function) }, at: 3900 });
  });

  it('with PLACEHOLDER_MODE=first the first delivery gets the placeholder at its deadline', async () => {
    const t = await setup({ PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '1500' });
    const d1 = t.deliver(t.text('慢'));
    await t.at(1500);
    expect(d1.done()).toEqual({ d: { reply: '「慢」\n正在思考中（已 2 秒），请稍后回复 1 获取回答。' }, at: 1500 });
  });

  it('/clear wakes a waiting delivery at once, which says the question was cleared', async () => {
    const t = await setup();
    const q = t.text('清掉');
    const d1 = t.deliver(q);
    await t.at(800);
    const c = t.deliver(t.text('/clear'));
    await t.at(800);
    expect(c.done()?.d).toEqual({ reply: t.config.texts.cleared });
    expect(d1.done()).toEqual({ d: { reply: '「清掉」\n这个问题已随 /clear 清除，不再回答。需要的话请重新提问。' }, at: 800 });
  });
});

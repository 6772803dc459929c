/** Commands (a table), menu keys, events and unsupported input, end to end. */
import { afterEach, describe, expect, it } from 'vitest';
import { COMMANDS, normalizeCommand } from '../../lib/core/bot';
import { eventually, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';

let h: Harness;
afterEach(async () => h?.close());

describe('command table', () => {
  it('holds 1, /clear and /help and matches them loosely', () => {
    expect(Object.keys(COMMANDS).sort()).toEqual(['/clear', '/help', '1']);
    expect(normalizeCommand(' ／CLEAR ')).toBe('/clear');
    expect(normalizeCommand('１')).toBe('1');
    expect(normalizeCommand('/Help\n')).toBe('/help');
  });
});

describe('/help and /clear', () => {
  it('/help explains without calling Dify', async () => {
    h = await startHarness();
    expect((await h.wechat.send('oHelp', '/help')).text).toBe(h.config.texts.help);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('/clear forgets the conversation here and at Dify, and the next question starts a new one', async () => {
    h = await startHarness();
    await h.wechat.send('oClr', 'one');
    const conv = (await h.app.store.user('oClr'))?.conversationId;
    expect(conv).toBeTruthy();
    expect((await h.wechat.send('oClr', '/clear')).text).toBe(h.config.texts.cleared);
    await eventually(() => h.dify.deletes.length === 1);
    expect(h.dify.deletes[0]).toEqual({ conversationId: conv, user: 'oClr' });
    await h.wechat.send('oClr', 'two');
    expect(h.dify.calls[1]?.body.conversation_id).toBe('');
  });

  it('/clear drops undelivered pages', async () => {
    const long = Array.from({ length: 10 }, () => '内容'.repeat(300)).join('\n\n');
    h = await startHarness({ dify: { script: () => ({ kind: 'answer', text: long, pieceChars: 200 }) } });
    expect((await h.wechat.send('oDrop', 'long')).text).toMatch(/\(1\/\d+\)/);
    await h.wechat.send('oDrop', '/clear');
    expect((await h.wechat.send('oDrop', '1')).text).toBe(h.config.texts.nothingPending);
  });

  it('/clear while an answer is pending: the late answer does not restore the old conversation', async () => {
    h = await startHarness({ dify: { script: (b) => (b.query === 'slow' ? { kind: 'answer', text: 'late', durationMs: 1500 } : { kind: 'answer', text: 'ok' }) } });
    await h.wechat.send('oRace', 'first');
    const pending = h.wechat.send('oRace', 'slow');
    await new Promise((r) => setTimeout(r, 200));
    await h.wechat.send('oRace', '/clear');
    await pending;
    await h.app.worker.idle();
    expect((await h.app.store.user('oRace'))?.conversationId).toBeUndefined();
  });
});

describe('events and other message types', () => {
  const menu = JSON.stringify({ HELP: '/help', MORE: '1', RESET: '/clear', PRICE: { ask: '你们的价格是多少？' } });

  it('subscribe gets the welcome text; a QR scene and SCAN get their own', async () => {
    h = await startHarness({ env: { SCENE_REPLIES: JSON.stringify({ '123': '欢迎从 123 来', '*': '欢迎扫码' }) } });
    expect((await h.wechat.send('oSub', { type: 'event', event: 'subscribe' })).text).toBe(h.config.texts.welcome);
    expect((await h.wechat.send('oSub', { type: 'event', event: 'subscribe', eventKey: 'qrscene_123' })).text).toBe('欢迎从 123 来');
    expect((await h.wechat.send('oSub', { type: 'event', event: 'subscribe', eventKey: 'qrscene_999' })).text).toBe('欢迎扫码');
    expect((await h.wechat.send('oSub', { type: 'event', event: 'SCAN', eventKey: '123' })).text).toBe('欢迎从 123 来');
  });

  it('SCAN without a configured reply and VIEW get success (nothing shown)', async () => {
    h = await startHarness();
    for (const p of [{ type: 'event', event: 'SCAN', eventKey: '1' }, { type: 'event', event: 'VIEW', eventKey: 'https://x' }, { type: 'event', event: 'LOCATION' }] as const) {
      const r = await h.wechat.send('oEv', p);
      expect(r).toMatchObject({ text: null, notice: false });
    }
  });

  it('unsubscribe gets success and deletes the user’s data', async () => {
    h = await startHarness();
    const r = await h.wechat.send('oBye', 'hello');
    expect(await h.app.store.message(`oBye:${r.msgId}`)).not.toBeNull();
    expect((await h.wechat.send('oBye', { type: 'event', event: 'unsubscribe' })).text).toBeNull();
    expect(await h.app.store.message(`oBye:${r.msgId}`)).toBeNull();
    expect(await h.app.store.user('oBye')).toBeNull();
  });

  it('a user who unsubscribes while an answer is generated leaves nothing behind when it finishes', async () => {
    h = await startHarness({ dify: { script: () => ({ kind: 'answer', text: 'late', durationMs: 1500 }) } });
    const asked = h.wechat.send('oLeave', 'question');
    await eventually(() => h.dify.calls.length === 1);
    await h.wechat.send('oLeave', { type: 'event', event: 'unsubscribe' });
    await asked;
    await h.app.worker.idle();
    expect(await h.app.store.user('oLeave')).toBeNull();
    expect((await h.app.store.snapshot()).messages.filter((r) => r.user === 'oLeave')).toEqual([]);
  });

  it('menu CLICK keys map to commands and to fixed questions; unknown keys get success', async () => {
    h = await startHarness({ env: { MENU_KEYS: menu } });
    expect((await h.wechat.send('oMenu', { type: 'event', event: 'CLICK', eventKey: 'HELP' })).text).toBe(h.config.texts.help);
    expect((await h.wechat.send('oMenu', { type: 'event', event: 'CLICK', eventKey: 'PRICE' })).text).toBe('你说的是：你们的价格是多少？');
    expect(h.dify.calls[0]?.body.query).toBe('你们的价格是多少？');
    expect((await h.wechat.send('oMenu', { type: 'event', event: 'CLICK', eventKey: 'MORE' })).text).toBe(h.config.texts.nothingPending);
    expect((await h.wechat.send('oMenu', { type: 'event', event: 'CLICK', eventKey: 'RESET' })).text).toBe(h.config.texts.cleared);
    expect((await h.wechat.send('oMenu', { type: 'event', event: 'CLICK', eventKey: 'NOPE' })).text).toBeNull();
  });

  it('a menu question is deduplicated on sender + CreateTime like a message on MsgId', async () => {
    h = await startHarness({ env: { MENU_KEYS: menu }, dify: { script: () => ({ kind: 'answer', text: 'slow', durationMs: 1400 }) } });
    const r = await h.wechat.send('oMenuDup', { type: 'event', event: 'CLICK', eventKey: 'PRICE' });
    expect(r.deliveries.length).toBe(2);
    expect(h.dify.calls).toHaveLength(1);
  });

  it('voice with Recognition is a question; without it, a hint to type', async () => {
    h = await startHarness();
    expect((await h.wechat.send('oVoice', { type: 'voice', recognition: '今天天气怎么样' })).text).toBe('你说的是：今天天气怎么样');
    expect((await h.wechat.send('oVoice', { type: 'voice' })).text).toBe(h.config.texts.voiceNoRecognition);
    expect((await h.wechat.send('oVoice', { type: 'voice', recognition: '' })).text).toBe(h.config.texts.voiceNoRecognition);
  });

  it('a picture is kept for the next question; stickers get the polite "not supported" text; neither reaches Dify', async () => {
    h = await startHarness();
    expect((await h.wechat.send('oImg', { type: 'image' })).text).toBe('收到图片了。想问关于这张图片的什么？请在 180 秒内发文字提问。');
    expect((await h.wechat.send('oImg', '【收到不支持的消息类型，暂无法显示】')).text).toBe(h.config.texts.unsupported);
    expect((await h.wechat.send('oImg', '   ')).text).toBe(h.config.texts.help);
    expect(h.dify.calls).toHaveLength(0);
  });

  it('every text is configurable', async () => {
    h = await startHarness({ env: { BOT_TEXTS: JSON.stringify({ help: 'HELP!', welcome: 'Hi there' }) } });
    expect((await h.wechat.send('oTxt', '/help')).text).toBe('HELP!');
    expect((await h.wechat.send('oTxt', { type: 'event', event: 'subscribe' })).text).toBe('Hi there');
  });
});

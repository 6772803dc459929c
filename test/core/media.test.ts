/**
 * Pictures and voice at the HTTP boundary: the WeChat API simulator serves media downloads, the
 * Dify and OpenAI-compatible simulators take files, images and audio as their APIs do. A picture
 * waits for the next question; a voice WeChat did not transcribe is transcribed once per MsgId;
 * a picture or voice that cannot be used ends in a clear text, and nothing is lost.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_PARAMETERS } from '../../lib/sim/dify-sim';
import { startWechatApiSim } from '../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../lib/sim/wechat-api-sim';
import { TOKEN, eventually, startHarness } from '../support/harness';
import type { Harness, HarnessOptions } from '../support/harness';
import { deliver } from '../support/wire';

let h: Harness;
let api: WechatApiSim | undefined;
afterEach(async () => {
  await h?.close();
  await api?.close();
  api = undefined;
});

const APP_ID = 'wx00000000media01';
const APP_SECRET = 'media-app-secret-000000000001';
/** A JPEG's first bytes and some more: what WeChat's media/get would return for a picture. */
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 7)]);
const AMR = Buffer.concat([Buffer.from('#!AMR\n'), Buffer.alloc(1500, 3)]);
const VISION = { ...DEFAULT_PARAMETERS, file_upload: { image: { enabled: true, number_limits: 3, detail: 'high', transfer_methods: ['remote_url', 'local_file'] } } };
const MEDIA = {
  pic1: { bytes: JPEG, contentType: 'image/jpeg' },
  empty: { bytes: Buffer.alloc(0), contentType: 'image/jpeg' },
  huge: { bytes: Buffer.alloc(300 * 1024, 1), contentType: 'image/jpeg' },
  voice1: { bytes: AMR, contentType: 'audio/amr' },
};

async function withApi(opts: HarnessOptions, env: Record<string, string> = {}): Promise<void> {
  api = await startWechatApiSim({ appId: APP_ID, appSecret: APP_SECRET, media: MEDIA });
  h = await startHarness({ ...opts, env: { WECHAT_APPID: APP_ID, WECHAT_APPSECRET: APP_SECRET, WECHAT_API_BASE: api.url, MEDIA_MAX_BYTES: String(200 * 1024), ...env, ...opts.env } });
}

const echo = { script: (b: { query?: unknown }) => ({ kind: 'answer' as const, text: `答：${String(b.query)}` }) };

describe('pictures with Dify', () => {
  it('without the app secret, sends the PicUrl (remote_url) with the next question, once', async () => {
    h = await startHarness({ dify: { ...echo, parameters: VISION } });
    expect((await h.wechat.send('oPic1', { type: 'image', picUrl: 'http://mmbiz.qpic.cn/abc.jpg' })).text).toContain('想问关于这张图片的什么');
    expect(h.dify.calls).toHaveLength(0);
    expect((await h.wechat.send('oPic1', '图里是什么')).text).toBe('答：图里是什么');
    expect(h.dify.calls[0]?.body.files).toEqual([{ type: 'image', transfer_method: 'remote_url', url: 'http://mmbiz.qpic.cn/abc.jpg' }]);
    // The picture belonged to that question: the next one goes without it.
    await h.wechat.send('oPic1', '再问一个');
    expect(h.dify.calls[1]?.body.files).toBeUndefined();
  });

  it('with the app secret, downloads the picture and uploads it to Dify (local_file)', async () => {
    await withApi({ dify: { ...echo, parameters: VISION } });
    await h.wechat.send('oPic2', { type: 'image', mediaId: 'pic1' });
    expect((await h.wechat.send('oPic2', '这张图片拍的是哪里')).text).toBe('答：这张图片拍的是哪里');
    expect(api?.mediaGets).toEqual(['pic1']);
    expect(h.dify.uploads).toHaveLength(1);
    expect(h.dify.uploads[0]?.bytes.equals(JPEG)).toBe(true);
    expect(h.dify.uploads[0]?.user).toBe('oPic2');
    expect(h.dify.calls[0]?.body.files).toEqual([{ type: 'image', transfer_method: 'local_file', upload_file_id: h.dify.uploads[0]?.id }]);
  });

  it('IMAGE_PROMPT asks about a picture at once', async () => {
    h = await startHarness({ dify: { ...echo, parameters: VISION }, env: { IMAGE_PROMPT: '描述这张图片' } });
    expect((await h.wechat.send('oPic3', { type: 'image' })).text).toBe('答：描述这张图片');
    expect(h.dify.calls[0]?.body.files).toHaveLength(1);
  });

  it('an app without vision: a question about the picture is not asked; one that makes sense alone is, and says so', async () => {
    h = await startHarness({ dify: echo });
    await h.wechat.send('oPic4', { type: 'image' });
    expect((await h.wechat.send('oPic4', '这张图里是什么？')).text).toBe('这个 AI 看不了图片，请用文字描述你的问题。');
    expect(h.dify.calls).toHaveLength(0);
    await h.wechat.send('oPic4', { type: 'image' });
    expect((await h.wechat.send('oPic4', '讲个笑话')).text).toBe('（这个 AI 看不了图片，下面只回答了文字部分。）\n\n答：讲个笑话');
    expect(h.dify.calls[0]?.body.files).toBeUndefined();
  });

  it('an expired (40007), empty or oversized picture ends in a clear text', async () => {
    await withApi({ dify: { ...echo, parameters: VISION } });
    await h.wechat.send('oPic5', { type: 'image', mediaId: 'gone' });
    expect((await h.wechat.send('oPic5', '图片里写了什么')).text).toBe('没能取到这张图片（可能已过期），请用文字描述你的问题。');
    await h.wechat.send('oPic5', { type: 'image', mediaId: 'empty' });
    expect((await h.wechat.send('oPic5', '图片里写了什么')).text).toBe('没能取到这张图片（可能已过期），请用文字描述你的问题。');
    await h.wechat.send('oPic5', { type: 'image', mediaId: 'huge' });
    expect((await h.wechat.send('oPic5', '图片里写了什么')).text).toBe('图片太大了，没能发给 AI，请用文字描述你的问题。');
    await h.wechat.send('oPic5', { type: 'image', mediaId: 'huge' });
    expect((await h.wechat.send('oPic5', '今天天气如何')).text).toBe('（图片太大了，没能发给 AI，下面只回答了文字部分。）\n\n答：今天天气如何');
    expect(h.dify.calls).toHaveLength(1);
    expect(h.dify.uploads).toHaveLength(0);
  });

  it('a picture older than IMAGE_WINDOW_S is not used', async () => {
    h = await startHarness({ dify: { ...echo, parameters: VISION }, env: { IMAGE_WINDOW_S: '10' } });
    const old = Math.floor(Date.now() / 1000) - 30;
    const xml = `<xml><ToUserName><![CDATA[gh_w]]></ToUserName><FromUserName><![CDATA[oPic6]]></FromUserName><CreateTime>${old}</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://example.com/old.jpg]]></PicUrl><MediaId><![CDATA[old]]></MediaId><MsgId>5500000000000000001</MsgId></xml>`;
    expect((await deliver(h.url, TOKEN, xml)).body).toContain('想问关于这张图片的什么');
    await h.wechat.send('oPic6', '随便问问');
    expect(h.dify.calls[0]?.body.files).toBeUndefined();
  });
});

describe('pictures with an OpenAI-compatible model', () => {
  it('goes as an image_url part: a data URL of the download, or the PicUrl without the app secret', async () => {
    await withApi({ openai: { vision: true, script: () => ({ kind: 'answer', text: '看到了' }) } }, { OPENAI_VISION: 'on' });
    await h.wechat.send('oVis1', { type: 'image', mediaId: 'pic1' });
    expect((await h.wechat.send('oVis1', '图里有什么')).text).toBe('看到了');
    const content = h.openai?.calls[0]?.body.messages?.at(-1)?.content;
    expect(content).toEqual([{ type: 'text', text: '图里有什么' }, { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${JPEG.toString('base64')}` } }]);
  });

  it('without OPENAI_VISION the model never gets a picture', async () => {
    h = await startHarness({ openai: { script: () => ({ kind: 'answer', text: '只有文字' }) } });
    await h.wechat.send('oVis2', { type: 'image' });
    expect((await h.wechat.send('oVis2', '这张照片好看吗')).text).toBe('这个 AI 看不了图片，请用文字描述你的问题。');
    expect(h.openai?.calls).toHaveLength(0);
  });
});

describe('voice without WeChat’s recognition', () => {
  it('is downloaded and transcribed by Dify once per MsgId, asked, and the answer quotes what was heard', async () => {
    await withApi({ dify: { script: (b) => ({ kind: 'answer', text: `答：${String(b.query)}`, durationMs: 1300 }), transcribe: () => '明天会下雨吗' } });
    // The answer takes two deliveries: WeChat re-delivers the voice, which is not transcribed again.
    const r = await h.wechat.send('oVoice1', { type: 'voice', recognition: '', mediaId: 'voice1' });
    expect(r.deliveries.length).toBeGreaterThan(1);
    expect(r.text).toBe('🎤「明天会下雨吗」\n\n答：明天会下雨吗');
    expect(h.dify.audio).toHaveLength(1);
    expect(h.dify.audio[0]?.bytes.equals(AMR)).toBe(true);
    expect(h.dify.audio[0]?.filename).toBe('voice.amr');
    expect(h.dify.calls).toHaveLength(1);
    const rec = (await h.app.store.snapshot()).messages.find((m) => m.user === 'oVoice1' && m.kind === 'question');
    expect(rec?.question).toBe('明天会下雨吗');
  });

  it('a transcription error, a media error (40007) and no app secret each end in the "please type" text', async () => {
    await withApi({ dify: { ...echo, transcribe: () => ({ status: 400, code: 'provider_not_support_speech_to_text', message: 'no' }) } });
    const please = h.config.texts.voiceNoRecognition;
    expect((await h.wechat.send('oVoice2', { type: 'voice', recognition: '', mediaId: 'voice1' })).text).toBe(please);
    expect((await h.wechat.send('oVoice2', { type: 'voice', recognition: '', mediaId: 'expired' })).text).toBe(please);
    expect(h.dify.calls).toHaveLength(0);
    await h.close();
    await api?.close();
    api = undefined;
    h = await startHarness({ dify: echo });
    expect((await h.wechat.send('oVoice3', { type: 'voice', recognition: '' })).text).toBe(h.config.texts.voiceNoRecognition);
    expect(h.dify.audio).toHaveLength(0);
  });

  it('is transcribed by an OpenAI-compatible server with OPENAI_TRANSCRIBE_MODEL', async () => {
    await withApi({ openai: { transcribe: (f) => (f.model === 'whisper-1' && f.filename === 'voice.amr' ? '你好' : '?'), script: (b) => ({ kind: 'answer', text: `回：${String(b.messages?.at(-1)?.content)}` }) } }, { OPENAI_TRANSCRIBE_MODEL: 'whisper-1' });
    expect((await h.wechat.send('oVoice4', { type: 'voice', recognition: '', mediaId: 'voice1' })).text).toBe('🎤「你好」\n\n回：你好');
    await eventually(() => h.openai?.transcriptions.length === 1);
  });
});

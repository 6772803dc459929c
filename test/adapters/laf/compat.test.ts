/**
 * laf compatibility: the sources `npm run build:laf` writes, transpiled by TypeScript 4.9.5 with laf's
 * options and run in laf's sandbox (test/support/laf-runtime.ts), driven with contexts shaped exactly
 * like laf's. The store is laf's: `cloud.mongo.db`, here a stand-in with driver 5.9's result shapes
 * (test/support/driver5-db.ts), since no MongoDB server can run here.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { builtinModules } from 'module';
import { join } from 'path';
import { fileURLToPath } from 'url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLaf } from '../../../scripts/build-laf';
import type { BuiltFunction } from '../../../scripts/build-laf';
import { startDifySim } from '../../../lib/sim/dify-sim';
import { startOpenAISim } from '../../../lib/sim/openai-sim';
import type { DifySim } from '../../../lib/sim/dify-sim';
import { sha1Signature } from '../../../lib/channels/wxbiz/signature';
import { parseXmlFields } from '../../../lib/channels/wechat-oa/xml';
import { loadConfig } from '../../../lib/config';
import { driver5Db } from '../../support/driver5-db';
import { DIFY_KEY, TIMINGS, TOKEN, eventually } from '../../support/harness';
import { invokeLaf, lafDependencies, lafTranspile, loadLafFunction, serveLafOverExpress, ts49SyntaxErrors, xmlBodyParser } from '../../support/laf-runtime';
import { openSse } from '../../../lib/sim/sse-client';
import { LOGIN_FAILURES_ALLOWED } from '../../../lib/web/console/handler';
import { call } from '../../support/wire';
import { startLineSim } from '../../../lib/sim/line-sim';
import { startDiscordSim } from '../../../lib/sim/discord-sim';
import { startWecomBotSim } from '../../../lib/sim/wecom-bot-sim';
import { startWecomSim } from '../../../lib/sim/wecom-sim';
import OpenAI from 'openai';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const mongo = driver5Db();
const cloud = { __esModule: true, default: { mongo: { db: mongo.db } } };
const builtins = { '@lafjs/cloud': cloud };

let out: string;
let built: BuiltFunction[];
let dify: DifySim;
const savedEnv = { ...process.env };

const LONG = Array.from({ length: 8 }, (_, i) => `第${i + 1}段：` + '这是一段很长的回答。'.repeat(30)).join('\n\n');

beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), 'wdb-laf-'));
  built = await buildLaf(out);
  dify = await startDifySim({
    apiKey: DIFY_KEY,
    script: (b) => {
      if (b.query === '长') return { kind: 'answer', text: LONG, pieceChars: 100 };
      if (b.query === '慢') return { kind: 'answer', text: '慢的回答', durationMs: 1500 };
      if (b.query === '页面') return { kind: 'answer', text: '## 标题\n\n' + '网页里的回答，'.repeat(30), durationMs: 3000, pieceChars: 4 };
      return { kind: 'answer', text: `laf:${String(b.query)}` };
    },
  });
  Object.assign(process.env, { WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, LOG_LEVEL: 'error', ...TIMINGS });
});

afterAll(async () => {
  process.env = savedEnv;
  await dify?.close();
  rmSync(out, { recursive: true, force: true });
});

const source = (name: string) => readFileSync(join(out, 'functions', `${name}.ts`), 'utf8');
/** What the functions wrote to laf's function log. */
const lafLog: string[] = [];
const lafConsole = { log: (...a: unknown[]) => lafLog.push(a.join(' ')), info: (...a: unknown[]) => lafLog.push(a.join(' ')), warn: (...a: unknown[]) => lafLog.push(a.join(' ')), error: (...a: unknown[]) => lafLog.push(a.join(' ')), debug: () => undefined };
const load = (name: string, required?: Set<string>) =>
  loadLafFunction(source(name), name, { builtins, dependencies: lafDependencies(), console: lafConsole, ...(required ? { required } : {}) });

function signedQuery(): Record<string, string> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(Math.floor(Math.random() * 1e9));
  return { signature: sha1Signature([TOKEN, timestamp, nonce]), timestamp, nonce };
}

let msgId = 9_000_000_000_000_000_000n;
function textXml(user: string, content: string, id = (msgId++).toString()): string {
  return `<xml><ToUserName><![CDATA[gh_laf]]></ToUserName>\n<FromUserName><![CDATA[${user}]]></FromUserName>\n<CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[${content}]]></Content>\n<MsgId>${id}</MsgId>\n</xml>`;
}

/**
 * One message as WeChat sends it: a delivery dropped on purpose (not ready within the deadline, or
 * a loaded machine) is delivered again, the same XML, up to three times.
 */
async function deliverLaf(mod: Record<string, unknown>, xml: string) {
  let r = await invokeLaf(mod, { method: 'POST', query: signedQuery(), rawXml: xml });
  for (let n = 2; n <= 3 && r.destroyed; n++) r = await invokeLaf(mod, { method: 'POST', query: signedQuery(), rawXml: xml });
  return r;
}

describe('the build', () => {
  it('writes every function with its yaml, and laf.yaml, under laf’s size limit', () => {
    // laf names a function by its path: the API's functions live in the folders of their names.
    const names = ['__init__', 'admin', 'answer', 'api/v1/chat', 'api/v1/conversations', 'api/v1/openapi.json', 'chat', 'discord', 'line', 'v1/chat/completions', 'v1/models', 'wechat', 'wecom', 'wecom-bot', 'wecom-kf'];
    expect(built.map((f) => f.name).sort()).toEqual(names);
    expect((readdirSync(join(out, 'functions'), { recursive: true, encoding: 'utf8' }) as string[]).filter((f) => /\.(ts|yaml)$/.test(f)).sort()).toEqual(names.flatMap((n) => [`${n}.ts`, `${n}.yaml`]).sort());
    for (const n of names) expect(readFileSync(join(out, 'functions', `${n}.yaml`), 'utf8')).toContain(`name: ${n}\n`);
    expect(readFileSync(join(out, 'laf.yaml'), 'utf8')).toBe(readFileSync(join(ROOT, 'laf.yaml'), 'utf8'));
    expect(readFileSync(join(out, 'functions', 'wechat.yaml'), 'utf8')).toMatch(/methods:\n\s+- GET\n\s+- POST/);
    for (const f of built) expect(f.bytes).toBeLessThan(512 * 1024);
  });

  it('laf.yaml lists exactly the npm packages the deployed code requires, at the installed versions', () => {
    const deps = lafDependencies();
    const required = new Set<string>();
    for (const f of built) for (const m of source(f.name).matchAll(/require\("([^"]+)"\)/g)) required.add(m[1] as string);
    const npm = [...required].filter((r) => r !== '@lafjs/cloud' && !builtinModules.includes(r));
    expect(npm.sort()).toEqual(Object.keys(deps).sort());
    for (const [name, version] of Object.entries(deps)) {
      expect(JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version).toBe(version);
    }
  });
});

describe('the README’s laf steps', () => {
  it('name the same dependencies and function files as the build', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    for (const [name, version] of Object.entries(lafDependencies())) expect(readme).toContain(`\`${name}@${version}\``);
    for (const f of built) expect(readme).toContain(`dist/laf/functions/${f.name}.ts`);
    expect(readme).toContain('https://<appid>.laf.run/wechat');
  });
});

describe('the wechat function on laf', () => {
  let wechat: Record<string, unknown>;
  const required = new Set<string>();
  beforeAll(() => {
    wechat = load('wechat', required);
  });

  it('answers the echostr handshake as text/plain', async () => {
    const r = await invokeLaf(wechat, { method: 'GET', query: { ...signedQuery(), echostr: '4375120948345356249' } });
    expect(r).toMatchObject({ status: 200, body: '4375120948345356249' });
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    const bad = await invokeLaf(wechat, { method: 'GET', query: { signature: 'x', timestamp: '1', nonce: '1', echostr: 'x' } });
    expect(bad.status).toBe(401);
  });

  it('answers a text question from Dify, as XML', async () => {
    const r = await deliverLaf(wechat, textXml('oLaf1', '你好'));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/xml/);
    expect(parseXmlFields(r.body, 1 << 20)).toMatchObject({ ToUserName: 'oLaf1', FromUserName: 'gh_laf', Content: 'laf:你好' });
  });

  it('sends user text with runs of spaces and newlines to Dify unchanged (laf’s parsed body folds them)', async () => {
    const text = '第一行  两个空格\n\n\n第四行\t  结尾  ';
    const xml = textXml('oLafSpace', text);
    const folded = (await xmlBodyParser(xml)) as { xml: { content: string[] } };
    expect(folded.xml.content[0]).not.toBe(text); // what laf's body parser would have given us
    await deliverLaf(wechat, xml);
    expect(dify.calls.at(-1)?.body.query).toBe(text);
  });

  it('pages a long answer and `1` returns the next page', async () => {
    const first = await deliverLaf(wechat, textXml('oLafLong', '长'));
    expect(parseXmlFields(first.body, 1 << 20)['Content']).toMatch(/\(1\/\d\) 回复 1 查看后续$/);
    const next = await deliverLaf(wechat, textXml('oLafLong', '1'));
    expect(parseXmlFields(next.body, 1 << 20)['Content']).toMatch(/\(2\/\d\) 回复 1 查看后续$/);
  });

  it('/clear forgets the conversation and deletes it at Dify', async () => {
    await deliverLaf(wechat, textXml('oLafClr', 'hi'));
    const r = await deliverLaf(wechat, textXml('oLafClr', '/clear'));
    expect(parseXmlFields(r.body, 1 << 20)['Content']).toBe('已清除对话记录，我们重新开始吧。');
    await eventually(() => dify.deletes.some((d) => d.user === 'oLafClr'));
  });

  it('lets a delivery time out (no response at all) while the answer is not ready and WeChat will retry', async () => {
    const xml = textXml('oLafSlow', '慢');
    const first = await invokeLaf(wechat, { method: 'POST', query: signedQuery(), rawXml: xml });
    expect(first.destroyed).toBe(true);
    const second = await invokeLaf(wechat, { method: 'POST', query: signedQuery(), rawXml: xml });
    expect(parseXmlFields(second.body, 1 << 20)['Content']).toBe('慢的回答');
  });

  it('answers `success` as text/plain for events with nothing to say', async () => {
    const xml = `<xml><ToUserName><![CDATA[gh_laf]]></ToUserName><FromUserName><![CDATA[oLafEv]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[VIEW]]></Event><EventKey><![CDATA[https://x]]></EventKey></xml>`;
    const r = await deliverLaf(wechat, xml);
    expect(r).toMatchObject({ status: 200, body: 'success' });
  });

  it('applies a changed setting without a restart (laf updates process.env in place)', async () => {
    const ask = async () => parseXmlFields((await deliverLaf(wechat, textXml('oLafEnv', '/help'))).body, 1 << 20)['Content'];
    expect(await ask()).toMatch(/^直接发送文字向我提问/);
    process.env['BOT_TEXTS'] = JSON.stringify({ help: 'new help text' });
    try {
      expect(await ask()).toBe('new help text');
    } finally {
      delete process.env['BOT_TEXTS'];
    }
  });

  it('a missing setting is a 500 naming the variable, not a crash', async () => {
    const token = process.env['WECHAT_TOKEN'];
    delete process.env['WECHAT_TOKEN'];
    try {
      const r = await invokeLaf(load('wechat'), { method: 'GET', query: signedQuery() });
      expect(r.status).toBe(500);
      expect(r.body).toMatch(/WECHAT_TOKEN/);
      expect(lafLog.some((l) => l.includes('cannot start: configuration') && l.includes('WECHAT_TOKEN'))).toBe(true);
    } finally {
      process.env['WECHAT_TOKEN'] = token;
    }
  });

  it('required only laf built-ins, Node core modules and laf.yaml packages', () => {
    expect([...required].filter((r) => !r.startsWith('@lafjs/') && !builtinModules.includes(r)).sort()).toEqual(
      Object.keys(lafDependencies()).sort(),
    );
  });
});

describe('the __init__ function on laf', () => {
  it('opens the store (creating its indexes) and runs the recovery sweep', async () => {
    const r = await invokeLaf(load('__init__'), { method: 'INIT', query: {} });
    expect(JSON.parse(r.body)).toEqual({ ok: true, recovered: 0 });
    expect([...mongo.collections.keys()].sort()).toEqual(['kv', 'messages', 'stats', 'users']);
  });

  it('answers a call over HTTP with 404 and runs nothing: only laf\'s own start-up call (INIT) sweeps', async () => {
    for (const method of ['POST', 'GET']) {
      const r = await invokeLaf(load('__init__'), { method, query: {} });
      expect(r).toMatchObject({ status: 404, body: 'Function Not Found' });
    }
  });
});

describe('the store on laf', () => {
  it('refuses STORE=embedded with a clear error: each function and publish would open its own copy of the files', async () => {
    process.env['STORE'] = 'embedded';
    try {
      const r = await deliverLaf(load('wechat'), textXml('oLafEmb', '你好'));
      expect(r.status).toBe(500);
      expect(r.body).toMatch(/STORE: embedded is not available on laf/);
      expect(dify.calls.some((c) => c.body.user === 'oLafEmb')).toBe(false);
      const init = await invokeLaf(load('__init__'), { method: 'INIT', query: {} });
      expect(JSON.parse(init.body)).toEqual({ ok: false });
    } finally {
      delete process.env['STORE'];
    }
  });

  it('two functions share answers through MongoDB: a question asked through one is fetched with `1` through the other', async () => {
    const a = load('wechat');
    const b = load('wechat'); // another function context, as after a publish
    const first = await deliverLaf(a, textXml('oLafTwo', '长'));
    expect(parseXmlFields(first.body, 1 << 20)['Content']).toMatch(/\(1\/\d\)/);
    const next = await deliverLaf(b, textXml('oLafTwo', '1'));
    expect(parseXmlFields(next.body, 1 << 20)['Content']).toMatch(/\(2\/\d\)/);
    expect(dify.calls.filter((c) => c.body.user === 'oLafTwo')).toHaveLength(1);
  });
});

describe('an OpenAI-compatible backend on laf', () => {
  it('answers with LLM_PROVIDER=openai, reasoning stripped, history kept in laf’s MongoDB', async () => {
    const sim = await startOpenAISim({ model: 'laf-model', script: (b) => ({ kind: 'answer', text: `laf-openai:${String(b.messages?.at(-1)?.content)}`, reasoning: '想一想', reasoningAs: 'think-tags' }) });
    Object.assign(process.env, { LLM_PROVIDER: 'openai', OPENAI_BASE_URL: sim.url, OPENAI_MODEL: 'laf-model' });
    try {
      const wechat = load('wechat');
      const first = await deliverLaf(wechat, textXml('oLafAI', '你好'));
      expect(parseXmlFields(first.body, 1 << 20)['Content']).toBe('laf-openai:你好');
      await deliverLaf(wechat, textXml('oLafAI', '再问'));
      expect(sim.calls[1]?.body.messages).toEqual([
        { role: 'user', content: '你好' },
        { role: 'assistant', content: 'laf-openai:你好' },
        { role: 'user', content: '再问' },
      ]);
    } finally {
      for (const k of ['LLM_PROVIDER', 'OPENAI_BASE_URL', 'OPENAI_MODEL']) delete process.env[k];
      await sim.close();
    }
  });
});

describe('the answer function on laf', () => {
  it('derives PUBLIC_URL from the runtime, links placeholders to /answer, and streams the page over Express', async () => {
    Object.assign(process.env, { APPID: 'abc123', OSS_EXTERNAL_ENDPOINT: 'https://oss.laf.run', PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' });
    const server = await serveLafOverExpress({ wechat: load('wechat'), answer: load('answer') });
    try {
      const reply = parseXmlFields((await deliverLaf(load('wechat'), textXml('oLafPage', '页面'))).body, 1 << 20)['Content'] ?? '';
      const link = /<a href="([^"]+)">/.exec(reply)?.[1] ?? '';
      expect(link).toMatch(/^https:\/\/abc123\.laf\.run\/answer\?t=[A-Za-z0-9_-]{22}$/);
      const local = link.replace('https://abc123.laf.run', server.url);
      const page = await fetch(local);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      const html = await page.text();
      expect(html).toContain('src="answer?asset=page.js"');
      expect((await fetch(`${server.url}/answer?asset=page.js`)).status).toBe(200);
      // The answer is written by the wechat function: the page follows it through MongoDB.
      const sse = await openSse(`${local}&x=events`);
      expect(sse.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      await sse.until((e) => e.event === 'text' && JSON.parse(e.data).add !== '');
      const final = await sse.until((e) => e.event === 'final', 20_000);
      expect(JSON.parse(final.data).html).toContain('<h2>标题</h2>');
      const state = (await (await fetch(`${local}&x=state`)).json()) as { status: string };
      expect(state.status).toBe('answered');
      expect((await fetch(`${server.url}/answer?t=${'A'.repeat(22)}`)).status).toBe(404);
    } finally {
      await server.close();
      for (const k of ['APPID', 'OSS_EXTERNAL_ENDPOINT', 'PLACEHOLDER_MODE', 'REPLY_DEADLINE_MS']) delete process.env[k];
      Object.assign(process.env, TIMINGS);
    }
  });
});

describe('sealaf (laf inside Sealos: the same runtime image, Node 20.10, driver 5.9)', () => {
  const SEALAF = { IS_SEALAF: 'true', APPID: 'abc1234567', OSS_EXTERNAL_ENDPOINT: 'https://objectstorageapi.bja.sealos.run' };

  it('cannot derive the app’s URL (no variable names its domain): the answer page stays off and says to set PUBLIC_URL', async () => {
    const config = loadConfig({ WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, ...SEALAF }, { platform: 'laf' });
    expect(config.page).toMatchObject({ enabled: false, publicUrl: undefined });
    expect(config.page.warning).toContain('on sealaf set PUBLIC_URL');
    expect(config.page.warning).toContain('.sealosbja.site');
    // Even an endpoint shaped like laf.run's derives nothing once IS_SEALAF says where this runs.
    expect(loadConfig({ WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, ...SEALAF, OSS_EXTERNAL_ENDPOINT: 'https://oss.laf.run' }, { platform: 'laf' }).page.publicUrl).toBeUndefined();
    Object.assign(process.env, SEALAF, { PLACEHOLDER_MODE: 'first', REPLY_DEADLINE_MS: '100' });
    try {
      const off = parseXmlFields((await deliverLaf(load('wechat'), textXml('oSealOff', '慢'))).body, 1 << 20)['Content'] ?? '';
      expect(off).toContain('正在思考');
      expect(off).not.toContain('<a href=');
      process.env['PUBLIC_URL'] = 'https://abc1234567.sealosbja.site';
      const on = parseXmlFields((await deliverLaf(load('wechat'), textXml('oSealOn', '慢'))).body, 1 << 20)['Content'] ?? '';
      expect(/<a href="([^"]+)">/.exec(on)?.[1]).toMatch(/^https:\/\/abc1234567\.sealosbja\.site\/answer\?t=[A-Za-z0-9_-]{22}$/);
    } finally {
      for (const k of [...Object.keys(SEALAF), 'PUBLIC_URL', 'PLACEHOLDER_MODE', 'REPLY_DEADLINE_MS']) delete process.env[k];
      Object.assign(process.env, TIMINGS);
    }
  });

  it('answers WeChat’s URL check through the runtime’s Express response: 200, text/plain, exactly the echostr', async () => {
    const server = await serveLafOverExpress({ wechat: load('wechat') });
    try {
      const res = await fetch(`${server.url}/wechat?${new URLSearchParams({ ...signedQuery(), echostr: '4375120948345356249' }).toString()}`, { headers: { 'User-Agent': 'Mozilla/4.0' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from('4375120948345356249'))).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('reads a push in JSON from the parsed body (laf keeps no raw copy of JSON) and answers in JSON; debug_demo gets success', async () => {
    const wechat = load('wechat');
    const ts = Math.floor(Date.now() / 1000);
    const r = await invokeLaf(wechat, { method: 'POST', query: signedQuery(), json: `{"ToUserName":"gh_laf","FromUserName":"oLafJson","CreateTime":${ts},"MsgType":"text","Content":"你好 JSON","MsgId":${(msgId++).toString()}}` });
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(r.body)).toMatchObject({ ToUserName: 'oLafJson', Content: 'laf:你好 JSON' });
    const demo = await invokeLaf(wechat, { method: 'POST', query: signedQuery(), json: `{"ToUserName":"gh_laf","FromUserName":"oLafDemo","CreateTime":${ts},"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}` });
    expect(demo.body).toBe('success');
  });
});

describe('the line and discord functions on laf', () => {
  it('verify against laf’s parsed JSON body (it keeps no raw copy) and deliver through the store', async () => {
    const line = await startLineSim({ channelSecret: '0123456789abcdef0123456789abcdef', accessToken: 'laf-line-token-0000000000' });
    const discord = await startDiscordSim();
    Object.assign(process.env, {
      LINE_CHANNEL_SECRET: '0123456789abcdef0123456789abcdef',
      LINE_CHANNEL_ACCESS_TOKEN: 'laf-line-token-0000000000',
      LINE_API_BASE: line.url,
      DISCORD_PUBLIC_KEY: discord.publicKeyHex,
      DISCORD_APPLICATION_ID: discord.applicationId,
      DISCORD_API_BASE: discord.url,
    });
    const server = await serveLafOverExpress({ line: load('line'), discord: load('discord') });
    try {
      // LINE writes compact JSON; the text has non-ASCII characters.
      expect((await line.deliver(`${server.url}/line`, [line.text('U00000000000000000000000000000laf', '你好 laf')])).status).toBe(200);
      await eventually(() => line.replies.length === 1, 10_000);
      expect(line.replies[0]?.texts).toEqual(['laf:你好 laf']);
      expect((await line.deliver(`${server.url}/line`, [line.text('U00000000000000000000000000000laf', 'x')], 'AAAA')).status).toBe(401);
      // A Python-style body (", " and ": ", \u escapes) verifies too; a bad signature is 401.
      expect((await discord.send(`${server.url}/discord`, discord.ping(), { style: 'python' })).body).toEqual({ type: 1 });
      expect((await discord.send(`${server.url}/discord`, discord.ask('1150000000000000077', '你好'), { style: 'python' })).body).toEqual({ type: 5 });
      await eventually(() => discord.edits.length === 1, 10_000);
      expect(discord.edits[0]?.content).toBe('laf:你好');
      expect((await discord.send(`${server.url}/discord`, discord.ping(), { badSignature: true })).status).toBe(401);
    } finally {
      await server.close();
      await line.close();
      await discord.close();
      for (const k of ['LINE_CHANNEL_SECRET', 'LINE_CHANNEL_ACCESS_TOKEN', 'LINE_API_BASE', 'DISCORD_PUBLIC_KEY', 'DISCORD_APPLICATION_ID', 'DISCORD_API_BASE']) delete process.env[k];
    }
  });
});

describe('the WeCom functions on laf', () => {
  it('serve the self-built app, customer service and the intelligent bot: XML from its raw body, the bot’s JSON from laf’s parsed body', async () => {
    const CORP = 'ww5a1c9e3b7d20f864';
    const AES = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
    const app = { url: '', token: 'LafWecom1', encodingAesKey: AES };
    const kf = { url: '', token: 'LafWecom1', encodingAesKey: AES };
    const wecom = await startWecomSim({ corpId: CORP, apps: [{ agentId: 1000002, secret: 'laf-app-secret', callback: app }, { agentId: 1000003, secret: 'laf-kf-secret', callback: kf }], kfAgentId: 1000003 });
    const keys = { WECOM_CORP_ID: CORP, WECOM_TOKEN: 'LafWecom1', WECOM_AES_KEY: AES, WECOM_AGENT_ID: '1000002', WECOM_SECRET: 'laf-app-secret', WECOM_KF_SECRET: 'laf-kf-secret', WECOM_API_BASE: wecom.url, WECOM_BOT_TOKEN: 'LafBot1', WECOM_BOT_AES_KEY: AES };
    Object.assign(process.env, keys);
    const server = await serveLafOverExpress({ wecom: load('wecom'), 'wecom-kf': load('wecom-kf'), 'wecom-bot': load('wecom-bot') });
    const bot = await startWecomBotSim({ url: `${server.url}/wecom-bot`, token: 'LafBot1', encodingAesKey: AES, pollIntervalMs: 150 });
    app.url = `${server.url}/wecom`;
    kf.url = `${server.url}/wecom-kf`;
    try {
      expect((await wecom.verifyUrl({ agentId: 1000002 })).ok).toBe(true);
      expect((await wecom.verifyUrl({ agentId: 1000003 })).ok).toBe(true);
      expect((await bot.verifyUrl()).ok).toBe(true);
      expect((await wecom.memberSends('lafmember', '你好 laf')).acked).toBe(true);
      await eventually(() => wecom.sentTo('lafmember').length === 1, 10_000);
      expect(wecom.sentTo('lafmember')[0]?.content).toBe('laf:你好 laf');
      await wecom.customerSends('wkSimKf0000000001', 'wmLaf', '客服 laf');
      await eventually(() => wecom.kfSentTo('wkSimKf0000000001', 'wmLaf').length === 1, 10_000);
      expect(wecom.kfSentTo('wkSimKf0000000001', 'wmLaf')[0]?.content).toBe('laf:客服 laf');
      const conv = await bot.send('lafmember', '机器人 laf');
      expect(conv.problems).toEqual([]);
      expect(conv.state).toBe('finished');
      expect(conv.shown).toBe('laf:机器人 laf');
      expect((await bot.verifyUrl({ badSignature: true })).status).toBe(401);
    } finally {
      await bot.close();
      await server.close();
      await wecom.close();
      for (const k of Object.keys(keys)) delete process.env[k];
    }
  });
});

describe('the API functions on laf', () => {
  it('serve the OpenAI-compatible endpoint and the HTTP API through laf’s routing by function name, parsed JSON bodies and all', async () => {
    const key = 'laf-api-key-0123456789abcdefgh';
    Object.assign(process.env, { API_KEYS: `laf:${key}` });
    const names = ['v1/chat/completions', 'v1/models', 'api/v1/chat', 'api/v1/conversations', 'api/v1/openapi.json'];
    const server = await serveLafOverExpress(Object.fromEntries(names.map((n) => [n, load(n)])));
    try {
      const client = new OpenAI({ apiKey: key, baseURL: `${server.url}/v1`, maxRetries: 0 });
      expect((await client.models.list()).data.map((m) => m.id)).toEqual(['wechat-dify-bot']);
      const r = await client.chat.completions.create({ model: 'wechat-dify-bot', messages: [{ role: 'user', content: '你好' }], user: 'laf-user' });
      expect(r.choices[0]?.message.content).toBe('laf:你好');
      let text = '';
      for await (const c of await client.chat.completions.create({ model: 'wechat-dify-bot', messages: [{ role: 'user', content: '慢' }], stream: true })) text += c.choices[0]?.delta.content ?? '';
      expect(text).toBe('慢的回答');
      const bad = await new OpenAI({ apiKey: `${key}x`, baseURL: `${server.url}/v1`, maxRetries: 0 }).models.list().catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(OpenAI.AuthenticationError);
      const native = await fetch(`${server.url}/api/v1/chat`, { method: 'POST', body: JSON.stringify({ user: 'laf-native', query: '问' }), headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' } });
      expect(await native.json()).toMatchObject({ answer: 'laf:问', source: 'model' });
      const cleared = await fetch(`${server.url}/api/v1/conversations?user=laf-native`, { method: 'DELETE', headers: { Authorization: `Bearer ${key}` } });
      expect(await cleared.json()).toEqual({ cleared: true, user: 'laf-native' });
      expect((await (await fetch(`${server.url}/api/v1/openapi.json`)).json()) as { openapi: string }).toMatchObject({ openapi: '3.1.0' });
    } finally {
      await server.close();
      delete process.env['API_KEYS'];
    }
  });
});

describe('the admin function on laf', () => {
  it('serves the console at /admin?p=…: login with laf’s parsed form, the plots’ scripts, Try it and its live stream', async () => {
    const ADMIN = 'laf-console-token-0123456789';
    Object.assign(process.env, { ADMIN_TOKEN: ADMIN });
    const server = await serveLafOverExpress({ admin: load('admin') });
    try {
      expect((await fetch(`${server.url}/admin`)).status).toBe(200);
      const login = await fetch(`${server.url}/admin?p=/login`, { method: 'POST', body: `token=${ADMIN}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
      expect(login.status).toBe(303);
      expect(login.headers.get('location')).toBe('/admin');
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
      const html = await (await fetch(`${server.url}/admin`, { headers: { cookie } })).text();
      expect(html).toContain('data-api="/admin?p=%2Fapi%2Fstats&amp;days=14"');
      // uPlot is inlined by the build (laf's require has no resolve), and served with our script.
      for (const asset of ['/uplot.js', '/uplot.css', '/console.js', '/console.css']) {
        const r = await fetch(`${server.url}/admin?p=${encodeURIComponent(asset)}`);
        expect(r.status, asset).toBe(200);
      }
      expect(html).toContain('src="/admin?p=%2Fuplot.js"');
      const stats = (await (await fetch(`${server.url}/admin?p=%2Fapi%2Fstats&days=14`, { headers: { cookie } })).json()) as { days: unknown[] };
      expect(Array.isArray(stats.days)).toBe(true);
      const tryPage = await (await fetch(`${server.url}/admin?p=/try`, { headers: { cookie } })).text();
      const csrf = /data-csrf="([0-9a-f]{64})"/.exec(tryPage)?.[1] as string;
      const ask = await fetch(`${server.url}/admin?p=/api/try`, { method: 'POST', body: `text=${encodeURIComponent('页面')}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', cookie, 'X-CSRF-Token': csrf } });
      expect(ask.status).toBe(200);
      const asked = (await ask.json()) as { reply: string; follow?: string };
      expect(asked.follow).toMatch(/^\/admin\?p=%2Fapi%2Ffollow&r=/);
      const sse = await openSse(`${server.url}${asked.follow as string}`, { cookie });
      const final = await sse.until((e) => e.event === 'final', 20_000);
      expect(JSON.parse(final.data).html).toContain('<h2>标题</h2>');
      // A path that is not ours is an unknown page, not a file.
      expect((await fetch(`${server.url}/admin?p=..%2F..%2Fetc%2Fpasswd`, { headers: { cookie } })).status).toBe(404);
    } finally {
      await server.close();
      delete process.env['ADMIN_TOKEN'];
    }
  });
});

describe('the admin function on laf: the checks page', () => {
  it('runs npm run doctor’s checks on laf’s MongoDB (driver 5.9 shapes) and removes its temporary collection', async () => {
    const ADMIN = 'laf-console-token-doctor-0123456789';
    Object.assign(process.env, { ADMIN_TOKEN: ADMIN });
    const server = await serveLafOverExpress({ admin: load('admin') });
    try {
      const login = await fetch(`${server.url}/admin?p=/login`, { method: 'POST', body: `token=${ADMIN}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
      const health = await (await fetch(`${server.url}/admin?p=/health`, { headers: { cookie } })).text();
      expect(health).toContain('href="/admin?p=%2Fdoctor"');
      const page = await (await fetch(`${server.url}/admin?p=/doctor`, { headers: { cookie } })).text();
      for (const name of ['create', 'unique key refused', 'find-and-update result', '\\$push with \\$slice', 'sparse index', 'TTL index', 'conformance pass']) {
        expect(page).toMatch(new RegExp(`<th>MongoDB: ${name}</th><td class="ok">✓`));
      }
      expect([...mongo.collections.keys()].filter((n) => n.startsWith('wdb_doctor_'))).toEqual([]);
    } finally {
      await server.close();
      delete process.env['ADMIN_TOKEN'];
    }
  });
});

describe('the chat function on laf', () => {
  it('serves the web chat at /chat?p=…: the page and its renderer (built in), a question through laf’s parsed JSON body, its live stream, the history', async () => {
    Object.assign(process.env, { WEB_CHAT: 'on' });
    const server = await serveLafOverExpress({ chat: load('chat') });
    try {
      const page = await fetch(`${server.url}/chat`);
      expect(page.status).toBe(200);
      const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] as string;
      expect(cookie).toMatch(/^wdb_chat=/);
      const html = await page.text();
      const csrf = /data-csrf="([^"]+)"/.exec(html)?.[1] as string;
      expect(html).toContain('data-ask="chat?p=/api/ask"');
      const md = /src="(chat\?p=\/assets\/md\.js&amp;v=[0-9a-f]{12})"/.exec(html)?.[1] as string;
      expect(md).toBeDefined();
      // The browser's Markdown renderer comes from the bundle (gzipped in it), not from node_modules.
      const script = await fetch(`${server.url}/${md.replace('&amp;', '&')}`);
      expect(script.status).toBe(200);
      expect(await script.text()).toContain('wdbMarkdown');
      for (const asset of ['/assets/chat.js', '/assets/chat.css', '/widget.js']) expect((await fetch(`${server.url}/chat?p=${asset}`)).status, asset).toBe(200);
      const headers = { cookie, 'Content-Type': 'application/json', 'X-CSRF-Token': csrf };
      const asked = await fetch(`${server.url}/chat?p=/api/ask`, { method: 'POST', headers, body: JSON.stringify({ id: 'laf-question-1', text: '页面' }) });
      expect(asked.status).toBe(200);
      expect(((await asked.json()) as { turn: { status: string } }).turn.status).toBe('pending');
      const sse = await openSse(`${server.url}/chat?p=/api/events&id=laf-question-1`, { cookie });
      const final = await sse.until((e) => e.event === 'final', 20_000);
      expect(JSON.parse(final.data).html).toContain('<h2>标题</h2>');
      const seen = await fetch(`${server.url}/chat?p=/api/seen`, { method: 'POST', headers, body: JSON.stringify({ id: 'laf-question-1' }) });
      expect(await seen.json()).toEqual({ delivered: true });
      const history = (await (await fetch(`${server.url}/chat?p=/api/history`, { headers: { cookie } })).json()) as { turns: { status: string; seen: boolean }[] };
      expect(history.turns).toMatchObject([{ status: 'answered', seen: true }]);
      // Without the page's token, nothing.
      expect((await fetch(`${server.url}/chat?p=/api/ask`, { method: 'POST', headers: { cookie, 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'laf-question-2', text: '页面' }) })).status).toBe(403);
      expect((await fetch(`${server.url}/chat?p=..%2F..%2Fetc%2Fpasswd`)).status).toBe(404);
    } finally {
      await server.close();
      delete process.env['WEB_CHAT'];
    }
  });
});

describe('the admin function on laf: failed logins', () => {
  it('are counted by the address of laf’s request (its socket: laf’s gateway), or TRUSTED_PROXY_HEADER’s; the right token always logs in', async () => {
    const ADMIN = 'laf-console-token-limit-0123456789';
    Object.assign(process.env, { ADMIN_TOKEN: ADMIN });
    const server = await serveLafOverExpress({ admin: load('admin') });
    const login = (token: string, from: string, headers: Record<string, string> = {}) =>
      call(`${server.url}/admin?p=/login`, { method: 'POST', body: `token=${token}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers }, from });
    try {
      for (let i = 0; i < LOGIN_FAILURES_ALLOWED; i++) expect((await login(`guess-${i}`, '127.0.0.2')).status).toBe(401);
      expect((await login('more', '127.0.0.2', { 'X-Real-IP': '203.0.113.5' })).status).toBe(429);
      expect((await login('elsewhere', '127.0.0.3')).status).toBe(401);
      expect((await login(ADMIN, '127.0.0.2')).status).toBe(303);
      // A gateway that writes the client's address into X-Real-IP: trusted once configured.
      process.env['TRUSTED_PROXY_HEADER'] = 'x-real-ip';
      expect((await login('via-gateway', '127.0.0.2', { 'X-Real-IP': '203.0.113.5' })).status).toBe(401);
    } finally {
      await server.close();
      delete process.env['ADMIN_TOKEN'];
      delete process.env['TRUSTED_PROXY_HEADER'];
    }
  });
});

describe('the harness catches what breaks on laf', () => {
  const opts = { builtins, dependencies: lafDependencies() };

  const TS5 = {
    'const type parameters (TS 5.0)': 'export default async function <const T extends readonly string[]>(x: T) { return x; }',
    '`using` declarations (TS 5.2)': 'export default async function (ctx: any) { using res = { [Symbol.dispose]() {} }; return ctx; }',
  };

  it('TS-5 const type parameters become a syntax error under laf’s 4.9.5 transpile', () => {
    expect(() => loadLafFunction(TS5['const type parameters (TS 5.0)'], 'ts5', opts)).toThrow(expect.objectContaining({ name: 'SyntaxError' }));
  });

  it('TS-5 `using` compiles under 4.9.5 into code that fails when it runs', async () => {
    const mod = loadLafFunction(TS5['`using` declarations (TS 5.2)'], 'ts5', opts);
    await expect(invokeLaf(mod, { method: 'GET', query: {} })).rejects.toMatchObject({ name: 'ReferenceError' });
  });

  it.each(Object.entries(TS5))('the source check flags %s', (_name, code) => {
    expect(ts49SyntaxErrors(code)).not.toEqual([]);
  });

  it('an ESM-only dependency cannot be required', () => {
    // A package like eventsource-parser 4 or dify-client: "type": "module", no CommonJS build.
    const dir = mkdtempSync(join(tmpdir(), 'wdb-esm-'));
    try {
      mkdirSync(join(dir, 'node_modules', 'esm-only-pkg'), { recursive: true });
      writeFileSync(join(dir, 'package.json'), '{}');
      writeFileSync(join(dir, 'node_modules', 'esm-only-pkg', 'package.json'), JSON.stringify({ name: 'esm-only-pkg', version: '1.0.0', type: 'module', exports: './index.js' }));
      writeFileSync(join(dir, 'node_modules', 'esm-only-pkg', 'index.js'), 'export const ok = true;\n');
      const src = "import { ok } from 'esm-only-pkg';\nexport default async function () { return ok; }";
      expect(() => loadLafFunction(src, 'esm', { builtins, dependencies: { 'esm-only-pkg': '1.0.0' }, resolveFrom: dir })).toThrow(/ES Module/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a package missing from laf.yaml cannot be required', () => {
    expect(() => loadLafFunction("import x from 'left-pad-not-listed';\nexport default async () => x;", 'missing', opts)).toThrow(/laf\.yaml/);
  });

  it.each(['TextDecoder', 'TextEncoder', 'AbortController', 'structuredClone', 'queueMicrotask', 'URLSearchParams', 'performance', 'crypto', 'Headers', 'ReadableStream'])(
    'the sandbox has no %s',
    async (global) => {
      const mod = loadLafFunction(`export default async function () { return typeof ${global} === 'undefined' ? 'missing' : 'present'; }`, 'globals', opts);
      expect((await invokeLaf(mod, { method: 'GET', query: {} })).body).toBe('missing');
      const uses = loadLafFunction(`export default async function () { return String(${global}); }`, 'uses', opts);
      // The error comes from the sandbox's realm, so `instanceof ReferenceError` is false here, as on laf.
      await expect(invokeLaf(uses, { method: 'GET', query: {} })).rejects.toMatchObject({ name: 'ReferenceError', message: `${global} is not defined` });
    },
  );

  it('every source file that goes into the bundle is TypeScript 4.9 syntax', () => {
    const files = ['functions', 'lib'].flatMap((d) =>
      readdirSync(join(ROOT, d), { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.ts') && !f.startsWith('sim'))
        .map((f) => join(ROOT, d, f)),
    );
    expect(files.length).toBeGreaterThan(20);
    for (const file of files) expect({ file, errors: ts49SyntaxErrors(readFileSync(file, 'utf8'), file) }).toEqual({ file, errors: [] });
  });

  it('the transpile step is laf’s: CommonJS out, bundle left as it is', () => {
    expect(lafTranspile("import a from 'x';\nexport default a;", 'm')).toMatch(/require\("x"\)/);
    expect(lafTranspile(source('wechat'), 'wechat')).toContain('handleLafRequest');
  });
});

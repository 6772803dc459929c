/**
 * `npm run doctor` (lib/adapters/server/doctor.ts) against the simulators and a real server on
 * loopback: a right deployment passes every check; each broken setting fails its own line with the
 * fix, and the exit code says so. The MongoDB conformance pass runs on a driver-5-shaped database (as
 * laf's), on one that misbehaves, and on a real MongoDB when MONGODB_URI is set.
 */
import { spawn } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { createServer } from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { fileURLToPath } from 'url';
import type { Db } from 'mongodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor } from '../../../lib/adapters/server/doctor';
import { wechatUrlCheck } from '../../../lib/channels/wechat-oa/check';
import { startDifySim } from '../../../lib/sim/dify-sim';
import type { DifySim } from '../../../lib/sim/dify-sim';
import { SessionStore } from '../../../lib/channels/ilink';
import { startIlinkSim } from '../../../lib/sim/ilink-sim';
import { startOpenAISim } from '../../../lib/sim/openai-sim';
import { openStore } from '../../../lib/store';
import { nedbBackend } from '../../../lib/store/nedb';
import { startWechatApiSim } from '../../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../../lib/sim/wechat-api-sim';
import { mongoChecks } from '../../../lib/store/check';
import { driver5Db } from '../../support/driver5-db';
import { DIFY_KEY, TOKEN } from '../../support/harness';
import { spawnServer } from '../../support/process';
import type { ServerProcess } from '../../support/process';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const APPID = 'wxdoctor000000001';
const SECRET = 'doctor-app-secret-0000000000001';

let dify: DifySim;
let wechatApi: WechatApiSim;
let dataDir: string;
const servers: ServerProcess[] = [];
const others: Server[] = [];

beforeAll(async () => {
  dify = await startDifySim({ apiKey: DIFY_KEY });
  wechatApi = await startWechatApiSim({ appId: APPID, appSecret: SECRET });
  dataDir = mkdtempSync(join(tmpdir(), 'wdb-doctor-'));
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  for (const s of others.splice(0)) await new Promise((r) => s.close(r));
});
afterAll(async () => {
  await dify.close();
  await wechatApi.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const good = () => ({ WECHAT_TOKEN: TOKEN, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, WECHAT_APPID: APPID, WECHAT_APPSECRET: SECRET, WECHAT_API_BASE: wechatApi.url, DATA_DIR: dataDir });
const line = (lines: string[], name: string) => lines.find((l) => l.slice(2).startsWith(name)) ?? `(no line "${name}")`;
const fixOf = (lines: string[], name: string) => lines[lines.indexOf(line(lines, name)) + 1] ?? '';

describe('a right deployment', () => {
  it('passes every check (the URL check aside: loopback has no port 443) and exits 0', async () => {
    const r = await runDoctor(good());
    expect(line(r.lines, 'configuration')).toMatch(/^✓ configuration: every variable valid; channels wechat-oa; dify backend; embedded store/);
    expect(line(r.lines, 'model backend')).toMatch(/^✓ model backend: dify: app reachable, key accepted/);
    expect(line(r.lines, '微信公众号: AppID/AppSecret')).toMatch(/^✓ .*accepted: an access token was issued/);
    expect(line(r.lines, 'embedded store: directory writable')).toMatch(/^✓/);
    expect(line(r.lines, 'embedded store: lock')).toBe('✓ embedded store: lock: not locked');
    expect(line(r.lines, 'clock')).toMatch(/^✓ clock: agrees with 127\.0\.0\.1/);
    expect(r.lines.at(-1)).toMatch(/^All \d+ checks pass\.$/);
    expect(r.code).toBe(0);
    expect(r.lines.join('\n')).not.toContain(SECRET);
  });

  it('with PUBLIC_URL: checks that it serves this bot, and the server URL as WeChat calls it (only ports 80 and 443)', async () => {
    const server = await spawnServer({ ...good(), DATA_DIR: mkdtempSync(join(tmpdir(), 'wdb-doctor-srv-')) });
    servers.push(server);
    const r = await runDoctor({ ...good(), PUBLIC_URL: server.origin });
    expect(line(r.lines, 'PUBLIC_URL')).toMatch(/^✓ PUBLIC_URL: http:\/\/127\.0\.0\.1:\d+ serves this bot/);
    expect(line(r.lines, '微信公众号: server URL')).toMatch(/^✗ .*uses port \d+/);
    expect(fixOf(r.lines, '微信公众号: server URL')).toContain('only ports 80 (http) and 443 (https)');
    expect(r.code).toBe(1);
    // The URL check itself, port aside: WeChat's GET answered with exactly the echostr.
    const ok = await wechatUrlCheck(`${server.origin}/wechat`, TOKEN, 'oa', { anyPort: true });
    expect(ok.find((c) => c.name === 'oa: server URL')).toMatchObject({ ok: true, detail: expect.stringContaining('answers WeChat’s check') });
    // A bare IP is named (WeChat is reported to refuse them), without failing.
    expect(ok.find((c) => c.name === 'oa: server URL host')).toMatchObject({ ok: undefined, detail: '127.0.0.1 is a bare IP address' });
    const wrongToken = await wechatUrlCheck(`${server.origin}/wechat`, 'anothertoken1', 'oa', { anyPort: true });
    expect(wrongToken.find((c) => c.name === 'oa: server URL')).toMatchObject({ ok: false, fix: expect.stringContaining('another WECHAT_TOKEN') });
  });
});

describe('a broken deployment', () => {
  it('an invalid variable: one line naming it, nothing else checked, exit 1', async () => {
    const r = await runDoctor({ ...good(), WECHAT_TOKEN: 'no!' });
    expect(r.lines[0]).toMatch(/^✗ configuration: WECHAT_TOKEN: must be 3-32 letters or digits/);
    expect(r.lines[1]).toContain('fix: set WECHAT_TOKEN');
    expect(r.code).toBe(1);
  });

  it('a refused key, a wrong AppSecret, an unwritable DATA_DIR: each its own failing line with the fix', async () => {
    const file = join(dataDir, 'a-file');
    writeFileSync(file, 'x');
    const r = await runDoctor({ ...good(), DIFY_API_KEY: 'app-wrong-key-000000', WECHAT_APPSECRET: 'wrong-secret-00000000000000', DATA_DIR: join(file, 'data') });
    expect(line(r.lines, 'model backend')).toMatch(/^✗/);
    expect(fixOf(r.lines, 'model backend')).toContain('the key is refused: set DIFY_API_KEY');
    expect(line(r.lines, '微信公众号: AppID/AppSecret')).toMatch(/^✗ .*40001/);
    expect(fixOf(r.lines, '微信公众号: AppID/AppSecret')).toContain('基础信息 → 开发密钥');
    expect(line(r.lines, 'embedded store: directory writable')).toMatch(/^✗/);
    expect(r.lines.at(-1)).toBe(`3 of ${r.lines.filter((l) => /^[✓✗–] /.test(l)).length} checks failed.`);
    expect(r.code).toBe(1);
  });

  it('PUBLIC_URL answered by something else, MongoDB unreachable, a skewed clock', async () => {
    const other = createServer((_req, res) => res.end('not the bot'));
    others.push(other);
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const skewed = { now: () => Date.now() + 10 * 60_000, sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)) };
    const r = await runDoctor({ ...good(), PUBLIC_URL: otherUrl, MONGODB_URI: `mongodb://127.0.0.1:${deadPort}/x` }, { clock: skewed });
    expect(line(r.lines, 'PUBLIC_URL')).toMatch(/^✗ PUBLIC_URL: .*HTTP 200, another script/);
    expect(line(r.lines, 'MongoDB: reachable')).toMatch(/^✗/);
    expect(fixOf(r.lines, 'MongoDB: reachable')).toContain('check MONGODB_URI');
    expect(line(r.lines, 'clock')).toMatch(/^✗ clock: this clock is (599|600|601) s ahead of 127\.0\.0\.1/);
    expect(fixOf(r.lines, 'clock')).toContain('NTP');
    expect(r.code).toBe(1);
  });

  it('an OpenAI-compatible backend: reachable with the key accepted, or the key refused', async () => {
    const sim = await startOpenAISim({ apiKey: 'sk-doctor-000000000001', model: 'm1' });
    try {
      const env = { WECHAT_TOKEN: TOKEN, LLM_PROVIDER: 'openai', OPENAI_BASE_URL: sim.url, OPENAI_MODEL: 'm1', DATA_DIR: dataDir };
      expect(line((await runDoctor({ ...env, OPENAI_API_KEY: 'sk-doctor-000000000001' })).lines, 'model backend')).toMatch(/^✓ model backend: openai: reachable, key accepted, model m1 listed/);
      const bad = await runDoctor({ ...env, OPENAI_API_KEY: 'sk-wrong-0000000000001' });
      expect(fixOf(bad.lines, 'model backend')).toContain('the key is refused: set OPENAI_API_KEY');
    } finally {
      await sim.close();
    }
  });

  it('an OpenAI-compatible server that does not serve OPENAI_MODEL: a failure naming the models it does, the closest first', async () => {
    const others = ['deepseek-chat', 'qwen-max', 'qwen-plus-latest', 'qwen-turbo', 'llama3.2:latest', 'glm-4-plus', 'moonshot-v1-8k'];
    const sim = await startOpenAISim({ model: 'qwen-plus', otherModels: others });
    try {
      const env = { WECHAT_TOKEN: TOKEN, LLM_PROVIDER: 'openai', OPENAI_BASE_URL: sim.url, DATA_DIR: dataDir };
      const r = await runDoctor({ ...env, OPENAI_MODEL: 'qwen_plus' });
      expect(line(r.lines, 'model backend')).toBe('✗ model backend: reachable, key accepted, but OPENAI_MODEL qwen_plus is not among the 8 models it lists (GET /models): qwen-plus, qwen-plus-latest, qwen-max, qwen-turbo, deepseek-chat, …');
      expect(fixOf(r.lines, 'model backend')).toBe('    fix: set OPENAI_MODEL to a model this server lists (above, the closest first), or OPENAI_BASE_URL to the server that serves it');
      expect(r.code).toBe(1);
      // Ollama lists `name:latest` and serves it as `name`.
      expect(line((await runDoctor({ ...env, OPENAI_MODEL: 'llama3.2' })).lines, 'model backend')).toMatch(/^✓ model backend: openai: reachable, key accepted, model llama3\.2 listed/);
    } finally {
      await sim.close();
    }
  });

  it('the command prints the lines and exits 1 (npm run doctor’s entry)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/doctor.ts'], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...good(), DIFY_API_KEY: 'app-wrong-key-000000' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(1);
    expect(out).toMatch(/✗ model backend: .*\n {4}fix: the key is refused/);
  });
});

describe('the web chat and the API', () => {
  it('framed on other sites over plain http fails (the cookie is Secure); PUBLIC_URL serving the chat and the API passes, something else fails', async () => {
    const web = { WEB_CHAT: 'on', WEB_CHAT_EMBED_ORIGINS: 'https://www.example.com', API_KEYS: `app1:${'k'.repeat(32)}`, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url };
    const server = await spawnServer({ ...web, DATA_DIR: mkdtempSync(join(tmpdir(), 'wdb-doctor-web-')) });
    servers.push(server);
    const r = await runDoctor({ ...web, DATA_DIR: dataDir, PUBLIC_URL: server.origin });
    expect(line(r.lines, 'web chat: embedding')).toBe(`✗ web chat: embedding: WEB_CHAT_EMBED_ORIGINS lets 1 site (https://www.example.com) frame the chat, but PUBLIC_URL is ${server.origin}: a framed chat’s visitor cookie is Secure (SameSite=None), which browsers keep only over https, so the chat would not work there`);
    expect(fixOf(r.lines, 'web chat: embedding')).toContain('set PUBLIC_URL to that address, or leave WEB_CHAT_EMBED_ORIGINS unset');
    expect(line(r.lines, 'web chat: PUBLIC_URL')).toBe(`✓ web chat: PUBLIC_URL: ${server.origin}/chat serves this bot’s chat`);
    expect(line(r.lines, 'API: PUBLIC_URL')).toBe(`✓ API: PUBLIC_URL: ${server.origin}/api/v1 and ${server.origin}/v1 answer (the API’s OpenAPI document)`);
    expect(r.code).toBe(1);

    // Without PUBLIC_URL the scheme is unknown: said, not judged. Without embedding, nothing to say.
    const unset = await runDoctor({ ...web, DATA_DIR: dataDir });
    expect(line(unset.lines, 'web chat: embedding')).toMatch(/^– web chat: embedding: 1 site .* set PUBLIC_URL to its https address to have this checked$/);
    expect(unset.lines.some((l) => l.includes('web chat: PUBLIC_URL') || l.includes('API: PUBLIC_URL'))).toBe(false);

    const other = createServer((_req, res) => res.writeHead(404).end('no'));
    others.push(other);
    await new Promise<void>((res) => other.listen(0, '127.0.0.1', () => res()));
    const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const wrong = await runDoctor({ ...web, WEB_CHAT_EMBED_ORIGINS: '', DATA_DIR: dataDir, PUBLIC_URL: otherUrl });
    expect(wrong.lines.some((l) => l.includes('web chat: embedding'))).toBe(false);
    expect(line(wrong.lines, 'web chat: PUBLIC_URL')).toBe(`✗ web chat: PUBLIC_URL: ${otherUrl}/chat/assets/chat.js: HTTP 404`);
    expect(fixOf(wrong.lines, 'web chat: PUBLIC_URL')).toContain('pass /chat through');
    expect(line(wrong.lines, 'API: PUBLIC_URL')).toBe(`✗ API: PUBLIC_URL: ${otherUrl}/api/v1/openapi.json: HTTP 404`);
    expect(fixOf(wrong.lines, 'API: PUBLIC_URL')).toContain('pass /api/v1 and /v1 through');
  });
});

describe('personal WeChat (iLink)', () => {
  it('no login fails with the fix; a login in the store (the server holding it) passes; -14 fails; ILINK_BOT_TOKEN passes', async () => {
    const sim = await startIlinkSim();
    const dir = mkdtempSync(join(tmpdir(), 'wdb-doctor-ilink-'));
    try {
      const env = { ILINK: 'on', ILINK_API_BASE: sim.url, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dir };
      const none = await runDoctor(env);
      expect(line(none.lines, 'iLink: session')).toBe('✗ iLink: session: not logged in: the server would have nothing to poll');
      expect(fixOf(none.lines, 'iLink: session')).toMatch(/fix: log in: npm run ilink -- login .*the console’s iLink page .*ILINK_BOT_TOKEN and ILINK_BOT_ID/);
      expect(line(none.lines, 'iLink: service reachable')).toMatch(/^✓ iLink: service reachable: 127\.0\.0\.1:\d+ answers \(HTTP 404\)$/);
      expect(none.code).toBe(1);

      // A QR login saved in the store, which stays open and locked as a running server holds it.
      const account = sim.login();
      const store = await openStore({ kind: 'embedded', mongoUri: undefined, mongoDb: undefined, dataDir: dir, statsUtcOffsetMin: 480 }, { embedded: nedbBackend });
      try {
        const sessions = new SessionStore(store, 'ilink');
        await sessions.save({ token: account.token, botId: account.botId, baseUrl: account.baseUrl, userId: account.userId, savedAt: Date.now(), source: 'qr' }, Date.now());
        const live = await runDoctor(env);
        expect(line(live.lines, 'iLink: session')).toMatch(/^✓ iLink: session: bot \S+@im\.bot, QR login at \d{4}-\d\d-\d\d \d\d:\d\d UTC; not ended by the service so far$/);
        expect(live.code).toBe(0);
        expect(live.lines.join('\n')).not.toContain(account.token);
        expect(line(live.lines, 'embedded store: lock')).toMatch(/held by process/);

        expect(await sessions.expire(account.token, Date.now())).toBe(true);
        const ended = await runDoctor(env);
        expect(line(ended.lines, 'iLink: session')).toMatch(/^✗ iLink: session: bot \S+@im\.bot: ended by the service \(-14\) at .* UTC; polling has stopped/);
        expect(fixOf(ended.lines, 'iLink: session')).toContain('fix: log in again (npm run ilink -- login');
        expect(ended.code).toBe(1);
      } finally {
        await store.close();
      }

      // A session from the environment, on a store that never saw it.
      const fresh = mkdtempSync(join(tmpdir(), 'wdb-doctor-ilink-'));
      const provisioned = await runDoctor({ ...env, DATA_DIR: fresh, ILINK_BOT_TOKEN: 'env-token-0000000000000001', ILINK_BOT_ID: 'abcdef0123456789@im.bot' });
      rmSync(fresh, { recursive: true, force: true });
      expect(line(provisioned.lines, 'iLink: session')).toBe('✓ iLink: session: bot abcd…89@im.bot from ILINK_BOT_TOKEN (not used yet: the server starts with it)');
      expect(provisioned.lines.join('\n')).not.toContain('env-token-0000000000000001');
    } finally {
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!process.env['MONGODB_URI'])('on MongoDB: the session is read from it (MONGODB_URI; skipped without it)', async () => {
    const sim = await startIlinkSim();
    const db = `wdb_doctor_ilink_${Date.now()}`;
    const settings = { kind: 'mongodb' as const, mongoUri: process.env['MONGODB_URI'], mongoDb: db, dataDir, statsUtcOffsetMin: 480 };
    const store = await openStore(settings);
    try {
      const account = sim.login();
      await new SessionStore(store, 'ilink').save({ token: account.token, botId: account.botId, baseUrl: account.baseUrl, userId: account.userId, savedAt: Date.now(), source: 'qr' }, Date.now());
      const r = await runDoctor({ ILINK: 'on', ILINK_API_BASE: sim.url, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, MONGODB_URI: settings.mongoUri as string, MONGODB_DB: db });
      expect(line(r.lines, 'iLink: session')).toMatch(/^✓ iLink: session: bot \S+@im\.bot, QR login at /);
    } finally {
      const { MongoClient } = await import('mongodb');
      const client = new MongoClient(settings.mongoUri as string);
      await store.close();
      await client.connect();
      await client.db(db).dropDatabase();
      await client.close();
      await sim.close();
    }
  });

  it('the service unreachable: its host named, with the fix', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const r = await runDoctor({ ILINK: 'on', ILINK_API_BASE: `http://127.0.0.1:${port}`, DIFY_API_KEY: DIFY_KEY, DIFY_BASE_URL: dify.url, DATA_DIR: dataDir });
    expect(line(r.lines, 'iLink: service reachable')).toMatch(new RegExp(`^✗ iLink: service reachable: 127\\.0\\.0\\.1:${port}: `));
    expect(fixOf(r.lines, 'iLink: service reachable')).toContain('HTTPS_PROXY');
  });
});

describe('the MongoDB conformance pass', () => {
  it('passes on a driver-5 database (laf’s cloud.mongo.db shapes) and removes its temporary collection', async () => {
    const { db, collections } = driver5Db();
    const checks = await mongoChecks(db);
    expect(checks.filter((c) => c.ok !== true)).toEqual([]);
    expect(checks.map((c) => c.name)).toEqual([
      'MongoDB: reachable, collection and indexes created',
      'MongoDB: create',
      'MongoDB: unique key refused',
      'MongoDB: find-and-update result',
      'MongoDB: $push with $slice',
      'MongoDB: sparse index',
      'MongoDB: TTL index',
      'MongoDB: conformance pass',
    ]);
    expect([...collections.keys()]).toEqual([]);
  });

  it('fails where a database behaves otherwise: duplicate _id accepted, the document before the update, no TTL index', async () => {
    const { db } = driver5Db();
    const lax = {
      collection(name: string) {
        const c = db.collection(name) as unknown as Record<string, (...a: unknown[]) => unknown>;
        return {
          ...c,
          insertOne: async (doc: { _id: string }) => {
            await (c['deleteMany'] as (f: unknown) => Promise<unknown>)({ _id: doc._id });
            return c['insertOne']?.(doc);
          },
          findOneAndUpdate: async (f: unknown, u: unknown, o: unknown) => {
            const before = await (c['findOne'] as (f: unknown) => Promise<unknown>)(f);
            const res = (await c['findOneAndUpdate']?.(f, u, o)) as { value: unknown };
            return { ...res, value: res.value ? before : null };
          },
          createIndex: async (spec: Record<string, 1>, o: { name: string; expireAfterSeconds?: number }) =>
            c['createIndex']?.(spec, o.expireAfterSeconds === undefined ? o : { name: o.name }),
        };
      },
    } as unknown as Db;
    const failed = (await mongoChecks(lax)).filter((c) => c.ok === false).map((c) => c.name);
    expect(failed).toEqual(['MongoDB: unique key refused', 'MongoDB: find-and-update result', 'MongoDB: TTL index', 'MongoDB: conformance pass']);
  });

  const mongoUri = process.env['MONGODB_URI'];
  it.skipIf(!mongoUri)('passes on a real MongoDB (MONGODB_URI; skipped without it)', async () => {
    const { MongoClient } = await import('mongodb');
    const client = new MongoClient(mongoUri as string);
    await client.connect();
    try {
      const db = client.db(`wdb_doctor_${Date.now()}`);
      expect((await mongoChecks(db)).filter((c) => c.ok !== true)).toEqual([]);
      expect((await db.listCollections().toArray()).filter((c) => c.name.startsWith('wdb_doctor_'))).toEqual([]);
      await db.dropDatabase();
    } finally {
      await client.close();
    }
  });
});

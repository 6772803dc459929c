/**
 * lib/util/log.ts: JSON lines for services, one readable line per event for a person, and secrets
 * redacted in both; the real server prints readable lines on a terminal (a pseudo-terminal made with
 * `script`) and JSON lines into a pipe.
 */
import { spawn, spawnSync } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { fileURLToPath } from 'url';
import { describe, expect, it } from 'vitest';
import { createLogger, floodGuard, logFormatFor, maskIds, prettyLine } from '../../lib/util/log';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECRET = 'app-very-secret-key-123';
const T = Date.UTC(2026, 0, 2, 3, 4, 5, 67);
/** ANSI colour escapes, removed to read a coloured line as text. */
const plain = (s: string) => s.split('\x1b[').map((p, i) => (i === 0 ? p : p.replace(/^\d+m/, ''))).join('');

function collect(opts: Parameters<typeof createLogger>[0]) {
  const lines: string[] = [];
  const logger = createLogger({ ...opts, secrets: [SECRET], now: () => T, sink: (l) => lines.push(l) });
  return { logger, lines };
}

describe('log lines', () => {
  it('are JSON by default, with the secret redacted', () => {
    const { logger, lines } = collect({});
    logger.info('answer ready', { key: 'o1:42', ms: 2345, note: `key ${SECRET}` });
    expect(JSON.parse(lines[0] as string)).toEqual({ t: '2026-01-02T03:04:05.067Z', level: 'info', msg: 'answer ready', key: 'o1:42', ms: 2345, note: 'key [redacted]' });
  });

  it('are one readable line per event when pretty: time, level, message, key=value fields, secrets redacted', () => {
    const { logger, lines } = collect({ format: 'pretty' });
    logger.warn('answer failed', { key: 'o1:42', code: 'dify_http_401', detail: `bad key ${SECRET}`, n: 3, nested: { a: 1 }, gone: undefined });
    const line = lines[0] as string;
    const d = new Date(T);
    const hh = String(d.getHours()).padStart(2, '0');
    expect(line).toBe(`${hh}:04:05.067 WARN  answer failed key=o1:42 code=dify_http_401 detail="bad key [redacted]" n=3 nested={"a":1}`);
    expect(line).not.toContain('\x1b[');
    expect(line).not.toContain('\n');
  });

  it('are coloured only when asked (a terminal), and the colour never splits a secret past redaction', () => {
    const line = prettyLine(T, 'error', `cannot open ${SECRET}`, { uri: `mongodb://u:${SECRET}@h` }, [SECRET], true);
    expect(line).toContain('\x1b[31mERROR');
    expect(line).not.toContain(SECRET);
    expect(plain(line)).toContain('cannot open [redacted] uri=mongodb://u:[redacted]@h');
  });

  it('LOG_FORMAT=auto is pretty on a terminal and JSON elsewhere; colour only on a terminal', () => {
    expect(logFormatFor('auto', true)).toEqual({ format: 'pretty', color: true });
    expect(logFormatFor('auto', undefined)).toEqual({ format: 'json', color: false });
    expect(logFormatFor('pretty', false)).toEqual({ format: 'pretty', color: false });
    expect(logFormatFor('json', true)).toEqual({ format: 'json', color: false });
  });
});

/** Run the server until it says it listens, then stop it; everything it printed. */
function serverOutput(env: Record<string, string>, terminal: boolean): Promise<string> {
  const node = `${JSON.stringify(process.execPath)} --import tsx scripts/server.ts`;
  // `script` runs the command on a pseudo-terminal, as a person's shell would.
  const [cmd, args] = terminal ? ['script', ['-qefc', node, '/dev/null']] : ['sh', ['-c', node]];
  // Its own process group, so the server under the shell or `script` is stopped with it.
  const child = spawn(cmd, args, { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', HOST: '127.0.0.1', PORT: '0', ...env }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stopped = false;
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(-(child.pid as number), 'SIGKILL');
      reject(new Error(`no listening line:\n${out}`));
    }, 20_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      if (/listening/.test(out) && !stopped) {
        stopped = true;
        process.kill(-(child.pid as number), 'SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    // 'close', not 'exit': the pipes close once the server under the shell has exited too (and closed its store).
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe('the server’s log format', () => {
  const hasScript = spawnSync('script', ['--version']).status === 0;

  it.skipIf(!hasScript)('is readable and coloured on a terminal, JSON into a pipe', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wdb-log-'));
    try {
      const env = { WECHAT_TOKEN: 'logtoken123', DIFY_API_KEY: SECRET, DIFY_BASE_URL: 'http://127.0.0.1:9/v1', DATA_DIR: dir, ANSWER_PAGE: 'off' };
      const tty = await serverOutput(env, true);
      expect(plain(tty)).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}listening url=http:\/\/127\.0\.0\.1:\d+ /m);
      expect(tty).toContain('\x1b[');
      expect(tty).not.toContain('{"t":');
      const piped = await serverOutput(env, false);
      expect(piped).toMatch(/^\{"t":"[^"]+","level":"info","msg":"listening"/m);
      for (const out of [tty, piped]) expect(out).not.toContain(SECRET);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('users’ ids in the log', () => {
  it('masks them in key fields as the console does, keeping channel tags, message numbers and short names', () => {
    expect(maskIds('of8sAx_Icjl3RZKKk52s0a1b2c3d:6056123456789012345')).toBe('of8s…2c3d:6056123456789012345');
    expect(maskIds('ilink:o9cq80owner@im.wechat:7234567890123')).toBe('ilink:o9cq…chat:7234567890123');
    expect(maskIds('wechat-oa@shop:oAbCdEfGhIjKlMnOpQrStUvWxYz12')).toBe('wechat-oa@shop:oAbC…Yz12');
    expect(maskIds('api:alpha:alice:q1')).toBe('api:alpha:alice:q1');
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l) });
    log.info('answer ready', { key: 'line:U4af4980629aaaaaaaaaaaaaaaaaaaaaa:1', user: 'oUserOpenId0123456789abcdefg', ms: 5 });
    expect(lines[0]).not.toContain('U4af4980629aaaaaaaaaaaaaaaaaaaaaa');
    expect(lines[0]).not.toContain('oUserOpenId0123456789abcdefg');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ msg: 'answer ready', key: 'line:U4af…aaaa:1', user: 'oUse…defg', ms: 5 });
  });
});

describe('floodGuard', () => {
  it('writes a message at most so many times a minute, then says how many it left out', () => {
    const lines: string[] = [];
    let t = 0;
    const log = floodGuard(createLogger({ sink: (l) => lines.push(l), now: () => t }), 10, () => t);
    for (let i = 0; i < 2000; i++) log.warn('rejected request', { i });
    log.warn('console login failed');
    expect(lines.filter((l) => l.includes('rejected request'))).toHaveLength(10);
    expect(lines.filter((l) => l.includes('console login failed'))).toHaveLength(1);
    t = 60_000;
    log.warn('rejected request', { i: 'next' });
    expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ msg: 'rejected request', i: 'next', notLogged: 1990 });
    log.error('rejected request');
    expect(lines.filter((l) => l.includes('"level":"error"'))).toHaveLength(1);
  });
});

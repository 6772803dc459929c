/**
 * The simulator commands (`npm run dify-sim`, `openai-sim`, `wecom-sim`, `ilink-sim`) as a newcomer
 * runs them, as real processes: their default ports never clash, so all of them can run at once; a
 * port already taken is one line naming it and the variable that moves it (exit 1, no stack trace);
 * and the iLink simulator's banner gives the variables with which `npm run ilink -- login` logs in
 * against it (README "Personal WeChat (iLink)").
 */
import { spawn } from 'child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'fs';
import { createServer } from 'net';
import type { AddressInfo, Server } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { fileURLToPath } from 'url';
import { afterEach, describe, expect, it } from 'vitest';
import { SIM_PORTS } from '../../scripts/sim-cli';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const held: Server[] = [];
const dirs: string[] = [];
const running: (() => void)[] = [];
afterEach(async () => {
  for (const kill of running.splice(0)) kill();
  for (const s of held.splice(0)) await new Promise((r) => s.close(r));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Hold a port on 127.0.0.1 (`port` 0: any free one); resolves with it, or undefined when it cannot be had. */
function hold(port = 0): Promise<number | undefined> {
  const s = createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      held.push(s);
      resolve((s.address() as AddressInfo).port);
    });
  });
}

/** A port that is free now, with the one after it held by us (the iLink simulator's redirect host taken). */
async function freeBeforeHeld(): Promise<number> {
  for (;;) {
    const probe = await hold();
    if (probe === undefined) continue;
    const s = held.pop() as Server;
    await new Promise((r) => s.close(r));
    if ((await hold(probe + 1)) !== undefined) return probe;
  }
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a script to its exit (killed after 20 s); or, with `until`, until stdout matches it (killed after the test). */
function run(args: string[], env: Record<string, string>, until?: RegExp): Promise<Run & { match?: RegExpExecArray }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let match: RegExpExecArray | undefined;
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) => {
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      const m = until?.exec(stdout);
      if (m && !match) {
        match = m;
        clearTimeout(timer);
        resolve({ code: null, stdout, stderr, match });
      }
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!match) resolve({ code, stdout, stderr });
    });
    if (until) running.push(() => child.kill('SIGKILL'));
  });
}

/** One line on stderr, naming the port and the variable, without a stack trace. */
function expectPortLine(r: Run, port: number, variable: string, command: string): void {
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^${command}: port ${port}\\b.*already in use.*set ${variable} to a free port`));
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('the simulator commands', () => {
  it('have default ports that never clash (the iLink simulator takes two), and every one reports a taken port', () => {
    const ports = [...Object.values(SIM_PORTS), SIM_PORTS.ILINK_SIM_PORT + 1];
    expect(new Set(ports).size).toBe(ports.length);
    const scripts = readdirSync(join(ROOT, 'scripts')).filter((f) => f.endsWith('-sim.ts'));
    expect(scripts.sort()).toEqual(['dify-sim.ts', 'ilink-sim.ts', 'openai-sim.ts', 'wecom-sim.ts']);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    for (const f of scripts) {
      const src = readFileSync(join(ROOT, 'scripts', f), 'utf8');
      // Every port comes from simPort (its default in SIM_PORTS), and the start goes through runSim.
      expect(src, f).toContain('runSim(');
      expect(src, f).not.toMatch(/Number\((process\.)?env\[['"]\w+_PORT/);
      expect(pkg.scripts[f.replace('.ts', '')], f).toBe(`tsx scripts/${f}`);
    }
  });

  it('a taken port: one line naming it and its variable, exit 1 (Dify, OpenAI-compatible, WeCom API and bot)', async () => {
    const port = (await hold()) as number;
    const [dify, openai, wecom, wecomBot] = await Promise.all([
      run(['scripts/dify-sim.ts'], { DIFY_SIM_PORT: String(port) }),
      run(['scripts/openai-sim.ts'], { OPENAI_SIM_PORT: String(port) }),
      run(['scripts/wecom-sim.ts'], { WECOM_SIM_PORT: String(port) }),
      run(['scripts/wecom-sim.ts'], { WECOM_SIM_PORT: '0', WECOM_BOT_SIM_PORT: String(port), WECOM_SIM_BOT_URL: 'http://127.0.0.1:9/wecom-bot' }),
    ]);
    expectPortLine(dify, port, 'DIFY_SIM_PORT', 'dify-sim');
    expectPortLine(openai, port, 'OPENAI_SIM_PORT', 'openai-sim');
    expectPortLine(wecom, port, 'WECOM_SIM_PORT', 'wecom-sim');
    expectPortLine(wecomBot, port, 'WECOM_BOT_SIM_PORT', 'wecom-sim');
  });

  it('the iLink simulator: its own port or the redirect host’s taken, each said in one line; a port that is no number too', async () => {
    const port = (await hold()) as number;
    expectPortLine(await run(['scripts/ilink-sim.ts'], { ILINK_SIM_PORT: String(port) }), port, 'ILINK_SIM_PORT', 'ilink-sim');
    const before = await freeBeforeHeld();
    const alt = await run(['scripts/ilink-sim.ts'], { ILINK_SIM_PORT: String(before) });
    expectPortLine(alt, before + 1, 'ILINK_SIM_PORT', 'ilink-sim');
    expect(alt.stderr).toContain('(the redirect host, always ILINK_SIM_PORT + 1)');
    const bad = await run(['scripts/ilink-sim.ts'], { ILINK_SIM_PORT: 'eighty' });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('ilink-sim: ILINK_SIM_PORT must be a port number from 1 to 65534 (or 0: any free port); it is "eighty"');
  });

  it('the iLink simulator prints the variables, and npm run ilink -- login logs in with them', async () => {
    const sim = await run(['scripts/ilink-sim.ts'], { ILINK_SIM_PORT: '0', ILINK_SIM_CONFIRM_MS: '100' }, /^Set (ILINK=on ILINK_API_BASE=(\S+) ILINK_CDN_BASE=(\S+)) for npm run ilink -- login and npm start/m);
    const [, , apiBase, cdnBase] = sim.match as RegExpExecArray;
    expect(apiBase).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(cdnBase).toBe(`${apiBase}/c2c`);
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-ilink-cli-'));
    dirs.push(dataDir);
    const env = { ILINK: 'on', ILINK_API_BASE: apiBase as string, ILINK_CDN_BASE: cdnBase as string, DATA_DIR: dataDir };
    const login = await run(['scripts/ilink.ts', 'login'], env);
    expect(login.stderr).toBe('');
    expect(login.stdout).toMatch(/ilink: logged in as \S+@im\.bot/);
    expect(login.code).toBe(0);
    const status = await run(['scripts/ilink.ts', 'status'], env);
    expect(status.stdout).toContain(`base ${apiBase as string}, QR login`);
    expect(status.stdout).toContain('session live');
  });
});

describe('npm run ilink -- login when the service cannot be reached', () => {
  it('names the host it tried and the fixes: the network, HTTPS_PROXY, ILINK_API_BASE (exit 1)', async () => {
    const closed = (await hold()) as number;
    const s = held.pop() as Server;
    await new Promise((r) => s.close(r));
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-ilink-cli-'));
    dirs.push(dataDir);
    const r = await run(['scripts/ilink.ts', 'login'], { ILINK_API_BASE: `http://127.0.0.1:${closed}`, DATA_DIR: dataDir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot reach the iLink service at 127.0.0.1:${closed} (ECONNREFUSED: nothing listens there).`);
    expect(r.stderr).toContain('set HTTPS_PROXY');
    expect(r.stderr).toContain(`ILINK_API_BASE names the iLink service (now http://127.0.0.1:${closed}, from ILINK_API_BASE)`);
    expect(r.stderr).toContain('npm run ilink-sim');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('something that is not the service: its host, and ILINK_API_BASE to fix', async () => {
    const other = (await import('http')).createServer((_req, res) => res.writeHead(404).end('not here'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    held.push(other);
    const port = (other.address() as AddressInfo).port;
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-ilink-cli-'));
    dirs.push(dataDir);
    const r = await run(['scripts/ilink.ts', 'login'], { ILINK_API_BASE: `http://127.0.0.1:${port}`, DATA_DIR: dataDir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`The server at 127.0.0.1:${port} did not answer as the iLink service does (iLink get_bot_qrcode: HTTP 404).`);
    expect(r.stderr).toContain('ILINK_API_BASE names the iLink service');
  });
});

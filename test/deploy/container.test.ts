/**
 * The container and service files, checked where no container engine runs (README "Run it in a
 * container"; the image build itself is not exercised in CI): the Dockerfile's stages and what each
 * copies, its CMD being what the build produces, its health check served, compose.yaml setting only
 * variables the server reads and wiring MongoDB and Caddy to it, the systemd unit's stop settings
 * above the grace period. `IMAGE_CHECK=1` also runs `npm run image:check` (the build steps on the
 * host in a clean copy, then the result started; about a minute, and it needs the npm registry).
 */
import { spawn, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'fs';
import type { AddressInfo } from 'net';
import { createServer } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { fileURLToPath } from 'url';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, loadConfig } from '../../lib/config';
import { copyParts, dockerIgnored, dockerignorePatterns, envOf, execForm, parseDockerfile } from '../../scripts/image-check';
import type { Stage } from '../../scripts/image-check';
import { startHarness } from '../support/harness';
import type { Harness } from '../support/harness';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');
const stages = parseDockerfile(read('Dockerfile'));
const image = stages.at(-1) as Stage;
const steps = (s: Stage, op: string) => s.steps.filter((x) => x.op === op);
const DEFAULT_GRACE_S = loadConfig({ WECHAT_TOKEN: 'abc123', DIFY_API_KEY: 'app-x' }).server.stopGraceMs / 1000;

describe('the Dockerfile', () => {
  it('builds in stages on a maintained Node slim image, the same in each', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.image).toBe(image.image);
    const major = Number(/^node:(\d+)-slim$/.exec(image.image)?.[1]);
    // Node 20 is past its end of life (2026-04-30); the code stays Node-20 compatible for laf.
    expect(major).toBeGreaterThanOrEqual(22);
  });

  it('runs as a non-root user, keeps DATA_DIR in a volume, serves its health check on /healthz', () => {
    expect(steps(image, 'USER').at(-1)?.args).toBe('node');
    const env = envOf(image);
    expect(env['DATA_DIR']).toBe('/data');
    expect(execForm(steps(image, 'VOLUME').at(-1)?.args ?? '')).toEqual([env['DATA_DIR']]);
    const health = steps(image, 'HEALTHCHECK').at(-1)?.args ?? '';
    expect(health).toMatch(/--interval=\d+s/);
    expect(execForm(health.slice(health.indexOf('CMD') + 3).trim())?.join(' ')).toContain("path:'/healthz'");
  });

  it('starts node itself (exec form), so SIGTERM reaches it, and stops with SIGTERM', () => {
    const cmd = execForm(steps(image, 'CMD').at(-1)?.args ?? '');
    expect(cmd?.[0]).toBe('node');
    expect(cmd).toHaveLength(2);
    expect(steps(image, 'STOPSIGNAL').at(-1)?.args).toBe('SIGTERM');
  });

  it('copies from the context only files that are there and that .dockerignore lets in', () => {
    const patterns = dockerignorePatterns(read('.dockerignore'));
    const copied = stages.flatMap((s) => steps(s, 'COPY').map((c) => copyParts(c.args))).filter((c) => c.from === undefined).flatMap((c) => c.sources);
    expect(copied.length).toBeGreaterThan(3);
    for (const src of copied) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(dockerIgnored(patterns, src), src).toBe(false);
    }
    // What must never go into the context.
    for (const p of ['node_modules/x', '.git/HEAD', '.env', 'data/messages.db', 'dist/server.js']) expect(dockerIgnored(patterns, p), p).toBe(true);
  });

  it('puts production dependencies only into the image', () => {
    const modules = steps(image, 'COPY').map((c) => copyParts(c.args)).find((c) => c.sources.some((s) => s.endsWith('node_modules')));
    const from = stages.find((s) => s.name === modules?.from);
    expect(steps(from as Stage, 'RUN').map((r) => r.args).join(' ')).toMatch(/npm ci --omit=dev/);
  });

  describe('after the build script', () => {
    let out: string;
    beforeAll(() => {
      out = mkdtempSync(join(tmpdir(), 'wdb-build-'));
      // package.json's build:server as it is, into a temporary directory.
      const script = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts['build:server'] as string;
      expect(script).toBe('tsx scripts/build-server.ts');
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/build-server.ts', '--out', out], { cwd: ROOT, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    });
    afterAll(() => rmSync(out, { recursive: true, force: true }));

    it('every file the image copies from the build stage is produced, and the CMD runs one of them', () => {
      const built = readdirSync(out).sort();
      const build = stages.find((s) => steps(s, 'RUN').some((r) => r.args.includes('npm run build:server')));
      const workdir = steps(build as Stage, 'WORKDIR').at(-1)?.args ?? '/';
      const fromBuild = steps(image, 'COPY').map((c) => copyParts(c.args)).filter((c) => c.from === build?.name).flatMap((c) => c.sources);
      const dist = fromBuild.filter((s) => s.startsWith(`${workdir}/dist/`)).map((s) => s.slice(`${workdir}/dist/`.length));
      expect(dist.sort()).toEqual(built);
      const cmd = execForm(steps(image, 'CMD').at(-1)?.args ?? '') as string[];
      expect(built).toContain((cmd[1] as string).replace(/^dist\//, ''));
    });
  });
});

describe('the health check', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => h.close());

  it('is served: the HEALTHCHECK command passes against a server, and fails where none answers', async () => {
    const health = steps(image, 'HEALTHCHECK').at(-1)?.args ?? '';
    const cmd = execForm(health.slice(health.indexOf('CMD') + 3).trim()) as string[];
    // Asynchronously: the server answering it runs in this process.
    const run = (port: string) =>
      new Promise<number | null>((resolve) => spawn(process.execPath, cmd.slice(1), { env: { PATH: process.env['PATH'] ?? '', PORT: port }, stdio: 'ignore' }).on('exit', (code) => resolve(code)));
    expect(await run(new URL(h.origin).port)).toBe(0);
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
    const port = String((free.address() as AddressInfo).port);
    await new Promise((r) => free.close(r));
    expect(await run(port)).toBe(1);
  });
});

interface ComposeService {
  build?: string;
  image?: string;
  init?: boolean;
  environment?: Record<string, string>;
  env_file?: string;
  volumes?: string[];
  ports?: string[];
  depends_on?: unknown;
  stop_grace_period?: string;
}

describe('compose.yaml', () => {
  const compose = load(read('compose.yaml')) as { services: Record<string, ComposeService>; volumes: Record<string, unknown> };
  const bot = compose.services['bot'] as ComposeService;

  it('sets only variables the server reads', () => {
    const env = Object.keys(bot.environment ?? {});
    expect(env.length).toBeGreaterThan(3);
    expect(env.filter((v) => !CONFIG_VARIABLES.includes(v))).toEqual([]);
  });

  it('builds this Dockerfile, runs tini, and gives a stop more time than the grace period', () => {
    expect(bot.build).toBe('.');
    expect(bot.init).toBe(true);
    expect(Number(/^(\d+)s$/.exec(bot.stop_grace_period ?? '')?.[1])).toBeGreaterThan(DEFAULT_GRACE_S);
  });

  it('wires MongoDB 7 with a volume to MONGODB_URI, and DATA_DIR to a volume', () => {
    const mongo = compose.services['mongo'] as ComposeService;
    expect(mongo.image).toBe('mongo:7');
    expect(mongo.volumes?.some((v) => v.endsWith(':/data/db'))).toBe(true);
    expect(new URL(bot.environment?.['MONGODB_URI'] ?? '').hostname).toBe('mongo');
    expect(bot.depends_on).toMatchObject({ mongo: { condition: 'service_healthy' } });
    expect(bot.volumes).toContain(`bot-data:${bot.environment?.['DATA_DIR'] ?? ''}`);
    for (const v of [...(bot.volumes ?? []), ...(mongo.volumes ?? [])]) {
      const name = v.split(':')[0] as string;
      if (!name.startsWith('.')) expect(compose.volumes).toHaveProperty(name);
    }
  });

  it('puts Caddy on 80 and 443 (the only ports WeChat calls), proxying to the bot’s PORT', () => {
    const caddy = compose.services['caddy'] as ComposeService;
    expect(caddy.image).toBe('caddy:2');
    expect(caddy.ports).toEqual(expect.arrayContaining(['80:80', '443:443']));
    expect(caddy.volumes).toEqual(expect.arrayContaining(['./Caddyfile:/etc/caddy/Caddyfile:ro', 'caddy-data:/data']));
    expect(read('Caddyfile')).toMatch(new RegExp(`reverse_proxy bot:${bot.environment?.['PORT'] ?? ''}\\b`));
    // Caddy sets X-Forwarded-For from the client's address: the console may trust it.
    expect(bot.environment?.['TRUSTED_PROXY_HEADER']).toBe('x-forwarded-for');
  });

  it('deploy/example.env names only variables the server reads (and compose’s DOMAIN)', () => {
    const names = [...read('deploy/example.env').matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1] as string);
    expect(names.filter((v) => v !== 'DOMAIN' && !CONFIG_VARIABLES.includes(v))).toEqual([]);
    expect(names).toContain('DOMAIN');
  });
});

describe('the systemd unit', () => {
  const unit = read('deploy/wechat-dify-bot.service');
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1];

  it('stops with SIGTERM, waits longer than the grace period, restarts on failure, reads an environment file', () => {
    expect(value('KillSignal')).toBe('SIGTERM');
    expect(Number(value('TimeoutStopSec'))).toBeGreaterThan(DEFAULT_GRACE_S);
    expect(value('Restart')).toBe('on-failure');
    expect(value('EnvironmentFile')).toMatch(/^\//);
    // node runs the build's output itself (npm would swallow the signal).
    expect(value('ExecStart')).toMatch(/\/node dist\/server\.js$/);
  });
});

describe.skipIf(!process.env['IMAGE_CHECK'])('npm run image:check (IMAGE_CHECK=1; skipped otherwise: it installs from the registry)', () => {
  it('runs the build steps in a clean copy, starts the result, passes its health check, stops on SIGTERM', () => {
    const r = spawnSync('npm', ['run', 'image:check'], { cwd: ROOT, encoding: 'utf8', timeout: 540_000 });
    expect(r.stdout).toContain('image:check passed');
    expect(r.status).toBe(0);
  }, 600_000);
});

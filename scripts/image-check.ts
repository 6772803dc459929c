/**
 * `npm run image:check`: the Dockerfile's steps run on the host, where no container engine runs
 * (README "Run it in a container"). In a clean copy of the build context (the repository's files,
 * less what .dockerignore leaves out), each build stage's COPY and RUN steps run in its own
 * directory standing for its WORKDIR; the final stage gets its COPY steps (its RUN steps touch the
 * image's own system and are only listed); then its CMD starts there, on a temporary DATA_DIR, the
 * HEALTHCHECK command must pass, and SIGTERM must end it with code 0.
 *
 * It checks the build's recipe and its result, not the image: base images, users and file
 * ownership are Docker's. The parser is also what test/deploy/container.test.ts reads the Dockerfile with.
 */
import { execFileSync, spawn, spawnSync } from 'child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join, posix, resolve } from 'path';

const ROOT = resolve(__dirname, '..');

export interface Instruction {
  op: string;
  /** The rest of the line, continuations joined. */
  args: string;
  line: number;
}

export interface Stage {
  image: string;
  name: string | undefined;
  steps: Instruction[];
}

/** The Dockerfile's stages and their instructions (comments and parser directives dropped, `\` continuations joined). */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i] as string;
    if (/^\s*(#|$)/.test(line)) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      i++;
      const next = lines[i] as string;
      if (/^\s*#/.test(next)) continue;
      line = line.replace(/\\\s*$/, ' ') + next.trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile line ${start + 1}: cannot read "${line}"`);
    const op = (m[1] as string).toUpperCase();
    const args = (m[2] as string).trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!f) throw new Error(`Dockerfile line ${start + 1}: FROM ${args}`);
      stages.push({ image: f[1] as string, name: f[2], steps: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile line ${start + 1}: ${op} before FROM`);
    stage.steps.push({ op, args, line: start + 1 });
  }
  return stages;
}

/** A COPY step: `--from` stage (if any), sources, destination. */
export function copyParts(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift() as string;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  const dest = words.pop() as string;
  return { from, sources: words, dest };
}

/** An exec-form list (`["node", "dist/server.js"]`), or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const list = JSON.parse(args) as unknown;
  return Array.isArray(list) && list.every((x) => typeof x === 'string') ? (list as string[]) : undefined;
}

/** ENV steps of a stage as a map (`ENV A=1 B=2` form). */
export function envOf(stage: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of stage.steps.filter((x) => x.op === 'ENV')) for (const m of s.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) out[m[1] as string] = (m[2] as string).replace(/^"|"$/g, '');
  return out;
}

/** Go's filepath.Match for one path segment pattern (`*`, `?`), as .dockerignore uses it. */
function segmentMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
  return re.test(name);
}

/** Is `path` (relative to the context) left out by these .dockerignore patterns (a directory leaves out what it holds)? */
export function dockerIgnored(patterns: readonly string[], path: string): boolean {
  const parts = path.split('/');
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = posix.normalize((negate ? raw.slice(1) : raw).replace(/^\/+/, ''));
    const pp = pattern.split('/');
    for (let n = 1; n <= parts.length; n++) {
      const prefix = parts.slice(0, n);
      if (prefix.length === pp.length && pp.every((p, i) => segmentMatch(p, prefix[i] as string))) {
        ignored = !negate;
        break;
      }
    }
  }
  return ignored;
}

export function dockerignorePatterns(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

/** The files of a clean copy: tracked and new ones git does not ignore, less .dockerignore's. */
function contextFiles(): string[] {
  const patterns = dockerignorePatterns(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
  return files.filter((f) => existsSync(join(ROOT, f)) && !dockerIgnored(patterns, f));
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'wdb-image-'));
  const keep = process.argv.includes('--keep');
  try {
    const context = join(work, 'context');
    for (const f of contextFiles()) {
      mkdirSync(dirname(join(context, f)), { recursive: true });
      cpSync(join(ROOT, f), join(context, f));
    }
    say(`build context: ${context}`);
    const stages = parseDockerfile(readFileSync(join(context, 'Dockerfile'), 'utf8'));
    const dirs = new Map<string, string>();
    let final = '';
    for (const [n, stage] of stages.entries()) {
      const label = stage.name ?? `stage ${n}`;
      const dir = join(work, `stage-${n}`);
      mkdirSync(dir, { recursive: true });
      dirs.set(stage.name ?? String(n), dir);
      const last = n === stages.length - 1;
      const workdir = stage.steps.filter((s) => s.op === 'WORKDIR').at(-1)?.args ?? '/';
      // Paths in the image under WORKDIR map into this stage's directory.
      const inStage = (p: string, base: string) => join(base, posix.relative(workdir, posix.resolve(workdir, p)));
      say(`\n== ${label} (FROM ${stage.image}, WORKDIR ${workdir})`);
      for (const step of stage.steps) {
        if (step.op === 'COPY') {
          const { from, sources, dest } = copyParts(step.args);
          const fromDir = from === undefined ? context : dirs.get(from);
          if (!fromDir) throw new Error(`line ${step.line}: no stage named ${from ?? ''}`);
          for (const src of sources) {
            const source = from === undefined ? join(context, src) : inStage(src, fromDir);
            if (!existsSync(source)) throw new Error(`line ${step.line}: COPY ${from ? `--from=${from} ` : ''}${src}: not there`);
            const target = inStage(dest.endsWith('/') || sources.length > 1 ? posix.join(dest, posix.basename(src)) : dest, dir);
            mkdirSync(dirname(target), { recursive: true });
            cpSync(source, target, { recursive: true });
          }
          say(`COPY ${step.args}`);
        } else if (step.op === 'RUN') {
          if (last) {
            say(`RUN ${step.args}   (the image's own system: not run here)`);
            continue;
          }
          say(`RUN ${step.args}`);
          const r = spawnSync('sh', ['-c', step.args], { cwd: dir, stdio: 'inherit', env: { ...process.env, ...envOf(stage) } });
          if (r.status !== 0) throw new Error(`line ${step.line}: RUN failed (${r.status})`);
        }
      }
      if (last) final = dir;
    }
    const image = stages.at(-1) as Stage;
    const cmd = execForm(image.steps.filter((s) => s.op === 'CMD').at(-1)?.args ?? '');
    if (!cmd) throw new Error('the final CMD must be in exec form');
    const health = image.steps.filter((s) => s.op === 'HEALTHCHECK').at(-1)?.args ?? '';
    const healthCmd = execForm(health.slice(health.indexOf('CMD') + 3).trim());
    if (!healthCmd) throw new Error('the HEALTHCHECK must be CMD in exec form');
    const dataDir = join(work, 'data');
    const env = { PATH: process.env['PATH'] ?? '', ...envOf(image), DATA_DIR: dataDir, PORT: String(30000 + Math.floor(Math.random() * 20000)), HOST: '127.0.0.1', WECHAT_TOKEN: 'imagecheck1', DIFY_API_KEY: 'app-image-check', DIFY_BASE_URL: 'http://127.0.0.1:9/v1', ANSWER_PAGE: 'off' };
    say(`\n== start: ${cmd.join(' ')} (in ${final})`);
    const child = spawn(cmd[0] as string, cmd.slice(1), { cwd: final, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const until = Date.now() + 20_000;
    while (!out.includes('"msg":"listening"')) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`the server did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const probe = spawnSync(healthCmd[0] as string, healthCmd.slice(1), { cwd: final, env, encoding: 'utf8' });
    say(`HEALTHCHECK ${healthCmd.join(' ').slice(0, 60)}…: exit ${probe.status}`);
    child.kill('SIGTERM');
    const code = await exited;
    say(`SIGTERM: exit ${code}`);
    if (probe.status !== 0 || code !== 0) throw new Error(`health check ${probe.status}, exit ${code}:\n${out}`);
    say('\nimage:check passed: the build steps ran, the CMD starts, the health check answers, SIGTERM stops it cleanly.');
  } finally {
    if (keep) say(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`image:check failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

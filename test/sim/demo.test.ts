/**
 * `npm run demo` as a real process: piped (a file, a CI log) it prints no colour codes; on a terminal
 * its side notes are dimmed, unless NO_COLOR is set (scripts/colour.ts). The terminal is a real
 * pseudo-terminal from script(1) (util-linux); without it those cases are skipped.
 */
import { spawn, spawnSync } from 'child_process';
import { existsSync } from 'fs';
import { fileURLToPath } from 'url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = ['/usr/bin/script', '/bin/script'].find((p) => existsSync(p));
const ESC = '\x1b';

function run(command: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawn(command, args, { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    }),
  );
}

describe('npm run demo’s colours', () => {
  it('piped: the whole conversation, without a colour code', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { DEMO_SCALE: '0.1' });
    expect(r.code).toBe(0);
    expect(r.out).toContain('deliveries: reply@');
    expect(r.out).toContain('The model was called');
    expect(r.out).not.toContain(ESC);
  });

  it.skipIf(!SCRIPT)('on a terminal: side notes dimmed; with NO_COLOR plain (script(1) gives the terminal)', () => {
    // The demo's own helper, in a process whose stdout is a pseudo-terminal.
    const code = `${JSON.stringify(process.execPath)} --import tsx -e "console.log(require('./scripts/colour.ts').dim('note'))"`;
    const tty = (env: Record<string, string>) => spawnSync(SCRIPT as string, ['-qec', code, '/dev/null'], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env }, encoding: 'utf8', timeout: 30_000 });
    const coloured = tty({});
    expect(coloured.status).toBe(0);
    expect(coloured.stdout).toContain(`${ESC}[2mnote${ESC}[0m`);
    const plain = tty({ NO_COLOR: '1' });
    expect(plain.stdout).toContain('note');
    expect(plain.stdout).not.toContain(ESC);
  });
});

/** Run the real server (`npm start`'s entry) as a child process, for crash and restart tests. */
import { spawn } from 'child_process';
import type { ChildProcess } from 'child_process';
import { fileURLToPath } from 'url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  /** The Official Account's webhook (`<origin>/wechat`). */
  url: string;
  /** http://127.0.0.1:<port> */
  origin: string;
  output: string[];
  /** Resolves with the exit code (null when a signal ended it) once the process has exited. */
  exit: Promise<number | null>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** Run the server entry to its exit (start-up failures); its exit code and everything it printed. */
export function runServerToExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (output += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    }),
  );
}

/**
 * Start a server process: `npm start`'s entry, or with `instance` the test entry that adds the
 * example channel and opens the shared store (test/support/instance-server.ts).
 */
export async function spawnServer(env: Record<string, string>, opts: { instance?: boolean } = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', opts.instance ? 'test/support/instance-server.ts' : 'scripts/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const origin = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output.join('')}`)), 20_000);
    const onData = (b: Buffer) => {
      output.push(b.toString());
      const m = /"url":"(http:\/\/[^"]+)"/.exec(b.toString());
      if (m) {
        clearTimeout(timer);
        resolve((m[1] as string).replace('0.0.0.0', '127.0.0.1'));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (b: Buffer) => output.push(b.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output.join('')}`));
    });
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const exited = exit.then(() => undefined);
  return {
    child,
    url: `${origin}/wechat`,
    origin,
    output,
    exit,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

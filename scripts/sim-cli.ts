/**
 * What the simulator commands (`npm run dify-sim`, `openai-sim`, `wecom-sim`, `ilink-sim`) share: their
 * default ports, chosen so that all of them can run at once (the iLink simulator takes two: its
 * redirect host listens on the port after its own); reading a port variable; and a port that cannot be
 * had told in one line naming the port and the variable that moves it, instead of a stack trace.
 */

export const SIM_PORTS = {
  DIFY_SIM_PORT: 8790,
  OPENAI_SIM_PORT: 8791,
  WECOM_SIM_PORT: 8792,
  WECOM_BOT_SIM_PORT: 8793,
  /** And 8795, the port after it, for the redirect host. */
  ILINK_SIM_PORT: 8794,
} as const;
export type SimPortVariable = keyof typeof SIM_PORTS;

/** A port a simulator command listens on, the variable that moves it, and what it is when not the variable's own. */
export interface SimPortUse {
  port: number;
  variable: SimPortVariable;
  what?: string;
}

function fail(line: string, code: number): never {
  process.stderr.write(`${line}\n`);
  process.exit(code);
}

/** The port `variable` sets (its default when unset; 0: any free port); a value that is no port ends the command with a line saying so. */
export function simPort(command: string, variable: SimPortVariable, room = 0): number {
  const raw = process.env[variable];
  if (raw === undefined || raw.trim() === '') return SIM_PORTS[variable];
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535 - room) fail(`${command}: ${variable} must be a port number from 1 to ${65535 - room} (or 0: any free port); it is "${raw}"`, 2);
  return n;
}

/** Run a simulator command: a port that cannot be had (or any other failure to start) is one line on stderr and exit code 1. */
export function runSim(command: string, uses: readonly SimPortUse[], main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    const e = err as NodeJS.ErrnoException & { port?: number };
    const use = uses.find((u) => u.port === e.port) ?? (uses.length === 1 ? uses[0] : undefined);
    if (use && (e.code === 'EADDRINUSE' || e.code === 'EACCES')) {
      const port = `port ${use.port}${use.what ? ` (${use.what})` : ''}`;
      const example = `${use.variable}=${SIM_PORTS[use.variable] + 100} npm run ${command}`;
      fail(
        e.code === 'EADDRINUSE'
          ? `${command}: ${port} is already in use (another simulator or server, or this one still running): stop it, or set ${use.variable} to a free port, e.g. ${example}`
          : `${command}: ${port} needs privileges this user lacks: set ${use.variable} to a port above 1023, e.g. ${example}`,
        1,
      );
    }
    fail(`${command}: could not start: ${err instanceof Error ? err.message : String(err)}`, 1);
  });
}

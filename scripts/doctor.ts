/** `npm run doctor`: check a deployment before WeChat does (lib/adapters/server/doctor.ts). */
import { runDoctor } from '../lib/adapters/server/doctor';

void runDoctor().then(
  ({ code, lines }) => {
    process.stdout.write(`${lines.join('\n')}\n`);
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`doctor failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);

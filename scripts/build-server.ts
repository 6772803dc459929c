/**
 * `npm run build:server [-- --out DIR]`: the Node server as one file, dist/server.js, and `npm run
 * doctor` as dist/doctor.js (npm packages stay `require`s), with the browser's Markdown renderer
 * built in (scripts/renderer-plugin.ts). The Dockerfile copies exactly these two files.
 */
import { build } from 'esbuild';
import { join, resolve } from 'path';
import { inlineRenderer } from './renderer-plugin';

const ROOT = resolve(__dirname, '..');

const at = process.argv.indexOf('--out');
const outdir = at > 0 && process.argv[at + 1] ? resolve(process.argv[at + 1] as string) : join(ROOT, 'dist');

build({
  entryPoints: [join(ROOT, 'scripts/server.ts'), join(ROOT, 'scripts/doctor.ts')],
  outdir,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
  plugins: [inlineRenderer],
}).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

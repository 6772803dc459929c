/**
 * `npm run build:server`: the Node server as one file, dist/server.js (npm packages stay `require`s),
 * with the browser's Markdown renderer built in (scripts/renderer-plugin.ts).
 */
import { build } from 'esbuild';
import { join, resolve } from 'path';
import { inlineRenderer } from './renderer-plugin';

const ROOT = resolve(__dirname, '..');

build({
  entryPoints: [join(ROOT, 'scripts/server.ts')],
  outfile: join(ROOT, 'dist/server.js'),
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

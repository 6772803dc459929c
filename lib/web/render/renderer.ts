/**
 * The browser's Markdown renderer as one script (`md.js`, ~150 KB minified, ~54 KB gzipped):
 * lib/web/render/md-entry.ts bundled by esbuild for old WebViews (ES2017). Measured against writing a
 * small renderer of our own (docs/web-chat.md "Rendering"): the same code as the server means the
 * same safety rules, reviewed once, and no jump when the final server-rendered HTML replaces the
 * live view.
 *
 * Built here, once per process, where the sources and esbuild are at hand (tests, `tsx`); the
 * server and laf builds (scripts/build-server.ts, scripts/build-laf.ts) replace this module with the
 * script built ahead, gzipped (scripts/renderer-plugin.ts). Where neither is possible the pages show
 * the answer as plain text while it streams, as before.
 */
import { createHash } from 'crypto';
import { join } from 'path';
import type * as Esbuild from 'esbuild';

/**
 * markdown-it only decodes entities, but the `entities` package builds its 23 KB encoding table when
 * loaded, which no bundler can drop: it is left out of the browser's copy.
 */
const withoutEntityEncoder: Esbuild.Plugin = {
  name: 'without-entity-encoder',
  setup(b) {
    b.onLoad({ filter: /[\\/]entities[\\/]lib[\\/]esm[\\/]generated[\\/]encode-html\.js$/ }, () => ({ contents: 'export default new Map();', loader: 'js' }));
  },
};

/** How md-entry.ts becomes the browser's script; scripts/renderer-plugin.ts builds with the same. */
export async function buildRenderer(esbuild: typeof Esbuild, entry = join(__dirname, 'md-entry.ts')): Promise<string> {
  const out = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    // WeChat's and other in-app browsers lag behind: nothing newer than ES2017.
    target: 'es2017',
    minify: true,
    write: false,
    charset: 'utf8',
    legalComments: 'none',
    logLevel: 'error',
    plugins: [withoutEntityEncoder],
    banner: { js: '/*! wechat-dify-bot Markdown renderer: lib/text/html.ts with markdown-it 14 (MIT), entities (BSD-2-Clause), linkify-it, mdurl, uc.micro, punycode.js (MIT) */' },
  });
  const file = out.outputFiles[0];
  if (!file) throw new Error('esbuild wrote no renderer');
  return file.text;
}

export interface Renderer {
  script: string;
  /** A short hash of the script, for cache-busting URLs. */
  version: string;
}

let built: Promise<Renderer | null> | undefined;

/** The renderer script, or null where it cannot be built (then pages stream plain text). */
export function renderer(): Promise<Renderer | null> {
  built ??= import('esbuild')
    .then((esbuild) => buildRenderer(esbuild))
    .then((script) => ({ script, version: createHash('sha256').update(script).digest('hex').slice(0, 12) }))
    .catch(() => null);
  return built;
}

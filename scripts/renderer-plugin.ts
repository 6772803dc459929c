/**
 * The browser's Markdown renderer, built ahead and put into a server or laf bundle
 * (lib/web/render/renderer.ts): a deployed bundle has neither the sources nor esbuild at hand. It goes
 * in gzipped (base64), ~65 KB instead of ~98 KB, since a laf function carries the whole app under
 * laf's 512 KB limit (docs/laf.md), and is unzipped once, at its first request; only the functions
 * that serve pages carry it (scripts/build-laf.ts).
 */
import { createHash } from 'crypto';
import * as esbuild from 'esbuild';
import type { Plugin } from 'esbuild';
import { resolve } from 'path';
import { gzipSync } from 'zlib';
import { buildRenderer } from '../lib/web/render/renderer';

const ROOT = resolve(__dirname, '..');

export const inlineRenderer: Plugin = {
  name: 'inline-renderer',
  setup(b) {
    b.onLoad({ filter: /[\\/]lib[\\/]web[\\/]render[\\/]renderer\.ts$/ }, async () => {
      const script = await buildRenderer(esbuild, resolve(ROOT, 'lib/web/render/md-entry.ts'));
      const gz = gzipSync(Buffer.from(script, 'utf8'), { level: 9 }).toString('base64');
      const version = createHash('sha256').update(script).digest('hex').slice(0, 12);
      return {
        loader: 'ts',
        contents: [
          "import { gunzipSync } from 'zlib';",
          `const GZ = ${JSON.stringify(gz)};`,
          'export interface Renderer { script: string; version: string }',
          'let made: Renderer | undefined;',
          `export function renderer(): Promise<Renderer | null> { made ??= { script: gunzipSync(Buffer.from(GZ, 'base64')).toString('utf8'), version: ${JSON.stringify(version)} }; return Promise.resolve(made); }`,
          "export async function buildRenderer(): Promise<string> { throw new Error('the renderer was built ahead'); }",
        ].join('\n'),
      };
    });
  },
};

/** For functions that never serve a page (webhooks, the console): the renderer left out, ~65 KB less under laf's limit. */
export const withoutRenderer: Plugin = {
  name: 'without-renderer',
  setup(b) {
    b.onLoad({ filter: /[\\/]lib[\\/]web[\\/]render[\\/]renderer\.ts$/ }, () => ({
      loader: 'ts',
      contents: [
        'export interface Renderer { script: string; version: string }',
        'export function renderer(): Promise<Renderer | null> { return Promise.resolve(null); }',
        "export async function buildRenderer(): Promise<string> { throw new Error('this function serves no page'); }",
      ].join('\n'),
    }));
  },
};

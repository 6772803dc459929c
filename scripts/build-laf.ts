/**
 * `npm run build:laf [-- --out DIR]`: write deployable laf function sources to dist/laf (or DIR).
 *
 * Each function in functions/ is bundled with our own code from lib/ (laf deploys only functions/),
 * npm packages left as `require` calls that laf resolves from the app's dependencies. The output is
 * CommonJS JavaScript in a `.ts` file: laf's TypeScript 4.9.5 transpile leaves it as it is. The
 * embedded store is not part of it (laf's store is its MongoDB; lib/adapters/laf/entry.ts).
 * laf.yaml and each function's .yaml are copied beside them, so `laf func push` works from DIR.
 */
import { build } from 'esbuild';
import type { Plugin } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, statSync } from 'fs';
import { dirname, join, resolve, sep } from 'path';
import { inlineRenderer, withoutRenderer } from './renderer-plugin';

const ROOT = resolve(__dirname, '..');
/** laf refuses function code over 512 KB (docs/laf.md). */
export const LAF_MAX_FUNCTION_BYTES = 512 * 1024;

/**
 * The console's uPlot files go into the bundle as text: on laf the function's `require` has no
 * `resolve` to find them in node_modules (lib/web/console/uplot.ts).
 */
const inlineUplot: Plugin = {
  name: 'inline-uplot',
  setup(b) {
    b.onLoad({ filter: /[\\/]lib[\\/]web[\\/]console[\\/]uplot\.ts$/ }, () => {
      const read = (name: string) => readFileSync(require.resolve(`uplot/dist/${name}`), 'utf8');
      const files = { 'uPlot.iife.min.js': read('uPlot.iife.min.js'), 'uPlot.min.css': read('uPlot.min.css') };
      return {
        loader: 'ts',
        contents: `const FILES: Record<string, string> = ${JSON.stringify(files)};\nexport type UplotFile = 'uPlot.iife.min.js' | 'uPlot.min.css';\nexport function uplotAsset(name: UplotFile): string | null { return FILES[name] ?? null; }\n`,
      };
    });
  },
};

/**
 * The page functions never serve the console (the `admin` function does), so they go without the
 * uPlot files its charts are drawn with (53 KB): room under laf's limit for the code they do run.
 */
const withoutUplot: Plugin = {
  name: 'without-uplot',
  setup(b) {
    b.onLoad({ filter: /[\\/]lib[\\/]web[\\/]console[\\/]uplot\.ts$/ }, () => ({
      loader: 'ts',
      contents: "export type UplotFile = 'uPlot.iife.min.js' | 'uPlot.min.css';\nexport function uplotAsset(_name: UplotFile): string | null { return null; }\n",
    }));
  },
};

/** The functions that serve pages with live Markdown (the answer page, the web chat). */
const PAGE_FUNCTIONS = new Set(['answer', 'chat']);

/**
 * The functions that serve pages carry the renderer, and are the nearest to laf's size limit; the
 * deployment checks (npm run doctor's: lib/web/doctor.ts, lib/store/check.ts, the Official Account's
 * lib/channels/wechat-oa/check.ts) run only in the `admin` function (the console's 检查 page), so the
 * page functions go without them.
 */
const withoutChecks: Plugin = {
  name: 'without-checks',
  setup(b) {
    b.onLoad({ filter: /[\\/]lib[\\/]web[\\/]doctor\.ts$/ }, () => ({
      loader: 'ts',
      contents: [
        "import type { Check } from '../util/checks';",
        "export async function runChecks(): Promise<Check[]> { throw new Error('the checks run in the admin function'); }",
        'export function checkLines(): string[] { return []; }',
      ].join('\n'),
    }));
    b.onLoad({ filter: /[\\/]lib[\\/]store[\\/]check\.ts$/ }, () => ({
      loader: 'ts',
      contents: [
        "import type { Check } from '../util/checks';",
        "export async function mongoChecks(): Promise<Check[]> { throw new Error('the checks run in the admin function'); }",
        "export function embeddedChecks(): Check[] { throw new Error('the checks run in the admin function'); }",
      ].join('\n'),
    }));
    b.onLoad({ filter: /[\\/]lib[\\/]channels[\\/]wechat-oa[\\/]check\.ts$/ }, () => ({
      loader: 'ts',
      contents: [
        "import type { Check } from '../../util/checks';",
        "export async function wechatSelfCheck(): Promise<Check[]> { throw new Error('the checks run in the admin function'); }",
      ].join('\n'),
    }));
  },
};

export interface BuiltFunction {
  name: string;
  file: string;
  bytes: number;
}

export async function buildLaf(outDir: string): Promise<BuiltFunction[]> {
  const fnDir = join(ROOT, 'functions');
  // laf names a function by its path, slashes included (`v1/chat/completions` serves /v1/chat/completions);
  // laf-cli keeps such a function in the folders of its name.
  const names = (readdirSync(fnDir, { recursive: true, encoding: 'utf8' }) as string[])
    .map((f) => f.split(sep).join('/'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
  const outFns = join(outDir, 'functions');
  mkdirSync(outFns, { recursive: true });
  const options = {
    outdir: outFns,
    outbase: fnDir,
    outExtension: { '.js': '.ts' },
    bundle: true,
    platform: 'node' as const,
    format: 'cjs' as const,
    target: 'es2022',
    packages: 'external' as const,
    charset: 'utf8' as const,
    legalComments: 'none' as const,
    // laf refuses a function over 512 KiB, and the page functions carry the browser's renderer: whitespace
    // goes (names stay, so stack traces still read), which leaves room for the channels each bundle holds.
    minifyWhitespace: true,
    logLevel: 'warning' as const,
    banner: { js: '// Generated by `npm run build:laf` from wechat-dify-bot\'s lib/: edit the sources, not this file.' },
    // laf returns `module.exports` (current runtime) or a local `exports` object (older runtimes): serve both.
    footer: { js: 'exports.default = module.exports.default;' },
  };
  // Only the functions that serve pages carry the browser's Markdown renderer.
  const pages = names.filter((n) => PAGE_FUNCTIONS.has(n));
  const others = names.filter((n) => !PAGE_FUNCTIONS.has(n));
  const entries = (list: string[]) => list.map((n) => join(fnDir, `${n}.ts`));
  if (pages.length > 0) await build({ ...options, entryPoints: entries(pages), plugins: [withoutUplot, inlineRenderer, withoutChecks] });
  if (others.length > 0) await build({ ...options, entryPoints: entries(others), plugins: [inlineUplot, withoutRenderer] });
  const built: BuiltFunction[] = [];
  for (const name of names) {
    mkdirSync(dirname(join(outFns, name)), { recursive: true });
    copyFileSync(join(fnDir, `${name}.yaml`), join(outFns, `${name}.yaml`));
    const file = join(outFns, `${name}.ts`);
    const bytes = statSync(file).size;
    if (bytes > LAF_MAX_FUNCTION_BYTES) throw new Error(`${name}: ${bytes} bytes, over laf's ${LAF_MAX_FUNCTION_BYTES}-byte limit`);
    built.push({ name, file, bytes });
  }
  copyFileSync(join(ROOT, 'laf.yaml'), join(outDir, 'laf.yaml'));
  return built;
}

if (require.main === module) {
  const i = process.argv.indexOf('--out');
  const out = resolve(i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : join(ROOT, 'dist', 'laf'));
  buildLaf(out).then(
    (fns) => {
      for (const f of fns) console.log(`${f.file}  ${(f.bytes / 1024).toFixed(1)} KB`);
      console.log(`laf project in ${out}: cd there, then laf app init / laf dep push / laf func push (README "Deploy to laf / sealaf").`);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

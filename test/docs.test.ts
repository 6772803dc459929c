/**
 * The repository's comments and docs point only at files that exist in it: every `docs/….md` (and
 * every relative Markdown link inside docs/ and the README) resolves, and nothing cites the
 * reference notes this project was written from, which a clone of the repository does not have.
 */
import { existsSync, readFileSync, readdirSync } from 'fs';
import { dirname, join, resolve } from 'path';
import { fileURLToPath } from 'url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

function files(dir: string, exts: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => exts.test(f) && !f.includes('node_modules'))
    .map((f) => join(ROOT, dir, f));
}

const sources = [
  ...['lib', 'scripts', 'bench', 'test', 'functions', 'types', 'docs'].flatMap((d) => files(d, /\.(ts|mjs|md|yaml)$/)),
  ...['README.md', 'BENCHMARKS.md', 'eslint.config.mjs', 'vitest.config.ts', 'laf.yaml'].map((f) => join(ROOT, f)),
].filter((f) => f !== SELF);

describe('documentation references', () => {
  it('every docs/….md a file mentions exists', () => {
    const missing: string[] = [];
    for (const file of sources) {
      for (const m of readFileSync(file, 'utf8').matchAll(/\bdocs\/([\w-]+\.md)/g)) {
        if (!existsSync(join(ROOT, 'docs', m[1] as string))) missing.push(`${file.slice(ROOT.length)} → docs/${m[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('every relative link in docs/ and the README resolves', () => {
    const broken: string[] = [];
    for (const file of [...files('docs', /\.md$/), join(ROOT, 'README.md')]) {
      for (const m of readFileSync(file, 'utf8').matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        const target = m[1] as string;
        if (/^[a-z]+:/i.test(target)) continue; // an absolute URL
        if (!existsSync(resolve(dirname(file), target))) broken.push(`${file.slice(ROOT.length)} → ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('nothing cites notes that are not in the repository', () => {
    const outside = /\b(wechat-protocol|dify-api|laf-platform|openai-compatible|line-messaging-api|discord-interactions|pitfalls|test-infrastructure)\.md\b|\bDEVELOPERS\.md\b|shared\/docs/;
    const found = sources.filter((f) => outside.test(readFileSync(f, 'utf8'))).map((f) => f.slice(ROOT.length));
    expect(found).toEqual([]);
  });
});

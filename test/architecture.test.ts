/**
 * The layout is the architecture (docs/architecture.md): lower layers never import higher ones, the
 * core names no channel and no backend, a channel folder uses no other channel's code (but the
 * shared WeChat crypto, lib/channels/wxbiz), and the worker imports nothing from a backend folder.
 * Checked on the sources, so a change that breaks the map fails here.
 */
import { readFileSync, readdirSync } from 'fs';
import { dirname, join, relative, resolve } from 'path';
import { fileURLToPath } from 'url';
import { describe, expect, it } from 'vitest';
import { BACKEND_KINDS } from '../lib/backends';
import { CHANNEL_KINDS } from '../lib/channels';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LIB = join(ROOT, 'lib');
const files = readdirSync(LIB, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(LIB, f));

/** The lib-relative targets of a file's relative imports (`core/answerer`, `store`, …). */
function imports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  return [...src.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => relative(LIB, resolve(dirname(file), m[1] as string)));
}
const area = (libPath: string) => libPath.split('/')[0] as string;
const libPathOf = (file: string) => relative(LIB, file);

/** What each area may import besides itself. */
const ALLOWED: Record<string, readonly string[]> = {
  util: ['errors'],
  text: ['util', 'errors'],
  errors: [],
  store: ['util', 'errors'],
  core: ['util', 'text', 'store', 'errors'],
  backends: ['core', 'util', 'text', 'errors'],
  channels: ['core', 'util', 'text', 'store', 'errors'],
  web: ['core', 'channels', 'config', 'util', 'text', 'store', 'errors'],
  config: ['core', 'channels', 'backends', 'errors'],
  app: ['core', 'channels', 'backends', 'web', 'util', 'text', 'store', 'errors', 'config'],
  adapters: ['app', 'config', 'core', 'web', 'util', 'store', 'errors'],
  sim: ['util', 'channels', 'backends', 'text', 'errors'],
};

describe('the architecture', () => {
  it('lower layers never import higher ones', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const from = area(libPathOf(file)).replace(/\.ts$/, '');
      const allowed = ALLOWED[from];
      if (!allowed) {
        wrong.push(`${libPathOf(file)}: an area the map does not know`);
        continue;
      }
      for (const target of imports(file)) {
        const to = area(target).replace(/\.ts$/, '');
        if (to === from || to.startsWith('..')) continue;
        if (!allowed.includes(to)) wrong.push(`${libPathOf(file)} → ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('a channel uses no other channel’s code (only the shared WeChat crypto)', () => {
    const wrong: string[] = [];
    // lib/channels/index.ts is the registration of every kind.
    for (const file of files.filter((f) => libPathOf(f).startsWith('channels/') && libPathOf(f) !== 'channels/index.ts')) {
      const own = libPathOf(file).split('/')[1] as string;
      for (const target of imports(file)) {
        const parts = target.split('/');
        if (parts[0] !== 'channels' || parts.length < 3) continue;
        if (parts[1] !== own && parts[1] !== 'wxbiz') wrong.push(`${libPathOf(file)} → ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('the core names no channel and no backend (comments aside)', () => {
    const names = [...CHANNEL_KINDS.map((k) => k.kind), ...BACKEND_KINDS.map((b) => b.kind), 'wechat', 'wecom', 'ilink'];
    const found: string[] = [];
    for (const file of files.filter((f) => libPathOf(f).startsWith('core/'))) {
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/\/\/.*$/gm, '');
      for (const m of code.matchAll(/'([^'\n]*)'|"([^"\n]*)"|`([^`]*)`/g)) {
        const literal = (m[1] ?? m[2] ?? m[3] ?? '').toLowerCase();
        for (const n of names) if (literal === n || literal.startsWith(`${n}:`) || literal.startsWith(`${n}-`)) found.push(`${libPathOf(file)}: '${literal}'`);
      }
    }
    expect(found).toEqual([]);
  });

  it('the worker asks backends only through the answerer port', () => {
    expect(imports(join(LIB, 'core/worker.ts')).filter((t) => t.startsWith('backends'))).toEqual([]);
  });
});

/**
 * uPlot's files (MIT, a small canvas charting library), served by the console rather than fetched
 * from a CDN. Read from node_modules here; the laf build inlines them instead
 * (scripts/build-laf.ts), because a laf function's `require` has no `resolve` (docs/laf.md).
 */
import { readFileSync } from 'fs';

export type UplotFile = 'uPlot.iife.min.js' | 'uPlot.min.css';

const cache = new Map<UplotFile, string | null>();

/** One of uPlot's files, read once; null where the package is missing (the console then shows numbers only). */
export function uplotAsset(name: UplotFile): string | null {
  if (!cache.has(name)) {
    try {
      cache.set(name, readFileSync(require.resolve(`uplot/dist/${name}`), 'utf8'));
    } catch {
      cache.set(name, null);
    }
  }
  return cache.get(name) ?? null;
}

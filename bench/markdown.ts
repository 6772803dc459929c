/**
 * Markdown → text on hostile answers: a fuzzer looks for the slowest inputs (repetitions of short
 * markup units, the shape that makes parsers super-linear), then the worst ones are timed at
 * 100 KB and 200 KB. Equal ms per KB at both sizes means linear; the target is < 50 ms per 100 KB.
 */
import { markdownToText } from '../lib/text/markdown';

const UNITS = [
  '[', ']', '(', ')', '![', '](', '*', '**', '_', '__', '`', '``', '~~', '<', '>', '#', '# ', '|', '-', '- ', '1. ',
  '\\', '"', "'", '\n', '\n\n', ' ', '  \n', 'a', '中', 'http://', '<http://', '[a]', '[a]: b\n', '```\n', '> ', '    ', '&', '!',
];

/** A small deterministic PRNG (mulberry32), so a run can be repeated. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function repeatTo(unit: string, chars: number): string {
  return unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars);
}

function time(text: string, rounds: number): number {
  const runs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    markdownToText(text);
    runs.push(performance.now() - t);
  }
  return runs.sort((a, b) => a - b)[Math.floor(runs.length / 2)] as number;
}

export interface MarkdownBench {
  candidates: number;
  worst: { unit: string; ms100: number; ms200: number }[];
  /** A realistic long answer (headings, lists, tables, code, links) for comparison. */
  typicalMs100: number;
}

export function benchMarkdown(opts: { candidates?: number; seed?: number } = {}): MarkdownBench {
  const next = rng(opts.seed ?? 1);
  const pick = () => UNITS[Math.floor(next() * UNITS.length)] as string;
  const candidates = new Set<string>(UNITS);
  while (candidates.size < (opts.candidates ?? 400)) {
    const parts = 1 + Math.floor(next() * 4);
    let unit = '';
    for (let i = 0; i < parts; i++) unit += pick();
    candidates.add(unit);
  }
  // Warm up the JIT on ordinary text first, so the first candidate is not charged for it.
  for (let i = 0; i < 20; i++) markdownToText(repeatTo('## 标题\n\n一段 **文字** [链接](https://a.b) `code`\n\n', 20_000));
  const screened = [...candidates].map((unit) => ({ unit, ms: time(repeatTo(unit, 20_000), 1) })).sort((a, b) => b.ms - a.ms);
  const worst = screened.slice(0, 8).map(({ unit }) => ({
    unit,
    ms100: time(repeatTo(unit, 100_000), 5),
    ms200: time(repeatTo(unit, 200_000), 3),
  }));
  worst.sort((a, b) => b.ms100 - a.ms100);
  const section = (i: number) =>
    `## 第 ${i} 节\n\n这是**第 ${i} 节**，讲 [Dify](https://dify.ai) 与 \`code\`。${'很长的句子，'.repeat(20)}\n\n- 要点一\n- 要点二\n\n| 名称 | 说明 |\n|---|---|\n| a | b |\n\n\`\`\`js\nconsole.log(${i});\n\`\`\`\n\n`;
  let typical = '';
  for (let i = 1; typical.length < 100_000; i++) typical += section(i);
  return { candidates: candidates.size, worst, typicalMs100: time(typical.slice(0, 100_000), 5) };
}

if (require.main === module) {
  const r = benchMarkdown();
  console.log(`screened ${r.candidates} repeated-unit inputs; typical answer: ${r.typicalMs100.toFixed(1)} ms per 100 KB`);
  for (const w of r.worst) console.log(`${JSON.stringify(w.unit).padEnd(16)} ${w.ms100.toFixed(1)} ms/100KB  ${w.ms200.toFixed(1)} ms/200KB`);
}

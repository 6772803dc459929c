/**
 * Half-written Markdown, made to render as what it is becoming (docs/web-chat.md "Rendering"): the
 * browser renders an answer while it streams in, and a table whose separator row has not arrived yet
 * would otherwise show as a paragraph of pipes, an unclosed `**` as two stars, an unclosed inline code
 * span as a backtick, until the next piece lands. Only the end of the text is ever half-written, so
 * only its last block is completed; an open code fence needs nothing (markdown-it runs it to the
 * end). Pure, for the browser bundle (lib/web/render/md-entry.ts) and tests.
 */

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
/** A table row as models write them: it starts with a pipe (not indented as code). */
const ROW = /^ {0,3}\|/;
/** A delimiter row, whole or still being written: pipes, dashes, colons, spaces. */
const DELIMITER = /^ {0,3}\|[\s:|-]*$/;

/** The cells of a table row (the outer pipes are optional; `\|` is part of a cell). No lookbehind: old WebViews lack it. */
function cellCount(row: string): number {
  const inner = row.trim().replace(/\\\|/g, '\u0000').replace(/^\|/, '').replace(/\|$/, '');
  return inner.split('|').length;
}

const isRow = (line: string | undefined): boolean => line !== undefined && ROW.test(line) && !DELIMITER.test(line);

/** Is the text inside an open code fence at its end? */
function inOpenFence(lines: readonly string[]): boolean {
  let open: { char: string; len: number } | undefined;
  for (const line of lines) {
    const m = FENCE.exec(line);
    if (!m) continue;
    const run = m[1] as string;
    if (!open) open = { char: run[0] as string, len: run.length };
    else if (run[0] === open.char && run.length >= open.len && line.trim() === run) open = undefined;
  }
  return open !== undefined;
}

/** Close an unclosed `**` and an unclosed inline code span on the last line. */
function closeInline(line: string): string {
  if (FENCE.test(line)) return line;
  let out = line;
  const ticks = (out.match(/`/g) ?? []).length;
  if (ticks % 2 === 1) return `${out}\``; // inside a code span nothing else is markup
  const outsideCode = out.replace(/`[^`]*`/g, '');
  const stars = (outsideCode.match(/\*\*/g) ?? []).length;
  // A line ending in the opening marker alone (`**`) has nothing to emphasise yet.
  if (stars % 2 === 1 && !/\*\*\s*$/.test(out)) out += '**';
  return out;
}

/** `text` as it should render while more is still coming. */
export function liveMarkdown(text: string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  if (inOpenFence(lines)) return text;
  const n = lines.length;
  const last = lines[n - 1] as string;
  const delimiter = (header: string) => `|${' --- |'.repeat(cellCount(header))}`;
  // A header row with no delimiter row yet: the table it will be.
  if (isRow(last) && !ROW.test(lines[n - 2] ?? '') && cellCount(last) >= 2) {
    return [...lines, delimiter(last)].join('\n');
  }
  // A delimiter row still being written under a header.
  const header = lines[n - 2];
  if (DELIMITER.test(last) && header !== undefined && isRow(header) && !ROW.test(lines[n - 3] ?? '') && cellCount(header) >= 2) {
    return [...lines.slice(0, n - 1), delimiter(header)].join('\n');
  }
  const closed = closeInline(last);
  return closed === last ? text : [...lines.slice(0, n - 1), closed].join('\n');
}

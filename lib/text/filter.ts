/**
 * Blocked words (BLOCKED_WORDS): does a text contain one? Matching ignores case, width (全角 and
 * 半角 letters and digits are the same after NFKC) and spacing (whitespace and zero-width
 * characters between the letters of a word are skipped), and takes time linear in the text's
 * length whatever the words: an Aho–Corasick automaton, built once. Pure: no I/O, no clock.
 */

/** Characters that never separate a word: they are skipped in words and texts alike. */
const SPACING = /[\s\u200b-\u200d\u2060\ufeff]/u;

/** Folded characters, kept: texts repeat a few thousand characters, and NFKC per character is the main cost. */
const folded = new Map<string, string>();

/** One character as matching sees it: NFKC, lower case; '' for spacing. */
function fold(ch: string): string {
  let f = folded.get(ch);
  if (f === undefined) {
    f = SPACING.test(ch) ? '' : ch.normalize('NFKC').toLowerCase();
    // Bounded: past it, characters are folded afresh each time (still correct, just slower).
    if (folded.size < 65_536) folded.set(ch, f);
  }
  return f;
}

function foldAll(text: string): string {
  let out = '';
  for (const ch of text) out += fold(ch);
  return out;
}

interface Node {
  next: Map<string, number>;
  fail: number;
  /** The longest word ending here (directly or through fail links). */
  word: string | undefined;
}

export interface WordFilter {
  /** How many words it matches. */
  readonly size: number;
  /** The first blocked word found in `text` (as configured), if any. */
  find(text: string): string | undefined;
  /** A scanner for text that arrives in pieces (a streaming answer): each piece is scanned once. */
  scanner(): { feed(piece: string): string | undefined };
}

export function createWordFilter(words: readonly string[]): WordFilter {
  const nodes: Node[] = [{ next: new Map(), fail: 0, word: undefined }];
  let size = 0;
  for (const original of words) {
    const w = foldAll(original);
    if (w === '') continue;
    let at = 0;
    for (const ch of w) {
      let to = nodes[at]?.next.get(ch);
      if (to === undefined) {
        to = nodes.length;
        nodes.push({ next: new Map(), fail: 0, word: undefined });
        nodes[at]?.next.set(ch, to);
      }
      at = to;
    }
    const end = nodes[at] as Node;
    if (end.word === undefined) size++;
    end.word ??= original.trim();
  }
  // Breadth-first fail links; a node inherits the word of its fail target when it has none.
  const queue: number[] = [];
  for (const to of (nodes[0] as Node).next.values()) queue.push(to);
  for (let i = 0; i < queue.length; i++) {
    const n = nodes[queue[i] as number] as Node;
    for (const [ch, to] of n.next) {
      let f = n.fail;
      while (f !== 0 && !(nodes[f] as Node).next.has(ch)) f = (nodes[f] as Node).fail;
      const target = (nodes[f] as Node).next.get(ch);
      const child = nodes[to] as Node;
      child.fail = target !== undefined && target !== to ? target : 0;
      child.word ??= (nodes[child.fail] as Node).word;
      queue.push(to);
    }
  }

  const step = (state: number, ch: string): number => {
    let s = state;
    for (;;) {
      const to = (nodes[s] as Node).next.get(ch);
      if (to !== undefined) return to;
      if (s === 0) return 0;
      s = (nodes[s] as Node).fail;
    }
  };

  const scanner = () => {
    let state = 0;
    return {
      feed(piece: string): string | undefined {
        if (size === 0) return undefined;
        for (const raw of piece) {
          const folded = fold(raw);
          // NFKC may turn one character into several (㎏ → kg): each goes through the automaton.
          for (const ch of folded) {
            state = step(state, ch);
            const hit = (nodes[state] as Node).word;
            if (hit !== undefined) return hit;
          }
        }
        return undefined;
      },
    };
  };

  return {
    size,
    find: (text) => scanner().feed(text),
    scanner,
  };
}

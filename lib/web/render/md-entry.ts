/**
 * The browser's Markdown renderer (docs/web-chat.md "Rendering"): the server's own code
 * (lib/text/html.ts: markdown-it, raw HTML off, only http(s) and mailto links, images as links),
 * bundled for the browser by lib/web/render/renderer.ts, so an answer rendered while it streams follows
 * exactly the rules of the final HTML that replaces it. Never loaded on the server.
 */
import { markdownToHtml } from '../../text/html';
import { liveMarkdown } from './partial';

(globalThis as { wdbMarkdown?: unknown }).wdbMarkdown = {
  /** A complete answer. */
  render: markdownToHtml,
  /** An answer still being written: its half-written end completed first. */
  live: (text: string) => markdownToHtml(liveMarkdown(text)),
};

/**
 * Keyword replies (README "Keyword replies"): the account's fixed answers, such as opening hours or
 * prices, which server mode would otherwise hide (WeChat turns off the console's own keyword replies
 * when a server URL is enabled). Checked after commands and before the model, which never sees them.
 */
import type { KeywordReplies } from './settings';
import { normalizeKeyword } from './settings';

/** The fixed reply for `text` and the keyword that matched, if one does: the whole message first, then the longest prefix. */
export function keywordReply(table: KeywordReplies, text: string): { keyword: string; reply: string } | undefined {
  const key = normalizeKeyword(text);
  if (key === '') return undefined;
  const exact = Object.prototype.hasOwnProperty.call(table.exact, key) ? table.exact[key] : undefined;
  if (exact !== undefined) return { keyword: key, reply: exact };
  for (const [prefix, reply] of table.prefixes) if (key.startsWith(prefix)) return { keyword: `prefix:${prefix}`, reply };
  return undefined;
}

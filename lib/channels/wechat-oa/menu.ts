/**
 * The account's custom menu in WeChat's own format (docs/wechat.md), checked before it is
 * published so a mistake is named here rather than answered with an error code: at most 3 buttons
 * with at most 5 sub-buttons each, names within 16 bytes (top) and 60 bytes (sub), a known type
 * with the fields it needs, and every `click` key one the bot handles (MENU_KEYS).
 */

export interface MenuButton {
  name: string;
  type?: string;
  key?: string;
  url?: string;
  appid?: string;
  pagepath?: string;
  media_id?: string;
  article_id?: string;
  sub_button?: MenuButton[];
}

export interface Menu {
  button: MenuButton[];
}

/** Button types that send an event with the button's `key`. */
const KEYED = new Set(['click', 'scancode_push', 'scancode_waitmsg', 'pic_sysphoto', 'pic_photo_or_album', 'pic_weixin', 'location_select']);
const TYPES = new Set([...KEYED, 'view', 'miniprogram', 'media_id', 'article_id', 'article_view_limited']);

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** Check `value` as a menu; the problems found, each naming the button (empty: it is fine). */
export function menuProblems(value: unknown, handledKeys: readonly string[]): string[] {
  const problems: string[] = [];
  if (!value || typeof value !== 'object' || !Array.isArray((value as Menu).button)) return ['must be {"button": [...]} in WeChat\'s menu format'];
  const top = (value as Menu).button;
  if (top.length === 0 || top.length > 3) problems.push(`has ${top.length} buttons; WeChat allows 1 to 3`);
  const check = (b: unknown, where: string, level: 'top' | 'sub') => {
    if (!b || typeof b !== 'object') return problems.push(`${where} is not an object`);
    const btn = b as MenuButton;
    if (typeof btn.name !== 'string' || btn.name.trim() === '') problems.push(`${where} has no name`);
    else if (bytes(btn.name) > (level === 'top' ? 16 : 60)) problems.push(`${where} "${btn.name}" is over ${level === 'top' ? 16 : 60} bytes (${level === 'top' ? 'about 5' : 'about 20'} Chinese characters)`);
    const label = typeof btn.name === 'string' ? `${where} "${btn.name}"` : where;
    if (level === 'top' && Array.isArray(btn.sub_button) && btn.sub_button.length > 0) {
      if (btn.sub_button.length > 5) problems.push(`${label} has ${btn.sub_button.length} sub-buttons; WeChat allows 5`);
      btn.sub_button.forEach((s, j) => check(s, `${label} › sub-button ${j + 1}`, 'sub'));
      return;
    }
    if (typeof btn.type !== 'string' || !TYPES.has(btn.type)) return problems.push(`${label} has type ${JSON.stringify(btn.type)}; known: ${[...TYPES].join(', ')}`);
    if (KEYED.has(btn.type)) {
      if (typeof btn.key !== 'string' || btn.key === '' || bytes(btn.key) > 128) problems.push(`${label} needs a key of 1 to 128 bytes`);
      else if (btn.type === 'click' && !handledKeys.includes(btn.key)) problems.push(`${label} sends key "${btn.key}", which MENU_KEYS does not map (the click would do nothing)`);
    }
    if ((btn.type === 'view' || btn.type === 'miniprogram') && (typeof btn.url !== 'string' || !/^https?:\/\//.test(btn.url) || bytes(btn.url) > 1024)) {
      problems.push(`${label} needs an http(s) url of at most 1024 bytes`);
    }
    if (btn.type === 'miniprogram' && (typeof btn.appid !== 'string' || typeof btn.pagepath !== 'string')) problems.push(`${label} needs appid and pagepath`);
    if (btn.type === 'media_id' && typeof btn.media_id !== 'string') problems.push(`${label} needs media_id`);
    if ((btn.type === 'article_id' || btn.type === 'article_view_limited') && typeof btn.article_id !== 'string') problems.push(`${label} needs article_id`);
    return undefined;
  };
  top.forEach((b, i) => check(b, `button ${i + 1}`, 'top'));
  return problems;
}

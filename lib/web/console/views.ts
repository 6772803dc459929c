/**
 * The console's pages as HTML (docs/console.md): pure functions of what the handler read. Every
 * value from the store, the config or WeChat is escaped here; nothing here reads or writes state.
 */
import type { Check } from '../../util/checks';
import type { KeywordReplies } from '../../core/settings';
import type { Menu, MenuButton } from '../../channels/wechat-oa/menu';
import { WECHAT_ERRORS } from '../../channels/wechat-oa/api';
import type { MessageRecord, QuestionStatus, StatsRecord } from '../../store';
import { isTestUser, pageCount, statCount } from '../../store';
import { escapeHtml } from '../../text/html';
import { quote } from '../../text/quote';

/** Builds the console's URLs: `/admin/<path>` on the Node server, `/admin?p=<path>` on laf (one function, routed by name). */
export type ConsoleUrl = (path: string, query?: Record<string, string>) => string;

export function consoleUrls(routes: 'path' | 'laf'): ConsoleUrl {
  return (path, query = {}) => {
    const q = Object.entries(query).map(([k, v]) => `${k}=${encodeURIComponent(v)}`);
    if (routes === 'laf') return `/admin${path ? `?p=${encodeURIComponent(path)}${q.length ? '&' + q.join('&') : ''}` : q.length ? '?' + q.join('&') : ''}`;
    return `/admin${path}${q.length ? '?' + q.join('&') : ''}`;
  };
}

/** The counters the overview's table shows, by their dotted names in a day's record. */
const COUNTERS: [string, string][] = [
  ['questions', '问题'],
  ['answered', '已回答'],
  ['failed', '失败'],
  ['cleared', '已清除'],
  ['via.reply1', '首次回复送达'],
  ['via.reply2', '第二次'],
  ['via.reply3', '第三次'],
  ['via.fetch', '回复 1'],
  ['via.push', '推送'],
  ['via.page', '网页'],
  ['via.api', 'API'],
  ['keywords', '关键词回复'],
  ['tokens', 'tokens'],
  ['test.questions', '测试'],
];

export const STATUSES: readonly QuestionStatus[] = ['pending', 'answered', 'failed', 'cleared'];

/** An OpenID as the console's lists show it: enough to tell users apart, not enough to reuse. */
export function maskOpenId(key: string): string {
  if (isTestUser(key)) return key; // the console's own test user
  // The channel's tag stays readable; the platform's id is masked.
  const at = key.lastIndexOf(':');
  const [tag, id] = at === -1 ? ['', key] : [key.slice(0, at + 1), key.slice(at + 1)];
  return tag + (id.length <= 8 ? '…' : `${id.slice(0, 4)}…${id.slice(-4)}`);
}

export interface Shell {
  u: ConsoleUrl;
  csrf: string;
  /** A personal-WeChat (iLink) channel is on: its page is in the navigation. */
  ilink?: boolean;
}

/** The links at the top of every page after login, and logout. */
export function nav(s: Shell, here: string): string {
  const items: [string, string][] = [
    ['', '概览'],
    ['/try', '试一试'],
    ['/menu', '菜单与关键词'],
    ...(s.ilink ? [['/ilink', 'iLink'] as [string, string]] : []),
    ['/health', '健康'],
  ];
  const links = items.map(([p, label]) => (p === here ? `<strong>${label}</strong>` : `<a href="${escapeHtml(s.u(p))}">${label}</a>`)).join(' · ');
  return (
    `<nav class="nav">${links} · <form class="inline" method="post" action="${escapeHtml(s.u('/logout'))}">` +
    `<input type="hidden" name="csrf" value="${s.csrf}"><button type="submit">退出</button></form></nav>`
  );
}

const table = (head: string, rows: string, empty: string, cols: number) =>
  `<div class="md"><div class="table"><table><thead>${head}</thead><tbody>${rows || `<tr><td colspan="${cols}">${empty}</td></tr>`}</tbody></table></div></div>`;

export interface OverviewData {
  days: string[];
  chartDays: string[];
  stats: StatsRecord[];
  recent: MessageRecord[];
  status: QuestionStatus | undefined;
  /** The channel instances on (`wechat-oa`, `line@shop`, …), and the one the list is filtered to. */
  channels: readonly string[];
  channel: string | undefined;
  offsetMin: number;
  seal: (key: string) => string;
}

const when = (offsetMin: number, ms: number | undefined) => (ms === undefined ? '' : new Date(ms + offsetMin * 60_000).toISOString().slice(5, 19).replace('T', ' '));
const seconds = (from: number, to: number | undefined) => (to === undefined ? '' : ((to - from) / 1000).toFixed(1));

export function overviewPage(s: Shell, d: OverviewData): string {
  const byDay = new Map(d.stats.map((r) => [r._id, r]));
  const head = `<tr><th>日期</th>${COUNTERS.map(([, label]) => `<th>${escapeHtml(label)}</th>`).join('')}</tr>`;
  const rows = d.days.map((day) => `<tr><td>${day}</td>${COUNTERS.map(([k]) => `<td>${statCount(byDay.get(day), k)}</td>`).join('')}</tr>`).join('');
  const keep = (o: Record<string, string | undefined>) => Object.fromEntries(Object.entries(o).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));
  const filters = ['', ...STATUSES].map((st) => (st === (d.status ?? '') ? `<strong>${st || '全部'}</strong>` : `<a href="${escapeHtml(s.u('', keep({ status: st, channel: d.channel })))}">${st || '全部'}</a>`)).join(' · ');
  // With more than one channel instance, the list can show one of them.
  const byChannel =
    d.channels.length > 1
      ? `<p>渠道：${['', ...d.channels].map((c) => (c === (d.channel ?? '') ? `<strong>${escapeHtml(c || '全部')}</strong>` : `<a href="${escapeHtml(s.u('', keep({ status: d.status, channel: c })))}">${escapeHtml(c || '全部')}</a>`)).join(' · ')}</p>`
      : '';
  const recentRows = d.recent
    .map(
      (q) =>
        `<tr><td>${when(d.offsetMin, q.createdAt)}</td><td>${escapeHtml(q.channel ?? '')}</td><td>${escapeHtml(maskOpenId(q.user))}</td>` +
        `<td><a href="${escapeHtml(s.u('/q', { r: d.seal(q._id) }))}">${escapeHtml(quote(q.question ?? ''))}</a></td>` +
        `<td>${escapeHtml(q.status ?? '')}</td><td>${q.deliveries}</td><td>${escapeHtml(q.deliveredVia ?? '')}</td>` +
        `<td>${seconds(q.createdAt, q.firstTextAt)}</td><td>${seconds(q.createdAt, q.answeredAt)}</td><td>${seconds(q.createdAt, q.deliveredAt)}</td>` +
        `<td>${escapeHtml(q.backend ?? '')}</td><td>${escapeHtml(q.failure?.code ?? '')}</td></tr>`,
    )
    .join('');
  return (
    `${nav(s, '')}<h1>控制台</h1>` +
    `<div id="charts" data-api="${escapeHtml(s.u('/api/stats', { days: '14' }))}" data-days="${d.chartDays.join(',')}"></div>` +
    '<h2>最近 7 天</h2><p>每个问题的结局，按天统计（“测试”是控制台“试一试”的问题，不计入其他列）。</p>' +
    table(head, rows, '', COUNTERS.length + 1) +
    `<h2>最近的问题</h2>${byChannel}<p>${filters}</p>` +
    table(
      '<tr><th>时间</th><th>渠道</th><th>用户</th><th>问题</th><th>状态</th><th>投递</th><th>送达方式</th><th>首字 s</th><th>回答 s</th><th>送达 s</th><th>后端</th><th>错误</th></tr>',
      recentRows,
      '还没有问题。',
      12,
    )
  );
}

/** One question in full: the record view (the only place the OpenID is shown whole). */
export function recordPage(s: Shell, q: MessageRecord, offsetMin: number): string {
  const row = (k: string, v: string) => `<tr><th>${k}</th><td>${v}</td></tr>`;
  const at = (ms: number | undefined) => (ms === undefined ? '' : `${escapeHtml(when(offsetMin, ms))} (+${seconds(q.createdAt, ms)} s)`);
  const takers = (q.takers ?? []).map((t, i) => `${i + 1}: ${t === q._id ? '本条消息的回复' : t === 'push' ? '推送' : t === 'page' ? '网页' : '回复 1'}`).join('；');
  const fields = [
    row('渠道', escapeHtml(q.channel ?? '')),
    row('用户', escapeHtml(q.user)),
    row('状态', escapeHtml(q.status ?? '')),
    row('后端', escapeHtml(q.backend ?? '')),
    row('提问', escapeHtml(when(offsetMin, q.createdAt))),
    row('首个字', at(q.firstTextAt)),
    row('回答完成', at(q.answeredAt)),
    row('送达', `${escapeHtml(q.deliveredVia ?? '未送达')} ${at(q.deliveredAt)}`),
    row('微信投递次数', String(q.deliveries)),
    row('占位回复', q.placeholderSent ? '已发出' : '没有'),
    row('已送出页数', `${q.pagesDelivered ?? 0} / ${pageCount(q)}${takers ? `（${escapeHtml(takers)}）` : ''}`),
    row('网页', q.readOnPage ? '已在网页中读完' : ''),
    row('推送', (q.pushes ?? []).map((p) => `第 ${p.page} 页 ${escapeHtml(when(offsetMin, p.at))} ${p.errcode === 0 ? '已送达' : `微信错误 ${p.errcode}${WECHAT_ERRORS[p.errcode] ? `（${escapeHtml(WECHAT_ERRORS[p.errcode] as string)}）` : ''}`}`).join('<br>')),
    // Each file of the answer, and how each channel delivered it (docs/rich-answers.md); the host only.
    row('图片和文件', (q.parts ?? []).map((p, i) => {
      let host = '';
      try {
        host = new URL(p.url).host;
      } catch {
        // not a URL
      }
      const how = Object.entries(p.sent ?? {}).map(([c, o]) => `${c}：${o}`).join('，');
      return `${i + 1}. ${p.kind === 'image' ? '图片' : '文件'} ${escapeHtml(p.name ?? '')} （${escapeHtml(host)}）${how ? ` ${escapeHtml(how)}` : ''}`;
    }).join('<br>')),
    row('模型调用次数', String(q.attempts ?? 1)),
    row('tokens', String(q.usage?.total_tokens ?? '')),
    row('错误', q.failure ? escapeHtml(`${q.failure.code} (${q.failure.kind}, HTTP ${q.failure.status}${q.failure.backendCode ? `, ${q.failure.backendCode}` : ''})`) : ''),
  ].join('');
  return (
    `${nav(s, '/q')}<h1>问题详情</h1><blockquote class="q">${escapeHtml(q.question ?? '')}</blockquote>` +
    `<div class="md"><div class="table"><table><tbody>${fields}</tbody></table></div></div>` +
    `<h2>回答</h2><pre class="plain">${escapeHtml(q.answer ?? '')}</pre>`
  );
}

export function tryPage(s: Shell): string {
  return (
    `${nav(s, '/try')}<h1>试一试</h1>` +
    '<p>以控制台测试用户的身份提问：和微信用户走同样的流程（命令、关键词、回复 1、网页里的实时回答），只是只投递一次；统计里单独记为“测试”。</p>' +
    `<div id="try" data-api="${escapeHtml(s.u('/api/try'))}" data-csrf="${s.csrf}"><div id="chat" class="chat" aria-live="polite"></div>` +
    '<form id="ask"><textarea name="text" rows="3" maxlength="2000" required placeholder="输入问题，或 /help、1、/clear"></textarea><button type="submit">发送</button></form></div>' +
    '<noscript><p class="failed">试一试需要 JavaScript。</p></noscript>'
  );
}

/** WeChat's menu as a nested list: names, types, keys and links (get_current_selfmenu_info nests sub-buttons under `list`). */
function menuList(buttons: readonly MenuButton[]): string {
  const items = buttons.map((b) => {
    const raw = b.sub_button as unknown;
    const subs = Array.isArray(raw) ? (raw as MenuButton[]) : Array.isArray((raw as { list?: unknown } | undefined)?.list) ? ((raw as { list: MenuButton[] }).list) : [];
    const what = [b.type, b.key ? `key=${b.key}` : '', b.url ?? ''].filter(Boolean).join(' ');
    return `<li>${escapeHtml(String(b.name ?? ''))}${what ? ` <code>${escapeHtml(what)}</code>` : ''}${subs.length ? menuList(subs) : ''}</li>`;
  });
  return `<ul>${items.join('')}</ul>`;
}

export interface MenuData {
  configured: Menu | undefined;
  /** The live menu, why it could not be read, or that the API is not configured. */
  live: { open: boolean; menu: Menu | undefined } | { error: string } | { unconfigured: string };
  /** The result of a publish just done. */
  notice?: { ok: boolean; text: string } | undefined;
  keywords: KeywordReplies;
  /** Replies per keyword over the last 7 days. */
  keywordCounts: (name: string) => number;
}

export function menuPage(s: Shell, d: MenuData): string {
  const notice = d.notice ? `<p class="${d.notice.ok ? 'ok' : 'failed'}" role="status">${escapeHtml(d.notice.text)}</p>` : '';
  let live: string;
  if ('unconfigured' in d.live) live = `<p class="failed">${escapeHtml(d.live.unconfigured)}</p>`;
  else if ('error' in d.live) live = `<p class="failed">${escapeHtml(d.live.error)}</p>`;
  else if (!d.live.open || !d.live.menu) live = '<p>公众号现在没有自定义菜单。</p>';
  else live = menuList(d.live.menu.button);
  const publish =
    d.configured && !('unconfigured' in d.live)
      ? `<form method="post" action="${escapeHtml(s.u('/menu/publish'))}"><input type="hidden" name="csrf" value="${s.csrf}"><button type="submit">发布 MENU 里的菜单</button></form>`
      : '';
  const configured = d.configured
    ? `${menuList(d.configured.button)}<details><summary>JSON</summary><pre class="plain">${escapeHtml(JSON.stringify(d.configured, null, 2))}</pre></details>${publish}`
    : '<p>没有设置 <code>MENU</code>（微信的菜单格式，见 README “Menus”）。</p>';
  const short = (t: string) => escapeHtml(t.length > 80 ? `${t.slice(0, 80)}…` : t);
  const kw = [
    ...Object.entries(d.keywords.exact).map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>完全一致</td><td>${short(v)}</td><td>${d.keywordCounts(k)}</td></tr>`),
    ...d.keywords.prefixes.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>开头是</td><td>${short(v)}</td><td>${d.keywordCounts(`prefix:${k}`)}</td></tr>`),
  ].join('');
  return (
    `${nav(s, '/menu')}<h1>菜单与关键词</h1>${notice}` +
    `<h2>用户现在看到的菜单</h2>${live}` +
    `<h2>配置里的菜单（MENU）</h2>${configured}` +
    '<h2>关键词回复（KEYWORD_REPLIES，只读）</h2>' +
    table('<tr><th>关键词</th><th>匹配</th><th>回复</th><th>7 天内次数</th></tr>', kw, '没有设置关键词回复。', 4)
  );
}

export interface HealthItem {
  name: string;
  ok: boolean | undefined;
  text: string;
}

export function healthPage(s: Shell, items: readonly HealthItem[]): string {
  const rows = items
    .map((i) => `<tr><th>${escapeHtml(i.name)}</th><td class="${i.ok === false ? 'failed' : i.ok ? 'ok' : ''}">${i.ok === false ? '✗' : i.ok ? '✓' : '–'}</td><td>${escapeHtml(i.text)}</td></tr>`)
    .join('');
  return (
    `${nav(s, '/health')}<h1>健康</h1>` +
    table('<tr><th>项目</th><th></th><th>状态</th></tr>', rows, '', 3) +
    `<p><a href="${escapeHtml(s.u('/doctor'))}">运行完整检查</a>（与 <code>npm run doctor</code> 相同：凭据、服务器 URL、存储的一致性、时钟、PUBLIC_URL；需要几秒）</p>`
  );
}

/** The checks of `npm run doctor`, run by this server (lib/web/doctor.ts). */
export function doctorPage(s: Shell, checks: readonly Check[]): string {
  const failed = checks.filter((c) => c.ok === false).length;
  const rows = checks
    .map(
      (c) =>
        `<tr><th>${escapeHtml(c.name)}</th><td class="${c.ok === false ? 'failed' : c.ok ? 'ok' : ''}">${c.ok === false ? '✗' : c.ok ? '✓' : '–'}</td>` +
        `<td>${escapeHtml(c.detail)}${c.fix && c.ok !== true ? `<br><small>怎么办：${escapeHtml(c.fix)}</small>` : ''}</td></tr>`,
    )
    .join('');
  return (
    `${nav(s, '/health')}<h1>检查</h1><p>${failed === 0 ? `全部 ${checks.length} 项通过。` : `${checks.length} 项中 ${failed} 项未通过。`}</p>` +
    table('<tr><th>项目</th><th></th><th>结果</th></tr>', rows, '', 3)
  );
}

/** One personal-WeChat (iLink) channel instance on its console page. */
export interface IlinkView {
  name: string;
  /** The session: none, live (masked ids), or ended by the service (-14). */
  session: { state: 'none' } | { state: 'live' | 'expired'; botId: string; token: string; owner: string; source: 'qr' | 'env'; savedAt: number; expiredAt: number | undefined };
  /** A login in progress or just ended, with its QR code drawn as SVG while one is shown. */
  login: { status: string; done: boolean; result: string | undefined; qrSvg: string | undefined; qr: string | undefined } | undefined;
  polling: string;
}

/** What a login status means to the owner. */
const LOGIN_STATUS: Record<string, string> = {
  starting: '正在获取二维码…',
  wait: '请用将要拥有机器人的微信扫描二维码。',
  scaned: '已扫码，请在手机上确认。',
  need_verifycode: '手机上显示了一串数字，请填在下面。',
  verify_code_blocked: '验证码错误次数过多，正在换一个二维码。',
  expired: '二维码已过期，正在换一个。',
  scaned_but_redirect: '已扫码，正在跟随到另一个数据中心…',
  confirmed: '已确认，登录成功。',
  bound: '这个机器人已经绑定在本服务上，沿用现有会话。',
  failed: '登录失败。',
};

export function ilinkPage(s: Shell, items: readonly IlinkView[], offsetMin: number): string {
  const at = (t: number) => new Date(t + offsetMin * 60_000).toISOString().slice(0, 16).replace('T', ' ');
  const sections = items.map((it) => {
    const ss = it.session;
    const session =
      ss.state === 'none'
        ? '<p class="failed">未登录。</p>'
        : `<div class="md"><div class="table"><table><tbody>` +
          `<tr><th>状态</th><td class="${ss.state === 'live' ? 'ok' : 'failed'}">${ss.state === 'live' ? '在线' : `已失效（-14，${escapeHtml(at(ss.expiredAt ?? 0))}）：请重新登录；未送达的回答会在用户下次发消息时送达`}</td></tr>` +
          `<tr><th>机器人</th><td>${escapeHtml(ss.botId)}</td></tr><tr><th>令牌</th><td>${escapeHtml(ss.token)}</td></tr>` +
          `<tr><th>主人</th><td>${escapeHtml(ss.owner || '—')}</td></tr><tr><th>来源</th><td>${ss.source === 'env' ? 'ILINK_BOT_TOKEN' : '扫码登录'}，${escapeHtml(at(ss.savedAt))}</td></tr>` +
          `<tr><th>轮询</th><td>${escapeHtml(it.polling)}</td></tr></tbody></table></div></div>`;
    const l = it.login;
    let login = '';
    if (l && !l.done) {
      login =
        `<p role="status">${escapeHtml(LOGIN_STATUS[l.status] ?? l.status)}</p>` +
        (l.qrSvg ? `<div class="qr">${l.qrSvg}</div><p><small>扫不了时，在手机上打开：${escapeHtml(l.qr ?? '')}</small></p>` : '') +
        (l.status === 'need_verifycode'
          ? `<form method="post" action="${escapeHtml(s.u('/ilink/verify'))}"><input type="hidden" name="csrf" value="${s.csrf}"><input type="hidden" name="channel" value="${escapeHtml(it.name)}">` +
            '<label>手机上的数字 <input name="code" inputmode="numeric" pattern="[0-9]{1,12}" required autocomplete="one-time-code"></label> <button type="submit">提交</button></form>'
          : '');
    } else if (l?.done) login = `<p class="${l.status === 'confirmed' || l.status === 'bound' ? 'ok' : 'failed'}" role="status">上次登录：${escapeHtml(LOGIN_STATUS[l.status] ?? l.status)}${l.result ? `（${escapeHtml(l.result)}）` : ''}</p>`;
    const button =
      `<form method="post" action="${escapeHtml(s.u('/ilink/login'))}"><input type="hidden" name="csrf" value="${s.csrf}"><input type="hidden" name="channel" value="${escapeHtml(it.name)}">` +
      `<button type="submit">${ss.state === 'none' ? '扫码登录' : '重新登录'}</button></form>`;
    return `<h2>${escapeHtml(it.name)}</h2>${session}${login}${button}`;
  });
  return (
    `${nav(s, '/ilink')}<h1>个人微信（iLink）</h1>` +
    '<p>机器人是你自己微信里的一个联系人（ClawBot 插件）。手机上要一直保留 ClawBot 插件；会话被腾讯结束（-14）后需要重新扫码。</p>' +
    (sections.join('') || '<p>没有开启 iLink（设置 <code>ILINK=on</code>）。</p>')
  );
}

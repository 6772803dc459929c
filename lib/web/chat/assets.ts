/**
 * The web chat's stylesheet, script and embeddable widget, served by us (the CSP allows nothing
 * else). Plain ES2017 for WeChat's and other in-app browsers; no inline script or style anywhere
 * (the widget sets styles through the CSSOM, which a host page's CSP allows). Mobile first: the
 * page is the viewport's height, the composer stays above the keyboard and the home indicator.
 */
import type { CoreConfig } from '../../core/settings';

export const CHAT_CSS = `:root{color-scheme:light dark;--fg:#1f2328;--muted:#6b7280;--bg:#f4f5f7;--panel:#fff;--me:#07c160;--me-fg:#fff;--bot:#fff;--line:#e2e5e9;--code:#f3f4f6;--accent:#07c160;--accent-fg:#fff;--link:#0a7a43;--outer:#e8eaed;--bad:#c62828;--stop:#d93025}
@media (prefers-color-scheme:dark){:root{--fg:#e8e8e8;--muted:#9aa0a6;--bg:#111213;--panel:#1b1c1e;--me:#1d8f52;--me-fg:#f4fff8;--bot:#1b1c1e;--line:#2e3033;--code:#26282b;--accent:#2fd37a;--accent-fg:#06210f;--link:#4ade80;--outer:#08090a;--bad:#ef9a9a;--stop:#ff8a80}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%;height:100%}
body{margin:0;height:100%;background:var(--bg);color:var(--fg);font:16px/1.75 -apple-system,BlinkMacSystemFont,"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","Segoe UI",Roboto,sans-serif;overflow-wrap:anywhere;word-break:normal;line-break:strict;-webkit-font-smoothing:antialiased}
button,textarea,input{font:inherit;color:inherit}
[hidden]{display:none!important}
#app{display:flex;flex-direction:column;height:100vh;height:100dvh;max-width:880px;margin:0 auto;background:var(--bg)}
.bar{display:flex;align-items:center;gap:12px;padding:10px 16px;padding-top:max(10px,env(safe-area-inset-top));padding-left:max(16px,env(safe-area-inset-left));padding-right:max(16px,env(safe-area-inset-right));background:var(--panel);border-bottom:1px solid var(--line)}
.bar h1{flex:1;margin:0;font-size:17px;font-weight:600;letter-spacing:.02em;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.ghost{flex:none;border:1px solid var(--line);background:transparent;border-radius:999px;padding:4px 14px;font-size:14px;line-height:1.6;cursor:pointer}
.ghost:hover{border-color:var(--muted)}
#log{flex:1;overflow-y:auto;overscroll-behavior:contain;-webkit-overflow-scrolling:touch;padding:16px;padding-left:max(16px,env(safe-area-inset-left));padding-right:max(16px,env(safe-area-inset-right))}
.more{text-align:center;margin:0 0 16px}
.empty{color:var(--muted);text-align:center;margin:28vh 0 0;font-size:15px}
.turn{margin:0 0 20px}
.q{margin:0 0 10px auto;width:fit-content;max-width:85%;padding:8px 14px;border-radius:16px 16px 4px 16px;background:var(--me);color:var(--me-fg);white-space:pre-wrap}
.a{width:fit-content;min-width:3em;max-width:100%;padding:10px 14px;border-radius:4px 16px 16px 16px;background:var(--bot);border:1px solid var(--line)}
.status{color:var(--muted);font-size:14px;display:flex;align-items:center;gap:8px}
.status::before{content:"";flex:none;width:8px;height:8px;border-radius:50%;background:var(--accent);animation:pulse 1.2s ease-in-out infinite}
@keyframes pulse{50%{opacity:.25}}
.streaming .body>:last-child::after{content:"";display:inline-block;width:.5em;height:1em;margin-left:2px;vertical-align:-.15em;background:var(--accent);animation:pulse 1s steps(2) infinite}
@media (prefers-reduced-motion:reduce){.status::before,.streaming .body>:last-child::after{animation:none}}
.note{color:var(--muted);font-size:13px;margin-top:6px}
.failed{color:var(--bad)}
.reply{white-space:pre-wrap}
.divider{display:flex;align-items:center;gap:12px;color:var(--muted);font-size:13px;margin:8px 0 20px}
.divider::before,.divider::after{content:"";flex:1;border-top:1px solid var(--line)}
.composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px;padding-bottom:max(10px,env(safe-area-inset-bottom));padding-left:max(12px,env(safe-area-inset-left));padding-right:max(12px,env(safe-area-inset-right));background:var(--panel);border-top:1px solid var(--line)}
#input{flex:1;min-width:0;min-height:42px;max-height:40vh;resize:none;margin:0;padding:8px 14px;line-height:1.6;border:1px solid var(--line);border-radius:21px;background:var(--bg);outline:none}
#input:focus{border-color:var(--accent)}
#send,#stop{flex:none;height:42px;min-width:64px;padding:0 18px;border:0;border-radius:21px;font-weight:600;cursor:pointer}
#send{background:var(--accent);color:var(--accent-fg)}
#send:disabled{opacity:.45;cursor:default}
#stop{background:transparent;color:var(--stop);border:1px solid var(--stop)}
.gate{max-width:420px;margin:20vh auto 0;padding:0 20px;text-align:center}
.gate h1{font-size:20px}
.gate input{width:12em;max-width:100%;padding:6px 12px;border:1px solid var(--line);border-radius:8px;background:var(--panel)}
.gate input:focus{outline:2px solid var(--accent);outline-offset:1px}
.gate button{padding:6px 16px;border:0;border-radius:8px;background:var(--accent);color:var(--accent-fg);font-weight:600}
.error{color:var(--bad)}
.md>:first-child{margin-top:0}.md>:last-child{margin-bottom:0}
.md h1,.md h2,.md h3,.md h4{line-height:1.45;margin:1.2em 0 .5em}
.md h1{font-size:1.35em}.md h2{font-size:1.22em}.md h3{font-size:1.1em}.md h4{font-size:1em}
.md p,.md ul,.md ol,.md blockquote,.md pre,.md .table{margin:0 0 .9em}
.md ul,.md ol{padding-left:1.5em}
.md li+li{margin-top:.2em}
.md blockquote{margin-left:0;padding:0 1em;color:var(--muted);border-left:3px solid var(--line)}
.md a{color:var(--link);text-decoration:underline;text-underline-offset:2px}
.md code{font:.88em/1.6 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;background:var(--code);padding:.1em .35em;border-radius:4px}
.md pre{background:var(--code);padding:10px 12px;border-radius:8px;overflow-x:auto;-webkit-overflow-scrolling:touch}
.md pre code{padding:0;background:none;white-space:pre;overflow-wrap:normal;word-break:normal}
.md .plain,pre.plain{white-space:pre-wrap;font:inherit;background:none;padding:0}
.md .table{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
.md table{border-collapse:collapse;font-size:14px}
.md th,.md td{border:1px solid var(--line);padding:5px 10px;text-align:left;vertical-align:top;overflow-wrap:normal;word-break:keep-all;min-width:3em}
.md th{background:var(--code);white-space:nowrap}
.md .align-right{text-align:right}.md .align-center{text-align:center}
.md hr{border:0;border-top:1px solid var(--line);margin:1.2em 0}
.md img{max-width:100%;height:auto;border-radius:8px;vertical-align:middle}
.md .parts{margin:.6em 0 0;display:flex;flex-direction:column;align-items:flex-start;gap:8px}
.md a.file{display:inline-block;padding:6px 12px;border:1px solid var(--line);border-radius:8px;text-decoration:none}
body.embed .bar{padding-top:8px;padding-bottom:8px;padding-right:56px}
body.embed .bar h1{font-size:16px}
@media (min-width:768px){body{background:var(--outer)}body.embed{background:var(--bg)}#app{border-left:1px solid var(--line);border-right:1px solid var(--line)}#log{padding:24px 28px}.q{max-width:70%}.composer{padding:14px 20px}body.embed #app{border:0}}
`;

export const CHAT_JS = `(function () {
  'use strict';
  var app = document.getElementById('app');
  if (!app) return;
  var d = app.dataset;
  var $ = function (id) { return document.getElementById(id); };
  var log = $('log'), turnsEl = $('turns'), input = $('input'), form = $('composer');
  var sendBtn = $('send'), stopBtn = $('stop'), newBtn = $('new'), moreEl = $('more'), olderBtn = $('older'), emptyEl = $('empty');
  var md = window.wdbMarkdown || null;
  var RENDER_MS = 150;
  var running = null;      // the turn being answered
  var sending = false;
  var generation = 0;      // the visitor's current conversation
  var serverOldest = null; // when the oldest turn fetched so far was asked: the next page is before it
  var held = [];           // earlier conversations' turns, fetched but shown only on request
  var moreOnServer = false;
  var turnOf = {};          // turns by id
  var coarse = window.matchMedia && window.matchMedia('(pointer: coarse)').matches;

  function url(base, params) {
    var q = [];
    for (var k in params) if (params[k] !== undefined && params[k] !== null) q.push(k + '=' + encodeURIComponent(params[k]));
    return q.length ? base + (base.indexOf('?') < 0 ? '?' : '&') + q.join('&') : base;
  }
  function call(method, base, params, body, done) {
    var x = new XMLHttpRequest();
    x.open(method, url(base, params), true);
    if (method === 'POST') {
      x.setRequestHeader('Content-Type', 'application/json');
      x.setRequestHeader('X-CSRF-Token', d.csrf);
    }
    x.onload = function () {
      var res = null;
      try { res = JSON.parse(x.responseText); } catch (e) {}
      if (x.status === 401 || (x.status === 403 && res && res.error === 'access code required')) { location.reload(); return; }
      done(x.status, res || {});
    };
    x.onerror = function () { done(0, {}); };
    x.send(body ? JSON.stringify(body) : null);
  }
  function newId() {
    var a = new Uint8Array(15);
    if (window.crypto && window.crypto.getRandomValues) window.crypto.getRandomValues(a);
    else for (var i = 0; i < a.length; i++) a[i] = Math.floor(Math.random() * 256);
    var s = '';
    for (var j = 0; j < a.length; j++) s += 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charAt(a[j] & 63);
    return s;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 120; }
  function toBottom() { log.scrollTop = log.scrollHeight; }
  function keepBottom(fn) { var stick = nearBottom(); fn(); if (stick) toBottom(); }
  // An answer's pictures load after it is shown: one that grew the log while it was at the bottom keeps it there.
  function pinPictures(body) {
    var imgs = body.getElementsByTagName('img');
    for (var i = 0; i < imgs.length; i++) imgs[i].addEventListener('load', function () { if (nearBottom() || log.scrollHeight - log.scrollTop - log.clientHeight - this.offsetHeight < 120) toBottom(); });
  }
  function showEmpty() { emptyEl.hidden = turnsEl.children.length > 0; }
  function showMore() { moreEl.hidden = !(held.length || moreOnServer); }

  // ---- one turn: the question, and its answer as it is now
  function make(t) {
    var node = el('section', 'turn');
    node.setAttribute('data-id', t.id);
    node.setAttribute('data-gen', String(t.generation || 0));
    node.appendChild(el('p', 'q', t.question));
    var a = el('div', 'a');
    var status = el('div', 'status');
    status.hidden = true;
    var body = el('div', 'body md');
    var note = el('div', 'note');
    note.hidden = true;
    a.appendChild(status); a.appendChild(body); a.appendChild(note);
    node.appendChild(a);
    var turn = turnOf[t.id] = { id: t.id, node: node, a: a, status: status, body: body, note: note, text: '', attempt: 1, at: t.at || Date.now(), started: Date.now(), es: null, poll: null, timer: null, paintedAt: 0, ticker: null, done: false };
    fill(turn, t);
    return turn;
  }
  function fill(turn, t) {
    if (t.at) turn.at = t.at;
    // The server says how long ago it was asked: this browser's clock may differ from the server's.
    if (typeof t.elapsedMs === 'number') turn.started = Date.now() - t.elapsedMs;
    if (t.status === 'pending') {
      turn.text = t.text || '';
      turn.attempt = t.attempt || 1;
      turn.a.className = 'a streaming';
      paint(turn);
      thinking(turn);
    } else settle(turn, t);
  }
  function thinking(turn) {
    if (turn.text || turn.done) { turn.status.hidden = true; return; }
    turn.status.hidden = false;
    var s = Math.max(1, Math.round((Date.now() - turn.started) / 1000));
    turn.status.textContent = (d.thinking || '{seconds}').replace('{seconds}', String(s));
  }
  function paint(turn) {
    turn.paintedAt = Date.now();
    keepBottom(function () {
      if (!turn.text) { turn.body.textContent = ''; return; }
      if (md) turn.body.innerHTML = md.live(turn.text);
      else { turn.body.className = 'body plain'; turn.body.textContent = turn.text; }
      turn.status.hidden = true;
      turn.a.className = turn.done ? 'a' : 'a streaming';
    });
  }
  // At most one rendering per RENDER_MS while the answer streams in.
  function schedule(turn) {
    if (turn.timer) return;
    turn.timer = setTimeout(function () { turn.timer = null; if (!turn.done) paint(turn); }, Math.max(0, RENDER_MS - (Date.now() - turn.paintedAt)));
  }
  function quiet(turn) {
    turn.done = true;
    if (turn.es) { turn.es.close(); turn.es = null; }
    if (turn.poll) { clearTimeout(turn.poll); turn.poll = null; }
    if (turn.timer) { clearTimeout(turn.timer); turn.timer = null; }
    if (turn.ticker) { clearInterval(turn.ticker); turn.ticker = null; }
    turn.status.hidden = true;
    if (running === turn) setRunning(null);
  }
  function settle(turn, t) {
    quiet(turn);
    keepBottom(function () {
      turn.a.className = 'a';
      turn.body.className = 'body md';
      if (t.status === 'answered') {
        // Rendered and sanitised by the server (lib/text/html.ts); the CSP forbids inline script anyway.
        turn.body.innerHTML = t.html;
        pinPictures(turn.body);
      } else if (t.status === 'failed') {
        turn.body.textContent = t.message || '';
        turn.body.className = 'body failed';
      } else if (t.status === 'stopped') {
        if (t.html !== undefined) turn.body.innerHTML = t.html;
        else if (turn.text) { if (md) turn.body.innerHTML = md.render(turn.text); else turn.body.textContent = turn.text; }
        turn.note.textContent = '已停止';
        turn.note.hidden = false;
      }
    });
    if ((t.status === 'answered' || t.status === 'failed') && t.seen === false) seen(turn.id);
  }
  // Delivered means shown: reported once the page is visible.
  function seen(id) {
    var report = function () { call('POST', d.seen, null, { id: id }, function () {}); };
    if (!document.hidden) return report();
    var on = function () { if (!document.hidden) { document.removeEventListener('visibilitychange', on); report(); } };
    document.addEventListener('visibilitychange', on);
  }
  function apply(turn, m) {
    if (typeof m.add !== 'string') return;
    if (m.attempt !== turn.attempt) { turn.attempt = m.attempt; turn.text = ''; }
    if (m.at > turn.text.length) return;
    turn.text = turn.text.slice(0, m.at) + m.add;
    schedule(turn);
  }
  function position(turn) { return turn.attempt + '.' + turn.text.length; }

  // ---- following an answer: the stream, or polling where streams do not get through
  function follow(turn) {
    setRunning(turn);
    turn.ticker = setInterval(function () { thinking(turn); }, 1000);
    if (typeof EventSource === 'undefined') return poll(turn);
    var heard = false, failures = 0;
    var es = turn.es = new EventSource(url(d.events, { id: turn.id, from: position(turn) }));
    function on(name, fn) { es.addEventListener(name, function (e) { heard = true; failures = 0; fn(JSON.parse(e.data)); }); }
    on('state', function () {});
    on('text', function (m) { apply(turn, m); });
    on('final', function (m) { settle(turn, { status: m.status, html: m.html, message: m.message, seen: false }); });
    on('gone', function () { settle(turn, { status: 'stopped' }); });
    es.onerror = function () {
      if (turn.done) return;
      failures += 1;
      if (!heard || failures >= 3) { es.close(); turn.es = null; poll(turn); }
    };
  }
  function poll(turn) {
    if (turn.done) return;
    call('GET', d.turn, { id: turn.id, from: position(turn) }, null, function (status, m) {
      if (turn.done) return;
      if (status === 404) return settle(turn, { status: 'stopped' });
      if (status === 200 && m.status === 'pending') apply(turn, m);
      else if (status === 200 && m.status) return settle(turn, m);
      turn.poll = setTimeout(function () { poll(turn); }, status === 200 ? 1500 : 3000);
    });
  }
  function setRunning(turn) {
    running = turn;
    sendBtn.hidden = !!turn;
    stopBtn.hidden = !turn;
  }

  // ---- the conversation
  function divider(text) { return el('div', 'divider', text); }
  function isTurn(e) { return !!e && e.className === 'turn'; }
  function append(t) {
    var last = turnsEl.lastElementChild;
    var turn = make(t);
    if (isTurn(last) && last.getAttribute('data-gen') !== String(t.generation || 0)) turnsEl.appendChild(divider('新对话'));
    turnsEl.appendChild(turn.node);
    showEmpty();
    return turn;
  }
  // Earlier turns above the ones shown; the ones being written start following.
  function prepend(list) {
    var first = turnsEl.firstElementChild;
    var frag = document.createDocumentFragment();
    var prev = null;
    var pending = [];
    for (var i = 0; i < list.length; i++) {
      var t = list[i];
      if (prev !== null && prev !== t.generation) frag.appendChild(divider('新对话'));
      var turn = make(t);
      frag.appendChild(turn.node);
      if (t.status === 'pending') pending.push(turn);
      prev = t.generation;
    }
    if (isTurn(first) && prev !== null && first.getAttribute('data-gen') !== String(prev)) frag.appendChild(divider('新对话'));
    var fromBottom = log.scrollHeight - log.scrollTop;
    turnsEl.insertBefore(frag, first);
    log.scrollTop = log.scrollHeight - fromBottom; // the turns on screen stay where they were
    showEmpty();
    for (var j = 0; j < pending.length; j++) follow(pending[j]);
  }
  function load(first) {
    call('GET', d.history, { before: first ? null : serverOldest }, null, function (status, res) {
      if (status !== 200 || !res.turns) { if (first) setTimeout(function () { load(true); }, 3000); return; }
      moreOnServer = !!res.more;
      if (res.turns.length) serverOldest = res.turns[0].at;
      if (first) {
        generation = res.generation || 0;
        // The current conversation; earlier ones one tap away.
        var mine = [];
        for (var i = 0; i < res.turns.length; i++) (res.turns[i].generation === generation ? mine : held).push(res.turns[i]);
        prepend(mine);
        toBottom();
      } else prepend(res.turns);
      showMore();
    });
  }
  olderBtn.addEventListener('click', function () {
    if (held.length) { var h = held; held = []; prepend(h); showMore(); return; }
    if (moreOnServer) load(false);
  });

  function note(turn, text, cls) {
    quiet(turn);
    turn.body.className = 'body reply' + (cls ? ' ' + cls : '');
    turn.body.textContent = text;
  }
  function send() {
    var text = input.value.replace(/^\\s+|\\s+$/g, '');
    if (!text || running || sending) return;
    sending = true;
    sendBtn.disabled = true;
    var id = newId();
    var turn = append({ id: id, question: text, status: 'pending', generation: generation, at: Date.now() });
    thinking(turn);
    input.value = '';
    grow();
    toBottom();
    var tries = 0;
    (function attempt() {
      call('POST', d.ask, null, { id: id, text: text }, function (status, res) {
        if (status === 0 && tries++ < 2) return setTimeout(attempt, 1000);
        sending = false;
        sendBtn.disabled = false;
        if (status === 200 && res.turn) {
          turn.done = false;
          fill(turn, res.turn);
          if (res.turn.status === 'pending') follow(turn);
        } else if (status === 200) {
          note(turn, res.reply || '');
          if (res.newConversation) { generation += 1; turnsEl.appendChild(divider('新对话')); }
        } else if (res.reply) note(turn, res.reply, 'failed');
        else {
          note(turn, status === 0 ? '网络连接失败，没有发出。' : '发送失败（' + status + '），请再试一次。', 'failed');
          if (!input.value) { input.value = text; grow(); }
        }
        keepBottom(function () {});
      });
    })();
  }
  form.addEventListener('submit', function (e) { e.preventDefault(); send(); });
  input.addEventListener('keydown', function (e) {
    // Enter sends on a keyboard (Shift+Enter: a new line); never while an input method is composing (Chinese).
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229 && !coarse) { e.preventDefault(); send(); }
  });
  function grow() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, Math.round(window.innerHeight * 0.4)) + 'px';
  }
  input.addEventListener('input', grow);
  stopBtn.addEventListener('click', function () {
    var turn = running;
    if (!turn) return;
    settle(turn, { status: 'stopped' });
    call('POST', d.stop, null, { id: turn.id }, function (status, res) {
      // It had settled first: the whole answer after all.
      if (status === 200 && res.turn && (res.turn.status === 'answered' || res.turn.status === 'failed')) { turn.note.hidden = true; settle(turn, res.turn); }
    });
  });
  newBtn.addEventListener('click', function () {
    if (running) settle(running, { status: 'stopped' });
    newBtn.disabled = true;
    call('POST', d.new, null, { id: newId() }, function (status) {
      newBtn.disabled = false;
      if (status !== 200) return;
      generation += 1;
      // Earlier conversations stay one tap away: fetched again from before the newest turn shown.
      var nodes = turnsEl.querySelectorAll('.turn');
      var newest = nodes.length ? turnOf[nodes[nodes.length - 1].getAttribute('data-id')] : null;
      if (newest) { serverOldest = newest.at + 1; moreOnServer = true; held = []; }
      turnsEl.textContent = '';
      showEmpty();
      showMore();
      input.focus();
    });
  });
  document.addEventListener('visibilitychange', function () {
    // Back from the background: a stream the system closed meanwhile is resumed where it stopped.
    if (!document.hidden && running && !running.es && !running.poll && !running.done) follow(running);
  });
  load(true);
})();
`;

/**
 * The embeddable widget: `<script src="https://bot.example.com/chat/widget.js" async></script>`
 * on another site adds a button that opens the chat in an iframe (the chat decides, by its
 * frame-ancestors, which sites may show it). The chat's address is taken from the script's own.
 */
export function widgetJs(routes: CoreConfig['page']['routes'], title: string): string {
  // From the script's URL to the chat page's: /chat/widget.js → /chat; laf's /chat?p=/widget.js → /chat.
  const page = routes === 'laf' ? 'chat?embed=1' : '../chat?embed=1';
  return `(function () {
  'use strict';
  var me = document.currentScript;
  if (!me || window.__wdbChatWidget) return;
  window.__wdbChatWidget = true;
  var src = new URL(${JSON.stringify(page)}, me.src).href;
  var label = me.getAttribute('data-label') || ${JSON.stringify(title || '在线问答')};
  var open = false, panel = null;
  function css(e, s) { for (var k in s) e.style[k] = s[k]; return e; }
  var button = css(document.createElement('button'), { position: 'fixed', right: '20px', bottom: '20px', zIndex: '2147483646', height: '52px', minWidth: '52px', padding: '0 18px', border: '0', borderRadius: '26px', background: '#07c160', color: '#fff', font: '600 15px/52px -apple-system,BlinkMacSystemFont,"PingFang SC","Microsoft YaHei",sans-serif', boxShadow: '0 4px 16px rgba(0,0,0,.22)', cursor: 'pointer' });
  button.type = 'button';
  button.textContent = label;
  button.setAttribute('aria-expanded', 'false');
  function small() { return window.innerWidth < 560; }
  function place() {
    if (!panel) return;
    css(panel, small() ? { left: '0', right: '0', top: '0', bottom: '0', width: '100%', height: '100%', borderRadius: '0' } : { left: 'auto', top: 'auto', right: '20px', bottom: '84px', width: '400px', height: Math.min(680, window.innerHeight - 110) + 'px', borderRadius: '14px' });
  }
  function toggle() {
    open = !open;
    if (open && !panel) {
      panel = css(document.createElement('div'), { position: 'fixed', zIndex: '2147483647', overflow: 'hidden', background: '#fff', boxShadow: '0 8px 32px rgba(0,0,0,.28)' });
      var close = css(document.createElement('button'), { position: 'absolute', top: '6px', right: '8px', zIndex: '1', width: '32px', height: '32px', border: '0', borderRadius: '16px', background: 'rgba(127,127,127,.18)', color: 'inherit', font: '20px/32px sans-serif', cursor: 'pointer' });
      close.type = 'button';
      close.setAttribute('aria-label', '关闭');
      close.textContent = '×';
      close.addEventListener('click', toggle);
      var frame = css(document.createElement('iframe'), { width: '100%', height: '100%', border: '0', display: 'block' });
      frame.src = src;
      frame.title = label;
      frame.setAttribute('referrerpolicy', 'no-referrer');
      // The chat may open links in new tabs, never navigate this page.
      frame.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox');
      panel.appendChild(frame);
      panel.appendChild(close);
      document.body.appendChild(panel);
      window.addEventListener('resize', place);
    }
    place();
    panel.style.display = open ? 'block' : 'none';
    button.style.display = open && small() ? 'none' : 'block';
    button.setAttribute('aria-expanded', String(open));
  }
  button.addEventListener('click', toggle);
  function mount() { document.body.appendChild(button); }
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);
})();
`;
}

/** The page's icon (a speech bubble in WeChat's green): served by us, as the CSP allows nothing else. */
export const CHAT_ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" fill="#07c160"/>' +
  '<path d="M32 14c-11 0-20 7.4-20 16.6 0 5.3 3 10 7.6 13L18 52l9.2-4.7c1.5.3 3.1.5 4.8.5 11 0 20-7.4 20-16.6S43 14 32 14z" fill="#fff"/></svg>';

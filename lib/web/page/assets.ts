/**
 * What the answer page needs besides its HTML, served by us (no CDN, nothing from elsewhere:
 * the Content-Security-Policy allows only our own script and style). Plain ES2017 for WeChat's
 * built-in browser. The script reads the endpoints from data attributes, so the same file works
 * under the Node server's paths and laf's query-string routes.
 */

export const PAGE_CSS = `:root{color-scheme:light dark;--fg:#1f2328;--muted:#6b7280;--bg:#fff;--card:#f6f8fa;--line:#d8dee4;--accent:#07c160;--bad:#c62828}
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--muted:#9aa0a6;--bg:#111;--card:#1c1c1e;--line:#333;--accent:#2fd37a;--bad:#ef9a9a}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:17px/1.75 -apple-system,BlinkMacSystemFont,"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","Source Han Sans SC","Segoe UI",Roboto,sans-serif;overflow-wrap:anywhere;word-break:normal;line-break:strict}
main{max-width:720px;margin:0 auto;padding:20px 16px 48px}
.q{margin:0 0 20px;padding:12px 14px;border-left:4px solid var(--accent);background:var(--card);border-radius:0 8px 8px 0;white-space:pre-wrap;color:var(--fg)}
.status{color:var(--muted);font-size:15px;margin:0 0 12px;display:flex;align-items:center;gap:8px}
.status::before{content:"";width:8px;height:8px;border-radius:50%;background:var(--accent);animation:pulse 1.2s ease-in-out infinite}
@keyframes pulse{50%{opacity:.25}}
@media (prefers-reduced-motion:reduce){.status::before{animation:none}}
.live{white-space:pre-wrap}
.live.md{white-space:normal}
.failed{color:var(--bad)}
.gone{color:var(--muted)}
[hidden]{display:none!important}
.md h1,.md h2,.md h3,.md h4{line-height:1.4;margin:1.4em 0 .6em}
.md h1{font-size:1.45em}.md h2{font-size:1.3em}.md h3{font-size:1.15em}.md h4{font-size:1em}
.md p,.md ul,.md ol,.md blockquote,.md pre,.md .table{margin:0 0 1em}
.md ul,.md ol{padding-left:1.6em}
.md li+li{margin-top:.25em}
.md blockquote{margin-left:0;padding:0 1em;color:var(--muted);border-left:3px solid var(--line)}
.md a{color:var(--accent)}
.md code{font:.9em/1.6 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--card);padding:.1em .35em;border-radius:4px}
.md pre{background:var(--card);padding:12px;border-radius:8px;overflow-x:auto;-webkit-overflow-scrolling:touch}
.md pre code{padding:0;background:none;white-space:pre;overflow-wrap:normal;word-break:normal}
.md .plain,pre.plain{white-space:pre-wrap;font:inherit;background:none;padding:0}
.md .table{overflow-x:auto;-webkit-overflow-scrolling:touch}
.md table{border-collapse:collapse;font-size:15px;min-width:100%}
.md th,.md td{border:1px solid var(--line);padding:6px 10px;text-align:left;vertical-align:top;overflow-wrap:normal;min-width:4em}
.md th{background:var(--card);white-space:nowrap}
.md .align-right{text-align:right}.md .align-center{text-align:center}
.md hr{border:0;border-top:1px solid var(--line);margin:1.5em 0}
.md img{max-width:100%;height:auto;border-radius:6px}
.parts{margin:12px 0;display:flex;flex-direction:column;gap:8px}
.parts img{max-width:100%;height:auto;border-radius:6px}
.parts a.file{display:inline-block;padding:8px 12px;border:1px solid var(--line);border-radius:6px}
`;

export const PAGE_JS = `(function () {
  'use strict';
  var app = document.getElementById('app');
  if (!app || app.getAttribute('data-status') === 'gone') return;
  var d = app.dataset;
  var statusEl = document.getElementById('status');
  var liveEl = document.getElementById('live');
  var finalEl = document.getElementById('final');
  var text = liveEl ? liveEl.textContent : '';
  var attempt = Number(d.attempt || 1);
  var started = Date.now() - Number(d.elapsed || 0);
  var done = false;
  var es = null;
  var pollTimer = null;
  var ticker = null;
  // The answer as Markdown while it is written (lib/web/render/), at most every RENDER_MS; the
  // server's rendering replaces it at the end. Without the renderer: the text as written.
  var md = window.wdbMarkdown || null;
  var RENDER_MS = 200;
  var paintTimer = null;
  var paintedAt = 0;

  function post() {
    try {
      var x = new XMLHttpRequest();
      x.open('POST', d.read, true);
      x.send('');
    } catch (e) {}
  }
  // Read means the end of the answer came on screen, not merely that the page was opened.
  function markRead() {
    var end = document.getElementById('end');
    if (!end || typeof IntersectionObserver === 'undefined') return post();
    var io = new IntersectionObserver(function (entries) {
      for (var i = 0; i < entries.length; i++) {
        if (entries[i].isIntersecting) { io.disconnect(); return post(); }
      }
    });
    io.observe(end);
  }
  function tick() {
    if (done || !statusEl) return;
    var s = Math.max(1, Math.round((Date.now() - started) / 1000));
    statusEl.textContent = d.thinking.replace('{seconds}', String(s));
  }
  function paint() {
    paintedAt = Date.now();
    if (md) { liveEl.className = 'live md'; liveEl.innerHTML = md.live(text); }
    else liveEl.textContent = text;
    liveEl.hidden = text === '';
  }
  function schedule() {
    if (paintTimer) return;
    paintTimer = setTimeout(function () { paintTimer = null; if (!done) paint(); }, Math.max(0, RENDER_MS - (Date.now() - paintedAt)));
  }
  function apply(m) {
    if (typeof m.elapsedMs === 'number') started = Date.now() - m.elapsedMs;
    if (typeof m.add !== 'string') return;
    if (m.attempt !== attempt) { attempt = m.attempt; text = ''; }
    if (m.at > text.length) return;
    text = text.slice(0, m.at) + m.add;
    schedule();
  }
  function finish(m) {
    if (done) return;
    done = true;
    if (es) es.close();
    if (pollTimer) clearTimeout(pollTimer);
    if (ticker) clearInterval(ticker);
    if (paintTimer) clearTimeout(paintTimer);
    if (statusEl) statusEl.hidden = true;
    if (liveEl) liveEl.hidden = true;
    app.setAttribute('data-status', m.status);
    if (m.status === 'answered') {
      // Rendered and sanitised by the server (lib/text/html.ts); the CSP forbids inline script.
      finalEl.innerHTML = m.html;
    } else {
      finalEl.textContent = m.message;
      finalEl.className = m.status === 'gone' ? 'gone' : 'failed';
    }
    finalEl.hidden = false;
    if (m.status === 'answered' || m.status === 'failed') markRead();
  }
  function position() { return attempt + '.' + text.length; }
  function poll() {
    var x = new XMLHttpRequest();
    x.open('GET', d.state + (d.state.indexOf('?') < 0 ? '?' : '&') + 'from=' + position(), true);
    x.onload = function () {
      if (x.status === 404) return finish({ status: 'gone', message: d.gone });
      try {
        var m = JSON.parse(x.responseText);
        if (m.status === 'pending') apply(m); else return finish(m);
      } catch (e) {}
      pollTimer = setTimeout(poll, 1500);
    };
    x.onerror = function () { pollTimer = setTimeout(poll, 3000); };
    x.send();
  }
  function stream() {
    if (typeof EventSource === 'undefined') return poll();
    var heard = false;
    var failures = 0;
    es = new EventSource(d.events + (d.events.indexOf('?') < 0 ? '?' : '&') + 'from=' + position());
    function on(name, fn) { es.addEventListener(name, function (e) { heard = true; failures = 0; fn(JSON.parse(e.data)); }); }
    on('state', apply);
    on('text', apply);
    on('final', finish);
    on('gone', function () { finish({ status: 'gone', message: d.gone }); });
    es.onerror = function () {
      if (done) return;
      // Streams that never get through (a proxy that buffers, a platform that can't stream, too
      // many open) become polling; a stream that worked reconnects by itself with Last-Event-ID.
      failures += 1;
      if (!heard || failures >= 3) { es.close(); es = null; poll(); }
    };
  }

  if (d.status === 'pending') {
    if (text && md) paint();
    ticker = setInterval(tick, 1000);
    tick();
    stream();
  } else if (d.status === 'answered' || d.status === 'failed') {
    markRead();
  }
})();
`;

/**
 * The console's own script: the overview's plots (drawn with uPlot, lib/web/console/uplot.ts) from
 * its stats API, and Try it's chat, which follows an answer being written over the answer page's
 * stream. The CSP allows only scripts and styles from the console itself.
 */

/** Draws the overview's plots and runs Try it; plain ES2017, data from the console's own API. */
export const CONSOLE_JS = `(function () {
  'use strict';
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }

  // ---- the overview's plots
  var box = document.getElementById('charts');
  if (box && typeof uPlot !== 'undefined') {
    var width = function () { return Math.min(box.clientWidth || 640, 1080); };
    var plot = function (title, sum, xs, series, opts) {
      var sec = el('section', 'chart');
      sec.appendChild(el('h3', '', title));
      box.appendChild(sec);
      var cfg = { width: width(), height: 220, series: [{}].concat(series.map(function (s) { return { label: s.label, stroke: s.color, fill: s.fill, width: 2, points: { show: s.points || false }, value: s.value }; })), axes: [{}, { values: opts.axisValues }], scales: { x: { time: false, distr: opts.log ? 3 : 1 } } };
      // Days and hours: x is the bucket's index and its label the server's (the stats time zone's
      // YYYY-MM-DD, as the tables), never a time the browser would show in its own zone.
      if (opts.labels) {
        var labels = opts.labels;
        cfg.series[0] = { label: opts.xLabel, value: function (u, v) { return v == null ? '' : labels[v] || ''; } };
        cfg.axes[0] = {
          splits: function (u) {
            // As many labels as fit (each needs about tickPx), at one of tickSteps where given.
            var fit = Math.max(1, Math.ceil(labels.length * (opts.tickPx || 48) / Math.max(1, u.bbox.width / (window.devicePixelRatio || 1))));
            var steps = opts.tickSteps || [];
            var every = steps.length ? steps.filter(function (s) { return s >= fit; })[0] || steps[steps.length - 1] : fit;
            // Without steps, counted back from the last bucket (today), so today always has its label.
            var at = [];
            for (var i = steps.length ? 0 : (labels.length - 1) % every; i < labels.length; i += every) at.push(i);
            return at;
          },
          values: function (u, splits) { return splits.map(function (i) { return opts.tick(labels[i] || '', i); }); },
        };
      }
      if (opts.y) cfg.scales.y = opts.y;
      if (opts.hooks) cfg.hooks = opts.hooks;
      new uPlot(cfg, [xs].concat(series.map(function (s) { return s.data; })), sec);
      sec.appendChild(el('p', 'sum', sum));
    };
    var x = new XMLHttpRequest();
    x.open('GET', box.getAttribute('data-api'), true);
    x.onload = function () {
      if (x.status !== 200) return;
      // Every day of the range, those without questions too (the API returns only days with counts).
      var byId = {};
      JSON.parse(x.responseText).days.forEach(function (d) { byId[d._id] = d; });
      var days = box.getAttribute('data-days').split(',').map(function (id) { return byId[id] || { _id: id }; });
      var n = function (o, path) { var v = o; path.split('.').forEach(function (k) { v = v && typeof v === 'object' ? v[k] : undefined; }); return typeof v === 'number' ? v : 0; };
      var total = function (path) { return days.reduce(function (a, d) { return a + n(d, path); }, 0); };
      var daysX = days.map(function (d, i) { return i; });
      var daily = { labels: days.map(function (d) { return d._id; }), xLabel: '日期', tick: function (id) { return id.slice(5); } };
      // Questions per hour over the last 48 hours.
      var hoursX = [], hoursY = [], hourLabels = [];
      days.slice(-2).forEach(function (d) { for (var h = 0; h < 24; h++) { var hh = (h < 10 ? '0' : '') + h; hoursX.push(hoursX.length); hourLabels.push(d._id + ' ' + hh + ':00'); hoursY.push(n(d, 'hour.' + hh)); } });
      plot('每小时的问题（48 小时）', '48 小时内 ' + hoursY.reduce(function (a, b) { return a + b; }, 0) + ' 个问题', hoursX, [{ label: '问题', data: hoursY, color: '#07c160', fill: 'rgba(7,193,96,.12)' }], { labels: hourLabels, xLabel: '时间', tickSteps: [6, 12, 24], tickPx: 100, tick: function (label, i) { return i % 24 === 0 ? label.slice(5, 10) : label.slice(11); } });
      // Answer times: how many answers took up to each bound; WeChat's 5, 10 and 15 s windows marked.
      var bounds = [1, 2, 3, 5, 10, 15, 30, 60, 120];
      var counts = bounds.map(function (b) { return total('latency.' + b); });
      var all = counts.reduce(function (a, b) { return a + b; }, 0) + total('latency.inf');
      var in5 = counts.slice(0, 4).reduce(function (a, b) { return a + b; }, 0);
      plot('回答用时（秒，每格的上限；红线：微信的 5/10/15 秒）', all ? '5 秒内 ' + in5 + ' / ' + all + '（' + Math.round(100 * in5 / all) + '%），超过 120 秒 ' + total('latency.inf') : '还没有回答', bounds, [{ label: '回答数', data: counts, color: '#1677ff', points: true }], { log: true, hooks: { draw: [function (u) {
        var ctx = u.ctx; ctx.save(); ctx.strokeStyle = '#c62828'; ctx.setLineDash([4, 4]);
        [5, 10, 15].forEach(function (s) { var px = u.valToPos(s, 'x', true); ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke(); });
        ctx.restore();
      }] } });
      // How answers reached people: each path's share of the day, stacked (the top line is 100%).
      var paths = [['via.reply1', '首次回复', '#07c160'], ['via.reply2', '第二次', '#52c41a'], ['via.reply3', '第三次', '#a0d911'], ['via.fetch', '回复 1', '#faad14'], ['via.push', '推送', '#1677ff'], ['via.page', '网页', '#722ed1'], ['via.api', 'API', '#13c2c2']];
      var dayTotal = days.map(function (d) { return paths.reduce(function (a, p) { return a + n(d, p[0]); }, 0); });
      var acc = days.map(function () { return 0; });
      var stacked = paths.map(function (p) {
        var share = days.map(function (d, i) { return dayTotal[i] ? 100 * n(d, p[0]) / dayTotal[i] : 0; });
        acc = acc.map(function (a, i) { return a + share[i]; });
        return { label: p[1], color: p[2], fill: p[2], data: acc.slice(), share: share };
      });
      // Drawn top band first, so each lower band's fill covers the one above it.
      var sums = paths.map(function (p) { return p[1] + ' ' + total(p[0]); }).join('，');
      plot('送达方式（每天的占比，叠加）', '14 天：' + sums, daysX, stacked.reverse().map(function (s) { return { label: s.label, color: s.color, fill: s.fill, data: s.data, value: function (u, v, si, i) { return i == null ? '' : Math.round(s.share[i]) + '%'; } }; }), { labels: daily.labels, xLabel: daily.xLabel, tick: daily.tick, y: { range: [0, 100] } });
      // Failures by reason, per day (the six most frequent reasons).
      var reasons = {};
      days.forEach(function (d) { var f = d.fail || {}; Object.keys(f).forEach(function (k) { reasons[k] = (reasons[k] || 0) + (typeof f[k] === 'number' ? f[k] : 0); }); });
      var top = Object.keys(reasons).sort(function (a, b) { return reasons[b] - reasons[a]; }).slice(0, 6);
      var colors = ['#c62828', '#ef6c00', '#6a1b9a', '#00838f', '#5d4037', '#455a64'];
      plot('失败（按原因，每天）', top.length ? top.map(function (k) { return k + ' ' + reasons[k]; }).join('，') : '14 天内没有失败', daysX, top.length ? top.map(function (k, i) { return { label: k, data: days.map(function (d) { return n(d, 'fail.' + k); }), color: colors[i], points: true }; }) : [{ label: '失败', data: days.map(function () { return 0; }), color: colors[0] }], daily);
      plot('tokens（每天）', '14 天共 ' + total('tokens') + ' tokens', daysX, [{ label: 'tokens', data: days.map(function (d) { return n(d, 'tokens'); }), color: '#eb2f96', points: true }], daily);
    };
    x.send();
  }

  // ---- Try it: a message in, the reply WeChat would carry out, and a live answer when it is still being written
  var tryBox = document.getElementById('try');
  if (tryBox) {
    var chat = document.getElementById('chat');
    var form = document.getElementById('ask');
    var say = function (cls, text) { var b = el('div', 'bubble ' + cls, text); chat.appendChild(b); b.scrollIntoView({ block: 'end' }); return b; };
    var follow = function (url) {
      var b = say('bot live', '');
      var status = el('div', 'status', '正在思考…');
      var text = el('div', 'live-text');
      b.appendChild(status); b.appendChild(text);
      var es = new EventSource(url);
      es.addEventListener('text', function (e) { var d = JSON.parse(e.data); if (d.at === 0) text.textContent = ''; text.textContent += d.add; status.textContent = '正在写…'; });
      es.addEventListener('final', function (e) {
        var d = JSON.parse(e.data);
        es.close();
        status.textContent = d.status === 'answered' ? '回答已写完（回复 1 会把它发给测试用户，和微信里一样）' : '回答失败';
        var art = el('article', d.status === 'answered' ? 'md' : 'failed');
        // The server renders the answer to safe HTML (lib/text/html.ts), exactly as the answer page shows it.
        if (d.status === 'answered') art.innerHTML = d.html; else art.textContent = d.message;
        text.replaceWith(art);
      });
      es.addEventListener('gone', function () { es.close(); status.textContent = '这个问题已被清除。'; });
    };
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var input = form.elements.text;
      var value = input.value.trim();
      if (!value) return;
      say('me', value);
      input.value = '';
      var r = new XMLHttpRequest();
      r.open('POST', tryBox.getAttribute('data-api'), true);
      r.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
      r.setRequestHeader('X-CSRF-Token', tryBox.getAttribute('data-csrf'));
      r.onload = function () {
        if (r.status !== 200) { say('bot failed', '出错了（HTTP ' + r.status + '）'); return; }
        var d = JSON.parse(r.responseText);
        say('bot', d.reply || '（没有回复：微信会收到 success）');
        if (d.follow) follow(d.follow);
      };
      r.onerror = function () { say('bot failed', '连不上服务器'); };
      r.send('text=' + encodeURIComponent(value));
    });
  }
})();
`;

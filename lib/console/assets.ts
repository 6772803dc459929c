/**
 * The console's scripts and styles, served by us: uPlot (MIT, a small canvas charting library,
 * bundled from node_modules rather than fetched from a CDN) and our own script that draws the
 * overview's plots from /admin/api/stats. The CSP allows only scripts and styles from /admin.
 */
import { readFileSync } from 'fs';

const cache = new Map<string, string | null>();

/** uPlot's files, read once; null where the package is not installed (the console then shows numbers only). */
export function uplotAsset(name: 'uPlot.iife.min.js' | 'uPlot.min.css'): string | null {
  if (!cache.has(name)) {
    try {
      cache.set(name, readFileSync(require.resolve(`uplot/dist/${name}`), 'utf8'));
    } catch {
      cache.set(name, null);
    }
  }
  return cache.get(name) ?? null;
}

/** Draws the overview's plots; plain ES2017, data from the page's own API. */
export const CONSOLE_JS = `(function () {
  'use strict';
  var box = document.getElementById('charts');
  if (!box || typeof uPlot === 'undefined') return;
  var width = function () { return Math.min(box.clientWidth || 640, 1080); };
  function plot(title, xs, series, opts) {
    var el = document.createElement('section');
    el.className = 'chart';
    var h = document.createElement('h3');
    h.textContent = title;
    el.appendChild(h);
    box.appendChild(el);
    var cfg = { width: width(), height: 220, series: [{}].concat(series.map(function (s) { return { label: s.label, stroke: s.color, fill: s.fill, width: 2, points: { show: s.points || false } }; })), axes: [{}, {}], scales: { x: opts.log ? { time: false, distr: 3 } : { time: opts.time !== false } } };
    if (opts.hooks) cfg.hooks = opts.hooks;
    return new uPlot(cfg, [xs].concat(series.map(function (s) { return s.data; })), el);
  }
  var x = new XMLHttpRequest();
  x.open('GET', box.getAttribute('data-api'), true);
  x.onload = function () {
    if (x.status !== 200) return;
    // Every day of the range, those without questions too (the API returns only days with counts).
    var byId = {};
    JSON.parse(x.responseText).days.forEach(function (d) { byId[d._id] = d; });
    var days = box.getAttribute('data-days').split(',').map(function (id) { return byId[id] || { _id: id }; });
    var offset = Number(box.getAttribute('data-offset-min') || 0) * 60;
    var n = function (o, path) { var v = o; path.split('.').forEach(function (k) { v = v && typeof v === 'object' ? v[k] : undefined; }); return typeof v === 'number' ? v : 0; };
    var dayTs = function (d) { return Date.parse(d._id + 'T00:00:00Z') / 1000 - offset; };
    // Questions per hour over the last 48 hours.
    var hoursX = [], hoursY = [];
    days.slice(-2).forEach(function (d) { for (var h = 0; h < 24; h++) { hoursX.push(dayTs(d) + h * 3600); hoursY.push(n(d, 'hour.' + (h < 10 ? '0' : '') + h)); } });
    plot('每小时的问题（48 小时）', hoursX, [{ label: '问题', data: hoursY, color: '#07c160', fill: 'rgba(7,193,96,.12)' }], {});
    // Answer times: how many answers took up to each bound; WeChat's 5, 10 and 15 s windows marked.
    var bounds = [1, 2, 3, 5, 10, 15, 30, 60, 120];
    var counts = bounds.map(function (b) { return days.reduce(function (a, d) { return a + n(d, 'latency.' + b); }, 0); });
    plot('回答用时（秒，左：上限）', bounds, [{ label: '回答数', data: counts, color: '#1677ff', points: true }], { log: true, hooks: { draw: [function (u) {
      var ctx = u.ctx; ctx.save(); ctx.strokeStyle = '#c62828'; ctx.setLineDash([4, 4]);
      [5, 10, 15].forEach(function (s) { var px = u.valToPos(s, 'x', true); ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke(); });
      ctx.restore();
    }] } });
    // How answers reached people, per day.
    var daysX = days.map(dayTs);
    var paths = [['via.reply1', '首次回复', '#07c160'], ['via.reply2', '第二次', '#52c41a'], ['via.reply3', '第三次', '#a0d911'], ['via.fetch', '回复 1', '#faad14'], ['via.push', '推送', '#1677ff'], ['via.page', '网页', '#722ed1']];
    plot('送达方式（每天）', daysX, paths.map(function (p) { return { label: p[1], data: days.map(function (d) { return n(d, p[0]); }), color: p[2], points: true }; }), {});
    plot('tokens（每天）', daysX, [{ label: 'tokens', data: days.map(function (d) { return n(d, 'tokens'); }), color: '#eb2f96', points: true }], {});
  };
  x.send();
})();
`;

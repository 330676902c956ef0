// Line and bar charts on the vendored uPlot (loaded the first time a page draws one). Every series
// is named in the legend right above its chart and keeps its colour across a page's charts.
import { config } from './state.js';
import { h } from './dom.js';
import { timeZone } from './format.js';
import { locale, t } from './i18n.js';

export const COLORS = ['#1f5fa8', '#d9480f', '#2b8a3e', '#862e9c', '#c2255c', '#0b7285', '#e67700', '#5c940d', '#495057', '#364fc7'];

let loading = null;
export function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      document.head.append(h('link', { rel: 'stylesheet', href: `${config.static}/vendor/uplot/uPlot.min.css` }));
      const script = h('script', { src: `${config.static}/vendor/uplot/uPlot.iife.min.js` });
      script.addEventListener('load', () => resolve(window.uPlot));
      script.addEventListener('error', () => { loading = null; reject(new Error(t('The chart library could not be loaded'))); });
      document.head.append(script);
    });
  }
  return loading;
}

// time ticks in the user's language and zone: the day when it changes, else the hour
function timeTicks(u, splits) {
  const zone = timeZone();
  const day = new Intl.DateTimeFormat(locale(), { month: 'short', day: 'numeric', timeZone: zone });
  const hour = new Intl.DateTimeFormat(locale(), { hour: '2-digit', minute: '2-digit', hour12: false, timeZone: zone });
  let last = '';
  return splits.map((v) => {
    const d = new Date(v * 1000);
    const label = day.format(d);
    const text = label !== last ? `${label}\n${hour.format(d)}` : hour.format(d);
    last = label;
    return text;
  });
}

// series: [{label, x: [...], y: [...], color}] — x values are merged, gaps stay gaps.
function align(series, edges = []) {
  // the window's edges join the x values (with no y), so the axis spans the window asked for
  const xs = [...new Set([...series.flatMap((s) => s.x), ...edges])].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = series.map((s) => {
    const out = new Array(xs.length).fill(null);
    s.x.forEach((x, i) => { out[index.get(x)] = s.y[i] === undefined ? null : s.y[i]; });
    return out;
  });
  return [xs, ...ys];
}

// Draws into a new element and returns it; ``time`` x values are milliseconds since the epoch.
// ``xRange``: [lo, hi] of the window asked for (a single point then sits in its place, not alone
// on an axis of years); ``rate``: a share, drawn from 0 with a little headroom.
export function chart({ title, series, xLabel, yLabel, time = false, bars = false, height = 220, onSelect, xRange, rate = false }) {
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': title || t('Chart') });
  const wrap = h('figure', { class: 'chart-figure' }, title ? h('figcaption', { class: 'chart-title' }, title) : null, box);
  loadUPlot().then((uPlot) => {
    const scale = (v) => (time ? v / 1000 : v);
    const data = align(series.map((s) => ({ ...s, x: s.x.map(scale) })), xRange ? xRange.map(scale) : []);
    const width = Math.max(280, box.clientWidth || wrap.clientWidth || 480);
    const opts = {
      width, height,
      scales: {
        x: { time },
        y: rate ? { range: (u, lo, hi) => [0, Math.max(0.05, (hi || 0) * 1.2)] } : {},
      },
      legend: { live: true },
      cursor: { drag: { x: Boolean(onSelect), y: false } },
      series: [{ label: xLabel || (time ? t('time') : t('step')) },
        ...series.map((s, i) => ({
          label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2, spanGaps: true,
          fill: bars ? `${s.color || COLORS[i % COLORS.length]}55` : undefined,
          paths: bars ? uPlot.paths.bars({ size: [0.6, 60] }) : undefined,
          points: { show: s.x.length < 40 },
        }))],
      axes: [{ label: xLabel || null, values: time ? timeTicks : undefined }, { label: yLabel || null }],
      hooks: onSelect ? { setSelect: [(u) => {
        if (u.select.width < 2) return;
        const lo = u.posToVal(u.select.left, 'x');
        const hi = u.posToVal(u.select.left + u.select.width, 'x');
        onSelect(time ? lo * 1000 : lo, time ? hi * 1000 : hi);
      }] } : undefined,
    };
    if (time) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), timeZone());
    const plot = new uPlot(opts, data, box);
    const observer = new ResizeObserver(() => {
      const w = box.clientWidth;
      if (w && Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height });
    });
    observer.observe(box);
  }).catch((error) => { box.append(h('div', { class: 'alert error' }, error.message)); });
  return wrap;
}

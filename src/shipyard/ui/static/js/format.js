// Dates in the user's time zone (the browser's, or one chosen in the top bar), numbers and sizes
// in the chosen language's conventions.
import { locale, t } from './i18n.js';

export function timeZone() {
  return localStorage.getItem('sy.tz') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

export function setTimeZone(zone) {
  if (zone) localStorage.setItem('sy.tz', zone); else localStorage.removeItem('sy.tz');
}

const cache = new Map();
function formatter(kind) {
  const key = `${kind}|${locale()}|${timeZone()}`;
  if (!cache.has(key)) {
    const options = {
      datetime: { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false },
      seconds: { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false },
      date: { year: 'numeric', month: 'short', day: '2-digit' },
      time: { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false },
    }[kind];
    cache.set(key, new Intl.DateTimeFormat(locale(), { ...options, timeZone: timeZone() }));
  }
  return cache.get(key);
}

function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const date = typeof value === 'number' ? new Date(value) : new Date(String(value));
  return Number.isNaN(date.getTime()) ? null : date;
}

// milliseconds since the epoch or an ISO string
export function when(value, kind = 'datetime') {
  const date = toDate(value);
  return date ? formatter(kind).format(date) : '–';
}

export function iso(value) {
  const date = toDate(value);
  return date ? date.toISOString() : '';
}

export function ago(value) {
  const date = toDate(value);
  if (!date) return '–';
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  const steps = [[60, 'second'], [3600, 'minute'], [86400, 'hour'], [86400 * 30, 'day'], [86400 * 365, 'month']];
  const divisors = { second: 1, minute: 60, hour: 3600, day: 86400, month: 86400 * 30 };
  for (const [limit, unit] of steps) {
    if (Math.abs(seconds) < limit) return rtf.format(-Math.round(seconds / divisors[unit]), unit);
  }
  return rtf.format(-Math.round(seconds / (86400 * 365)), 'year');
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function num(value, digits = 4) {
  if (value === null || value === undefined || value === '') return '–';
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return n.toLocaleString(locale());
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e7)) return n.toExponential(3);
  return n.toLocaleString(locale(), { maximumSignificantDigits: digits + 1 });
}

export function ms(value) {
  return value === null || value === undefined ? '–' : `${Number(value).toFixed(value < 10 ? 2 : 1)} ms`;
}

export function percent(value, digits = 1) {
  return value === null || value === undefined ? '–' : `${(Number(value) * 100).toFixed(digits)} %`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function zones() {
  try { return Intl.supportedValuesOf('timeZone'); } catch { return ['UTC', timeZone()]; }
}

export function yesNo(value) { return value ? t('yes') : t('no'); }

// Small building blocks every page uses: headings, cards, tables with sorting and paging, badges,
// empty states that say what to do next, error boxes with the API's message, dialogs, toasts.
import { append, clear, h, newId } from './dom.js';
import { t } from './i18n.js';

export function pageHead({ title, sub, crumbs, actions }) {
  return h('div', { class: 'page-head' },
    h('div', null,
      crumbs ? h('div', { class: 'crumbs' }, crumbs.map((c, i) => [i ? ' / ' : '', c.href ? h('a', { href: c.href }, c.label) : c.label])) : null,
      h('h1', null, title),
      sub ? h('div', { class: 'sub' }, sub) : null),
    actions && actions.length ? h('div', { class: 'actions' }, actions) : null);
}

export function card(title, actions, ...body) {
  return h('section', { class: 'card', 'aria-label': typeof title === 'string' ? title : null },
    title ? h('h2', null, title, actions && actions.length ? h('span', { class: 'actions' }, actions) : null) : null,
    ...body);
}

export function empty(title, ...hint) {
  return h('div', { class: 'empty', role: 'status' }, h('strong', null, title), hint.length ? h('div', null, ...hint) : null);
}

export function code(text) { return h('code', null, text); }

export function errorBox(error) {
  const message = (error && error.message) || String(error);
  return h('div', { class: 'alert error', role: 'alert' }, message,
    error && error.code && error.status ? h('span', { class: 'code' }, `${error.status} ${error.code}`) : null);
}

export function notice(text, tone = 'info') {
  return h('div', { class: `alert ${tone}`, role: tone === 'error' ? 'alert' : 'status' }, text);
}

export function loading(text) {
  return h('div', { class: 'loading', role: 'status', 'aria-live': 'polite' }, text || t('Loading…'));
}

export function badge(text, tone = '') {
  return h('span', { class: `badge ${tone}` }, text);
}

const TONES = {
  FINISHED: 'ok', RUNNING: 'info', FAILED: 'bad', KILLED: 'warn', SCHEDULED: '',
  validated: 'ok', validating: 'info', pending: '', failed: 'bad', rejected: 'bad', approved: 'ok',
  running: 'info', promoted: 'ok', rolled_back: 'bad', aborted: 'warn', stopped: 'warn', abandoned: 'warn', manual: '',
  succeeded: 'ok', cached: 'ok', skipped: '', queued: '', cancelled: 'warn', firing: 'bad', resolved: 'ok', closed: '', invalid: 'bad', ok: 'ok', denied: 'bad',
  active: 'ok', paused: 'warn', disabled: 'bad',
};

export function statusBadge(status) {
  return badge(t(String(status)), TONES[status] ?? '');
}

export function kv(pairs) {
  const dl = h('dl', { class: 'kv' });
  for (const [key, value] of pairs) {
    if (value === undefined) continue;
    append(dl, h('dt', null, key), h('dd', null, value === null || value === '' ? '–' : value));
  }
  return dl;
}

export function chips(items, onRemove) {
  return items.map((item) => h('span', { class: 'chip' }, item,
    onRemove ? h('button', { type: 'button', 'aria-label': t('Remove {item}', { item }), on: { click: () => onRemove(item) } }, '×') : null));
}

// columns: [{key, label, num, render(row), sort: 'field' }]; sort: {key, desc}; onSort(key)
export function table({ columns, rows, caption, sort, onSort, rowClass, emptyState, label }) {
  if (!rows.length && emptyState) return emptyState;
  const head = h('tr', null, columns.map((col) => {
    const th = h('th', { class: col.num ? 'num' : null, scope: 'col' });
    if (col.sort && onSort) {
      const active = sort && sort.key === col.sort;
      th.setAttribute('aria-sort', active ? (sort.desc ? 'descending' : 'ascending') : 'none');
      append(th, h('button', {
        type: 'button', class: 'sort', 'aria-sort': active ? 'true' : null, 'data-arrow': active ? (sort.desc ? '▼' : '▲') : '',
        title: t('Sort by {column}', { column: col.label }), on: { click: () => onSort(col.sort) },
      }, col.label));
    } else append(th, col.label);
    return th;
  }));
  const body = h('tbody', null, rows.map((row) => h('tr', { class: rowClass ? rowClass(row) : null },
    columns.map((col) => h('td', { class: [col.num ? 'num' : null, col.className].filter(Boolean).join(' ') || null },
      col.render ? col.render(row) : fmt(row[col.key]))))));
  return h('div', { class: 'table-wrap' },
    h('table', { 'aria-label': label || caption || null }, caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', null, head), body));
}

function fmt(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function pager({ offset, limit, total, count, onChange, sizes = [25, 50, 100] }) {
  const last = total === undefined ? offset + count : total;
  const sizeId = newId('size');
  return h('nav', { class: 'pager', 'aria-label': t('Pages') },
    h('button', { type: 'button', disabled: offset <= 0, on: { click: () => onChange(Math.max(0, offset - limit), limit) } }, t('Previous')),
    h('span', { role: 'status' }, t('{from}–{to} of {total}', { from: count ? offset + 1 : 0, to: offset + count, total: last })),
    h('button', { type: 'button', disabled: offset + count >= last, on: { click: () => onChange(offset + limit, limit) } }, t('Next')),
    h('label', { for: sizeId, class: 'muted' }, t('Rows per page')),
    h('select', { id: sizeId, on: { change: (e) => onChange(0, Number(e.target.value)) } },
      sizes.map((n) => h('option', { value: n, selected: n === limit }, n))));
}

export function tabs(items, active, label) {
  return h('div', { class: 'tabs', role: 'tablist', 'aria-label': label || null },
    items.map(([key, text, link]) => h('a', { href: link, role: 'tab', 'aria-selected': key === active ? 'true' : 'false' }, text)));
}

export function field(label, control, hint) {
  const id = control.id || newId('f');
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, h('span', null, label)), control,
    hint ? h('span', { class: 'hint' }, hint) : null);
}

export function select(options, value, props = {}) {
  return h('select', props, options.map((opt) => {
    const [v, text] = Array.isArray(opt) ? opt : [opt, opt];
    return h('option', { value: v, selected: String(v) === String(value) }, text);
  }));
}

export function json(value) {
  return h('pre', null, JSON.stringify(value, null, 2));
}

let toasts = null;
export function toast(message, tone = '') {
  if (!toasts) {
    toasts = h('div', { class: 'toast-area', role: 'status', 'aria-live': 'polite' });
    document.body.append(toasts);
  }
  const el = h('div', { class: `toast ${tone}` }, message);
  toasts.append(el);
  setTimeout(() => el.remove(), tone === 'error' ? 9000 : 4000);
}

// Run an action from a button: disable it meanwhile, show the API's message if it fails.
export async function act(button, fn, done) {
  if (button) button.disabled = true;
  try {
    const result = await fn();
    if (done) toast(done);
    return result;
  } catch (error) {
    toast(error.message || String(error), 'error');
    return undefined;
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

// A modal dialog; resolves with the submit handler's result, or null when cancelled. The handler
// may throw: its error is shown in the dialog, which stays open.
export function dialog({ title, body, confirm = t('Confirm'), danger = false, onSubmit }) {
  return new Promise((resolve) => {
    const titleId = newId('dlg');
    const problem = h('div');
    const ok = h('button', { type: 'submit', class: danger ? 'danger solid' : 'primary' }, confirm);
    const cancel = h('button', { type: 'button', on: { click: () => close(null) } }, t('Cancel'));
    const form = h('form', { method: 'dialog' }, h('div', { class: 'body' }, h('h2', { id: titleId }, title), body, problem),
      h('div', { class: 'foot' }, cancel, ok));
    const dlg = h('dialog', { 'aria-labelledby': titleId }, form);
    let settled = false;
    function close(value) {
      if (settled) return;
      settled = true;
      dlg.close();
      dlg.remove();
      resolve(value);
    }
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      ok.disabled = true;
      clear(problem);
      try {
        const result = onSubmit ? await onSubmit(form) : true;
        close(result === undefined ? true : result);
      } catch (error) {
        append(problem, errorBox(error));
        ok.disabled = false;
      }
    });
    dlg.addEventListener('cancel', (event) => { event.preventDefault(); close(null); });
    document.body.append(dlg);
    dlg.showModal();
    const first = form.querySelector('input, select, textarea');
    (first || ok).focus();
  });
}

// "from → to" for confirmations that show what a change does
export function change(from, to) {
  return h('div', { class: 'change' }, h('div', { class: 'from' }, from), h('span', { 'aria-hidden': 'true' }, '→'),
    h('span', { class: 'sr-only' }, t('changes to')), h('div', { class: 'to' }, to));
}

export function copyButton(text) {
  return h('button', {
    type: 'button', class: 'small',
    on: { click: async () => { try { await navigator.clipboard.writeText(text); toast(t('Copied')); } catch { toast(t('Select the text and copy it'), 'error'); } } },
  }, t('Copy'));
}

// A sandboxed frame showing a self-contained HTML report: no scripts, no access to this page.
export function reportFrame(html, title) {
  const frame = h('iframe', { class: 'report-frame', sandbox: '', title: title || t('Report'), referrerpolicy: 'no-referrer' });
  frame.srcdoc = html;
  return frame;
}

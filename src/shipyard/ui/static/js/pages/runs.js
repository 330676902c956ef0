// Experiments and runs: a server-side paged, filtered and sorted table (fast at 10,000+ runs), with
// the parameters and metrics of the runs on the page as columns, and run comparison.
import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { duration, num, when } from '../format.js';
import { href, remember } from '../router.js';
import { empty, errorBox, field, loading, pageHead, pager, select, statusBadge, table } from '../components.js';

const MAX_KEY_COLUMNS = 12;

function splitOrder(order) {
  const cut = order.lastIndexOf(' ');
  return cut < 0 ? [order, 'ASC'] : [order.slice(0, cut), order.slice(cut + 1).toUpperCase()];
}

export default async function render(view, root) {
  const q = view.query;
  const state = {
    experiment: q.get('experiment') || '',
    filter: q.get('filter') || '',
    order: q.get('order') || 'attributes.start_time DESC',
    offset: Number(q.get('offset') || 0),
    limit: Number(q.get('limit') || 25),
    selected: new Set((q.get('selected') || '').split(',').filter(Boolean)),
  };
  const listed = api.get('/experiments');

  const results = h('div', { 'aria-live': 'polite' });
  const compare = h('a', { class: 'button primary', href: '#' }, '');
  const filterInput = h('input', {
    class: 'filter', value: state.filter, placeholder: "metrics.auc > 0.7 and params.model = 'xgb'",
    'aria-describedby': 'filter-help',
  });
  const experimentSelect = select([['', t('All experiments')]], state.experiment);
  const form = h('form', { class: 'form inline', role: 'search', 'aria-label': t('Filter runs') },
    field(t('Experiment'), experimentSelect),
    field(t('Filter'), filterInput),
    h('button', { type: 'submit' }, t('Apply')),
    h('button', { type: 'button', on: { click: () => { filterInput.value = ''; state.filter = ''; state.offset = 0; load(); } } }, t('Clear')));
  form.addEventListener('submit', (event) => { event.preventDefault(); state.filter = filterInput.value.trim(); state.offset = 0; load(); });
  experimentSelect.addEventListener('change', () => { state.experiment = experimentSelect.value; state.offset = 0; load(); });

  function updateCompare() {
    const ids = [...state.selected];
    compare.textContent = t('Compare selected ({count})', { count: ids.length });
    compare.href = href('/compare', { ids: ids.join(',') });
    compare.toggleAttribute('aria-disabled', ids.length < 2);
    compare.classList.toggle('disabled', ids.length < 2);
    compare.hidden = ids.length < 2;
  }

  function sortBy(key) {
    const [current, dir] = splitOrder(state.order);
    const desc = current === key ? dir !== 'DESC' : true;
    state.order = `${key} ${desc ? 'DESC' : 'ASC'}`;
    state.offset = 0;
    load();
  }

  async function load() {
    remember('/runs', {
      experiment: state.experiment, filter: state.filter, order: state.order,
      offset: state.offset || null, limit: state.limit !== 25 ? state.limit : null,
    });
    replace(results, loading());
    let doc;
    try {
      doc = await api.post('/runs/search', {
        experiment: state.experiment || null, filter: state.filter || null, order_by: [state.order],
        max_results: state.limit, offset: state.offset, include_total: true,
      });
    } catch (error) {
      replace(results, errorBox(error));
      return;
    }
    if (!view.alive()) return;
    if (!doc.runs.length) {
      replace(results, state.filter
        ? empty(t('No run matches this filter.'), t('Loosen the filter or clear it; comparisons read like {example}.', { example: "metrics.auc > 0.7 and params.model = 'xgb'" }))
        : empty(t('No runs yet.'), t('Track one from Python with {code}, or run {demo}.', { code: 'with sy.start_run(): ...', demo: 'shipyard demo' })));
      return;
    }
    const metricKeys = [...new Set(doc.runs.flatMap((r) => Object.keys(r.metrics)))].sort().slice(0, MAX_KEY_COLUMNS);
    const paramKeys = [...new Set(doc.runs.flatMap((r) => Object.keys(r.params)))].sort().slice(0, MAX_KEY_COLUMNS);
    const [orderKey, orderDir] = splitOrder(state.order);
    const columns = [
      { label: h('span', { class: 'sr-only' }, t('Select')), render: (r) => h('input', {
        type: 'checkbox', checked: state.selected.has(r.info.id), 'aria-label': t('Select run {name}', { name: r.info.name }),
        on: { change: (e) => { if (e.target.checked) state.selected.add(r.info.id); else state.selected.delete(r.info.id); updateCompare(); } },
      }) },
      { label: t('Run'), sort: 'attributes.name', render: (r) => h('a', { href: href(`/runs/${r.info.id}`) }, r.info.name) },
      { label: t('Status'), sort: 'attributes.status', render: (r) => statusBadge(r.info.status) },
      { label: t('User'), sort: 'attributes.user', render: (r) => r.info.user },
      { label: t('Started'), sort: 'attributes.start_time', className: 'nowrap', render: (r) => when(r.info.start_time) },
      { label: t('Duration'), num: true, render: (r) => (r.info.end_time ? duration(r.info.end_time - r.info.start_time) : '–') },
      ...metricKeys.map((key) => ({ label: key, num: true, sort: `metrics.\`${key}\``, render: (r) => num(r.metrics[key]) })),
      ...paramKeys.map((key) => ({ label: key, sort: `params.\`${key}\``, className: 'mono', render: (r) => r.params[key] ?? '–' })),
      { label: t('Tags'), render: (r) => Object.entries(r.tags).filter(([k]) => !k.startsWith('shipyard.')).map(([k, v]) => `${k}=${v}`).join(', ') },
    ];
    replace(results,
      table({ label: t('Runs'), columns, rows: doc.runs, sort: { key: orderKey, desc: orderDir === 'DESC' }, onSort: sortBy }),
      pager({ offset: state.offset, limit: state.limit, total: doc.total, count: doc.runs.length,
        onChange: (offset, limit) => { state.offset = offset; state.limit = limit; load(); } }));
  }

  const first = load(); // the first page and the experiments are asked for together
  const experiments = (await listed).experiments;
  for (const e of experiments) experimentSelect.append(h('option', { value: e.name, selected: e.name === state.experiment }, e.name));
  root.append(
    pageHead({ title: t('Experiments and runs'), sub: t('{count} experiments', { count: experiments.length }), actions: [compare] }),
    form,
    h('p', { id: 'filter-help', class: 'muted small' }, t('Filter on metrics.*, params.*, tags.* and attributes (status, name, user) with =, !=, <, >, like, in, and, or; click a column to sort.')),
    results);
  updateCompare();
  await first;
}

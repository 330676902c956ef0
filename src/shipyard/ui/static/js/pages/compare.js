// Run comparison: parameters side by side with the differences marked, metrics side by side, and
// each metric's history of every run overlaid by step (one colour per run on every chart).
import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { num } from '../format.js';
import { href } from '../router.js';
import { COLORS, chart } from '../chart.js';
import { card, empty, field, pageHead, table } from '../components.js';

const LOWER_IS_BETTER = /loss|error|rmse|mse|mae|mape|brier|psi/i;

export default async function render(view, root) {
  const ids = (view.query.get('ids') || '').split(',').filter(Boolean);
  root.append(pageHead({ title: t('Compare runs'), crumbs: [{ label: t('Experiments'), href: '#/runs' }] }));
  if (ids.length < 2) {
    const extra = h('input', { placeholder: t('run id'), class: 'mono' });
    const form = h('form', { class: 'form inline' }, field(t('Add a run by id'), extra), h('button', { type: 'submit' }, t('Add')));
    form.addEventListener('submit', (e) => { e.preventDefault(); location.hash = href('/compare', { ids: [...ids, extra.value.trim()].filter(Boolean).join(',') }); });
    root.append(empty(t('Pick at least two runs to compare.'), t('Tick runs in the runs table and press “Compare selected”.')), form);
    return;
  }
  const doc = await api.post('/runs/compare', { run_ids: ids });
  const names = doc.data[doc.index.indexOf('name')];
  const runs = doc.columns.map((id, i) => ({ id, name: names[i], color: COLORS[i % COLORS.length] }));
  const rows = doc.index.map((key, i) => ({ key, values: doc.data[i] }));
  const params = rows.filter((r) => r.key.startsWith('params.'));
  const metrics = rows.filter((r) => r.key.startsWith('metrics.'));
  const differs = (r) => new Set(r.values.map((v) => JSON.stringify(v ?? null))).size > 1;

  const onlyDiff = h('input', { type: 'checkbox', id: 'only-diff', checked: true });
  const paramBox = h('div');
  function drawParams() {
    const shown = onlyDiff.checked ? params.filter(differs) : params;
    replace(paramBox, shown.length ? table({
      label: t('Parameters'),
      columns: [{ label: t('Parameter'), render: (r) => r.key.slice(7) },
        ...runs.map((run, i) => ({ label: run.name, className: 'mono', render: (r) => r.values[i] ?? '–' }))],
      rows: shown, rowClass: (r) => (differs(r) ? 'diff' : null),
    }) : empty(onlyDiff.checked ? t('Every parameter is the same in these runs.') : t('No parameters logged.')));
  }
  onlyDiff.addEventListener('change', drawParams);
  drawParams();

  const legend = h('p', { class: 'row' }, runs.map((run) => h('span', { class: 'row' },
    h('span', { style: { display: 'inline-block', width: '14px', height: '4px', background: run.color } }),
    h('a', { href: href(`/runs/${run.id}`) }, run.name))));

  const metricTable = metrics.length ? table({
    label: t('Metrics'),
    columns: [{ label: t('Metric'), render: (r) => r.key.slice(8) },
      ...runs.map((run, i) => ({ label: run.name, num: true, render: (r) => {
        const values = r.values.filter((v) => v !== null && v !== undefined).map(Number);
        // the best value is marked: the lowest for losses and errors, else the highest
        const lower = LOWER_IS_BETTER.test(r.key);
        const best = values.length > 1 ? (lower ? Math.min(...values) : Math.max(...values)) : null;
        return h('span', { class: r.values[i] !== null && Number(r.values[i]) === best ? 'badge info' : null }, num(r.values[i]));
      } }))],
    rows: metrics, rowClass: (r) => (differs(r) ? 'diff' : null),
  }) : empty(t('No metrics logged.'));

  let charts = null;
  if (metrics.length) {
    const keys = metrics.map((r) => r.key.slice(8)).slice(0, 100);
    const histories = (await api.post('/runs/metric-histories', { run_ids: ids, keys })).histories;
    charts = h('div', { class: 'charts' }, keys.map((key) => chart({
      title: key, xLabel: t('step'),
      series: runs.map((run) => {
        const points = histories[run.id][key] || [];
        return { label: run.name, color: run.color, x: points.map((p) => p.step), y: points.map((p) => p.value) };
      }),
    })));
  }

  root.append(h('div', { class: 'stack' },
    legend,
    card(t('Parameters'), [h('label', { for: 'only-diff', class: 'row small' }, onlyDiff, t('only differences'))], paramBox),
    card(t('Metrics'), null, metricTable),
    charts ? card(t('Metrics by step'), null, charts) : null));
}

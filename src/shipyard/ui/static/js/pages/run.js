// One run: its information, parameters, metrics with their histories, tags, and its artifacts
// (HTML reports shown in place, text and JSON read inline, anything else downloaded).
import { api, download, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { bytes, duration, num, when } from '../format.js';
import { href } from '../router.js';
import { chart } from '../chart.js';
import { card, empty, errorBox, kv, loading, pageHead, reportFrame, statusBadge, table } from '../components.js';

const TEXT = /\.(json|txt|csv|yaml|yml|md|log|py|sql)$/i;
const HTML = /\.html?$/i;

export async function showArtifact(runId, path, target) {
  replace(target, loading());
  try {
    if (HTML.test(path)) {
      const text = await api.get(`/runs/${enc(runId)}/artifacts/download`, { path });
      replace(target, reportFrame(text, path));
    } else if (TEXT.test(path)) {
      let text = await api.get(`/runs/${enc(runId)}/artifacts/download`, { path });
      if (typeof text !== 'string') text = JSON.stringify(text, null, 2);
      replace(target, h('pre', null, text.length > 200000 ? `${text.slice(0, 200000)}\n…` : text));
    } else {
      replace(target, h('p', null, t('This file is not shown in the browser.'), ' ',
        h('button', { type: 'button', on: { click: () => download(`/runs/${enc(runId)}/artifacts/download`, { path }, path.split('/').pop()) } }, t('Download'))));
    }
  } catch (error) {
    replace(target, errorBox(error));
  }
}

export default async function render(view, root) {
  const id = view.params.id;
  const run = await api.get(`/runs/${enc(id)}`);
  const info = run.info;
  const [artifacts, experiment] = await Promise.all([
    api.get(`/runs/${enc(id)}/artifacts`).then((d) => d.artifacts),
    api.get(`/experiments/${enc(String(info.experiment_id))}`).catch(() => null),
  ]);
  const metricKeys = Object.keys(run.metrics).sort();
  let histories = {};
  if (metricKeys.length) {
    histories = (await api.post('/runs/metric-histories', { run_ids: [id], keys: metricKeys.slice(0, 100) })).histories[id];
  }

  root.append(pageHead({
    title: info.name,
    crumbs: [{ label: t('Experiments'), href: '#/runs' }, experiment ? { label: experiment.name, href: href('/runs', { experiment: experiment.name }) } : { label: String(info.experiment_id) }],
    sub: h('span', null, statusBadge(info.status), ' ', h('span', { class: 'mono small' }, info.id)),
    actions: [h('a', { class: 'button', href: href('/compare', { ids: id }) }, t('Compare with…'))],
  }));

  const details = card(t('Run'), null, kv([
    [t('Status'), statusBadge(info.status)],
    [t('User'), info.user],
    [t('Started'), when(info.start_time, 'seconds')],
    [t('Ended'), info.end_time ? when(info.end_time, 'seconds') : null],
    [t('Duration'), info.end_time ? duration(info.end_time - info.start_time) : null],
    [t('Parent run'), info.parent_run_id ? h('a', { href: href(`/runs/${info.parent_run_id}`) }, info.parent_run_id) : null],
    [t('Source'), info.source_name],
    [t('Git commit'), info.source_git_commit ? h('span', { class: 'mono' }, info.source_git_commit) : null],
  ]));
  const params = Object.entries(run.params);
  const paramsCard = card(t('Parameters'), null, params.length
    ? table({ label: t('Parameters'), columns: [{ label: t('Name'), key: 0 }, { label: t('Value'), className: 'mono', key: 1 }], rows: params })
    : empty(t('No parameters logged.'), t('Log them with {code}.', { code: 'run.log_params({...})' })));
  const tags = Object.entries(run.tags);
  const tagsCard = card(t('Tags'), null, tags.length
    ? table({ label: t('Tags'), columns: [{ label: t('Name'), key: 0 }, { label: t('Value'), key: 1 }], rows: tags })
    : empty(t('No tags.')));
  const metricsCard = card(t('Metrics'), null, metricKeys.length
    ? table({ label: t('Metrics'), columns: [
      { label: t('Name'), render: (k) => k }, { label: t('Latest'), num: true, render: (k) => num(run.metrics[k]) },
      { label: t('Points'), num: true, render: (k) => (histories[k] || []).length }], rows: metricKeys })
    : empty(t('No metrics logged.'), t('Log them with {code}.', { code: 'run.log_metrics({...})' })));
  const charted = metricKeys.filter((k) => (histories[k] || []).length > 1);
  const charts = charted.length ? card(t('Metric histories'), null, h('div', { class: 'charts' }, charted.map((key) => chart({
    title: key, xLabel: t('step'),
    series: [{ label: info.name, x: histories[key].map((p) => p.step), y: histories[key].map((p) => p.value) }],
  })))) : null;

  const viewer = h('div', { class: 'stack' });
  const listing = artifacts.length ? table({
    label: t('Artifacts'),
    columns: [
      { label: t('Path'), render: (a) => h('button', { type: 'button', class: 'link', on: { click: () => showArtifact(id, a.path, viewer) } }, a.path) },
      { label: t('Size'), num: true, render: (a) => bytes(a.size) },
      { label: t('SHA-256'), render: (a) => h('span', { class: 'mono small', title: a.sha256 }, a.sha256.slice(0, 12)) },
      { label: '', render: (a) => h('button', { type: 'button', class: 'small', 'aria-label': t('Download {path}', { path: a.path }),
        on: { click: () => download(`/runs/${enc(id)}/artifacts/download`, { path: a.path }, a.path.split('/').pop()) } }, t('Download')) },
    ],
    rows: artifacts,
  }) : empty(t('No artifacts.'), t('Log files with {code}; HTML reports open here.', { code: 'run.log_artifact(path)' }));
  const artifactsCard = card(t('Artifacts'), null, listing, viewer);

  root.append(h('div', { class: 'grid two' }, details, metricsCard, paramsCard, tagsCard), charts ? h('div', { class: 'stack' }, charts) : null,
    h('div', { class: 'stack' }, artifactsCard));
  const firstReport = artifacts.find((a) => HTML.test(a.path));
  if (firstReport && view.query.get('artifact') !== 'none') showArtifact(id, view.query.get('artifact') || firstReport.path, viewer);
}

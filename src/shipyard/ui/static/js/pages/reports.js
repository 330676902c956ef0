// Reports: every HTML report (model and data-quality reports logged to runs, daily monitoring
// reports when monitoring is installed), each shown in place in a sandboxed frame.
import { api, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { ago, bytes, when } from '../format.js';
import { href } from '../router.js';
import { hasApi } from '../state.js';
import { can } from '../perms.js';
import { card, empty, errorBox, loading, pageHead, reportFrame, table } from '../components.js';

export async function openReport(target, load, title) {
  replace(target, loading());
  try {
    const html = await load();
    replace(target, h('div', { class: 'row' }, h('h2', null, title)), reportFrame(typeof html === 'string' ? html : JSON.stringify(html), title));
    target.scrollIntoView({ block: 'start' });
  } catch (error) {
    replace(target, errorBox(error));
  }
}

export default async function render(view, root) {
  const viewer = h('div', { class: 'stack', id: 'report-viewer' });
  const runReports = (await api.get('/runs/reports', { limit: 200 })).reports;
  root.append(pageHead({ title: t('Reports'), sub: t('Model, data-quality and daily reports, shown in place.') }));
  const parts = [];
  if (hasApi('monitoring') && can('monitoring', 'read')) {
    const { dailyReportsCard } = await import('./monitoring.js');
    parts.push(await dailyReportsCard(viewer));
  }
  parts.push(card(t('Reports logged to runs'), null, table({
    label: t('Reports logged to runs'),
    columns: [
      { label: t('Report'), render: (r) => h('button', { type: 'button', class: 'link', on: { click: () => openReport(viewer,
        () => api.get(`/runs/${enc(r.run_id)}/artifacts/download`, { path: r.path }), `${r.run_name} · ${r.path}`) } }, r.path.split('/').pop()) },
      { label: t('Run'), render: (r) => h('a', { href: href(`/runs/${r.run_id}`) }, r.run_name) },
      { label: t('Size'), num: true, render: (r) => bytes(r.size) },
      { label: t('Logged'), className: 'nowrap', render: (r) => h('span', { title: when(r.created_at, 'seconds') }, ago(r.created_at)) },
    ],
    rows: runReports,
    emptyState: empty(t('No reports yet.'), t('Write one with {code} and log it to a run; {demo} makes a model report and a data-quality report.',
      { code: 'ModelReport(...).write(folder)', demo: 'shipyard demo' })),
  })));
  root.append(h('div', { class: 'stack' }, ...parts, viewer));
  const first = view.query.get('run') && view.query.get('path');
  if (first) openReport(viewer, () => api.get(`/runs/${enc(view.query.get('run'))}/artifacts/download`, { path: view.query.get('path') }), view.query.get('path'));
}

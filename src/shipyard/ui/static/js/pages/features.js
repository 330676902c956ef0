// The feature store: entities, feature views, services, freshness and missing rates of what is
// served online, and the lineage graph from sources to scenes.
import { api, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { duration, percent, when } from '../format.js';
import { href } from '../router.js';
import { graph } from '../graph.js';
import { badge, card, chips, empty, pageHead, pager, table, tabs } from '../components.js';
import { lineageGraph, sourceLabel } from './lineage.js';

function freshness(report) {
  const online = report.online || {};
  const seconds = online.freshness_seconds;
  const ttl = report.ttl_seconds;
  if (seconds === null || seconds === undefined) return badge(t('never materialized'), 'warn');
  const stale = ttl && seconds > ttl;
  return badge(duration(seconds * 1000), stale ? 'bad' : 'ok');
}

export function missingBar(rate) {
  const width = `${Math.min(100, Math.round((rate || 0) * 100))}%`;
  return h('div', { class: 'row' }, h('div', { class: 'bar', role: 'img', 'aria-label': percent(rate) }, h('span', { style: { width } })), percent(rate));
}

export default async function render(view, root) {
  const tab = view.query.get('tab') || 'views';
  const [views, entities, services] = await Promise.all([api.get('/features/views'), api.get('/features/entities'), api.get('/features/services')]);
  root.append(pageHead({ title: t('Features'), sub: t('{views} views · {entities} entities · {services} services', { views: views.length, entities: entities.length, services: services.length }) }),
    tabs([
      ['views', t('Feature views'), '#/features?tab=views'], ['entities', t('Entities'), '#/features?tab=entities'],
      ['services', t('Services'), '#/features?tab=services'], ['health', t('Freshness'), '#/features?tab=health'],
      ['lineage', t('Lineage'), '#/features?tab=lineage'],
    ], tab, t('Feature store')));
  if (!views.length && !entities.length) {
    root.append(empty(t('No features defined yet.'), t('Write definitions in features/*.py and run {command}.', { command: 'shipyard features apply' })));
    return;
  }
  if (tab === 'views') {
    root.append(card(null, null, table({
      label: t('Feature views'),
      columns: [
        { label: t('View'), render: (v) => h('a', { href: href(`/features/views/${enc(v.name)}`) }, v.name) },
        { label: t('Kind'), render: (v) => (v.kind === 'on_demand_feature_view' ? t('on demand') : t('batch')) },
        { label: t('Version'), num: true, render: (v) => v.version },
        { label: t('Entities'), render: (v) => chips((v.spec.entities || []).map((e) => e.name)) },
        { label: t('Features'), num: true, render: (v) => (v.spec.fields || []).length },
        { label: t('Source'), render: (v) => (v.spec.source ? `${v.spec.source.type}: ${sourceLabel(v.spec.source)}` : '–') },
        { label: t('TTL'), render: (v) => (v.spec.ttl_seconds ? duration(v.spec.ttl_seconds * 1000) : '–') },
        { label: t('Online'), render: (v) => (v.spec.online === false ? t('no') : t('yes')) },
      ],
      rows: views, emptyState: empty(t('No feature views.')),
    })));
  } else if (tab === 'entities') {
    root.append(card(null, null, table({
      label: t('Entities'),
      columns: [
        { label: t('Entity'), render: (e) => h('a', { href: href(`/features/entities/${enc(e.name)}`) }, e.name) },
        { label: t('Join keys'), render: (e) => chips(e.spec.join_keys) },
        { label: t('Description'), render: (e) => e.spec.description || '–' },
        { label: t('Version'), num: true, render: (e) => e.version },
      ],
      rows: entities, emptyState: empty(t('No entities.')),
    })));
  } else if (tab === 'services') {
    root.append(card(null, null, table({
      label: t('Services'),
      columns: [
        { label: t('Service'), render: (s) => h('a', { href: href(`/features/services/${enc(s.name)}`) }, s.name) },
        { label: t('Features'), num: true, render: (s) => s.spec.features.length },
        { label: t('Views'), render: (s) => chips([...new Set(s.spec.features.map((f) => String(f).split(':')[0]))]) },
        { label: t('Version'), num: true, render: (s) => s.version },
        { label: t('Description'), render: (s) => s.spec.description || '–' },
      ],
      rows: services, emptyState: empty(t('No feature services.'), t('A service names the features a model reads; define one next to your views.')),
    })));
  } else if (tab === 'health') {
    // measured a page of views at a time: each view's online rows are scanned
    const online = views.filter((v) => v.kind === 'feature_view' && v.spec.online !== false).map((v) => v.name).sort();
    const box = h('div');
    const size = 20;
    const show = async (offset) => {
      const chosen = online.slice(offset, offset + size);
      const report = chosen.length ? await api.get('/features/monitor', { views: chosen.join(','), sample: 20000 }) : { views: [], generated_at: null };
      replace(box, report.views.length ? table({
        label: t('Freshness'),
        columns: [
          { label: t('View'), render: (r) => h('a', { href: href(`/features/views/${enc(r.view)}`) }, r.view) },
          { label: t('Entities online'), num: true, render: (r) => r.online.entities ?? '–' },
          { label: t('Age of newest row'), render: freshness },
          { label: t('TTL'), render: (r) => (r.ttl_seconds ? duration(r.ttl_seconds * 1000) : '–') },
          { label: t('Expired rows'), render: (r) => percent(r.online.expired_rate) },
          { label: t('Worst missing rate'), render: (r) => missingBar(Math.max(0, ...Object.values(r.online.features || {}).map((f) => f.missing_rate || 0))) },
          { label: t('Last materialization'), render: (r) => (r.materialization.last_run ? when(r.materialization.last_run.finished_at) : t('never')) },
        ],
        rows: report.views,
      }) : empty(t('No online views.'), t('Materialize views with {command}.', { command: 'shipyard features materialize START END' })),
      online.length > size ? pager({ offset, limit: size, total: online.length, count: chosen.length, sizes: [size], onChange: (o) => show(o) }) : null,
      report.generated_at ? h('p', { class: 'muted small' }, t('Measured {when} over up to 20,000 stored entities per view.', { when: when(report.generated_at, 'seconds') })) : null);
    };
    await show(0);
    root.append(card(t('Online freshness and missing rates'), null, box));
  } else {
    const drawn = await lineageGraph({ views, services });
    root.append(card(t('Lineage'), null, drawn.nodes.length ? graph({ ...drawn, label: t('Lineage') })
      : empty(t('Nothing to draw yet.')),
    h('p', { class: 'muted small' }, t('source → feature view → feature service → model → scene; click a node to open it.'))));
  }
}

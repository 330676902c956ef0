// One feature view, service or entity: its definition, every version with what changed between
// them, and for views the online freshness, missing rates and the training/serving skew check.
import { api, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { duration, num, percent, when } from '../format.js';
import { href } from '../router.js';
import { act, badge, card, chips, errorBox, field, json, kv, loading, notice, pageHead, table } from '../components.js';
import { missingBar } from './features.js';
import { sourceLabel } from './lineage.js';

const PATHS = { views: 'views', services: 'services', entities: 'entities' };
const MAX_VERSIONS = 12;

// What changed from one definition to the next: top-level keys, and fields by name.
export function specDiff(before, after) {
  const changes = [];
  const keys = new Set([...Object.keys(before || {}), ...Object.keys(after || {})]);
  for (const key of [...keys].sort()) {
    const a = before ? before[key] : undefined;
    const b = after ? after[key] : undefined;
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    if (key === 'fields' && Array.isArray(a) && Array.isArray(b)) {
      const old = new Map(a.map((f) => [f.name, f]));
      const now = new Map(b.map((f) => [f.name, f]));
      for (const [name, f] of now) {
        if (!old.has(name)) changes.push({ what: t('field added'), key: name, after: f.dtype });
        else if (JSON.stringify(old.get(name)) !== JSON.stringify(f)) changes.push({ what: t('field changed'), key: name, before: JSON.stringify(old.get(name)), after: JSON.stringify(f) });
      }
      for (const [name, f] of old) if (!now.has(name)) changes.push({ what: t('field removed'), key: name, before: f.dtype });
    } else if (key === 'features' && Array.isArray(a) && Array.isArray(b)) {
      for (const f of b) if (!a.includes(f)) changes.push({ what: t('feature added'), key: f });
      for (const f of a) if (!b.includes(f)) changes.push({ what: t('feature removed'), key: f });
    } else {
      changes.push({ what: t('changed'), key, before: a === undefined ? '–' : JSON.stringify(a), after: b === undefined ? '–' : JSON.stringify(b) });
    }
  }
  return changes;
}

function definition(kind, obj) {
  const spec = obj.spec;
  if (kind === 'entities') return kv([[t('Join keys'), chips(spec.join_keys)], [t('Types'), JSON.stringify(spec.value_types)], [t('Description'), spec.description], [t('Owner'), spec.owner]]);
  if (kind === 'services') {
    return h('div', null, kv([[t('Description'), spec.description], [t('Owner'), spec.owner]]),
      table({ label: t('Features'), columns: [
        { label: t('View'), render: (f) => h('a', { href: href(`/features/views/${enc(String(f).split(':')[0])}`) }, String(f).split(':')[0]) },
        { label: t('Feature'), render: (f) => String(f).split(':')[1] || t('all') }], rows: spec.features }));
  }
  return h('div', null, kv([
    [t('Kind'), obj.kind === 'on_demand_feature_view' ? t('on demand') : t('batch')],
    [t('Entities'), spec.entities ? chips(spec.entities.map((e) => e.name)) : null],
    [t('Source'), spec.source ? `${spec.source.type}: ${sourceLabel(spec.source)}` : null],
    [t('Timestamp field'), spec.timestamp_field],
    [t('TTL'), spec.ttl_seconds ? duration(spec.ttl_seconds * 1000) : null],
    [t('Online'), spec.online === undefined ? null : (spec.online ? t('yes') : t('no'))],
    [t('Inputs'), spec.inputs ? chips(spec.inputs.features || []) : null],
    [t('Description'), spec.description], [t('Owner'), spec.owner],
  ]), h('h3', null, t('Features')), table({ label: t('Features'), columns: [
    { label: t('Name'), render: (f) => f.name }, { label: t('Type'), render: (f) => f.dtype },
    { label: t('Description'), render: (f) => f.description || '–' }], rows: spec.fields || [] }),
  spec.sql ? [h('h3', null, 'SQL'), h('pre', null, spec.sql)] : null);
}

async function healthCard(name) {
  const box = h('div', null, loading());
  api.get('/features/monitor', { views: name, sample: 20000 }).then((report) => {
    const r = report.views[0];
    const features = Object.entries(r.online.features || {});
    const last = r.materialization.last_run;
    replace(box, kv([
      [t('Entities online'), num(r.online.entities)],
      [t('Age of newest row'), r.online.freshness_seconds === null ? badge(t('never materialized'), 'warn') : duration(r.online.freshness_seconds * 1000)],
      [t('Expired rows'), percent(r.online.expired_rate)],
      [t('Last materialization'), last ? `${when(last.finished_at)} · ${last.status} · ${num(last.rows_written)} ${t('rows')}` : t('never')],
    ]), features.length ? table({ label: t('Missing rates'), columns: [
      { label: t('Feature'), render: ([f]) => f },
      { label: t('Missing'), render: ([, s]) => missingBar(s.missing_rate) },
      { label: t('Mean'), num: true, render: ([, s]) => num(s.mean) },
      { label: t('Min'), num: true, render: ([, s]) => (typeof s.min === 'number' ? num(s.min) : s.min ?? '–') },
      { label: t('Max'), num: true, render: ([, s]) => (typeof s.max === 'number' ? num(s.max) : s.max ?? '–') },
      { label: t('Top values'), render: ([, s]) => (s.top ? s.top.map((x) => `${x.value} (${x.count})`).join(', ') : '–') },
    ], rows: features }) : null);
  }).catch((error) => replace(box, errorBox(error)));
  return card(t('Online health'), null, box);
}

function skewCard(name) {
  const start = h('input', { type: 'datetime-local', name: 'start' });
  const end = h('input', { type: 'datetime-local', name: 'end' });
  const out = h('div');
  const run = h('button', { type: 'submit' }, t('Check skew'));
  const form = h('form', { class: 'form inline' }, field(t('From'), start), field(t('To'), end), run);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    act(run, async () => {
      replace(out, loading(t('Recomputing the logged requests offline…')));
      try {
        const report = await api.get('/features/skew', { target: name, start: start.value ? new Date(start.value).toISOString() : null, end: end.value ? new Date(end.value).toISOString() : null });
        replace(out, kv([[t('Rows compared'), num(report.rows)], [t('Rows with a mismatch'), `${num(report.rows_with_mismatch)} (${percent(report.mismatch_rate)})`],
          [t('Not logged'), report.not_logged.length ? chips(report.not_logged) : null]]),
        report.features.length ? table({ label: t('Skew'), columns: [
          { label: t('Feature'), render: (f) => f.feature }, { label: t('Compared'), num: true, render: (f) => num(f.compared) },
          { label: t('Mismatch rate'), render: (f) => badge(percent(f.mismatch_rate), f.mismatch_rate > 0 ? 'bad' : 'ok') },
          { label: t('Max |diff|'), num: true, render: (f) => num(f.max_abs_diff) }], rows: report.features })
          : notice(t('No logged requests in this window; scenes log served features when their log sample rate is above 0.')));
      } catch (error) {
        replace(out, errorBox(error));
      }
    });
  });
  return card(t('Training/serving skew'), null, h('p', { class: 'muted small' }, t('Compares feature values served online (from the feature log) with their point-in-time recomputation offline.')), form, out);
}

export default async function render(view, root) {
  const { kind, name } = view.params;
  const path = PATHS[kind];
  if (!path) throw new Error(t('Unknown kind {kind}', { kind }));
  let latest;
  let versions;
  if (kind === 'entities') {
    latest = (await api.get('/features/entities')).find((e) => e.name === name);
    if (!latest) throw new Error(t('Entity {name} does not exist', { name }));
    versions = [latest];
  } else {
    latest = await api.get(`/features/${path}/${enc(name)}`);
    const numbers = [];
    for (let v = latest.version; v >= 1 && numbers.length < MAX_VERSIONS; v -= 1) numbers.push(v);
    versions = await Promise.all(numbers.map((v) => (v === latest.version ? latest : api.get(`/features/${path}/${enc(name)}`, { version: v }).catch(() => null))));
    versions = versions.filter(Boolean);
  }
  const label = { views: t('feature view'), services: t('feature service'), entities: t('entity') }[kind];
  root.append(pageHead({ title: name, sub: `${label} · v${latest.version}`, crumbs: [{ label: t('Features'), href: `#/features?tab=${kind === 'views' ? 'views' : kind}` }] }));
  const history = versions.map((v, i) => ({ version: v.version, changes: i + 1 < versions.length ? specDiff(versions[i + 1].spec, v.spec) : null }));
  const historyCard = card(t('Versions and plan diffs'), null, table({
    label: t('Versions'),
    columns: [
      { label: t('Version'), render: (r) => `v${r.version}` },
      { label: t('Changes from the version before'), render: (r) => (r.changes === null ? t('first version')
        : r.changes.length ? h('ul', null, r.changes.map((c) => h('li', null, h('strong', null, c.what), ' ', h('code', null, c.key),
          c.before !== undefined || c.after !== undefined ? h('span', { class: 'muted small' }, ` ${c.before ?? ''} → ${c.after ?? ''}`) : null)))
          : t('no change')) },
    ],
    rows: history,
  }));
  const parts = [h('div', { class: 'grid two' }, card(t('Definition'), null, definition(kind, latest)), historyCard)];
  if (kind === 'views' && latest.kind === 'feature_view' && latest.spec.online !== false) parts.push(await healthCard(name));
  if (kind !== 'entities') parts.push(skewCard(name));
  parts.push(h('details', null, h('summary', null, t('Full definition')), json(latest.spec)));
  root.append(h('div', { class: 'stack' }, parts));
}

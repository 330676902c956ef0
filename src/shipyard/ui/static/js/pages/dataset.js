// One dataset: its versions, the rows and profile (data-quality report) of a version, what changed
// between two versions, and who read which version.
import { api, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { bytes, duration, num, percent, when } from '../format.js';
import { can } from '../perms.js';
import { href } from '../router.js';
import { act, badge, card, empty, errorBox, field, kv, loading, pageHead, reportFrame, select, table } from '../components.js';

function rowsTable(doc) {
  return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': t('Rows') },
    h('thead', null, h('tr', null, doc.columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, doc.rows.map((r) => h('tr', null, r.map((v) => h('td', null, v === null ? '–' : String(v))))))));
}

function diffView(diff) {
  const changes = [
    ...diff.added.map((c) => [t('column added'), c.name, c.type]),
    ...diff.removed.map((c) => [t('column removed'), c.name, c.type]),
    ...diff.type_changed.map((c) => [t('type changed'), c.name, `${c.a || c.from || ''} → ${c.b || c.to || ''}`]),
    ...(diff.precision_changed || []).map((c) => [c.change === 'widened' ? t('precision widened') : t('precision narrowed'), c.name, `${c.from} → ${c.to}`]),
  ];
  return h('div', null, kv([[t('Rows'), `${num(diff.rows_a)} → ${num(diff.rows_b)} (${diff.row_delta >= 0 ? '+' : ''}${num(diff.row_delta)})`]]),
    changes.length ? table({ label: t('Schema changes'), columns: [{ label: t('Change'), key: 0 }, { label: t('Column'), key: 1 }, { label: t('Type'), key: 2 }], rows: changes })
      : h('p', { class: 'muted' }, t('Same columns and types.')),
    diff.drift && diff.drift.length ? table({
      label: t('Drift between the versions'),
      columns: [{ label: t('Column'), render: (d) => d.column || d.name }, { label: 'PSI', num: true, render: (d) => num(d.psi) },
        // the server's verdict; no PSI (an unsupported column) is no verdict, not "no"
        { label: t('Drifted'), render: (d) => (d.drifted === true ? badge(t('yes'), 'bad') : d.drifted === false ? badge(t('no'), 'ok') : '–') }],
      rows: diff.drift,
    }) : null,
    diff.drift && diff.drift.length ? h('p', { class: 'muted small' }, t('A column has drifted at a PSI of 0.25 or more against version {version}.', { version: diff.a })) : null);
}

export default async function render(view, root) {
  const name = view.params.name;
  const base = `/datasets/${enc(name)}`;
  const [dataset, lineage] = await Promise.all([api.get(base), api.get(`${base}/lineage`).catch(() => null)]);
  const versions = [...dataset.versions].reverse();
  const chosen = Number(view.query.get('version')) || (versions[0] && versions[0].version);
  const current = versions.find((v) => v.version === chosen);
  root.append(pageHead({ title: name, crumbs: [{ label: t('Data'), href: '#/data' }], sub: dataset.description || `${t('Source')}: ${dataset.source}`,
    actions: can('data', 'write') ? [h('button', { type: 'button', on: { click: (e) => act(e.currentTarget, async () => {
      const result = await api.post(`${base}/refresh`, {});
      location.hash = href(`/data/datasets/${enc(name)}`, { version: result.version.version });
    }, t('Refreshed')) } }, t('Refresh now'))] : [] }));
  if (!versions.length) {
    root.append(empty(t('No version yet.'), t('Refresh the dataset to read its source into a first version.')));
    return;
  }
  const rowsBox = h('div', null, loading());
  api.get(`${base}/versions/${chosen}/rows`, { limit: 20 }).then((doc) => replace(rowsBox, rowsTable(doc))).catch((e) => replace(rowsBox, errorBox(e)));
  const profileBox = h('div', null, loading());
  api.get(`${base}/versions/${chosen}/profile`, { format: 'html' }).then((text) => replace(profileBox, reportFrame(text, t('Data-quality report'))))
    .catch((e) => replace(profileBox, errorBox(e)));
  const other = versions.filter((v) => v.version !== chosen);
  const diffBox = h('div');
  const against = select(other.map((v) => [v.version, `v${v.version}`]), other.length ? other[0].version : '', { name: 'against' });
  const showDiff = async () => {
    replace(diffBox, loading());
    try { replace(diffBox, diffView(await api.get(`${base}/diff`, { a: against.value, b: chosen }))); } catch (e) { replace(diffBox, errorBox(e)); }
  };
  against.addEventListener('change', showDiff);
  if (other.length) showDiff();
  const readers = lineage ? Object.entries(lineage.readers || {}).flatMap(([kind, list]) => list.map((r) => ({ kind, ...r }))) : [];
  const schema = table({ label: t('Schema'), columns: [{ label: t('Column'), render: (c) => c.name }, { label: t('Type'), className: 'nowrap', render: (c) => c.type }], rows: current.schema });
  schema.classList.add('short');
  root.append(h('div', { class: 'stack' },
    card(t('Versions'), null, table({
      label: t('Versions'),
      columns: [
        { label: t('Version'), render: (v) => h('a', { href: href(`/data/datasets/${enc(name)}`, { version: v.version }), 'aria-current': v.version === chosen ? 'true' : null }, `v${v.version}`) },
        { label: t('Rows'), num: true, render: (v) => num(v.rows) },
        { label: t('Columns'), num: true, render: (v) => v.schema.length },
        { label: t('Size'), num: true, render: (v) => bytes(v.size) },
        { label: t('Read in'), num: true, render: (v) => duration(v.duration_ms) },
        { label: t('Created'), className: 'nowrap', render: (v) => `${when(v.created_at)} · ${v.created_by}` },
      ],
      rows: versions, rowClass: (v) => (v.version === chosen ? 'selected' : null),
    })),
    h('div', { class: 'grid two' },
      card(t('Version {version}', { version: chosen }), null, kv([
        [t('Rows'), num(current.rows)], [t('SHA-256'), h('span', { class: 'mono small' }, current.sha256)],
        [t('Missing cells'), current.profile && current.profile.missing_rate !== undefined ? percent(current.profile.missing_rate) : null],
        [t('Flags'), current.profile && current.profile.flags ? Object.keys(current.profile.flags).length : null],
      ])),
      card(t('Schema'), null, schema)),
    card(t('First rows'), null, rowsBox),
    card(t('Compare with another version'), other.length ? [field(t('Against'), against)] : null, other.length ? diffBox : empty(t('Only one version so far.'))),
    card(t('Data-quality report'), null, profileBox),
    card(t('Who read it'), null, readers.length ? table({
      label: t('Readers'),
      columns: [{ label: t('Kind'), render: (r) => r.kind }, { label: t('Reader'), render: (r) => (r.kind === 'run' ? h('a', { href: href(`/runs/${r.id}`) }, r.id) : r.id) },
        { label: t('Version'), render: (r) => `v${r.version}` }, { label: t('When'), render: (r) => when(r.at) }],
      rows: readers,
    }) : empty(t('Nobody has read this dataset yet.'), t('Training runs and pipelines that load it appear here.')))));
}

// One registered model: versions with validation and stress-test results, signature and lineage;
// approve or reject (reviewers), move an alias or roll it back (operators) after a confirmation that
// shows what changes; the alias history, the registry's events and the audit trail; download.
import { api, download, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { ago, bytes, ms, num, when } from '../format.js';
import { can } from '../perms.js';
import { href } from '../router.js';
import {
  act, badge, card, change, chips, dialog, empty, errorBox, field, json, kv, notice, pageHead, select, statusBadge, table, toast,
} from '../components.js';

const ALIAS_RE = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

// the version a rollback returns to, by the registry's own rule (set pushes, rollback pops, delete clears)
export function rollbackTarget(history) {
  const stack = [];
  for (const move of history) {
    if (move.action === 'set') stack.push(move.version);
    else if (move.action === 'rollback' && stack.length) stack.pop();
    else if (move.action === 'delete') stack.length = 0;
  }
  return stack.length >= 2 ? stack[stack.length - 2] : null;
}

function versionLabel(v) { return v === null || v === undefined ? t('nothing') : `v${v}`; }

// latency tables mix times (p50, mean, ...) with counts (calls)
function latency(key, value) {
  return /^(calls|count|n|requests)$/.test(key) ? num(value) : ms(value);
}

function validationView(mv) {
  const v = mv.validation || {};
  const parts = [];
  if (v.checks) parts.push(h('p', null, v.checks.map((c) => badge(c, 'ok')), ' '));
  if (v.error || mv.status_reason) parts.push(notice(v.error || mv.status_reason, mv.status === 'failed' ? 'error' : 'info'));
  if (v.latency_ms) {
    parts.push(h('h3', null, t('Single-row latency')), kv(Object.entries(v.latency_ms).map(([k, x]) => [k, latency(k, x)])));
  }
  if (v.stress_test) {
    const st = v.stress_test;
    parts.push(h('h3', null, t('Stress test')), kv(Object.entries(st).filter(([, x]) => typeof x !== 'object' || x === null)
      .map(([k, x]) => [k, typeof x === 'number' ? num(x) : String(x)])));
    const lat = st.latency_ms || st.latency;
    if (lat && typeof lat === 'object') parts.push(kv(Object.entries(lat).map(([k, x]) => [k, latency(k, x)])));
  }
  const rest = Object.fromEntries(Object.entries(v).filter(([k]) => !['checks', 'latency_ms', 'stress_test', 'error'].includes(k)));
  if (Object.keys(rest).length) parts.push(h('details', null, h('summary', null, t('All validation details')), json(rest)));
  return parts.length ? parts : [empty(t('Not validated yet.'), t('Validation starts when a version is registered.'))];
}

function signatureView(sig) {
  if (!sig) return empty(t('No signature recorded.'), t('Log the model with an input example to record one.'));
  const cols = (spec) => (Array.isArray(spec) ? spec : (spec && spec.columns) || []);
  const side = (title, spec) => (cols(spec).length ? [h('h3', null, title), table({
    label: title, columns: [{ label: t('Name'), render: (c) => c.name ?? '–' }, { label: t('Type'), render: (c) => c.type ?? c.dtype ?? '–' },
      { label: t('Required'), render: (c) => (c.required === false ? t('no') : t('yes')) }], rows: cols(spec),
  })] : []);
  const inputs = side(t('Inputs'), sig.inputs);
  const outputs = side(t('Outputs'), sig.outputs);
  return inputs.length || outputs.length ? [...inputs, ...outputs] : [json(sig)];
}

function lineageView(mv) {
  const items = [];
  const lineage = mv.lineage || {};
  if (mv.source_run_id) items.push([t('Run'), h('a', { href: href(`/runs/${mv.source_run_id}`) }, mv.source_run_id)]);
  if (lineage.dataset_version) items.push([t('Dataset'), String(lineage.dataset_version)]);
  if (lineage.feature_service) items.push([t('Feature service'), h('a', { href: href(`/features/services/${enc(lineage.feature_service)}`) }, lineage.feature_service)]);
  if (lineage.feature_views) {
    items.push([t('Feature views'), lineage.feature_views.map((v, i) => [i ? ', ' : '', h('a', { href: href(`/features/views/${enc(v)}`) }, v)])]);
  }
  return items.length ? kv(items) : empty(t('No lineage recorded.'), t('Versions logged from a run record their run, dataset and features.'));
}

export default async function render(view, root) {
  const name = view.params.name;
  const base = `/models/${enc(name)}`;
  const [model, versions, events] = await Promise.all([
    api.get(base), api.get(`${base}/versions`), api.get(`${base}/events`, { limit: 100 }),
  ]);
  const aliases = model.aliases;
  const chosen = Number(view.query.get('version')) || (versions.length ? versions[versions.length - 1].version : null);
  const mv = versions.find((v) => v.version === chosen) || null;
  const reload = (version) => {
    const target = href(`/models/${enc(name)}`, { version: version ?? chosen });
    if (location.hash === target) view.refresh(); else location.hash = target;
  };

  const mayApprove = can('models', 'approve');
  const mayRelease = can('models', 'release');
  const mayWrite = can('models', 'write');

  async function review(version, verdict) {
    const comment = h('textarea', { name: 'comment', rows: 3, maxlength: 10000 });
    const done = await dialog({
      title: verdict === 'approve' ? t('Approve {name} v{version}', { name, version }) : t('Reject {name} v{version}', { name, version }),
      body: h('div', { class: 'form' },
        h('p', null, verdict === 'approve'
          ? t('Approving lets an operator point an alias (such as champion) at this version.')
          : t('A rejected version can never be given an alias.')),
        change(h('span', null, statusBadge(mv.status), ' ', mv.approved_by ? t('approved') : t('not approved')),
          verdict === 'approve' ? h('span', null, badge(t('approved'), 'ok'), ' ', t('by you')) : statusBadge('rejected')),
        field(t('Comment'), comment)),
      confirm: verdict === 'approve' ? t('Approve') : t('Reject'),
      danger: verdict !== 'approve',
      onSubmit: () => api.post(`${base}/versions/${version}/${verdict}`, { comment: comment.value }),
    });
    if (done) { toast(verdict === 'approve' ? t('Approved') : t('Rejected')); reload(version); }
  }

  async function moveAlias(presetAlias, presetVersion) {
    const aliasInput = h('input', { name: 'alias', value: presetAlias || 'champion', required: true, pattern: '[A-Za-z_][A-Za-z0-9_\\-]{0,63}', list: 'alias-names' });
    const versionSelect = select(versions.filter((v) => v.status !== 'rejected').map((v) => [v.version,
      `v${v.version} · ${t(v.status)}${v.approved_by ? ` · ${t('approved')}` : ''}`]), presetVersion || chosen, { name: 'version' });
    const force = h('input', { type: 'checkbox', name: 'force' });
    const preview = h('div');
    const refresh = () => {
      const from = aliases[aliasInput.value];
      const to = Number(versionSelect.value);
      const target = versions.find((v) => v.version === to);
      replace(preview, change(`${aliasInput.value}: ${versionLabel(from)}`, `${aliasInput.value}: ${versionLabel(to)}`),
        target && model.requires_approval && !target.approved_by ? notice(t('v{version} is not approved; the registry refuses the move unless it is forced.', { version: to }), 'warn') : null,
        from === to ? notice(t('The alias already points at this version.'), 'info') : null);
    };
    aliasInput.addEventListener('input', refresh);
    versionSelect.addEventListener('change', refresh);
    refresh();
    const done = await dialog({
      title: t('Move an alias of {name}', { name }),
      body: h('div', { class: 'form' },
        h('datalist', { id: 'alias-names' }, Object.keys(aliases).map((a) => h('option', { value: a }))),
        field(t('Alias'), aliasInput, t('Requests for {name}@ALIAS are answered by the version it points at.', { name })),
        field(t('Version'), versionSelect),
        h('label', { class: 'row small' }, force, t('Force (skip the approval and validation checks)')),
        preview),
      confirm: t('Move alias'),
      onSubmit: () => {
        if (!ALIAS_RE.test(aliasInput.value)) throw new Error(t('An alias is a letter or _ then up to 63 letters, digits, _ or -.'));
        return api.put(`${base}/aliases/${enc(aliasInput.value)}`, { version: Number(versionSelect.value), force: force.checked });
      },
    });
    if (done) { toast(t('Alias {alias} now points at v{version}', { alias: aliasInput.value, version: done.version })); reload(); }
  }

  async function rollback(alias) {
    const history = await api.get(`${base}/aliases/${enc(alias)}/history`);
    const target = rollbackTarget(history);
    const done = await dialog({
      title: t('Roll back {alias} of {name}', { alias, name }),
      body: h('div', null,
        target === null
          ? notice(t('{alias} has no earlier version to return to; the registry will refuse.', { alias }), 'warn')
          : change(`${alias}: ${versionLabel(aliases[alias])}`, `${alias}: ${versionLabel(target)}`),
        h('p', { class: 'muted small' }, t('Serving switches to the earlier version within seconds.'))),
      confirm: t('Roll back'), danger: true,
      onSubmit: () => api.post(`${base}/aliases/${enc(alias)}/rollback`, {}),
    });
    if (done) { toast(t('{alias} rolled back to v{version}', { alias, version: done.version })); reload(); }
  }

  async function removeAlias(alias) {
    const done = await dialog({
      title: t('Delete alias {alias}', { alias }),
      body: change(`${alias}: ${versionLabel(aliases[alias])}`, t('no alias')), confirm: t('Delete'), danger: true,
      onSubmit: () => api.del(`${base}/aliases/${enc(alias)}`),
    });
    if (done) reload();
  }

  async function stress(version) {
    const rate = h('input', { type: 'number', value: 200, min: 1, max: 100000, name: 'rate' });
    const count = h('input', { type: 'number', value: 500, min: 1, max: 1000000, name: 'count' });
    const done = await dialog({
      title: t('Stress test {name} v{version}', { name, version }),
      body: h('div', { class: 'form' }, field(t('Calls per second'), rate), field(t('Calls'), count),
        h('p', { class: 'muted small' }, t('Runs in the server process; the latency percentiles are recorded on the version.'))),
      confirm: t('Run'),
      onSubmit: () => api.post(`${base}/versions/${version}/stress-test`, { rate: Number(rate.value), count: Number(count.value) }),
    });
    if (done) reload(version);
  }

  // -- versions table
  const versionRows = [...versions].reverse();
  const versionsTable = versions.length ? table({
    label: t('Versions'),
    columns: [
      { label: t('Version'), render: (v) => h('a', { href: href(`/models/${enc(name)}`, { version: v.version }), 'aria-current': v.version === chosen ? 'true' : null }, `v${v.version}`) },
      { label: t('Status'), render: (v) => statusBadge(v.status) },
      { label: t('Approval'), render: (v) => (v.approved_by ? badge(t('approved by {name}', { name: v.approved_by }), 'ok') : (v.status === 'rejected' ? '–' : t('not approved'))) },
      { label: t('Aliases'), render: (v) => chips(v.aliases) },
      { label: t('Flavor'), render: (v) => v.flavor },
      { label: t('Metrics'), render: (v) => Object.entries(v.metrics).slice(0, 3).map(([k, x]) => `${k} ${num(x)}`).join(', ') || '–' },
      { label: t('Registered'), className: 'nowrap', render: (v) => h('span', { title: when(v.created_at, 'seconds') }, `${ago(v.created_at)} · ${v.created_by}`) },
    ],
    rows: versionRows, rowClass: (v) => (v.version === chosen ? 'selected' : null),
  }) : empty(t('No versions yet.'), t('Register one with {code}.', { code: `registry.register(path, '${name}')` }));

  // -- aliases card
  const aliasRows = Object.entries(aliases).map(([alias, version]) => ({ alias, version }));
  const aliasCard = card(t('Aliases'), mayRelease ? [h('button', { type: 'button', class: 'primary small', on: { click: () => moveAlias() } }, t('Move an alias'))] : null,
    aliasRows.length ? table({
      label: t('Aliases'),
      columns: [
        { label: t('Alias'), render: (r) => h('strong', null, r.alias) },
        { label: t('Version'), render: (r) => h('a', { href: href(`/models/${enc(name)}`, { version: r.version }) }, `v${r.version}`) },
        { label: '', render: (r) => (mayRelease ? h('span', { class: 'row' },
          h('button', { type: 'button', class: 'small', on: { click: () => moveAlias(r.alias) } }, t('Move')),
          h('button', { type: 'button', class: 'small danger', on: { click: () => rollback(r.alias) } }, t('Roll back')),
          h('button', { type: 'button', class: 'small', 'aria-label': t('Delete alias {alias}', { alias: r.alias }), on: { click: () => removeAlias(r.alias) } }, t('Delete'))) : null) },
      ],
      rows: aliasRows,
    }) : empty(t('No aliases.'), mayRelease ? t('Point champion at an approved version to serve it.') : t('An operator points an alias such as champion at an approved version.')));

  // -- selected version
  let versionCard = null;
  if (mv) {
    const actions = [];
    if (mayApprove && mv.status === 'validated' && !mv.approved_by) {
      actions.push(h('button', { type: 'button', class: 'primary small', on: { click: () => review(mv.version, 'approve') } }, t('Approve')));
      actions.push(h('button', { type: 'button', class: 'danger small', on: { click: () => review(mv.version, 'reject') } }, t('Reject')));
    }
    if (mayRelease && mv.status !== 'rejected') actions.push(h('button', { type: 'button', class: 'small', on: { click: () => moveAlias(null, mv.version) } }, t('Set alias')));
    if (mayWrite) {
      actions.push(h('button', { type: 'button', class: 'small', on: { click: (e) => act(e.currentTarget, async () => { await api.post(`${base}/versions/${mv.version}/validate`, {}, { query: { wait: true } }); reload(mv.version); }, t('Validation finished')) } }, t('Validate again')));
      actions.push(h('button', { type: 'button', class: 'small', on: { click: () => stress(mv.version) } }, t('Stress test')));
    }
    actions.push(h('button', { type: 'button', class: 'small', on: { click: (e) => act(e.currentTarget, () => download(`${base}/versions/${mv.version}/download`)) } }, t('Download')));
    versionCard = card(t('Version {version}', { version: mv.version }), actions,
      h('div', { class: 'grid two' },
        h('div', null, kv([
          [t('Status'), statusBadge(mv.status)],
          [t('Approved by'), mv.approved_by ? `${mv.approved_by} · ${when(mv.approved_at)}` : null],
          [t('Registered by'), `${mv.created_by} · ${when(mv.created_at)}`],
          [t('Flavor'), mv.flavor],
          [t('Size'), bytes(mv.size)],
          [t('SHA-256'), h('span', { class: 'mono small' }, mv.sha256)],
          [t('Aliases'), mv.aliases.length ? chips(mv.aliases) : null],
          [t('Tags'), Object.keys(mv.tags).length ? Object.entries(mv.tags).map(([k, x]) => `${k}=${x}`).join(', ') : null],
          [t('Metrics'), Object.keys(mv.metrics).length ? Object.entries(mv.metrics).map(([k, x]) => `${k} ${num(x)}`).join(', ') : null],
        ]), h('h3', null, t('Lineage')), lineageView(mv)),
        h('div', null, h('h3', null, t('Validation')), validationView(mv))),
      h('h3', null, t('Signature')), signatureView(mv.signature));
  }

  // -- history and audit
  const eventsCard = card(t('History'), null, events.length ? table({
    label: t('History'),
    columns: [
      { label: t('When'), className: 'nowrap', render: (e) => when(e.ts, 'seconds') },
      { label: t('Who'), render: (e) => e.actor },
      { label: t('What'), render: (e) => e.kind },
      { label: t('Subject'), render: (e) => e.subject },
      { label: t('Details'), render: (e) => h('span', { class: 'mono small' }, JSON.stringify(e.details)) },
    ],
    rows: events,
  }) : empty(t('No events yet.')));
  let auditCard = null;
  if (can('audit', 'read')) {
    try {
      const records = (await api.get('/audit', { resource: 'models', limit: 500 }))
        .filter((r) => r.subject === `/models/${name}` || r.subject.startsWith(`/models/${name}/`));
      auditCard = card(t('Audit trail'), null, records.length ? table({
        label: t('Audit trail'),
        columns: [
          { label: t('When'), className: 'nowrap', render: (r) => when(r.ts, 'seconds') },
          { label: t('Who'), render: (r) => r.actor },
          { label: t('Request'), render: (r) => h('span', { class: 'mono small' }, r.route) },
          { label: t('Outcome'), render: (r) => statusBadge(r.outcome) },
          { label: t('Details'), render: (r) => h('span', { class: 'mono small' }, JSON.stringify(r.details)) },
        ],
        rows: records.slice(0, 100),
      }) : empty(t('No audited changes yet.')));
    } catch (error) {
      auditCard = card(t('Audit trail'), null, errorBox(error));
    }
  }

  root.append(
    pageHead({
      title: name, crumbs: [{ label: t('Models'), href: '#/models' }],
      sub: h('span', null, model.description || '', ' ', model.requires_approval ? badge(t('approval required'), 'info') : badge(t('approval not required'))),
    }),
    h('div', { class: 'stack' },
      card(t('Versions'), null, versionsTable),
      versionCard,
      h('div', { class: 'grid two' }, aliasCard, eventsCard),
      auditCard));
}

// Monitoring of a scene: operational series (requests, errors, fallbacks, latency) over a chosen
// range, daily reports by date with their history, drift and volume trends, label performance by
// version, and alerts (firing, history, rules, silences).
import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { ago, ms, num, percent, when } from '../format.js';
import { can } from '../perms.js';
import { href, remember } from '../router.js';
import { chart } from '../chart.js';
import { act, badge, card, dialog, empty, errorBox, field, loading, notice, pageHead, reportFrame, select, statusBadge, table, tabs, toast } from '../components.js';

const RANGES = [['1h', '1m'], ['6h', '5m'], ['24h', '15m'], ['7d', '1h'], ['30d', '6h']];

export async function openDailyReport(target, report, title) {
  replace(target, loading());
  try {
    const html = await api.get(`/monitoring/reports/${report.id}/html`);
    replace(target, h('h2', null, title || t('Daily report of {scene} for {day}', { scene: report.scene, day: report.day })),
      reportFrame(html, t('Daily report')));
    target.scrollIntoView({ block: 'start' });
  } catch (error) {
    replace(target, errorBox(error));
  }
}

// For the reports page: every scene's daily reports.
export async function dailyReportsCard(viewer) {
  const scenes = await api.get('/scenes').catch(() => []);
  const lists = await Promise.all(scenes.slice(0, 50).map((s) => api.get('/monitoring/reports', { scene: s.name }).catch(() => [])));
  const rows = lists.flat().sort((a, b) => (a.day < b.day ? 1 : a.day > b.day ? -1 : b.id - a.id));
  return card(t('Daily monitoring reports'), null, table({
    label: t('Daily monitoring reports'),
    columns: [
      { label: t('Report'), render: (r) => h('button', { type: 'button', class: 'link', on: { click: () => openDailyReport(viewer, r) } }, `${r.scene} · ${r.day}`) },
      { label: t('Scene'), render: (r) => h('a', { href: href('/monitoring', { scene: r.scene, tab: 'reports' }) }, r.scene) },
      { label: t('Requests'), num: true, render: (r) => num(r.rows) },
      { label: t('Generated'), className: 'nowrap', render: (r) => `${ago(r.created_at)} · ${r.created_by}` },
    ],
    rows,
    emptyState: empty(t('No daily reports yet.'), t('Generate one on the monitoring page or with {command}.', { command: 'shipyard reports daily --scene NAME' })),
  }));
}

function seriesCharts(doc) {
  const x = doc.points.map((p) => p.t);
  const line = (label, key) => ({ label, x, y: doc.points.map((p) => p[key]) });
  const xRange = [doc.since, doc.until];
  return h('div', { class: 'charts' },
    chart({ title: t('Requests per second'), time: true, xRange, series: [line(t('requests/s'), 'qps')] }),
    chart({ title: t('Error and fallback rate'), time: true, xRange, rate: true, series: [line(t('errors'), 'error_rate'), line(t('fallbacks'), 'fallback_rate')] }),
    chart({ title: t('Latency (ms)'), time: true, xRange, series: [line('p50', 'latency_p50_ms'), line('p99', 'latency_p99_ms'),
      line(t('features p99'), 'features_latency_p99_ms'), line(t('model p99'), 'model_latency_p99_ms')] }));
}

function groupedCharts(doc, by) {
  const groups = new Map();
  for (const p of doc.points) {
    const key = String(p[by] ?? '?');
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  const series = (key) => [...groups.entries()].map(([g, points]) => ({ label: `${by} ${g}`, x: points.map((p) => p.t), y: points.map((p) => p[key]) }));
  const xRange = [doc.since, doc.until];
  return h('div', { class: 'charts' },
    chart({ title: t('Requests per second'), time: true, xRange, series: series('qps') }),
    chart({ title: t('Error rate'), time: true, xRange, rate: true, series: series('error_rate') }),
    chart({ title: t('p99 latency (ms)'), time: true, xRange, series: series('latency_p99_ms') }));
}

async function seriesTab(root, scene, query) {
  const since = query.get('since') || '6h';
  const step = (RANGES.find(([r]) => r === since) || [null, '5m'])[1];
  const by = query.get('by') || '';
  const box = h('div', null, loading());
  const buttons = h('div', { class: 'row', role: 'group', 'aria-label': t('Range') }, RANGES.map(([r]) => h('a', {
    class: r === since ? 'button small primary' : 'button small', href: href('/monitoring', { scene, tab: 'series', since: r, by }),
    'aria-current': r === since ? 'true' : null,
  }, t('last {range}', { range: r }))),
  h('label', { class: 'row small' }, t('Split by'), select([['', t('nothing')], ['version', t('version')], ['arm', t('arm')]], by, {
    on: { change: (e) => { location.hash = href('/monitoring', { scene, tab: 'series', since, by: e.target.value }); } },
  })));
  root.append(card(t('Operational series'), null, buttons, box,
    h('p', { class: 'muted small' }, t('Drag across a chart to zoom in; double-click to zoom out. Every server writes its own minutes; these are their sum.'))));
  try {
    const doc = await api.get('/monitoring/series', { scene, since, step, by: by || null });
    const total = doc.total;
    replace(box, h('div', { class: 'grid three' },
      h('div', { class: 'stat' }, h('span', { class: 'value' }, num(total.requests)), h('span', { class: 'label' }, t('requests'))),
      h('div', { class: 'stat' }, h('span', { class: 'value' }, percent(total.error_rate)), h('span', { class: 'label' }, t('errors'))),
      h('div', { class: 'stat' }, h('span', { class: 'value' }, ms(total.latency_p99_ms)), h('span', { class: 'label' }, t('p99 latency')))),
    doc.points.length ? (by ? groupedCharts(doc, by) : seriesCharts(doc))
      : empty(t('No traffic in this range.'), t('Requests to {path} show here within a minute.', { path: `/v1/scenes/${scene}/predict` })));
  } catch (error) {
    replace(box, errorBox(error));
  }
}

async function reportsTab(root, scene, query) {
  const viewer = h('div', { class: 'stack' });
  const reports = await api.get('/monitoring/reports', { scene });
  const today = new Date().toISOString().slice(0, 10);
  const day = h('input', { type: 'date', value: query.get('day') || (reports[0] ? reports[0].day : today), max: today, name: 'day' });
  const open = h('button', { type: 'submit', class: 'primary' }, t('Open'));
  const problem = h('div');
  const form = h('form', { class: 'form inline', 'aria-label': t('Daily report by date') }, field(t('Day'), day), open,
    can('monitoring', 'write') ? h('button', { type: 'button', on: { click: (e) => act(e.currentTarget, async () => {
      const made = await api.post('/monitoring/reports/daily', { scene, date: day.value });
      toast(t('Report for {day}: {rows} requests', { day: made.day, rows: made.rows }));
      location.hash = href('/monitoring', { scene, tab: 'reports', day: made.day, open: 1 });
    }) } }, t('Generate for this day')) : null, problem);
  const openDay = () => {
    replace(problem);
    remember('/monitoring', { scene, tab: 'reports', day: day.value });
    const found = reports.find((r) => r.day === day.value);
    if (found) openDailyReport(viewer, found);
    else replace(problem, notice(t('No report for {day} yet.', { day: day.value }) + (can('monitoring', 'write') ? ` ${t('Generate it with the button.')}` : ''), 'warn'));
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); openDay(); });
  root.append(card(t('Daily reports'), null, form, reports.length ? table({
    label: t('Report history'),
    columns: [
      { label: t('Day'), render: (r) => h('button', { type: 'button', class: 'link', on: { click: () => { day.value = r.day; openDailyReport(viewer, r); } } }, r.day) },
      { label: t('Requests'), num: true, render: (r) => num(r.rows) },
      { label: t('Generated'), className: 'nowrap', render: (r) => `${when(r.created_at)} · ${r.created_by}` },
    ],
    rows: reports,
  }) : empty(t('No daily reports yet.'), t('Generate one on the monitoring page or with {command}.', { command: `shipyard reports daily --scene ${scene}` }))), viewer);
  if (query.get('open') || query.get('day')) openDay();
}

async function trendsTab(root, scene) {
  const [trend, labels] = await Promise.all([api.get('/monitoring/trend', { scene, days: 30 }),
    api.get('/monitoring/labels/metrics', { scene }).catch((error) => ({ error }))]);
  const days = trend.map((r) => Date.parse(`${r.day}T00:00:00Z`));
  const xRange = [Date.now() - 30 * 86400000, Date.now()];
  const line = (label, key) => ({ label, x: days, y: trend.map((r) => r[key]) });
  root.append(card(t('30-day trends'), null, trend.length ? h('div', { class: 'charts' },
    chart({ title: t('Requests per day'), time: true, xRange, bars: true, series: [line(t('requests'), 'requests')] }),
    chart({ title: t('Approval rate'), time: true, xRange, rate: true, series: [line(t('approval rate'), 'approval_rate')] }),
    chart({ title: t('Drift (PSI)'), time: true, xRange, series: [line(t('score PSI'), 'score_psi'), line(t('largest input PSI'), 'max_psi')] }),
    chart({ title: t('p99 latency (ms)'), time: true, xRange, series: [line('p99', 'latency_p99_ms')] }))
    : empty(t('No daily statistics yet.'), t('They are stored with each daily report.'))),
  card(t('Drift by day'), null, trend.length ? table({
    label: t('Drift by day'),
    columns: [
      { label: t('Day'), render: (r) => r.day },
      { label: t('Requests'), num: true, render: (r) => num(r.requests ?? r.rows) },
      { label: t('Score PSI'), num: true, render: (r) => psiBadge(r.score_psi) },
      { label: t('Largest input PSI'), num: true, render: (r) => psiBadge(r.max_psi) },
      { label: t('Drifted inputs'), render: (r) => (Array.isArray(r.drifted) ? r.drifted.join(', ') || '–' : num(r.drifted)) },
      { label: t('Approval rate'), num: true, render: (r) => percent(r.approval_rate) },
    ],
    rows: [...trend].reverse(),
  }) : empty(t('No daily statistics yet.'))),
  card(t('Label performance by version'), null, labels.error ? errorBox(labels.error) : labels.by_version.length ? [
    h('p', { class: 'muted small' }, t('{matched} labels joined to predictions, {unmatched} unmatched.', labels)),
    table({
      label: t('Label performance by version'),
      columns: [
        { label: t('Version'), render: (r) => `v${r.version}` }, { label: t('Labelled'), num: true, render: (r) => num(r.labelled) },
        { label: t('Bad rate'), num: true, render: (r) => percent(r.bad_rate) }, { label: t('Approval rate'), num: true, render: (r) => percent(r.approval_rate) },
        { label: 'AUC', num: true, render: (r) => num(r.auc, 3) }, { label: 'KS', num: true, render: (r) => num(r.ks, 3) },
      ],
      rows: labels.by_version,
    })] : empty(t('No labels yet.'), t('Send outcomes with {command}; they are joined to the predictions by request id or by entity and time.', { command: 'shipyard labels ingest FILE --scene S' }))));
}

function psiBadge(value) {
  if (value === null || value === undefined) return '–';
  return badge(num(value, 3), value >= 0.25 ? 'bad' : value >= 0.1 ? 'warn' : 'ok');
}

async function alertsTab(root, view) {
  const [firing, history, rules, silences] = await Promise.all([
    api.get('/monitoring/alerts/history', { status: 'firing', limit: 100 }), api.get('/monitoring/alerts/history', { limit: 50 }),
    api.get('/monitoring/alerts/rules'), api.get('/monitoring/alerts/silences'),
  ]);
  const mayWrite = can('monitoring', 'write');
  const now = Date.now();

  async function silence(rule) {
    const duration = select(['30m', '1h', '4h', '1d', '7d'], '1h', { name: 'duration' });
    const reason = h('input', { name: 'reason', placeholder: t('why') });
    const done = await dialog({
      title: t('Silence {rule}', { rule }), confirm: t('Silence'),
      body: h('div', { class: 'form' }, field(t('For'), duration), field(t('Reason'), reason),
        h('p', { class: 'muted small' }, t('The alert keeps being evaluated and recorded; nobody is notified meanwhile.'))),
      onSubmit: () => api.post('/monitoring/alerts/silences', { rule, duration: duration.value, reason: reason.value }),
    });
    if (done) view.refresh();
  }

  async function deleteRule(rule) {
    const done = await dialog({
      title: t('Delete rule {rule}', { rule }), confirm: t('Delete'), danger: true,
      body: h('p', null, t('The rule is no longer evaluated and its open alerts are closed; its alert history is kept.')),
      onSubmit: () => api.del(`/monitoring/alerts/rules/${encodeURIComponent(rule)}`),
    });
    if (done) { toast(t('Rule {rule} deleted', { rule })); view.refresh(); }
  }

  async function editRules() {
    // every setting of a rule is written out (JSON is YAML), so applying the text unchanged changes nothing
    const q = (v) => JSON.stringify(v);
    const ruleText = (r) => `  - name: ${q(r.name)}\n    metric: ${q(r.metric)}\n    condition: ${q(r.condition)}\n`
      + `${Object.keys(r.scope || {}).length ? `    scope: ${q(r.scope)}\n` : ''}    window: ${q(r.window)}\n`
      + `    severity: ${q(r.severity)}\n    cooldown: ${q(r.cooldown)}\n    notify: ${q(r.notify || [])}\n`
      + `${r.description ? `    description: ${q(r.description)}\n` : ''}${r.enabled === false ? '    enabled: false\n' : ''}`;
    const text = h('textarea', { rows: 16, name: 'rules', spellcheck: 'false' }, `rules:\n${rules.rules.map(ruleText).join('')}`);
    // the API adds or replaces the rules it is given; the ones taken out of the text are deleted here
    async function apply() {
      const applied = await api.post('/monitoring/alerts/rules', { document: text.value });
      const kept = new Set(applied.rules);
      for (const r of rules.rules) {
        if (!kept.has(r.name)) await api.del(`/monitoring/alerts/rules/${encodeURIComponent(r.name)}`);
      }
      return applied;
    }
    const done = await dialog({
      title: t('Alert rules'), confirm: t('Apply'),
      body: h('div', { class: 'form' }, field(t('Rules (YAML)'), text, t('The whole set: rules left out are removed.'))),
      onSubmit: apply,
    });
    if (done) { toast(t('Rules applied')); view.refresh(); }
  }

  const evaluate = h('button', { type: 'button', class: 'small', on: { click: (e) => act(e.currentTarget, async () => {
    const events = await api.post('/monitoring/alerts/evaluate', {});
    toast(t('{count} alert changes', { count: events.length }));
    view.refresh();
  }) } }, t('Evaluate now'));
  const alertColumns = [
    { label: t('Rule'), render: (a) => h('strong', null, a.rule) },
    { label: t('Status'), render: (a) => h('span', null, statusBadge(a.status), a.silenced ? [' ', badge(t('silenced'), 'warn')] : null) },
    { label: t('Severity'), render: (a) => badge(a.severity, a.severity === 'critical' ? 'bad' : 'warn') },
    { label: t('Value'), num: true, render: (a) => `${num(a.value)} / ${num(a.threshold)}` },
    { label: t('Scope'), render: (a) => Object.entries(a.scope || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '–' },
    { label: t('Since'), className: 'nowrap', render: (a) => ago(a.started_at) },
    { label: t('Message'), render: (a) => a.message || '–' },
  ];
  root.append(
    card(t('Firing alerts'), mayWrite ? [evaluate] : null, table({
      label: t('Firing alerts'),
      columns: [...alertColumns, { label: '', render: (a) => (mayWrite ? h('button', { type: 'button', class: 'small', on: { click: () => silence(a.rule) } }, t('Silence')) : null) }],
      rows: firing, emptyState: empty(t('No alert is firing.'), rules.rules.length ? t('Rules are evaluated every minute by the scheduler.') : t('Add rules to be told when something goes wrong.')),
    })),
    card(t('Alert rules'), mayWrite ? [h('button', { type: 'button', class: 'small primary', on: { click: editRules } }, t('Edit rules'))] : null, table({
      label: t('Alert rules'),
      columns: [
        { label: t('Rule'), render: (r) => h('strong', null, r.name) }, { label: t('Metric'), render: (r) => (r.invalid ? '–' : h('span', { class: 'mono' }, r.metric)) },
        { label: t('Condition'), render: (r) => (r.invalid ? '–' : `${r.condition} ${t('over')} ${r.window}`) },
        { label: t('Scope'), render: (r) => (r.invalid ? '–' : Object.entries(r.scope || {}).map(([k, v]) => `${k}=${v}`).join(', ') || t('all')) },
        { label: t('Severity'), render: (r) => r.severity || '–' }, { label: t('Notify'), render: (r) => (r.notify || []).join(', ') || '–' },
        // a stored rule that no longer validates is not evaluated: marked, with the reason and the fix
        { label: t('State'), render: (r) => (r.invalid ? h('span', null, statusBadge('invalid'), ' ', h('span', { class: 'small muted' }, r.invalid))
          : r.enabled === false ? statusBadge('disabled') : statusBadge('active')) },
        ...(mayWrite ? [{ label: '', render: (r) => h('button', { type: 'button', class: 'small danger', 'aria-label': t('Delete rule {rule}', { rule: r.name }), on: { click: () => deleteRule(r.name) } }, t('Delete')) }] : []),
      ],
      rows: [...rules.rules, ...(rules.invalid_rules || []).map((r) => ({ name: r.name, invalid: r.error }))],
      emptyState: empty(t('No alert rules.'), t('Write them in YAML here or apply a file with {command}.', { command: 'shipyard alerts apply rules.yaml' })),
    })),
    h('div', { class: 'grid two' },
      card(t('Silences'), null, table({
        label: t('Silences'),
        columns: [
          { label: t('Rule'), render: (s) => s.rule }, { label: t('Until'), className: 'nowrap', render: (s) => when(s.ends_at) },
          { label: t('State'), render: (s) => (s.ends_at > now && s.starts_at <= now ? badge(t('active'), 'warn') : badge(t('over'))) },
          { label: t('Reason'), render: (s) => s.reason || '–' }, { label: t('By'), render: (s) => s.created_by },
        ],
        rows: [...silences].reverse(), emptyState: empty(t('No silences.')),
      })),
      card(t('Alert history'), null, table({ label: t('Alert history'), columns: alertColumns, rows: history, emptyState: empty(t('No alerts so far.')) }))));
}

export default async function render(view, root) {
  const scenes = await api.get('/scenes');
  root.append(pageHead({ title: t('Monitoring') }));
  const tab = view.query.get('tab') || 'series';
  if (tab !== 'alerts' && !scenes.length) {
    root.append(tabs([['series', t('Scenes'), '#/monitoring'], ['alerts', t('Alerts'), href('/monitoring', { tab: 'alerts' })]], tab),
      empty(t('No scenes yet.'), t('Monitoring follows the scenes you serve; apply one with {command}.', { command: 'shipyard scenes apply scene.yaml' })));
    return;
  }
  const scene = view.query.get('scene') || (scenes[0] && scenes[0].name);
  const picker = select(scenes.map((s) => [s.name, s.name]), scene, { id: 'monitor-scene', on: { change: (e) => { location.hash = href('/monitoring', { scene: e.target.value, tab }); } } });
  root.append(h('div', { class: 'form inline' }, field(t('Scene'), picker)),
    tabs([
      ['series', t('Operations'), href('/monitoring', { scene, tab: 'series' })], ['reports', t('Daily reports'), href('/monitoring', { scene, tab: 'reports' })],
      ['trends', t('Drift and labels'), href('/monitoring', { scene, tab: 'trends' })], ['alerts', t('Alerts'), href('/monitoring', { scene, tab: 'alerts' })],
    ], tab, t('Monitoring')));
  const body = h('div', { class: 'stack' });
  root.append(body);
  if (tab === 'reports') await reportsTab(body, scene, view.query);
  else if (tab === 'trends') await trendsTab(body, scene);
  else if (tab === 'alerts') await alertsTab(body, view);
  else await seriesTab(body, scene, view.query);
}

// One scene: the decision flow as a graph, its versions, the traffic policy (editor for those who
// may apply scenes), live per-arm requests, latency and errors, the rollout and its automatic
// rollbacks, and a "try it" panel that sends a request and shows the latency breakdown.
import { api, enc, predictScene } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { ago, ms, num, percent, when } from '../format.js';
import { can } from '../perms.js';
import { href } from '../router.js';
import { graph } from '../graph.js';
import { COLORS, chart } from '../chart.js';
import { act, badge, card, change, dialog, empty, errorBox, field, json, kv, notice, pageHead, select, statusBadge, table, toast } from '../components.js';
import { flowGraph } from './sceneflow.js';
import { trafficEditor, trafficSummary } from './traffic.js';

const POLL_MS = 3000;

function armsTable(status) {
  const arms = Object.entries(status.arms || {});
  if (!arms.length) return empty(t('No requests yet.'), t('Send one with the “Try it” panel, or POST to {path}.', { path: `/v1/scenes/${status.scene}/predict` }));
  return table({
    label: t('Arms'),
    columns: [
      { label: t('Arm'), render: ([arm]) => h('strong', null, arm) },
      { label: t('Requests'), num: true, render: ([, a]) => num(a.count) },
      { label: t('Errors'), num: true, render: ([, a]) => num(a.errors) },
      { label: t('Error rate'), num: true, render: ([, a]) => badge(percent(a.error_rate), a.error_rate > 0.05 ? 'bad' : a.error_rate > 0 ? 'warn' : 'ok') },
      { label: t('p50'), num: true, render: ([, a]) => ms(a.p50_ms) },
      { label: t('p99'), num: true, render: ([, a]) => ms(a.p99_ms) },
    ],
    rows: arms,
  });
}

function coerce(type, raw) {
  const base = String(type).replace('?', '');
  if (raw === '') return null;
  if (['double', 'float'].includes(base)) return Number(raw);
  if (['integer', 'long'].includes(base)) return Number.parseInt(raw, 10);
  if (base === 'boolean') return raw === 'true';
  return raw;
}

function tryPanel(spec, status, example) {
  const inputs = Object.entries(spec.inputs || {});
  const controls = inputs.map(([name, type]) => {
    const base = String(type).replace('?', '');
    const el = base === 'boolean'
      ? select([['', '–'], ['true', 'true'], ['false', 'false']], example[name] === undefined ? '' : String(example[name]), { name })
      : h('input', { name, value: example[name] ?? '', type: ['double', 'float', 'integer', 'long'].includes(base) ? 'number' : 'text', step: 'any', required: !String(type).endsWith('?') });
    return [name, type, el];
  });
  const armNames = ['', 'control', ...Object.keys((spec.traffic && spec.traffic.arms) || {})];
  const arm = select(armNames.map((a) => [a, a || t('by the traffic policy')]), '', { name: 'arm' });
  const out = h('div', { 'aria-live': 'polite' });
  const send = h('button', { type: 'submit', class: 'primary' }, t('Send'));
  const form = h('form', { class: 'form', 'aria-label': t('Try it') },
    h('div', { class: 'form inline' }, controls.map(([name, type, el]) => field(`${name} (${type})`, el))),
    (spec.traffic && spec.traffic.override === false) ? null : field(t('Arm'), arm, t('Sent as the X-Shipyard-Arm header.')),
    h('div', null, send), out);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const record = {};
    for (const [name, type, el] of controls) record[name] = coerce(type, el.value);
    send.disabled = true;
    try {
      const { body, roundTripMs } = await predictScene(spec.name, record, arm.value || null);
      const lat = body.latency_ms || {};
      const other = Math.max(0, (lat.total || 0) - (lat.features || 0) - (lat.model || 0));
      replace(out, h('div', { class: 'grid two' },
        h('div', null, h('h3', null, t('Response')), kv([
          [t('Arm'), badge(body.arm, 'info')], [t('Version'), `v${body.version}`],
          [t('Models'), Object.entries(body.models || {}).map(([m, v]) => `${m} v${v}`).join(', ')],
          [t('Fallback'), body.fallback ? badge(body.fallback_reason || t('yes'), 'warn') : t('no')],
          [t('Request id'), h('span', { class: 'mono small' }, body.request_id)],
        ]), json(body.outputs)),
        h('div', null, h('h3', null, t('Latency')), table({
          label: t('Latency'),
          columns: [{ label: t('Part'), render: (r) => r[0] }, { label: t('Time'), num: true, render: (r) => ms(r[1]) },
            { label: '', render: (r) => h('div', { class: 'bar' }, h('span', { style: { width: `${Math.min(100, (r[1] / Math.max(roundTripMs, 0.001)) * 100)}%` } })) }],
          rows: [[t('features'), lat.features], [t('models'), lat.model], [t('flow and rules'), other], [t('server total'), lat.total],
            [t('round trip (browser)'), roundTripMs]],
        }))));
      status.refresh();
    } catch (error) {
      replace(out, errorBox(error));
    } finally {
      send.disabled = false;
    }
  });
  return form;
}

export default async function render(view, root) {
  const name = view.params.name;
  const base = `/scenes/${enc(name)}`;
  const wanted = Number(view.query.get('version')) || null;
  const [doc, versions, releases] = await Promise.all([
    api.get(base, wanted ? { version: wanted } : null), api.get(`${base}/versions`), api.get(`${base}/releases`).catch(() => []),
  ]);
  const spec = doc.spec;
  const latest = versions[versions.length - 1];
  let status = null;
  let statusError = null;
  try { status = await api.get(`${base}/status`); } catch (error) { statusError = error; }

  const mayApply = can('scenes', 'write');
  const mayRelease = can('scenes', 'release');
  const mayPredict = can('scenes', 'predict');

  // -- live status, refreshed while the page is open
  const liveBox = h('div', { 'aria-live': 'off' }, status ? armsTable(status) : errorBox(statusError));
  const servedLine = h('p', { class: 'muted small' });
  const history = new Map();
  const chartBox = h('div');
  let polls = 0;
  const drawStatus = (s) => {
    status = s;
    replace(liveBox, armsTable(s));
    replace(servedLine, t('Serving v{version}; updated {when}.', { version: s.version, when: when(Date.now(), 'time') }),
      s.canary && s.canary.arm ? ` ${t('Canary {arm} at {percent} %.', s.canary)}` : '');
    const now = Date.now();
    for (const [arm, a] of Object.entries(s.arms || {})) {
      if (!history.has(arm)) history.set(arm, { x: [], y: [] });
      const series = history.get(arm);
      series.x.push(now);
      series.y.push(a.p99_ms);
      if (series.x.length > 200) { series.x.shift(); series.y.shift(); }
    }
    polls += 1;
    if (polls > 1 && polls % 2 === 0) {
      replace(chartBox, chart({ title: t('p99 latency by arm (ms)'), time: true, height: 160,
        series: [...history.entries()].map(([arm, v], i) => ({ label: arm, x: v.x, y: v.y, color: COLORS[i % COLORS.length] })) }));
    }
  };
  const poll = async () => {
    try { drawStatus(await api.get(`${base}/status`)); } catch (error) { replace(liveBox, errorBox(error)); }
  };
  const timer = setInterval(() => { if (!document.hidden) poll(); }, POLL_MS);
  view.onDispose(() => clearInterval(timer));
  const statusHandle = { refresh: poll };
  if (status) drawStatus(status);

  // -- traffic
  async function applyTraffic(editor) {
    let traffic;
    try { traffic = editor.value(); } catch (error) { toast(error.message, 'error'); return; }
    const comment = h('input', { name: 'comment', placeholder: t('why (kept with the version)') });
    const current = JSON.stringify(spec.traffic || {}, null, 1);
    const next = JSON.stringify(traffic, null, 1);
    const done = await dialog({
      title: t('Apply a new version of {name}', { name }),
      body: h('div', { class: 'form' },
        change(h('span', null, `v${latest.version}`, h('pre', { class: 'small' }, current)), h('span', null, `v${latest.version + 1}`, h('pre', { class: 'small' }, next))),
        current === next ? notice(t('The traffic policy is unchanged.'), 'warn') : null,
        field(t('Comment'), comment),
        h('p', { class: 'muted small' }, t('Every server serving this scene switches to the new version within seconds.'))),
      confirm: t('Apply'),
      onSubmit: () => api.post('/scenes', { ...spec, traffic: Object.keys(traffic).length ? traffic : undefined }, { query: { comment: comment.value } }),
    });
    if (!done) return;
    toast(t('Applied v{version}; waiting for it to serve…', { version: done.version }));
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline && view.alive()) {
      try {
        const s = await api.get(`${base}/status`);
        if (s.version >= done.version) { toast(t('Now serving v{version}', { version: s.version })); break; }
      } catch { /* keep waiting */ }
      await new Promise((r) => setTimeout(r, 500));
    }
    if (view.alive()) { location.hash = href(`/scenes/${enc(name)}`); view.refresh(); }
  }

  let trafficCard;
  if (mayApply && (!wanted || wanted === latest.version)) {
    const models = can('models', 'read') ? await api.get('/models').catch(() => []) : [];
    const editor = trafficEditor(spec, models);
    trafficCard = card(t('Traffic policy'), [h('button', { type: 'button', class: 'primary small', on: { click: () => applyTraffic(editor) } }, t('Apply as a new version'))],
      trafficSummary(spec.traffic), editor.element);
  } else {
    trafficCard = card(t('Traffic policy'), null, trafficSummary(spec.traffic), spec.traffic ? json(spec.traffic) : null);
  }

  // -- canary and rollout
  const rolloutParts = [];
  const arms = Object.keys((spec.traffic && spec.traffic.arms) || {});
  const newest = releases.length ? releases[releases.length - 1] : null;
  if (newest) {
    rolloutParts.push(kv([[t('Newest release'), h('span', null, statusBadge(newest.status), ' ', `${newest.arm} ${newest.percent} %`)],
      [t('Reason'), newest.reason || null], [t('Updated'), when(newest.updated_at, 'seconds')]]));
  }
  if (mayRelease && arms.length) {
    const armSelect = select(arms, arms[0], { name: 'arm' });
    const percentInput = h('input', { type: 'number', min: 0, max: 100, step: 'any', value: (status && status.canary && status.canary.percent) || 0, name: 'percent' });
    const setCanary = h('button', { type: 'button' }, t('Set canary'));
    setCanary.addEventListener('click', () => act(setCanary, async () => {
      await api.post(`${base}/canary`, null, { query: { percent: Number(percentInput.value), arm: armSelect.value } });
      poll();
    }, t('Canary moved')));
    const steps = h('input', { value: '5, 25, 50, 100', name: 'steps', 'aria-describedby': 'steps-hint' });
    const minRequests = h('input', { type: 'number', min: 1, value: 50, name: 'min_requests' });
    const start = h('button', { type: 'button', class: 'primary' }, t('Start rollout'));
    start.addEventListener('click', () => act(start, async () => {
      const list = steps.value.split(',').map((x) => Number(x.trim())).filter((x) => !Number.isNaN(x));
      await api.post(`${base}/rollout`, { arm: armSelect.value, steps: list, min_requests: Number(minRequests.value) || null });
      view.refresh();
    }, t('Rollout started')));
    const abort = h('button', { type: 'button', class: 'danger' }, t('Abort rollout'));
    abort.addEventListener('click', async () => {
      const done = await dialog({ title: t('Abort the rollout of {name}', { name }), body: change(`${newest ? newest.arm : ''} ${newest ? newest.percent : 0} %`, '0 %'),
        confirm: t('Abort'), danger: true, onSubmit: () => api.del(`${base}/rollout`) });
      if (done) view.refresh();
    });
    rolloutParts.push(h('div', { class: 'form inline' }, field(t('Arm'), armSelect), field(t('Canary percent'), percentInput), setCanary),
      h('div', { class: 'form inline' }, field(t('Steps (percent)'), steps), field(t('Requests per step'), minRequests), start,
        newest && newest.status === 'running' ? abort : null),
      h('p', { id: 'steps-hint', class: 'muted small' }, t('The rollout moves the canary through the steps and rolls back by itself when the error rate, p99 or score PSI break the scene limits.')));
  } else if (!arms.length) {
    rolloutParts.push(empty(t('No arm to roll out.'), t('Add an arm to the traffic policy first.')));
  }
  const releasesTable = releases.length ? table({
    label: t('Releases'),
    columns: [
      { label: '#', num: true, render: (r) => r.id },
      { label: t('Arm'), render: (r) => r.arm },
      { label: t('Status'), render: (r) => statusBadge(r.status) },
      { label: t('Percent'), num: true, render: (r) => `${r.percent} %` },
      { label: t('Reason'), render: (r) => r.reason || '–' },
      { label: t('Started'), className: 'nowrap', render: (r) => `${when(r.started_at)} · ${r.actor}` },
      { label: t('Updated'), className: 'nowrap', render: (r) => ago(r.updated_at) },
    ],
    rows: [...releases].reverse(), rowClass: (r) => (r.status === 'rolled_back' ? 'diff' : null),
  }) : empty(t('No releases yet.'));

  // -- versions
  const versionsTable = table({
    label: t('Versions'),
    columns: [
      { label: t('Version'), render: (v) => h('a', { href: href(`/scenes/${enc(name)}`, { version: v.version }), 'aria-current': v.version === doc.version ? 'true' : null }, `v${v.version}`) },
      { label: t('Applied'), className: 'nowrap', render: (v) => `${when(v.created_at)} · ${v.created_by}` },
      { label: t('Comment'), render: (v) => v.comment || '–' },
    ],
    rows: [...versions].reverse(), rowClass: (v) => (v.version === doc.version ? 'selected' : null),
  });

  const example = (status && status.example) || {};
  root.append(
    pageHead({ title: name, crumbs: [{ label: t('Scenes'), href: '#/scenes' }], sub: h('span', null, spec.description || '', ' ', badge(`v${doc.version}`, 'info'),
      wanted && wanted !== latest.version ? [' ', badge(t('not the latest'), 'warn')] : null) }),
    h('div', { class: 'stack' },
      card(t('Decision flow'), null, graph({ ...flowGraph(spec.flow), label: t('Decision flow') }),
        h('p', { class: 'muted small' }, t('Inputs: {inputs}. Outputs: {outputs}.', { inputs: Object.entries(spec.inputs).map(([k, v]) => `${k} (${v})`).join(', '),
          outputs: (spec.outputs || [t('everything the steps write')]).join(', ') }))),
      h('div', { class: 'grid two' },
        card(t('Live traffic'), null, servedLine, liveBox, chartBox),
        mayPredict ? card(t('Try it'), null, tryPanel(spec, statusHandle, example)) : card(t('Try it'), null, notice(t('Sending requests needs a role that may predict (predictor, operator, modeler).')))),
      trafficCard,
      h('div', { class: 'grid two' }, card(t('Canary and rollout'), null, ...rolloutParts), card(t('Releases and automatic rollbacks'), null, releasesTable)),
      h('div', { class: 'grid two' }, card(t('Versions'), null, versionsTable),
        card(t('Limits and fallback'), null, kv([...Object.entries(spec.limits || {}).map(([k, v]) => [k, String(v)]),
          [t('Fallback'), spec.fallback ? JSON.stringify(spec.fallback) : null]]))),
      h('details', null, h('summary', null, t('Scene document')), json(spec))));
}

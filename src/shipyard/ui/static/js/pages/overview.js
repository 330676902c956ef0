// Overview: scenes' health, versions waiting for approval, recent runs, firing alerts.
import { api, enc } from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { ago, ms, num, percent } from '../format.js';
import { can } from '../perms.js';
import { href } from '../router.js';
import { hasApi } from '../state.js';
import { badge, card, empty, errorBox, pageHead, statusBadge, table } from '../components.js';

async function section(load, draw) {
  try {
    return draw(await load());
  } catch (error) {
    return errorBox(error);
  }
}

function sum(values) { return values.reduce((a, b) => a + (b || 0), 0); }

// A scene's last hour: the operational series of every server when monitoring is installed, else
// what this server itself served lately.
async function health(scene) {
  if (hasApi('monitoring') && can('monitoring', 'read')) {
    const doc = await api.get('/monitoring/series', { scene, since: '1h', step: '1h' });
    const s = doc.total;
    return { requests: s.requests, error_rate: s.requests ? s.error_rate : null, p99: s.latency_p99_ms, fallbacks: s.fallbacks };
  }
  const status = await api.get(`/scenes/${enc(scene)}/status`);
  const arms = Object.values(status.arms || {});
  const requests = sum(arms.map((a) => a.count));
  return { requests, error_rate: requests ? sum(arms.map((a) => a.errors)) / requests : null,
    p99: Math.max(0, ...arms.map((a) => a.p99_ms || 0)) || null, fallbacks: null };
}

async function scenesCard() {
  const scenes = await api.get('/scenes');
  if (!scenes.length) {
    return empty(t('No scenes yet.'), t('Apply a decision flow with {command} (or run {demo}); its traffic and latency show here.',
      { command: 'shipyard scenes apply scene.yaml', demo: 'shipyard demo' }));
  }
  const shown = scenes.slice(0, 12);
  const figures = await Promise.all(shown.map((s) => health(s.name).catch((error) => ({ error }))));
  const rows = shown.map((s, i) => ({ scene: s, h: figures[i] }));
  return table({
    label: t('Scenes'),
    columns: [
      { label: t('Scene'), render: (r) => h('a', { href: href(`/scenes/${enc(r.scene.name)}`) }, r.scene.name) },
      { label: t('Version'), num: true, render: (r) => r.scene.latest_version },
      { label: t('Requests (last hour)'), num: true, render: (r) => (r.h.error ? '–' : num(r.h.requests)) },
      { label: t('Error rate'), num: true, render: (r) => (r.h.error_rate === null || r.h.error_rate === undefined ? '–'
        : h('span', { class: r.h.error_rate > 0.05 ? 'badge bad' : null }, percent(r.h.error_rate))) },
      { label: t('p99'), num: true, render: (r) => ms(r.h.p99) },
      { label: t('Fallbacks'), num: true, render: (r) => (r.h.fallbacks === null || r.h.fallbacks === undefined ? '–' : num(r.h.fallbacks)) },
      { label: t('State'), render: (r) => (r.h.error ? badge(r.h.error.message.slice(0, 60), 'bad') : badge(t('serving'), 'ok')) },
    ],
    rows,
  });
}

async function approvalsCard() {
  const doc = await api.get('/models/-/versions', { awaiting_approval: true, limit: 10 });
  if (!doc.versions.length) return empty(t('Nothing waits for approval.'), t('Validated versions of models that need a reviewer appear here.'));
  return h('div', null, table({
    label: t('Waiting for approval'),
    columns: [
      { label: t('Model'), render: (v) => h('a', { href: href(`/models/${enc(v.name)}`, { version: v.version }) }, `${v.name} v${v.version}`) },
      { label: t('Registered by'), key: 'created_by' },
      { label: t('Registered'), render: (v) => ago(v.created_at) },
      { label: '', render: (v) => (can('models', 'approve') ? h('a', { class: 'button small', href: href(`/models/${enc(v.name)}`, { version: v.version }) }, t('Review')) : null) },
    ],
    rows: doc.versions,
  }), doc.total > doc.versions.length ? h('p', { class: 'muted small' }, t('{count} more', { count: doc.total - doc.versions.length })) : null);
}

async function runsCard() {
  const doc = await api.post('/runs/search', { max_results: 8, order_by: ['attributes.start_time DESC'] });
  if (!doc.runs.length) return empty(t('No runs yet.'), t('Track one from Python with {code}, or run {demo}.', { code: 'sy.start_run()', demo: 'shipyard demo' }));
  return table({
    label: t('Recent runs'),
    columns: [
      { label: t('Run'), render: (r) => h('a', { href: href(`/runs/${r.info.id}`) }, r.info.name) },
      { label: t('Status'), render: (r) => statusBadge(r.info.status) },
      { label: t('User'), render: (r) => r.info.user },
      { label: t('Started'), render: (r) => ago(r.info.start_time) },
    ],
    rows: doc.runs,
  });
}

async function alertsCard() {
  const alerts = await api.get('/monitoring/alerts/history', { status: 'firing', limit: 20 });
  if (!alerts.length) return empty(t('No alert is firing.'), t('Alert rules are set on the monitoring page.'));
  return table({
    label: t('Firing alerts'),
    columns: [
      { label: t('Rule'), render: (a) => h('a', { href: href('/monitoring', { tab: 'alerts' }) }, a.rule) },
      { label: t('Severity'), render: (a) => badge(a.severity, a.severity === 'critical' ? 'bad' : 'warn') },
      { label: t('Scope'), render: (a) => Object.entries(a.scope || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '–' },
      { label: t('Since'), render: (a) => ago(a.started_at) },
      { label: t('Value'), num: true, render: (a) => num(a.value) },
    ],
    rows: alerts,
  });
}

export default async function render(view, root) {
  const cards = [];
  if (can('scenes', 'read')) cards.push(['scenes', t('Scenes'), scenesCard, [h('a', { href: '#/scenes' }, t('All scenes'))]]);
  if (can('models', 'read')) cards.push(['approvals', t('Waiting for approval'), approvalsCard, [h('a', { href: '#/models' }, t('All models'))]]);
  if (can('runs', 'read')) cards.push(['runs', t('Recent runs'), runsCard, [h('a', { href: '#/runs' }, t('All runs'))]]);
  if (hasApi('monitoring') && can('monitoring', 'read')) cards.push(['alerts', t('Firing alerts'), alertsCard, [h('a', { href: '#/monitoring' }, t('Monitoring'))]]);
  const drawn = await Promise.all(cards.map(([, , load]) => section(load, (x) => x)));
  root.append(pageHead({ title: t('Overview') }));
  if (!cards.length) {
    root.append(empty(t('You have no role in this project yet.'), t('Ask an admin to grant you one, e.g. {command}.', { command: 'shipyard roles grant NAME viewer --in PROJECT' })));
    return;
  }
  const boxes = cards.map(([key, title, , actions], i) => h('div', { dataset: { card: key } }, card(title, actions, drawn[i])));
  // the scenes' table is wide: it gets the whole row
  const wide = cards[0][0] === 'scenes' ? boxes.shift() : null;
  root.append(h('div', { class: 'stack' }, wide, h('div', { class: 'grid two' }, boxes)));
}

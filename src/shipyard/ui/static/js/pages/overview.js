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

async function scenesCard() {
  const scenes = await api.get('/scenes');
  if (!scenes.length) {
    return empty(t('No scenes yet.'), t('Apply a decision flow with {command} (or run {demo}); its traffic and latency show here.',
      { command: 'shipyard scenes apply scene.yaml', demo: 'shipyard demo' }));
  }
  const shown = scenes.slice(0, 12);
  const statuses = await Promise.all(shown.map((s) => api.get(`/scenes/${enc(s.name)}/status`).catch((error) => ({ error }))));
  const rows = shown.map((s, i) => ({ scene: s, status: statuses[i] }));
  return table({
    label: t('Scenes'),
    columns: [
      { label: t('Scene'), render: (r) => h('a', { href: href(`/scenes/${enc(r.scene.name)}`) }, r.scene.name) },
      { label: t('Version'), num: true, render: (r) => r.status.version ?? '–' },
      { label: t('Requests'), num: true, render: (r) => (r.status.arms ? num(sum(Object.values(r.status.arms).map((a) => a.count))) : '–') },
      { label: t('Error rate'), num: true, render: (r) => {
        if (!r.status.arms) return '–';
        const total = sum(Object.values(r.status.arms).map((a) => a.count));
        const errors = sum(Object.values(r.status.arms).map((a) => a.errors));
        return total ? h('span', { class: errors / total > 0.05 ? 'badge bad' : null }, percent(errors / total)) : '–';
      } },
      { label: t('p99'), num: true, render: (r) => (r.status.arms ? ms(Math.max(0, ...Object.values(r.status.arms).map((a) => a.p99_ms || 0)) || null) : '–') },
      { label: t('Canary'), render: (r) => (r.status.canary && r.status.canary.arm ? `${r.status.canary.arm} ${r.status.canary.percent} %` : '–') },
      { label: t('State'), render: (r) => (r.status.error ? badge(r.status.error.message.slice(0, 60), 'bad') : badge(t('serving'), 'ok')) },
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
  const doc = await api.get('/monitoring/alerts', { state: 'firing' });
  const alerts = Array.isArray(doc) ? doc : (doc.alerts || []);
  if (!alerts.length) return empty(t('No alert is firing.'), t('Alert rules are set on the monitoring page.'));
  return table({
    label: t('Firing alerts'),
    columns: [
      { label: t('Rule'), render: (a) => a.rule || a.name },
      { label: t('Scene'), render: (a) => a.scene || '–' },
      { label: t('Since'), render: (a) => ago(a.started_at || a.fired_at || a.at) },
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

// Pipelines: stored pipelines, recent runs, and the schedules that run them (with the scheduler's
// state); a new pipeline opens the drag-and-drop editor.
import { api, enc } from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { ago, duration, when } from '../format.js';
import { can } from '../perms.js';
import { href } from '../router.js';
import { act, badge, card, dialog, empty, errorBox, kv, pageHead, statusBadge, table } from '../components.js';

export default async function render(view, root) {
  const [pipelines, runs, schedules, scheduler] = await Promise.all([
    api.get('/pipelines'), api.get('/pipelines/runs', { limit: 20 }),
    api.get('/schedules').catch((error) => ({ error })), api.get('/scheduler/status').catch(() => null),
  ]);
  const mayWrite = can('pipelines', 'write');
  root.append(pageHead({
    title: t('Pipelines'), sub: t('{count} pipelines', { count: pipelines.length }),
    actions: mayWrite ? [h('a', { class: 'button primary', href: '#/pipelines/new' }, t('New pipeline'))] : [],
  }));

  const scheduleAction = (name, verb, label) => h('button', { type: 'button', class: 'small', on: { click: (e) => act(e.currentTarget, async () => {
    await api.post(`/schedules/${enc(name)}/${verb}`, {});
    view.refresh();
  }, label) } }, label);

  async function removeSchedule(name) {
    const done = await dialog({ title: t('Delete schedule {name}', { name }), danger: true, confirm: t('Delete'),
      body: h('p', null, t('The schedule stops; its history is kept.')), onSubmit: () => api.del(`/schedules/${enc(name)}`) });
    if (done) view.refresh();
  }

  root.append(h('div', { class: 'stack' },
    card(t('Pipelines'), null, table({
      label: t('Pipelines'),
      columns: [
        { label: t('Pipeline'), render: (p) => h('a', { href: href(`/pipelines/${enc(p.name)}`) }, p.name) },
        { label: t('Version'), num: true, render: (p) => p.version },
        { label: t('Saved'), className: 'nowrap', render: (p) => `${when(p.updated_at)} · ${p.updated_by}` },
      ],
      rows: pipelines,
      emptyState: empty(t('No pipelines yet.'), mayWrite ? t('Build one with “New pipeline”: drag components onto the canvas and connect them.')
        : t('A modeler builds pipelines in the editor or with {command}.', { command: 'shipyard pipelines run FILE' })),
    })),
    card(t('Recent runs'), null, table({
      label: t('Recent pipeline runs'),
      columns: [
        { label: t('Pipeline'), render: (r) => h('a', { href: href(`/pipelines/${enc(r.pipeline)}`) }, r.pipeline) },
        { label: t('Status'), render: (r) => statusBadge(r.status) },
        { label: t('Nodes'), render: (r) => Object.entries(r.counts || {}).map(([k, v]) => `${t(k)} ${v}`).join(', ') },
        { label: t('Started'), className: 'nowrap', render: (r) => `${ago(r.started_at)} · ${r.created_by}` },
        { label: t('Duration'), num: true, render: (r) => (r.finished_at ? duration(r.finished_at - r.started_at) : '–') },
        { label: t('Error'), render: (r) => r.error || '–' },
      ],
      rows: runs,
      emptyState: empty(t('No pipeline runs yet.')),
    })),
    card(t('Schedules'), null,
      scheduler ? kv([[t('Scheduler'), scheduler.active ? badge(t('running on {host}', { host: scheduler.holder }), 'ok') : badge(t('not running'), 'warn')]]) : null,
      schedules.error ? errorBox(schedules.error) : table({
        label: t('Schedules'),
        columns: [
          { label: t('Schedule'), render: (x) => h('strong', null, x.name) },
          { label: t('Kind'), render: (x) => `${x.kind}${x.target ? ` · ${x.target}` : ''}` },
          { label: t('When'), render: (x) => (x.cron ? `${x.cron} (${x.timezone})` : x.interval_s ? t('every {every}', { every: duration(x.interval_s * 1000) }) : '–') },
          { label: t('State'), render: (x) => statusBadge(x.paused ? 'paused' : 'active') },
          { label: t('Next run'), className: 'nowrap', render: (x) => (x.next_slot_at && !x.paused ? when(x.next_slot_at) : '–') },
          { label: t('Description'), render: (x) => x.description || '–' },
          { label: '', render: (x) => (mayWrite ? h('span', { class: 'row' },
            scheduleAction(x.name, 'trigger', t('Run now')),
            x.paused ? scheduleAction(x.name, 'resume', t('Resume')) : scheduleAction(x.name, 'pause', t('Pause')),
            h('button', { type: 'button', class: 'small danger', on: { click: () => removeSchedule(x.name) } }, t('Delete'))) : null) },
        ],
        rows: schedules,
        emptyState: empty(t('No schedules.'), t('Add one with {command}.', { command: "shipyard schedules add NAME --kind pipeline --target P --cron '0 2 * * *'" })),
      }))));
}

// Registered models with their aliases and latest versions, and the versions waiting for a reviewer.
import { api, enc } from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { ago, when } from '../format.js';
import { href } from '../router.js';
import { badge, card, chips, empty, pageHead, statusBadge, table } from '../components.js';

export default async function render(view, root) {
  const [models, waiting, recent] = await Promise.all([
    api.get('/models'),
    api.get('/models/-/versions', { awaiting_approval: true, limit: 20 }),
    api.get('/models/-/versions', { limit: 10 }),
  ]);
  root.append(pageHead({ title: t('Models'), sub: t('{count} registered models', { count: models.length }) }));
  if (!models.length) {
    root.append(empty(t('No registered models yet.'), t('Register one from a run with {code}, or run {demo}.',
      { code: "sy.log_model(model, 'model', registered_model_name='credit')", demo: 'shipyard demo' })));
    return;
  }
  root.append(h('div', { class: 'stack' },
    card(t('Registered models'), null, table({
      label: t('Registered models'),
      columns: [
        { label: t('Model'), render: (m) => h('a', { href: href(`/models/${enc(m.name)}`) }, m.name) },
        { label: t('Latest version'), num: true, render: (m) => m.latest_version ?? '–' },
        { label: t('Aliases'), render: (m) => chips(Object.entries(m.aliases).map(([a, v]) => `${a} → v${v}`)) },
        { label: t('Approval'), render: (m) => (m.requires_approval ? badge(t('required'), 'info') : badge(t('not required'))) },
        { label: t('Description'), render: (m) => m.description || '–' },
        { label: t('Updated'), className: 'nowrap', render: (m) => when(m.updated_at) },
      ],
      rows: models,
    })),
    h('div', { class: 'grid two' },
      card(t('Waiting for approval'), null, waiting.versions.length ? table({
        label: t('Waiting for approval'),
        columns: [
          { label: t('Version'), render: (v) => h('a', { href: href(`/models/${enc(v.name)}`, { version: v.version }) }, `${v.name} v${v.version}`) },
          { label: t('Registered by'), render: (v) => v.created_by },
          { label: t('Registered'), render: (v) => ago(v.created_at) },
        ],
        rows: waiting.versions,
      }) : empty(t('Nothing waits for approval.'), t('Validated versions of models that need a reviewer appear here.'))),
      card(t('Latest versions'), null, table({
        label: t('Latest versions'),
        columns: [
          { label: t('Version'), render: (v) => h('a', { href: href(`/models/${enc(v.name)}`, { version: v.version }) }, `${v.name} v${v.version}`) },
          { label: t('Status'), render: (v) => statusBadge(v.status) },
          { label: t('Flavor'), render: (v) => v.flavor },
          { label: t('Registered'), render: (v) => ago(v.created_at) },
        ],
        rows: recent.versions,
      })))));
}

// Data: sources (their credentials are only ever named, never shown) and versioned datasets.
import { api, enc } from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { ago, when } from '../format.js';
import { href } from '../router.js';
import { card, empty, pageHead, table } from '../components.js';

// a source's settings with every secret shown by its name only (the API never sends values)
export function sourceSettings(spec) {
  return Object.entries(spec || {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
}

export default async function render(view, root) {
  const [sources, datasets] = await Promise.all([api.get('/data/sources'), api.get('/datasets')]);
  root.append(pageHead({ title: t('Data'), sub: t('{sources} sources · {datasets} datasets', { sources: sources.length, datasets: datasets.length }) }),
    h('div', { class: 'stack' },
      card(t('Datasets'), null, table({
        label: t('Datasets'),
        columns: [
          { label: t('Dataset'), render: (d) => h('a', { href: href(`/data/datasets/${enc(d.name)}`) }, d.name) },
          { label: t('Source'), render: (d) => d.source },
          { label: t('Latest version'), num: true, render: (d) => d.latest_version || '–' },
          { label: t('Description'), render: (d) => d.description || '–' },
          { label: t('Updated'), className: 'nowrap', render: (d) => `${ago(d.updated_at)} · ${d.updated_by}` },
        ],
        rows: datasets,
        emptyState: empty(t('No datasets yet.'), t('Add one from a source with {command}, then refresh it into a version.', { command: 'shipyard datasets create NAME --source S --path FILE' })),
      })),
      card(t('Sources'), null, table({
        label: t('Sources'),
        columns: [
          { label: t('Source'), render: (s) => h('strong', null, s.name) },
          { label: t('Kind'), render: (s) => s.kind },
          { label: t('Settings'), render: (s) => h('span', { class: 'mono small' }, sourceSettings(s.spec)) },
          { label: t('Description'), render: (s) => s.description || '–' },
          { label: t('Updated'), className: 'nowrap', render: (s) => `${when(s.updated_at)} · ${s.updated_by}` },
        ],
        rows: sources,
        emptyState: empty(t('No sources yet.'), t('Add a folder, a database or Spark with {command}; passwords are stored as secrets.', { command: 'shipyard data sources add' })),
      }))));
}

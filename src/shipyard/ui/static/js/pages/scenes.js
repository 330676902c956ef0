// Scenes: each decision flow's latest version, with a link to its page.
import { api, enc } from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { when } from '../format.js';
import { href } from '../router.js';
import { card, empty, pageHead, table } from '../components.js';

export default async function render(view, root) {
  const scenes = await api.get('/scenes');
  root.append(pageHead({ title: t('Scenes'), sub: t('Decision flows served at {path}', { path: '/v1/scenes/NAME/predict' }) }));
  root.append(card(null, null, table({
    label: t('Scenes'),
    columns: [
      { label: t('Scene'), render: (s) => h('a', { href: href(`/scenes/${enc(s.name)}`) }, s.name) },
      { label: t('Latest version'), num: true, render: (s) => s.latest_version ?? s.version ?? '–' },
      { label: t('Description'), render: (s) => s.description || '–' },
      { label: t('Updated'), className: 'nowrap', render: (s) => when(s.updated_at || s.created_at) },
    ],
    rows: scenes,
    emptyState: empty(t('No scenes yet.'), t('Apply a decision flow with {command} (or run {demo}); its traffic and latency show here.',
      { command: 'shipyard scenes apply scene.yaml', demo: 'shipyard demo' })),
  })));
}

// Shown until this server has the API behind the page.
import { t } from '../i18n.js';
import { empty, pageHead } from '../components.js';

export default async function render(view, root) {
  root.append(pageHead({ title: t('Not available') }), empty(t('This server does not have this part of Shipyard yet.'), t('Upgrade the server to use this page.')));
}

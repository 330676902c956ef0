// The application shell: sign-in (password, single sign-on, one-time link), the top bar (project,
// language, time zone, user), the navigation, and rendering the page of the current route.
import { api } from './api.js';
import { append, clear, h, replace } from './dom.js';
import { LANGUAGES, getLang, setLang, t } from './i18n.js';
import { setTimeZone, zones } from './format.js';
import { current, listen, route } from './router.js';
import { config, emit, hasApi, on, session, setProject } from './state.js';
import { can } from './perms.js';
import { errorBox, field, loading, notice } from './components.js';

const page = (name) => () => import(`./pages/${name}.js`);
route('/', page('overview'), { nav: 'overview' });
route('/runs', page('runs'), { nav: 'runs' });
route('/runs/:id', page('run'), { nav: 'runs' });
route('/compare', page('compare'), { nav: 'runs' });
route('/models', page('models'), { nav: 'models' });
route('/models/:name', page('model'), { nav: 'models' });
route('/features', page('features'), { nav: 'features' });
route('/features/:kind/:name', page('feature'), { nav: 'features' });
route('/scenes', page('scenes'), { nav: 'scenes' });
route('/scenes/:name', page('scene'), { nav: 'scenes' });
route('/monitoring', page('monitoring'), { nav: 'monitoring' });
route('/data', page('data'), { nav: 'data' });
route('/data/:kind/:name', page('dataset'), { nav: 'data' });
route('/pipelines', page('pipelines'), { nav: 'pipelines' });
route('/pipelines/:name', page('pipeline'), { nav: 'pipelines' });
route('/reports', page('reports'), { nav: 'reports' });
route('/admin', page('admin'), { nav: 'admin' });

// [key, label, resource needed to see it, API group that must exist on this server, link]
const NAV = () => [
  ['overview', t('Overview'), null, null, '#/'],
  ['runs', t('Experiments'), 'runs', 'runs', '#/runs'],
  ['models', t('Models'), 'models', 'models', '#/models'],
  ['features', t('Features'), 'features', 'features', '#/features'],
  ['scenes', t('Scenes'), 'scenes', 'scenes', '#/scenes'],
  ['monitoring', t('Monitoring'), 'monitoring', 'monitoring', '#/monitoring'],
  ['data', t('Data'), 'data', 'data', '#/data'],
  ['pipelines', t('Pipelines'), 'pipelines', 'pipelines', '#/pipelines'],
  ['reports', t('Reports'), 'runs', 'runs', '#/reports'],
  ['admin', t('Administration'), null, null, '#/admin'],
];

const app = document.getElementById('app');
let disposers = [];
let generation = 0;

// A browser that never signed in here goes straight to the sign-in form (no request bound to fail).
const SIGNED_IN = 'sy.signedIn';

async function signedIn() {
  if (!localStorage.getItem(SIGNED_IN)) return false;
  // who is signed in and their projects, asked together (both answer 401 to a stale session)
  const projects = api.get('/projects', null, { project: null }).catch(() => []);
  try {
    session.me = await api.get('/auth/whoami', null, { project: null });
  } catch (error) {
    if (error.status === 401) { localStorage.removeItem(SIGNED_IN); return false; }
    throw error;
  }
  session.projects = await projects;
  const names = session.projects.map((p) => p.name);
  if (names.length && !names.includes(session.project)) setProject(names.includes('default') ? 'default' : names[0]);
  return true;
}

async function loginPage(message) {
  let methods = { password: true, oidc: null };
  try { methods = await api.get('/auth/config', null, { project: null }); } catch { /* offer the password form */ }
  const user = h('input', { name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const problem = h('div');
  const submit = h('button', { type: 'submit', class: 'primary' }, t('Sign in'));
  const form = h('form', { class: 'form', 'aria-label': t('Sign in') },
    problem, field(t('User name'), user), field(t('Password'), password), submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clear(problem);
    try {
      await api.post('/auth/login', { username: user.value, password: password.value }, { project: null });
      localStorage.setItem(SIGNED_IN, '1');
      await boot();
    } catch (error) {
      append(problem, errorBox(error));
      submit.disabled = false;
    }
  });
  const sso = methods.oidc;
  // back from the provider the browser holds a session; the marker makes the app ask who it is
  const ssoLink = sso ? h('a', {
    class: 'button primary', href: `${config.root}${sso.login_url}?next=${encodeURIComponent(`/${location.hash || '#/'}`)}`,
    on: { click: () => localStorage.setItem(SIGNED_IN, 'sso') },
  }, sso.label || t('Sign in with single sign-on')) : null;
  replace(app, h('main', { id: 'main', class: 'login' },
    h('h1', null, h('img', { src: `${config.static}/favicon.svg`, alt: '', width: 26, height: 26 }), 'Shipyard'),
    h('div', { class: 'card' },
      message ? notice(message, 'warn') : null,
      ssoLink ? h('p', null, ssoLink) : null,
      methods.password ? form : null,
      h('p', { class: 'muted small' }, t('First time here? Run {command} on the server and open the link it prints.', { command: 'shipyard ui link' })),
      languagePicker('login-lang')),
  ));
  document.body.dataset.ready = 'login';
  (methods.password ? user : ssoLink)?.focus();
}

async function useLink(query) {
  const token = query.get('token');
  const project = query.get('project');
  // out of the address bar (and history) before anything else happens
  history.replaceState(null, '', `${location.pathname}#/`);
  if (project) setProject(project);
  if (!token) return null;
  try {
    await api.post('/auth/link', { token }, { project: null });
    localStorage.setItem(SIGNED_IN, '1');
    return null;
  } catch (error) {
    return t('This login link did not work ({reason}). Links work once and expire; print a new one with {command}.',
      { reason: error.message, command: 'shipyard ui link' });
  }
}

function languagePicker(id) {
  const choose = h('select', { id, on: { change: (e) => { setLang(e.target.value); boot(); } } },
    LANGUAGES.map(([code, name]) => h('option', { value: code, selected: code === getLang() }, name)));
  return h('label', { for: id }, h('span', null, t('Language')), choose);
}

function topbar() {
  const projects = session.projects.length ? session.projects.map((p) => p.name) : [session.project];
  const projectSelect = h('select', { id: 'sy-project', on: { change: (e) => { setProject(e.target.value); } } },
    projects.map((name) => h('option', { value: name, selected: name === session.project }, name)));
  const chosen = localStorage.getItem('sy.tz');
  const zone = h('select', { id: 'sy-tz', on: { change: (e) => { setTimeZone(e.target.value); renderRoute(current()); } } },
    h('option', { value: '' }, t('browser ({zone})', { zone: Intl.DateTimeFormat().resolvedOptions().timeZone })),
    chosen ? h('option', { value: chosen, selected: true }, chosen) : null);
  // the ~400 zones are listed when the control is first used, not on every page load
  const fill = () => {
    zone.removeEventListener('focus', fill);
    zone.removeEventListener('pointerdown', fill);
    append(zone, zones().filter((z) => z !== chosen).map((z) => h('option', { value: z }, z)));
  };
  zone.addEventListener('focus', fill);
  zone.addEventListener('pointerdown', fill);
  const logout = h('button', {
    type: 'button', class: 'link', on: { click: async () => {
      try { await api.post('/auth/logout', {}, { project: null }); } catch { /* signed out either way */ }
      session.me = null;
      localStorage.removeItem(SIGNED_IN);
      loginPage(t('You are signed out.'));
    } },
  }, t('Sign out'));
  return h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/' }, h('img', { src: `${config.static}/favicon.svg`, alt: '' }), 'Shipyard'),
    h('label', { for: 'sy-project' }, t('Project'), projectSelect),
    h('div', { class: 'spacer' }),
    h('label', { for: 'sy-tz' }, t('Time zone'), zone),
    languagePicker('sy-lang'),
    h('span', { class: 'user', title: t('Signed in as {name}', { name: session.me.name }) }, session.me.name),
    logout);
}

function nav() {
  return h('nav', { class: 'nav', 'aria-label': t('Main') },
    NAV().filter(([, , resource, group]) => hasApi(group) && (!resource || can(resource, 'read')))
      .map(([key, label, , , link]) => h('a', { href: link, dataset: { nav: key } }, label)));
}

function shell() {
  replace(app, h('div', { class: 'shell' }, topbar(), nav(), h('main', { id: 'main', tabindex: '-1' })));
}

function notFound() {
  return h('div', null, h('h1', null, t('Page not found')), h('p', null, t('There is nothing at this address.'), ' ',
    h('a', { href: '#/' }, t('Go to the overview'))));
}

async function renderRoute(cur) {
  for (const fn of disposers) { try { fn(); } catch { /* already gone */ } }
  disposers = [];
  generation += 1;
  const mine = generation;
  if (cur.path === '/link') { await boot(); return; }
  const main = document.getElementById('main');
  if (!main) return;
  for (const a of document.querySelectorAll('.nav a')) {
    if (cur.route && a.dataset.nav === cur.route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.body.removeAttribute('data-ready');
  if (!cur.route) { replace(main, notFound()); return; }
  replace(main, loading());
  try {
    const module = await cur.route.load();
    if (mine !== generation) return;
    const view = {
      main, params: cur.params, query: cur.query, path: cur.path,
      alive: () => mine === generation,
      onDispose: (fn) => disposers.push(fn),
      refresh: () => renderRoute(current()),
    };
    const holder = h('div');
    await module.default(view, holder);
    if (mine !== generation) return;
    replace(main, ...holder.childNodes);
    const heading = main.querySelector('h1');
    document.title = heading ? `${heading.textContent} · Shipyard` : 'Shipyard';
  } catch (error) {
    if (mine !== generation) return;
    if (error.status === 401) return;
    replace(main, errorBox(error));
  }
  document.body.dataset.ready = String(mine);
  performance.mark(`sy:ready:${mine}`);
  emit('rendered', cur);
}

let listening = false;
export async function boot() {
  const cur = current();
  let message = null;
  if (cur.path === '/link') {
    replace(app, loading(t('Signing in…')));
    message = await useLink(cur.query);
  }
  let ok = false;
  // the page's code loads while the session is checked
  if (cur.route) cur.route.load().catch(() => null);
  try {
    ok = await signedIn();
  } catch (error) {
    replace(app, h('main', { id: 'main', class: 'login' }, errorBox(error)));
    return;
  }
  if (!ok) { await loginPage(message); return; }
  shell();
  if (message) app.querySelector('main').before(notice(message, 'warn'));
  if (!listening) {
    listening = true;
    listen(renderRoute);
    on('project', () => { shell(); renderRoute(current()); });
    on('unauthorized', () => {
      if (session.me) { session.me = null; localStorage.removeItem(SIGNED_IN); loginPage(t('Your session ended; sign in again.')); }
    });
  }
  await renderRoute(current());
}

// Administration: users and their roles per project, API tokens, projects and the audit log. Each
// tab shows only what the signed-in user's role allows; the API decides in the end.
import { api, enc } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { ago, when } from '../format.js';
import { can, isAdminEverywhere } from '../perms.js';
import { href, remember } from '../router.js';
import { config, session } from '../state.js';
import { act, card, change, chips, copyButton, dialog, empty, errorBox, field, kv, loading, notice, pageHead, select, statusBadge, table, tabs, toast } from '../components.js';

const ROLES = () => Object.keys(config.roles);

async function usersTab(root, refresh) {
  const users = await api.get('/users');
  const projects = (await api.get('/projects')).map((p) => p.name);
  const mayAdmin = can('users', 'admin');
  const everywhere = isAdminEverywhere();

  async function grant(user) {
    const role = select(ROLES(), 'viewer', { name: 'role' });
    const project = select([['*', t('every project (*)')], ...projects.map((p) => [p, p])], session.project, { name: 'project' });
    const done = await dialog({
      title: t('Grant a role to {name}', { name: user.name }),
      body: h('div', { class: 'form' }, field(t('Role'), role), field(t('Project'), project),
        h('p', { class: 'muted small' }, t('What each role may do is listed in docs/security.md.'))),
      confirm: t('Grant'),
      onSubmit: () => api.post(`/users/${enc(user.name)}/roles`, { role: role.value, project: project.value }),
    });
    if (done) refresh();
  }

  async function revoke(user, project, role) {
    const done = await dialog({
      title: t('Revoke a role'), danger: true, confirm: t('Revoke'),
      body: change(`${user.name}: ${role} @ ${project}`, t('no {role} role in {project}', { role, project })),
      onSubmit: () => api.del(`/users/${enc(user.name)}/roles/${enc(role)}`, { project }),
    });
    if (done) refresh();
  }

  async function toggle(user) {
    const done = await dialog({
      title: user.disabled ? t('Enable {name}', { name: user.name }) : t('Disable {name}', { name: user.name }),
      body: h('p', null, user.disabled ? t('The user can sign in and use their tokens again.') : t('Sign-in and every token of this user stop working at once.')),
      confirm: user.disabled ? t('Enable') : t('Disable'), danger: !user.disabled,
      onSubmit: () => api.patch(`/users/${enc(user.name)}`, { disabled: !user.disabled }),
    });
    if (done) refresh();
  }

  async function create() {
    const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
    const kind = select([['person', t('person')], ['service', t('service account')]], 'person', { name: 'kind' });
    const password = h('input', { name: 'password', type: 'password', minlength: 8, autocomplete: 'new-password' });
    const role = select([['', t('none')], ...ROLES().map((r) => [r, r])], 'viewer', { name: 'role' });
    const project = select([['*', t('every project (*)')], ...projects.map((p) => [p, p])], session.project, { name: 'project' });
    const done = await dialog({
      title: t('Create a user'),
      body: h('div', { class: 'form' }, field(t('Name'), name), field(t('Kind'), kind),
        field(t('Password'), password, t('People only; at least 8 characters. Leave empty to sign in with a login link.')),
        field(t('Role'), role), field(t('Project'), project)),
      confirm: t('Create'),
      onSubmit: () => api.post('/users', {
        name: name.value, kind: kind.value, password: password.value || null,
        roles: role.value ? { [project.value]: role.value } : {},
      }),
    });
    if (done) { toast(t('Created {name}', { name: done.name })); refresh(); }
  }

  root.append(card(t('Users'), mayAdmin && everywhere ? [h('button', { type: 'button', class: 'primary small', on: { click: create } }, t('Create a user'))] : null,
    table({
      label: t('Users'),
      columns: [
        { label: t('User'), render: (u) => h('strong', null, u.name) },
        { label: t('Kind'), render: (u) => t(u.kind) },
        { label: t('Roles'), render: (u) => h('span', null, Object.entries(u.roles).flatMap(([p, rs]) => rs.map((r) => h('span', { class: 'chip' }, `${r} @ ${p}`,
          mayAdmin ? h('button', { type: 'button', 'aria-label': t('Revoke {role} in {project} from {name}', { role: r, project: p, name: u.name }), on: { click: () => revoke(u, p, r) } }, '×') : null)))) },
        { label: t('State'), render: (u) => (u.disabled ? statusBadge('disabled') : statusBadge('active')) },
        { label: t('Last sign-in'), render: (u) => (u.last_login_at ? ago(u.last_login_at) : '–') },
        { label: '', render: (u) => (mayAdmin ? h('span', { class: 'row' },
          h('button', { type: 'button', class: 'small', on: { click: () => grant(u) } }, t('Grant a role')),
          everywhere && u.name !== session.me.name ? h('button', { type: 'button', class: 'small', on: { click: () => toggle(u) } }, u.disabled ? t('Enable') : t('Disable')) : null) : null) },
      ],
      rows: users,
      emptyState: empty(t('No users.')),
    })));
}

async function tokensTab(root, refresh) {
  const everyone = can('users', 'admin');
  const tokens = await api.get('/tokens', everyone ? { user: '*' } : null);
  const projects = session.projects.map((p) => p.name);

  async function create() {
    const name = h('input', { name: 'name', placeholder: t('what it is for'), required: true });
    const scopes = ['read', 'write', 'predict'].map((s) => h('label', { class: 'row small' }, h('input', { type: 'checkbox', name: 'scope', value: s, checked: s !== 'predict' || true }), s));
    const project = select([['', t('any project I have a role in')], ...projects.map((p) => [p, p])], '', { name: 'project' });
    const days = h('input', { type: 'number', name: 'days', value: 90, min: 1, max: 3650 });
    const made = await dialog({
      title: t('Create an API token'),
      body: h('div', { class: 'form' }, field(t('Name'), name), h('fieldset', null, h('legend', null, t('Scopes')), scopes),
        field(t('Project'), project), field(t('Expires in (days)'), days)),
      confirm: t('Create'),
      onSubmit: () => api.post('/tokens', {
        name: name.value, project: project.value || null, expires_in_days: Number(days.value),
        scopes: scopes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value),
      }),
    });
    if (!made) return;
    await dialog({
      title: t('Your new token'), confirm: t('Done'),
      body: h('div', { class: 'form' }, notice(t('Copy it now: it is shown only once.'), 'warn'),
        h('pre', { class: 'mono' }, made.token), copyButton(made.token),
        h('p', { class: 'muted small' }, t('Use it as {header}.', { header: 'Authorization: Bearer <token>' }))),
    });
    refresh();
  }

  async function revoke(token) {
    const done = await dialog({
      title: t('Revoke token {name}', { name: token.name || token.id }), danger: true, confirm: t('Revoke'),
      body: h('p', null, t('Clients using this token are refused from now on.')),
      onSubmit: () => api.del(`/tokens/${enc(token.id)}`),
    });
    if (done) refresh();
  }

  root.append(card(everyone ? t('API tokens of every user') : t('Your API tokens'), [h('button', { type: 'button', class: 'primary small', on: { click: create } }, t('Create a token'))],
    table({
      label: t('API tokens'),
      columns: [
        { label: t('Name'), render: (x) => x.name || '–' },
        { label: t('User'), render: (x) => x.user },
        { label: t('Scopes'), render: (x) => chips(x.scopes) },
        { label: t('Project'), render: (x) => x.project || t('any') },
        { label: t('Expires'), render: (x) => (x.expires_at ? when(x.expires_at, 'date') : t('never')) },
        { label: t('Last used'), render: (x) => (x.last_used_at ? ago(x.last_used_at) : t('never')) },
        { label: '', render: (x) => h('button', { type: 'button', class: 'small danger', on: { click: () => revoke(x) } }, t('Revoke')) },
      ],
      rows: tokens,
      emptyState: empty(t('No API tokens.'), t('Scripts and services sign in with a token; create one here or with {command}.', { command: 'shipyard tokens create' })),
    })));
}

async function projectsTab(root, refresh) {
  const projects = await api.get('/projects');
  async function create() {
    const name = h('input', { name: 'name', required: true, pattern: '[a-z][a-z0-9_]{0,47}' });
    const description = h('input', { name: 'description' });
    const done = await dialog({
      title: t('Create a project'),
      body: h('div', { class: 'form' }, field(t('Name'), name, t('Lowercase letters, digits and _, starting with a letter.')), field(t('Description'), description)),
      confirm: t('Create'),
      onSubmit: () => api.post('/projects', { name: name.value, description: description.value }, { project: null }),
    });
    if (done) { session.projects = await api.get('/projects', null, { project: null }); refresh(); }
  }
  root.append(card(t('Projects'), isAdminEverywhere() ? [h('button', { type: 'button', class: 'primary small', on: { click: create } }, t('Create a project'))] : null,
    table({
      label: t('Projects'),
      columns: [
        { label: t('Project'), render: (p) => h('strong', null, p.name) },
        { label: t('Description'), render: (p) => p.description || '–' },
        { label: t('Created'), render: (p) => `${when(p.created_at)} · ${p.created_by}` },
      ],
      rows: projects,
    })));
}

async function auditTab(root, view) {
  const q = view.query;
  const filters = { actor: q.get('actor') || '', resource: q.get('resource') || '', action: q.get('action') || '' };
  const box = h('div');
  const verifyBox = h('div');
  const actor = h('input', { name: 'actor', value: filters.actor });
  const resource = h('input', { name: 'resource', value: filters.resource, placeholder: 'models' });
  const action = h('input', { name: 'action', value: filters.action, placeholder: 'release' });
  const form = h('form', { class: 'form inline', role: 'search', 'aria-label': t('Filter the audit log') },
    field(t('Who'), actor), field(t('Resource'), resource), field(t('Action'), action), h('button', { type: 'submit' }, t('Apply')));
  const pages = [];
  async function load(before) {
    replace(box, loading());
    try {
      const records = await api.get('/audit', { actor: actor.value, resource: resource.value, action: action.value, before_id: before, limit: 50 });
      remember('/admin', { tab: 'audit', actor: actor.value, resource: resource.value, action: action.value });
      replace(box, table({
        label: t('Audit log'),
        columns: [
          { label: '#', num: true, render: (r) => r.id },
          { label: t('When'), className: 'nowrap', render: (r) => when(r.ts, 'seconds') },
          { label: t('Who'), render: (r) => r.actor },
          { label: t('Action'), render: (r) => `${r.resource}:${r.action}` },
          { label: t('Request'), render: (r) => h('span', { class: 'mono small' }, r.route) },
          { label: t('Outcome'), render: (r) => h('span', null, statusBadge(r.outcome), ' ', r.status) },
          { label: t('From'), render: (r) => r.client || '–' },
          { label: t('Details'), render: (r) => h('span', { class: 'mono small' }, JSON.stringify(r.details)) },
        ],
        rows: records,
        emptyState: empty(t('No audit records match.')),
      }), h('nav', { class: 'pager', 'aria-label': t('Pages') },
        h('button', { type: 'button', disabled: !pages.length, on: { click: () => load(pages.pop()) } }, t('Newer')),
        h('button', { type: 'button', disabled: records.length < 50, on: { click: () => { pages.push(before); load(records[records.length - 1].id); } } }, t('Older'))));
    } catch (error) {
      replace(box, errorBox(error));
    }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); pages.length = 0; load(); });
  const verify = h('button', { type: 'button', class: 'small' }, t('Verify the hash chain'));
  verify.addEventListener('click', () => act(verify, async () => {
    const result = await api.get('/audit/verify');
    replace(verifyBox, result.intact ? notice(t('Intact: {count} records checked.', { count: result.checked }), 'info')
      : notice(t('Broken at record {id}: a record was changed or removed outside Shipyard.', { id: result.first_broken_id }), 'error'));
  }));
  root.append(card(t('Audit log'), [verify], verifyBox, form, box));
  await load();
}

export default async function render(view, root) {
  const available = [];
  if (can('users', 'read')) available.push(['users', t('Users and roles')]);
  available.push(['tokens', t('API tokens')]);
  available.push(['projects', t('Projects')]);
  if (can('audit', 'read')) available.push(['audit', t('Audit log')]);
  const tab = available.some(([k]) => k === view.query.get('tab')) ? view.query.get('tab') : available[0][0];
  root.append(pageHead({ title: t('Administration'), sub: kv([[t('Signed in as'), `${session.me.name} (${t(session.me.kind)})`],
    [t('Roles here'), Object.entries(session.me.roles).map(([p, rs]) => `${rs.join(', ')} @ ${p}`).join(' · ') || t('none')]]) }),
  tabs(available.map(([k, label]) => [k, label, href('/admin', { tab: k })]), tab, t('Administration')));
  const body = h('div');
  root.append(body);
  const refresh = () => view.refresh();
  if (tab === 'users') await usersTab(body, refresh);
  else if (tab === 'tokens') await tokensTab(body, refresh);
  else if (tab === 'projects') await projectsTab(body, refresh);
  else await auditTab(body, view);
}

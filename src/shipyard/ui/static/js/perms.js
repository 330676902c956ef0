// What the signed-in user may do in the chosen project, from whoami's roles and the server's role
// table. Buttons a role cannot use are not shown; the API refuses them anyway.
import { config, session } from './state.js';

function scopeOf(action) {
  if (action === 'read') return 'read';
  if (action === 'predict') return 'predict';
  return 'write';
}

export function rolesIn(project = session.project) {
  const me = session.me;
  if (!me) return [];
  if (me.token_project && me.token_project !== project) return [];
  return [...new Set([...(me.roles[project] || []), ...(me.roles['*'] || [])])];
}

export function can(resource, action, project = session.project) {
  const me = session.me;
  if (!me || !(me.scopes || []).includes(scopeOf(action))) return false;
  const wanted = `${resource}:${action}`;
  return rolesIn(project).some((role) => (config.roles[role] || []).includes(wanted));
}

export function isAdminEverywhere() {
  const me = session.me;
  return Boolean(me && !me.token_project && (me.roles['*'] || []).includes('admin'));
}

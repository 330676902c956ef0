// What the whole app shares: the server's configuration (from the page), who is signed in, which
// project is chosen, and a tiny event bus.
export const config = JSON.parse(document.getElementById('sy-config').textContent);

export const session = {
  me: null,            // GET /api/v1/auth/whoami
  projects: [],        // GET /api/v1/projects
  project: localStorage.getItem('sy.project') || 'default',
};

const listeners = new Map();

export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
  return () => listeners.get(event).delete(fn);
}

export function emit(event, data) {
  for (const fn of listeners.get(event) || []) fn(data);
}

export function setProject(name) {
  session.project = name;
  localStorage.setItem('sy.project', name);
  emit('project', name);
}

// Whether this server has the routes of an API group ("monitoring", "pipelines", ...).
export function hasApi(group) {
  return !group || (config.apis || []).includes(group);
}

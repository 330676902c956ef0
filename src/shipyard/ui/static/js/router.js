// Hash routes (#/runs/abc?page=2): deep links work without a server-side route per page.
const routes = [];

export function route(pattern, load, options = {}) {
  const keys = [];
  const regex = new RegExp(`^${pattern.replace(/\/:(\w+)/g, (m, key) => { keys.push(key); return '/([^/]+)'; })}/?$`);
  routes.push({ pattern, regex, keys, load, ...options });
}

export function current() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const cut = raw.indexOf('?');
  const path = cut >= 0 ? raw.slice(0, cut) : raw;
  const query = new URLSearchParams(cut >= 0 ? raw.slice(cut + 1) : '');
  for (const r of routes) {
    const m = r.regex.exec(path);
    if (m) {
      const params = {};
      r.keys.forEach((key, i) => { params[key] = decodeURIComponent(m[i + 1]); });
      return { route: r, params, query, path };
    }
  }
  return { route: null, params: {}, query, path };
}

export function href(path, query) {
  let out = `#${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== '') params.set(key, String(value));
    }
    const text = params.toString();
    if (text) out += `?${text}`;
  }
  return out;
}

export function go(path, query) {
  location.hash = href(path, query);
}

// Change the address without re-rendering (a page keeping its own state in the query).
export function remember(path, query) {
  history.replaceState(null, '', href(path, query));
}

export function listen(onChange) {
  window.addEventListener('hashchange', () => onChange(current()));
}

// The one way the UI talks to the server: the same REST API every client uses (/api/v1, and the
// prediction routes for "try it"), with the session cookie and the chosen project's header.
import { config, emit, session } from './state.js';
import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

function url(prefix, path, query) {
  let out = config.root + prefix + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value === null || value === undefined || value === '') continue;
      for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
    }
    const text = params.toString();
    if (text) out += `?${text}`;
  }
  return out;
}

export async function request(method, path, options = {}) {
  const { body, query, raw = false, prefix = '/api/v1', signal, project, headers = {} } = options;
  const init = { method, credentials: 'same-origin', signal, headers: { Accept: 'application/json', ...headers } };
  const chosen = project === undefined ? session.project : project;
  if (chosen) init.headers['X-Shipyard-Project'] = chosen;
  if (body !== undefined) {
    if (body instanceof Blob || typeof body === 'string') init.body = body;
    else {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
  }
  let response;
  try {
    response = await fetch(url(prefix, path, query), init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', t('The server did not answer ({error}); is it running?', { error: error.message }));
  }
  if (!response.ok) {
    let payload = null;
    try { payload = await response.json(); } catch { payload = null; }
    const err = payload && payload.error;
    const failure = new ApiError(response.status, (err && err.code) || 'http_error',
      (err && err.message) || t('HTTP {status} from {path}', { status: response.status, path }), err && err.details);
    if (response.status === 401 && !path.startsWith('/auth/')) emit('unauthorized', failure);
    throw failure;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

export const api = {
  get: (path, query, options) => request('GET', path, { ...options, query }),
  post: (path, body, options) => request('POST', path, { ...options, body }),
  put: (path, body, options) => request('PUT', path, { ...options, body }),
  patch: (path, body, options) => request('PATCH', path, { ...options, body }),
  del: (path, query, options) => request('DELETE', path, { ...options, query }),
};

export const enc = encodeURIComponent;

// A file from the API, saved by the browser (the session cookie and project header go with it).
export async function download(path, query, filename) {
  const response = await request('GET', path, { query, raw: true });
  const blob = await response.blob();
  const disposition = response.headers.get('content-disposition') || '';
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = filename || (named && named[1]) || 'download';
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// POST /v1/scenes/{scene}/predict with the session (the caller needs the predict permission).
export async function predictScene(scene, record, arm) {
  const headers = arm ? { 'X-Shipyard-Arm': arm } : {};
  const started = performance.now();
  const body = await request('POST', `/v1/scenes/${enc(scene)}/predict`, { prefix: '', body: record, headers });
  return { body, roundTripMs: performance.now() - started };
}

// Reads a server-sent-event stream with fetch (EventSource cannot send the project header).
export async function stream(path, onEvent, signal) {
  const response = await request('GET', path, { raw: true, signal, headers: { Accept: 'text/event-stream' } });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of chunk.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) {
        let parsed = data.join('\n');
        try { parsed = JSON.parse(parsed); } catch { /* plain text */ }
        onEvent(event, parsed);
      }
    }
  }
}

// The drag-and-drop pipeline editor: a palette of components, a canvas where nodes are dropped,
// moved and wired output → input (types checked), an inspector for each node's parameters; then
// validate, save as the pipeline document, run it and watch each node's status and logs live,
// re-run from a node, and read the generated code.
import { api, enc, stream } from '../api.js';
import { h, replace, s } from '../dom.js';
import { t } from '../i18n.js';
import { duration, when } from '../format.js';
import { can } from '../perms.js';
import { href } from '../router.js';
import { layout } from '../graph.js';
import { act, card, dialog, empty, errorBox, field, notice, pageHead, select, statusBadge, table, toast } from '../components.js';
import { addNode, connect, localProblems, normalise, removeNode, renameNode, split, toDocument } from '../dag.js';

const NODE_W = 170;

function parseParam(type, raw) {
  if (typeof raw !== 'string') return raw;
  if (/^\$\{\w+\}$/.test(raw.trim()) || raw === '') return raw;
  if (type === 'int' && /^-?\d+$/.test(raw)) return Number.parseInt(raw, 10);
  if (type === 'float' && raw.trim() !== '' && !Number.isNaN(Number(raw))) return Number(raw);
  if (['list', 'dict', 'any'].includes(type)) {
    try { return JSON.parse(raw); } catch { return raw; }
  }
  return raw;
}

function shown(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

export default async function render(view, root) {
  const isNew = view.params.name === 'new';
  const [palette, saved] = await Promise.all([api.get('/pipelines/components'), isNew ? [] : api.get('/pipelines')]);
  const stored = !isNew && saved.some((p) => p.name === view.params.name) ? await api.get(`/pipelines/${enc(view.params.name)}`) : null;
  // a pipeline run from a file was never saved here: it is drawn from its latest run's document
  let ranFrom = null;
  if (!isNew && !stored) {
    const latest = (await api.get('/pipelines/runs', { pipeline: view.params.name, limit: 1 }))[0];
    if (!latest) throw new Error(t('There is no pipeline {name}: it was never saved or run here.', { name: view.params.name }));
    ranFrom = await api.get(`/pipelines/runs/${enc(latest.id)}`, { document: true });
  }
  const components = new Map(palette.map((c) => [c.name, c]));
  const source = stored ? stored.document || stored : ranFrom ? ranFrom.document : { name: '', nodes: [], edges: [] };
  const doc = normalise(source, components);
  if (!doc.name) doc.name = stored ? stored.name : isNew ? '' : view.params.name;
  // nodes saved without positions are laid out left to right
  if (doc.nodes.some((n) => !n.position)) {
    const placed = layout(doc.nodes.map((n) => ({ id: n.id })), doc.edges.map((e) => ({ from: split(e.from)[0], to: split(e.to)[0] })));
    for (const n of doc.nodes) if (!n.position) n.position = { x: placed.pos.get(n.id).x, y: placed.pos.get(n.id).y + 20 };
  }
  const mayWrite = can('pipelines', 'write');
  const state = { selected: null, armed: null, statuses: {}, logs: {}, run: null, dirty: false, saved: Boolean(stored) };

  const canvas = h('div', { class: 'canvas', role: 'application', 'aria-label': t('Pipeline canvas') });
  const wires = s('svg', { class: 'wires', width: 2400, height: 1400 });
  const inspector = h('aside', { class: 'inspector', 'aria-label': t('Node inspector') });
  const problemsBox = h('div', { 'aria-live': 'polite' });
  const runBox = h('div', { 'aria-live': 'polite' });
  const logsBox = h('div');
  const nameInput = h('input', { value: doc.name, placeholder: 'credit_scorecard', disabled: !isNew, on: { input: (e) => { doc.name = e.target.value.trim(); state.dirty = true; } } });
  const descInput = h('input', { value: doc.description, on: { input: (e) => { doc.description = e.target.value; state.dirty = true; } } });

  // -- drawing -------------------------------------------------------------------------------
  function portCenter(ref, side) {
    const el = canvas.querySelector(`[data-port="${CSS.escape(`${side}:${ref}`)}"]`);
    if (!el) return null;
    const box = el.getBoundingClientRect();
    const base = canvas.getBoundingClientRect();
    return { x: box.left - base.left + canvas.scrollLeft + box.width / 2, y: box.top - base.top + canvas.scrollTop + box.height / 2 };
  }

  function curve(a, b) {
    const mid = Math.max(40, Math.abs(b.x - a.x) / 2);
    return `M ${a.x} ${a.y} C ${a.x + mid} ${a.y}, ${b.x - mid} ${b.y}, ${b.x} ${b.y}`;
  }

  function drawWires(pending) {
    replace(wires, ...doc.edges.map((e) => {
      const a = portCenter(e.from, 'out');
      const b = portCenter(e.to, 'in');
      return a && b ? s('path', { d: curve(a, b), dataset: { edge: e.id } }) : null;
    }), pending ? s('path', { class: 'pending', d: curve(pending.a, pending.b) }) : null);
  }

  function nodeElement(node) {
    const comp = components.get(node.component) || { inputs: [], outputs: [], params: [], description: '' };
    const status = state.statuses[node.id];
    const header = h('header', { tabindex: '0', 'aria-label': t('Node {id} ({component}); arrow keys move it', { id: node.id, component: node.component }) },
      h('span', null, node.label || node.id), node.component !== node.id ? h('small', null, node.component) : null,
      status ? h('span', { class: 'sr-only' }, t(status)) : null);
    const port = (side, p) => {
      const ref = `${node.id}.${p.name}`;
      const button = h('button', {
        type: 'button', class: state.armed === ref ? 'armed' : null, dataset: { port: `${side}:${ref}` },
        'aria-label': side === 'out' ? t('output {port} of {node} ({type}): connect from here', { port: p.name, node: node.id, type: p.type })
          : t('input {port} of {node} ({type}): connect here', { port: p.name, node: node.id, type: p.type }),
        title: `${p.name}: ${p.type}`,
        on: {
          click: (e) => { e.stopPropagation(); clickPort(side, ref); },
          pointerdown: (e) => { if (side === 'out' && mayWrite) startWire(e, ref); },
        },
      });
      return h('div', { class: `port ${side}` }, button, `${p.name}${p.optional ? '?' : ''}`);
    };
    const el = h('div', {
      class: ['pnode', state.selected === node.id ? 'selected' : null, status ? `status-${status}` : null].filter(Boolean).join(' '),
      dataset: { node: node.id }, style: { left: `${node.position.x}px`, top: `${node.position.y}px`, width: `${NODE_W}px` },
      on: { click: () => select_(node.id) },
    }, header, h('div', { class: 'ports' },
      h('div', null, comp.inputs.map((p) => port('in', p))),
      h('div', null, comp.outputs.map((p) => port('out', p)))));
    if (mayWrite) {
      header.addEventListener('pointerdown', (e) => startMove(e, node));
      header.addEventListener('keydown', (e) => {
        const step = e.shiftKey ? 50 : 10;
        const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
        if (moves[e.key]) {
          e.preventDefault();
          node.position.x = Math.max(0, node.position.x + moves[e.key][0]);
          node.position.y = Math.max(0, node.position.y + moves[e.key][1]);
          state.dirty = true;
          draw(node.id);
        } else if (e.key === 'Delete') {
          e.preventDefault();
          removeNode(doc, node.id);
          state.selected = null;
          state.dirty = true;
          draw();
        }
      });
    }
    return el;
  }

  function draw(focusNode) {
    replace(canvas, wires, ...doc.nodes.map(nodeElement),
      doc.nodes.length ? null : h('div', { class: 'empty' }, h('strong', null, t('Drag components here')),
        t('Drop a component from the palette, then connect an output (right) to an input (left).')));
    requestAnimationFrame(() => drawWires());
    drawInspector();
    if (focusNode) canvas.querySelector(`[data-node="${CSS.escape(focusNode)}"] header`)?.focus();
  }

  // -- interactions ------------------------------------------------------------------------------
  function select_(id) {
    state.selected = id;
    for (const el of canvas.querySelectorAll('.pnode')) el.classList.toggle('selected', el.dataset.node === id);
    drawInspector();
  }

  function tryConnect(from, to) {
    const problem = connect(doc, components, from, to);
    if (problem) toast(problem, 'error');
    else state.dirty = true;
    state.armed = null;
    draw();
  }

  // keyboard and click: press an output, then an input
  function clickPort(side, ref) {
    if (!mayWrite) return;
    if (side === 'out') { state.armed = state.armed === ref ? null : ref; draw(); return; }
    if (state.armed) tryConnect(state.armed, ref);
  }

  function startWire(event, from) {
    event.preventDefault();
    const start = portCenter(from, 'out');
    const base = canvas.getBoundingClientRect();
    const at = (e) => ({ x: e.clientX - base.left + canvas.scrollLeft, y: e.clientY - base.top + canvas.scrollTop });
    let moved = false;
    const move = (e) => { moved = true; drawWires({ a: start, b: at(e) }); };
    const up = (e) => {
      document.removeEventListener('pointermove', move);
      document.removeEventListener('pointerup', up);
      // the dragged wire goes now, not on the next frame, so a refused drop never shows it
      drawWires();
      if (!moved) return;
      const target = document.elementFromPoint(e.clientX, e.clientY)?.closest('[data-port^="in:"]');
      if (target) tryConnect(from, target.dataset.port.slice(3));
    };
    document.addEventListener('pointermove', move);
    document.addEventListener('pointerup', up);
  }

  function startMove(event, node) {
    if (event.button !== 0) return;
    event.preventDefault();
    select_(node.id);
    const el = canvas.querySelector(`[data-node="${CSS.escape(node.id)}"]`);
    const origin = { x: event.clientX, y: event.clientY, left: node.position.x, top: node.position.y };
    let moved = false;
    const move = (e) => {
      moved = true;
      node.position.x = Math.max(0, origin.left + e.clientX - origin.x);
      node.position.y = Math.max(0, origin.top + e.clientY - origin.y);
      el.style.left = `${node.position.x}px`;
      el.style.top = `${node.position.y}px`;
      drawWires();
    };
    const up = () => {
      document.removeEventListener('pointermove', move);
      document.removeEventListener('pointerup', up);
      node.position.x = Math.round(node.position.x);
      node.position.y = Math.round(node.position.y);
      if (moved) state.dirty = true;
    };
    document.addEventListener('pointermove', move);
    document.addEventListener('pointerup', up);
  }

  function place(component, point) {
    const node = addNode(doc, component, point);
    state.dirty = true;
    state.selected = node.id;
    draw(node.id);
  }

  canvas.addEventListener('dragover', (e) => { if (mayWrite) { e.preventDefault(); canvas.classList.add('over'); } });
  canvas.addEventListener('dragleave', () => canvas.classList.remove('over'));
  canvas.addEventListener('drop', (e) => {
    e.preventDefault();
    canvas.classList.remove('over');
    const name = e.dataTransfer.getData('application/x-shipyard-component') || e.dataTransfer.getData('text/plain');
    const comp = components.get(name);
    if (!comp) return;
    const base = canvas.getBoundingClientRect();
    place(comp, { x: Math.max(0, e.clientX - base.left + canvas.scrollLeft - NODE_W / 2), y: Math.max(0, e.clientY - base.top + canvas.scrollTop - 15) });
  });
  canvas.addEventListener('click', (e) => { if (e.target === canvas) { state.armed = null; select_(null); } });

  // -- palette -------------------------------------------------------------------------------------
  const filter = h('input', { type: 'search', placeholder: t('filter'), 'aria-label': t('Filter components') });
  const list = h('div');
  function drawPalette() {
    const q = filter.value.toLowerCase();
    replace(list, palette.filter((c) => !q || c.name.toLowerCase().includes(q) || (c.description || '').toLowerCase().includes(q))
      .map((c) => h('button', {
        type: 'button', class: 'component', draggable: mayWrite ? 'true' : 'false', dataset: { component: c.name },
        title: c.description || c.name, 'aria-label': t('Add component {name}', { name: c.name }),
        on: {
          dragstart: (e) => { e.dataTransfer.setData('application/x-shipyard-component', c.name); e.dataTransfer.setData('text/plain', c.name); e.dataTransfer.effectAllowed = 'copy'; },
          click: () => {
            if (!mayWrite) return;
            const y = 20 + (doc.nodes.length % 6) * 90;
            place(c, { x: 20 + Math.floor(doc.nodes.length / 6) * (NODE_W + 60), y });
          },
        },
      }, c.name, h('small', null, `${c.inputs.map((p) => p.type).join(', ') || '–'} → ${c.outputs.map((p) => p.type).join(', ') || '–'}`))));
  }
  filter.addEventListener('input', drawPalette);
  drawPalette();

  // -- inspector -----------------------------------------------------------------------------------
  function drawInspector() {
    const node = doc.nodes.find((n) => n.id === state.selected);
    if (!node) {
      replace(inspector, h('h2', null, t('Pipeline')),
        h('p', { class: 'muted small' }, t('Select a node to edit its parameters. Run parameters are used as ${name}.')),
        field(t('Run parameters (JSON)'), h('textarea', { rows: 4, disabled: !mayWrite, on: { change: (e) => {
          try { doc.params = JSON.parse(e.target.value || '{}'); state.dirty = true; } catch { toast(t('Run parameters must be a JSON object'), 'error'); }
        } } }, JSON.stringify(doc.params || {}, null, 1))),
        h('h3', null, t('Edges')),
        doc.edges.length ? h('ul', null, doc.edges.map((e) => h('li', { class: 'small' }, `${e.from} → ${e.to} `,
          mayWrite ? h('button', { type: 'button', class: 'small', 'aria-label': t('Remove edge {from} to {to}', { from: e.from, to: e.to }),
            on: { click: () => { doc.edges = doc.edges.filter((x) => x !== e); state.dirty = true; draw(); } } }, '×') : null)))
          : h('p', { class: 'muted small' }, t('No edges yet.')));
      return;
    }
    const comp = components.get(node.component) || { params: [], description: '' };
    const idInput = h('input', { value: node.id, disabled: !mayWrite, on: { change: (e) => {
      const problem = renameNode(doc, node.id, e.target.value.trim());
      if (problem) { toast(problem, 'error'); e.target.value = node.id; return; }
      state.selected = node.id;
      state.dirty = true;
      draw();
    } } });
    const paramFields = comp.params.map((p) => {
      const value = node.params[p.name];
      let control;
      if (p.choices) {
        control = select([['', '–'], ...p.choices.map((c) => [c, String(c)])], shown(value ?? p.default), { disabled: !mayWrite });
      } else if (p.type === 'bool') {
        control = h('input', { type: 'checkbox', checked: Boolean(value ?? p.default), disabled: !mayWrite });
      } else {
        control = h('input', { value: shown(value), placeholder: p.required ? t('required') : shown(p.default), disabled: !mayWrite });
      }
      control.addEventListener('change', () => {
        const raw = p.type === 'bool' ? control.checked : control.value;
        if (raw === '' && !p.required) delete node.params[p.name];
        else node.params[p.name] = p.type === 'bool' ? raw : parseParam(p.type, raw);
        state.dirty = true;
      });
      return field(`${p.name}${p.required ? ' *' : ''} (${p.type})`, control);
    });
    const runStatus = state.statuses[node.id];
    replace(inspector,
      h('h2', null, node.id),
      h('p', { class: 'muted small' }, node.component, comp.description ? ` — ${comp.description}` : ''),
      runStatus ? h('p', null, statusBadge(runStatus)) : null,
      h('div', { class: 'form' }, field(t('Node id'), idInput),
        field(t('Label'), h('input', { value: node.label || '', disabled: !mayWrite, on: { change: (e) => { node.label = e.target.value; state.dirty = true; } } })),
        paramFields.length ? h('h3', null, t('Parameters')) : null, paramFields,
        h('h3', null, t('Execution')),
        field(t('Retries'), h('input', { type: 'number', min: 0, max: 10, value: node.retries ?? '', disabled: !mayWrite, on: { change: (e) => {
          if (e.target.value === '') delete node.retries; else node.retries = Number(e.target.value); state.dirty = true; } } })),
        field(t('Timeout (s)'), h('input', { type: 'number', min: 1, value: node.timeout_s ?? '', disabled: !mayWrite, on: { change: (e) => {
          if (e.target.value === '') delete node.timeout_s; else node.timeout_s = Number(e.target.value); state.dirty = true; } } })),
        h('label', { class: 'row small' }, h('input', { type: 'checkbox', checked: node.cache !== false, disabled: !mayWrite,
          on: { change: (e) => { if (e.target.checked) delete node.cache; else node.cache = false; state.dirty = true; } } }), t('Reuse the output when nothing changed'))),
      h('div', { class: 'row' },
        mayWrite ? h('button', { type: 'button', class: 'danger small', on: { click: () => { removeNode(doc, node.id); state.selected = null; state.dirty = true; draw(); } } }, t('Delete node')) : null,
        mayWrite && !isNew ? h('button', { type: 'button', class: 'small', on: { click: (e) => runPipeline(e.currentTarget, node.id) } }, t('Re-run from here')) : null),
      state.run ? h('div', null, h('h3', null, t('Logs')), h('pre', { class: 'logs' }, state.logs[node.id] || t('(no output yet)'))) : null);
  }

  // -- validate, save, run ---------------------------------------------------------------------------
  function showProblems(list, title) {
    replace(problemsBox, list.length ? h('div', { class: 'alert warn', role: 'alert' }, h('strong', null, title), h('ul', null, list.map((p) => h('li', null, p)))) : null);
  }

  async function validate(button) {
    const local = localProblems(doc, components);
    if (local.length) { showProblems(local, t('Fix before validating:')); return false; }
    return act(button, async () => {
      try {
        await api.post('/pipelines/validate', { document: toDocument(doc) });
        replace(problemsBox, notice(t('The pipeline is valid.'), 'info'));
        return true;
      } catch (error) {
        const list = ((error.details && error.details.problems) || []).map((p) => (typeof p === 'string' ? p : p.message || JSON.stringify(p)));
        showProblems(list.length ? list : [error.message], t('The server refused the pipeline:'));
        return false;
      }
    });
  }

  async function save(button) {
    const local = localProblems(doc, components);
    if (local.length) { showProblems(local, t('Fix before saving:')); return null; }
    try {
      const saved = await api.post('/pipelines', { document: toDocument(doc) });
      state.dirty = false;
      state.saved = true;
      replace(problemsBox, notice(t('Saved {name} v{version}.', { name: saved.name, version: saved.version }), 'info'));
      return saved;
    } catch (error) {
      const list = ((error.details && error.details.problems) || []).map((p) => (typeof p === 'string' ? p : p.message || JSON.stringify(p)));
      showProblems(list.length ? list : [error.message], t('The server refused the pipeline:'));
      if (button) button.disabled = false;
      return null;
    }
  }

  async function follow(runId) {
    delete canvas.dataset.run;
    state.run = runId;
    state.statuses = {};
    state.logs = {};
    draw();
    const controller = new AbortController();
    view.onDispose(() => controller.abort());
    replace(runBox, h('p', null, t('Run {id} started.', { id: runId.slice(0, 8) }), ' ', statusBadge('running')));
    try {
      await stream(`/pipelines/runs/${enc(runId)}/events`, (event, data) => {
        if (event === 'node') {
          state.statuses[data.node_id] = data.status;
          const el = canvas.querySelector(`[data-node="${CSS.escape(data.node_id)}"]`);
          if (el) {
            el.className = el.className.replace(/\bstatus-\S+/g, '').trim();
            el.classList.add(`status-${data.status}`);
            el.dataset.status = data.status;
          }
          if (state.selected === data.node_id) drawInspector();
        } else if (event === 'log') {
          state.logs[data.node] = (state.logs[data.node] || '') + data.text;
          if (state.selected === data.node) drawInspector();
        } else if (event === 'run') {
          replace(runBox, h('p', null, t('Run {id}', { id: runId.slice(0, 8) }), ' ', statusBadge(data.status), ' ',
            data.error ? h('span', { class: 'muted' }, data.error) : null,
            data.tracking_run_id ? [' ', h('a', { href: href(`/runs/${data.tracking_run_id}`) }, t('tracking run'))] : null));
          canvas.dataset.run = data.status;
          toast(t('Pipeline run {status}', { status: t(data.status) }), data.status === 'succeeded' ? '' : 'error');
          drawRuns();
        }
      }, controller.signal);
    } catch (error) {
      if (error.name !== 'AbortError') replace(runBox, errorBox(error));
    }
  }

  async function runPipeline(button, from) {
    delete canvas.dataset.run;
    if (state.dirty || isNew || !state.saved) { // runs start from the saved document
      const saved = await save(button);
      if (!saved) return;
      if (isNew) { location.hash = href(`/pipelines/${enc(saved.name)}`, { run: 1 }); return; }
    }
    const started = await act(button, () => api.post(`/pipelines/${enc(doc.name)}/runs`, from ? { from } : {}));
    if (started) follow(started.run_id);
  }

  async function showCode() {
    try {
      const code = await api.get(`/pipelines/${enc(doc.name)}/script`);
      await dialog({ title: t('Generated code of {name}', { name: doc.name }), confirm: t('Close'), body: h('pre', { class: 'small' }, code) });
    } catch (error) {
      toast(error.message, 'error');
    }
  }

  function downloadJson() {
    const blob = new Blob([JSON.stringify(toDocument(doc), null, 2)], { type: 'application/json' });
    const link = h('a', { href: URL.createObjectURL(blob), download: `${doc.name || 'pipeline'}.json` });
    document.body.append(link);
    link.click();
    link.remove();
  }

  // -- runs of this pipeline -------------------------------------------------------------------------
  const runsBox = h('div');
  async function drawRuns() {
    if (isNew) { replace(runsBox, empty(t('Save the pipeline to run it.'))); return; }
    try {
      const runs = await api.get('/pipelines/runs', { pipeline: doc.name, limit: 20 });
      replace(runsBox, runs.length ? table({
        label: t('Runs of this pipeline'),
        columns: [
          { label: t('Run'), render: (r) => h('button', { type: 'button', class: 'link mono', on: { click: () => showRun(r) } }, r.id.slice(0, 8)) },
          { label: t('Status'), render: (r) => statusBadge(r.status) },
          { label: t('Nodes'), render: (r) => Object.entries(r.counts || {}).map(([k, v]) => `${t(k)} ${v}`).join(', ') },
          { label: t('Started'), className: 'nowrap', render: (r) => `${when(r.started_at)} · ${r.created_by}` },
          { label: t('Duration'), num: true, render: (r) => (r.finished_at ? duration(r.finished_at - r.started_at) : '–') },
        ],
        rows: runs,
      }) : empty(t('No runs yet.'), t('Press Run to start one.')));
    } catch (error) {
      replace(runsBox, errorBox(error));
    }
  }

  // a finished run's statuses on the canvas at once; its logs as they arrive
  function showRun(run) {
    state.run = run.id;
    state.statuses = Object.fromEntries(run.nodes.map((n) => [n.node_id, n.status]));
    state.logs = {};
    replace(runBox, h('p', null, t('Run {id}', { id: run.id.slice(0, 8) }), ' ', statusBadge(run.status), run.error ? h('span', { class: 'muted' }, ` ${run.error}`) : null));
    draw();
    for (const n of run.nodes) {
      api.get(`/pipelines/runs/${enc(run.id)}/nodes/${enc(n.node_id)}/logs`).then((chunk) => {
        state.logs[n.node_id] = chunk.text;
        if (state.selected === n.node_id) drawInspector();
      }).catch(() => null);
    }
  }

  // -- page ---------------------------------------------------------------------------------------------
  const actions = [];
  const validateButton = h('button', { type: 'button', on: { click: (e) => validate(e.currentTarget) } }, t('Validate'));
  actions.push(validateButton);
  if (mayWrite) {
    actions.push(h('button', { type: 'button', on: { click: async (e) => {
      const button = e.currentTarget;
      button.disabled = true;
      const saved = await save(button);
      button.disabled = false;
      if (saved && isNew) location.hash = href(`/pipelines/${enc(saved.name)}`);
    } } }, t('Save')));
    actions.push(h('button', { type: 'button', class: 'primary', on: { click: (e) => runPipeline(e.currentTarget) } }, t('Run')));
  }
  if (stored && !isNew) actions.push(h('button', { type: 'button', on: { click: showCode } }, t('View code')));
  actions.push(h('button', { type: 'button', on: { click: downloadJson } }, t('Download JSON')));

  root.append(
    pageHead({ title: isNew ? t('New pipeline') : doc.name, crumbs: [{ label: t('Pipelines'), href: '#/pipelines' }],
      sub: stored ? t('version {version}', { version: stored.version }) : null, actions }),
    h('div', { class: 'form inline' }, field(t('Name'), nameInput), field(t('Description'), descInput)),
    problemsBox, runBox,
    h('div', { class: 'editor' },
      h('div', { class: 'palette', 'aria-label': t('Components') }, h('h2', null, t('Components')), filter, list,
        mayWrite ? h('p', { class: 'muted small' }, t('Drag onto the canvas, or press to add.')) : null),
      canvas, inspector),
    h('div', { class: 'stack' }, card(t('Runs'), null, runsBox), logsBox));
  draw();
  drawRuns();
  if (view.query.get('run') && mayWrite) runPipeline(null);
  if (!mayWrite) root.prepend(notice(t('You may look at this pipeline; changing and running it needs the modeler or operator role.')));
  if (ranFrom) {
    root.prepend(notice(t('This pipeline was run from a file and is not saved here; it is drawn from its latest run. Saving stores it.')));
    showRun(ranFrom);
  }
}

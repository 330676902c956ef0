// The pipeline document behind the drag-and-drop editor: nodes with positions, typed ports, edges
// "node.port" → "node.port". Kept apart from drawing so its rules can be read (and tested) alone.
import { t } from './i18n.js';

const ID_RE = /^[A-Za-z_][A-Za-z0-9_-]{0,99}$/;

export function portRef(value) {
  if (!value) return null;
  if (typeof value === 'object') return `${value.node}.${value.output ?? value.input ?? ''}`;
  return String(value);
}

// A stored or uploaded document in one shape: explicit edges "a.out" → "b.in", inputs shorthand
// turned into edges (a bare "node" means its only output, found from the palette).
export function normalise(doc, components) {
  const nodes = (doc.nodes || []).map((n) => ({ ...n, params: { ...(n.params || {}) } }));
  const edges = [];
  let counter = 0;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const onlyOutput = (nodeId) => {
    const comp = components.get((byId.get(nodeId) || {}).component);
    return comp && comp.outputs.length === 1 ? comp.outputs[0].name : 'output';
  };
  for (const e of doc.edges || []) {
    counter += 1;
    edges.push({ id: e.id || `e${counter}`, from: portRef(e.from), to: portRef(e.to) });
  }
  for (const n of nodes) {
    for (const [input, source] of Object.entries(n.inputs || {})) {
      counter += 1;
      const from = String(source).includes('.') ? String(source) : `${source}.${onlyOutput(source)}`;
      edges.push({ id: `e${counter}`, from, to: `${n.id}.${input}` });
    }
    delete n.inputs;
  }
  return { version: 1, name: doc.name || '', description: doc.description || '', params: { ...(doc.params || {}) },
    ...(doc.defaults ? { defaults: doc.defaults } : {}), ...(doc.experiment ? { experiment: doc.experiment } : {}),
    nodes, edges };
}

export function split(ref) {
  const cut = ref.lastIndexOf('.');
  return [ref.slice(0, cut), ref.slice(cut + 1)];
}

function compatible(a, b) {
  return a === b || a === 'any' || b === 'any';
}

function reaches(doc, from, to) {
  const next = new Map();
  for (const e of doc.edges) {
    const [a] = split(e.from);
    const [b] = split(e.to);
    if (!next.has(a)) next.set(a, []);
    next.get(a).push(b);
  }
  const seen = new Set();
  const stack = [from];
  while (stack.length) {
    const id = stack.pop();
    if (id === to) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(next.get(id) || []));
  }
  return false;
}

// Connect an output to an input; returns an error message, or null once connected. An input
// takes one edge: a new one replaces the old.
export function connect(doc, components, from, to) {
  const [srcId, out] = split(from);
  const [dstId, inp] = split(to);
  const src = doc.nodes.find((n) => n.id === srcId);
  const dst = doc.nodes.find((n) => n.id === dstId);
  if (!src || !dst) return t('Both ends must be nodes on the canvas.');
  if (srcId === dstId) return t('A node cannot feed itself.');
  const srcPort = (components.get(src.component)?.outputs || []).find((p) => p.name === out);
  const dstPort = (components.get(dst.component)?.inputs || []).find((p) => p.name === inp);
  if (!srcPort || !dstPort) return t('Connect an output (right side) to an input (left side).');
  if (!compatible(srcPort.type, dstPort.type)) {
    return t('{from} gives a {a}, but {to} takes a {b}.', { from, to, a: srcPort.type, b: dstPort.type });
  }
  if (reaches(doc, dstId, srcId)) return t('This edge would close a cycle.');
  doc.edges = doc.edges.filter((e) => e.to !== to);
  let n = doc.edges.length + 1;
  while (doc.edges.some((e) => e.id === `e${n}`)) n += 1;
  doc.edges.push({ id: `e${n}`, from, to });
  return null;
}

export function addNode(doc, component, position) {
  const base = component.name.replace(/[^A-Za-z0-9_]/g, '_').replace(/^([^A-Za-z_])/, '_$1');
  let id = base;
  for (let i = 2; doc.nodes.some((n) => n.id === id); i += 1) id = `${base}_${i}`;
  const params = {};
  for (const p of component.params) if (p.required) params[p.name] = p.type === 'bool' ? false : '';
  const node = { id, component: component.name, params, position: { x: Math.round(position.x), y: Math.round(position.y) } };
  doc.nodes.push(node);
  return node;
}

export function removeNode(doc, id) {
  doc.nodes = doc.nodes.filter((n) => n.id !== id);
  doc.edges = doc.edges.filter((e) => split(e.from)[0] !== id && split(e.to)[0] !== id);
}

export function renameNode(doc, oldId, newId) {
  if (!ID_RE.test(newId)) return t('A node id is a letter or _ then letters, digits, _ or -.');
  if (doc.nodes.some((n) => n.id === newId)) return t('Another node is called {id}.', { id: newId });
  const node = doc.nodes.find((n) => n.id === oldId);
  node.id = newId;
  const swap = (ref) => { const [a, p] = split(ref); return a === oldId ? `${newId}.${p}` : ref; };
  doc.edges = doc.edges.map((e) => ({ ...e, from: swap(e.from), to: swap(e.to) }));
  return null;
}

// Problems the editor can see before asking the server (which checks everything again).
export function localProblems(doc, components) {
  const problems = [];
  if (!ID_RE.test(doc.name || '')) problems.push(t('Give the pipeline a name (a letter or _ then letters, digits, _ or -).'));
  if (!doc.nodes.length) problems.push(t('Drag components from the palette onto the canvas.'));
  for (const node of doc.nodes) {
    const comp = components.get(node.component);
    if (!comp) continue;
    for (const port of comp.inputs) {
      if (!port.optional && !doc.edges.some((e) => e.to === `${node.id}.${port.name}`)) {
        problems.push(t('{node}: input {port} is not connected.', { node: node.id, port: port.name }));
      }
    }
    for (const p of comp.params) {
      const value = node.params[p.name];
      if (p.required && (value === undefined || value === '')) problems.push(t('{node}: parameter {param} is required.', { node: node.id, param: p.name }));
    }
  }
  return problems;
}

// The document as saved: positions rounded, empty params dropped.
export function toDocument(doc) {
  return {
    ...doc,
    nodes: doc.nodes.map((n) => {
      const params = Object.fromEntries(Object.entries(n.params).filter(([, v]) => v !== '' && v !== undefined));
      const out = { ...n, params };
      if (!out.label) delete out.label;
      return out;
    }),
  };
}

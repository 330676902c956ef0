// Directed graphs drawn as SVG: decision flows, lineage, pipeline runs. Nodes are placed in layers
// by their longest path from a source and ordered to reduce crossings; clickable nodes are links.
import { h, s } from './dom.js';

const NODE_W = 184;
const NODE_H = 46;
const GAP_X = 56;
const GAP_Y = 18;

export function layout(nodes, edges) {
  const ids = nodes.map((n) => n.id);
  const incoming = new Map(ids.map((id) => [id, []]));
  const outgoing = new Map(ids.map((id) => [id, []]));
  for (const e of edges) {
    if (incoming.has(e.to) && outgoing.has(e.from)) {
      incoming.get(e.to).push(e.from);
      outgoing.get(e.from).push(e.to);
    }
  }
  const layer = new Map();
  // a node may name its column (lineage keeps each kind of object in its own)
  for (const n of nodes) if (Number.isInteger(n.rank)) layer.set(n.id, n.rank);
  const visiting = new Set();
  function depth(id) {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle: keep going rather than hang
    visiting.add(id);
    const d = incoming.get(id).length ? Math.max(...incoming.get(id).map(depth)) + 1 : 0;
    visiting.delete(id);
    layer.set(id, d);
    return d;
  }
  ids.forEach(depth);
  const sparse = [];
  for (const id of ids) {
    const d = layer.get(id);
    (sparse[d] = sparse[d] || []).push(id);
  }
  const layers = sparse.filter((l) => l && l.length); // no empty column
  // two sweeps of the barycentre heuristic
  const order = new Map();
  layers.forEach((ids2) => ids2.forEach((id, i) => order.set(id, i)));
  for (let pass = 0; pass < 2; pass += 1) {
    for (let d = 1; d < layers.length; d += 1) {
      const bary = (id) => {
        const parents = incoming.get(id);
        return parents.length ? parents.reduce((sum, p) => sum + order.get(p), 0) / parents.length : order.get(id);
      };
      layers[d].sort((a, b) => bary(a) - bary(b));
      layers[d].forEach((id, i) => order.set(id, i));
    }
  }
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = tallest * (NODE_H + GAP_Y) + GAP_Y;
  const pos = new Map();
  layers.forEach((ids2, d) => {
    const offset = (height - ids2.length * (NODE_H + GAP_Y)) / 2;
    ids2.forEach((id, i) => pos.set(id, { x: GAP_X / 2 + d * (NODE_W + GAP_X), y: offset + GAP_Y / 2 + i * (NODE_H + GAP_Y) }));
  });
  return { pos, width: layers.length * (NODE_W + GAP_X), height };
}

function clip(text, max = 24) {
  const str = String(text ?? '');
  return str.length > max ? `${str.slice(0, max - 1)}…` : str;
}

// nodes: [{id, label, kind, sub, cls, href, title}], edges: [{from, to, label}]
export function graph({ nodes, edges, label, onSelect, selected }) {
  const { pos, width, height } = layout(nodes, edges);
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-label': label || 'graph' });
  svg.append(s('defs', null, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#9aa7b6' }))));
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    svg.append(s('path', { class: 'edge', d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2 - 2} ${y2}`, 'marker-end': 'url(#arrow)' }));
    if (e.label) svg.append(s('text', { class: 'edge-label', x: mid, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, clip(e.label, 22)));
  }
  for (const n of nodes) {
    const p = pos.get(n.id);
    const group = s('g', { class: ['node', n.kind, n.cls, selected === n.id ? 'selected' : null].filter(Boolean).join(' '), transform: `translate(${p.x},${p.y})` },
      s('title', null, n.title || `${n.kind || ''} ${n.label}`),
      s('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { class: 'kind', x: 10, y: 16 }, clip(n.kindLabel || n.kind || '', 26)),
      s('text', { x: 10, y: 34 }, clip(n.label, 26)));
    if (n.sub) group.append(s('text', { class: 'kind', x: NODE_W - 8, y: 16, 'text-anchor': 'end' }, clip(n.sub, 14)));
    if (n.href) {
      svg.append(s('a', { href: n.href, 'aria-label': `${n.kindLabel || n.kind || ''} ${n.label}` }, group));
    } else if (onSelect) {
      group.setAttribute('tabindex', '0');
      group.setAttribute('role', 'button');
      group.setAttribute('aria-label', `${n.kindLabel || n.kind || ''} ${n.label}`);
      group.addEventListener('click', () => onSelect(n.id));
      group.addEventListener('keydown', (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); onSelect(n.id); } });
      svg.append(group);
    } else svg.append(group);
  }
  return h('div', { class: 'graph' }, svg);
}

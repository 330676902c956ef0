// A scene's decision flow as a graph: request → steps (serial chains, parallel branches, switch
// cases, fusions) → response.
import { enc } from '../api.js';
import { t } from '../i18n.js';
import { href } from '../router.js';

function describe(step) {
  switch (step.type) {
    case 'features': return { label: step.service || '?', sub: t('features'), href: step.service ? href(`/features/services/${enc(step.service)}`) : null };
    case 'model': return { label: step.model, sub: `@${step.ref || 'champion'}`, out: step.output || (step.outputs || []).join(', '), href: href(`/models/${enc(step.model)}`) };
    case 'rules': return step.model ? { label: step.model, sub: `@${step.ref || 'champion'}`, out: step.output }
      : { label: `${(step.rules || []).length} ${t('rules')}`, sub: '', out: step.output };
    case 'expr': return { label: step.expr ? String(step.expr) : '', sub: '', out: step.output };
    case 'fusion': return { label: step.method || 'expr', sub: '', out: step.output };
    case 'switch': return { label: step.id || 'switch', sub: `${(step.cases || []).length} ${t('cases')}` };
    case 'scene': return { label: step.scene, sub: step.version ? `v${step.version}` : '', href: href(`/scenes/${enc(step.scene)}`) };
    default: return { label: step.id || step.type || '?', sub: '' };
  }
}

export function flowGraph(flow) {
  const nodes = [];
  const edges = [];
  let counter = 0;
  const node = (step) => {
    counter += 1;
    const id = step.id ? `${step.id}#${counter}` : `n${counter}`;
    const info = describe(step);
    const kindLabel = info.out ? `${step.type} → ${info.out}` : step.type;
    nodes.push({ id, kind: step.type, kindLabel, label: info.label, sub: info.sub, href: info.href,
      title: JSON.stringify(step, null, 1).slice(0, 400) });
    return id;
  };
  const connect = (froms, tos, label) => { for (const f of froms) for (const to of tos) edges.push({ from: f, to, label }); };
  function serial(list) {
    let entry = null;
    let prev = null;
    for (const step of list || []) {
      const part = build(step);
      if (prev) connect(prev, part.entry); else entry = part.entry;
      prev = part.exit;
    }
    return { entry: entry || [], exit: prev || [] };
  }
  function build(step) {
    if (Array.isArray(step)) return serial(step);
    if (!step || typeof step !== 'object') return { entry: [], exit: [] };
    if (step.type === 'serial') return serial(step.steps);
    if (step.type === 'parallel') {
      const parts = (step.steps || []).map(build);
      return { entry: parts.flatMap((p) => p.entry), exit: parts.flatMap((p) => p.exit) };
    }
    if (step.type === 'switch') {
      const sw = node(step);
      const exits = [];
      for (const c of step.cases || []) {
        const part = build(c.then);
        connect([sw], part.entry, c.when);
        exits.push(...part.exit);
      }
      if (step.default) {
        const part = build(step.default);
        connect([sw], part.entry, t('otherwise'));
        exits.push(...part.exit);
      } else exits.push(sw);
      return { entry: [sw], exit: exits };
    }
    if (step.type === 'fusion' && step.steps) {
      const inner = build(step.steps);
      const f = node(step);
      connect(inner.exit, [f]);
      return { entry: inner.entry, exit: [f] };
    }
    const id = node(step);
    return { entry: [id], exit: [id] };
  }
  nodes.push({ id: 'request', kind: 'scene', kindLabel: t('request'), label: t('inputs') });
  const body = build(flow);
  connect(['request'], body.entry.length ? body.entry : ['response']);
  nodes.push({ id: 'response', kind: 'scene', kindLabel: t('response'), label: t('outputs') });
  if (body.exit.length) connect(body.exit, ['response']);
  return { nodes, edges };
}

// The lineage graph source → feature view → feature service → model → scene, assembled from what
// the API returns about each (view sources, service features, model lineage, scene flows).
import { api, enc } from '../api.js';
import { t } from '../i18n.js';
import { href } from '../router.js';
import { can } from '../perms.js';

export function sourceLabel(source) {
  if (!source) return '?';
  return source.name || source.path || (source.query ? source.query.slice(0, 40) : null) || source.sql?.slice(0, 40) || source.type;
}

// every step of a scene flow, depth first
export function flowSteps(flow) {
  const out = [];
  const walk = (step) => {
    if (!step) return;
    if (Array.isArray(step)) { step.forEach(walk); return; }
    out.push(step);
    (step.steps || []).forEach(walk);
    (step.cases || []).forEach((c) => walk(c.then));
    if (step.default && typeof step.default === 'object') walk(step.default);
  };
  walk(flow);
  return out;
}

export async function lineageGraph({ views, services }) {
  const nodes = new Map();
  const edges = [];
  const RANK = { source: 0, view: 1, ondemand: 2, service: 3, model: 4, scene: 5 };
  const add = (id, node) => { if (!nodes.has(id)) nodes.set(id, { id, rank: RANK[node.rankKind || node.kind], ...node }); };
  for (const v of views) {
    const onDemand = v.kind === 'on_demand_feature_view';
    add(`view:${v.name}`, { label: v.name, kind: 'view', rankKind: onDemand ? 'ondemand' : 'view',
      kindLabel: onDemand ? t('on-demand view') : t('feature view'), href: href(`/features/views/${enc(v.name)}`) });
    if (v.spec.source) {
      const label = sourceLabel(v.spec.source);
      add(`source:${label}`, { label, kind: 'source', kindLabel: `${t('source')} · ${v.spec.source.type}` });
      edges.push({ from: `source:${label}`, to: `view:${v.name}` });
    }
    for (const ref of (v.spec.inputs && v.spec.inputs.features) || []) {
      const upstream = String(ref).split(':')[0];
      edges.push({ from: `view:${upstream}`, to: `view:${v.name}` });
    }
  }
  for (const s of services) {
    add(`service:${s.name}`, { label: s.name, kind: 'service', kindLabel: t('feature service'), href: href(`/features/services/${enc(s.name)}`) });
    for (const view of new Set(s.spec.features.map((f) => String(f).split(':')[0]))) edges.push({ from: `view:${view}`, to: `service:${s.name}` });
  }
  if (can('models', 'read')) {
    const recent = await api.get('/models/-/versions', { limit: 200 }).catch(() => ({ versions: [] }));
    for (const mv of recent.versions) {
      const lineage = mv.lineage || {};
      if (lineage.feature_service) {
        add(`model:${mv.name}`, { label: mv.name, kind: 'model', kindLabel: t('model'), href: href(`/models/${enc(mv.name)}`) });
        edges.push({ from: `service:${lineage.feature_service}`, to: `model:${mv.name}` });
      }
      for (const view of lineage.feature_views || []) {
        add(`model:${mv.name}`, { label: mv.name, kind: 'model', kindLabel: t('model'), href: href(`/models/${enc(mv.name)}`) });
        edges.push({ from: `view:${view}`, to: `model:${mv.name}` });
      }
    }
  }
  if (can('scenes', 'read')) {
    const scenes = await api.get('/scenes').catch(() => []);
    const docs = await Promise.all(scenes.slice(0, 50).map((s) => api.get(`/scenes/${enc(s.name)}`).catch(() => null)));
    for (const doc of docs.filter(Boolean)) {
      const id = `scene:${doc.name}`;
      add(id, { label: doc.name, kind: 'scene', kindLabel: t('scene'), href: href(`/scenes/${enc(doc.name)}`) });
      for (const step of flowSteps(doc.spec.flow)) {
        if (step.type === 'features' && step.service) {
          add(`service:${step.service}`, { label: step.service, kind: 'service', kindLabel: t('feature service') });
          edges.push({ from: `service:${step.service}`, to: id });
        } else if ((step.type === 'model' || step.type === 'rules') && step.model) {
          add(`model:${step.model}`, { label: step.model, kind: 'model', kindLabel: t('model'), href: href(`/models/${enc(step.model)}`) });
          edges.push({ from: `model:${step.model}`, to: id });
        }
      }
    }
  }
  const unique = new Map(edges.filter((e) => nodes.has(e.from) && nodes.has(e.to)).map((e) => [`${e.from}>${e.to}`, e]));
  return { nodes: [...nodes.values()], edges: [...unique.values()] };
}

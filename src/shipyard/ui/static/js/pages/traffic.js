// The traffic policy editor: A/B weights, arms pinning other model versions, a whitelist, canary and
// shadow. Checked here as the server checks it, then applied as the scene's next version.
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { field, notice, select } from '../components.js';

const CONTROL = 'control';

// The same rules as shipyard.serving.traffic.TrafficPolicy.from_spec; [] when the policy is valid.
export function checkTraffic(traffic, inputs) {
  const problems = [];
  const arms = Object.keys(traffic.arms || {});
  if (arms.includes(CONTROL)) problems.push(t("'control' is the scene's own flow; do not define it as an arm"));
  const known = new Set([CONTROL, ...arms]);
  const need = (arm, where) => { if (!known.has(arm)) problems.push(t('{where} names arm {arm}, which is not defined', { where, arm })); };
  const split = traffic.split || {};
  let total = 0;
  for (const [arm, weight] of Object.entries(split)) {
    need(arm, t('the split'));
    if (typeof weight !== 'number' || Number.isNaN(weight) || weight < 0) problems.push(t('the weight of {arm} must be a number of at least 0', { arm }));
    else total += weight;
  }
  if (Object.keys(split).length && total <= 0) problems.push(t('the weights must add up to more than 0'));
  (traffic.whitelist || []).forEach((rule, i) => {
    if (!rule.field || !rule.values || !rule.values.length) problems.push(t('whitelist rule {n} needs a field and values', { n: i + 1 }));
    need(rule.arm, t('whitelist rule {n}', { n: i + 1 }));
  });
  if (traffic.canary) {
    need(traffic.canary.arm, t('the canary'));
    const p = traffic.canary.percent;
    if (typeof p !== 'number' || Number.isNaN(p) || p < 0 || p > 100) problems.push(t('the canary percent must be between 0 and 100'));
  }
  if (traffic.shadow) {
    need(traffic.shadow.arm, t('the shadow'));
    const s = traffic.shadow.sample;
    if (typeof s !== 'number' || Number.isNaN(s) || s < 0 || s > 1) problems.push(t('the shadow sample must be between 0 and 1'));
  }
  if (traffic.key && inputs && !(traffic.key in inputs)) problems.push(t('the key {key} is not one of the scene inputs', { key: traffic.key }));
  for (const [arm, spec] of Object.entries(traffic.arms || {})) {
    if (!spec || (!spec.models && !spec.flow)) problems.push(t('arm {arm} needs model versions to pin (or its own flow)', { arm }));
  }
  return problems;
}

// Editor state → traffic document (empty parts dropped).
function toTraffic(state) {
  const out = {};
  if (state.key) out.key = state.key;
  const split = Object.fromEntries(state.split.filter((r) => r.arm).map((r) => [r.arm, Number(r.weight)]));
  if (Object.keys(split).length) out.split = split;
  const arms = {};
  for (const arm of state.arms) {
    if (!arm.name) continue;
    const models = Object.fromEntries(arm.pins.filter((p) => p.model).map((p) => [p.model, String(p.ref)]));
    arms[arm.name] = { ...(arm.extra || {}), ...(Object.keys(models).length ? { models } : {}) };
  }
  if (Object.keys(arms).length) out.arms = arms;
  const whitelist = state.whitelist.filter((r) => r.field || r.values || r.arm)
    .map((r) => ({ field: r.field, values: r.values.split(',').map((v) => v.trim()).filter(Boolean).map((v) => (/^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v)), arm: r.arm }));
  if (whitelist.length) out.whitelist = whitelist;
  if (state.canaryArm) out.canary = { arm: state.canaryArm, percent: Number(state.canaryPercent) };
  if (state.shadowArm) out.shadow = { arm: state.shadowArm, sample: Number(state.shadowSample) };
  if (!state.override) out.override = false;
  return out;
}

function fromTraffic(traffic) {
  const tr = traffic || {};
  return {
    key: tr.key || '',
    split: Object.entries(tr.split || {}).map(([arm, weight]) => ({ arm, weight })),
    arms: Object.entries(tr.arms || {}).map(([name, spec]) => ({
      name, pins: Object.entries(spec.models || {}).map(([model, ref]) => ({ model, ref })),
      extra: spec.flow ? { flow: spec.flow } : null,
    })),
    whitelist: (tr.whitelist || []).map((r) => ({ field: r.field, values: (r.values || []).join(', '), arm: r.arm })),
    canaryArm: tr.canary ? tr.canary.arm : '', canaryPercent: tr.canary ? tr.canary.percent : 0,
    shadowArm: tr.shadow ? tr.shadow.arm : '', shadowSample: tr.shadow ? tr.shadow.sample ?? 1 : 1,
    override: tr.override !== false,
  };
}

// Returns {element, value()} — value() gives the traffic document or throws with the problems.
export function trafficEditor(spec, models) {
  const state = fromTraffic(spec.traffic);
  const inputs = spec.inputs || {};
  const root = h('div', { class: 'stack' });
  const problems = h('div', { 'aria-live': 'polite' });
  const preview = h('pre', { class: 'small' });
  const modelNames = models.map((m) => m.name);

  function armChoices() { return ['', CONTROL, ...state.arms.map((a) => a.name).filter(Boolean)]; }

  // rebuild after a structural change, keeping keyboard focus on the control in the same place
  function redraw() {
    const controls = () => [...root.querySelectorAll('input, select, button')];
    const index = controls().indexOf(document.activeElement);
    draw();
    if (index >= 0) { const again = controls()[Math.min(index, controls().length - 1)]; if (again) again.focus(); }
  }

  function input(value, onInput, props = {}, structural = false) {
    const on = { input: (e) => { onInput(e.target.value); update(); } };
    if (structural) on.change = () => setTimeout(redraw);
    return h('input', { value: value ?? '', ...props, on });
  }

  function rowButton(label, fn) {
    return h('button', { type: 'button', class: 'small', on: { click: () => { fn(); redraw(); } } }, label);
  }

  function update() {
    const doc = toTraffic(state);
    preview.textContent = JSON.stringify(doc, null, 2);
    const found = checkTraffic(doc, inputs);
    replace(problems, found.length ? h('div', { class: 'alert warn', role: 'alert' }, h('strong', null, t('Fix before applying:')), h('ul', null, found.map((p) => h('li', null, p)))) : null);
  }

  function draw() {
    const total = state.split.reduce((a, r) => a + (Number(r.weight) || 0), 0);
    replace(root,
      h('div', { class: 'form inline' },
        field(t('Assignment key'), select([['', t('random per request')], ...Object.keys(inputs).map((k) => [k, k])], state.key,
          { on: { change: (e) => { state.key = e.target.value; update(); } } }), t('Requests with the same key keep their arm.')),
        h('label', { class: 'row small' }, h('input', { type: 'checkbox', checked: state.override, on: { change: (e) => { state.override = e.target.checked; update(); } } }),
          t('Allow the X-Shipyard-Arm header (testing)'))),
      h('h3', null, t('Arms')),
      h('p', { class: 'muted small' }, t('control is the scene as written; another arm pins other model versions.')),
      state.arms.length ? h('table', { 'aria-label': t('Arms') }, h('tbody', null, state.arms.map((arm, i) => h('tr', null,
        h('td', null, input(arm.name, (v) => { arm.name = v.trim(); }, { 'aria-label': t('Arm name'), placeholder: 'challenger' }, true)),
        h('td', null, arm.pins.map((pin, j) => h('div', { class: 'row' },
          select([['', t('model…')], ...modelNames.map((n) => [n, n])], pin.model, { 'aria-label': t('Model'), on: { change: (e) => { pin.model = e.target.value; update(); } } }),
          input(pin.ref, (v) => { pin.ref = v.trim(); }, { 'aria-label': t('Version or alias'), placeholder: '5', size: 8 }),
          rowButton('×', () => arm.pins.splice(j, 1)))), rowButton(t('Pin a model'), () => arm.pins.push({ model: '', ref: '' })),
        arm.extra && arm.extra.flow ? h('span', { class: 'muted small' }, t('(has its own flow)')) : null),
        h('td', null, rowButton(t('Remove'), () => state.arms.splice(i, 1))))))) : null,
      rowButton(t('Add an arm'), () => state.arms.push({ name: `arm${state.arms.length + 1}`, pins: [{ model: modelNames[0] || '', ref: '' }], extra: null })),
      h('h3', null, t('A/B split')),
      state.split.length ? h('table', { 'aria-label': t('A/B split') }, h('tbody', null, state.split.map((row, i) => h('tr', null,
        h('td', null, select(armChoices().map((a) => [a, a || t('arm…')]), row.arm, { 'aria-label': t('Arm'), on: { change: (e) => { row.arm = e.target.value; update(); } } })),
        h('td', null, input(row.weight, (v) => { row.weight = v === '' ? NaN : Number(v); }, { type: 'number', min: 0, step: 'any', 'aria-label': t('Weight of {arm}', { arm: row.arm || '?' }) }, true)),
        h('td', { class: 'num muted' }, total > 0 ? `${((Number(row.weight) || 0) / total * 100).toFixed(1)} %` : '–'),
        h('td', null, rowButton(t('Remove'), () => state.split.splice(i, 1))))))) : h('p', { class: 'muted small' }, t('No split: every request goes to control (unless whitelisted or in the canary).')),
      rowButton(t('Add a weight'), () => state.split.push({ arm: state.split.length ? '' : CONTROL, weight: state.split.length ? 0 : 100 })),
      h('h3', null, t('Whitelist (gray release)')),
      state.whitelist.map((row, i) => h('div', { class: 'row' },
        input(row.field, (v) => { row.field = v.trim(); }, { 'aria-label': t('Field'), placeholder: Object.keys(inputs)[0] || 'field' }),
        input(row.values, (v) => { row.values = v; }, { 'aria-label': t('Values (comma-separated)'), placeholder: 'u1, u2' }),
        select(armChoices().map((a) => [a, a || t('arm…')]), row.arm, { 'aria-label': t('Arm'), on: { change: (e) => { row.arm = e.target.value; update(); } } }),
        rowButton(t('Remove'), () => state.whitelist.splice(i, 1)))),
      rowButton(t('Add a whitelist rule'), () => state.whitelist.push({ field: '', values: '', arm: '' })),
      h('h3', null, t('Canary and shadow')),
      h('div', { class: 'form inline' },
        field(t('Canary arm'), select(armChoices().map((a) => [a, a || t('none')]), state.canaryArm, { on: { change: (e) => { state.canaryArm = e.target.value; update(); } } })),
        field(t('Canary percent'), input(state.canaryPercent, (v) => { state.canaryPercent = v === '' ? NaN : Number(v); }, { type: 'number', min: 0, max: 100, step: 'any' })),
        field(t('Shadow arm'), select(armChoices().map((a) => [a, a || t('none')]), state.shadowArm, { on: { change: (e) => { state.shadowArm = e.target.value; update(); } } })),
        field(t('Shadow sample'), input(state.shadowSample, (v) => { state.shadowSample = v === '' ? NaN : Number(v); }, { type: 'number', min: 0, max: 1, step: 'any' }))),
      problems,
      h('details', null, h('summary', null, t('Traffic document')), preview));
    update();
  }
  draw();
  return {
    element: root,
    value() {
      const doc = toTraffic(state);
      const found = checkTraffic(doc, inputs);
      if (found.length) throw new Error(found.join('; '));
      return doc;
    },
  };
}

export function trafficSummary(traffic) {
  if (!traffic) return notice(t('No traffic policy: every request is served by control.'));
  const parts = [];
  const split = traffic.split || {};
  const total = Object.values(split).reduce((a, b) => a + b, 0);
  if (total) parts.push(Object.entries(split).map(([arm, w]) => `${arm} ${(w / total * 100).toFixed(1)} %`).join(' · '));
  if (traffic.canary) parts.push(t('canary {arm} {percent} %', traffic.canary));
  if (traffic.shadow) parts.push(t('shadow {arm}', traffic.shadow));
  if ((traffic.whitelist || []).length) parts.push(t('{count} whitelist rules', { count: traffic.whitelist.length }));
  return h('p', null, parts.join(' — ') || t('control only'));
}

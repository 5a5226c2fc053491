// fleetprof viewer: wires the pure profile-logic layer to the DOM views.
import type { FlameGraphResponse, DiffFlameGraphResponse } from '../../src/profile/api-types.js';
import * as api from './api.js';
import { buildCallTree, funcBinary, funcKind, funcName, nodeAtPath, pathOf, ancestorsOf, type CallTree } from './profile-logic/tree.js';
import { compileSearch, searchTree } from './profile-logic/search.js';
import { computeTop, type TopRow } from './profile-logic/top.js';
import { sandwichFor, type Sandwich } from './profile-logic/sandwich.js';
import { diffScale, diffShares, type DiffShares } from './profile-logic/diff.js';
import { decodeState, encodeState, type ViewName, type ViewState } from './profile-logic/url-state.js';
import { PRESETS, resolveTime, timelineStep, formatRange } from './profile-logic/time.js';
import { KIND_FAMILY, diffColor, legendColor, type Scheme } from './profile-logic/colors.js';
import { formatDelta, formatPercent, formatValue } from './profile-logic/format.js';
import { FlameGraphCanvas, type DrawnFrame } from './view/flame-canvas.js';
import { TopTable } from './view/top-table.js';
import { Timeline } from './view/timeline.js';
import { SelectorInput } from './view/selector-input.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

const state: ViewState = decodeState(location.search);
const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
let scheme: Scheme = darkQuery.matches ? 'dark' : 'light';

// Data of the current selection.
let tree: CallTree | null = null;
let topRows: TopRow[] = [];
let diffTree: CallTree | null = null;
let diffData: DiffShares | null = null;
let sandwich: Sandwich | null = null;
let resolved: api.ResolvedSelection | null = null;
let loadSeq = 0;
let loadCount = 0;
let abort: AbortController | null = null;

const tooltip = $<HTMLDivElement>('tooltip');
const status = $<HTMLDivElement>('status');
const searchInput = $<HTMLInputElement>('search');
const searchShare = $<HTMLOutputElement>('search-share');
const breadcrumb = $<HTMLElement>('breadcrumb');

// ---------- URL ----------
function syncUrl(push = false): void {
  const qs = encodeState(state);
  const url = `${location.pathname}${qs ? '?' + qs : ''}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}

// ---------- tooltip ----------
function showTooltip(t: CallTree, node: number, ev: MouseEvent, diff: DiffShares | null): void {
  const name = funcName(t, node);
  const bin = funcBinary(t, node);
  const kind = funcKind(t, node);
  const st = t.sampleType;
  const g = t.grandTotal;
  const rows: [string, string, string][] = [];
  if (diff) {
    rows.push(['Baseline', formatPercent(diff.left[node]!, 1), 'tt-baseline']);
    rows.push(['Selection', formatPercent(diff.right[node]!, 1), 'tt-current']);
    rows.push(['Change', formatDelta(diff.delta[node]!), 'tt-delta']);
    rows.push(['Self (sel.)', `${formatValue(t.self[node]!, st)} (${formatPercent(t.self[node]!, g)})`, 'tt-self']);
  } else {
    rows.push(['Total', `${formatValue(t.total[node]!, st)} (${formatPercent(t.total[node]!, g)})`, 'tt-total']);
    rows.push(['Self', `${formatValue(t.self[node]!, st)} (${formatPercent(t.self[node]!, g)})`, 'tt-self']);
  }
  const nameEl = document.createElement('div');
  nameEl.className = 'tt-name';
  nameEl.textContent = name;
  const binEl = document.createElement('div');
  binEl.className = 'tt-bin';
  binEl.textContent = `${bin || '(unknown binary)'} · ${KIND_FAMILY[kind].label}`;
  const table = document.createElement('table');
  for (const [k, v, cls] of rows) {
    const tr = table.insertRow();
    tr.className = cls;
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  tooltip.replaceChildren(nameEl, binEl, table);
  tooltip.dataset.node = String(node);
  tooltip.dataset.name = name;
  tooltip.dataset.total = String(t.total[node]);
  tooltip.dataset.self = String(t.self[node]);
  tooltip.hidden = false;
  const w = tooltip.offsetWidth;
  const h = tooltip.offsetHeight;
  let x = ev.clientX + 14;
  let y = ev.clientY + 14;
  if (x + w > window.innerWidth - 4) x = Math.max(4, ev.clientX - w - 14);
  if (y + h > window.innerHeight - 4) y = Math.max(4, ev.clientY - h - 14);
  tooltip.style.left = `${x}px`;
  tooltip.style.top = `${y}px`;
}
const hideTooltip = (): void => {
  tooltip.hidden = true;
};

// ---------- graphs ----------
const mainGraph = new FlameGraphCanvas($('flame-container'), {
  label: 'main',
  onFocus: (node) => focusNode(node),
  onHover: (node, ev) => tree && showTooltip(tree, node, ev, null),
  onLeave: hideTooltip,
  onContext: (node) => tree && openSandwich(funcName(tree, node)),
});
const callersGraph = new FlameGraphCanvas($('sw-callers'), {
  label: 'callers',
  onFocus: (node) => sandwich && openSandwich(funcName(sandwich.callers, node)),
  onHover: (node, ev) => sandwich && showTooltip(sandwich.callers, node, ev, null),
  onLeave: hideTooltip,
});
const calleesGraph = new FlameGraphCanvas($('sw-callees'), {
  label: 'callees',
  onFocus: (node) => sandwich && openSandwich(funcName(sandwich.callees, node)),
  onHover: (node, ev) => sandwich && showTooltip(sandwich.callees, node, ev, null),
  onLeave: hideTooltip,
});
const diffGraph = new FlameGraphCanvas($('diff-container'), {
  label: 'diff',
  onFocus: (node) => focusNode(node),
  onHover: (node, ev) => diffTree && showTooltip(diffTree, node, ev, diffData),
  onLeave: hideTooltip,
});
callersGraph.setOrientation('flame');
calleesGraph.setOrientation('icicle');

const topTable = new TopTable($('view-top'), (row) => openSandwich(row.name));
const timeline = new Timeline($('timeline-wrap'), (from, to) => {
  state.from = String(from);
  state.to = String(to);
  syncControls();
  syncUrl(true);
  void load();
});

function activeTree(): CallTree | null {
  return state.view === 'diff' ? diffTree : tree;
}
function activeGraph(): FlameGraphCanvas {
  return state.view === 'diff' ? diffGraph : mainGraph;
}

function focusNode(node: number): void {
  const t = activeTree();
  if (!t) return;
  state.focus = node <= 0 ? [] : pathOf(t, node);
  applyFocus();
  syncUrl(true);
}

function resetFocus(): void {
  state.focus = [];
  applyFocus();
  syncUrl(true);
}

function applyFocus(): void {
  const t = activeTree();
  const g = activeGraph();
  if (!t) return renderBreadcrumb(null, 0);
  const { node } = nodeAtPath(t, state.focus);
  g.setFocus(node);
  g.draw();
  renderBreadcrumb(t, node);
}

function renderBreadcrumb(t: CallTree | null, node: number): void {
  breadcrumb.replaceChildren();
  if (!t || (state.view !== 'flame' && state.view !== 'diff')) return;
  const chain = ancestorsOf(t, node);
  chain.forEach((n, i) => {
    if (i > 0) {
      const sep = document.createElement('span');
      sep.className = 'sep';
      sep.textContent = '›';
      breadcrumb.append(sep);
    }
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = n === 0 ? 'all' : funcName(t, n);
    b.dataset.node = String(n);
    b.addEventListener('click', () => focusNode(n));
    breadcrumb.append(b);
  });
  if (node > 0) {
    const reset = document.createElement('button');
    reset.type = 'button';
    reset.id = 'reset-focus';
    reset.textContent = '✕ reset (Esc)';
    reset.addEventListener('click', resetFocus);
    breadcrumb.append(reset);
  }
}

// ---------- search ----------
function applySearch(): void {
  const { matcher, error } = compileSearch(state.search);
  searchInput.classList.toggle('error', error !== null);
  searchInput.title = error ?? '';
  const targets: [FlameGraphCanvas, CallTree | null][] = [
    [mainGraph, tree],
    [diffGraph, diffTree],
  ];
  searchShare.textContent = '';
  searchShare.dataset.share = '';
  for (const [g, t] of targets) {
    if (!t || !matcher) {
      g.setSearch(null);
      continue;
    }
    const r = searchTree(t, matcher);
    g.setSearch(r.nodeMatch);
    if (t === activeTree()) {
      searchShare.textContent = `${formatPercent(r.covered, t.grandTotal)} of samples · ${r.matchedNodes} frames`;
      searchShare.dataset.share = String(r.share);
    }
  }
  if (error) searchShare.textContent = 'bad regex';
  activeGraph().draw();
}

let searchTimer: ReturnType<typeof setTimeout> | undefined;
searchInput.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.search = searchInput.value;
    syncUrl();
    applySearch();
  }, 80);
});

// ---------- sandwich ----------
function openSandwich(name: string): void {
  state.fn = name;
  setView('sandwich');
}

function renderSandwich(): void {
  const head = $('sw-head');
  if (!tree || !state.fn) {
    head.textContent = 'Pick a function in the Top table (or right-click a frame) to see its callers and callees.';
    sandwich = null;
    return;
  }
  const names = tree.functions.name;
  sandwich = sandwichFor(tree, (f) => names[f] === state.fn);
  const st = tree.sampleType;
  head.textContent = `${state.fn} — total ${formatValue(sandwich.total, st)} (${formatPercent(sandwich.total, tree.grandTotal)}), self ${formatValue(sandwich.self, st)} (${formatPercent(sandwich.self, tree.grandTotal)})`;
  head.dataset.fn = state.fn;
  callersGraph.setTree(sandwich.callers, null, scheme);
  calleesGraph.setTree(sandwich.callees, null, scheme);
  callersGraph.draw();
  calleesGraph.draw();
  const sc = $('sw-callers');
  sc.scrollTop = sc.scrollHeight;
}

// ---------- views ----------
function setView(v: ViewName): void {
  const prevDiff = state.view === 'diff';
  state.view = v;
  if (v === 'diff' && !state.compare) {
    state.compare = defaultBaseline();
  }
  if (prevDiff !== (v === 'diff')) state.focus = [];
  syncUrl(true);
  renderView();
  if (v === 'diff' && !diffTree) void load();
}

function defaultBaseline(): { query: string; from: string; to: string } {
  const rel = /^now-(\d+)([smhd])$/.exec(state.from);
  if (rel && state.to === 'now') {
    const n = Number(rel[1]);
    return { query: state.query, from: `now-${2 * n}${rel[2]}`, to: state.from };
  }
  const now = Date.now();
  const f = resolveTime(state.from, now);
  const t = resolveTime(state.to, now);
  return { query: state.query, from: String(f - (t - f)), to: String(f) };
}

function renderView(): void {
  document.body.dataset.view = state.view;
  for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button[data-view]')) {
    b.setAttribute('aria-pressed', String(b.dataset.view === state.view));
  }
  $('orientation').firstChild!.textContent = state.orientation === 'icicle' ? 'Icicle ' : 'Flame ';
  $<HTMLElement>('compare-bar').hidden = state.view !== 'diff';
  hideTooltip();
  mainGraph.setOrientation(state.orientation);
  diffGraph.setOrientation(state.orientation);
  if (state.view === 'flame' || state.view === 'diff') {
    applyFocus();
    applySearch();
    const sc = activeGraph().container;
    if (state.orientation === 'flame') sc.scrollTop = sc.scrollHeight;
  } else {
    renderBreadcrumb(null, 0);
  }
  if (state.view === 'top') topTable.render();
  if (state.view === 'sandwich') renderSandwich();
  renderLegend();
}

function renderLegend(): void {
  const legend = $('legend');
  legend.replaceChildren();
  if (state.view === 'diff') {
    const scale = diffData ? diffScale(diffData) : 0.01;
    const el = $('diff-legend');
    const grad = document.createElement('span');
    grad.className = 'grad';
    const stops = [-1, -0.5, 0, 0.5, 1].map((t) => diffColor(t * scale, scale, scheme));
    grad.style.background = `linear-gradient(to right, ${stops.join(', ')})`;
    const l = document.createElement('span');
    l.textContent = `${formatDelta(-scale)} (less)`;
    const r = document.createElement('span');
    r.textContent = `${formatDelta(scale)} (more)`;
    el.replaceChildren(l, grad, r);
    legend.textContent = 'Width: mean share of both selections. Colour: change in share of total CPU, red = grew, blue = shrank.';
    return;
  }
  for (const kind of ['native', 'jit', 'kernel', 'unknown'] as const) {
    const item = document.createElement('span');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = legendColor(kind, scheme);
    item.append(sw, document.createTextNode(KIND_FAMILY[kind].label));
    legend.append(item);
  }
  const hint = document.createElement('span');
  hint.textContent = 'Hue within a family: binary/package. Click: focus · right-click: sandwich · ctrl+wheel: zoom · Esc: reset · / search';
  legend.append(hint);
}

// ---------- controls ----------
const queryInput = $<HTMLInputElement>('query');
const fromInput = $<HTMLInputElement>('from');
const toInput = $<HTMLInputElement>('to');
const cqueryInput = $<HTMLInputElement>('cquery');
const cfromInput = $<HTMLInputElement>('cfrom');
const ctoInput = $<HTMLInputElement>('cto');
const labels = { names: api.fetchLabelNames, values: api.fetchLabelValues };

function syncControls(): void {
  queryInput.value = state.query;
  fromInput.value = state.from;
  toInput.value = state.to;
  searchInput.value = state.search;
  if (state.compare) {
    cqueryInput.value = state.compare.query;
    cfromInput.value = state.compare.from;
    ctoInput.value = state.compare.to;
  }
  for (const b of document.querySelectorAll<HTMLButtonElement>('#presets button')) {
    b.setAttribute('aria-pressed', String(state.to === 'now' && b.dataset.from === state.from));
  }
}

function applyControls(): void {
  state.query = queryInput.value.trim();
  state.from = fromInput.value.trim() || 'now-1h';
  state.to = toInput.value.trim() || 'now';
  state.focus = [];
  syncControls();
  syncUrl(true);
  void load();
}

new SelectorInput(queryInput, labels, applyControls);
new SelectorInput(cqueryInput, labels, () => $('capply').click());
for (const p of PRESETS) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = p.label;
  b.dataset.from = p.from;
  b.addEventListener('click', () => {
    fromInput.value = p.from;
    toInput.value = 'now';
    applyControls();
  });
  $('presets').append(b);
}
$('apply').addEventListener('click', applyControls);
for (const el of [fromInput, toInput]) el.addEventListener('keydown', (e) => e.key === 'Enter' && applyControls());
$('capply').addEventListener('click', () => {
  state.compare = { query: cqueryInput.value.trim(), from: cfromInput.value.trim() || state.from, to: ctoInput.value.trim() || state.to };
  state.focus = [];
  syncUrl(true);
  void load();
});
for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button[data-view]')) {
  b.addEventListener('click', () => setView(b.dataset.view as ViewName));
}
$('orientation').addEventListener('click', toggleOrientation);

function toggleOrientation(): void {
  state.orientation = state.orientation === 'icicle' ? 'flame' : 'icicle';
  syncUrl();
  renderView();
}

document.addEventListener('keydown', (e) => {
  const target = e.target as HTMLElement;
  const typing = target.tagName === 'INPUT' || target.tagName === 'TEXTAREA';
  if (e.key === 'Escape') {
    if (typing) (target as HTMLInputElement).blur();
    hideTooltip();
    if (state.focus.length > 0) resetFocus();
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  const views: Record<string, ViewName> = { f: 'flame', t: 'top', s: 'sandwich', c: 'diff', d: 'diff' };
  if (e.key === '/') {
    e.preventDefault();
    searchInput.focus();
    searchInput.select();
  } else if (views[e.key]) {
    setView(views[e.key]!);
  } else if (e.key === 'i') {
    toggleOrientation();
  }
});

window.addEventListener('popstate', () => {
  const prev = JSON.stringify([state.query, state.from, state.to, state.compare]);
  Object.assign(state, decodeState(location.search));
  syncControls();
  if (JSON.stringify([state.query, state.from, state.to, state.compare]) !== prev) void load();
  else renderView();
});

let resizeTimer: ReturnType<typeof setTimeout> | undefined;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(renderView, 100);
});
darkQuery.addEventListener('change', () => {
  scheme = darkQuery.matches ? 'dark' : 'light';
  for (const g of [mainGraph, callersGraph, calleesGraph, diffGraph]) g.setScheme(scheme);
  topTable.scheme = scheme;
  renderView();
});

// ---------- loading ----------
function setStatus(s: 'loading' | 'ready' | 'error', text: string): void {
  document.body.dataset.state = s;
  status.textContent = text;
}

function setData(resp: FlameGraphResponse): void {
  tree = buildCallTree(resp);
  mainGraph.setTree(tree, null, scheme);
  topRows = computeTop(tree);
  topTable.scheme = scheme;
  topTable.setData(topRows, tree.grandTotal, tree.sampleType);
}

function setDiffData(resp: DiffFlameGraphResponse): void {
  diffTree = buildCallTree(resp);
  diffData = diffShares(diffTree);
  diffGraph.setTree(diffTree, diffData, scheme);
}

async function load(): Promise<void> {
  const seq = ++loadSeq;
  abort?.abort();
  abort = new AbortController();
  const signal = abort.signal;
  const now = Date.now();
  let sel: api.ResolvedSelection;
  let base: api.ResolvedSelection | null = null;
  try {
    sel = { query: state.query, from: resolveTime(state.from, now), to: resolveTime(state.to, now) };
    if (state.compare) base = { query: state.compare.query, from: resolveTime(state.compare.from, now), to: resolveTime(state.compare.to, now) };
  } catch (e) {
    setStatus('error', (e as Error).message);
    return;
  }
  resolved = sel;
  const dl = $<HTMLAnchorElement>('download');
  dl.href = api.profileUrl(sel);
  setStatus('loading', 'Loading…');
  try {
    performance.mark('fp:fetch');
    const wantDiff = state.view === 'diff' && base !== null;
    const [flame, diff, tl] = await Promise.all([
      api.fetchFlameGraph(sel, signal),
      wantDiff ? api.fetchDiff(base!, sel, signal) : Promise.resolve(null),
      api.fetchTimeline(sel, timelineStep(sel.from, sel.to), signal).catch(() => null),
    ]);
    if (seq !== loadSeq) return;
    performance.mark('fp:data');
    setData(flame);
    if (diff) setDiffData(diff);
    else {
      diffTree = null;
      diffData = null;
    }
    timeline.setData(tl, sel.from, sel.to);
    renderView();
    performance.mark('fp:drawn');
    loadCount++;
    setStatus(
      'ready',
      `${formatRange(state.from, state.to)} · ${formatValue(flame.total, flame.sampleType)} ${flame.sampleType.type} · ${tree!.size.toLocaleString('en-US')} nodes` +
        (diffTree ? ` · compared with ${formatRange(state.compare!.from, state.compare!.to)}` : ''),
    );
  } catch (e) {
    if ((e as Error).name === 'AbortError') return;
    setStatus('error', `Could not load: ${(e as Error).message}`);
  }
}

// ---------- debug / test hook ----------
type GraphName = 'main' | 'callers' | 'callees' | 'diff';
const graphs: Record<GraphName, FlameGraphCanvas> = { main: mainGraph, callers: callersGraph, callees: calleesGraph, diff: diffGraph };
export interface FleetprofHook {
  state(): ViewState;
  loadCount(): number;
  resolved(): api.ResolvedSelection | null;
  frames(graph?: GraphName): (DrawnFrame & { clientX: number; clientY: number })[];
  draw(graph?: GraphName): number;
  zoom(factor: number, at?: number, graph?: GraphName): number;
  setRange(x0: number, x1: number, graph?: GraphName): number;
  range(graph?: GraphName): [number, number];
  topRows(): { name: string; self: number; total: number }[];
  lastDrawMs(graph?: GraphName): number;
}
const hook: FleetprofHook = {
  state: () => structuredClone(state),
  loadCount: () => loadCount,
  resolved: () => resolved,
  frames: (g = state.view === 'diff' ? 'diff' : 'main') => {
    const graph = graphs[g];
    const r = graph.canvas.getBoundingClientRect();
    return graph.frames().map((f) => ({ ...f, clientX: r.left + f.x + f.width / 2, clientY: r.top + f.y + f.height / 2 }));
  },
  draw: (g = 'main') => graphs[g].draw(),
  zoom: (factor, at = 0.5, g = 'main') => {
    graphs[g].zoomAround(at, factor);
    return graphs[g].lastDrawMs;
  },
  setRange: (x0, x1, g = 'main') => {
    graphs[g].setRange(x0, x1);
    return graphs[g].lastDrawMs;
  },
  range: (g = 'main') => graphs[g].getRange(),
  topRows: () => [...document.querySelectorAll<HTMLTableRowElement>('#top-table tbody tr')].map((tr) => ({ name: tr.dataset.name!, self: Number(tr.dataset.self), total: Number(tr.dataset.total) })),
  lastDrawMs: (g = 'main') => graphs[g].lastDrawMs,
};
(window as unknown as { __fleetprof: FleetprofHook }).__fleetprof = hook;

syncControls();
renderView();
void load();

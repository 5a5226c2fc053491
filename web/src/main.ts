// fleetprof viewer: wires the pure profile-logic layer to the DOM views.
import type { FlameGraphResponse, DiffFlameGraphResponse, LabelSummaryResponse } from '../../src/profile/api-types.js';
import * as api from './api.js';
import { buildCallTree, funcBinary, funcKind, funcName, nodeAtPath, pathOf, ancestorsOf, type CallTree } from './profile-logic/tree.js';
import { baseName, compileSearch, searchTree } from './profile-logic/search.js';
import { computeTop, type TopRow } from './profile-logic/top.js';
import { sandwichFor, type Sandwich } from './profile-logic/sandwich.js';
import { diffScale, diffShares, type DiffShares } from './profile-logic/diff.js';
import { decodeState, encodeState, type ViewName, type ViewState } from './profile-logic/url-state.js';
import { PRESETS, resolveTime, timelineStep, formatRange, formatDuration, precedingWindow, readableTime } from './profile-logic/time.js';
import { equalities, toggleEquality } from './profile-logic/selector.js';
import { KIND_FAMILY, diffColor, legendColor, type Scheme } from './profile-logic/colors.js';
import { formatDelta, formatPercent, formatValue } from './profile-logic/format.js';
import { FlameGraphCanvas, type DrawnFrame } from './view/flame-canvas.js';
import { TopTable } from './view/top-table.js';
import { Timeline, seriesColor } from './view/timeline.js';
import { LabelPanel } from './view/label-panel.js';
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
let resolvedBase: api.ResolvedSelection | null = null;
let labelSummary: LabelSummaryResponse | null = null;
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
  binEl.textContent = kind === 'label' ? `group: all samples with ${name}` : `${bin || '(no binary)'} · ${KIND_FAMILY[kind].label}`;
  const extra: HTMLElement[] = [];
  // Unnamed JIT code is named "[node JIT, start with --perf-basic-prof for names]": the hint gets its own line.
  const jit = /^\[([^,\]]+ JIT[^,\]]*), ([^\]]+)\]$/.exec(name);
  if (jit) {
    const h = document.createElement('div');
    h.className = 'tt-hint';
    h.textContent = `No function names for ${jit[1]} code: ${jit[2]}.`;
    extra.push(h);
  } else if (/^0x[0-9a-f]+$/.test(name) && bin) {
    const h = document.createElement('div');
    h.className = 'tt-hint';
    h.textContent = `No symbol for this address in ${baseName(bin)} (stripped binary?). "By binary" in Top rolls such frames up.`;
    extra.push(h);
  }
  const table = document.createElement('table');
  for (const [k, v, cls] of rows) {
    const tr = table.insertRow();
    tr.className = cls;
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  tooltip.replaceChildren(nameEl, binEl, ...extra, table);
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

const topTable = new TopTable(
  $('view-top'),
  (row) => {
    if (row.func >= 0) openSandwich(row.name);
  },
  (by) => {
    state.topBy = by;
    syncUrl(true);
    if (tree) {
      topRows = computeTop(tree, state.topBy);
      topTable.setData(topRows, tree.grandTotal, tree.sampleType, tree.groupBy, state.topBy);
    }
    renderView();
  },
);
const timeline = new Timeline($('timeline-wrap'), {
  onSelect: (from, to) => {
    state.from = String(from);
    state.to = String(to);
    state.focus = [];
    syncControls();
    syncUrl(true);
    void load();
  },
  // Shift+drag: this range becomes the Compare baseline.
  onBaseline: (from, to) => {
    state.compare = { query: state.compare?.query ?? state.query, from: String(from), to: String(to) };
    state.focus = [];
    if (state.view !== 'diff') state.view = 'diff';
    syncControls();
    syncUrl(true);
    void load();
  },
});
const labelPanel = new LabelPanel($('labels-panel'), {
  onFilter: (name, value) => {
    state.query = toggleEquality(state.query, name, value);
    state.focus = [];
    syncControls();
    syncUrl(true);
    void load();
  },
  onGroup: (name) => setGroupBy(state.groupBy.includes(name) ? state.groupBy.filter((g) => g !== name) : [...state.groupBy, name].slice(-3)),
});

function setGroupBy(groupBy: string[]): void {
  state.groupBy = groupBy;
  state.focus = [];
  syncControls();
  syncUrl(true);
  void load();
}

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
  // Label values match too: offer the largest as a filter.
  labelPanel.setSearch(matcher);
  const hits = matcher ? labelPanel.searchHits().slice(0, 3) : [];
  for (const h of hits) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'label-hit';
    b.dataset.label = h.name;
    b.dataset.value = h.value;
    b.title = `Filter by ${h.name}="${h.value}"`;
    b.textContent = `${h.name}=${h.value} ${labelSummary ? formatPercent(h.total, labelSummary.total) : ''}`;
    b.addEventListener('click', () => {
      state.query = toggleEquality(state.query, h.name, h.value);
      syncControls();
      syncUrl(true);
      void load();
    });
    searchShare.append(' ', b);
  }
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
    state.compare = { query: state.query, ...precedingWindow(state.from, state.to, Date.now()) };
    syncControls();
  }
  if (prevDiff !== (v === 'diff')) state.focus = [];
  syncUrl(true);
  renderView();
  if (v === 'diff' && !diffTree) void load();
}

function renderView(): void {
  document.body.dataset.view = state.view;
  for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button[data-view]')) {
    b.setAttribute('aria-pressed', String(b.dataset.view === state.view));
  }
  $('orientation').firstChild!.textContent = state.orientation === 'icicle' ? 'Icicle ' : 'Flame ';
  $<HTMLElement>('compare-bar').hidden = state.view !== 'diff';
  hideTooltip();
  renderEmpty();
  renderCompareDesc();
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
  for (const kind of tree && tree.groupBy.length > 0 ? (['label', 'native', 'jit', 'kernel', 'unknown'] as const) : (['native', 'jit', 'kernel', 'unknown'] as const)) {
    const item = document.createElement('span');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = legendColor(kind, scheme);
    item.append(sw, document.createTextNode(KIND_FAMILY[kind].label));
    legend.append(item);
  }
  const hint = document.createElement('span');
  hint.textContent = 'Hue within a family: binary/package. Click: focus · right-click: sandwich · ctrl+wheel: zoom · Esc: reset · / search · g group by';
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

const groupSelect = $<HTMLSelectElement>('groupby');
groupSelect.addEventListener('change', () => setGroupBy(groupSelect.value ? groupSelect.value.split(',') : []));

/** Fills the group-by menu with the label names of the selection. */
function syncGroupSelect(): void {
  const names = new Set<string>(labelSummary?.labels.map((l) => l.name) ?? []);
  for (const g of state.groupBy) names.add(g);
  const want = ['', ...[...names].sort()];
  const have = [...groupSelect.options].map((o) => o.value);
  if (JSON.stringify(want) !== JSON.stringify(have)) {
    groupSelect.replaceChildren(
      ...want.map((n) => {
        const o = document.createElement('option');
        o.value = n;
        o.textContent = n === '' ? 'none' : n;
        return o;
      }),
    );
  }
  if (state.groupBy.length > 1) {
    const o = document.createElement('option');
    o.value = state.groupBy.join(',');
    o.textContent = state.groupBy.join(' › ');
    groupSelect.append(o);
  }
  groupSelect.value = state.groupBy.join(',');
}

// Range boxes show local date-times; what the URL keeps for them (Unix ms
// or now-…) is unchanged unless the box was edited.
const boxText = (s: string): string => readableTime(s);
function fromBox(text: string, prev: string, fallback: string): string {
  const t = text.trim();
  if (t === '') return fallback;
  if (t === boxText(prev)) return prev;
  if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$/.test(t)) {
    try {
      return String(resolveTime(t, Date.now()));
    } catch {
      return t;
    }
  }
  return t;
}

function syncControls(): void {
  queryInput.value = state.query;
  fromInput.value = boxText(state.from);
  toInput.value = boxText(state.to);
  searchInput.value = state.search;
  if (state.compare) {
    cqueryInput.value = state.compare.query;
    cfromInput.value = boxText(state.compare.from);
    ctoInput.value = boxText(state.compare.to);
  }
  syncGroupSelect();
  for (const b of document.querySelectorAll<HTMLButtonElement>('#presets button')) {
    b.setAttribute('aria-pressed', String(state.to === 'now' && b.dataset.from === state.from));
  }
}

function applyControls(): void {
  state.query = queryInput.value.trim();
  state.from = fromBox(fromInput.value, state.from, 'now-1h');
  state.to = fromBox(toInput.value, state.to, 'now');
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
  const prev = state.compare ?? { query: '', from: state.from, to: state.to };
  state.compare = { query: cqueryInput.value.trim(), from: fromBox(cfromInput.value, prev.from, state.from), to: fromBox(ctoInput.value, prev.to, state.to) };
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
  } else if (e.key === 'g') {
    e.preventDefault();
    groupSelect.focus();
  }
});

window.addEventListener('popstate', () => {
  const prev = JSON.stringify([state.query, state.from, state.to, state.compare, state.groupBy, state.topBy]);
  Object.assign(state, decodeState(location.search));
  syncControls();
  if (JSON.stringify([state.query, state.from, state.to, state.compare, state.groupBy, state.topBy]) !== prev) void load();
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
  timeline.scheme = scheme;
  renderView();
});

// ---------- loading ----------
const queryError = $<HTMLSpanElement>('query-error');
const emptyEl = $<HTMLDivElement>('empty');
let lastError: { message: string; kind: 'selector' | 'time' | 'server' } | null = null;

function setStatus(s: 'loading' | 'ready' | 'error', text: string): void {
  document.body.dataset.state = s;
  status.textContent = text;
}

/** A selector the server rejected: the box is marked, the error sits beside it. */
function markSelectorError(message: string | null): void {
  queryInput.classList.toggle('invalid', message !== null);
  queryInput.setAttribute('aria-invalid', String(message !== null));
  queryError.hidden = message === null;
  queryError.textContent = message ?? '';
}

/** Nothing stale stays on screen after a failed load. */
function clearData(): void {
  tree = null;
  diffTree = null;
  diffData = null;
  topRows = [];
  labelSummary = null;
  mainGraph.clear();
  diffGraph.clear();
  topTable.setData([], 0, { type: '', unit: '' }, [], state.topBy);
  timeline.setMarks(null, null);
  timeline.setData(null, resolved?.from ?? 0, resolved?.to ?? 1, (l) => seriesColor(l, scheme));
  labelPanel.setData(null, new Map(), state.groupBy);
}

function describeSelection(sel: { query: string; from: string; to: string }): string {
  return `${sel.query || 'everything'} over ${formatRange(sel.from, sel.to)}`;
}

function renderEmpty(): void {
  const t = state.view === 'diff' ? diffTree : tree;
  let msg: string | null = null;
  if (lastError) msg = lastError.kind === 'selector' ? `The selector is not valid: ${lastError.message}` : lastError.kind === 'time' ? `The time range is not valid: ${lastError.message}` : `Could not load: ${lastError.message}`;
  else if (t && !(t.grandTotal > 0) && (state.view !== 'diff' || !(diffTree?.baselineGrandTotal && diffTree.baselineGrandTotal > 0))) {
    msg = `No data for ${describeSelection(state)}.`;
  }
  emptyEl.hidden = msg === null;
  document.body.dataset.empty = String(msg !== null);
  if (msg === null) return;
  const p = document.createElement('p');
  p.className = 'empty-title';
  p.textContent = msg;
  const hint = document.createElement('p');
  hint.className = 'muted';
  const hints = {
    selector: 'Selectors look like {comm="node", pod=~"web-.*"}: label names, =, !=, =~ or !~, and a quoted value.',
    time: 'Times are now-1h, a local date-time like 2026-11-30 09:15, or Unix milliseconds.',
    server: 'Check the server and try again.',
  };
  hint.textContent = lastError
    ? hints[lastError.kind]
    : 'Try a wider time range (24 h, 7 d), or remove filters from the selector. The label panel on the left lists what the selection holds.';
  emptyEl.replaceChildren(p, hint);
}

function renderCompareDesc(): void {
  const el = $('compare-desc');
  if (state.view !== 'diff' || !state.compare) {
    el.textContent = '';
    return;
  }
  const c = state.compare;
  const now = Date.now();
  let len = '';
  try {
    const sameLen = resolveTime(c.to, now) - resolveTime(c.from, now) === resolveTime(state.to, now) - resolveTime(state.from, now);
    const preceding = resolveTime(c.to, now) === resolveTime(state.from, now);
    if (sameLen && preceding) len = `, the ${formatDuration(resolveTime(state.to, now) - resolveTime(state.from, now))} just before`;
  } catch {
    /* a bad time shows in the status line */
  }
  el.replaceChildren();
  const what = document.createElement('span');
  what.textContent = `Comparing ${describeSelection(state)} (selection) against ${describeSelection(c)} (baseline${len}). Shift+drag on the timeline picks another baseline.`;
  el.append(what);
  const base = diffTree?.baselineGrandTotal ?? null;
  if (diffTree && !(base !== null && base > 0)) {
    const warn = document.createElement('strong');
    warn.className = 'warn';
    warn.textContent = ' The baseline has no samples, so every frame shows as new. Pick a baseline with data.';
    el.append(warn);
  } else if (diffTree && !(diffTree.grandTotal > 0)) {
    const warn = document.createElement('strong');
    warn.className = 'warn';
    warn.textContent = ' The selection has no samples, so every frame shows as gone.';
    el.append(warn);
  }
}

function setData(resp: FlameGraphResponse): void {
  tree = buildCallTree(resp);
  mainGraph.setTree(tree, null, scheme);
  topRows = computeTop(tree, state.topBy);
  topTable.scheme = scheme;
  topTable.setData(topRows, tree.grandTotal, tree.sampleType, tree.groupBy, state.topBy);
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
    // A bad time: nothing stale stays on screen either.
    lastError = { message: (e as Error).message, kind: 'time' };
    clearData();
    renderView();
    loadCount++;
    setStatus('error', (e as Error).message);
    return;
  }
  resolved = sel;
  resolvedBase = base;
  const dl = $<HTMLAnchorElement>('download');
  dl.href = api.profileUrl(sel);
  setStatus('loading', 'Loading…');
  try {
    performance.mark('fp:fetch');
    const wantDiff = state.view === 'diff' && base !== null;
    // In Compare, the timeline spans the baseline and the selection, so both show and Shift+drag can move the baseline.
    const tlRange = wantDiff ? { query: sel.query, from: Math.min(sel.from, base!.from), to: Math.max(sel.to, base!.to) } : sel;
    const [flame, diff, tl, summary] = await Promise.all([
      api.fetchFlameGraph(sel, state.groupBy, signal),
      wantDiff ? api.fetchDiff(base!, sel, state.groupBy, signal) : Promise.resolve(null),
      api.fetchTimeline(tlRange, timelineStep(tlRange.from, tlRange.to), state.groupBy, signal).catch(() => null),
      api.fetchLabelSummary(sel, signal).catch(() => null),
    ]);
    if (seq !== loadSeq) return;
    performance.mark('fp:data');
    lastError = null;
    markSelectorError(null);
    labelSummary = summary;
    setData(flame);
    if (diff) setDiffData(diff);
    else {
      diffTree = null;
      diffData = null;
    }
    timeline.setMarks([sel.from, sel.to], wantDiff ? [base!.from, base!.to] : null);
    const accent = getComputedStyle(document.body).getPropertyValue('--accent').trim() || '#3b82f6';
    timeline.setData(tl, tlRange.from, tlRange.to, (l) => (l === 'all' ? accent : seriesColor(l, scheme)));
    labelPanel.setData(summary, equalities(state.query), state.groupBy);
    syncGroupSelect();
    renderView();
    performance.mark('fp:drawn');
    loadCount++;
    const total = Number.isFinite(flame.total) ? flame.total : 0;
    setStatus(
      'ready',
      `${formatRange(state.from, state.to)} · ${total > 0 ? `${formatValue(total, flame.sampleType)} ${flame.sampleType.type}` : 'no samples'} · ${tree!.size.toLocaleString('en-US')} nodes` +
        (tree!.groupBy.length > 0 ? ` · grouped by ${tree!.groupBy.join(', ')}` : '') +
        (diffTree ? ` · compared with ${formatRange(state.compare!.from, state.compare!.to)}` : ''),
    );
  } catch (e) {
    if ((e as Error).name === 'AbortError' || seq !== loadSeq) return;
    const err = e as Error;
    const selectorBad = err instanceof api.ApiError && err.code === 'FP_ERR_BAD_SELECTOR';
    lastError = { message: err.message, kind: selectorBad ? 'selector' : 'server' };
    markSelectorError(selectorBad ? err.message : null);
    clearData();
    renderView();
    loadCount++;
    setStatus('error', selectorBad ? `Invalid selector: ${err.message}` : `Could not load: ${err.message}`);
  }
}

// ---------- debug / test hook ----------
type GraphName = 'main' | 'callers' | 'callees' | 'diff';
const graphs: Record<GraphName, FlameGraphCanvas> = { main: mainGraph, callers: callersGraph, callees: calleesGraph, diff: diffGraph };
export interface TopRowInfo {
  name: string;
  binary: string;
  self: number;
  total: number;
  group: string[];
}
export interface FleetprofHook {
  state(): ViewState;
  loadCount(): number;
  resolved(): api.ResolvedSelection | null;
  frames(graph?: GraphName): (DrawnFrame & { clientX: number; clientY: number })[];
  draw(graph?: GraphName): number;
  zoom(factor: number, at?: number, graph?: GraphName): number;
  setRange(x0: number, x1: number, graph?: GraphName): number;
  range(graph?: GraphName): [number, number];
  topRows(): TopRowInfo[];
  /** Every row of the current top table, not only those in the DOM. */
  allTopRows(): TopRowInfo[];
  /** Client x (relative to the timeline canvas) of a time. */
  timelineX(ms: number): number;
  resolvedBaseline(): api.ResolvedSelection | null;
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
  topRows: () =>
    [...document.querySelectorAll<HTMLTableRowElement>('#top-table tbody tr[data-name]')].map((tr) => ({
      name: tr.dataset.name!,
      binary: tr.dataset.binary ?? '',
      self: Number(tr.dataset.self),
      total: Number(tr.dataset.total),
      group: tr.dataset.group ? (JSON.parse(tr.dataset.group) as string[]) : [],
    })),
  allTopRows: () => topRows.map((r) => ({ name: r.name, binary: r.binary, self: r.self, total: r.total, group: r.group })),
  timelineX: (ms) => timeline.xAt(ms),
  resolvedBaseline: () => resolvedBase,
  lastDrawMs: (g = 'main') => graphs[g].lastDrawMs,
};
(window as unknown as { __fleetprof: FleetprofHook }).__fleetprof = hook;

syncControls();
renderView();
void load();

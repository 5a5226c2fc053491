// The whole view state in the URL query string, so a link reproduces a view.
// Focus is stored as a path of function names (node indexes change between
// fetches, names don't).

export type ViewName = 'flame' | 'top' | 'sandwich' | 'diff';
export type Orientation = 'icicle' | 'flame';
/** Top table rows: one per function, or functions rolled up by binary. */
export type TopBy = 'function' | 'binary';

export interface Selection {
  query: string;
  from: string;
  to: string;
}

export interface ViewState extends Selection {
  view: ViewName;
  orientation: Orientation;
  focus: string[];
  search: string;
  /** Sandwich / highlighted function name. */
  fn: string;
  /** Baseline selection for compare (diff view). */
  compare: Selection | null;
  /** Label names the flame graph, top table and timeline are split by. */
  groupBy: string[];
  topBy: TopBy;
}

export const DEFAULT_STATE: ViewState = {
  query: '',
  from: 'now-1h',
  to: 'now',
  view: 'flame',
  orientation: 'icicle',
  focus: [],
  search: '',
  fn: '',
  compare: null,
  groupBy: [],
  topBy: 'function',
};

const VIEWS: readonly ViewName[] = ['flame', 'top', 'sandwich', 'diff'];
// Function names can contain almost anything, so the focus path is a JSON array.

export function encodeState(s: ViewState): string {
  const p = new URLSearchParams();
  if (s.query) p.set('query', s.query);
  if (s.from !== DEFAULT_STATE.from) p.set('from', s.from);
  if (s.to !== DEFAULT_STATE.to) p.set('to', s.to);
  if (s.view !== DEFAULT_STATE.view) p.set('view', s.view);
  if (s.orientation !== DEFAULT_STATE.orientation) p.set('orientation', s.orientation);
  if (s.focus.length > 0) p.set('focus', JSON.stringify(s.focus));
  if (s.search) p.set('search', s.search);
  if (s.fn) p.set('fn', s.fn);
  if (s.groupBy.length > 0) p.set('groupBy', s.groupBy.join(','));
  if (s.topBy !== DEFAULT_STATE.topBy) p.set('topBy', s.topBy);
  if (s.compare) {
    p.set('cquery', s.compare.query);
    p.set('cfrom', s.compare.from);
    p.set('cto', s.compare.to);
  }
  return p.toString();
}

export function decodeState(search: string): ViewState {
  const p = new URLSearchParams(search.startsWith('?') ? search.slice(1) : search);
  const s: ViewState = { ...DEFAULT_STATE, focus: [], compare: null, groupBy: [] };
  s.query = p.get('query') ?? '';
  s.from = p.get('from') ?? DEFAULT_STATE.from;
  s.to = p.get('to') ?? DEFAULT_STATE.to;
  const v = p.get('view');
  if (v && (VIEWS as readonly string[]).includes(v)) s.view = v as ViewName;
  if (p.get('orientation') === 'flame') s.orientation = 'flame';
  const f = p.get('focus');
  if (f) {
    try {
      const arr: unknown = JSON.parse(f);
      if (Array.isArray(arr) && arr.every((x) => typeof x === 'string')) s.focus = arr as string[];
    } catch {
      /* a hand-edited URL: ignore the focus */
    }
  }
  s.search = p.get('search') ?? '';
  s.fn = p.get('fn') ?? '';
  const g = p.get('groupBy');
  if (g) s.groupBy = g.split(',').filter((x) => /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(x)).slice(0, 3);
  if (p.get('topBy') === 'binary') s.topBy = 'binary';
  if (p.has('cquery') || p.has('cfrom') || p.has('cto')) {
    s.compare = { query: p.get('cquery') ?? '', from: p.get('cfrom') ?? s.from, to: p.get('cto') ?? s.to };
  }
  return s;
}

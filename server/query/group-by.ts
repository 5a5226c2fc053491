// Group-by: split a selection by the values of some series labels (comm,
// pod, node, ...), merge each group on its own with the ordinary series
// merge, and hang each group's tree under label levels below the root, the
// way Parca's group-by does. Built on the selection and merge of merge.ts, so
// it works for whatever labels the store keeps on its series.
import type { FlameTree, FrameKind, FunctionTable, GroupLabels, TopResponse } from '../../src/profile/api-types.js';
import type { SampleTypeDesc, Series, ProfileStore } from '../store/store.js';
import type { TimeRange } from '../time-range.js';
import { mergeStacks, type SeriesSelection } from './merge.js';
import type { BuiltTree } from './flamegraph.js';
import type { StackAccumulator } from '../store/accumulator.js';

/** Builds the flame tree of merged accumulators (the first is the main column), resolving their stacks' symbols. */
export type FlameOf = (...accs: StackAccumulator[]) => Promise<BuiltTree>;
import { errBadParam } from '../errors.js';

/** Label levels one query may group by: each level multiplies the groups. */
export const MAX_GROUP_LEVELS = 3;
/**
 * Groups drawn on their own; the smaller rest are merged into one "(other)"
 * group. Each group costs a merge and a tree build, and a
 * flame graph of more than a hundred slivers says nothing anyway.
 */
export const MAX_GROUPS = 100;
export const OTHER_VALUE = '(other)';
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `groupBy=comm,pod` -> ['comm', 'pod']; absent or empty -> []. */
export function parseGroupBy(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  const names = raw.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!LABEL_NAME.test(n)) throw errBadParam(`groupBy: "${n}" is not a label name (must match ${LABEL_NAME.source})`);
  }
  if (new Set(names).size !== names.length) throw errBadParam(`groupBy: a label is named twice in "${raw}"`);
  if (names.length > MAX_GROUP_LEVELS) throw errBadParam(`groupBy: ${names.length} labels given, at most ${MAX_GROUP_LEVELS}`);
  return names;
}

export interface SeriesGroup {
  labels: GroupLabels;
  /** Label values in groupBy order. */
  key: string[];
  series: Series[];
}

export const groupSelection = (g: SeriesGroup): SeriesSelection => ({ series: g.series, ids: g.series.map((s) => s.id) });

const cmpKey = (a: string[], b: string[]): number => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
};

/**
 * Partitions series by their values of `groupBy` (missing label = ""). With
 * more than MAX_GROUPS groups, the largest by `seriesTotal` stay and the rest
 * become one group whose every value is OTHER_VALUE. Sorted by key.
 */
export function partitionSeries(series: readonly Series[], groupBy: readonly string[], seriesTotal?: (s: Series) => number): SeriesGroup[] {
  const byKey = new Map<string, SeriesGroup>();
  for (const s of series) {
    const key = groupBy.map((n) => s.labels[n] ?? '');
    const k = JSON.stringify(key);
    let g = byKey.get(k);
    if (!g) {
      g = { labels: Object.fromEntries(groupBy.map((n, i) => [n, key[i]!])), key, series: [] };
      byKey.set(k, g);
    }
    g.series.push(s);
  }
  let groups = [...byKey.values()];
  if (groups.length > MAX_GROUPS) {
    const size = (g: SeriesGroup) => g.series.reduce((sum, s) => sum + (seriesTotal ? seriesTotal(s) : 1), 0);
    const ranked = groups.map((g) => ({ g, v: size(g) })).sort((a, b) => b.v - a.v || cmpKey(a.g.key, b.g.key));
    const other: SeriesGroup = {
      labels: Object.fromEntries(groupBy.map((n) => [n, OTHER_VALUE])),
      key: groupBy.map(() => OTHER_VALUE),
      series: ranked.slice(MAX_GROUPS - 1).flatMap((r) => r.g.series),
    };
    groups = [...ranked.slice(0, MAX_GROUPS - 1).map((r) => r.g), other];
  }
  return groups.sort((a, b) => cmpKey(a.key, b.key));
}

/**
 * Per-series total of one sample type over the range, from the per-profile
 * totals column (no sample blobs are read). Used to rank groups and labels.
 */
export async function seriesTotals(store: ProfileStore, sel: SeriesSelection, range: TimeRange, st: SampleTypeDesc | undefined): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (!st || sel.series.length === 0) return out;
  const idxOf = new Map<number, number>();
  await store.eachProfile(sel.ids, range.fromMs, range.toMs, ['series_id', 'profile_type_id', 'totals'], (row) => {
    let ti = idxOf.get(row.profile_type_id);
    if (ti === undefined) {
      ti = store.profileType(row.profile_type_id)?.sampleTypes.findIndex((t) => t.type === st.type && t.unit === st.unit) ?? -1;
      idxOf.set(row.profile_type_id, ti);
    }
    if (ti < 0) return;
    out.set(row.series_id, (out.get(row.series_id) ?? 0) + Number(row.totals.split(',')[ti]));
  });
  return out;
}

export interface GroupedTree {
  functions: FunctionTable;
  tree: FlameTree;
}

/** Function table that interns (name, binary, kind) across the groups' own tables. */
class MergedFunctions {
  readonly table: FunctionTable = { name: [], binary: [], kind: [] };
  private readonly ids = new Map<string, number>();
  intern(name: string, binary: string, kind: FrameKind): number {
    const key = `${name}\0${binary}\0${kind}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.table.name.length;
      this.table.name.push(name);
      this.table.binary.push(binary);
      this.table.kind.push(kind);
      this.ids.set(key, id);
    }
    return id;
  }
}

export const groupNodeName = (label: string, value: string): string => `${label}=${value}`;

/**
 * Appends group trees (each a BuiltTree, possibly with extra value columns
 * such as a diff baseline) under label levels. Groups must come in key
 * order: then pre-order and sibling order hold, since `label=value` names of
 * one label sort as their values do.
 */
class GroupSplicer {
  readonly fns = new MergedFunctions();
  readonly tree: FlameTree = { func: [-1], parent: [-1], self: [0], total: [0] };
  /** Extra columns (k >= 1 of buildFlameTree's values), same order as the nodes. */
  readonly extraSelf: number[][];
  readonly extraTotal: number[][];
  // Label nodes of the previous group, one per level.
  private open: { value: string; node: number }[] = [];

  constructor(
    private readonly groupBy: readonly string[],
    extraColumns: number,
  ) {
    this.extraSelf = Array.from({ length: extraColumns }, () => [0]);
    this.extraTotal = Array.from({ length: extraColumns }, () => [0]);
  }

  private push(func: number, parent: number, self: number, total: number, eSelf: number[], eTotal: number[]): number {
    const node = this.tree.func.length;
    this.tree.func.push(func);
    this.tree.parent.push(parent);
    this.tree.self.push(self);
    this.tree.total.push(total);
    for (let k = 0; k < this.extraSelf.length; k++) {
      this.extraSelf[k]!.push(eSelf[k] ?? 0);
      this.extraTotal[k]!.push(eTotal[k] ?? 0);
    }
    return node;
  }

  /** Adds one group's tree; a group with no value in any column is left out. */
  add(key: readonly string[], built: BuiltTree): void {
    const t = built.tree;
    const K = this.extraSelf.length;
    const totals = [t.total[0] ?? 0, ...built.extraTotal.map((c) => c[0] ?? 0)];
    if (!totals.some((v) => v > 0)) return;
    const { tree, groupBy } = this;
    let same = 0;
    while (same < this.open.length && this.open[same]!.value === key[same]) same++;
    this.open = this.open.slice(0, same);
    for (let level = same; level < groupBy.length; level++) {
      const func = this.fns.intern(groupNodeName(groupBy[level]!, key[level]!), '', 'label');
      const node = this.push(func, level === 0 ? 0 : this.open[level - 1]!.node, 0, 0, [], []);
      this.open.push({ value: key[level]!, node });
    }
    const add = (node: number): void => {
      tree.total[node]! += totals[0]!;
      for (let k = 0; k < K; k++) this.extraTotal[k]![node]! += totals[k + 1]!;
    };
    add(0);
    for (const o of this.open) add(o.node);
    const leaf = this.open[this.open.length - 1]!.node;
    tree.self[leaf]! += t.self[0] ?? 0;
    for (let k = 0; k < K; k++) this.extraSelf[k]![leaf]! += built.extraSelf[k]![0] ?? 0;
    const fn = built.functions;
    const remap = fn.name.map((name, f) => this.fns.intern(name, fn.binary[f]!, fn.kind[f]!));
    const base = tree.func.length - 1; // group node j (j >= 1) becomes base + j
    const eSelf: number[] = new Array<number>(K);
    const eTotal: number[] = new Array<number>(K);
    for (let j = 1; j < t.func.length; j++) {
      for (let k = 0; k < K; k++) {
        eSelf[k] = built.extraSelf[k]![j]!;
        eTotal[k] = built.extraTotal[k]![j]!;
      }
      const p = t.parent[j]!;
      this.push(remap[t.func[j]!]!, p === 0 ? leaf : base + p, t.self[j]!, t.total[j]!, eSelf, eTotal);
    }
  }
}

/**
 * One merge and one tree per group, in key order and one at a time, so only
 * one group's accumulator is alive; spliced under label levels.
 */
export async function groupedFlameTree(
  store: ProfileStore,
  flame: FlameOf,
  groups: readonly SeriesGroup[],
  range: TimeRange,
  st: SampleTypeDesc | undefined,
  groupBy: readonly string[],
): Promise<GroupedTree> {
  const out = new GroupSplicer(groupBy, 0);
  if (!st) return { functions: out.fns.table, tree: out.tree };
  for (const g of groups) {
    const m = await mergeStacks(store, groupSelection(g), range, [st]);
    out.add(g.key, await flame(m.acc));
  }
  return { functions: out.fns.table, tree: out.tree };
}

export interface GroupedDiffTree extends GroupedTree {
  baselineSelf: number[];
  baselineTotal: number[];
}

const NO_SERIES: SeriesSelection = { series: [], ids: [] };

/**
 * Diff split by groups: a group is a key present on either side; its tree
 * holds the right side (selection) as self/total and the left (baseline) as
 * the extra column, the shape of /api/v1/diff.
 */
export async function groupedDiffTree(
  store: ProfileStore,
  flame: FlameOf,
  left: { groups: readonly SeriesGroup[]; range: TimeRange },
  right: { groups: readonly SeriesGroup[]; range: TimeRange },
  st: SampleTypeDesc | undefined,
  groupBy: readonly string[],
): Promise<GroupedDiffTree> {
  const out = new GroupSplicer(groupBy, 1);
  const done = (): GroupedDiffTree => ({ functions: out.fns.table, tree: out.tree, baselineSelf: out.extraSelf[0]!, baselineTotal: out.extraTotal[0]! });
  if (!st) return done();
  const byKey = new Map<string, { key: string[]; l?: SeriesGroup; r?: SeriesGroup }>();
  for (const [side, groups] of [['l', left.groups], ['r', right.groups]] as const) {
    for (const g of groups) {
      const k = JSON.stringify(g.key);
      const e = byKey.get(k) ?? { key: g.key };
      e[side] = g;
      byKey.set(k, e);
    }
  }
  const keys = [...byKey.values()].sort((a, b) => cmpKey(a.key, b.key));
  for (const e of keys) {
    const l = await mergeStacks(store, e.l ? groupSelection(e.l) : NO_SERIES, left.range, [st]);
    const r = await mergeStacks(store, e.r ? groupSelection(e.r) : NO_SERIES, right.range, [st]);
    out.add(e.key, await flame(r.acc, l.acc));
  }
  return done();
}

/**
 * Top table of a grouped tree: one row per (group, function), each with the
 * group's labels. Totals count a function once per stack, as topTable does.
 */
export function groupedTopTable(functions: FunctionTable, tree: FlameTree, groupBy: readonly string[], limit: number): TopResponse['rows'] {
  const G = groupBy.length;
  const nf = functions.name.length;
  const rowOf = new Map<number, number>();
  const rows: TopResponse['rows'] = [];
  const depth: number[] = [0];
  const groupOf: number[] = [0]; // the level-G label node above each node
  const onPath = new Int32Array(nf);
  const path: number[] = [];
  const labelsOf = (groupNode: number): GroupLabels => {
    const out: GroupLabels = {};
    for (let a = groupNode; a > 0; a = tree.parent[a]!) {
      const name = functions.name[tree.func[a]!]!;
      const eq = name.indexOf('=');
      out[name.slice(0, eq)] = name.slice(eq + 1);
    }
    return out;
  };
  for (let j = 1; j < tree.func.length; j++) {
    const p = tree.parent[j]!;
    depth[j] = depth[p]! + 1;
    groupOf[j] = depth[j]! === G ? j : groupOf[p]!;
    if (depth[j]! <= G) continue;
    while (path.length > 0 && path[path.length - 1] !== p) onPath[tree.func[path.pop()!]!]!--;
    const f = tree.func[j]!;
    const key = groupOf[j]! * nf + f;
    let r = rowOf.get(key);
    if (r === undefined) {
      r = rows.length;
      rowOf.set(key, r);
      rows.push({ name: functions.name[f]!, binary: functions.binary[f]!, kind: functions.kind[f]!, self: 0, total: 0, labels: labelsOf(groupOf[j]!) });
    }
    rows[r]!.self += tree.self[j]!;
    if (onPath[f] === 0) rows[r]!.total += tree.total[j]!;
    onPath[f]!++;
    path.push(j);
  }
  rows.sort((a, b) => b.self - a.self || b.total - a.total || (a.name < b.name ? -1 : 1));
  return rows.slice(0, limit);
}

// Merged stack values -> flame tree (api-types.ts FlameTree), top table.
// The symbol cache keeps every stack it resolved as a leaf node of one frame
// tree (store/frame-tree.ts: a node per (parent, function), a location's
// inlined frames one node each, outermost first). A build adds each
// selected stack's values at its node, gives the nodes it reaches (the
// stacks' nodes and their ancestors) this build's dense indices, sums totals
// up and writes them out in pre-order with siblings sorted by name.
// Cost: O(stacks selected + flame nodes of the answer), typed arrays only.
import type { FlameTree, FunctionIndex, FunctionTable, TopResponse } from '../../src/profile/api-types.js';
import type { StackColumns, Symbols } from '../store/symbols.js';
import { f64Vec, i32Vec } from '../../src/util/typed-vec.js';

export interface BuiltTree {
  functions: FunctionTable;
  tree: FlameTree;
  /** Extra value columns (e.g. the diff baseline), same order as the nodes. */
  extraSelf: number[][];
  extraTotal: number[][];
}


/**
 * sc.self[k] are self values per stack (k = 0 is the main column, k >= 1
 * extra columns such as a diff baseline). The input arrays are not modified.
 */
export function buildFlameTree(sym: Symbols, sc: StackColumns): BuiltTree {
  const values = sc.self;
  const K = values.length;
  const ft = sym.frames;
  const stamp = ft.beginBuild();
  const seen = ft.buildStamp;
  const index = ft.buildIndex;
  const gParent = ft.parent;
  const gFunc = ft.func;
  // This build's nodes, numbered in the order a stack first reaches them (parents first).
  const initial = 1024;
  const fParent = i32Vec(initial);
  const fGlobal = i32Vec(initial);
  const fSelf = values.map(() => f64Vec(initial));
  fParent.push(-1);
  fGlobal.push(0);
  for (const col of fSelf) col.push(0);
  seen[0] = stamp;
  index[0] = 0;
  const chain: number[] = [];
  const n = sc.stackIds.length;
  for (let i = 0; i < n; i++) {
    const s = sym.get(sc.stackIds[i]!);
    let g = s ? s.frameNode : 0;
    if (seen[g] !== stamp) {
      // Walk up to the first node this build has, then number the ones below it top-down.
      while (seen[g] !== stamp) {
        chain.push(g);
        g = gParent[g]!;
      }
      while (chain.length > 0) {
        const c = chain.pop()!;
        seen[c] = stamp;
        index[c] = fParent.length;
        fParent.push(index[g]!);
        fGlobal.push(c);
        for (let k = 0; k < K; k++) fSelf[k]!.push(0);
        g = c;
      }
    }
    const node = index[g]!;
    for (let k = 0; k < K; k++) fSelf[k]!.data[node]! += values[k]![i]!;
  }
  const m = fParent.length;
  const parentOf = fParent.data;
  const selfOf = fSelf.map((col) => col.data);

  // The answer's function table: the functions of its nodes, in the order the nodes were reached.
  const gFunctions = ft.functions;
  const functions: FunctionTable = { name: [], binary: [], kind: [] };
  const fnSeen = ft.functionBuildStamp;
  const fnIndex = ft.functionBuildIndex;
  const globalRank = ft.nameRanks();
  const fFunc = new Int32Array(m);
  const fRank = new Int32Array(m);
  fFunc[0] = -1;
  let maxRank = 0;
  for (let j = 1; j < m; j++) {
    const gf = gFunc[fGlobal.data[j]!]!;
    if (fnSeen[gf] !== stamp) {
      fnSeen[gf] = stamp;
      fnIndex[gf] = functions.name.length;
      functions.name.push(gFunctions.name[gf]!);
      functions.binary.push(gFunctions.binary[gf]!);
      functions.kind.push(gFunctions.kind[gf]!);
    }
    fFunc[j] = fnIndex[gf]!;
    const r = globalRank[gf]!;
    fRank[j] = r;
    if (r > maxRank) maxRank = r;
  }
  // Totals: children are numbered after their parents, so one backward pass.
  const totalOf = selfOf.map((col) => col.slice(0, m));
  for (let c = m - 1; c > 0; c--) for (let k = 0; k < K; k++) totalOf[k]![parentOf[c]!]! += totalOf[k]![c]!;

  // Children of each node, ordered by (name rank, number): a stable counting
  // sort of the nodes by rank, then a stable bucketing by parent; O(nodes +
  // ranks), no comparison sort. (Ranks come from the frame tree: equal names,
  // equal rank, so siblings compare by integers.)
  const byRankStart = new Int32Array(maxRank + 2);
  for (let j = 1; j < m; j++) byRankStart[fRank[j]! + 1]!++;
  for (let r = 1; r < byRankStart.length; r++) byRankStart[r]! += byRankStart[r - 1]!;
  const byRank = new Int32Array(Math.max(0, m - 1));
  for (let j = 1; j < m; j++) byRank[byRankStart[fRank[j]!]!++] = j;
  const start = new Int32Array(m + 1);
  for (let j = 1; j < m; j++) start[parentOf[j]! + 1]!++;
  for (let j = 1; j <= m; j++) start[j]! += start[j - 1]!;
  const fill = start.slice(0, m);
  const kids = new Int32Array(Math.max(0, m - 1));
  for (let t = 0; t < m - 1; t++) {
    const j = byRank[t]!;
    kids[fill[parentOf[j]!]!++] = j;
  }

  // Pre-order. Filled by index (m nodes): no growth copies of 100k-node arrays.
  const tree: FlameTree = { func: new Array<number>(m), parent: new Array<number>(m), self: new Array<number>(m), total: new Array<number>(m) };
  const extraSelf: number[][] = values.slice(1).map(() => new Array<number>(m));
  const extraTotal: number[][] = values.slice(1).map(() => new Array<number>(m));
  const newIndex = new Int32Array(m);
  const stack = new Int32Array(m);
  let top = 0;
  stack[top++] = 0;
  let next = 0;
  while (top > 0) {
    const j = stack[--top]!;
    const idx = next++;
    newIndex[j] = idx;
    tree.func[idx] = fFunc[j]!;
    tree.parent[idx] = j === 0 ? -1 : newIndex[parentOf[j]!]!;
    tree.self[idx] = selfOf[0]![j]!;
    tree.total[idx] = totalOf[0]![j]!;
    for (let k = 1; k < K; k++) {
      extraSelf[k - 1]![idx] = selfOf[k]![j]!;
      extraTotal[k - 1]![idx] = totalOf[k]![j]!;
    }
    for (let c = start[j + 1]! - 1; c >= start[j]!; c--) stack[top++] = kids[c]!;
  }
  return { functions, tree, extraSelf, extraTotal };
}

/** Per-function self and total (a function counted once per stack even when recursive). */
export function topTable(functions: FunctionTable, tree: FlameTree, limit: number): TopResponse['rows'] {
  const nf = functions.name.length;
  const self = new Float64Array(nf);
  const total = new Float64Array(nf);
  const onPath = new Int32Array(nf);
  const path: number[] = [];
  for (let j = 1; j < tree.func.length; j++) {
    const p = tree.parent[j]!;
    while (path.length > 0 && path[path.length - 1] !== p) onPath[tree.func[path.pop()!]!]!--;
    const f: FunctionIndex = tree.func[j]!;
    self[f]! += tree.self[j]!;
    if (onPath[f] === 0) total[f]! += tree.total[j]!;
    onPath[f]!++;
    path.push(j);
  }
  const rows: TopResponse['rows'] = [];
  for (let f = 0; f < nf; f++) {
    rows.push({ name: functions.name[f]!, binary: functions.binary[f]!, kind: functions.kind[f]!, self: self[f]!, total: total[f]!, labels: {} });
  }
  rows.sort((a, b) => b.self - a.self || b.total - a.total || (a.name < b.name ? -1 : 1));
  return rows.slice(0, limit);
}

// Merged stack values -> flame tree (api-types.ts FlameTree), top table.
// Every location becomes a chain of flame nodes (one per inlined frame,
// outermost first), keyed by (parent flame node, function). Each distinct
// location prefix of the merged stacks is mapped once (the symbol cache keeps
// the stacks as a prefix tree), self values land on the stacks' flame nodes
// and totals are summed up the tree. Cost: O(distinct prefixes + flame nodes).
import type { FlameTree, FunctionIndex, FunctionTable, TopResponse } from '../../src/profile/api-types.js';
import { frameKindOfMapping } from '../../src/profile/frame-kind.js';
import { IntPairMap } from '../store/int-pair-map.js';
import type { PrefixNode, ResolvedLocation, StackColumns, Symbols } from '../store/symbols.js';

/** Stamps flame-tree builds in the prefix tree's scratch fields (one build runs at a time: it is synchronous). */
let buildStamp = 0;

export interface BuiltTree {
  functions: FunctionTable;
  tree: FlameTree;
  /** Extra value columns (e.g. the diff baseline), same order as the nodes. */
  extraSelf: number[][];
  extraTotal: number[][];
}

/** Function table interning frames by (name, binary). */
class FunctionInterner {
  readonly table: FunctionTable = { name: [], binary: [], kind: [] };
  private readonly ids = new Map<string, number>();

  /** `stamp` names this build in the locations' scratch fields (symbols.ts), which cache their frames. */
  constructor(private readonly stamp: number) {}

  private intern(name: string, binary: string): number {
    const key = `${name}\0${binary}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.table.name.length;
      this.table.name.push(name);
      this.table.binary.push(binary);
      this.table.kind.push(frameKindOfMapping(binary));
      this.ids.set(key, id);
    }
    return id;
  }

  /** Function indices of a location's frames, outermost (caller) first. */
  frames(loc: ResolvedLocation): number[] {
    if (loc.framesStamp === this.stamp) return loc.frames;
    const binary = loc.mapping?.filename ?? '';
    const out: number[] = [];
    if (loc.lines.length === 0) {
      // Unsymbolized: the binary and the file-relative address are all we
      // know; the same code in every process shows as one frame.
      // No mapping at all (an address the host could not place): the bare address.
      const base = binary.slice(binary.lastIndexOf('/') + 1);
      const hex = `0x${loc.address.toString(16)}`;
      out.push(this.intern(base ? `${base}+${hex}` : hex, binary));
    } else {
      for (let i = loc.lines.length - 1; i >= 0; i--) {
        const f = loc.lines[i]!.fn;
        out.push(this.intern(f ? f.name || f.systemName || '?' : '?', binary));
      }
    }
    loc.framesStamp = this.stamp;
    loc.frames = out;
    return out;
  }
}

/**
 * sc.self[k] are self values per stack (k = 0 is the main column, k >= 1
 * extra columns such as a diff baseline). The input arrays are not modified.
 */
export function buildFlameTree(sym: Symbols, sc: StackColumns): BuiltTree {
  const values = sc.self;
  const K = values.length;
  const stamp = ++buildStamp;
  const fi = new FunctionInterner(stamp);
  const fParent: number[] = [-1];
  const fFunc: number[] = [-1];
  const fSelf: number[][] = values.map(() => [0]);
  const child = new IntPairMap(1 << 12);
  // Each stack's node in the symbol cache's prefix tree (symbols.ts) is
  // mapped to its flame node once per distinct prefix: a stack walks up only
  // to the first ancestor this build has already mapped (stamped), then
  // maps the frames below it. Cost: O(distinct prefixes of the stacks read)
  // lookups, not O(frames of every stack), and no sort.
  const chain: PrefixNode[] = [];
  const flameOf = (leaf: PrefixNode): number => {
    let n: PrefixNode = leaf;
    while (n.parent !== undefined && n.stamp !== stamp) {
      chain.push(n);
      n = n.parent;
    }
    let node = n.parent === undefined ? 0 : n.flame;
    while (chain.length > 0) {
      const c = chain.pop()!;
      const frames = fi.frames(c.loc!);
      for (let q = 0; q < frames.length; q++) {
        const fn = frames[q]!;
        let f = child.get(node, fn);
        if (f === -1) {
          f = fParent.length;
          fParent.push(node);
          fFunc.push(fn);
          for (let k = 0; k < K; k++) fSelf[k]!.push(0);
          child.insert(node, fn, f);
        }
        node = f;
      }
      c.stamp = stamp;
      c.flame = node;
    }
    return node;
  };
  const n = sc.stackIds.length;
  for (let i = 0; i < n; i++) {
    const s = sym.get(sc.stackIds[i]!);
    const node = s ? flameOf(s.node) : 0;
    for (let k = 0; k < K; k++) fSelf[k]![node]! += values[k]![i]!;
  }
  // Totals: children are created after their parents, so one backward pass.
  const fTotal = fSelf.map((col) => col.slice());
  for (let c = fParent.length - 1; c > 0; c--) for (let k = 0; k < K; k++) fTotal[k]![fParent[c]!]! += fTotal[k]![c]!;

  // Re-number in pre-order with siblings sorted by function name.
  const m = fParent.length;
  const childCount = new Int32Array(m + 1);
  for (let j = 1; j < m; j++) childCount[fParent[j]! + 1]!++;
  for (let j = 1; j <= m; j++) childCount[j]! += childCount[j - 1]!;
  const start = childCount.slice(0, m);
  const kids = new Int32Array(Math.max(0, m - 1));
  const fill = start.slice();
  for (let j = 1; j < m; j++) kids[fill[fParent[j]!]!++] = j;
  // Names are ranked once (equal names, equal rank), so siblings sort by integer compares.
  const names = fi.table.name;
  const byNameOrder = names.map((_, i) => i).sort((a, b) => (names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : 0));
  const rank = new Int32Array(names.length);
  for (let r = 0, i = 0; i < byNameOrder.length; i++) {
    if (i > 0 && names[byNameOrder[i]!] !== names[byNameOrder[i - 1]!]) r++;
    rank[byNameOrder[i]!] = r;
  }
  const byName = (a: number, b: number) => rank[fFunc[a]!]! - rank[fFunc[b]!]!;
  // All children ordered at once by (parent, name rank, index), packed into
  // doubles for the native numeric sort, instead of one comparator sort per
  // node (when the packed key fits in 53 bits; else per node below).
  let nodeBits = 1;
  while (nodeBits < m) nodeBits *= 2;
  let rankBits = 1;
  while (rankBits < names.length + 1) rankBits *= 2;
  const presorted = m > 1 && m * rankBits * nodeBits < 2 ** 53;
  if (presorted) {
    const keys = new Float64Array(m - 1);
    for (let c = 1; c < m; c++) keys[c - 1] = (fParent[c]! * rankBits + rank[fFunc[c]!]!) * nodeBits + c;
    keys.sort();
    for (let k = 0; k < m - 1; k++) kids[k] = keys[k]! % nodeBits;
  }
  // Filled by index (m nodes): no growth copies of 100k-node arrays.
  const tree: FlameTree = { func: new Array<number>(m), parent: new Array<number>(m), self: new Array<number>(m), total: new Array<number>(m) };
  let next = 0;
  const extraSelf: number[][] = values.slice(1).map(() => []);
  const extraTotal: number[][] = values.slice(1).map(() => []);
  const newIndex = new Int32Array(m);
  const stack: number[] = [0];
  while (stack.length > 0) {
    const j = stack.pop()!;
    const idx = next++;
    newIndex[j] = idx;
    tree.func[idx] = fFunc[j]!;
    tree.parent[idx] = j === 0 ? -1 : newIndex[fParent[j]!]!;
    tree.self[idx] = fSelf[0]![j]!;
    tree.total[idx] = fTotal[0]![j]!;
    for (let k = 1; k < K; k++) {
      extraSelf[k - 1]!.push(fSelf[k]![j]!);
      extraTotal[k - 1]!.push(fTotal[k]![j]!);
    }
    const from = start[j]!;
    const to = j + 1 < m ? start[j + 1]! : m - 1;
    if (to - from === 1) stack.push(kids[from]!);
    else if (presorted) for (let c = to - 1; c >= from; c--) stack.push(kids[c]!);
    else if (to - from > 1) {
      const sorted = Array.from(kids.subarray(from, to)).sort(byName);
      for (let c = sorted.length - 1; c >= 0; c--) stack.push(sorted[c]!);
    }
  }
  return { functions: fi.table, tree, extraSelf, extraTotal };
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

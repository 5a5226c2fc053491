// Merged stack values -> flame tree (api-types.ts FlameTree), top table.
// Stack ids form a prefix tree with parent < child, so totals are one
// backwards pass, and flame nodes are created in one forward pass: each
// stack node maps to a chain of flame nodes (one per inlined frame of its
// location, outermost first), keyed by (parent flame node, function).
import type { FlameTree, FunctionIndex, FunctionTable, TopResponse } from '../../src/profile/api-types.js';
import { frameKindOfMapping } from '../../src/profile/frame-kind.js';
import { IntPairMap } from '../store/int-pair-map.js';
import type { SymbolDb } from '../store/symbols.js';

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
  private readonly locFrames = new Map<number, number[]>();

  constructor(private readonly sym: SymbolDb) {}

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
  frames(locationId: number): number[] {
    let out = this.locFrames.get(locationId);
    if (out) return out;
    const s = this.sym;
    const loc = s.locations[locationId];
    const mapping = loc && loc.mappingId !== 0 ? s.mappings[loc.mappingId] : undefined;
    const binary = mapping ? s.strings[mapping.filename]! : '';
    out = [];
    if (!loc || loc.lines.length === 0) {
      // Unsymbolized: the address is all we know.
      out.push(this.intern(loc ? `0x${loc.address.toString(16)}` : '?', binary));
    } else {
      for (let i = loc.lines.length - 2; i >= 0; i -= 2) {
        const f = s.functions[loc.lines[i]!];
        const name = f ? s.strings[f.name] || s.strings[f.systemName] || '?' : '?';
        out.push(this.intern(name, binary));
      }
    }
    this.locFrames.set(locationId, out);
    return out;
  }
}

/**
 * values[k][stackId] are self values (k = 0 is the main column, k >= 1 extra
 * columns such as a diff baseline); touched[stackId] marks stacks with data.
 * The input arrays are not modified.
 */
export function buildFlameTree(sym: SymbolDb, values: Float64Array[], touchedIn: Uint8Array[]): BuiltTree {
  const parent = sym.stackParent.data;
  const location = sym.stackLocation.data;
  const n = Math.max(...values.map((v) => v.length), ...touchedIn.map((t) => t.length));
  const K = values.length;
  const touched = new Uint8Array(n);
  for (const t of touchedIn) for (let i = 0; i < t.length; i++) if (t[i]) touched[i] = 1;
  const totals = values.map((v) => {
    const t = new Float64Array(n);
    t.set(v);
    return t;
  });
  for (let i = n - 1; i > 0; i--) {
    if (!touched[i]) continue;
    const p = parent[i]!;
    touched[p] = 1;
    for (let k = 0; k < K; k++) totals[k]![p]! += totals[k]![i]!;
  }

  const fi = new FunctionInterner(sym);
  const fParent: number[] = [-1];
  const fFunc: number[] = [-1];
  const fSelf: number[][] = values.map(() => [0]);
  const fTotal: number[][] = values.map((_, k) => [totals[k]![0] ?? 0]);
  for (let k = 0; k < K; k++) fSelf[k]![0] = values[k]![0] ?? 0;
  const child = new IntPairMap(1 << 12);
  const flameOf = new Int32Array(n);
  for (let i = 1; i < n; i++) {
    if (!touched[i]) continue;
    let node = flameOf[parent[i]!]!;
    for (const fn of fi.frames(location[i]!)) {
      let c = child.get(node, fn);
      if (c === -1) {
        c = fParent.length;
        fParent.push(node);
        fFunc.push(fn);
        for (let k = 0; k < K; k++) {
          fSelf[k]!.push(0);
          fTotal[k]!.push(0);
        }
        child.insert(node, fn, c);
      }
      for (let k = 0; k < K; k++) fTotal[k]![c]! += totals[k]![i]!;
      node = c;
    }
    for (let k = 0; k < K; k++) fSelf[k]![node]! += values[k]![i] ?? 0;
    flameOf[i] = node;
  }

  // Re-number in pre-order with siblings sorted by function name.
  const m = fParent.length;
  const childCount = new Int32Array(m + 1);
  for (let j = 1; j < m; j++) childCount[fParent[j]! + 1]!++;
  for (let j = 1; j <= m; j++) childCount[j]! += childCount[j - 1]!;
  const start = childCount.slice(0, m);
  const kids = new Int32Array(Math.max(0, m - 1));
  const fill = start.slice();
  for (let j = 1; j < m; j++) kids[fill[fParent[j]!]!++] = j;
  const names = fi.table.name;
  const byName = (a: number, b: number) => {
    const x = names[fFunc[a]!]!;
    const y = names[fFunc[b]!]!;
    return x < y ? -1 : x > y ? 1 : 0;
  };
  const tree: FlameTree = { func: [], parent: [], self: [], total: [] };
  const extraSelf: number[][] = values.slice(1).map(() => []);
  const extraTotal: number[][] = values.slice(1).map(() => []);
  const newIndex = new Int32Array(m);
  const stack: number[] = [0];
  while (stack.length > 0) {
    const j = stack.pop()!;
    const idx = tree.func.length;
    newIndex[j] = idx;
    tree.func.push(fFunc[j]!);
    tree.parent.push(j === 0 ? -1 : newIndex[fParent[j]!]!);
    tree.self.push(fSelf[0]![j]!);
    tree.total.push(fTotal[0]![j]!);
    for (let k = 1; k < K; k++) {
      extraSelf[k - 1]!.push(fSelf[k]![j]!);
      extraTotal[k - 1]!.push(fTotal[k]![j]!);
    }
    const from = start[j]!;
    const to = j + 1 < m ? start[j + 1]! : m - 1;
    const sorted = Array.from(kids.subarray(from, to)).sort(byName);
    for (let c = sorted.length - 1; c >= 0; c--) stack.push(sorted[c]!);
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

// Top table: self and total per function (or per binary), per group when the
// tree is grouped. Total counts a sample once per row even when the function
// (or binary) occurs several times on its stack (only the outermost counts).
import type { FrameKind } from '../../../src/profile/api-types.js';
import type { CallTree } from './tree.js';
import type { TopBy } from './url-state.js';
import { baseName } from './search.js';

export interface TopRow {
  /** Function index (function rows) or -1 (binary rows). */
  func: number;
  name: string;
  binary: string;
  kind: FrameKind;
  self: number;
  total: number;
  /** Values of the group-by labels, in CallTree.groupBy order; [] when not grouped. */
  group: string[];
}

export type TopSortKey = 'name' | 'binary' | 'self' | 'total';

/** What a binary roll-up row is called: its file name, or what kind of code it is. */
export function binaryRowName(binary: string, kind: FrameKind): string {
  if (binary === '') return kind === 'jit' ? '[JIT]' : '[no binary]';
  return baseName(binary);
}

export function computeTop(tree: CallTree, by: TopBy = 'function'): TopRow[] {
  const nf = tree.functions.name.length;
  const G = tree.groupBy.length;
  // Row key per function: the function itself, or an id per binary.
  const keyOfFunc = new Int32Array(nf);
  const binaries: string[] = [];
  if (by === 'binary') {
    const ids = new Map<string, number>();
    for (let f = 0; f < nf; f++) {
      const b = tree.functions.binary[f] ?? '';
      const k = tree.functions.kind[f] === 'jit' && b === '' ? '\u0000jit' : b;
      let id = ids.get(k);
      if (id === undefined) {
        id = binaries.length;
        ids.set(k, id);
        binaries.push(b);
      }
      keyOfFunc[f] = id;
    }
  } else {
    for (let f = 0; f < nf; f++) keyOfFunc[f] = f;
  }
  const K = by === 'binary' ? binaries.length : nf;
  // Row per (group, key): a dense table when it is small (the usual case: a
  // Map costs ~3x more on 100k nodes), a Map beyond.
  let groups = 1;
  if (G > 0) for (let i = 1; i < tree.size; i++) if (tree.depth[i] === G) groups++;
  const dense = groups * K <= 1 << 22 ? new Int32Array(groups * K).fill(-1) : null;
  const rowMap = new Map<number, number>();
  const rows: TopRow[] = [];
  const onStack = new Int32Array(K);
  const stack: number[] = [];
  const groupOf = new Int32Array(tree.size); // level-G label node above each node (0 when not grouped)
  const groupOrdinal = new Map<number, number>();
  const groupValues: string[][] = [];
  for (let i = 1; i < tree.size; i++) {
    const p = tree.parent[i]!;
    const d = tree.depth[i]!;
    if (d <= G) {
      groupOf[i] = d === G ? i : groupOf[p]!;
      if (d === G) {
        groupOrdinal.set(i, groupValues.length);
        const values: string[] = [];
        for (let a = i; a > 0; a = tree.parent[a]!) {
          const name = tree.functions.name[tree.func[a]!] ?? '';
          values.push(name.slice(name.indexOf('=') + 1));
        }
        groupValues.push(values.reverse());
      }
      continue;
    }
    groupOf[i] = groupOf[p]!;
    while (stack.length > 0 && stack[stack.length - 1] !== p) onStack[keyOfFunc[tree.func[stack.pop()!]!]!]!--;
    const f = tree.func[i]!;
    const k = keyOfFunc[f]!;
    const g = G > 0 ? groupOrdinal.get(groupOf[i]!)! : 0;
    const rk = g * K + k;
    let r = dense ? dense[rk]! : (rowMap.get(rk) ?? -1);
    if (r < 0) {
      r = rows.length;
      if (dense) dense[rk] = r;
      else rowMap.set(rk, r);
      const kind = tree.functions.kind[f] ?? 'unknown';
      const binary = tree.functions.binary[f] ?? '';
      rows.push({
        func: by === 'binary' ? -1 : f,
        name: by === 'binary' ? binaryRowName(binary, kind) : tree.functions.name[f]!,
        binary,
        kind,
        self: 0,
        total: 0,
        group: G > 0 ? groupValues[g]! : [],
      });
    }
    const row = rows[r]!;
    row.self += tree.self[i]!;
    if (onStack[k] === 0) row.total += tree.total[i]!;
    onStack[k]!++;
    stack.push(i);
  }
  return sortTop(rows, 'self', 'desc');
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function sortTop(rows: readonly TopRow[], key: TopSortKey, dir: 'asc' | 'desc'): TopRow[] {
  const sign = dir === 'asc' ? 1 : -1;
  return [...rows].sort((a, b) => {
    let c: number;
    if (key === 'name') c = cmp(a.name, b.name);
    else if (key === 'binary') c = cmp(baseName(a.binary), baseName(b.binary)) || cmp(a.binary, b.binary);
    else c = a[key] - b[key];
    if (c === 0) c = cmp(a.name, b.name);
    return c * sign;
  });
}

export function filterTop(rows: readonly TopRow[], text: string): TopRow[] {
  const t = text.trim().toLowerCase();
  if (t === '') return [...rows];
  return rows.filter((r) => r.name.toLowerCase().includes(t) || r.binary.toLowerCase().includes(t) || r.group.some((g) => g.toLowerCase().includes(t)));
}

/**
 * Cuts the middle out of a string longer than maxChars, so both ends stay:
 * "/usr/lib/x86_64-linux-gnu/libcrypto.so.3" -> "/usr/lib/x86…libcrypto.so.3".
 * The end (a binary's file name) gets the larger part.
 */
export function truncateMiddle(s: string, maxChars: number): string {
  if (s.length <= maxChars) return s;
  if (maxChars <= 1) return '…';
  const keep = maxChars - 1;
  const head = Math.floor(keep / 3);
  return `${s.slice(0, head)}…${s.slice(s.length - (keep - head))}`;
}

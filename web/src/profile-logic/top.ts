// Top functions: self and total per function. Total counts a sample once per
// function even when the function recurses (only its outermost frame counts).
import type { FrameKind } from '../../../src/profile/api-types.js';
import type { CallTree } from './tree.js';

export interface TopRow {
  func: number;
  name: string;
  binary: string;
  kind: FrameKind;
  self: number;
  total: number;
}

export type TopSortKey = 'name' | 'self' | 'total';

export function computeTop(tree: CallTree): TopRow[] {
  const nf = tree.functions.name.length;
  const self = new Float64Array(nf);
  const total = new Float64Array(nf);
  const seen = new Uint8Array(nf);
  const onStack = new Int32Array(nf);
  const stack: number[] = [];
  for (let i = 1; i < tree.size; i++) {
    const p = tree.parent[i]!;
    while (stack.length > 0 && stack[stack.length - 1] !== p) onStack[tree.func[stack.pop()!]!]!--;
    const f = tree.func[i]!;
    seen[f] = 1;
    self[f]! += tree.self[i]!;
    if (onStack[f] === 0) total[f]! += tree.total[i]!;
    onStack[f]!++;
    stack.push(i);
  }
  const rows: TopRow[] = [];
  for (let f = 0; f < nf; f++) {
    if (!seen[f]) continue;
    rows.push({
      func: f,
      name: tree.functions.name[f]!,
      binary: tree.functions.binary[f] ?? '',
      kind: tree.functions.kind[f] ?? 'unknown',
      self: self[f]!,
      total: total[f]!,
    });
  }
  return sortTop(rows, 'self', 'desc');
}

export function sortTop(rows: readonly TopRow[], key: TopSortKey, dir: 'asc' | 'desc'): TopRow[] {
  const sign = dir === 'asc' ? 1 : -1;
  return [...rows].sort((a, b) => {
    let c: number;
    if (key === 'name') c = a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    else c = a[key] - b[key];
    if (c === 0) c = a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    return c * sign;
  });
}

export function filterTop(rows: readonly TopRow[], text: string): TopRow[] {
  const t = text.trim().toLowerCase();
  if (t === '') return [...rows];
  return rows.filter((r) => r.name.toLowerCase().includes(t) || r.binary.toLowerCase().includes(t));
}

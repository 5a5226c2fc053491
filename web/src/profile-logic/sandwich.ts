// Sandwich view of one function: its callers (inverted: the function at the
// root, callers as children) and its callees, merged across all call sites.
// Only outermost frames of the function count, so recursion isn't counted twice.
import type { FlameGraphResponse } from '../../../src/profile/api-types.js';
import { TreeBuilder, type CallTree, buildCallTree } from './tree.js';

export interface Sandwich {
  /** Root (node 0) is the function itself when it occurs at all. */
  callers: CallTree;
  callees: CallTree;
  /** Samples with the function anywhere on the stack. */
  total: number;
  /** Samples with the function on top of the stack. */
  self: number;
}

export function sandwichFor(tree: CallTree, isTarget: (func: number) => boolean): Sandwich {
  const callers = new TreeBuilder();
  const callees = new TreeBuilder();
  const n = tree.size;
  // under[i]: node i is below (or is) a target frame.
  const under = new Uint8Array(n);
  let target = -1;
  let self = 0;
  let total = 0;
  const path: number[] = [];
  for (let i = 1; i < n; i++) {
    const f = tree.func[i]!;
    const t = isTarget(f);
    if (t) self += tree.self[i]!;
    const outer = t && !under[tree.parent[i]!];
    under[i] = under[tree.parent[i]!]! | (t ? 1 : 0);
    if (!outer) continue;
    if (target < 0) target = f;
    const v = tree.total[i]!;
    total += v;
    // Callers: target, parent, grandparent ... (root excluded).
    path.length = 0;
    path.push(target);
    for (let a = tree.parent[i]!; a > 0; a = tree.parent[a]!) path.push(tree.func[a]!);
    callers.addPath(path, v);
    // Callees: merge node i's subtree under a single target node.
    const root = callees.child(0, target);
    callees.total[0]! += v;
    callees.total[root]! += v;
    callees.self[root]! += tree.self[i]!;
    const map = new Map<number, number>([[i, root]]);
    const stop = tree.end[i]!;
    for (let c = i + 1; c < stop; c++) {
      const dst = callees.child(map.get(tree.parent[c]!)!, tree.func[c]!);
      map.set(c, dst);
      callees.total[dst]! += tree.total[c]!;
      callees.self[dst]! += tree.self[c]!;
    }
  }
  const nameOf = (f: number): string => tree.functions.name[f] ?? '';
  const wrap = (b: TreeBuilder): CallTree => {
    const t = b.toFlameTree(nameOf);
    // Drop the synthetic root: the function itself (node 1, the only child) becomes the root.
    const drop = t.func.length > 1 ? 1 : 0;
    const resp: FlameGraphResponse = {
      version: 1,
      sampleType: tree.sampleType,
      total: t.total[0]!,
      groupBy: [],
      functions: tree.functions,
      tree: { func: t.func.slice(drop), parent: t.parent.slice(drop).map((p) => p - drop), self: t.self.slice(drop), total: t.total.slice(drop) },
    };
    if (drop) resp.tree.parent[0] = -1;
    const ct = buildCallTree(resp);
    // Shares in a sandwich stay relative to the whole profile.
    ct.grandTotal = tree.grandTotal;
    return ct;
  };
  return { callers: wrap(callers), callees: wrap(callees), total, self };
}

// The call tree as the viewer uses it: the api-types columns turned into typed
// arrays plus derived columns (depth, subtree end) so every walk is a flat loop.
// Pre-order with parent < index means node i's subtree is the index range
// [i, end[i]) and its children are i+1, end[i+1], end[end[i+1]], ...
import type {
  DiffFlameGraphResponse,
  FlameGraphResponse,
  FlameTree,
  FrameKind,
  FunctionTable,
  SampleTypeJson,
} from '../../../src/profile/api-types.js';

export interface CallTree {
  size: number;
  func: Int32Array;
  parent: Int32Array;
  self: Float64Array;
  total: Float64Array;
  depth: Int32Array;
  /** Exclusive end of each node's subtree in pre-order. */
  end: Int32Array;
  maxDepth: number;
  functions: FunctionTable;
  sampleType: SampleTypeJson;
  grandTotal: number;
  /** Group-by labels: levels 1..groupBy.length below the root are `label=value` nodes. */
  groupBy: string[];
  /** Only for diff trees (left selection). */
  baselineSelf?: Float64Array;
  baselineTotal?: Float64Array;
  baselineGrandTotal?: number;
}

export class TreeFormatError extends Error {}

export function buildCallTree(resp: FlameGraphResponse | DiffFlameGraphResponse): CallTree {
  const t = resp.tree;
  const n = t.func.length;
  if (n === 0 || t.parent.length !== n || t.self.length !== n || t.total.length !== n) {
    throw new TreeFormatError('flame tree columns are empty or of different lengths');
  }
  if (t.parent[0] !== -1) throw new TreeFormatError('node 0 must be the root');
  const func = Int32Array.from(t.func);
  const parent = Int32Array.from(t.parent);
  const self = Float64Array.from(t.self);
  const total = Float64Array.from(t.total);
  const depth = new Int32Array(n);
  let maxDepth = 0;
  for (let i = 1; i < n; i++) {
    const p = parent[i]!;
    if (p < 0 || p >= i) throw new TreeFormatError(`node ${i} has parent ${p}: not pre-order`);
    const d = depth[p]! + 1;
    depth[i] = d;
    if (d > maxDepth) maxDepth = d;
  }
  const end = computeEnds(parent);
  const tree: CallTree = {
    size: n,
    func,
    parent,
    self,
    total,
    depth,
    end,
    maxDepth,
    functions: resp.functions,
    sampleType: resp.sampleType,
    grandTotal: resp.total ?? 0,
    groupBy: 'groupBy' in resp && Array.isArray(resp.groupBy) ? resp.groupBy : [],
  };
  if ('baselineTotal' in resp) {
    const dt = resp.tree;
    tree.baselineSelf = Float64Array.from(dt.baselineSelf);
    tree.baselineTotal = Float64Array.from(dt.baselineTotal);
    tree.baselineGrandTotal = resp.baselineTotal;
  }
  return tree;
}

/** Subtree end of every node, from a pre-order parent column. */
export function computeEnds(parent: ArrayLike<number>): Int32Array {
  const n = parent.length;
  const end = new Int32Array(n);
  for (let i = 0; i < n; i++) end[i] = i + 1;
  // In reverse pre-order every node is done before its parent.
  for (let i = n - 1; i > 0; i--) {
    const p = parent[i]!;
    if (end[i]! > end[p]!) end[p] = end[i]!;
  }
  return end;
}

export function childrenOf(tree: CallTree, node: number): number[] {
  const out: number[] = [];
  const stop = tree.end[node]!;
  for (let c = node + 1; c < stop; c = tree.end[c]!) out.push(c);
  return out;
}

export function funcName(tree: CallTree, node: number): string {
  const f = tree.func[node]!;
  return f < 0 ? 'all' : (tree.functions.name[f] ?? '?');
}

export function funcBinary(tree: CallTree, node: number): string {
  const f = tree.func[node]!;
  return f < 0 ? '' : (tree.functions.binary[f] ?? '');
}

export function funcKind(tree: CallTree, node: number): FrameKind {
  const f = tree.func[node]!;
  return f < 0 ? 'unknown' : (tree.functions.kind[f] ?? 'unknown');
}

/** Names from the root's child down to `node` (root itself is the empty path). */
export function pathOf(tree: CallTree, node: number): string[] {
  const names: string[] = [];
  for (let i = node; i > 0; i = tree.parent[i]!) names.push(funcName(tree, i));
  return names.reverse();
}

/** The node reached by following `path` from the root, or the deepest prefix found. */
export function nodeAtPath(tree: CallTree, path: readonly string[]): { node: number; matched: number } {
  let node = 0;
  let matched = 0;
  for (const name of path) {
    let next = -1;
    const stop = tree.end[node]!;
    for (let c = node + 1; c < stop; c = tree.end[c]!) {
      if (funcName(tree, c) === name) {
        next = c;
        break;
      }
    }
    if (next < 0) break;
    node = next;
    matched++;
  }
  return { node, matched };
}

export function ancestorsOf(tree: CallTree, node: number): number[] {
  const out: number[] = [];
  for (let i = node; i >= 0; i = tree.parent[i]!) {
    out.push(i);
    if (i === 0) break;
  }
  return out.reverse();
}

/**
 * Builds pre-order trees by merging paths or subtrees (a trie keyed by
 * function index). Used for sandwich views and synthetic profiles.
 */
export class TreeBuilder {
  readonly func: number[] = [-1];
  readonly parent: number[] = [-1];
  readonly self: number[] = [0];
  readonly total: number[] = [0];
  readonly baselineSelf: number[] = [0];
  readonly baselineTotal: number[] = [0];
  private readonly kids: Map<number, number>[] = [new Map()];

  get size(): number {
    return this.func.length;
  }

  child(node: number, f: number): number {
    const m = this.kids[node]!;
    let c = m.get(f);
    if (c === undefined) {
      c = this.func.length;
      this.func.push(f);
      this.parent.push(node);
      this.self.push(0);
      this.total.push(0);
      this.baselineSelf.push(0);
      this.baselineTotal.push(0);
      this.kids.push(new Map());
      m.set(f, c);
    }
    return c;
  }

  /** Adds `value` along root -> funcs[0] -> funcs[1] ...; self goes to the last. */
  addPath(funcs: readonly number[], value: number, baseline = 0): void {
    let node = 0;
    this.total[0]! += value;
    this.baselineTotal[0]! += baseline;
    for (const f of funcs) {
      node = this.child(node, f);
      this.total[node]! += value;
      this.baselineTotal[node]! += baseline;
    }
    this.self[node]! += value;
    this.baselineSelf[node]! += baseline;
  }

  /** Re-numbers into pre-order with siblings sorted by name (the api-types order). */
  toFlameTree(nameOf: (f: number) => string): FlameTree & { baselineSelf: number[]; baselineTotal: number[] } {
    const out = { func: [] as number[], parent: [] as number[], self: [] as number[], total: [] as number[], baselineSelf: [] as number[], baselineTotal: [] as number[] };
    const stack: [number, number][] = [[0, -1]];
    while (stack.length > 0) {
      const [node, newParent] = stack.pop()!;
      const idx = out.func.length;
      out.func.push(this.func[node]!);
      out.parent.push(newParent);
      out.self.push(this.self[node]!);
      out.total.push(this.total[node]!);
      out.baselineSelf.push(this.baselineSelf[node]!);
      out.baselineTotal.push(this.baselineTotal[node]!);
      const kids = [...this.kids[node]!.values()];
      kids.sort((a, b) => cmp(nameOf(this.func[a]!), nameOf(this.func[b]!)));
      for (let k = kids.length - 1; k >= 0; k--) stack.push([kids[k]!, idx]);
    }
    return out;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface StackSample {
  /** Root first. */
  frames: string[];
  value: number;
}

export interface FrameInfo {
  binary?: string;
  kind?: FrameKind;
}

/** A FlameGraphResponse from plain stacks: handy for tests, fixtures and benches. */
export function profileFromStacks(
  stacks: readonly StackSample[],
  info: (name: string) => FrameInfo = () => ({}),
  sampleType: SampleTypeJson = { type: 'cpu', unit: 'nanoseconds' },
): FlameGraphResponse {
  const functions: FunctionTable = { name: [], binary: [], kind: [] };
  const index = new Map<string, number>();
  const fn = (name: string): number => {
    let f = index.get(name);
    if (f === undefined) {
      f = functions.name.length;
      index.set(name, f);
      const i = info(name);
      functions.name.push(name);
      functions.binary.push(i.binary ?? '');
      functions.kind.push(i.kind ?? 'unknown');
    }
    return f;
  };
  const b = new TreeBuilder();
  for (const s of stacks) b.addPath(s.frames.map(fn), s.value);
  const t = b.toFlameTree((f) => functions.name[f] ?? '');
  return {
    version: 1,
    sampleType,
    total: t.total[0]!,
    groupBy: [],
    functions,
    tree: { func: t.func, parent: t.parent, self: t.self, total: t.total },
  };
}

/** Merges two profiles into the diff shape the server's /api/v1/diff returns. */
export function diffFromProfiles(left: FlameGraphResponse, right: FlameGraphResponse): DiffFlameGraphResponse {
  const functions: FunctionTable = { name: [], binary: [], kind: [] };
  const index = new Map<string, number>();
  const remap = (src: FunctionTable): number[] =>
    src.name.map((name, i) => {
      const key = `${name}\u0000${src.binary[i] ?? ''}`;
      let f = index.get(key);
      if (f === undefined) {
        f = functions.name.length;
        index.set(key, f);
        functions.name.push(name);
        functions.binary.push(src.binary[i] ?? '');
        functions.kind.push(src.kind[i] ?? 'unknown');
      }
      return f;
    });
  const b = new TreeBuilder();
  const addTree = (resp: FlameGraphResponse, isBaseline: boolean): void => {
    const map = remap(resp.functions);
    const t = resp.tree;
    const mine: number[] = new Array<number>(t.func.length);
    mine[0] = 0;
    for (let i = 0; i < t.func.length; i++) {
      const node = i === 0 ? 0 : b.child(mine[t.parent[i]!]!, map[t.func[i]!]!);
      mine[i] = node;
      if (isBaseline) {
        b.baselineSelf[node]! += t.self[i]!;
        b.baselineTotal[node]! += t.total[i]!;
      } else {
        b.self[node]! += t.self[i]!;
        b.total[node]! += t.total[i]!;
      }
    }
  };
  addTree(left, true);
  addTree(right, false);
  const tree = b.toFlameTree((f) => functions.name[f] ?? '');
  return { version: 1, sampleType: right.sampleType, baselineTotal: left.total, total: right.total, groupBy: [], functions, tree };
}

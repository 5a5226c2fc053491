// Every stack the symbol cache holds (symbols.ts), as one tree of frames:
// a node is (parent node, function), a function is (name, binary), and each
// cached stack points at its leaf node. It is built once per stack, when the
// stack is first resolved, so a flame graph (query/flamegraph.ts) only adds
// each selected stack's values at its node and walks up through nodes it has
// not seen in this build: typed arrays indexed by node, no per-frame hash
// lookups, no interning and no object per node on the query path. It lives
// and is dropped with the symbol cache; its size counts against the cache's
// bound.
import type { FrameKind, FunctionTable } from '../../src/profile/api-types.js';
import { frameKindOfMapping } from '../../src/profile/frame-kind.js';
import { IntPairMap } from './int-pair-map.js';
import { grownTo } from '../../src/util/typed-vec.js';

/** Index into FrameTree.functions (fleet-wide within one cache generation). */
export type FrameFunctionIndex = number;
/** Index of a node of the frame tree; 0 is the root. */
export type FrameNodeIndex = number;

/** What a location contributes: its name per frame, and the binary it is in. */
export interface LocationNames {
  /** Innermost frame first, as in pprof; empty when the host could not symbolize it. */
  names: readonly string[];
  /** The mapping's file name ('' without a mapping). */
  binary: string;
  /** The file-relative address, for a location without names. */
  address: bigint;
}

/** `a` with room for `need` entries, at least doubling when it grows (nodes are added one at a time). */
function grown(a: Int32Array, need: number): Int32Array {
  return grownTo(a, need <= a.length ? need : Math.max(need, a.length * 2), (n) => new Int32Array(n));
}

export class FrameTree {
  readonly functions: FunctionTable = { name: [], binary: [], kind: [] as FrameKind[] };
  private readonly functionIds = new Map<string, FrameFunctionIndex>();
  /** parent[n], func[n] for n < size; the root has parent -1 and func -1. */
  parent: Int32Array = new Int32Array(1024).fill(-1, 0, 1);
  func: Int32Array = new Int32Array(1024).fill(-1, 0, 1);
  size = 1;
  private readonly child = new IntPairMap(1 << 12);
  /** Scratch of one flame-tree build (synchronous, one at a time): the build's stamp and its index per node. */
  buildStamp: Int32Array = new Int32Array(1024);
  buildIndex: Int32Array = new Int32Array(1024);
  /** The same per function. */
  functionBuildStamp: Int32Array = new Int32Array(1024);
  functionBuildIndex: Int32Array = new Int32Array(1024);
  private lastStamp = 0;
  private ranks: Int32Array = new Int32Array(0);

  /** The functions of a location's frames, outermost (caller) first. */
  framesOf(loc: LocationNames): FrameFunctionIndex[] {
    const out: FrameFunctionIndex[] = [];
    if (loc.names.length === 0) {
      // Unsymbolized: the binary and the file-relative address are all we
      // know, so the same code in every process shows as one frame. No
      // mapping at all (an address the host could not place): the bare address.
      const base = loc.binary.slice(loc.binary.lastIndexOf('/') + 1);
      const hex = `0x${loc.address.toString(16)}`;
      out.push(this.intern(base ? `${base}+${hex}` : hex, loc.binary));
    } else {
      for (let i = loc.names.length - 1; i >= 0; i--) out.push(this.intern(loc.names[i]!, loc.binary));
    }
    return out;
  }

  private intern(name: string, binary: string): FrameFunctionIndex {
    const key = `${name}\0${binary}`;
    let id = this.functionIds.get(key);
    if (id === undefined) {
      id = this.functions.name.length;
      this.functions.name.push(name);
      this.functions.binary.push(binary);
      this.functions.kind.push(frameKindOfMapping(binary));
      this.functionIds.set(key, id);
    }
    return id;
  }

  /** The node reached from `node` through `frames` (outermost first), created as needed. */
  descend(node: FrameNodeIndex, frames: readonly FrameFunctionIndex[]): FrameNodeIndex {
    for (let q = 0; q < frames.length; q++) {
      const fn = frames[q]!;
      let next = this.child.get(node, fn);
      if (next === -1) {
        next = this.size++;
        this.parent = grown(this.parent, this.size);
        this.func = grown(this.func, this.size);
        this.parent[next] = node;
        this.func[next] = fn;
        this.child.insert(node, fn, next);
      }
      node = next;
    }
    return node;
  }

  /** A new build stamp, with the scratch arrays covering every node and function. */
  beginBuild(): number {
    if (this.buildStamp.length < this.size) {
      // New arrays start at stamp 0, which no build uses.
      this.buildStamp = grown(this.buildStamp, this.size);
      this.buildIndex = grown(this.buildIndex, this.size);
    }
    if (this.functionBuildStamp.length < this.functions.name.length) {
      this.functionBuildStamp = grown(this.functionBuildStamp, this.functions.name.length);
      this.functionBuildIndex = grown(this.functionBuildIndex, this.functions.name.length);
    }
    if (this.lastStamp === 0x7fffffff) {
      this.buildStamp.fill(0);
      this.functionBuildStamp.fill(0);
      this.lastStamp = 0;
    }
    return ++this.lastStamp;
  }

  /**
   * Each function's rank in the order of names (equal names, equal rank), so
   * that siblings sort by integer compares. Recomputed only when functions
   * were added since the last call.
   */
  nameRanks(): Int32Array {
    const names = this.functions.name;
    if (this.ranks.length === names.length) return this.ranks;
    const order = names.map((_, i) => i).sort((a, b) => (names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : 0));
    const rank = new Int32Array(names.length);
    for (let r = 0, i = 0; i < order.length; i++) {
      if (i > 0 && names[order[i]!] !== names[order[i - 1]!]) r++;
      rank[order[i]!] = r;
    }
    this.ranks = rank;
    return rank;
  }
}

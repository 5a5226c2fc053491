// The query side of the symbol database. Symbols live in the store, not in
// memory: a query asks for the stacks its merge touched, and this cache
// fetches what it does not hold yet (the stacks, then their locations,
// functions and mappings, one batched lookup each) and hands back the stacks
// linked to their rows, so building a flame tree or a pprof follows object
// references instead of looking ids up frame by frame. The cache is bounded
// (maxRows); past the bound it starts over, so memory follows the working
// set of recent queries, not the history of the fleet.
import type { FunctionRow, MappingRow, ProfileStore } from './store.js';
import type { StackAccumulator } from './accumulator.js';
import { FrameTree, type FrameFunctionIndex, type FrameNodeIndex } from './frame-tree.js';
import { IdMap } from './id-map.js';

export interface ResolvedLine {
  fn: FunctionRow | undefined;
  line: number;
}

export interface ResolvedLocation {
  id: number;
  mapping: MappingRow | undefined;
  address: bigint;
  isFolded: boolean;
  /** Innermost frame first, as in pprof. */
  lines: ResolvedLine[];
  /** Its frames' functions in the cache's frame tree (frame-tree.ts), outermost first. */
  frames: FrameFunctionIndex[];
}

export interface ResolvedStack {
  id: number;
  /** Leaf first, as in pprof; a location the store no longer has is left out. */
  locations: ResolvedLocation[];
  /** Its leaf node in the cache's frame tree (frame-tree.ts). */
  frameNode: FrameNodeIndex;
}

/** The resolved stacks of one query, by stack id (a view of the cache, not a copy: no per-stack work when all are cached). */
export interface Symbols {
  get(stackId: number): ResolvedStack | undefined;
  /** The tree the stacks' frameNode point into. */
  frames: FrameTree;
}

export const SYMBOL_CACHE_MAX_ROWS = 1_000_000;

export class SymbolCache {
  private stacks = new Map<number, ResolvedStack>();
  // Locations by content id: an IdMap (typed arrays, no boxed keys) to an
  // index in `locationList`. A first query looks up every frame of tens of
  // thousands of stacks here (two million lookups); a Map keyed by 53-bit
  // numbers cost several times as much.
  private locationIndex = new IdMap(1 << 12);
  private locationList: ResolvedLocation[] = [];
  private frames = new FrameTree();

  constructor(
    private readonly store: ProfileStore,
    private readonly maxRows = SYMBOL_CACHE_MAX_ROWS,
  ) {}

  async resolve(stackIds: Iterable<number>): Promise<Symbols> {
    if (this.stacks.size + this.locationList.length + this.frames.size > this.maxRows) {
      // Start over rather than track recency per row: a query refills what it needs.
      this.stacks = new Map();
      this.locationIndex = new IdMap(1 << 12);
      this.locationList = [];
      this.frames = new FrameTree();
    }
    // This query's view: the maps as they are now (a later reset by another query leaves them to this one).
    const stacks = this.stacks;
    const locIndex = this.locationIndex;
    const locList = this.locationList;
    const frames = this.frames;
    const out: Symbols = { get: (id) => stacks.get(id), frames };
    const missing: number[] = [];
    for (const id of stackIds) if (id !== 0 && !stacks.has(id)) missing.push(id);
    if (missing.length === 0) return out;
    const rows = await this.store.fetchStacks(missing);
    const needLoc = new IdMap(1 << 12);
    for (const r of rows) for (const l of r.locations) if (!locIndex.has(l) && !needLoc.has(l)) needLoc.set(l, 1);
    if (needLoc.size > 0) {
      const ids: number[] = [];
      needLoc.forEach((id) => ids.push(id));
      await this.loadLocations(ids, locIndex, locList, frames);
    }
    for (const r of rows) {
      const locations: ResolvedLocation[] = [];
      for (const l of r.locations) {
        const i = locIndex.get(l);
        if (i >= 0) locations.push(locList[i]!);
      }
      let node = 0;
      for (let d = locations.length - 1; d >= 0; d--) node = frames.descend(node, locations[d]!.frames);
      stacks.set(r.id, { id: r.id, locations, frameNode: node });
    }
    return out;
  }

  private async loadLocations(ids: number[], index: IdMap, list: ResolvedLocation[], frames: FrameTree): Promise<void> {
    const locs = await this.store.fetchLocations(ids);
    const fnIds = new Set<number>();
    const mapIds = new Set<number>();
    for (const l of locs) {
      if (l.mappingId !== 0) mapIds.add(l.mappingId);
      for (let i = 0; i < l.lines.length; i += 2) fnIds.add(l.lines[i]!);
    }
    const [fns, maps] = await Promise.all([this.store.fetchFunctions([...fnIds]), this.store.fetchMappings([...mapIds])]);
    const fnById = new Map(fns.map((f) => [f.id, f]));
    const mapById = new Map(maps.map((m) => [m.id, m]));
    for (const l of locs) {
      const lines: ResolvedLine[] = [];
      for (let i = 0; i < l.lines.length; i += 2) lines.push({ fn: fnById.get(l.lines[i]!), line: l.lines[i + 1]! });
      const mapping = mapById.get(l.mappingId);
      const names = lines.map((line) => (line.fn ? line.fn.name || line.fn.systemName || '?' : '?'));
      const located = frames.framesOf({ names, binary: mapping?.filename ?? '', address: l.address });
      index.set(l.id, list.length);
      list.push({ id: l.id, mapping, address: l.address, isFolded: l.isFolded, lines, frames: located });
    }
  }
}

/**
 * The merged stacks of one or more accumulators as columns over their union
 * (e.g. a diff's two sides): self[col][i] is the value of column col at
 * stackIds[i]. Sized by the selection, not by the stack table.
 */
export interface StackColumns {
  stackIds: number[];
  self: Float64Array[];
}

export function stackColumns(accs: readonly StackAccumulator[]): StackColumns {
  if (accs.length === 1) {
    const acc = accs[0]!;
    const stackIds = Array.from(acc.ids.subarray(0, acc.length));
    const self: Float64Array[] = [];
    for (let c = 0; c < acc.cols; c++) {
      const col = new Float64Array(acc.length);
      for (let i = 0; i < acc.length; i++) col[i] = acc.values[i * acc.cols + c]!;
      self.push(col);
    }
    return { stackIds, self };
  }
  const index = new Map<number, number>();
  const stackIds: number[] = [];
  for (const acc of accs) {
    for (let i = 0; i < acc.length; i++) {
      const id = acc.ids[i]!;
      if (!index.has(id)) {
        index.set(id, stackIds.length);
        stackIds.push(id);
      }
    }
  }
  const self: Float64Array[] = [];
  for (const acc of accs) {
    for (let c = 0; c < acc.cols; c++) {
      const col = new Float64Array(stackIds.length);
      for (let i = 0; i < acc.length; i++) col[index.get(acc.ids[i]!)!]! += acc.values[i * acc.cols + c]!;
      self.push(col);
    }
  }
  return { stackIds, self };
}

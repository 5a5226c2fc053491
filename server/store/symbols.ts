// The query side of the symbol database. Symbols live in the store, not in
// memory: a query asks for the stacks its merge touched, and this cache
// fetches what it does not hold yet (the stacks with all their ancestors in
// one recursive query, then their locations, functions and mappings) and
// hands back a snapshot of exactly those rows. The cache is bounded
// (maxRows); past the bound it starts over, so memory follows the working
// set of recent queries, not the history of the fleet.
import type { FunctionRow, LocationRow, MappingRow, ProfileStore, StackRow } from './store.js';
import type { StackAccumulator } from './accumulator.js';

export interface Symbols {
  stacks: Map<number, StackRow>;
  locations: Map<number, LocationRow>;
  functions: Map<number, FunctionRow>;
  mappings: Map<number, MappingRow>;
}

export const SYMBOL_CACHE_MAX_ROWS = 1_000_000;

export class SymbolCache {
  private stacks = new Map<number, StackRow>();
  private locations = new Map<number, LocationRow>();
  private functions = new Map<number, FunctionRow>();
  private mappings = new Map<number, MappingRow>();

  constructor(
    private readonly store: ProfileStore,
    private readonly maxRows = SYMBOL_CACHE_MAX_ROWS,
  ) {}

  private size(): number {
    return this.stacks.size + this.locations.size + this.functions.size + this.mappings.size;
  }

  /** Rows of the given stacks, their ancestors, locations, functions and mappings. */
  async resolve(stackIds: Iterable<number>): Promise<Symbols> {
    if (this.size() > this.maxRows) {
      // Start over rather than track recency per row: a query refills what it needs.
      this.stacks = new Map();
      this.locations = new Map();
      this.functions = new Map();
      this.mappings = new Map();
    }
    const out: Symbols = { stacks: new Map(), locations: new Map(), functions: new Map(), mappings: new Map() };
    const missing: number[] = [];
    const want: number[] = [];
    for (const id of stackIds) {
      if (id === 0) continue;
      want.push(id);
      if (!this.stacks.has(id)) missing.push(id);
    }
    // A cached stack's ancestors are cached too: chains are added whole and the cache is dropped whole.
    for (const r of await this.store.fetchStacks(missing)) this.stacks.set(r.id, r);
    const needLoc: number[] = [];
    for (const id of want) {
      for (let s = this.stacks.get(id); s && !out.stacks.has(s.id); s = this.stacks.get(s.parentId)) {
        out.stacks.set(s.id, s);
        if (!this.locations.has(s.locationId)) needLoc.push(s.locationId);
      }
    }
    for (const r of await this.store.fetchLocations(dedupe(needLoc))) this.locations.set(r.id, r);
    const needFn: number[] = [];
    const needMap: number[] = [];
    for (const s of out.stacks.values()) {
      const l = this.locations.get(s.locationId);
      if (!l || out.locations.has(l.id)) continue;
      out.locations.set(l.id, l);
      if (l.mappingId !== 0 && !this.mappings.has(l.mappingId)) needMap.push(l.mappingId);
      for (let i = 0; i < l.lines.length; i += 2) if (!this.functions.has(l.lines[i]!)) needFn.push(l.lines[i]!);
    }
    const [fns, maps] = await Promise.all([this.store.fetchFunctions(dedupe(needFn)), this.store.fetchMappings(dedupe(needMap))]);
    for (const r of fns) this.functions.set(r.id, r);
    for (const r of maps) this.mappings.set(r.id, r);
    for (const l of out.locations.values()) {
      const m = this.mappings.get(l.mappingId);
      if (m) out.mappings.set(m.id, m);
      for (let i = 0; i < l.lines.length; i += 2) {
        const f = this.functions.get(l.lines[i]!);
        if (f) out.functions.set(f.id, f);
      }
    }
    return out;
  }
}

const dedupe = (ids: number[]): number[] => [...new Set(ids)];

/**
 * The merged stacks and all their ancestors as a prefix tree in local
 * indices, parents before children (index 0 = root): what the flame tree is
 * built from. Sized by the selection, not by the stack table.
 */
export interface StackTable {
  n: number;
  parent: Int32Array;
  locationId: Float64Array;
  /** self[col][i]: value of column col at stack i (0 for pure ancestors). */
  self: Float64Array[];
}

/**
 * Builds the table from accumulators (one per column set, e.g. a diff's two
 * sides, each with `cols` columns appended in order).
 */
export function stackTable(sym: Symbols, accs: readonly StackAccumulator[]): StackTable {
  const local = new Map<number, number>([[0, 0]]);
  const depth = new Map<number, number>([[0, 0]]);
  const depthOf = (id: number): number => {
    const chain: number[] = [];
    let s = id;
    while (!depth.has(s)) {
      chain.push(s);
      s = sym.stacks.get(s)?.parentId ?? 0;
    }
    let d = depth.get(s)!;
    for (let i = chain.length - 1; i >= 0; i--) depth.set(chain[i]!, ++d);
    return depth.get(id)!;
  };
  for (const acc of accs) for (let i = 0; i < acc.length; i++) depthOf(acc.ids[i]!);
  // Ancestors were added by depthOf; order all by depth so parents come first.
  const ids = [...depth.keys()].filter((id) => id !== 0).sort((a, b) => depth.get(a)! - depth.get(b)!);
  const n = ids.length + 1;
  ids.forEach((id, i) => local.set(id, i + 1));
  const parent = new Int32Array(n);
  const locationId = new Float64Array(n);
  parent[0] = -1;
  ids.forEach((id, i) => {
    const r = sym.stacks.get(id);
    parent[i + 1] = local.get(r?.parentId ?? 0) ?? 0;
    locationId[i + 1] = r?.locationId ?? 0;
  });
  const self: Float64Array[] = [];
  for (const acc of accs) {
    for (let c = 0; c < acc.cols; c++) {
      const col = new Float64Array(n);
      for (let i = 0; i < acc.length; i++) col[local.get(acc.ids[i]!)!]! += acc.values[i * acc.cols + c]!;
      self.push(col);
    }
  }
  return { n, parent, locationId, self };
}

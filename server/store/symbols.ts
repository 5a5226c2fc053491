// The query side of the symbol database. Symbols live in the store, not in
// memory: a query asks for the stacks its merge touched, and this cache
// fetches what it does not hold yet (the stacks, then their locations,
// functions and mappings, one batched lookup each) and hands back a snapshot
// of exactly those rows. The cache is bounded
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
    for (const r of await this.store.fetchStacks(missing)) this.stacks.set(r.id, r);
    const needLoc: number[] = [];
    for (const id of want) {
      const s = this.stacks.get(id);
      if (!s || out.stacks.has(id)) continue;
      out.stacks.set(id, s);
      for (const l of s.locations) if (!this.locations.has(l)) needLoc.push(l);
    }
    for (const r of await this.store.fetchLocations(dedupe(needLoc))) this.locations.set(r.id, r);
    for (const s of out.stacks.values()) {
      for (const id of s.locations) {
        const l = this.locations.get(id);
        if (l) out.locations.set(id, l);
      }
    }
    const needFn: number[] = [];
    const needMap: number[] = [];
    for (const l of out.locations.values()) {
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
 * The merged stacks of one or more accumulators as columns over their union
 * (e.g. a diff's two sides): self[col][i] is the value of column col at
 * stackIds[i]. Sized by the selection, not by the stack table.
 */
export interface StackColumns {
  stackIds: number[];
  self: Float64Array[];
}

export function stackColumns(accs: readonly StackAccumulator[]): StackColumns {
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

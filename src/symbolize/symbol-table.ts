// A sorted, column-wise address -> name table (as the Firefox Profiler lays
// out its tables): one typed array per numeric column, so a libc-sized table
// costs a few hundred kilobytes and a lookup is a binary search with no
// per-symbol objects. Addresses are 64-bit (kernel addresses do not fit a
// double), hence BigUint64Array.

/** Address in whatever space the table was built for (ELF vaddr, kernel, JIT). */
export type TableAddress = bigint;
/** Row index into the table's columns. */
export type SymbolIndex = number;

export type SymbolPreference = 'global' | 'weak' | 'local';

export interface RawSymbol {
  name: string;
  address: TableAddress;
  /** 0 when unknown: the symbol then extends to the next symbol (or `limit`). */
  sizeBytes: number | bigint;
  /** Ties between aliases at one address are broken global > weak > local. */
  binding?: SymbolPreference;
  /** Exclusive upper bound for a zero-size symbol's extent (end of its section). */
  limit?: TableAddress;
  /** Where the function starts when this row is a fragment of it (offsets are measured from there). */
  origin?: TableAddress;
  /** Index into a caller-owned side column (e.g. module names, source files). */
  payload?: number;
}

export interface SymbolHit {
  name: string;
  /** Bytes from the start of the function. */
  offset: bigint;
  index: SymbolIndex;
}

const MAX_U64 = 0xffff_ffff_ffff_ffffn;
/** How many preceding rows a lookup checks for an enclosing symbol when the nearest one ends too early. */
const ENCLOSING_SCAN_ROWS = 16;

const BINDING_RANK: Record<SymbolPreference, number> = { global: 0, weak: 1, local: 2 };

export class SymbolTable {
  private constructor(
    readonly start: BigUint64Array,
    /** Exclusive end of each row's extent, after zero-size extension. */
    readonly end: BigUint64Array,
    readonly origin: BigUint64Array,
    readonly name: string[],
    /** -1 when none. */
    readonly payload: Int32Array,
  ) {}

  static readonly empty = new SymbolTable(new BigUint64Array(0), new BigUint64Array(0), new BigUint64Array(0), [], new Int32Array(0));

  get length(): number {
    return this.name.length;
  }

  /**
   * Sorts, merges aliases (one row per start address) and computes extents.
   * The chosen alias is deterministic: global before weak before local, then
   * sized before zero-size, then fewer leading underscores (the public name
   * over __libc_ internals), then the shorter and lexicographically smaller name.
   */
  static fromSymbols(symbols: readonly RawSymbol[]): SymbolTable {
    const sorted = symbols.slice().sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : compareAliases(a, b)));
    const rows: { s: RawSymbol; sizeBytes: bigint }[] = [];
    for (const s of sorted) {
      const size = BigInt(s.sizeBytes);
      const last = rows[rows.length - 1];
      if (last !== undefined && last.s.address === s.address) {
        // Same address: an alias. The winner came first; keep the largest known size.
        if (size > last.sizeBytes) last.sizeBytes = size;
        if (s.limit !== undefined && (last.s.limit === undefined || s.limit > last.s.limit)) last.s = { ...last.s, limit: s.limit };
        continue;
      }
      rows.push({ s, sizeBytes: size });
    }
    const n = rows.length;
    const start = new BigUint64Array(n);
    const end = new BigUint64Array(n);
    const origin = new BigUint64Array(n);
    const payload = new Int32Array(n);
    const name: string[] = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const { s, sizeBytes } = rows[i]!;
      start[i] = s.address;
      origin[i] = s.origin ?? s.address;
      payload[i] = s.payload ?? -1;
      name[i] = s.name;
      if (sizeBytes > 0n) {
        const e = s.address + sizeBytes;
        end[i] = e > MAX_U64 ? MAX_U64 : e;
      } else {
        const next = rows[i + 1]?.s.address ?? MAX_U64;
        const limit = s.limit !== undefined && s.limit > s.address ? s.limit : MAX_U64;
        end[i] = next < limit ? next : limit;
      }
    }
    return new SymbolTable(start, end, origin, name, payload);
  }

  /** Index of the row whose extent holds `address`, or -1. */
  findIndex(address: TableAddress): SymbolIndex {
    const { start, end } = this;
    let lo = 0;
    let hi = start.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (start[mid]! <= address) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    // The nearest preceding symbol may be a small one nested in a bigger
    // function (e.g. a local label symbol); look back a little for the enclosing one.
    for (let i = found, k = 0; i >= 0 && k < ENCLOSING_SCAN_ROWS; i--, k++) {
      if (address < end[i]!) return i;
    }
    return -1;
  }

  lookup(address: TableAddress): SymbolHit | null {
    const index = this.findIndex(address);
    if (index < 0) return null;
    return { name: this.name[index]!, offset: address - this.origin[index]!, index };
  }

  /** Approximate heap cost, for byte-bounded caches. */
  estimateBytes(): number {
    let bytes = this.length * (8 * 3 + 4 + 16);
    for (const n of this.name) bytes += n.length;
    return bytes;
  }
}

function leadingUnderscores(name: string): number {
  let i = 0;
  while (i < name.length && name.charCodeAt(i) === 95) i++;
  return i;
}

function compareAliases(a: RawSymbol, b: RawSymbol): number {
  const bind = BINDING_RANK[a.binding ?? 'global'] - BINDING_RANK[b.binding ?? 'global'];
  if (bind !== 0) return bind;
  const aSized = BigInt(a.sizeBytes) > 0n ? 0 : 1;
  const bSized = BigInt(b.sizeBytes) > 0n ? 0 : 1;
  if (aSized !== bSized) return aSized - bSized;
  const under = leadingUnderscores(a.name) - leadingUnderscores(b.name);
  if (under !== 0) return under;
  if (a.name.length !== b.name.length) return a.name.length - b.name.length;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// A sorted, column-wise address -> name table (as the Firefox Profiler lays
// out its tables): one typed array per column, no per-symbol objects or
// strings. Names stay where they were read from (an ELF string table, the
// /proc/kallsyms text: off-heap Buffers) as offsets, and are decoded only when
// a lookup hits them (then cached). A libc-sized table costs a few hundred
// kilobytes and a lookup is a binary search.
//
// Addresses are 64-bit, but a table's addresses nearly always span far less
// than 2^53 (user space is 47-bit; the kernel's text and modules lie within a
// few GB of each other), so rows hold them as doubles relative to the table's
// lowest address: exact, and sortable and searchable without BigInt. A table
// whose span does not fit (corrupt or exotic input) keeps BigUint64 columns.

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

/** Alias preference ranks (lower wins). */
export const RANK_GLOBAL = 0;
export const RANK_WEAK = 1;
export const RANK_LOCAL = 2;
const RANK_OF: Record<SymbolPreference, number> = { global: RANK_GLOBAL, weak: RANK_WEAK, local: RANK_LOCAL };

const MAX_U64 = 0xffff_ffff_ffff_ffffn;
const TWO32 = 0x1_0000_0000;
/** Doubles hold every integer below this exactly. */
const EXACT = 2 ** 53;
/** How many preceding rows a lookup checks for an enclosing symbol when the nearest one ends too early. */
const ENCLOSING_SCAN_ROWS = 16;
/** Decoded names kept per table; lookups hit a small working set, this only bounds pathological use. */
const MAX_CACHED_NAMES = 50_000;

const FLAG_LIMIT = 1;
/** nameLength of a NUL-terminated name (length found when decoded). */
export const NUL_TERMINATED = -1;

/** Where names come from: raw bytes (decoded as UTF-8 on demand), or ready strings (nameOffset indexes them). */
export type NameSource = Buffer | readonly string[];

function toHiLo(v: bigint): [number, number] {
  const u = BigInt.asUintN(64, v);
  return [Number(u >> 32n), Number(u & 0xffff_ffffn)];
}

function fromHiLo(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Collects candidate symbols into growable typed columns, then sorts them,
 * merges aliases and computes extents (build()). Adding allocates nothing per
 * symbol beyond amortised column growth.
 */
export class SymbolTableBuilder {
  private n = 0;
  private cap: number;
  private addrHi: Uint32Array;
  private addrLo: Uint32Array;
  private size: Float64Array;
  private limHi: Uint32Array;
  private limLo: Uint32Array;
  private flags: Uint8Array;
  private rank: Uint8Array;
  private src: Uint16Array;
  private nameOff: Uint32Array;
  private nameLen: Int32Array;
  private payload: Int32Array;
  /** Offset of the function's start from the row's address, when it differs (perf-map fragments); null until used. */
  private originHi: Uint32Array | null = null;
  private originLo: Uint32Array | null = null;
  private readonly sources: NameSource[] = [];

  constructor(expected = 64) {
    this.cap = Math.max(16, expected);
    const c = this.cap;
    this.addrHi = new Uint32Array(c);
    this.addrLo = new Uint32Array(c);
    this.size = new Float64Array(c);
    this.limHi = new Uint32Array(c);
    this.limLo = new Uint32Array(c);
    this.flags = new Uint8Array(c);
    this.rank = new Uint8Array(c);
    this.src = new Uint16Array(c);
    this.nameOff = new Uint32Array(c);
    this.nameLen = new Int32Array(c);
    this.payload = new Int32Array(c);
  }

  get count(): number {
    return this.n;
  }

  /** Registers where names live; returns the id to pass to add(). */
  addNameSource(source: NameSource): number {
    if (this.sources.length >= 0xffff) throw new Error('too many name sources');
    this.sources.push(source);
    return this.sources.length - 1;
  }

  /**
   * Adds one candidate. The address is given as its high and low 32 bits;
   * sizeBytes 0 means unknown (extends to the next symbol or the limit);
   * limitHi < 0 means no limit.
   */
  add(
    addrHi: number,
    addrLo: number,
    sizeBytes: number,
    rank: number,
    source: number,
    nameOffset: number,
    nameLength: number,
    payload = -1,
    limitHi = -1,
    limitLo = 0,
  ): void {
    if (this.n === this.cap) this.grow();
    const i = this.n++;
    this.addrHi[i] = addrHi;
    this.addrLo[i] = addrLo;
    this.size[i] = sizeBytes;
    this.rank[i] = rank;
    this.src[i] = source;
    this.nameOff[i] = nameOffset;
    this.nameLen[i] = nameLength;
    this.payload[i] = payload;
    let f = 0;
    if (limitHi >= 0) {
      f |= FLAG_LIMIT;
      this.limHi[i] = limitHi;
      this.limLo[i] = limitLo;
    }
    this.flags[i] = f;
  }

  /** Drops candidates added after the first `count` (e.g. from a table that turned out malformed). */
  truncate(count: number): void {
    if (count < this.n) this.n = Math.max(0, count);
  }

  /** Sets the function start of the candidate just added (when it is a fragment starting later). */
  setOrigin(originHi: number, originLo: number): void {
    const i = this.n - 1;
    if (this.originHi === null || this.originLo === null) {
      this.originHi = new Uint32Array(this.cap);
      this.originLo = new Uint32Array(this.cap);
      this.originHi.set(this.addrHi.subarray(0, this.n));
      this.originLo.set(this.addrLo.subarray(0, this.n));
    }
    this.originHi[i] = originHi;
    this.originLo[i] = originLo;
  }

  /** Makes room for `more` further candidates at once. */
  reserve(more: number): void {
    let c = this.cap;
    while (c < this.n + more) c *= 2;
    if (c > this.cap) this.grow(c);
  }

  private grow(c = this.cap * 2): void {
    const g = <T extends Uint32Array | Float64Array | Uint8Array | Uint16Array | Int32Array>(a: T, make: new (n: number) => T): T => {
      const b = new make(c);
      b.set(a as never);
      return b;
    };
    this.addrHi = g(this.addrHi, Uint32Array);
    this.addrLo = g(this.addrLo, Uint32Array);
    this.size = g(this.size, Float64Array);
    this.limHi = g(this.limHi, Uint32Array);
    this.limLo = g(this.limLo, Uint32Array);
    this.flags = g(this.flags, Uint8Array);
    this.rank = g(this.rank, Uint8Array);
    this.src = g(this.src, Uint16Array);
    this.nameOff = g(this.nameOff, Uint32Array);
    this.nameLen = g(this.nameLen, Int32Array);
    this.payload = g(this.payload, Int32Array);
    if (this.originHi !== null && this.originLo !== null) {
      this.originHi = g(this.originHi, Uint32Array);
      this.originLo = g(this.originLo, Uint32Array);
    }
    this.cap = c;
  }

  /**
   * Sorts, merges aliases (one row per start address) and computes extents.
   * The chosen alias is deterministic: global before weak before local, then sized before zero-size, then
   * fewer leading underscores (the public name over __libc_ internals), then
   * the shorter and lexicographically smaller name, then the earlier added.
   */
  build(): SymbolTable {
    const n = this.n;
    if (n === 0) return SymbolTable.empty;
    const { addrHi, addrLo } = this;
    // Each pass is its own small function: this runs once per binary, so the
    // loops mostly run as on-stack-replaced code, and small functions are
    // quick for V8 to optimize (a big one is recompiled for each loop).
    const [minHi, minLo, maxHi, maxLo] = minMax(addrHi, addrLo, n);
    const span = (maxHi - minHi) * TWO32 + (maxLo - minLo);
    const off = new Float64Array(n);
    offsetsFrom(addrHi, addrLo, n, minHi, minLo, off);
    let originOff: Float64Array | null = null;
    let narrow = span < EXACT;
    if (narrow && this.originHi !== null && this.originLo !== null) {
      originOff = new Float64Array(n);
      offsetsFrom(this.originHi, this.originLo, n, minHi, minLo, originOff);
      for (let i = 0; i < n; i++) if (!(Math.abs(originOff[i]!) < EXACT)) narrow = false;
    }
    const order = sortByAddress(off, addrHi, addrLo, n, narrow);
    // Group equal addresses; pick each group's winner.
    const rowsOf = new Int32Array(n);
    const rowSize = new Float64Array(n);
    const rowLimit = new Int32Array(n); // candidate holding the group's highest limit, -1 none
    const rows = this.mergeAliases(order, rowsOf, rowSize, rowLimit);
    const payload = new Int32Array(rows);
    const nameSrc = new Uint16Array(rows);
    const nameOff = new Uint32Array(rows);
    const nameLen = new Int32Array(rows);
    const used = new Uint8Array(this.sources.length);
    for (let r = 0; r < rows; r++) {
      const c = rowsOf[r]!;
      payload[r] = this.payload[c]!;
      nameSrc[r] = this.src[c]!;
      nameOff[r] = this.nameOff[c]!;
      nameLen[r] = this.nameLen[c]!;
      used[this.src[c]!] = 1;
    }
    // Keep only the name sources some row uses (e.g. not .dynstr when .symtab named everything).
    const sources = this.sources.map((s, i) => (used[i] === 1 ? s : EMPTY_SOURCE));
    const names = new NameColumn(sources, nameSrc, nameOff, nameLen);
    const base = fromHiLo(minHi, minLo);
    if (narrow) {
      const start = new Float64Array(rows);
      const end = new Float64Array(rows);
      gather(off, rowsOf, rows, start);
      narrowEnds(start, rowSize, rowLimit, this.limHi, this.limLo, minHi, minLo, end);
      let origin = start;
      if (originOff !== null) {
        origin = new Float64Array(rows);
        gather(originOff, rowsOf, rows, origin);
      }
      return SymbolTable.narrow(base, start, end, origin, names, payload);
    }
    // Wide tables: exact 64-bit arithmetic with BigInt (rare; not a hot path).
    const start = new BigUint64Array(rows);
    const end = new BigUint64Array(rows);
    const origin = new BigUint64Array(rows);
    for (let r = 0; r < rows; r++) {
      const c = rowsOf[r]!;
      start[r] = fromHiLo(addrHi[c]!, addrLo[c]!);
      origin[r] = this.originHi !== null && this.originLo !== null ? fromHiLo(this.originHi[c]!, this.originLo[c]!) : start[r]!;
    }
    for (let r = 0; r < rows; r++) {
      const s = start[r]!;
      const size = rowSize[r]!;
      if (size > 0) {
        const e = s + BigInt(size);
        end[r] = e > MAX_U64 ? MAX_U64 : e;
      } else {
        const next = r + 1 < rows ? start[r + 1]! : MAX_U64;
        const c = rowLimit[r]!;
        const l = c >= 0 ? fromHiLo(this.limHi[c]!, this.limLo[c]!) : MAX_U64;
        const limit = l > s ? l : MAX_U64;
        end[r] = next < limit ? next : limit;
      }
    }
    return SymbolTable.wide(start, end, origin, names, payload);
  }

  /** One row per distinct address: fills the winner, largest size and highest-limit candidate of each; returns the row count. */
  private mergeAliases(order: Uint32Array, rowsOf: Int32Array, rowSize: Float64Array, rowLimit: Int32Array): number {
    const { addrHi, addrLo, flags, size: candSize, limHi, limLo, rank } = this;
    const n = this.n;
    let rows = 0;
    for (let g = 0; g < n; ) {
      const first = order[g]!;
      const fHi = addrHi[first]!;
      const fLo = addrLo[first]!;
      let e = g + 1;
      while (e < n && addrLo[order[e]!] === fLo && addrHi[order[e]!] === fHi) e++;
      let best = first;
      let size = candSize[first]!;
      let lim = (flags[first]! & FLAG_LIMIT) !== 0 ? first : -1;
      let bestName: string | null = null;
      for (let k = g + 1; k < e; k++) {
        const c = order[k]!;
        if (candSize[c]! > size) size = candSize[c]!;
        if ((flags[c]! & FLAG_LIMIT) !== 0 && (lim < 0 || limHi[c]! > limHi[lim]! || (limHi[c] === limHi[lim] && limLo[c]! > limLo[lim]!))) lim = c;
        let cmp = rank[c]! - rank[best]!;
        if (cmp === 0) cmp = (candSize[c]! > 0 ? 0 : 1) - (candSize[best]! > 0 ? 0 : 1);
        let cName: string | null = null;
        if (cmp === 0) {
          // Only ties need names: decode just these two.
          bestName ??= this.candidateName(best);
          cName = this.candidateName(c);
          cmp = compareNames(cName, bestName);
        }
        if (cmp < 0) {
          best = c;
          bestName = cName;
        }
      }
      rowsOf[rows] = best;
      rowSize[rows] = size;
      rowLimit[rows] = lim;
      rows++;
      g = e;
    }
    return rows;
  }

  private candidateName(c: number): string {
    return decodeName(this.sources[this.src[c]!]!, this.nameOff[c]!, this.nameLen[c]!);
  }
}

const EMPTY_SOURCE: readonly string[] = [];

function minMax(addrHi: Uint32Array, addrLo: Uint32Array, n: number): [number, number, number, number] {
  let minHi = addrHi[0]!;
  let minLo = addrLo[0]!;
  let maxHi = minHi;
  let maxLo = minLo;
  for (let i = 1; i < n; i++) {
    const h = addrHi[i]!;
    const l = addrLo[i]!;
    if (h < minHi || (h === minHi && l < minLo)) {
      minHi = h;
      minLo = l;
    }
    if (h > maxHi || (h === maxHi && l > maxLo)) {
      maxHi = h;
      maxLo = l;
    }
  }
  return [minHi, minLo, maxHi, maxLo];
}

/** out[i] = (hi[i], lo[i]) - (baseHi, baseLo), exact while below 2^53. */
function offsetsFrom(hi: Uint32Array, lo: Uint32Array, n: number, baseHi: number, baseLo: number, out: Float64Array): void {
  for (let i = 0; i < n; i++) out[i] = (hi[i]! - baseHi) * TWO32 + (lo[i]! - baseLo);
}

function gather(from: Float64Array, rowsOf: Int32Array, rows: number, out: Float64Array): void {
  for (let r = 0; r < rows; r++) out[r] = from[rowsOf[r]!]!;
}

/** Exclusive ends: start + size when sized, else the next row's start or the limit, whichever is lower. */
function narrowEnds(
  start: Float64Array,
  rowSize: Float64Array,
  rowLimit: Int32Array,
  limHi: Uint32Array,
  limLo: Uint32Array,
  baseHi: number,
  baseLo: number,
  end: Float64Array,
): void {
  const rows = start.length;
  for (let r = 0; r < rows; r++) {
    const s = start[r]!;
    const size = rowSize[r]!;
    if (size > 0) {
      const e = s + size;
      end[r] = e < EXACT ? e : Infinity;
    } else {
      const next = r + 1 < rows ? start[r + 1]! : Infinity;
      const c = rowLimit[r]!;
      let limit = Infinity;
      if (c >= 0) {
        const l = (limHi[c]! - baseHi) * TWO32 + (limLo[c]! - baseLo);
        if (l > s) limit = l;
      }
      end[r] = next < limit ? next : limit;
    }
  }
}

function decodeName(source: NameSource, off: number, len: number): string {
  if (!Buffer.isBuffer(source)) return (source as readonly string[])[off] ?? '';
  let end: number;
  if (len === NUL_TERMINATED) {
    end = source.indexOf(0, off);
    if (end < 0) end = source.length;
  } else {
    end = off + len;
  }
  return source.toString('utf8', off, end);
}

function leadingUnderscores(name: string): number {
  let i = 0;
  while (i < name.length && name.charCodeAt(i) === 95) i++;
  return i;
}

function compareNames(a: string, b: string): number {
  const under = leadingUnderscores(a) - leadingUnderscores(b);
  if (under !== 0) return under;
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Candidate indices ordered by address, equal addresses by index. When
 * offset * 2^k + index stays exact in a double, one native typed-array sort
 * does it; otherwise a comparator sort.
 */
function sortByAddress(off: Float64Array, addrHi: Uint32Array, addrLo: Uint32Array, n: number, narrow: boolean): Uint32Array {
  const order = new Uint32Array(n);
  let maxOff = 0;
  for (let i = 0; i < n; i++) if (off[i]! > maxOff) maxOff = off[i]!;
  // Often the input is in order already (/proc/kallsyms nearly is): then there is nothing to sort.
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) if (off[i]! < off[i - 1]!) sorted = false;
  if (sorted && narrow) {
    for (let i = 0; i < n; i++) order[i] = i;
    return order;
  }
  let slots = 1;
  while (slots < n) slots *= 2;
  if (narrow && maxOff * slots + slots < EXACT) {
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = off[i]! * slots + i;
    keys.sort();
    for (let i = 0; i < n; i++) order[i] = keys[i]! % slots;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  if (narrow) return order.sort((a, b) => off[a]! - off[b]! || a - b);
  return order.sort((a, b) => addrHi[a]! - addrHi[b]! || addrLo[a]! - addrLo[b]! || a - b);
}

/** Names of a table's rows, decoded on demand and cached. */
class NameColumn {
  private readonly cache = new Map<number, string>();

  constructor(
    private readonly sources: readonly NameSource[],
    private readonly src: Uint16Array,
    private readonly off: Uint32Array,
    private readonly len: Int32Array,
  ) {}

  get(row: number): string {
    const hit = this.cache.get(row);
    if (hit !== undefined) return hit;
    const name = decodeName(this.sources[this.src[row]!]!, this.off[row]!, this.len[row]!);
    if (this.cache.size >= MAX_CACHED_NAMES) this.cache.clear();
    this.cache.set(row, name);
    return name;
  }

  estimateBytes(): number {
    let bytes = this.src.byteLength + this.off.byteLength + this.len.byteLength;
    const seen = new Set<NameSource>();
    for (const s of this.sources) {
      if (seen.has(s)) continue;
      seen.add(s);
      if (Buffer.isBuffer(s)) bytes += s.length;
      else for (const name of s as readonly string[]) bytes += 16 + name.length;
    }
    for (const name of this.cache.values()) bytes += 32 + name.length;
    return bytes;
  }
}

export class SymbolTable {
  private constructor(
    /** Narrow tables: addresses are base + offset. */
    private readonly base: bigint,
    private readonly startOff: Float64Array | null,
    /** Exclusive end of each row's extent, after zero-size extension; Infinity for "to the top of the address space". */
    private readonly endOff: Float64Array | null,
    private readonly originOff: Float64Array | null,
    /** Wide tables: exact 64-bit columns. */
    private readonly startBig: BigUint64Array | null,
    private readonly endBig: BigUint64Array | null,
    private readonly originBig: BigUint64Array | null,
    private readonly names: NameColumn,
    /** -1 when none. */
    readonly payload: Int32Array,
  ) {}

  static narrow(base: bigint, start: Float64Array, end: Float64Array, origin: Float64Array, names: NameColumn, payload: Int32Array): SymbolTable {
    return new SymbolTable(base, start, end, origin, null, null, null, names, payload);
  }

  static wide(start: BigUint64Array, end: BigUint64Array, origin: BigUint64Array, names: NameColumn, payload: Int32Array): SymbolTable {
    return new SymbolTable(0n, null, null, null, start, end, origin, names, payload);
  }

  static readonly empty = SymbolTable.narrow(
    0n,
    new Float64Array(0),
    new Float64Array(0),
    new Float64Array(0),
    new NameColumn([], new Uint16Array(0), new Uint32Array(0), new Int32Array(0)),
    new Int32Array(0),
  );

  get length(): number {
    return this.payload.length;
  }

  /** Whether rows are held as exact doubles from a base (the normal case) rather than BigUint64 columns. */
  get isNarrow(): boolean {
    return this.startOff !== null;
  }

  /** Sorts, merges aliases (see SymbolTableBuilder.build) and computes extents. */
  static fromSymbols(symbols: readonly RawSymbol[]): SymbolTable {
    const b = new SymbolTableBuilder(symbols.length);
    const names = symbols.map((s) => s.name);
    const src = b.addNameSource(names);
    for (let i = 0; i < symbols.length; i++) {
      const s = symbols[i]!;
      const [hi, lo] = toHiLo(s.address);
      const size = typeof s.sizeBytes === 'bigint' ? Number(s.sizeBytes) : s.sizeBytes;
      const [limHi, limLo] = s.limit === undefined ? [-1, 0] : toHiLo(s.limit);
      b.add(hi, lo, size, RANK_OF[s.binding ?? 'global'], src, i, 0, s.payload ?? -1, limHi, limLo);
      if (s.origin !== undefined && s.origin !== s.address) {
        const [oh, ol] = toHiLo(s.origin);
        b.setOrigin(oh, ol);
      }
    }
    return b.build();
  }

  /** Index of the row whose extent holds `address`, or -1. */
  findIndex(address: TableAddress): SymbolIndex {
    const { startOff, endOff } = this;
    if (startOff === null || endOff === null) return this.findIndexWide(address);
    if (address < this.base) return -1;
    const a = Number(address - this.base);
    let lo = 0;
    let hi = startOff.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (startOff[mid]! <= a) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    // The nearest preceding symbol may be a small one nested in a bigger
    // function (e.g. a local label symbol); look back a little for the enclosing one.
    for (let i = found, k = 0; i >= 0 && k < ENCLOSING_SCAN_ROWS; i--, k++) {
      if (a < endOff[i]!) return i;
    }
    return -1;
  }

  private findIndexWide(address: TableAddress): SymbolIndex {
    const start = this.startBig!;
    const end = this.endBig!;
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
    for (let i = found, k = 0; i >= 0 && k < ENCLOSING_SCAN_ROWS; i--, k++) {
      if (address < end[i]!) return i;
    }
    return -1;
  }

  /** Start address of a row. */
  startAt(index: SymbolIndex): TableAddress {
    if (this.startBig !== null) return this.startBig[index]!;
    return this.base + BigInt(this.startOff![index]!);
  }

  /** Exclusive end of a row's extent. */
  endAt(index: SymbolIndex): TableAddress {
    if (this.endBig !== null) return this.endBig[index]!;
    const e = this.endOff![index]!;
    if (e === Infinity) return MAX_U64;
    const v = this.base + BigInt(e);
    return v > MAX_U64 ? MAX_U64 : v;
  }

  /** Where the function of a row starts (offsets are measured from here). */
  originAt(index: SymbolIndex): TableAddress {
    if (this.originBig !== null) return this.originBig[index]!;
    return this.base + BigInt(this.originOff![index]!);
  }

  /** Name of a row (decoded on first use). */
  nameAt(index: SymbolIndex): string {
    return this.names.get(index);
  }

  lookup(address: TableAddress): SymbolHit | null {
    const index = this.findIndex(address);
    if (index < 0) return null;
    return { name: this.names.get(index), offset: address - this.originAt(index), index };
  }

  /** Approximate memory cost (heap and the off-heap name bytes kept), for byte-bounded caches. */
  estimateBytes(): number {
    let bytes = this.payload.byteLength + this.names.estimateBytes();
    for (const col of [this.startOff, this.endOff, this.startBig, this.endBig, this.originBig]) bytes += col?.byteLength ?? 0;
    if (this.originOff !== null && this.originOff !== this.startOff) bytes += this.originOff.byteLength;
    return bytes;
  }
}

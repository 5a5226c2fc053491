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
//
// Building one runs once per binary, cold (in a fresh agent most of it before
// V8 has optimized anything), so the build is a few small passes over typed
// columns, each one loop that allocates nothing and meets the same types every
// time, and work is left for lookups where they need little of it: aliases
// tied on rank and size have their names compared only when a lookup hits them.

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

/** Sort keys are written as two Int32 words per 64-bit key, low word first; on a big-endian host the comparator sort runs instead. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The limit id of candidates without a limit. */
export const NO_LIMIT = 0;

/** A candidate's meta column value: its name source and its alias rank (RANK_*). */
export function candidateMeta(rank: number, source: number): number {
  return (source << 2) | rank;
}

/**
 * The builder's per-candidate columns, for bulk appends that bypass add() (see
 * SymbolTableBuilder.columnsFor). Row i is one candidate symbol.
 */
export class CandidateColumns {
  readonly addrHi: Uint32Array;
  readonly addrLo: Uint32Array;
  /** Bytes; 0 when unknown. */
  readonly size: Float64Array;
  /** candidateMeta(rank, source). */
  readonly meta: Int32Array;
  readonly nameOff: Uint32Array;
  /** The name's byte length, or NUL_TERMINATED. */
  readonly nameLen: Int32Array;
  /** -1 when none. */
  readonly payload: Int32Array;
  /** Limit id (SymbolTableBuilder.addLimit), NO_LIMIT when none. */
  readonly limit: Int32Array;

  constructor(capacity: number) {
    this.addrHi = new Uint32Array(capacity);
    this.addrLo = new Uint32Array(capacity);
    this.size = new Float64Array(capacity);
    this.meta = new Int32Array(capacity);
    this.nameOff = new Uint32Array(capacity);
    this.nameLen = new Int32Array(capacity);
    this.payload = new Int32Array(capacity);
    this.limit = new Int32Array(capacity);
  }

  /** A copy with room for `capacity` rows holding the first `rows` of these. */
  grown(capacity: number, rows: number): CandidateColumns {
    const c = new CandidateColumns(capacity);
    c.addrHi.set(this.addrHi.subarray(0, rows));
    c.addrLo.set(this.addrLo.subarray(0, rows));
    c.size.set(this.size.subarray(0, rows));
    c.meta.set(this.meta.subarray(0, rows));
    c.nameOff.set(this.nameOff.subarray(0, rows));
    c.nameLen.set(this.nameLen.subarray(0, rows));
    c.payload.set(this.payload.subarray(0, rows));
    c.limit.set(this.limit.subarray(0, rows));
    return c;
  }
}

/**
 * Flips the top bit of a 32-bit half of an address: as signed Int32 values
 * the results order as the unsigned halves do, and they are small integers
 * (so V8 compares them without ever meeting a boxed number).
 */
export const ORDER_BIAS = -0x8000_0000;

/**
 * A fresh [minHi, minLo, maxHi, maxLo] (each half ^ ORDER_BIAS) for tracking
 * the address range of appended candidates: empty, min above max.
 */
export function emptyBounds(): Int32Array {
  return Int32Array.of(0x7fff_ffff, 0x7fff_ffff, -0x8000_0000, -0x8000_0000);
}

/** Widens bounds `b` to address (hi, lo) given as ORDER_BIAS-flipped halves. */
function widen(b: Int32Array, hi: number, lo: number): void {
  if (hi < b[0]! || (hi === b[0] && lo < b[1]!)) {
    b[0] = hi;
    b[1] = lo;
  }
  if (hi > b[2]! || (hi === b[2] && lo > b[3]!)) {
    b[2] = hi;
    b[3] = lo;
  }
}

/**
 * Collects candidate symbols into growable typed columns, then sorts them,
 * merges aliases and computes extents (build()). Adding allocates nothing per
 * symbol beyond amortised column growth.
 */
export class SymbolTableBuilder {
  private n = 0;
  private cap: number;
  private cols: CandidateColumns;
  /** Lowest and highest candidate address (see emptyBounds). */
  private readonly bounds = emptyBounds();
  /** Extent limits, shared by the candidates that reference them by id (ELF section ends, kernel module ends); id 0 is NO_LIMIT. */
  private limHi = new Uint32Array(16);
  private limLo = new Uint32Array(16);
  private nLimits = 1;
  /** Whether some candidate has a name length of its own (not NUL_TERMINATED), or a payload: else rows need not copy those. */
  private mixedNameLengths = false;
  private anyPayload = false;
  /** Where the function starts when a row is a fragment of it (perf-map); null until used. */
  private originHi: Uint32Array | null = null;
  private originLo: Uint32Array | null = null;
  private readonly sources: NameSource[] = [];

  constructor(expected = 64) {
    this.cap = Math.max(16, expected);
    this.cols = new CandidateColumns(this.cap);
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

  /** Registers an extent limit (exclusive upper bound for zero-size candidates); returns its id for the limit column. */
  addLimit(hi: number, lo: number): number {
    if (this.nLimits === this.limHi.length) {
      const h = new Uint32Array(this.nLimits * 2);
      const l = new Uint32Array(this.nLimits * 2);
      h.set(this.limHi);
      l.set(this.limLo);
      this.limHi = h;
      this.limLo = l;
    }
    const id = this.nLimits++;
    this.limHi[id] = hi;
    this.limLo[id] = lo;
    return id;
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
    if (this.n === this.cap) this.grow(this.cap * 2);
    const c = this.cols;
    const i = this.n++;
    c.addrHi[i] = addrHi;
    c.addrLo[i] = addrLo;
    c.size[i] = sizeBytes;
    c.meta[i] = (source << 2) | rank;
    c.nameOff[i] = nameOffset;
    c.nameLen[i] = nameLength;
    c.payload[i] = payload;
    if (nameLength !== NUL_TERMINATED) this.mixedNameLengths = true;
    if (payload !== -1) this.anyPayload = true;
    let limit = NO_LIMIT;
    if (limitHi >= 0) {
      // Callers add runs of candidates with one limit (a module's end): share the last one when it matches.
      limit = this.nLimits - 1;
      if (limit === NO_LIMIT || this.limHi[limit] !== limitHi || this.limLo[limit] !== limitLo) limit = this.addLimit(limitHi, limitLo);
    }
    c.limit[i] = limit;
    if (this.originHi !== null && this.originLo !== null) {
      this.originHi[i] = addrHi;
      this.originLo[i] = addrLo;
    }
    widen(this.bounds, addrHi ^ ORDER_BIAS, addrLo ^ ORDER_BIAS);
  }

  /**
   * Bulk appends (e.g. straight from an ELF symbol table's bytes): makes room
   * for `more` candidates and returns the columns; the caller writes the
   * addrHi, addrLo, size, meta, nameOff and limit of rows [count, count + more),
   * tracks their address range in an emptyBounds() array, and then calls
   * appended(). Bulk-appended candidates have NUL-terminated names and no
   * payload. The columns are valid until the builder next grows.
   */
  columnsFor(more: number): CandidateColumns {
    this.reserve(more);
    return this.cols;
  }

  /** Ends a bulk append: rows [count, newCount) of columnsFor()'s columns are candidates whose addresses lie within `bounds`. */
  appended(newCount: number, bounds: Int32Array): void {
    if (newCount < this.n || newCount > this.cap) throw new RangeError(`appended ${newCount} rows with ${this.n} of ${this.cap} in use`);
    this.cols.nameLen.fill(NUL_TERMINATED, this.n, newCount);
    this.cols.payload.fill(-1, this.n, newCount);
    if (this.originHi !== null && this.originLo !== null) {
      this.originHi.set(this.cols.addrHi.subarray(this.n, newCount), this.n);
      this.originLo.set(this.cols.addrLo.subarray(this.n, newCount), this.n);
    }
    if (newCount > this.n) {
      widen(this.bounds, bounds[0]!, bounds[1]!);
      widen(this.bounds, bounds[2]!, bounds[3]!);
    }
    this.n = newCount;
  }

  /** Drops candidates added after the first `count` (e.g. from a table that turned out malformed). */
  truncate(count: number): void {
    if (count < this.n) this.n = Math.max(0, count);
    this.bounds.set(emptyBounds());
    const { addrHi, addrLo } = this.cols;
    for (let i = 0; i < this.n; i++) widen(this.bounds, addrHi[i]! ^ ORDER_BIAS, addrLo[i]! ^ ORDER_BIAS);
  }

  /** Sets the function start of the candidate just added (when it is a fragment starting later). */
  setOrigin(originHi: number, originLo: number): void {
    const i = this.n - 1;
    if (this.originHi === null || this.originLo === null) {
      this.originHi = new Uint32Array(this.cap);
      this.originLo = new Uint32Array(this.cap);
      this.originHi.set(this.cols.addrHi.subarray(0, this.n));
      this.originLo.set(this.cols.addrLo.subarray(0, this.n));
    }
    this.originHi[i] = originHi;
    this.originLo[i] = originLo;
  }

  /** Makes room for `more` further candidates at once. */
  reserve(more: number): void {
    if (this.n + more > this.cap) this.grow(Math.max(this.n + more, this.cap * 2));
  }

  private grow(c: number): void {
    this.cols = this.cols.grown(c, this.n);
    if (this.originHi !== null && this.originLo !== null) {
      const h = new Uint32Array(c);
      const l = new Uint32Array(c);
      h.set(this.originHi.subarray(0, this.n));
      l.set(this.originLo.subarray(0, this.n));
      this.originHi = h;
      this.originLo = l;
    }
    this.cap = c;
  }

  /**
   * Sorts, merges aliases (one row per start address) and computes extents.
   * The chosen alias is deterministic: global before weak before local, then sized before zero-size, then
   * fewer leading underscores (the public name over __libc_ internals), then
   * the shorter and lexicographically smaller name (as JS strings compare), then the earlier added.
   *
   * The passes: sort keys (sortKeys), one native integer sort, one merged
   * pass that groups equal addresses, picks each group's alias by rank and
   * size and writes the rows (mergeNarrow), and, for the groups still tied
   * after that, a list of the tied names for NameColumn to decide between
   * when a lookup first needs the row's name (collectTies).
   */
  build(): SymbolTable {
    const n = this.n;
    if (n === 0) return SymbolTable.empty;
    const cols = this.cols;
    const b = this.bounds;
    const minHi = (b[0]! ^ ORDER_BIAS) >>> 0;
    const minLo = (b[1]! ^ ORDER_BIAS) >>> 0;
    const maxHi = (b[2]! ^ ORDER_BIAS) >>> 0;
    const maxLo = (b[3]! ^ ORDER_BIAS) >>> 0;
    const span = (maxHi - minHi) * TWO32 + (maxLo - minLo);
    // Without origins of their own, candidates start their functions: the origin columns are the addresses.
    const originHi = this.originHi ?? cols.addrHi;
    const originLo = this.originLo ?? cols.addrLo;
    const narrow = span < EXACT && (this.originHi === null || originsFit(originHi, originLo, n, minHi, minLo));
    // The candidates in address order, equal addresses in the order added: as 64-bit keys
    // (offset * 2^bits + index, or group * 2^bits + index) in `keys`, read as Int32 pairs through `ord`.
    const keys = new BigUint64Array(n);
    const ord = new Int32Array(keys.buffer);
    let bits = 1;
    while (2 ** bits < n) bits++;
    const spanHi = maxHi - minHi - (maxLo < minLo ? 1 : 0);
    if (narrow && LITTLE_ENDIAN && spanHi < 2 ** (32 - bits)) {
      // The keys are written as their two 32-bit halves (no BigInt is made) and one native integer
      // sort orders them (quicker than a Float64Array's, which minds NaN and -0).
      if (sortKeys(cols.addrHi, cols.addrLo, n, minHi, minLo, bits, ord) === 0) keys.sort();
    } else {
      sortIndices(cols.addrHi, cols.addrLo, n, bits, ord);
    }
    if (!narrow) return this.buildWide(ord, bits, n);
    const limits = new Float64Array(this.nLimits);
    limitOffsets(this.limHi, this.limLo, this.nLimits, minHi, minLo, limits);
    const rows = new RowColumns(n, this.originHi !== null);
    const count = mergeNarrow(ord, bits, n, cols, limits, minHi, minLo, rows);
    if (this.mixedNameLengths || this.anyPayload || this.originHi !== null || this.sources.length > 1) {
      gatherRows(rows.cand, count, cols, originHi, originLo, minHi, minLo, rows);
    } else {
      rows.nameLen.fill(NUL_TERMINATED, 0, count);
      rows.payload.fill(-1, 0, count);
    }
    const nTies = rows.tieCount[0]!;
    let tied = NO_TIES;
    if (nTies > 0) {
      const names = new Int32Array(3 * (n - count + nTies));
      const first = new Int32Array(nTies + 1);
      const entries = collectTies(rows.ties, nTies, ord, bits, n, cols, originHi, originLo, minHi, minLo, this.sources, rows, names, first);
      tied = { names: names.subarray(0, 3 * entries), first };
    }
    const nameSrc = fit16(rows.nameSrc, count);
    const names = new NameColumn(usedSources(this.sources, nameSrc, tied), nameSrc, fit32(rows.nameOff, count), fitI32(rows.nameLen, count), tied);
    const start = fit64(rows.start, count);
    const origin = rows.origin === rows.start ? start : fit64(rows.origin, count);
    return SymbolTable.narrow(fromHiLo(minHi, minLo), start, fit64(rows.end, count), origin, names, fitI32(rows.payload, count));
  }

  /** Tables whose addresses span more than a double holds exactly: BigInt arithmetic (rare; not a hot path). */
  private buildWide(ord: Int32Array, bits: number, n: number): SymbolTable {
    const { addrHi, addrLo, size, meta, nameOff, nameLen, payload, limit } = this.cols;
    const { limHi, limLo, sources } = this;
    const mask = 2 ** bits - 1;
    const rowsOf: number[] = [];
    const rowSize: number[] = [];
    const rowLimit: number[] = [];
    for (let k = 0; k < n; ) {
      const first = ord[2 * k]! & mask;
      let e = k + 1;
      while (e < n && addrLo[ord[2 * e]! & mask] === addrLo[first] && addrHi[ord[2 * e]! & mask] === addrHi[first]) e++;
      let best = first;
      let maxSize = size[first]!;
      let lim = limit[first]!;
      for (let j = k + 1; j < e; j++) {
        const c = ord[2 * j]! & mask;
        if (size[c]! > maxSize) maxSize = size[c]!;
        const l = limit[c]!;
        if (l !== NO_LIMIT && (lim === NO_LIMIT || limHi[l]! > limHi[lim]! || (limHi[l] === limHi[lim] && limLo[l]! > limLo[lim]!))) lim = l;
        if (preferred(c, best, meta, size, nameOff, nameLen, sources)) best = c;
      }
      rowsOf.push(best);
      rowSize.push(maxSize);
      rowLimit.push(lim);
      k = e;
    }
    const rows = rowsOf.length;
    const start = new BigUint64Array(rows);
    const end = new BigUint64Array(rows);
    const origin = new BigUint64Array(rows);
    const rowPayload = new Int32Array(rows);
    const nameSrc = new Uint16Array(rows);
    const rowOff = new Uint32Array(rows);
    const rowLen = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const c = rowsOf[r]!;
      start[r] = fromHiLo(addrHi[c]!, addrLo[c]!);
      origin[r] = this.originHi !== null && this.originLo !== null ? fromHiLo(this.originHi[c]!, this.originLo[c]!) : start[r]!;
      rowPayload[r] = payload[c]!;
      nameSrc[r] = meta[c]! >> 2;
      rowOff[r] = nameOff[c]!;
      rowLen[r] = nameLen[c]!;
    }
    for (let r = 0; r < rows; r++) {
      const s = start[r]!;
      const sz = rowSize[r]!;
      if (sz > 0) {
        const e = s + BigInt(sz);
        end[r] = e > MAX_U64 ? MAX_U64 : e;
      } else {
        const next = r + 1 < rows ? start[r + 1]! : MAX_U64;
        const id = rowLimit[r]!;
        const l = id !== NO_LIMIT ? fromHiLo(limHi[id]!, limLo[id]!) : MAX_U64;
        const lim = l > s ? l : MAX_U64;
        end[r] = next < lim ? next : lim;
      }
    }
    return SymbolTable.wide(start, end, origin, new NameColumn(usedSources(sources, nameSrc, NO_TIES), nameSrc, rowOff, rowLen, NO_TIES), rowPayload);
  }
}

const EMPTY_SOURCE: readonly string[] = [];

/** The sources, with those no row is named from replaced by an empty one (e.g. .dynstr when .symtab named everything). */
function usedSources(sources: readonly NameSource[], nameSrc: Uint16Array, tied: TiedNames): NameSource[] {
  if (sources.length === 1) return nameSrc.length > 0 ? sources.slice() : [EMPTY_SOURCE];
  const used = new Uint8Array(sources.length);
  for (let r = 0; r < nameSrc.length; r++) used[nameSrc[r]!] = 1;
  for (let e = 0; e < tied.names.length; e += 3) used[tied.names[e]!] = 1;
  return sources.map((s, i) => (used[i] === 1 ? s : EMPTY_SOURCE));
}

/**
 * Rows whose alias is decided by name (TIED_NAME in their nameLen column;
 * their nameOff is an index into `first`): the names of the candidates
 * between first[t] and first[t + 1], as (source, offset, length) triples in
 * `names`, in the order added. The name the rule prefers is picked when a
 * lookup first needs it.
 */
interface TiedNames {
  readonly names: Int32Array;
  readonly first: Int32Array;
}

const NO_TIES: TiedNames = { names: new Int32Array(0), first: new Int32Array(1) };
/** nameLen of a row whose name is one of several tied aliases (see TiedNames). */
const TIED_NAME = -2;

/** The output columns of mergeNarrow, sized for the worst case (no aliases). */
class RowColumns {
  readonly start: Float64Array;
  readonly end: Float64Array;
  /** `start` itself when no candidate has an origin of its own. */
  readonly origin: Float64Array;
  /** The candidate each row is named after (its alias). */
  readonly cand: Int32Array;
  readonly nameSrc: Uint16Array;
  readonly nameOff: Uint32Array;
  readonly nameLen: Int32Array;
  readonly payload: Int32Array;
  /** Groups whose alias is decided by name: (row, first position in the sorted order) pairs, tieCount[0] of them. */
  readonly ties: Int32Array;
  readonly tieCount = new Int32Array(1);

  constructor(n: number, hasOrigin: boolean) {
    this.start = new Float64Array(n);
    this.end = new Float64Array(n);
    this.origin = hasOrigin ? new Float64Array(n) : this.start;
    this.cand = new Int32Array(n);
    this.nameSrc = new Uint16Array(n);
    this.nameOff = new Uint32Array(n);
    this.nameLen = new Int32Array(n);
    this.payload = new Int32Array(n);
    // A tied group has at least two candidates: at most n / 2 of them (and a slot for the open group).
    this.ties = new Int32Array(2 * (n >> 1) + 2);
  }
}

// The row columns are sized for the candidates; once the row count is known they are cut to it:
// a view when little would be wasted, else a copy.
function fit64(a: Float64Array, rows: number): Float64Array {
  return rows === a.length ? a : rows * 4 >= a.length * 3 ? a.subarray(0, rows) : a.slice(0, rows);
}
function fit32(a: Uint32Array, rows: number): Uint32Array {
  return rows === a.length ? a : rows * 4 >= a.length * 3 ? a.subarray(0, rows) : a.slice(0, rows);
}
function fitI32(a: Int32Array, rows: number): Int32Array {
  return rows === a.length ? a : rows * 4 >= a.length * 3 ? a.subarray(0, rows) : a.slice(0, rows);
}
function fit16(a: Uint16Array, rows: number): Uint16Array {
  return rows === a.length ? a : rows * 4 >= a.length * 3 ? a.subarray(0, rows) : a.slice(0, rows);
}

/** Whether every candidate's origin, as an offset from the base, is exact in a double. */
function originsFit(originHi: Uint32Array, originLo: Uint32Array, n: number, baseHi: number, baseLo: number): boolean {
  for (let i = 0; i < n; i++) {
    if (!(Math.abs((originHi[i]! - baseHi) * TWO32 + (originLo[i]! - baseLo)) < EXACT)) return false;
  }
  return true;
}

/** Each limit as an offset from the base (-Infinity for NO_LIMIT, so that any real limit is higher). */
function limitOffsets(limHi: Uint32Array, limLo: Uint32Array, count: number, baseHi: number, baseLo: number, out: Float64Array): void {
  for (let i = 0; i < count; i++) out[i] = (limHi[i]! - baseHi) * TWO32 + (limLo[i]! - baseLo);
  out[NO_LIMIT] = -Infinity;
}

/**
 * Writes each candidate's sort key, offset * 2^bits + index, as two Int32
 * words (low word first) into `keys`; returns 1 when the candidates are in
 * address order already (then there is nothing to sort: /proc/kallsyms
 * nearly is), else 0. Integer arithmetic only, the same for every candidate.
 */
function sortKeys(addrHi: Uint32Array, addrLo: Uint32Array, n: number, minHi: number, minLo: number, bits: number, keys: Int32Array): number {
  const shift = 32 - bits;
  let sorted = 1;
  let prevHi = 0;
  let prevLo = 0;
  for (let i = 0; i < n; i++) {
    const d = addrLo[i]! - minLo;
    const borrow = d < 0 ? 1 : 0;
    const lo = d + borrow * TWO32;
    const hi = addrHi[i]! - minHi - borrow;
    if (hi < prevHi || (hi === prevHi && lo < prevLo)) sorted = 0;
    prevHi = hi;
    prevLo = lo;
    keys[2 * i] = (lo << bits) | i;
    keys[2 * i + 1] = (hi << bits) | (lo >>> shift);
  }
  return sorted;
}

/**
 * The comparator sort, for when offset keys would not fit (huge spans, or a
 * big-endian host): writes the same layout as sortKeys, with each group of
 * equal addresses numbered in place of its offset.
 */
function sortIndices(addrHi: Uint32Array, addrLo: Uint32Array, n: number, bits: number, ord: Int32Array): void {
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  idx.sort((a, b) => addrHi[a]! - addrHi[b]! || addrLo[a]! - addrLo[b]! || a - b);
  let group = 0;
  for (let k = 0; k < n; k++) {
    const c = idx[k]!;
    if (k > 0 && (addrHi[c] !== addrHi[idx[k - 1]!] || addrLo[c] !== addrLo[idx[k - 1]!])) group++;
    ord[2 * k] = (group << bits) | c;
    ord[2 * k + 1] = group >>> (32 - bits);
  }
}

/**
 * The one pass over the sorted candidates: groups equal addresses (equal key
 * bits above the index), picks each group's alias and writes the row: start,
 * end (start + the group's largest size; for zero-size rows the group's
 * highest limit, cut to the next row's start), the alias and its name offset
 * (gatherRows copies the rest when candidates differ there). Aliases are
 * picked by rank and size here; groups where that leaves a tie are listed
 * for collectTies (names are compared only when a lookup needs them).
 * Returns the row count.
 *
 * Written so that every operation with type feedback runs on the first
 * candidates whatever the data (a new group and a winner there; per-candidate
 * selects instead of branches elsewhere): V8 optimizes the loop as soon as it
 * is hot, with nothing left to deoptimize on later.
 */
function mergeNarrow(
  ord: Int32Array,
  bits: number,
  n: number,
  cand: CandidateColumns,
  limits: Float64Array,
  minHi: number,
  minLo: number,
  out: RowColumns,
): number {
  const { addrHi, addrLo, size, meta, nameOff, limit } = cand;
  const { start, end, ties, tieCount } = out;
  const rowCand = out.cand;
  const rowOff = out.nameOff;
  const mask = 2 ** bits - 1;
  let rows = 0;
  let keyHi = 0; // the open row's key bits above the index
  let keyMid = 0;
  let s = 0; // its start
  let bestTier = 0; // its alias's rank * 2 + (zero-size ? 1 : 0): lower wins
  let tied = 0; // 1 when another candidate matches that tier
  let nTies = 0;
  let maxSize = 0;
  let maxLimit = 0;
  let rowEnd = 0;
  let rowOpen = 0; // 1 when the open row is zero-size: it ends at the next row's start at the latest
  for (let k = 0; k < n; k++) {
    const lo = ord[2 * k]!;
    const hi = ord[2 * k + 1]!;
    const c = lo & mask;
    const mid = lo >>> bits;
    if (rows === 0 || hi !== keyHi || mid !== keyMid) {
      const a = (addrHi[c]! - minHi) * TWO32 + (addrLo[c]! - minLo);
      start[rows] = a;
      if (rows > 0) {
        const cut = a < rowEnd ? a : rowEnd;
        end[rows - 1] = rowOpen === 1 ? cut : rowEnd;
      }
      nTies += tied;
      ties[2 * nTies] = rows;
      ties[2 * nTies + 1] = k;
      rows++;
      keyHi = hi;
      keyMid = mid;
      s = a;
      bestTier = 8;
      tied = 0;
      maxSize = 0;
      maxLimit = -Infinity;
    }
    const sz = size[c]!;
    if (sz > maxSize) maxSize = sz;
    const lim = limits[limit[c]!]!;
    if (lim > maxLimit) maxLimit = lim;
    const tier = ((meta[c]! & 3) << 1) | (sz > 0 ? 0 : 1);
    if (tier === bestTier) tied = 1;
    if (tier < bestTier) {
      bestTier = tier;
      tied = 0;
      rowCand[rows - 1] = c;
      rowOff[rows - 1] = nameOff[c]!;
    }
    const sized = s + maxSize;
    const sizedEnd = sized < EXACT ? sized : Infinity;
    const limitEnd = maxLimit > s ? maxLimit : Infinity;
    rowOpen = maxSize > 0 ? 0 : 1;
    rowEnd = rowOpen === 1 ? limitEnd : sizedEnd;
    end[rows - 1] = rowEnd;
    tieCount[0] = nTies + tied;
  }
  return rows;
}

/** Copies each row's alias's name source and length, payload and origin (when candidates differ there). */
function gatherRows(
  rowCand: Int32Array,
  rows: number,
  cand: CandidateColumns,
  originHi: Uint32Array,
  originLo: Uint32Array,
  minHi: number,
  minLo: number,
  out: RowColumns,
): void {
  const { meta, nameLen, payload } = cand;
  const { nameSrc, origin } = out;
  const rowLen = out.nameLen;
  const rowPayload = out.payload;
  for (let r = 0; r < rows; r++) {
    const c = rowCand[r]!;
    nameSrc[r] = meta[c]! >> 2;
    rowLen[r] = nameLen[c]!;
    rowPayload[r] = payload[c]!;
    origin[r] = (originHi[c]! - minHi) * TWO32 + (originLo[c]! - minLo);
  }
}

/**
 * For the groups mergeNarrow found tied on rank and size: lists the
 * candidates of the winning tier in `names`/`first` (see TiedNames) and marks
 * the row TIED_NAME, so that only the rows lookups hit ever have their
 * aliases' names read and compared. The row's payload and origin (which must
 * be final now) are the first such candidate's, as written; a group whose
 * candidates differ there is decided by name right away. Returns the number
 * of (source, offset, length) entries written.
 */
function collectTies(
  ties: Int32Array,
  nTies: number,
  ord: Int32Array,
  bits: number,
  n: number,
  cand: CandidateColumns,
  originHi: Uint32Array,
  originLo: Uint32Array,
  minHi: number,
  minLo: number,
  sources: readonly NameSource[],
  out: RowColumns,
  names: Int32Array,
  first: Int32Array,
): number {
  const { addrHi, addrLo, size, meta, nameOff, nameLen, payload } = cand;
  const mask = 2 ** bits - 1;
  let e = 0;
  for (let t = 0; t < nTies; t++) {
    const r = ties[2 * t]!;
    const k0 = ties[2 * t + 1]!;
    const w = out.cand[r]!; // the first candidate of the winning tier
    const tier = ((meta[w]! & 3) << 1) | (size[w]! > 0 ? 0 : 1);
    let same = 1; // 1 while the tier's candidates agree on payload and origin
    first[t] = e;
    for (let k = k0; k < n; k++) {
      const c = ord[2 * k]! & mask;
      if (addrHi[c] !== addrHi[w] || addrLo[c] !== addrLo[w]) break;
      if ((((meta[c]! & 3) << 1) | (size[c]! > 0 ? 0 : 1)) !== tier) continue;
      if (payload[c] !== payload[w] || originHi[c] !== originHi[w] || originLo[c] !== originLo[w]) same = 0;
      names[3 * e] = meta[c]! >> 2;
      names[3 * e + 1] = nameOff[c]!;
      names[3 * e + 2] = nameLen[c]!;
      e++;
    }
    if (same === 1) {
      out.nameOff[r] = t;
      out.nameLen[r] = TIED_NAME;
    } else {
      decideTie(r, k0, ord, mask, n, cand, originHi, originLo, minHi, minLo, sources, out);
      e = first[t]!;
    }
    first[t + 1] = e;
  }
  return e;
}

/** Decides a tied group by name now (its aliases differ in payload or origin): rewrites the row for the winner. */
function decideTie(
  r: number,
  k0: number,
  ord: Int32Array,
  mask: number,
  n: number,
  cand: CandidateColumns,
  originHi: Uint32Array,
  originLo: Uint32Array,
  minHi: number,
  minLo: number,
  sources: readonly NameSource[],
  out: RowColumns,
): void {
  const { addrHi, addrLo, size, meta, nameOff, nameLen, payload } = cand;
  let best = ord[2 * k0]! & mask;
  for (let k = k0 + 1; k < n; k++) {
    const c = ord[2 * k]! & mask;
    if (addrHi[c] !== addrHi[best] || addrLo[c] !== addrLo[best]) break;
    if (preferred(c, best, meta, size, nameOff, nameLen, sources)) best = c;
  }
  out.nameSrc[r] = meta[best]! >> 2;
  out.nameOff[r] = nameOff[best]!;
  out.nameLen[r] = nameLen[best]!;
  out.payload[r] = payload[best]!;
  out.origin[r] = (originHi[best]! - minHi) * TWO32 + (originLo[best]! - minLo);
}

/** Whether candidate c is the better alias than `best` by the full rule (strictly: on a full tie the earlier added stays). */
function preferred(
  c: number,
  best: number,
  meta: Int32Array,
  size: Float64Array,
  nameOff: Uint32Array,
  nameLen: Int32Array,
  sources: readonly NameSource[],
): boolean {
  const rank = (meta[c]! & 3) - (meta[best]! & 3);
  if (rank !== 0) return rank < 0;
  const sized = size[c]! > 0;
  if (sized !== size[best]! > 0) return sized;
  return compareDecodedNames(sources, meta[c]! >> 2, nameOff[c]!, nameLen[c]!, meta[best]! >> 2, nameOff[best]!, nameLen[best]!) < 0;
}

/** Orders two candidates' names by the alias rule, decoded. */
function compareDecodedNames(sources: readonly NameSource[], srcA: number, offA: number, lenA: number, srcB: number, offB: number, lenB: number): number {
  return compareNames(decodeName(sources[srcA]!, offA, lenA), decodeName(sources[srcB]!, offB, lenB));
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

/** The alias tie-break between two names at one address (negative: `a` names it): fewer leading underscores, shorter, smaller. */
export function compareNames(a: string, b: string): number {
  const under = leadingUnderscores(a) - leadingUnderscores(b);
  if (under !== 0) return under;
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Names of a table's rows, decoded on demand and cached. */
class NameColumn {
  private readonly cache = new Map<number, string>();

  constructor(
    private readonly sources: readonly NameSource[],
    private readonly src: Uint16Array,
    private readonly off: Uint32Array,
    private readonly len: Int32Array,
    private readonly tied: TiedNames,
  ) {}

  get(row: number): string {
    const hit = this.cache.get(row);
    if (hit !== undefined) return hit;
    const len = this.len[row]!;
    const name = len === TIED_NAME ? this.preferredTie(this.off[row]!) : decodeName(this.sources[this.src[row]!]!, this.off[row]!, len);
    if (this.cache.size >= MAX_CACHED_NAMES) this.cache.clear();
    this.cache.set(row, name);
    return name;
  }

  /** The name the alias rule prefers among tied candidates t (same rank and size class): fewer leading underscores, shorter, smaller, earlier. */
  private preferredTie(t: number): string {
    const { names, first } = this.tied;
    let best: string | null = null;
    for (let e = first[t]!; e < first[t + 1]!; e++) {
      const name = decodeName(this.sources[names[3 * e]!]!, names[3 * e + 1]!, names[3 * e + 2]!);
      if (best === null || compareNames(name, best) < 0) best = name;
    }
    return best ?? '';
  }

  estimateBytes(): number {
    // Columns may be views of larger buffers (see fit64): count what they keep alive.
    let bytes = this.src.buffer.byteLength + this.off.buffer.byteLength + this.len.buffer.byteLength;
    bytes += this.tied.names.buffer.byteLength + this.tied.first.buffer.byteLength;
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
    new NameColumn([], new Uint16Array(0), new Uint32Array(0), new Int32Array(0), NO_TIES),
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
    // Columns may be views of larger buffers (see fit64): count what they keep alive.
    let bytes = this.payload.buffer.byteLength + this.names.estimateBytes();
    for (const col of [this.startOff, this.endOff, this.startBig, this.endBig, this.originBig]) bytes += col?.buffer.byteLength ?? 0;
    if (this.originOff !== null && this.originOff !== this.startOff) bytes += this.originOff.buffer.byteLength;
    return bytes;
  }
}

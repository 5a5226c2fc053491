// Parser for /proc/kallsyms (and /proc/modules for module extents).
//
// The core kernel's lines come first and in ascending address order. That is
// a kernel invariant: scripts/kallsyms.c sorts the symbols at build time, the
// kernel's own address-to-name lookup (get_symbol_pos in kernel/kallsyms.c)
// binary-searches that sorted table, and /proc/kallsyms walks it by index.
// Only the lines after it, those with a "\t[name]" suffix (modules, [bpf]
// programs, ftrace trampolines), are in no global order. So the core's ~120k
// lines are never parsed: a lookup binary-searches the raw bytes (a few
// hundred lines sampled up front, then ~10 probes of the fixed "%016lx %c %s"
// layout) and decodes only the names it hits. Parsing every line into a
// SymbolTable cost 60-120 ms of CPU per `fleetprof record` run (mostly V8
// compiling the parse loop, then the table build) against a job budget of
// ~400 ms; now parse() costs ~4 ms. The few lines after the core are still
// parsed into a table. Input whose core part does not show the kernel's layout
// and order where it is looked at falls back to parsing every line.

import { compareNames, RANK_GLOBAL, RANK_LOCAL, RANK_WEAK, SymbolTable, SymbolTableBuilder } from './symbol-table.js';

/** Kernel virtual address. */
export type KernelAddress = bigint;
/** Index into KernelSymbols.modules. */
export type ModuleIndex = number;

export interface KernelSymbolHit {
  name: string;
  offset: bigint;
  /** null for the core kernel image. */
  module: string | null;
}

export interface ModuleExtent {
  name: string;
  start: KernelAddress;
  sizeBytes: number;
}

// nm-style letters of text symbols: upper case is global; w/W weak. Decides which alias names a shared address. -1: not text.
const RANK_OF_TYPE = new Int8Array(256).fill(-1);
RANK_OF_TYPE[0x54 /* T */] = RANK_GLOBAL;
RANK_OF_TYPE[0x74 /* t */] = RANK_LOCAL;
RANK_OF_TYPE[0x57 /* W */] = RANK_WEAK;
RANK_OF_TYPE[0x77 /* w */] = RANK_WEAK;

const HEX = new Int8Array(256).fill(-1);
for (let d = 0; d < 10; d++) HEX[0x30 + d] = d;
for (let d = 0; d < 6; d++) {
  HEX[0x41 + d] = 10 + d;
  HEX[0x61 + d] = 10 + d;
}

const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/** Value of 8 hex digits at `at`, or -1. */
function hex8(text: Buffer, at: number): number {
  let v = 0;
  for (let i = at; i < at + 8; i++) {
    const d = HEX[text[i]!]!;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** What JavaScript's \s matches in ASCII (lines are split at \n already). */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** The bytes JavaScript's \\s matches in ASCII, but \\n (lines are split at it already). */
const WHITESPACE = [0x20, 0x09, 0x0b, 0x0c, 0x0d];

/**
 * Where the module name of "NAME<whitespace>[MODULE]" starts, given where
 * NAME ends, or -1 when the line has no (non-empty, closed) module part.
 */
function moduleStart(text: Buffer, nameEnd: number, le: number): number {
  let p = nameEnd;
  while (p < le && isSpace(text[p]!)) p++;
  if (p === nameEnd || p >= le || text[p] !== 0x5b /* [ */) return -1;
  const close = text.indexOf(0x5d /* ] */, p + 1);
  return close > p + 1 && close < le ? p + 1 : -1;
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** a < b for 64-bit values given as high and low 32 bits. */
function less(aHi: number, aLo: number, bHi: number, bLo: number): boolean {
  return aHi < bHi || (aHi === bHi && aLo < bLo);
}

function fromHiLo(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

// A table row's payload carries its module (ModuleIndex + 1; 0 for the core
// kernel) and, in the low two bits, the winning alias's rank: a core line at
// the same address as a tail row competes with that row's winner.
function payloadOf(module: ModuleIndex, rank: number): number {
  return ((module + 1) << 2) | rank;
}

function moduleOfPayload(p: number): ModuleIndex {
  return (p >> 2) - 1;
}

interface ModuleAccumulator {
  name: string;
  /** From /proc/modules: [start, limit) as high/low 32 bits, or null. */
  extent: { startHi: number; startLo: number; limitHi: number; limitLo: number; limit: bigint } | null;
  minHi: number;
  minLo: number;
  /** Highest address of a symbol without a limit, if any. */
  maxHi: number;
  maxLo: number;
  sawUnlimited: boolean;
  sawLimited: boolean;
}

/** What parseLines read from a run of lines. */
interface ParsedLines {
  /** Text symbols with non-zero addresses; payloads by payloadOf. */
  table: SymbolTable;
  modules: string[];
  /** Some line parsed; some parsed line had a non-zero address. */
  sawAny: boolean;
  sawNonZero: boolean;
  malformedLines: number;
  /** Lowest and highest core kernel (no module) text symbol, or null. */
  coreMin: KernelAddress | null;
  coreMax: KernelAddress | null;
  moduleRanges: Map<string, { start: KernelAddress; end: KernelAddress }>;
}

/**
 * Parses the "ADDR TYPE NAME [MODULE]" lines from byte `from` on straight
 * from the bytes: only text symbols become rows, with their names left in
 * `text` (decoded when a lookup hits them).
 */
function parseLines(text: Buffer, from: number, modulesText: string | undefined): ParsedLines {
  const extents = modulesText === undefined ? [] : parseProcModules(modulesText);
  const extentByName = new Map(extents.map((e) => [e.name, e]));
  const modules: string[] = [];
  const moduleIndex = new Map<string, ModuleIndex>();
  const acc: ModuleAccumulator[] = [];
  const builder = new SymbolTableBuilder(Math.max(1024, (text.length - from) >>> 5));
  const source = builder.addNameSource(text);
  let malformedLines = 0;
  let sawAny = false;
  let sawNonZero = false;
  let coreMinHi = 0xffff_ffff;
  let coreMinLo = 0xffff_ffff;
  let coreMaxHi = 0;
  let coreMaxLo = 0;
  let sawCore = false;
  // The module of the previous line, to skip decoding its name again (a module's symbols are contiguous).
  let lastModStart = -1;
  let lastModEnd = -1;
  let lastMod = -1;
  // Where the next byte of each WHITESPACE kind is (len: none left), as last searched.
  const nextWhitespace = new Float64Array(WHITESPACE.length).fill(-1);
  const len = text.length;
  let ls = from;
  while (ls < len) {
    let le = text.indexOf(0x0a, ls);
    if (le < 0) le = len;
    const lineStart = ls;
    ls = le + 1;
    if (le === lineStart) continue;
    let hi = 0;
    let lo = 0;
    let type = 0;
    let nameStart = 0;
    let nameEnd = 0;
    let modStart = -1;
    let modEnd = -1;
    if (
      le - lineStart > 19 &&
      text[lineStart + 16] === 0x20 &&
      text[lineStart + 18] === 0x20 &&
      (hi = hex8(text, lineStart)) >= 0 &&
      (lo = hex8(text, lineStart + 8)) >= 0 &&
      isLetter(text[lineStart + 17]!) &&
      !isSpace(text[lineStart + 19]!)
    ) {
      // The kernel's own layout, "%016lx %c %s" plus "\t[%s]" for modules: fixed columns, and the name
      // ends at the line's tab, if any (kernel symbol names hold no whitespace), so no per-byte scan.
      type = text[lineStart + 17]!;
      nameStart = lineStart + 19;
      // The name ends at the next whitespace: found with native searches whose results are kept
      // across lines (a tab, say, is searched for again only once the lines have passed it).
      nameEnd = le;
      for (let k = 0; k < WHITESPACE.length; k++) {
        let at = nextWhitespace[k]!;
        if (at < nameStart) {
          at = text.indexOf(WHITESPACE[k]!, nameStart);
          nextWhitespace[k] = at = at < 0 ? len : at;
        }
        if (at < nameEnd) nameEnd = at;
      }
      modStart = moduleStart(text, nameEnd, le);
      if (modStart >= 0) modEnd = text.indexOf(0x5d /* ] */, modStart);
    } else {
      // Anything else, as /^([0-9a-f]+)\s+([a-zA-Z])\s+(\S+)(?:\s+\[([^\]]+)\])?/i would read it.
      let p = lineStart;
      hi = 0;
      lo = 0;
      for (; p < le; p++) {
        const d = HEX[text[p]!]!;
        if (d < 0) break;
        hi = ((hi << 4) | (lo >>> 28)) >>> 0;
        lo = ((lo << 4) | d) >>> 0;
      }
      if (p === lineStart || p >= le || !isSpace(text[p]!)) {
        malformedLines++;
        continue;
      }
      while (p < le && isSpace(text[p]!)) p++;
      // TYPE: one letter, then whitespace
      type = p < le ? text[p]! : 0;
      if (!isLetter(type) || p + 1 >= le || !isSpace(text[p + 1]!)) {
        malformedLines++;
        continue;
      }
      p++;
      while (p < le && isSpace(text[p]!)) p++;
      // NAME
      nameStart = p;
      while (p < le && !isSpace(text[p]!)) p++;
      if (p === nameStart) {
        malformedLines++;
        continue;
      }
      nameEnd = p;
      modStart = moduleStart(text, nameEnd, le);
      if (modStart >= 0) modEnd = text.indexOf(0x5d /* ] */, modStart);
    }
    sawAny = true;
    const isZero = hi === 0 && lo === 0;
    if (!isZero) sawNonZero = true;
    const rank = RANK_OF_TYPE[type]!;
    if (rank < 0 || isZero) continue;
    let payload = payloadOf(-1, rank);
    let limitHi = -1;
    let limitLo = 0;
    if (modStart >= 0) {
      let idx = lastMod;
      if (idx < 0 || modEnd - modStart !== lastModEnd - lastModStart || text.compare(text, lastModStart, lastModEnd, modStart, modEnd) !== 0) {
        const mod = text.toString('utf8', modStart, modEnd);
        let found = moduleIndex.get(mod);
        if (found === undefined) {
          found = modules.length;
          modules.push(mod);
          moduleIndex.set(mod, found);
          const ext = extentByName.get(mod);
          let extent: ModuleAccumulator['extent'] = null;
          if (ext !== undefined) {
            const limit = ext.start + BigInt(ext.sizeBytes);
            const l = BigInt.asUintN(64, limit);
            extent = {
              startHi: Number(ext.start >> 32n),
              startLo: Number(ext.start & 0xffff_ffffn),
              limitHi: Number(l >> 32n),
              limitLo: Number(l & 0xffff_ffffn),
              limit,
            };
          }
          acc.push({ name: mod, extent, minHi: hi, minLo: lo, maxHi: 0, maxLo: 0, sawUnlimited: false, sawLimited: false });
        }
        idx = found;
        lastMod = idx;
        lastModStart = modStart;
        lastModEnd = modEnd;
      }
      payload = payloadOf(idx, rank);
      const a = acc[idx]!;
      const ext = a.extent;
      if (ext !== null && !less(hi, lo, ext.startHi, ext.startLo)) {
        limitHi = ext.limitHi;
        limitLo = ext.limitLo;
        a.sawLimited = true;
      } else if (!a.sawUnlimited || less(a.maxHi, a.maxLo, hi, lo)) {
        a.sawUnlimited = true;
        a.maxHi = hi;
        a.maxLo = lo;
      }
      if (less(hi, lo, a.minHi, a.minLo)) {
        a.minHi = hi;
        a.minLo = lo;
      }
    } else {
      sawCore = true;
      if (less(hi, lo, coreMinHi, coreMinLo)) {
        coreMinHi = hi;
        coreMinLo = lo;
      }
      if (!less(hi, lo, coreMaxHi, coreMaxLo)) {
        coreMaxHi = hi;
        coreMaxLo = lo;
      }
    }
    builder.add(hi, lo, 0, rank, source, nameStart, nameEnd - nameStart, payload, limitHi, limitLo);
  }
  const moduleRanges = new Map<string, { start: KernelAddress; end: KernelAddress }>();
  for (const a of acc) {
    let end = 0n;
    if (a.sawLimited && a.extent !== null) end = a.extent.limit;
    if (a.sawUnlimited) {
      const e = fromHiLo(a.maxHi, a.maxLo) + 1n;
      if (e > end) end = e;
    }
    moduleRanges.set(a.name, { start: fromHiLo(a.minHi, a.minLo), end });
  }
  return {
    table: builder.build(),
    modules,
    sawAny,
    sawNonZero,
    malformedLines,
    coreMin: sawCore ? fromHiLo(coreMinHi, coreMinLo) : null,
    coreMax: sawCore ? fromHiLo(coreMaxHi, coreMaxLo) : null,
    moduleRanges,
  };
}

/** Every line parsed into one table: the fallback, and what the lazy index must agree with. */
class TableIndex {
  readonly addressesHidden: boolean;
  readonly coreStart: KernelAddress;
  readonly coreEnd: KernelAddress;
  private readonly table: SymbolTable;

  constructor(private readonly parsed: ParsedLines) {
    // Every address read as 0: kptr_restrict (or a reader without CAP_SYSLOG); zero rows were skipped.
    this.addressesHidden = parsed.sawAny && !parsed.sawNonZero;
    this.table = parsed.table;
    this.coreStart = parsed.coreMin ?? 0n;
    this.coreEnd = parsed.coreMax === null ? 0n : parsed.coreMax + 1n;
  }

  get modules(): readonly string[] {
    return this.parsed.modules;
  }

  get malformedLines(): number {
    return this.parsed.malformedLines;
  }

  get symbolCount(): number {
    return this.table.length;
  }

  lookup(address: KernelAddress): KernelSymbolHit | null {
    const hit = this.table.lookup(address);
    if (hit === null) return null;
    const m = moduleOfPayload(this.table.payload[hit.index]!);
    return { name: hit.name, offset: hit.offset, module: m < 0 ? null : (this.parsed.modules[m] ?? null) };
  }

  moduleRange(module: string): { start: KernelAddress; end: KernelAddress } {
    return this.parsed.moduleRanges.get(module) ?? { start: 0n, end: 0n };
  }
}

// Reading the core part: lines in the kernel's "%016lx %c %s" layout, read
// in place. A line that is not in it, or addresses out of order, mean the
// input is not what the kernel writes: LAYOUT_BROKEN is thrown, and
// KernelSymbols parses every line instead.

/** Thrown (never escapes KernelSymbols) when the core part is not in the kernel's layout and order. */
const LAYOUT_BROKEN = new Error('kallsyms core section is not in the kernel layout');

/** The line last read by readFixed (one scratch record: probing allocates nothing). */
const probe = { hi: 0, lo: 0, type: 0 };

/** Reads the line starting at `s` (lines end by `end`) if it has the kernel's fixed layout. */
function readFixed(text: Buffer, s: number, end: number): boolean {
  // A newline within the first 20 bytes fails one of these checks, so the line's end is not needed.
  if (s + 19 >= end || text[s + 16] !== 0x20 || text[s + 18] !== 0x20) return false;
  const type = text[s + 17]!;
  if (!isLetter(type) || isSpace(text[s + 19]!)) return false;
  const hi = hex8(text, s);
  const lo = hex8(text, s + 8);
  if (hi < 0 || lo < 0) return false;
  probe.hi = hi;
  probe.lo = lo;
  probe.type = type;
  return true;
}

/** Whether the line just read is a text symbol the table would have kept (zero addresses are not). */
function probeIsText(): boolean {
  return RANK_OF_TYPE[probe.type]! >= 0 && (probe.hi !== 0 || probe.lo !== 0);
}

/** Start of the line holding byte p. */
function lineStartAt(text: Buffer, p: number): number {
  return p <= 0 ? 0 : text.lastIndexOf(0x0a, p - 1) + 1;
}

/** Start of the line after the one starting at s, or `end`. */
function nextLineStart(text: Buffer, s: number, end: number): number {
  const nl = text.indexOf(0x0a, s);
  return nl < 0 || nl + 1 >= end ? end : nl + 1;
}

/** Start of the line before the one starting at s, or -1. */
function prevLineStart(text: Buffer, s: number): number {
  return s <= 0 ? -1 : lineStartAt(text, s - 1);
}

/** Name of the fixed-layout line starting at s: up to the first whitespace, as the full parser reads it. */
function nameAt(text: Buffer, s: number, end: number): string {
  let e = s + 19;
  while (e < end && !isSpace(text[e]!)) e++;
  return text.toString('utf8', s + 19, e);
}

/** Lines of the core part checked one by one before it is sampled instead (and all of a smaller one). */
const SURVEY_HEAD_LINES = 64;
/** Evenly spaced lines checked in the rest of a bigger core part. */
const SURVEY_PROBES = 256;

interface CoreSurvey {
  /** Text symbols: counted when every line was checked, else extrapolated from the probes. */
  textSymbols: number;
  /** The last line's address is not 0 (the lines are sorted, so some address is not hidden). */
  anyNonZero: boolean;
  /** Lines checked (the first, the probes', the last) by offset, with their addresses: where lookups start. */
  samples: number;
  sampleAt: Float64Array;
  sampleHi: Uint32Array;
  sampleLo: Uint32Array;
}

/**
 * Checks the core part [0, end) where it is cheap to: its first lines, evenly spaced ones and the
 * last, for the layout and ascending order. Null when they show it is not the kernel's table.
 */
function surveyCore(text: Buffer, end: number): CoreSurvey | null {
  if (!readFixed(text, 0, end)) return null;
  const sampleAt = new Float64Array(SURVEY_PROBES + 2);
  const sampleHi = new Uint32Array(SURVEY_PROBES + 2);
  const sampleLo = new Uint32Array(SURVEY_PROBES + 2);
  sampleHi[0] = probe.hi;
  sampleLo[0] = probe.lo;
  let samples = 1;
  let prevHi = 0;
  let prevLo = 0;
  let s = 0;
  let symbols = 0;
  let textHi = -1;
  let textLo = -1;
  for (let n = 0; s < end && n < SURVEY_HEAD_LINES; n++) {
    if (!readFixed(text, s, end) || less(probe.hi, probe.lo, prevHi, prevLo)) return null;
    prevHi = probe.hi;
    prevLo = probe.lo;
    // Aliases share one row: count addresses.
    if (probeIsText() && (probe.hi !== textHi || probe.lo !== textLo)) {
      symbols++;
      textHi = probe.hi;
      textLo = probe.lo;
    }
    s = nextLineStart(text, s, end);
  }
  if (s < end) {
    // A byte probe lands on a line in proportion to the line's length, so each text symbol probed
    // stands for (bytes between probes / its line's length) of them: unbiased, unlike a mean length.
    const from = s;
    const step = (end - from) / SURVEY_PROBES;
    let estimate = 0;
    for (let i = 0; i <= SURVEY_PROBES; i++) {
      const ls = lineStartAt(text, i === SURVEY_PROBES ? end - 1 : from + Math.floor(step * (i + 0.5)));
      if (!readFixed(text, ls, end) || less(probe.hi, probe.lo, prevHi, prevLo)) return null;
      prevHi = probe.hi;
      prevLo = probe.lo;
      sampleAt[samples] = ls;
      sampleHi[samples] = probe.hi;
      sampleLo[samples] = probe.lo;
      samples++;
      if (i === SURVEY_PROBES || !probeIsText()) continue;
      const weight = step / (nextLineStart(text, ls, end) - ls);
      // An alias after another text line of its address adds no row.
      let alias = false;
      for (let b = prevLineStart(text, ls); b >= 0 && readFixed(text, b, end) && probe.hi === prevHi && probe.lo === prevLo; b = prevLineStart(text, b)) {
        if ((alias = probeIsText())) break;
      }
      if (!alias) estimate += weight;
    }
    symbols += Math.round(estimate);
  }
  return { textSymbols: symbols, anyNonZero: prevHi !== 0 || prevLo !== 0, samples, sampleAt, sampleHi, sampleLo };
}

/** A core text symbol as a lookup found it (cached by the line the search ended on). */
interface CoreSymbol {
  name: string;
  start: KernelAddress;
  rank: number;
}

/** Decoded core symbols and answers kept; lookups hit a small working set, these only bound pathological use. */
const MAX_CACHED_CORE_SYMBOLS = 8192;
const MAX_CACHED_HITS = 16_384;

/** The core part read in place, the lines after it parsed into a table. */
class LazyIndex {
  readonly addressesHidden: boolean;
  /** Core symbols by the offset of the last line at or below the looked-up address; null: none at or below. */
  private readonly cache = new Map<number, CoreSymbol | null>();
  /** Answers by address: the agent looks up the same hot addresses every interval. */
  private readonly hits = new Map<KernelAddress, KernelSymbolHit | null>();
  /** The core part's first and last text symbols' addresses, found on first use; null: none. */
  private coreText: { first: KernelAddress; last: KernelAddress } | null | undefined = undefined;
  private readonly tailMin: KernelAddress | null;

  constructor(
    private readonly text: Buffer,
    /** Bytes of the core part: whole lines, from the start of the file. */
    private readonly coreLen: number,
    private readonly survey: CoreSurvey | null,
    private readonly tail: ParsedLines,
  ) {
    const any = coreLen > 0 || tail.sawAny;
    this.addressesHidden = any && !(survey?.anyNonZero ?? false) && !tail.sawNonZero;
    this.tailMin = tail.table.length > 0 ? tail.table.startAt(0) : null;
  }

  get modules(): readonly string[] {
    return this.tail.modules;
  }

  get malformedLines(): number {
    return this.tail.malformedLines;
  }

  /** Rows of the tail's table plus the core's text symbols (an estimate when the core part is big). */
  get symbolCount(): number {
    if (this.addressesHidden) return 0;
    let core = this.survey?.textSymbols ?? 0;
    // The probes may all have missed text lines: still report that there are some.
    if (core === 0 && this.coreTextRange() !== null) core = 1;
    return this.tail.table.length + core;
  }

  get coreStart(): KernelAddress {
    const core = this.coreTextRange();
    const tail = this.tail.coreMin;
    if (core === null) return tail ?? 0n;
    return tail !== null && tail < core.first ? tail : core.first;
  }

  get coreEnd(): KernelAddress {
    const core = this.coreTextRange();
    const tail = this.tail.coreMax;
    if (core === null) return tail === null ? 0n : tail + 1n;
    return (tail !== null && tail > core.last ? tail : core.last) + 1n;
  }

  moduleRange(module: string): { start: KernelAddress; end: KernelAddress } {
    return this.tail.moduleRanges.get(module) ?? { start: 0n, end: 0n };
  }

  /**
   * What the table of every line would answer: its row for an address is the
   * text symbol with the greatest start at or below it, from the core part or
   * the tail, and that row's extent ends at the next start from either (or the
   * module's end).
   */
  lookup(address: KernelAddress): KernelSymbolHit | null {
    let hit = this.hits.get(address);
    if (hit === undefined) {
      hit = this.find(address);
      if (this.hits.size >= MAX_CACHED_HITS) this.hits.clear();
      this.hits.set(address, hit);
    }
    return hit;
  }

  private find(address: KernelAddress): KernelSymbolHit | null {
    if (this.addressesHidden || address < 0n || address > MAX_U64) return null;
    const table = this.tail.table;
    const r = this.tailMin !== null && this.tailMin <= address ? table.findIndex(address) : -1;
    if (r >= 0) {
      // The tail row holds the address unless a core symbol starts between it and the address.
      const tailStart = table.startAt(r);
      const range = this.coreTextRange();
      if (range === null || tailStart > range.last) return this.tailHit(r, address);
      const core = this.coreSymbolAt(address);
      if (core === null || core.start < tailStart) return this.tailHit(r, address);
      if (core.start === tailStart) {
        // Aliases across both parts: the table's rule, and core lines come first.
        let cmp = core.rank - (table.payload[r]! & 3);
        if (cmp === 0) cmp = compareNames(core.name, table.nameAt(r));
        if (cmp > 0) return this.tailHit(r, address);
      }
      return { name: core.name, offset: address - core.start, module: null };
    }
    const core = this.coreSymbolAt(address);
    if (core === null) return null;
    // No tail row holds the address: a tail row starting between the core symbol and the address
    // (then ending before it, at its module's end) would stop the core symbol's extent.
    if (this.tailMin !== null && this.tailMin <= address && this.tailStartsWithin(core.start, address)) return null;
    return { name: core.name, offset: address - core.start, module: null };
  }

  private tailHit(r: number, address: KernelAddress): KernelSymbolHit {
    const table = this.tail.table;
    const m = moduleOfPayload(table.payload[r]!);
    return { name: table.nameAt(r), offset: address - table.originAt(r), module: m < 0 ? null : (this.tail.modules[m] ?? null) };
  }

  /** Whether a tail row starts in [low, high]. */
  private tailStartsWithin(low: KernelAddress, high: KernelAddress): boolean {
    const table = this.tail.table;
    let lo = 0;
    let hi = table.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (table.startAt(mid) <= high) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && table.startAt(found) >= low;
  }

  /** The core text symbol with the greatest start at or below the address (its alias that names it), or null. */
  private coreSymbolAt(address: KernelAddress): CoreSymbol | null {
    const line = this.floorLine(Number(address >> 32n), Number(address & 0xffff_ffffn));
    if (line < 0) return null;
    let hit = this.cache.get(line);
    if (hit === undefined) {
      hit = this.textSymbolFrom(line);
      if (this.cache.size >= MAX_CACHED_CORE_SYMBOLS) this.cache.clear();
      this.cache.set(line, hit);
    }
    return hit;
  }

  /** Offset of the last core line whose address is at or below (aHi, aLo), or -1. */
  private floorLine(aHi: number, aLo: number): number {
    const { text, coreLen: end, survey } = this;
    if (survey === null) return -1;
    // The survey's samples narrow the search to a few hundred lines before any byte is read.
    const { sampleAt, sampleHi, sampleLo } = survey;
    let first = 0;
    let last = survey.samples - 1;
    let i = -1;
    while (first <= last) {
      const mid = (first + last) >>> 1;
      if (less(aHi, aLo, sampleHi[mid]!, sampleLo[mid]!)) {
        last = mid - 1;
      } else {
        i = mid;
        first = mid + 1;
      }
    }
    if (i < 0) return -1;
    // lo: a line at or below the address; hi: where the lines above it begin.
    let lo = sampleAt[i]!;
    let loHi = sampleHi[i]!;
    let loLo = sampleLo[i]!;
    let hi = end;
    let hiHi = 0xffff_ffff;
    let hiLo = 0xffff_ffff;
    if (i + 1 < survey.samples) {
      hi = sampleAt[i + 1]!;
      hiHi = sampleHi[i + 1]!;
      hiLo = sampleLo[i + 1]!;
    }
    for (;;) {
      let s = lineStartAt(text, lo + Math.floor((hi - lo) / 2));
      if (s <= lo) s = nextLineStart(text, lo, end);
      if (s >= hi) return lo;
      if (!readFixed(text, s, end) || less(probe.hi, probe.lo, loHi, loLo) || less(hiHi, hiLo, probe.hi, probe.lo)) throw LAYOUT_BROKEN;
      if (less(aHi, aLo, probe.hi, probe.lo)) {
        hi = s;
        hiHi = probe.hi;
        hiLo = probe.lo;
      } else {
        lo = s;
        loHi = probe.hi;
        loLo = probe.lo;
      }
    }
  }

  /**
   * The last text line at or before `line`, as the alias that names its
   * address: the sorted order puts every line of that address just before it.
   */
  private textSymbolFrom(line: number): CoreSymbol | null {
    const { text, coreLen: end } = this;
    let s = line;
    let prevHi = 0xffff_ffff;
    let prevLo = 0xffff_ffff;
    for (;;) {
      if (s < 0) return null;
      if (!readFixed(text, s, end) || less(prevHi, prevLo, probe.hi, probe.lo)) throw LAYOUT_BROKEN;
      prevHi = probe.hi;
      prevLo = probe.lo;
      if (probeIsText()) break;
      s = prevLineStart(text, s);
    }
    const addrHi = probe.hi;
    const addrLo = probe.lo;
    let best = s;
    let bestRank = RANK_OF_TYPE[probe.type]!;
    let bestName: string | null = null;
    // Walking back, an equal alias replaces the best: the earlier line wins, as in the table.
    for (let p = prevLineStart(text, s); p >= 0; p = prevLineStart(text, p)) {
      if (!readFixed(text, p, end)) throw LAYOUT_BROKEN;
      if (probe.hi !== addrHi || probe.lo !== addrLo) {
        if (less(addrHi, addrLo, probe.hi, probe.lo)) throw LAYOUT_BROKEN;
        break;
      }
      const rank = RANK_OF_TYPE[probe.type]!;
      if (rank < 0 || rank > bestRank) continue;
      if (rank < bestRank) {
        best = p;
        bestRank = rank;
        bestName = null;
        continue;
      }
      bestName ??= nameAt(text, best, end);
      const name = nameAt(text, p, end);
      if (compareNames(name, bestName) <= 0) {
        best = p;
        bestName = name;
      }
    }
    return { name: bestName ?? nameAt(text, best, end), start: fromHiLo(addrHi, addrLo), rank: bestRank };
  }

  /** First and last text symbol addresses of the core part, or null when it has none. */
  private coreTextRange(): { first: KernelAddress; last: KernelAddress } | null {
    if (this.coreText !== undefined) return this.coreText;
    const { text, coreLen: end } = this;
    let last: KernelAddress | null = null;
    let first: KernelAddress | null = null;
    if (!this.addressesHidden && this.survey !== null) {
      // Backwards from the end: past data and bss symbols to the last text symbol.
      let prevHi = 0xffff_ffff;
      let prevLo = 0xffff_ffff;
      for (let s = lineStartAt(text, end - 1); s >= 0; s = prevLineStart(text, s)) {
        if (!readFixed(text, s, end) || less(prevHi, prevLo, probe.hi, probe.lo)) throw LAYOUT_BROKEN;
        prevHi = probe.hi;
        prevLo = probe.lo;
        if (probeIsText()) {
          last = fromHiLo(probe.hi, probe.lo);
          break;
        }
      }
      // Forwards from the last zero address (those are not symbols the table keeps).
      if (last !== null) {
        const zero = this.floorLine(0, 0);
        prevHi = 0;
        prevLo = 0;
        for (let s = zero < 0 ? 0 : nextLineStart(text, zero, end); s < end; s = nextLineStart(text, s, end)) {
          if (!readFixed(text, s, end) || less(probe.hi, probe.lo, prevHi, prevLo)) throw LAYOUT_BROKEN;
          prevHi = probe.hi;
          prevLo = probe.lo;
          if (probeIsText()) {
            first = fromHiLo(probe.hi, probe.lo);
            break;
          }
        }
      }
    }
    this.coreText = first === null || last === null ? null : { first, last };
    return this.coreText;
  }
}

export class KernelSymbols {
  private constructor(
    private readonly text: Buffer,
    private readonly modulesText: string | undefined,
    /** Null once the core part turned out not to be in the kernel's layout; then `full` answers. */
    private lazy: LazyIndex | null,
    private full: TableIndex | null,
  ) {}

  /**
   * Finds where the core kernel's lines end and parses only the lines after
   * them; the core part is read in place by lookups.
   * @param modulesText contents of /proc/modules; when given, a module's last
   *   symbol does not extend past the module's end.
   */
  static parse(kallsyms: string | Buffer, modulesText?: string): KernelSymbols {
    const text = typeof kallsyms === 'string' ? Buffer.from(kallsyms, 'utf8') : kallsyms;
    // The first "[" (of a module suffix, by the full parser's rules too: kernel symbol names hold
    // none) ends the core part at its line's start.
    const bracket = text.indexOf(0x5b /* [ */);
    const coreLen = bracket < 0 ? text.length : lineStartAt(text, bracket);
    let survey: CoreSurvey | null = null;
    if (coreLen > 0) {
      survey = surveyCore(text, coreLen);
      if (survey === null) return KernelSymbols.parseFull(text, modulesText);
    }
    const lazy = new LazyIndex(text, coreLen, survey, parseLines(text, coreLen, modulesText));
    return new KernelSymbols(text, modulesText, lazy, null);
  }

  /** Parses every line into one table (what parse() falls back to). */
  static parseFull(kallsyms: string | Buffer, modulesText?: string): KernelSymbols {
    const text = typeof kallsyms === 'string' ? Buffer.from(kallsyms, 'utf8') : kallsyms;
    return new KernelSymbols(text, modulesText, null, new TableIndex(parseLines(text, 0, modulesText)));
  }

  /** Whether every line was parsed (parseFull, or input not in the kernel's layout) rather than only those after the core kernel's. */
  get fullyParsed(): boolean {
    return this.lazy === null;
  }

  /** Module name by ModuleIndex. */
  get modules(): readonly string[] {
    return (this.lazy ?? this.full!).modules;
  }

  /**
   * True when every address read as 0: kptr_restrict (or a reader without
   * CAP_SYSLOG) hides them, and resolving against zeros would be garbage.
   */
  get addressesHidden(): boolean {
    return (this.lazy ?? this.full!).addressesHidden;
  }

  /** Lines that did not parse; lines of the core part are only read where lookups look. */
  get malformedLines(): number {
    return (this.lazy ?? this.full!).malformedLines;
  }

  /**
   * Text symbols (aliases at one address count once). Without a full parse
   * this is the rows parsed after the core part plus the core part's text
   * lines, extrapolated from sampled lines when it is big: an estimate within
   * a few percent.
   */
  get symbolCount(): number {
    return this.answer((index) => index.symbolCount);
  }

  /** [min, max) of core kernel text symbols, for the pprof mapping. */
  get coreStart(): KernelAddress {
    return this.answer((index) => index.coreStart);
  }

  get coreEnd(): KernelAddress {
    return this.answer((index) => index.coreEnd);
  }

  /** The text symbol holding the address, or null. The same address may get the same (shared) object back. */
  lookup(address: KernelAddress): KernelSymbolHit | null {
    return this.answer((index) => index.lookup(address));
  }

  /** Address range to report as the pprof mapping of a module (or of the core kernel for null). */
  rangeOf(module: string | null): { start: KernelAddress; end: KernelAddress } {
    if (module === null) return { start: this.coreStart, end: this.coreEnd };
    return (this.lazy ?? this.full!).moduleRange(module);
  }

  /**
   * Asks the lazy index, unless it meets a core part not in the kernel's
   * layout: then everything is parsed, for good, and the full table answers.
   */
  private answer<T>(ask: (index: LazyIndex | TableIndex) => T): T {
    if (this.lazy !== null) {
      try {
        return ask(this.lazy);
      } catch (e) {
        this.fallBack(e);
      }
    }
    return ask(this.full!);
  }

  private fallBack(e: unknown): void {
    if (e !== LAYOUT_BROKEN) throw e;
    this.lazy = null;
    this.full = new TableIndex(parseLines(this.text, 0, this.modulesText));
  }
}

/** /proc/modules: "name size refcount deps state address". Hidden addresses (0x0) are skipped. */
export function parseProcModules(text: string): ModuleExtent[] {
  const out: ModuleExtent[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const size = Number(f[1]);
    const addr = f[5]!;
    if (!Number.isFinite(size) || !/^0x[0-9a-f]+$/i.test(addr)) continue;
    const start = BigInt(addr);
    if (start === 0n) continue;
    out.push({ name: f[0]!, start, sizeBytes: size });
  }
  return out;
}

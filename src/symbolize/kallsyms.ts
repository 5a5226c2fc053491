// Parser for /proc/kallsyms (and /proc/modules for module extents).
// Hand-written: the format is "ADDR TYPE NAME [MODULE]" per line, and
// parsing the ~120k lines byte-wise into typed columns (no per-line strings
// or BigInts) is what keeps a refresh cheap.

import { RANK_GLOBAL, RANK_LOCAL, RANK_WEAK, SymbolTable, SymbolTableBuilder } from './symbol-table.js';

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

export class KernelSymbols {
  private constructor(
    private readonly table: SymbolTable,
    /** Module name by ModuleIndex; payload -1 in the table means core kernel. */
    readonly modules: readonly string[],
    /**
     * True when every address read as 0: kptr_restrict (or a reader without
     * CAP_SYSLOG) hides them, and resolving against zeros would be garbage.
     */
    readonly addressesHidden: boolean,
    readonly malformedLines: number,
    /** [min, max) of core kernel text symbols, for the pprof mapping. */
    readonly coreStart: KernelAddress,
    readonly coreEnd: KernelAddress,
    private readonly moduleRanges: ReadonlyMap<string, { start: KernelAddress; end: KernelAddress }>,
  ) {}

  get symbolCount(): number {
    return this.table.length;
  }

  /**
   * Parses "ADDR TYPE NAME [MODULE]" lines straight from the bytes: only text
   * symbols become rows, with their names left in `kallsyms` (kept, and
   * decoded when a lookup hits them).
   * @param modulesText contents of /proc/modules; when given, a module's last
   *   symbol does not extend past the module's end.
   */
  static parse(kallsyms: string | Buffer, modulesText?: string): KernelSymbols {
    const text = typeof kallsyms === 'string' ? Buffer.from(kallsyms, 'utf8') : kallsyms;
    const extents = modulesText === undefined ? [] : parseProcModules(modulesText);
    const extentByName = new Map(extents.map((e) => [e.name, e]));
    const modules: string[] = [];
    const moduleIndex = new Map<string, ModuleIndex>();
    const acc: ModuleAccumulator[] = [];
    const builder = new SymbolTableBuilder(Math.max(1024, text.length >>> 5));
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
    let ls = 0;
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
      let payload = -1;
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
        payload = idx;
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
    const hidden = sawAny && !sawNonZero;
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
    const coreStart = sawCore ? fromHiLo(coreMinHi, coreMinLo) : 0n;
    const coreEnd = sawCore ? fromHiLo(coreMaxHi, coreMaxLo) + 1n : 0n;
    return new KernelSymbols(hidden ? SymbolTable.empty : builder.build(), modules, hidden, malformedLines, coreStart, coreEnd, moduleRanges);
  }

  lookup(address: KernelAddress): KernelSymbolHit | null {
    const hit = this.table.lookup(address);
    if (hit === null) return null;
    const p = this.table.payload[hit.index]!;
    return { name: hit.name, offset: hit.offset, module: p < 0 ? null : (this.modules[p] ?? null) };
  }

  /** Address range to report as the pprof mapping of a module (or of the core kernel for null). */
  rangeOf(module: string | null): { start: KernelAddress; end: KernelAddress } {
    if (module === null) return { start: this.coreStart, end: this.coreEnd };
    return this.moduleRanges.get(module) ?? { start: 0n, end: 0n };
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

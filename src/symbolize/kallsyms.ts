// Parser for /proc/kallsyms (and /proc/modules for module extents).
// Hand-written: the format is "ADDR TYPE NAME [MODULE]" per line.

import { SymbolTable, type RawSymbol } from './symbol-table.js';

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

const LINE_RE = /^([0-9a-f]+)\s+([a-zA-Z])\s+(\S+)(?:\s+\[([^\]]+)\])?/i;
const TEXT_TYPES = new Set(['t', 'T', 'w', 'W']);
// nm-style letters: upper case is global; w/W weak. Decides which alias names a shared address.
const BINDING_OF_TYPE: Record<string, 'global' | 'weak' | 'local'> = { T: 'global', t: 'local', W: 'weak', w: 'weak' };

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
   * @param modulesText contents of /proc/modules; when given, a module's last
   *   symbol does not extend past the module's end.
   */
  static parse(kallsymsText: string, modulesText?: string): KernelSymbols {
    const extents = modulesText === undefined ? [] : parseProcModules(modulesText);
    const extentByName = new Map(extents.map((e) => [e.name, e]));
    const modules: string[] = [];
    const moduleIndex = new Map<string, ModuleIndex>();
    const raw: RawSymbol[] = [];
    let malformedLines = 0;
    let sawAny = false;
    let sawNonZero = false;
    let coreStart = 0xffff_ffff_ffff_ffffn;
    let coreEnd = 0n;
    const moduleRanges = new Map<string, { start: KernelAddress; end: KernelAddress }>();
    for (const line of kallsymsText.split('\n')) {
      if (line === '') continue;
      const m = LINE_RE.exec(line);
      if (m === null) {
        malformedLines++;
        continue;
      }
      sawAny = true;
      const address = BigInt('0x' + m[1]!);
      if (address !== 0n) sawNonZero = true;
      if (!TEXT_TYPES.has(m[2]!) || address === 0n) continue;
      const mod = m[4];
      let payload = -1;
      let limit: bigint | undefined;
      if (mod !== undefined) {
        let idx = moduleIndex.get(mod);
        if (idx === undefined) {
          idx = modules.length;
          modules.push(mod);
          moduleIndex.set(mod, idx);
        }
        payload = idx;
        const ext = extentByName.get(mod);
        if (ext !== undefined && address >= ext.start) limit = ext.start + BigInt(ext.sizeBytes);
        const r = moduleRanges.get(mod);
        if (r === undefined) moduleRanges.set(mod, { start: address, end: limit ?? address + 1n });
        else {
          if (address < r.start) r.start = address;
          const e = limit ?? address + 1n;
          if (e > r.end) r.end = e;
        }
      } else {
        if (address < coreStart) coreStart = address;
        if (address >= coreEnd) coreEnd = address + 1n;
      }
      raw.push({ name: m[3]!, address, sizeBytes: 0, binding: BINDING_OF_TYPE[m[2]!], payload, ...(limit !== undefined ? { limit } : {}) });
    }
    const hidden = sawAny && !sawNonZero;
    if (coreEnd === 0n) coreStart = 0n;
    return new KernelSymbols(hidden ? SymbolTable.empty : SymbolTable.fromSymbols(raw), modules, hidden, malformedLines, coreStart, coreEnd, moduleRanges);
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

// Finds the call-frame information of an ELF file and runs every FDE: the
// .eh_frame that the loader maps (located through .eh_frame_hdr, PT_GNU_EH_FRAME,
// when section headers are gone) and the .debug_frame that some binaries and
// most separate debug files carry instead. Where both describe an address,
// .eh_frame wins: it is what the program itself unwinds with.

import { ElfReader, FileByteSource, SHT_NOBITS, type ByteSource, type SectionHeader } from '../symbolize/elf.js';
import { CfiError } from './dwarf-cursor.js';
import { fdeAt, parseCfiSection, parseCfiSectionSteps, parseEhFrameHeader, type CfiSection, type CfiSectionKind, type Fde } from './cfi-entries.js';
import { CfaInterpreter, runFde, type CfaRow } from './cfa-program.js';
import { RowFlattener, type CompiledTable } from './row-compiler.js';
import { grownTo } from '../util/typed-vec.js';

const PT_GNU_EH_FRAME = 0x6474e550;

export interface FdeRows {
  fde: Fde;
  source: CfiSectionKind;
  rows: CfaRow[];
}

export interface ElfCfi {
  /** Every readable FDE with its rows, sorted by pcBegin. */
  fdes: FdeRows[];
  /** Entries or FDE programs that could not be read, by reason. */
  skipped: Map<string, number>;
  /** The FDE count .eh_frame_hdr announced (undefined: no header). */
  headerFdeCount: number | undefined;
}

function count(map: Map<string, number>, key: string, n = 1): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

/** Reads the CFI of the ELF file at `path` (throws ElfError when it is not a readable ELF file). */
export function readElfCfi(path: string): ElfCfi {
  const source = new FileByteSource(path);
  try {
    return readCfi(source);
  } finally {
    source.close();
  }
}

export function readCfi(source: ByteSource): ElfCfi {
  const steps = readCfiSteps(source);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/** FDE programs run between two yields of readCfiSteps. */
export const FDES_PER_STEP = 4000;

/** Whether an FDE describes code: one of a discarded function (address 0 or an empty range) does not. */
function describesCode(pcBegin: number, pcEnd: number): boolean {
  return pcEnd > pcBegin && pcBegin !== 0;
}

/**
 * readCfi() in steps: it yields after every FDES_PER_STEP FDE programs, so
 * the agent can build a big runtime's table (node: 76k FDEs) a slice per
 * event-loop turn instead of holding the loop for the whole of it. Rows come
 * as objects: for tests and tools; the table worker uses compileCfiSteps.
 */
export function* readCfiSteps(source: ByteSource): Generator<void, ElfCfi> {
  const { sections, skipped, headerFdeCount, dataAddress } = locateCfi(source);
  const fdes: FdeRows[] = [];
  const covered = new Ranges();
  const interpreter = new CfaInterpreter();
  let ran = 0;
  for (const { kind, bytes, address } of sections) {
    const section = parseCfiSection(bytes, kind, address, dataAddress === undefined ? {} : { dataAddress });
    for (const [reason, n] of section.skipped) count(skipped, `${kind}: ${reason}`, n);
    const columns = section.fdes;
    for (let i = 0; i < columns.count; i++) {
      const pcBegin = columns.pcBegin[i]!;
      const pcEnd = columns.pcEnd[i]!;
      if (!describesCode(pcBegin, pcEnd)) continue;
      if (kind === '.debug_frame' && covered.overlaps(pcBegin, pcEnd)) continue;
      const fde = fdeAt(section, i);
      try {
        fdes.push({ fde, source: kind, rows: runFde(fde, interpreter) });
      } catch (error) {
        if (!(error instanceof CfiError)) throw error;
        count(skipped, `${kind}: FDE program: ${error.message}`);
      }
      if (++ran % FDES_PER_STEP === 0) yield;
    }
    if (kind === '.eh_frame') {
      for (const f of fdes) covered.add(f.fde.pcBegin, f.fde.pcEnd);
      covered.sort();
    }
  }
  fdes.sort((a, b) => a.fde.pcBegin - b.fde.pcBegin);
  return { fdes, skipped, headerFdeCount };
}

/** FDE programs run between two yields of compileCfiSteps: a few ms, so a small file waits little behind a big one. */
const STREAMED_FDES_PER_STEP = 1000;

export interface CompiledCfi {
  /** Undefined when the file has no usable FDE. */
  table: CompiledTable | undefined;
  skipped: Map<string, number>;
}

/**
 * readCfiSteps() and compileTable() in one pass, column-wise (for the table
 * worker: node's 76k FDEs and 400k rows as objects were most of the agent's
 * peak memory and much of its CPU). FDE headers are read into typed arrays
 * and put in address order (an index sort, skipped when the linker already
 * emitted them in order); each program is then run in that order straight
 * from the section's bytes, its rows (rule ids) fed to the row compiler.
 * One difference from readCfi: a .debug_frame FDE is dropped where an
 * .eh_frame FDE covers its range even when the latter's program fails.
 */
export function* compileCfiSteps(source: ByteSource): Generator<void, CompiledCfi> {
  // The header's table is not needed here (its FDE count is for readCfi's checks): decoding node's 76k entries cost ~5% of its build.
  const { sections, skipped, dataAddress } = locateCfi(source, false);
  const parsed: CfiSection[] = [];
  // The FDEs kept, in section order: which section, which FDE of it, and where it starts.
  let kept = 0;
  let keptSection = new Uint8Array(0);
  let keptFde = new Uint32Array(0);
  let keptPcBegin = new Float64Array(0);
  // Whether they are in address order already (linkers emit .eh_frame nearly so), and their range.
  let inOrder = true;
  let lowest = Infinity;
  let highest = -Infinity;
  const covered = new Ranges();
  for (const { kind, bytes, address } of sections) {
    const section = yield* parseCfiSectionSteps(bytes, kind, address, dataAddress === undefined ? {} : { dataAddress });
    for (const [reason, n] of section.skipped) count(skipped, `${kind}: ${reason}`, n);
    const columns = section.fdes;
    const sectionIndex = parsed.length;
    parsed.push(section);
    const size = kept + columns.count;
    keptSection = grownTo(keptSection, size, (n) => new Uint8Array(n));
    keptFde = grownTo(keptFde, size, (n) => new Uint32Array(n));
    keptPcBegin = grownTo(keptPcBegin, size, (n) => new Float64Array(n));
    for (let i = 0; i < columns.count; i++) {
      const pcBegin = columns.pcBegin[i]!;
      const pcEnd = columns.pcEnd[i]!;
      if (!describesCode(pcBegin, pcEnd)) continue;
      if (kind === '.debug_frame' && covered.overlaps(pcBegin, pcEnd)) continue;
      keptSection[kept] = sectionIndex;
      keptFde[kept] = i;
      keptPcBegin[kept] = pcBegin;
      if (kept > 0 && pcBegin < keptPcBegin[kept - 1]!) inOrder = false;
      lowest = Math.min(lowest, pcBegin);
      highest = Math.max(highest, pcBegin);
      kept++;
    }
    // Only a .debug_frame after it needs .eh_frame's ranges.
    if (kind === '.eh_frame' && sections.length > 1) {
      for (let k = 0; k < kept; k++) covered.add(keptPcBegin[k]!, parsed[keptSection[k]!]!.fdes.pcEnd[keptFde[k]!]!);
      covered.sort();
    }
    yield;
  }
  const run = new FdeRunner(parsed, keptSection, keptFde, inOrder ? undefined : addressOrder(keptPcBegin, kept, lowest, highest), kept, skipped);
  while (!run.step(STREAMED_FDES_PER_STEP)) yield;
  return { table: run.table(), skipped };
}

/**
 * Runs the kept FDEs' programs in address order into the row compiler, a
 * number at a time (a plain method, not the generator's body: V8 optimizes
 * its loop sooner, and it is most of a cold build's time).
 */
class FdeRunner {
  private readonly interpreter = new CfaInterpreter();
  private readonly flattener: RowFlattener;
  private next = 0;
  /** Where the last FDE whose program ran ends: its end row waits for where the next runnable one starts. */
  private pendingEnd = -1;

  constructor(
    private readonly sections: CfiSection[],
    private readonly keptSection: Uint8Array,
    private readonly keptFde: Uint32Array,
    /** Undefined: the kept FDEs are in address order already. */
    private readonly order: Uint32Array | undefined,
    private readonly kept: number,
    private readonly skipped: Map<string, number>,
  ) {
    this.flattener = new RowFlattener(this.interpreter.rules, kept);
  }

  /** Runs up to `budget` FDEs; returns whether all have run. */
  step(budget: number): boolean {
    const { interpreter, flattener, sections, keptSection, keptFde, order } = this;
    const stop = Math.min(this.kept, this.next + budget);
    for (let k = this.next; k < stop; k++) {
      const at = order === undefined ? k : order[k]!;
      const section = sections[keptSection[at]!]!;
      const columns = section.fdes;
      const i = keptFde[at]!;
      const cie = section.cies[columns.cie[i]!]!;
      const pcBegin = columns.pcBegin[i]!;
      const start = columns.instructionsStart[i]!;
      try {
        interpreter.run(cie, pcBegin, columns.pcEnd[i]!, section.bytes, start, columns.instructionsEnd[i]!, section.sectionAddress + start);
      } catch (error) {
        if (!(error instanceof CfiError)) throw error;
        count(this.skipped, `${section.kind}: FDE program: ${error.message}`);
        continue;
      }
      if (this.pendingEnd >= 0) flattener.endFde(this.pendingEnd, pcBegin);
      flattener.addRows(interpreter, cie.isSignalFrame);
      this.pendingEnd = columns.pcEnd[i]!;
    }
    this.next = stop;
    return stop === this.kept;
  }

  /** The table (undefined: no FDE's program ran). */
  table(): CompiledTable | undefined {
    if (this.pendingEnd < 0) return undefined;
    this.flattener.endFde(this.pendingEnd, undefined);
    this.sections.length = 0;
    return this.flattener.compile();
  }
}

/**
 * The indices [0, n) in order of `pcBegin` (whose values lie in [lowest,
 * highest]), equal ones in index order: what a stable sort of the FDEs gives.
 */
function addressOrder(pcBegin: Float64Array, n: number, lowest: number, highest: number): Uint32Array {
  const order = new Uint32Array(n);
  if ((highest - lowest + 1) * n <= Number.MAX_SAFE_INTEGER) {
    // (address, index) packed into one exact double: the typed array's own numeric sort, no comparator calls (node: 76k FDEs, not in order).
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = (pcBegin[i]! - lowest) * n + i;
    keys.sort();
    for (let k = 0; k < n; k++) order[k] = keys[k]! % n;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => pcBegin[a]! - pcBegin[b]! || a - b);
  return order;
}

/**
 * Address ranges, sorted by start once all are added, for .debug_frame FDEs
 * to be checked against .eh_frame's. Column-wise, and sorted by index as a
 * stable sort of (begin, end) objects would be.
 */
class Ranges {
  private begin: number[] = [];
  private end: number[] = [];

  add(begin: number, end: number): void {
    this.begin.push(begin);
    this.end.push(end);
  }

  sort(): void {
    const order = [...this.begin.keys()].sort((a, b) => this.begin[a]! - this.begin[b]! || a - b);
    this.begin = order.map((i) => this.begin[i]!);
    this.end = order.map((i) => this.end[i]!);
  }

  /** Whether [begin, end) meets any of the sorted, disjoint-enough ranges. */
  overlaps(begin: number, end: number): boolean {
    let lo = 0;
    let hi = this.begin.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.end[mid]! <= begin) lo = mid + 1;
      else if (this.begin[mid]! >= end) hi = mid - 1;
      else return true;
    }
    return false;
  }
}

/** The CFI sections of a file: .eh_frame (found through .eh_frame_hdr when section headers are gone), then .debug_frame. */
function locateCfi(
  source: ByteSource,
  /** false: read .eh_frame_hdr only when it is the way to .eh_frame (no section headers). */
  countHeaderFdes = true,
): {
  sections: { kind: CfiSectionKind; bytes: Buffer; address: number }[];
  skipped: Map<string, number>;
  headerFdeCount: number | undefined;
  dataAddress: number | undefined;
} {
  const elf = new ElfReader(source);
  const skipped = new Map<string, number>();
  const loaded = (sh: SectionHeader | undefined): sh is SectionHeader => sh !== undefined && sh.type !== SHT_NOBITS && sh.sizeBytes > 0;
  const got = elf.section('.got');
  const dataAddress = got === undefined ? undefined : Number(got.address);

  let headerFdeCount: number | undefined;
  let ehFrame: { bytes: Buffer; address: number } | undefined;
  const ehSection = elf.section('.eh_frame');
  if (loaded(ehSection)) ehFrame = { bytes: source.read(ehSection.offset, ehSection.sizeBytes), address: Number(ehSection.address) };
  const headerSegment = elf.programHeaders.find((p) => p.type === PT_GNU_EH_FRAME);
  if (headerSegment !== undefined && headerSegment.fileSizeBytes > 0 && (countHeaderFdes || ehFrame === undefined)) {
    try {
      const header = parseEhFrameHeader(source.read(headerSegment.offset, headerSegment.fileSizeBytes), Number(headerSegment.vaddr));
      headerFdeCount = header.table.length;
      if (ehFrame === undefined) ehFrame = ehFrameFromSegments(elf, source, header.ehFramePointer);
    } catch (error) {
      if (!(error instanceof CfiError)) throw error;
      count(skipped, `.eh_frame_hdr: ${error.message}`);
    }
  }
  const sections: { kind: CfiSectionKind; bytes: Buffer; address: number }[] = [];
  if (ehFrame !== undefined) sections.push({ kind: '.eh_frame', ...ehFrame });
  const debugFrame = elf.section('.debug_frame');
  if (loaded(debugFrame)) sections.push({ kind: '.debug_frame', bytes: source.read(debugFrame.offset, debugFrame.sizeBytes), address: 0 });
  return { sections, skipped, headerFdeCount, dataAddress };
}

/** Without section headers: .eh_frame runs from the header's pointer to the end of its load segment. */
function ehFrameFromSegments(elf: ElfReader, source: ByteSource, address: number): { bytes: Buffer; address: number } | undefined {
  for (const segment of elf.loadSegments) {
    const start = Number(segment.vaddr);
    if (address < start || address >= start + segment.fileSizeBytes) continue;
    const offset = segment.offset + (address - start);
    return { bytes: source.read(offset, segment.fileSizeBytes - (address - start)), address };
  }
  return undefined;
}

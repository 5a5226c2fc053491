// FROZEN: src/unwind/elf-cfi.ts as of commit 7accc28, the object-per-row builder that the columnar
// one replaced. test/unwind-table-identity.test.ts builds every table with both and asks
// for byte-identical cache entries; do not edit or optimise this copy.
//
// Finds the call-frame information of an ELF file and runs every FDE: the
// .eh_frame that the loader maps (located through .eh_frame_hdr, PT_GNU_EH_FRAME,
// when section headers are gone) and the .debug_frame that some binaries and
// most separate debug files carry instead. Where both describe an address,
// .eh_frame wins: it is what the program itself unwinds with.

import { ElfReader, FileByteSource, SHT_NOBITS, type ByteSource, type SectionHeader } from '../../../src/symbolize/elf.js';
import { CfiError } from './dwarf-cursor.js';
import { parseCfiSection, parseCfiSectionSteps, parseEhFrameHeader, type CfiSectionKind, type Fde } from './cfi-entries.js';
import { runFde, type CfaRow } from './cfa-program.js';
import { RowFlattener, type CompiledTable } from './row-compiler.js';

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

/**
 * readCfi() in steps: it yields after every FDES_PER_STEP FDE programs, so
 * the agent can build a big runtime's table (node: 76k FDEs) a slice per
 * event-loop turn instead of holding the loop for the whole of it.
 */
export function* readCfiSteps(source: ByteSource): Generator<void, ElfCfi> {
  const { sections, skipped, headerFdeCount, dataAddress } = locateCfi(source);
  const fdes: FdeRows[] = [];
  const covered: { begin: number; end: number }[] = [];
  let ran = 0;
  for (const { kind, bytes, address } of sections) {
    const section = parseCfiSection(bytes, kind, address, dataAddress === undefined ? {} : { dataAddress });
    for (const [reason, n] of section.skipped) count(skipped, `${kind}: ${reason}`, n);
    for (const fde of section.fdes) {
      // An FDE of a discarded function (address 0 or an empty range) describes no code.
      if (fde.pcEnd <= fde.pcBegin || fde.pcBegin === 0) continue;
      if (kind === '.debug_frame' && overlaps(covered, fde.pcBegin, fde.pcEnd)) continue;
      try {
        fdes.push({ fde, source: kind, rows: runFde(fde) });
      } catch (error) {
        if (!(error instanceof CfiError)) throw error;
        count(skipped, `${kind}: FDE program: ${error.message}`);
      }
      if (++ran % FDES_PER_STEP === 0) yield;
    }
    if (kind === '.eh_frame') {
      for (const f of fdes) covered.push({ begin: f.fde.pcBegin, end: f.fde.pcEnd });
      covered.sort((a, b) => a.begin - b.begin);
    }
  }
  fdes.sort((a, b) => a.fde.pcBegin - b.fde.pcBegin);
  return { fdes, skipped, headerFdeCount };
}

/** FDE programs run between two yields of compileCfiSteps: a few ms, so a small file waits little behind a big one. */
const STREAMED_FDES_PER_STEP = 500;

export interface CompiledCfi {
  /** Undefined when the file has no usable FDE. */
  table: CompiledTable | undefined;
  skipped: Map<string, number>;
}

/**
 * readCfiSteps() and compileTable() in one pass that keeps only one FDE's
 * rows at a time (for the table worker: node's 400k rows as objects were
 * most of the agent's peak memory). FDE headers are read and sorted first;
 * each program is then run in address order and fed to the row compiler.
 * One difference from readCfi: a .debug_frame FDE is dropped where an
 * .eh_frame FDE covers its range even when the latter's program fails.
 */
export function* compileCfiSteps(source: ByteSource): Generator<void, CompiledCfi> {
  // The header's table is not needed here (its FDE count is for readCfi's checks): decoding node's 76k entries cost ~5% of its build.
  const { sections, skipped, dataAddress } = locateCfi(source, false);
  const headers: { fde: Fde; kind: CfiSectionKind }[] = [];
  const covered: { begin: number; end: number }[] = [];
  for (const { kind, bytes, address } of sections) {
    const section = yield* parseCfiSectionSteps(bytes, kind, address, dataAddress === undefined ? {} : { dataAddress });
    for (const [reason, n] of section.skipped) count(skipped, `${kind}: ${reason}`, n);
    for (const fde of section.fdes) {
      if (fde.pcEnd <= fde.pcBegin || fde.pcBegin === 0) continue;
      if (kind === '.debug_frame' && overlaps(covered, fde.pcBegin, fde.pcEnd)) continue;
      headers.push({ fde, kind });
    }
    // Only a .debug_frame after it needs .eh_frame's ranges.
    if (kind === '.eh_frame' && sections.length > 1) {
      for (const h of headers) covered.push({ begin: h.fde.pcBegin, end: h.fde.pcEnd });
      covered.sort((a, b) => a.begin - b.begin);
    }
    yield;
  }
  // Linkers emit .eh_frame nearly in address order: skip the sort when it already is.
  let sorted = true;
  for (let i = 1; i < headers.length && sorted; i++) sorted = headers[i - 1]!.fde.pcBegin <= headers[i]!.fde.pcBegin;
  if (!sorted) headers.sort((a, b) => a.fde.pcBegin - b.fde.pcBegin);
  const flattener = new RowFlattener();
  // One FDE of look-ahead: an FDE's end row depends on where the next runnable one starts.
  let pending: { fde: Fde; rows: CfaRow[] } | undefined;
  for (let i = 0; i < headers.length; i++) {
    const { fde, kind } = headers[i]!;
    let rows: CfaRow[];
    try {
      rows = runFde(fde);
    } catch (error) {
      if (!(error instanceof CfiError)) throw error;
      count(skipped, `${kind}: FDE program: ${error.message}`);
      continue;
    }
    if (pending !== undefined) flattener.add(pending.fde, pending.rows, fde.pcBegin);
    pending = { fde, rows };
    if ((i + 1) % STREAMED_FDES_PER_STEP === 0) yield;
  }
  if (pending === undefined) return { table: undefined, skipped };
  flattener.add(pending.fde, pending.rows, undefined);
  headers.length = 0;
  return { table: flattener.compile(), skipped };
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

/** Whether [begin, end) meets any of the sorted, disjoint-enough ranges. */
function overlaps(ranges: { begin: number; end: number }[], begin: number, end: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const range = ranges[mid]!;
    if (range.end <= begin) lo = mid + 1;
    else if (range.begin >= end) hi = mid - 1;
    else return true;
  }
  return false;
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

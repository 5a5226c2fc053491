// CIEs and FDEs of .eh_frame and .debug_frame (DWARF 5 §6.4.1, LSB "Exception
// Frames"), and the binary-search table of .eh_frame_hdr. Only the structure
// is read here; the CFA programs are run by cfa-program.ts.
//
// The two sections differ in small ways this file keeps in one place:
// - the CIE id is 0 in .eh_frame, all-ones in .debug_frame;
// - an FDE's CIE pointer is relative to itself in .eh_frame, a section offset in .debug_frame;
// - .eh_frame addresses use the CIE's 'R' pointer encoding, .debug_frame's are plain address_size words;
// - .eh_frame has the 'z' augmentation data, .debug_frame CIEs of version 4 have address and segment sizes.

import { CfiError, DW_EH_PE_absptr, DW_EH_PE_omit, DwarfCursor, type EncodingBases } from './dwarf-cursor.js';
import { grownTo } from '../util/typed-vec.js';

export type CfiSectionKind = '.eh_frame' | '.debug_frame';

export interface Cie {
  /** Offset of the entry in its section. */
  offset: number;
  version: number;
  augmentation: string;
  codeAlignment: number;
  dataAlignment: number;
  returnAddressRegister: number;
  /** 'R': how the FDEs' addresses are encoded. */
  fdePointerEncoding: number;
  /** 'S': frames described by it are signal trampolines (the caller's pc is not a return address). */
  isSignalFrame: boolean;
  /** Augmentation 'z': every FDE has augmentation data (skipped). */
  hasAugmentationData: boolean;
  initialInstructions: Buffer;
}

export interface Fde {
  offset: number;
  cie: Cie;
  /** ELF virtual addresses; pcEnd exclusive. */
  pcBegin: number;
  pcEnd: number;
  instructions: Buffer;
  /** For DW_CFA_set_loc: where the instruction bytes start (pcrel bases). */
  instructionsAddress: number;
}

/** Bytes of .eh_frame per FDE, typically (a 20-byte header and the program; node: 36, libc: 41): the capacity a section starts with. */
const TYPICAL_FDE_BYTES = 32;

/**
 * Every FDE of a section, column-wise: a big runtime has 76k of them, and an
 * object and a Buffer view for each were most of the builder's garbage. The
 * instructions are (start, end) offsets into the section's bytes.
 */
export class FdeColumns {
  count = 0;
  /** Offset of the entry in its section. */
  offset: Uint32Array<ArrayBuffer>;
  /** Index into the section's `cies`. */
  cie: Uint32Array<ArrayBuffer>;
  pcBegin: Float64Array<ArrayBuffer>;
  pcEnd: Float64Array<ArrayBuffer>;
  instructionsStart: Uint32Array<ArrayBuffer>;
  instructionsEnd: Uint32Array<ArrayBuffer>;

  constructor(capacity: number) {
    const size = Math.max(16, capacity);
    this.offset = new Uint32Array(size);
    this.cie = new Uint32Array(size);
    this.pcBegin = new Float64Array(size);
    this.pcEnd = new Float64Array(size);
    this.instructionsStart = new Uint32Array(size);
    this.instructionsEnd = new Uint32Array(size);
  }

  push(offset: number, cie: number, pcBegin: number, pcEnd: number, instructionsStart: number, instructionsEnd: number): void {
    if (this.count === this.offset.length) this.grow();
    const i = this.count++;
    this.offset[i] = offset;
    this.cie[i] = cie;
    this.pcBegin[i] = pcBegin;
    this.pcEnd[i] = pcEnd;
    this.instructionsStart[i] = instructionsStart;
    this.instructionsEnd[i] = instructionsEnd;
  }

  private grow(): void {
    const size = this.offset.length * 2;
    const u32 = (n: number) => new Uint32Array(n);
    const f64 = (n: number) => new Float64Array(n);
    this.offset = grownTo(this.offset, size, u32);
    this.cie = grownTo(this.cie, size, u32);
    this.pcBegin = grownTo(this.pcBegin, size, f64);
    this.pcEnd = grownTo(this.pcEnd, size, f64);
    this.instructionsStart = grownTo(this.instructionsStart, size, u32);
    this.instructionsEnd = grownTo(this.instructionsEnd, size, u32);
  }
}

export interface CfiSection {
  kind: CfiSectionKind;
  /** The section's bytes and virtual address (0 for .debug_frame): FDE instructions are offsets into them. */
  bytes: Buffer;
  sectionAddress: number;
  /** The readable CIEs, indexed by FdeColumns.cie. */
  cies: Cie[];
  fdes: FdeColumns;
  cieCount: number;
  /** Entries skipped, by error code ("bad CIE pointer", truncations, unsupported augmentations). */
  skipped: Map<string, number>;
}

/** FDE `i` of a section as an object (for readers that want one: readCfi, tests). */
export function fdeAt(section: CfiSection, i: number): Fde {
  const { fdes } = section;
  const start = fdes.instructionsStart[i]!;
  return {
    offset: fdes.offset[i]!,
    cie: section.cies[fdes.cie[i]!]!,
    pcBegin: fdes.pcBegin[i]!,
    pcEnd: fdes.pcEnd[i]!,
    instructions: section.bytes.subarray(start, fdes.instructionsEnd[i]!),
    instructionsAddress: section.sectionAddress + start,
  };
}

const DEBUG_FRAME_CIE_ID_32 = 0xffff_ffff;

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/**
 * Reads every CIE and FDE of a .eh_frame or .debug_frame section's bytes.
 * `sectionAddress` is the section's virtual address (0 for .debug_frame, which
 * is not loaded); `bases` adds the datarel base (.got) where known. An entry
 * that cannot be read is skipped and counted; the walk goes on at the next
 * entry, whose position the length field still gives.
 */
export function parseCfiSection(bytes: Buffer, kind: CfiSectionKind, sectionAddress: number, bases: Omit<EncodingBases, 'sectionAddress'> = {}): CfiSection {
  const steps = parseCfiSectionSteps(bytes, kind, sectionAddress, bases);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/** Entries read between two yields of parseCfiSectionSteps. */
const ENTRIES_PER_STEP = 2000;

/** DW_EH_PE_pcrel | DW_EH_PE_sdata4: how GCC, clang and binutils encode .eh_frame's FDE addresses on x86-64. */
const PCREL_SDATA4 = 0x1b;

/** parseCfiSection() in steps (node's .eh_frame has 76k entries: the table worker serves small files in between). */
export function* parseCfiSectionSteps(
  bytes: Buffer,
  kind: CfiSectionKind,
  sectionAddress: number,
  bases: Omit<EncodingBases, 'sectionAddress'> = {},
): Generator<void, CfiSection> {
  const parser = new SectionParser(bytes, kind, { ...bases, sectionAddress });
  while (!parser.parse(ENTRIES_PER_STEP)) yield;
  return { kind, bytes, sectionAddress, cies: parser.cies, fdes: parser.fdes, cieCount: parser.cies.length, skipped: parser.skipped };
}

/** The walk over a section's entries, resumable (parse() reads a number of them at a time). */
class SectionParser {
  /** CIE offset -> index into `cies`, or the error that made it unreadable. */
  private readonly cieIndex = new Map<number, number | CfiError>();
  readonly cies: Cie[] = [];
  readonly fdes: FdeColumns;
  readonly skipped = new Map<string, number>();
  private readonly cursor: DwarfCursor;
  private done = false;
  // FDEs of one CIE come in long runs: the last FDE's CIE skips the map, and when its addresses
  // are pcrel sdata4 with augmentation data (every x86-64 toolchain's), its FDEs take the fast path.
  private lastCieOffset = -1;
  private lastCie: number | CfiError = 0;
  private lastCieFast = false;

  constructor(
    private readonly bytes: Buffer,
    private readonly kind: CfiSectionKind,
    private readonly bases: EncodingBases,
  ) {
    this.cursor = new DwarfCursor(bytes);
    this.fdes = new FdeColumns(Math.ceil(bytes.length / TYPICAL_FDE_BYTES));
  }

  /** Reads up to `budget` entries; returns whether the section is done. */
  parse(budget: number): boolean {
    const bytes = this.bytes;
    const size = bytes.length;
    const cursor = this.cursor;
    const fast = this.kind === '.eh_frame';
    const sectionAddress = this.bases.sectionAddress;
    let entries = 0;
    while (!this.done && cursor.pos + 4 <= size && entries < budget) {
      // The fast path: an FDE of the last CIE with plain 32-bit fields; anything else (or anything
      // unusual about it) goes the general way below, which reads it again from the start.
      const pos = cursor.pos;
      if (fast && this.lastCieFast) {
        const length = (bytes[pos]! | (bytes[pos + 1]! << 8) | (bytes[pos + 2]! << 16) | (bytes[pos + 3]! << 24)) >>> 0;
        const idPos = pos + 4;
        const entryEnd = idPos + length;
        if (length >= 13 && length !== 0xffff_ffff && entryEnd <= size) {
          const id = (bytes[idPos]! | (bytes[idPos + 1]! << 8) | (bytes[idPos + 2]! << 16) | (bytes[idPos + 3]! << 24)) >>> 0;
          if (id !== 0 && idPos - id === this.lastCieOffset) {
            const field = idPos + 4;
            const pcBegin = sectionAddress + field + (bytes[field]! | (bytes[field + 1]! << 8) | (bytes[field + 2]! << 16) | (bytes[field + 3]! << 24));
            const pcRange = bytes[field + 4]! | (bytes[field + 5]! << 8) | (bytes[field + 6]! << 16) | (bytes[field + 7]! << 24);
            const augmentationLength = bytes[field + 8]!;
            const instructionsStart = field + 9 + augmentationLength;
            if (pcBegin >= 0 && pcRange >= 0 && augmentationLength < 0x80 && instructionsStart <= entryEnd) {
              this.fdes.push(pos, this.lastCie as number, pcBegin, pcBegin + pcRange, instructionsStart, entryEnd);
              cursor.pos = entryEnd;
              entries++;
              continue;
            }
          }
        }
      }
      if (this.entry()) entries++;
    }
    if (cursor.pos + 4 > size) this.done = true;
    return this.done;
  }

  /** Reads the entry at the cursor, any kind, the general way; returns whether it counts as an entry read. */
  private entry(): boolean {
    const { bytes, cursor, kind, skipped } = this;
    const entryOffset = cursor.pos;
    let length = cursor.u32();
    let is64 = false;
    if (length === 0xffff_ffff) {
      length = cursor.u64();
      is64 = true;
    }
    if (length === 0) {
      // The .eh_frame terminator; .debug_frame has none, and a zero there is padding.
      if (kind === '.eh_frame') this.done = true;
      return false;
    }
    const bodyStart = cursor.pos;
    const entryEnd = bodyStart + length;
    if (entryEnd > bytes.length) {
      count(skipped, 'truncated entry');
      this.done = true;
      return false;
    }
    try {
      const idPos = cursor.pos;
      const id = is64 ? cursor.u64() : cursor.u32();
      // A 64-bit all-ones id reads as 2^64 in a double: any id above 2^63 can only be it.
      const isCie = kind === '.eh_frame' ? id === 0 : is64 ? id > 2 ** 63 : id === DEBUG_FRAME_CIE_ID_32;
      if (isCie) {
        const cie = this.cieAt(entryOffset);
        if (cie instanceof CfiError) count(skipped, `CIE: ${cie.message}`);
      } else {
        const cieOffset = kind === '.eh_frame' ? idPos - id : id;
        if (cieOffset !== this.lastCieOffset) {
          this.lastCie = this.cieAt(cieOffset);
          this.lastCieOffset = cieOffset;
          const cie = this.lastCie instanceof CfiError ? undefined : this.cies[this.lastCie];
          this.lastCieFast = cie !== undefined && cie.fdePointerEncoding === PCREL_SDATA4 && cie.hasAugmentationData;
        }
        const cie = this.lastCie;
        if (cie instanceof CfiError) {
          count(skipped, 'FDE of an unreadable CIE');
        } else {
          readFde(cursor, entryOffset, entryEnd, cie, this.cies[cie]!, kind, this.bases, this.fdes);
        }
      }
    } catch (error) {
      if (!(error instanceof CfiError)) throw error;
      count(skipped, error.code);
    }
    cursor.pos = entryEnd;
    return true;
  }

  private cieAt(offset: number): number | CfiError {
    let cie = this.cieIndex.get(offset);
    if (cie === undefined) {
      try {
        this.cies.push(readCie(this.bytes, offset, this.kind));
        cie = this.cies.length - 1;
      } catch (error) {
        if (!(error instanceof CfiError)) throw error;
        cie = error;
      }
      this.cieIndex.set(offset, cie);
    }
    return cie;
  }
}

function readCie(bytes: Buffer, offset: number, kind: CfiSectionKind): Cie {
  const cursor = new DwarfCursor(bytes, offset);
  let length = cursor.u32();
  let is64 = false;
  if (length === 0xffff_ffff) {
    length = cursor.u64();
    is64 = true;
  }
  const end = cursor.pos + length;
  if (end > bytes.length) throw new CfiError('CFI_TRUNCATED', `CIE at ${offset} runs past the section`);
  cursor.end = end;
  const id = is64 ? cursor.u64() : cursor.u32();
  const isCie = kind === '.eh_frame' ? id === 0 : is64 ? id > 2 ** 63 : id === DEBUG_FRAME_CIE_ID_32;
  if (!isCie) throw new CfiError('CFI_MALFORMED', `entry at ${offset} is not a CIE`);
  const version = cursor.u8();
  if (version !== 1 && version !== 3 && version !== 4) throw new CfiError('CFI_MALFORMED', `CIE version ${version}`);
  const augmentation = cursor.cstring();
  if (augmentation.includes('eh')) {
    // GCC 2.x's "eh" augmentation carries an untyped pointer; no current toolchain emits it.
    throw new CfiError('CFI_MALFORMED', `CIE augmentation "${augmentation}" is not supported`);
  }
  if (version === 4) {
    const addressSize = cursor.u8();
    const segmentSize = cursor.u8();
    if (addressSize !== 8 || segmentSize !== 0) throw new CfiError('CFI_MALFORMED', `CIE address size ${addressSize}, segment size ${segmentSize}`);
  }
  const codeAlignment = cursor.uleb();
  const dataAlignment = cursor.sleb();
  const returnAddressRegister = version === 1 ? cursor.u8() : cursor.uleb();
  // Without 'R' the addresses are plain 8-byte words (always so in .debug_frame).
  let fdePointerEncoding = DW_EH_PE_absptr;
  let isSignalFrame = false;
  if (augmentation.startsWith('z')) {
    const dataLength = cursor.uleb();
    const dataEnd = cursor.pos + dataLength;
    for (const letter of augmentation.slice(1)) {
      if (letter === 'R') fdePointerEncoding = cursor.u8();
      else if (letter === 'L') cursor.u8(); // LSDA encoding: only exception handling needs it
      else if (letter === 'P') {
        const encoding = cursor.u8();
        // Step over the personality pointer: its value is never needed.
        if (encoding !== DW_EH_PE_omit) cursor.encodedPointer(encoding, { sectionAddress: 0, dataAddress: 0, textAddress: 0 });
      } else if (letter === 'S') isSignalFrame = true;
      else if (letter === 'B' || letter === 'G') {
        // AArch64 BTI / MTE markers: no data.
      } else {
        break; // an unknown letter: 'z' says where the data ends, so the rest can be skipped
      }
    }
    cursor.pos = dataEnd;
  } else if (augmentation !== '') {
    throw new CfiError('CFI_MALFORMED', `CIE augmentation "${augmentation}" without 'z' is not supported`);
  }
  return {
    offset,
    version,
    augmentation,
    codeAlignment,
    dataAlignment,
    returnAddressRegister,
    fdePointerEncoding,
    isSignalFrame,
    hasAugmentationData: augmentation.startsWith('z'),
    initialInstructions: bytes.subarray(cursor.pos, end),
  };
}

function readFde(cursor: DwarfCursor, offset: number, end: number, cieIndex: number, cie: Cie, kind: CfiSectionKind, bases: EncodingBases, into: FdeColumns): void {
  cursor.end = end;
  try {
    let pcBegin: number;
    let pcRange: number;
    if (kind === '.eh_frame') {
      pcBegin = cursor.encodedPointer(cie.fdePointerEncoding, bases);
      pcRange = cursor.encodedValue(cie.fdePointerEncoding);
    } else {
      pcBegin = cursor.u64();
      pcRange = cursor.u64();
    }
    if (cie.hasAugmentationData) cursor.skip(cursor.uleb());
    if (pcRange < 0) throw new CfiError('CFI_MALFORMED', `FDE at ${offset} has a negative range`);
    into.push(offset, cieIndex, pcBegin, pcBegin + pcRange, cursor.pos, end);
  } finally {
    cursor.end = cursor.bytes.length;
  }
}

export interface EhFrameHeader {
  /** Address of .eh_frame the header points to. */
  ehFramePointer: number;
  /** (initial location, FDE address) pairs, sorted by location; empty when the header has no table. */
  table: { pc: number; fdeAddress: number }[];
}

/** Parses .eh_frame_hdr (its bytes and virtual address). */
export function parseEhFrameHeader(bytes: Buffer, address: number): EhFrameHeader {
  const cursor = new DwarfCursor(bytes);
  const version = cursor.u8();
  if (version !== 1) throw new CfiError('CFI_MALFORMED', `.eh_frame_hdr version ${version}`);
  const framePointerEncoding = cursor.u8();
  const countEncoding = cursor.u8();
  const tableEncoding = cursor.u8();
  const bases: EncodingBases = { sectionAddress: address, dataAddress: address };
  const ehFramePointer = cursor.encodedPointer(framePointerEncoding, bases);
  const table: EhFrameHeader['table'] = [];
  if (countEncoding !== DW_EH_PE_omit && tableEncoding !== DW_EH_PE_omit) {
    const entries = cursor.encodedPointer(countEncoding, bases);
    for (let i = 0; i < entries; i++) {
      const pc = cursor.encodedPointer(tableEncoding, bases);
      const fdeAddress = cursor.encodedPointer(tableEncoding, bases);
      table.push({ pc, fdeAddress });
    }
  }
  return { ehFramePointer, table };
}

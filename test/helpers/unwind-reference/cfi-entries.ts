// FROZEN: src/unwind/cfi-entries.ts as of commit 7accc28, the object-per-row builder that the columnar
// one replaced. test/unwind-table-identity.test.ts builds every table with both and asks
// for byte-identical cache entries; do not edit or optimise this copy.
//
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

export interface CfiSection {
  kind: CfiSectionKind;
  fdes: Fde[];
  cieCount: number;
  /** Entries skipped, by error code ("bad CIE pointer", truncations, unsupported augmentations). */
  skipped: Map<string, number>;
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

/** parseCfiSection() in steps (node's .eh_frame has 76k entries: the table worker serves small files in between). */
export function* parseCfiSectionSteps(
  bytes: Buffer,
  kind: CfiSectionKind,
  sectionAddress: number,
  bases: Omit<EncodingBases, 'sectionAddress'> = {},
): Generator<void, CfiSection> {
  const encodingBases: EncodingBases = { ...bases, sectionAddress };
  const cies = new Map<number, Cie | CfiError>();
  const fdes: Fde[] = [];
  const skipped = new Map<string, number>();
  const cursor = new DwarfCursor(bytes);
  let entries = 0;

  const cieAt = (offset: number): Cie | CfiError => {
    let cie = cies.get(offset);
    if (cie === undefined) {
      try {
        cie = readCie(bytes, offset, kind);
      } catch (error) {
        if (!(error instanceof CfiError)) throw error;
        cie = error;
      }
      cies.set(offset, cie);
    }
    return cie;
  };

  while (cursor.pos + 4 <= bytes.length) {
    const entryOffset = cursor.pos;
    let length = cursor.u32();
    let is64 = false;
    if (length === 0xffff_ffff) {
      length = cursor.u64();
      is64 = true;
    }
    if (length === 0) {
      // The .eh_frame terminator; .debug_frame has none, and a zero there is padding.
      if (kind === '.eh_frame') break;
      continue;
    }
    const bodyStart = cursor.pos;
    const entryEnd = bodyStart + length;
    if (entryEnd > bytes.length) {
      count(skipped, 'truncated entry');
      break;
    }
    try {
      const idPos = cursor.pos;
      const id = is64 ? cursor.u64() : cursor.u32();
      // A 64-bit all-ones id reads as 2^64 in a double: any id above 2^63 can only be it.
      const isCie = kind === '.eh_frame' ? id === 0 : is64 ? id > 2 ** 63 : id === DEBUG_FRAME_CIE_ID_32;
      if (isCie) {
        const cie = cieAt(entryOffset);
        if (cie instanceof CfiError) count(skipped, `CIE: ${cie.message}`);
      } else {
        const cieOffset = kind === '.eh_frame' ? idPos - id : id;
        const cie = cieAt(cieOffset);
        if (cie instanceof CfiError) {
          count(skipped, 'FDE of an unreadable CIE');
        } else {
          fdes.push(readFde(bytes, cursor, entryOffset, entryEnd, cie, kind, encodingBases));
        }
      }
    } catch (error) {
      if (!(error instanceof CfiError)) throw error;
      count(skipped, error.code);
    }
    cursor.pos = entryEnd;
    if (++entries % ENTRIES_PER_STEP === 0) yield;
  }
  let cieCount = 0;
  for (const cie of cies.values()) if (!(cie instanceof CfiError)) cieCount++;
  return { kind, fdes, cieCount, skipped };
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
    initialInstructions: bytes.subarray(cursor.pos, end),
  };
}

function readFde(bytes: Buffer, cursor: DwarfCursor, offset: number, end: number, cie: Cie, kind: CfiSectionKind, bases: EncodingBases): Fde {
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
    if (cie.augmentation.startsWith('z')) cursor.skip(cursor.uleb());
    if (pcRange < 0) throw new CfiError('CFI_MALFORMED', `FDE at ${offset} has a negative range`);
    return {
      offset,
      cie,
      pcBegin,
      pcEnd: pcBegin + pcRange,
      instructions: bytes.subarray(cursor.pos, end),
      instructionsAddress: bases.sectionAddress + cursor.pos,
    };
  } finally {
    cursor.end = bytes.length;
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

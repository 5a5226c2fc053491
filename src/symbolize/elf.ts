// A reader for the parts of ELF64 little-endian files a CPU profiler needs:
// load segments (for the load bias), sections, function symbols, the GNU
// build ID and .gnu_debuglink. Hand-written because the npm ELF parsers we
// looked at either slurp the whole file, lack build-id/debuglink, or target
// 32-bit/big-endian formats we do not need; this is ~400 lines of well-known
// structure layouts (see elf(5)).
//
// It reads through a ByteSource so that the same code works on files (with
// positional reads of only the ranges needed, never the whole DWARF-heavy
// file) and on in-memory images such as the vdso.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import {
  candidateMeta,
  emptyBounds,
  ORDER_BIAS,
  RANK_GLOBAL,
  RANK_LOCAL,
  RANK_WEAK,
  type CandidateColumns,
  type SymbolTableBuilder,
} from './symbol-table.js';

/** Byte offset inside the ELF file. */
export type FileOffset = number;
/** Address in the ELF's own virtual address space (before any load bias). */
export type ElfAddress = bigint;
/** Index into the section header table. */
export type SectionIndex = number;

export type ElfErrorCode =
  | 'ELF_BAD_MAGIC'
  | 'ELF_TRUNCATED'
  | 'ELF_UNSUPPORTED_CLASS'
  | 'ELF_UNSUPPORTED_ENDIANNESS'
  | 'ELF_MALFORMED'
  | 'ELF_IO';

/** Every failure to read an ELF file is one of these, so callers can count by code. */
export class ElfError extends Error {
  override readonly name = 'ElfError';
  constructor(
    readonly code: ElfErrorCode,
    message: string,
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** Random access to the bytes of an ELF image. */
export interface ByteSource {
  readonly description: string;
  readonly sizeBytes: number;
  /** Returns exactly `length` bytes or throws ElfError('ELF_TRUNCATED'). */
  read(offset: FileOffset, length: number): Buffer;
  close(): void;
}

export class FileByteSource implements ByteSource {
  readonly sizeBytes: number;
  private fd: number | null;

  constructor(readonly description: string) {
    try {
      this.fd = openSync(description, 'r');
      this.sizeBytes = fstatSync(this.fd).size;
    } catch (err) {
      throw new ElfError('ELF_IO', (err as Error).message, description);
    }
  }

  read(offset: FileOffset, length: number): Buffer {
    if (this.fd === null) throw new ElfError('ELF_IO', 'read after close', this.description);
    if (offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new ElfError('ELF_TRUNCATED', `range ${offset}+${length} is past the end of the file (${this.sizeBytes} bytes)`, this.description);
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = readSync(this.fd, buf, done, length - done, offset + done);
      } catch (err) {
        throw new ElfError('ELF_IO', (err as Error).message, this.description);
      }
      if (n === 0) throw new ElfError('ELF_TRUNCATED', `file shrank while reading at ${offset + done}`, this.description);
      done += n;
    }
    return buf;
  }

  /** The open descriptor (null after close), e.g. to fstat exactly what is being read. */
  get fileDescriptor(): number | null {
    return this.fd;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

export class BufferByteSource implements ByteSource {
  constructor(
    private readonly bytes: Buffer,
    readonly description: string,
  ) {}
  get sizeBytes(): number {
    return this.bytes.length;
  }
  read(offset: FileOffset, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.bytes.length) {
      throw new ElfError('ELF_TRUNCATED', `range ${offset}+${length} is past the end of the image (${this.bytes.length} bytes)`, this.description);
    }
    return this.bytes.subarray(offset, offset + length);
  }
  close(): void {}
}

export const ET_EXEC = 2;
export const ET_DYN = 3;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
export const SHT_SYMTAB = 2;
export const SHT_NOTE = 7;
export const SHT_NOBITS = 8;
export const SHT_DYNSYM = 11;
export const SHF_EXECINSTR = 4;
export const STT_NOTYPE = 0;
export const STT_FUNC = 2;
export const STT_GNU_IFUNC = 10;
export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;
const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;
const NT_GNU_BUILD_ID = 3;

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
/** Guards against absurd counts in corrupt headers before we allocate for them. */
const MAX_TABLE_ENTRIES = 1 << 20;

export interface ElfHeader {
  /** ET_EXEC, ET_DYN, ... */
  type: number;
  machine: number;
  entry: ElfAddress;
  programHeaderOffset: FileOffset;
  sectionHeaderOffset: FileOffset;
  programHeaderCount: number;
  sectionHeaderCount: number;
  sectionNameTableIndex: SectionIndex;
}

export interface ProgramHeader {
  type: number;
  /** PF_R | PF_W | PF_X */
  flags: number;
  offset: FileOffset;
  vaddr: ElfAddress;
  fileSizeBytes: number;
  memSizeBytes: number;
  align: number;
}

export interface SectionHeader {
  index: SectionIndex;
  name: string;
  type: number;
  flags: number;
  address: ElfAddress;
  offset: FileOffset;
  sizeBytes: number;
  link: SectionIndex;
  entrySizeBytes: number;
}

export type SymbolBinding = 'local' | 'global' | 'weak';

export interface ElfSymbol {
  name: string;
  address: ElfAddress;
  sizeBytes: number;
  binding: SymbolBinding;
  /** STT_FUNC, STT_GNU_IFUNC or STT_NOTYPE */
  type: number;
  section: SectionIndex;
  /** End of the containing section: a zero-size symbol must not be extended past it. */
  sectionEnd: ElfAddress;
  /** Which table it came from. */
  table: '.symtab' | '.dynsym';
}

export interface DebugLink {
  fileName: string;
  crc32: number;
}

export interface ElfNote {
  owner: string;
  type: number;
  desc: Buffer;
}

/** Parses a buffer of ELF notes (the content of a PT_NOTE segment or SHT_NOTE section, or /sys/kernel/notes). */
export function parseNotes(buf: Buffer): ElfNote[] {
  const notes: ElfNote[] = [];
  let pos = 0;
  while (pos + 12 <= buf.length) {
    const nameSize = buf.readUInt32LE(pos);
    const descSize = buf.readUInt32LE(pos + 4);
    const type = buf.readUInt32LE(pos + 8);
    const nameStart = pos + 12;
    const descStart = nameStart + align4(nameSize);
    const end = descStart + align4(descSize);
    if (descStart + descSize > buf.length) break;
    const owner = buf.toString('latin1', nameStart, nameStart + nameSize).replace(/\0+$/, '');
    notes.push({ owner, type, desc: buf.subarray(descStart, descStart + descSize) });
    pos = end;
  }
  return notes;
}

/** GNU build ID as lowercase hex from a list of notes, or null. */
export function buildIdFromNotes(notes: ElfNote[]): string | null {
  for (const n of notes) {
    if (n.owner === 'GNU' && n.type === NT_GNU_BUILD_ID && n.desc.length > 0) return n.desc.toString('hex');
  }
  return null;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function safeNumber(v: bigint, what: string, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError('ELF_MALFORMED', `${what} ${v} is too large`, path);
  return Number(v);
}

/**
 * An open ELF64 LE image. Headers are read eagerly by the constructor (so a
 * bad file fails fast with a typed error); tables on demand.
 */
export class ElfReader {
  readonly header: ElfHeader;
  readonly programHeaders: ProgramHeader[];
  readonly sections: SectionHeader[];
  private readonly path: string;

  constructor(private readonly src: ByteSource) {
    this.path = src.description;
    this.header = this.readHeader();
    this.programHeaders = this.readProgramHeaders();
    this.sections = this.readSections();
  }

  static open(path: string): ElfReader {
    const src = new FileByteSource(path);
    try {
      return new ElfReader(src);
    } catch (err) {
      src.close();
      throw err;
    }
  }

  close(): void {
    this.src.close();
  }

  get loadSegments(): ProgramHeader[] {
    return this.programHeaders.filter((p) => p.type === PT_LOAD);
  }

  section(name: string): SectionHeader | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** True when the file has a .symtab with content (i.e. it is not stripped). */
  hasSymtab(): boolean {
    return this.sections.some((s) => s.type === SHT_SYMTAB && s.sizeBytes > 0);
  }

  /** Build ID from PT_NOTE segments, falling back to note sections (debug files keep sections, not always segments). */
  buildId(): string | null {
    for (const ph of this.programHeaders) {
      if (ph.type !== PT_NOTE || ph.fileSizeBytes === 0) continue;
      const id = buildIdFromNotes(parseNotes(this.src.read(ph.offset, ph.fileSizeBytes)));
      if (id !== null) return id;
    }
    for (const sh of this.sections) {
      if (sh.type !== SHT_NOTE || sh.sizeBytes === 0) continue;
      const id = buildIdFromNotes(parseNotes(this.src.read(sh.offset, sh.sizeBytes)));
      if (id !== null) return id;
    }
    return null;
  }

  debugLink(): DebugLink | null {
    const sh = this.section('.gnu_debuglink');
    if (sh === undefined || sh.type === SHT_NOBITS || sh.sizeBytes < 8) return null;
    const buf = this.src.read(sh.offset, sh.sizeBytes);
    const nul = buf.indexOf(0);
    if (nul <= 0) throw new ElfError('ELF_MALFORMED', '.gnu_debuglink has no file name', this.path);
    const crcPos = align4(nul + 1);
    if (crcPos + 4 > buf.length) throw new ElfError('ELF_MALFORMED', '.gnu_debuglink has no CRC', this.path);
    return { fileName: buf.toString('utf8', 0, nul), crc32: buf.readUInt32LE(crcPos) };
  }

  /**
   * Function symbols from .symtab and .dynsym: STT_FUNC, STT_GNU_IFUNC and
   * sized STT_NOTYPE symbols in executable sections (hand-written assembly
   * often has no type). Undefined and absolute symbols are skipped.
   */
  functionSymbols(which: ('.symtab' | '.dynsym')[] = ['.symtab', '.dynsym']): ElfSymbol[] {
    const out: ElfSymbol[] = [];
    for (const sh of this.sections) {
      const table = sh.type === SHT_SYMTAB ? '.symtab' : sh.type === SHT_DYNSYM ? '.dynsym' : null;
      if (table === null || !which.includes(table) || sh.sizeBytes === 0) continue;
      if (sh.type === SHT_NOBITS) continue;
      this.readSymbolTable(sh, table, out);
    }
    return out;
  }

  /**
   * The same symbols as functionSymbols(), straight into a table builder:
   * numbers are read from the section bytes without BigInt, and names stay in
   * the string table (kept by the builder only if a row ends up using it).
   * Returns how many candidates were added; on error adds none.
   */
  addFunctionSymbols(builder: SymbolTableBuilder, which: ('.symtab' | '.dynsym')[]): number {
    const before = builder.count;
    try {
      for (const sh of this.sections) {
        const table = sh.type === SHT_SYMTAB ? '.symtab' : sh.type === SHT_DYNSYM ? '.dynsym' : null;
        if (table === null || !which.includes(table) || sh.sizeBytes === 0) continue;
        this.addSymbolTable(sh, table, builder);
      }
    } catch (err) {
      builder.truncate(before);
      throw err;
    }
    return builder.count - before;
  }

  /** The raw bytes of a symbol table and its string table, checked for shape. */
  private symbolSection(sh: SectionHeader, table: '.symtab' | '.dynsym'): { syms: Buffer; strs: Buffer; entSize: number; count: number } {
    const strSh = this.sections[sh.link];
    if (strSh === undefined || strSh.type === SHT_NOBITS) throw new ElfError('ELF_MALFORMED', `${table} links to a missing string table`, this.path);
    const entSize = sh.entrySizeBytes || SYM_SIZE;
    if (entSize < SYM_SIZE) throw new ElfError('ELF_MALFORMED', `${table} entry size ${entSize} is too small`, this.path);
    return {
      syms: this.src.read(sh.offset, sh.sizeBytes),
      strs: this.src.read(strSh.offset, strSh.sizeBytes),
      entSize,
      count: Math.floor(sh.sizeBytes / entSize),
    };
  }

  private addSymbolTable(sh: SectionHeader, table: '.symtab' | '.dynsym', builder: SymbolTableBuilder): void {
    const { syms, strs, entSize, count } = this.symbolSection(sh, table);
    const source = builder.addNameSource(strs);
    // Per section: whether symbols may be defined in it (and it is code), and its end as the limit of
    // the zero-size symbols in it (limit ids limitBase + section index).
    const nSections = Math.min(this.sections.length, SHN_LORESERVE);
    const secFlags = new Uint8Array(0x1_0000);
    let limitBase = 0;
    for (let k = 0; k < nSections; k++) {
      const sec = this.sections[k]!;
      const end = BigInt.asUintN(64, sec.address + BigInt(sec.sizeBytes));
      const id = builder.addLimit(Number(end >> 32n), Number(end & 0xffff_ffffn));
      if (k === 0) limitBase = id;
      else secFlags[k] = SEC_DEFINED | ((sec.flags & SHF_EXECINSTR) !== 0 ? SEC_EXEC : 0);
    }
    const bindMeta = new Int32Array(16).fill(candidateMeta(RANK_LOCAL, source));
    bindMeta[STB_GLOBAL] = candidateMeta(RANK_GLOBAL, source);
    bindMeta[STB_WEAK] = candidateMeta(RANK_WEAK, source);
    const { words, stride } = symbolWords(syms, entSize, count);
    const bounds = emptyBounds();
    const first = builder.count;
    const cols = builder.columnsFor(count);
    const end = appendFunctionSymbols(words, stride, count, secFlags, strs, bindMeta, limitBase, cols, first, bounds);
    if (end < 0) {
      const p = (-1 - end) * stride;
      throw new ElfError('ELF_MALFORMED', `symbol size ${(BigInt(words[p + 5]!) << 32n) | BigInt(words[p + 4]!)} is too large`, this.path);
    }
    builder.appended(end, bounds);
  }

  private readSymbolTable(sh: SectionHeader, table: '.symtab' | '.dynsym', out: ElfSymbol[]): void {
    const { syms, strs, entSize, count } = this.symbolSection(sh, table);
    for (let i = 1; i < count; i++) {
      const p = i * entSize;
      const info = syms.readUInt8(p + 4);
      const type = info & 0xf;
      const bind = info >> 4;
      const shndx = syms.readUInt16LE(p + 6);
      if (shndx === SHN_UNDEF || shndx >= SHN_LORESERVE) continue;
      const section = this.sections[shndx];
      if (section === undefined) continue;
      const size = syms.readBigUInt64LE(p + 16);
      const isCode = type === STT_FUNC || type === STT_GNU_IFUNC || (type === STT_NOTYPE && size > 0n && (section.flags & SHF_EXECINSTR) !== 0);
      if (!isCode) continue;
      const address = syms.readBigUInt64LE(p + 8);
      if (address === 0n) continue;
      const nameOff = syms.readUInt32LE(p);
      if (nameOff >= strs.length) continue;
      let nameEnd = strs.indexOf(0, nameOff);
      if (nameEnd < 0) nameEnd = strs.length;
      const name = strs.toString('utf8', nameOff, nameEnd);
      if (name === '') continue;
      out.push({
        name,
        address,
        sizeBytes: safeNumber(size, 'symbol size', this.path),
        binding: bind === STB_GLOBAL ? 'global' : bind === STB_WEAK ? 'weak' : 'local',
        type,
        section: shndx,
        sectionEnd: section.address + BigInt(section.sizeBytes),
        table,
      });
    }
  }

  private readHeader(): ElfHeader {
    if (this.src.sizeBytes < 16) {
      if (this.src.sizeBytes >= 4 && this.src.read(0, 4).equals(ELF_MAGIC)) throw new ElfError('ELF_TRUNCATED', 'file ends inside the ELF identification', this.path);
      throw new ElfError('ELF_BAD_MAGIC', 'not an ELF file', this.path);
    }
    const ident = this.src.read(0, 16);
    if (!ident.subarray(0, 4).equals(ELF_MAGIC)) throw new ElfError('ELF_BAD_MAGIC', 'not an ELF file', this.path);
    if (ident[4] !== 2) throw new ElfError('ELF_UNSUPPORTED_CLASS', `ELF class ${ident[4]} (only ELF64 is supported)`, this.path);
    if (ident[5] !== 1) throw new ElfError('ELF_UNSUPPORTED_ENDIANNESS', `ELF data encoding ${ident[5]} (only little-endian is supported)`, this.path);
    if (this.src.sizeBytes < EHDR_SIZE) throw new ElfError('ELF_TRUNCATED', 'file ends inside the ELF header', this.path);
    const b = this.src.read(0, EHDR_SIZE);
    const phentsize = b.readUInt16LE(54);
    const shentsize = b.readUInt16LE(58);
    const header: ElfHeader = {
      type: b.readUInt16LE(16),
      machine: b.readUInt16LE(18),
      entry: b.readBigUInt64LE(24),
      programHeaderOffset: safeNumber(b.readBigUInt64LE(32), 'e_phoff', this.path),
      sectionHeaderOffset: safeNumber(b.readBigUInt64LE(40), 'e_shoff', this.path),
      programHeaderCount: b.readUInt16LE(56),
      sectionHeaderCount: b.readUInt16LE(60),
      sectionNameTableIndex: b.readUInt16LE(62),
    };
    if (header.programHeaderCount > 0 && phentsize < PHDR_SIZE) throw new ElfError('ELF_MALFORMED', `e_phentsize ${phentsize}`, this.path);
    if (header.sectionHeaderCount > 0 && shentsize < SHDR_SIZE) throw new ElfError('ELF_MALFORMED', `e_shentsize ${shentsize}`, this.path);
    this.phentsize = phentsize;
    this.shentsize = shentsize;
    return header;
  }

  private phentsize = PHDR_SIZE;
  private shentsize = SHDR_SIZE;

  private readProgramHeaders(): ProgramHeader[] {
    const { programHeaderOffset: off, programHeaderCount: n } = this.header;
    if (n === 0) return [];
    const buf = this.src.read(off, n * this.phentsize);
    const out: ProgramHeader[] = [];
    for (let i = 0; i < n; i++) {
      const p = i * this.phentsize;
      out.push({
        type: buf.readUInt32LE(p),
        flags: buf.readUInt32LE(p + 4),
        offset: safeNumber(buf.readBigUInt64LE(p + 8), 'p_offset', this.path),
        vaddr: buf.readBigUInt64LE(p + 16),
        fileSizeBytes: safeNumber(buf.readBigUInt64LE(p + 32), 'p_filesz', this.path),
        memSizeBytes: safeNumber(buf.readBigUInt64LE(p + 40), 'p_memsz', this.path),
        align: safeNumber(buf.readBigUInt64LE(p + 48), 'p_align', this.path),
      });
    }
    return out;
  }

  private readSections(): SectionHeader[] {
    const { sectionHeaderOffset: off } = this.header;
    let n = this.header.sectionHeaderCount;
    if (off === 0) return [];
    // With >= SHN_LORESERVE sections, e_shnum is 0 and the count lives in section 0's sh_size.
    if (n === 0) {
      const first = this.src.read(off, SHDR_SIZE);
      n = safeNumber(first.readBigUInt64LE(32), 'section count', this.path);
    }
    if (n > MAX_TABLE_ENTRIES) throw new ElfError('ELF_MALFORMED', `${n} sections`, this.path);
    const buf = this.src.read(off, n * this.shentsize);
    const raw: (SectionHeader & { nameOffset: number })[] = [];
    for (let i = 0; i < n; i++) {
      const p = i * this.shentsize;
      raw.push({
        index: i,
        name: '',
        nameOffset: buf.readUInt32LE(p),
        type: buf.readUInt32LE(p + 4),
        flags: safeNumber(buf.readBigUInt64LE(p + 8), 'sh_flags', this.path),
        address: buf.readBigUInt64LE(p + 16),
        offset: safeNumber(buf.readBigUInt64LE(p + 24), 'sh_offset', this.path),
        sizeBytes: safeNumber(buf.readBigUInt64LE(p + 32), 'sh_size', this.path),
        link: buf.readUInt32LE(p + 40),
        entrySizeBytes: safeNumber(buf.readBigUInt64LE(p + 56), 'sh_entsize', this.path),
      });
    }
    let strIndex = this.header.sectionNameTableIndex;
    if (strIndex === 0xffff) strIndex = raw[0]?.link ?? 0; // SHN_XINDEX
    const strSh = raw[strIndex];
    if (strSh !== undefined && strIndex !== 0 && strSh.type !== SHT_NOBITS) {
      const names = this.src.read(strSh.offset, strSh.sizeBytes);
      for (const s of raw) {
        if (s.nameOffset >= names.length) continue;
        let end = names.indexOf(0, s.nameOffset);
        if (end < 0) end = names.length;
        s.name = names.toString('utf8', s.nameOffset, end);
      }
    }
    return raw.map(({ nameOffset: _unused, ...s }) => s);
  }
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** secFlags bits in addSymbolTable: a section symbols can be defined in; one holding code. */
const SEC_DEFINED = 1;
const SEC_EXEC = 2;
/** The symbol types that may be code, as a bit set. */
const CODE_TYPES = (1 << STT_FUNC) | (1 << STT_GNU_IFUNC) | (1 << STT_NOTYPE);
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A symbol table's entries as little-endian 32-bit words, `stride` words per
 * entry: a view of the bytes read when they are aligned (the usual case), else
 * a copy (with entries repacked to 24 bytes when the entry size is odd).
 */
function symbolWords(syms: Buffer, entSize: number, count: number): { words: Uint32Array; stride: number } {
  if (LITTLE_ENDIAN_HOST && entSize % 4 === 0) {
    const bytes = count * entSize;
    if (syms.byteOffset % 4 === 0) return { words: new Uint32Array(syms.buffer, syms.byteOffset, bytes >>> 2), stride: entSize >>> 2 };
    const copy = new Uint8Array(bytes);
    copy.set(syms.subarray(0, bytes));
    return { words: new Uint32Array(copy.buffer, 0, bytes >>> 2), stride: entSize >>> 2 };
  }
  const stride = SYM_SIZE >>> 2;
  const words = new Uint32Array(count * stride);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < stride; j++) words[i * stride + j] = syms.readUInt32LE(i * entSize + j * 4);
  }
  return { words, stride };
}

/**
 * The per-symbol loop of addFunctionSymbols: appends the function symbols of
 * one ELF64 symbol table (see functionSymbols for which) to `out` from row
 * `n`, and widens `bounds` (see emptyBounds) to their addresses. Returns the new row count, or
 * -1 - i when entry i has an absurd size. Reads only typed arrays and
 * allocates nothing, so it costs the same before and after V8 optimizes it.
 */
function appendFunctionSymbols(
  w: Uint32Array,
  stride: number,
  count: number,
  secFlags: Uint8Array,
  strs: Buffer,
  bindMeta: Int32Array,
  limitBase: number,
  out: CandidateColumns,
  n: number,
  bounds: Int32Array,
): number {
  const { addrHi, addrLo, size, meta, nameOff, limit } = out;
  const strLen = strs.length;
  let minHi = bounds[0]!;
  let minLo = bounds[1]!;
  let maxHi = bounds[2]!;
  let maxLo = bounds[3]!;
  for (let i = 1, p = stride; i < count; i++, p += stride) {
    const info = w[p + 1]!; // st_info | st_other << 8 | st_shndx << 16
    const type = info & 0xf;
    if (((CODE_TYPES >>> type) & 1) === 0) continue;
    const sizeLo = w[p + 4]!;
    const sizeHi = w[p + 5]!;
    // FUNC and IFUNC symbols in any section symbols are defined in; NOTYPE ones when sized and in code.
    // (Selects, not branches: every operation runs for the first entries, before V8 optimizes the loop.)
    const sized = (sizeLo | sizeHi) === 0 ? 0 : SEC_EXEC;
    const need = type === STT_NOTYPE ? sized : SEC_DEFINED;
    if ((secFlags[info >>> 16]! & need) === 0) continue;
    const lo = w[p + 2]!;
    const hi = w[p + 3]!;
    if ((lo | hi) === 0) continue;
    const name = w[p]!;
    if (name >= strLen || strs[name] === 0) continue;
    if (sizeHi >= 0x20_0000) return -1 - i;
    addrHi[n] = hi;
    addrLo[n] = lo;
    size[n] = sizeHi * 0x1_0000_0000 + sizeLo;
    meta[n] = bindMeta[(info >>> 4) & 0xf]!;
    nameOff[n] = name;
    limit[n] = limitBase + (info >>> 16);
    const oh = hi ^ ORDER_BIAS;
    const ol = lo ^ ORDER_BIAS;
    if (oh < minHi || (oh === minHi && ol < minLo)) {
      minHi = oh;
      minLo = ol;
      bounds[0] = oh;
      bounds[1] = ol;
    }
    if (oh > maxHi || (oh === maxHi && ol > maxLo)) {
      maxHi = oh;
      maxLo = ol;
      bounds[2] = oh;
      bounds[3] = ol;
    }
    n++;
  }
  return n;
}

/**
 * Converts a runtime address in a mapping to the ELF's own address space.
 * The mapping maps file bytes [fileOffset, ...) at [mappingStart, ...); the
 * PT_LOAD segment holding that file offset says which vaddr those bytes have.
 * Works the same for ET_EXEC (bias 0) and ET_DYN (PIE, shared libraries).
 */
export function toElfAddress(
  loadSegments: readonly Pick<ProgramHeader, 'offset' | 'vaddr' | 'fileSizeBytes' | 'memSizeBytes'>[],
  mappingStart: bigint,
  mappingFileOffset: bigint,
  address: bigint,
): ElfAddress | null {
  const fileOffset = address - mappingStart + mappingFileOffset;
  let best: (typeof loadSegments)[number] | undefined;
  for (const seg of loadSegments) {
    const segOff = BigInt(seg.offset);
    const segEnd = segOff + BigInt(Math.max(seg.fileSizeBytes, 1));
    if (fileOffset < segOff || fileOffset >= segEnd) continue;
    // Prefer the segment this mapping was made for (its page-aligned offset)
    // when two segments share file bytes (e.g. old layouts where text and
    // rodata overlap at a page boundary).
    if (best === undefined || (segOff & ~0xfffn) === mappingFileOffset) best = seg;
  }
  // Segments are page-aligned in the mapping but not in the file: the mapping
  // offset may be a little before the segment's p_offset. Fall back to the
  // segment whose page contains the mapping offset.
  if (best === undefined) {
    for (const seg of loadSegments) {
      const segOff = BigInt(seg.offset);
      const pageStart = segOff & ~0xfffn;
      if (mappingFileOffset >= pageStart && mappingFileOffset <= segOff) {
        best = seg;
        break;
      }
    }
  }
  if (best === undefined) return null;
  return fileOffset - BigInt(best.offset) + best.vaddr;
}

// A bounds-checked reader over DWARF call-frame bytes: fixed-size integers,
// LEB128 and the .eh_frame pointer encodings (DW_EH_PE_*, LSB "Exception
// Frames"). Hand-written: it is a few dozen lines of well-known encodings, and
// the npm DWARF readers are either debuggers' whole-DWARF parsers or do not
// read .eh_frame's pointer encodings at all.
//
// Addresses are JavaScript numbers: x86-64 user-space ELF virtual addresses
// fit in 47 bits, far inside Number.MAX_SAFE_INTEGER.

/** Thrown for any CFI that cannot be read; the caller counts it by `code`. */
export class CfiError extends Error {
  override readonly name = 'CfiError';
  constructor(
    readonly code: 'CFI_TRUNCATED' | 'CFI_BAD_ENCODING' | 'CFI_MALFORMED',
    message: string,
  ) {
    super(message);
  }
}

// DW_EH_PE_* value formats (low nibble) and applications (bits 4-6).
export const DW_EH_PE_absptr = 0x00;
export const DW_EH_PE_uleb128 = 0x01;
export const DW_EH_PE_udata2 = 0x02;
export const DW_EH_PE_udata4 = 0x03;
export const DW_EH_PE_udata8 = 0x04;
export const DW_EH_PE_sleb128 = 0x09;
export const DW_EH_PE_sdata2 = 0x0a;
export const DW_EH_PE_sdata4 = 0x0b;
export const DW_EH_PE_sdata8 = 0x0c;
export const DW_EH_PE_pcrel = 0x10;
export const DW_EH_PE_textrel = 0x20;
export const DW_EH_PE_datarel = 0x30;
export const DW_EH_PE_funcrel = 0x40;
export const DW_EH_PE_aligned = 0x50;
export const DW_EH_PE_indirect = 0x80;
export const DW_EH_PE_omit = 0xff;

/** Bases the pointer encodings are relative to (ELF virtual addresses). */
export interface EncodingBases {
  /** Virtual address of byte 0 of the buffer being read (for pcrel). */
  sectionAddress: number;
  /** For datarel: .eh_frame_hdr's address there, the GOT elsewhere (undefined: unsupported). */
  dataAddress?: number;
  /** For textrel (undefined: unsupported). */
  textAddress?: number;
}

export class DwarfCursor {
  constructor(
    readonly bytes: Buffer,
    public pos = 0,
    /** Exclusive end of what may be read. */
    public end = bytes.length,
  ) {}

  get atEnd(): boolean {
    return this.pos >= this.end;
  }

  private need(n: number): number {
    const at = this.pos;
    // A CIE pointer larger than its FDE's own offset points before the section: a corrupt entry, not a crash.
    if (at < 0) throw new CfiError('CFI_MALFORMED', `offset ${at} is before the section`);
    if (at + n > this.end) throw new CfiError('CFI_TRUNCATED', `need ${n} bytes at offset ${at}, have ${this.end - at}`);
    this.pos = at + n;
    return at;
  }

  u8(): number {
    return this.bytes[this.need(1)]!;
  }
  u16(): number {
    return this.bytes.readUInt16LE(this.need(2));
  }
  u32(): number {
    return this.bytes.readUInt32LE(this.need(4));
  }
  i8(): number {
    return this.bytes.readInt8(this.need(1));
  }
  i16(): number {
    return this.bytes.readInt16LE(this.need(2));
  }
  i32(): number {
    return this.bytes.readInt32LE(this.need(4));
  }
  /** As a number: larger values lose precision, which only matters for addresses no user space has. */
  u64(): number {
    const at = this.need(8);
    return this.bytes.readUInt32LE(at) + this.bytes.readUInt32LE(at + 4) * 0x1_0000_0000;
  }
  i64(): number {
    const at = this.need(8);
    return this.bytes.readUInt32LE(at) + this.bytes.readInt32LE(at + 4) * 0x1_0000_0000;
  }

  uleb(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const byte = this.u8();
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
      if (scale > 2 ** 63) throw new CfiError('CFI_MALFORMED', `ULEB128 longer than 64 bits at offset ${this.pos}`);
    }
  }

  sleb(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const byte = this.u8();
      result += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) {
        if ((byte & 0x40) !== 0) result -= scale;
        return result;
      }
      if (scale > 2 ** 63) throw new CfiError('CFI_MALFORMED', `SLEB128 longer than 64 bits at offset ${this.pos}`);
    }
  }

  cstring(): string {
    const nul = this.bytes.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw new CfiError('CFI_TRUNCATED', `unterminated string at offset ${this.pos}`);
    const text = this.bytes.toString('latin1', this.pos, nul);
    this.pos = nul + 1;
    return text;
  }

  skip(n: number): void {
    this.need(n);
  }

  /** A value in an encoding's format only (no application): pc_range in an FDE. */
  encodedValue(encoding: number): number {
    switch (encoding & 0x0f) {
      case DW_EH_PE_absptr:
      case DW_EH_PE_udata8:
        return this.u64();
      case DW_EH_PE_uleb128:
        return this.uleb();
      case DW_EH_PE_udata2:
        return this.u16();
      case DW_EH_PE_udata4:
        return this.u32();
      case DW_EH_PE_sleb128:
        return this.sleb();
      case DW_EH_PE_sdata2:
        return this.i16();
      case DW_EH_PE_sdata4:
        return this.i32();
      case DW_EH_PE_sdata8:
        return this.i64();
      default:
        throw new CfiError('CFI_BAD_ENCODING', `pointer encoding 0x${encoding.toString(16)} has an unknown value format`);
    }
  }

  /**
   * A pointer in `encoding`, made absolute. Indirect pointers (personality
   * routines) are returned as the address of the slot: we never need their
   * target, only to step over them.
   */
  encodedPointer(encoding: number, bases: EncodingBases): number {
    if (encoding === DW_EH_PE_omit) throw new CfiError('CFI_BAD_ENCODING', 'an omitted pointer was read');
    const fieldAddress = bases.sectionAddress + this.pos;
    if ((encoding & 0x70) === DW_EH_PE_aligned) {
      const misalignment = this.pos % 8;
      if (misalignment !== 0) this.skip(8 - misalignment);
      return this.u64();
    }
    const value = this.encodedValue(encoding);
    let base: number;
    switch (encoding & 0x70) {
      case DW_EH_PE_absptr:
        base = 0;
        break;
      case DW_EH_PE_pcrel:
        base = fieldAddress;
        break;
      case DW_EH_PE_datarel:
        if (bases.dataAddress === undefined) throw new CfiError('CFI_BAD_ENCODING', 'datarel pointer without a data base');
        base = bases.dataAddress;
        break;
      case DW_EH_PE_textrel:
        if (bases.textAddress === undefined) throw new CfiError('CFI_BAD_ENCODING', 'textrel pointer without a text base');
        base = bases.textAddress;
        break;
      default:
        // funcrel only appears in LSDA contents, which we never read.
        throw new CfiError('CFI_BAD_ENCODING', `pointer application 0x${(encoding & 0x70).toString(16)} is not supported`);
    }
    // Wrap like the 64-bit arithmetic it stands for (a negative pcrel result is a corrupt table).
    const address = base + value;
    if (address < 0) throw new CfiError('CFI_MALFORMED', `pointer resolves below zero (${address})`);
    return address;
  }
}

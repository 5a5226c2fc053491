// Runs the call-frame instructions of a CIE and an FDE (DWARF 5 §6.4.2) into
// rows: from each address on, how to find the CFA and where the caller's
// frame pointer and return address are. The rules stay general here (any
// register, any expression); rules.ts decides which ones the BPF walker can
// follow and counts the rest.
//
// Built for a big runtime's 76k FDEs and 400k rows (node): the instructions
// are decoded straight from the section's bytes, rules are interned to small
// integers (RuleTable) and rows are written column-wise into arrays the
// interpreter reuses from one FDE to the next, so running a program allocates
// nothing in the common case. Objects (CfaRule, RegisterRule) exist once per
// distinct rule, for rules.ts and for readers that want rows as objects.

import { CfiError, DwarfCursor } from './dwarf-cursor.js';
import type { Cie, Fde } from './cfi-entries.js';

/** DWARF register numbers of x86-64 (System V psABI, figure 3.36). */
export const X86_64_RBP = 6;
export const X86_64_RSP = 7;
export const X86_64_RA = 16;

export type CfaRule =
  | { type: 'register'; register: number; offset: number }
  | { type: 'expression'; expression: Buffer }
  /** Not yet defined: glibc's signal-frame CIE leaves it to the FDE. */
  | { type: 'undefined' };

export type RegisterRule =
  /** No instruction mentioned it: the same as "same value" for callee-saved registers. */
  | { type: 'unset' }
  | { type: 'undefined' }
  | { type: 'same' }
  /** Saved at CFA + offset. */
  | { type: 'offset'; offset: number }
  /** Its value is CFA + offset. */
  | { type: 'valOffset'; offset: number }
  | { type: 'register'; register: number }
  /** Saved at the address the expression computes. */
  | { type: 'expression'; expression: Buffer }
  | { type: 'valExpression'; expression: Buffer };

export interface CfaRow {
  /** First address the row applies to; it lasts until the next row's address (or the FDE's end). */
  address: number;
  cfa: CfaRule;
  /** The frame pointer (rbp). */
  fp: RegisterRule;
  /** The return-address column named by the CIE. */
  ra: RegisterRule;
}

/** Ids RuleTable gives before any rule is seen. */
export const CFA_UNDEFINED_ID = 0;
export const REGISTER_UNSET_ID = 0;
const REGISTER_UNDEFINED_ID = 1;
const REGISTER_SAME_ID = 2;

/** rsp/rbp + offset for offsets in [0, FAST_CFA_OFFSETS): nearly every CFA rule, found without hashing. */
export const FAST_CFA_OFFSETS = 4096;
/** "Saved at CFA + offset" for offsets in [-FAST_SAVED_OFFSETS / 2, FAST_SAVED_OFFSETS / 2). */
export const FAST_SAVED_OFFSETS = 4096;

/**
 * The distinct CFA and register rules of one build, each given a small
 * integer id (its index in `cfa` / `register`), so the interpreter's state
 * and rows are integers and rules.ts classifies each distinct rule once.
 * Equal rules get the same id: rows can be compared by id.
 */
export class RuleTable {
  readonly cfa: CfaRule[] = [{ type: 'undefined' }];
  /** For a 'register' CFA rule: its register and offset (-1 and 0 for other kinds), read by def_cfa_register/offset without touching the object. */
  readonly cfaRegister: number[] = [-1];
  readonly cfaOffset: number[] = [0];
  readonly register: RegisterRule[] = [{ type: 'unset' }, { type: 'undefined' }, { type: 'same' }];
  /** Ids of rbp + [0, FAST_CFA_OFFSETS) then rsp + [0, FAST_CFA_OFFSETS) (-1: not seen yet), read by the interpreter's fast path. */
  readonly fastCfa = new Int32Array(2 * FAST_CFA_OFFSETS).fill(-1);
  /** Ids of "saved at CFA + offset" from offset -FAST_SAVED_OFFSETS / 2 on (-1: not seen yet). */
  readonly fastSaved = new Int32Array(FAST_SAVED_OFFSETS).fill(-1);
  private readonly cfaByKey = new Map<string, number>();
  private readonly registerByKey = new Map<string, number>();

  /** CFA = register + offset. */
  cfaAt(register: number, offset: number): number {
    const fast = (register === X86_64_RSP || register === X86_64_RBP) && offset >= 0 && offset < FAST_CFA_OFFSETS && Number.isInteger(offset);
    const slot = fast ? (register === X86_64_RSP ? FAST_CFA_OFFSETS : 0) + offset : -1;
    if (fast) {
      const id = this.fastCfa[slot]!;
      if (id >= 0) return id;
    }
    const key = `r${register}:${offset}`;
    let id = this.cfaByKey.get(key);
    if (id === undefined) {
      id = this.cfa.length;
      this.cfa.push({ type: 'register', register, offset });
      this.cfaRegister.push(register);
      this.cfaOffset.push(offset);
      this.cfaByKey.set(key, id);
    }
    if (fast) this.fastCfa[slot] = id;
    return id;
  }

  /** CFA = the value of a DWARF expression (bytes [start, end) of `bytes`). */
  cfaExpression(bytes: Buffer, start: number, end: number): number {
    const key = `e${bytes.toString('latin1', start, end)}`;
    let id = this.cfaByKey.get(key);
    if (id === undefined) {
      id = this.cfa.length;
      this.cfa.push({ type: 'expression', expression: bytes.subarray(start, end) });
      this.cfaRegister.push(-1);
      this.cfaOffset.push(0);
      this.cfaByKey.set(key, id);
    }
    return id;
  }

  /** Saved at CFA + offset: callee-saved pushes, the return address. */
  savedAt(offset: number): number {
    const slot = offset + FAST_SAVED_OFFSETS / 2;
    const fast = slot >= 0 && slot < FAST_SAVED_OFFSETS && Number.isInteger(slot);
    if (fast) {
      const id = this.fastSaved[slot]!;
      if (id >= 0) return id;
    }
    const id = this.registerRule(`o${offset}`, () => ({ type: 'offset', offset }));
    if (fast) this.fastSaved[slot] = id;
    return id;
  }

  undefinedRule(): number {
    return REGISTER_UNDEFINED_ID;
  }

  sameValue(): number {
    return REGISTER_SAME_ID;
  }

  valOffset(offset: number): number {
    return this.registerRule(`v${offset}`, () => ({ type: 'valOffset', offset }));
  }

  inRegister(register: number): number {
    return this.registerRule(`r${register}`, () => ({ type: 'register', register }));
  }

  expression(type: 'expression' | 'valExpression', bytes: Buffer, start: number, end: number): number {
    return this.registerRule(`${type === 'expression' ? 'e' : 'x'}${bytes.toString('latin1', start, end)}`, () => ({ type, expression: bytes.subarray(start, end) }));
  }

  private registerRule(key: string, make: () => RegisterRule): number {
    let id = this.registerByKey.get(key);
    if (id === undefined) {
      id = this.register.length;
      this.register.push(make());
      this.registerByKey.set(key, id);
    }
    return id;
  }

  /** The id of a rule given as an object (equal objects, equal ids). */
  idOfCfa(rule: CfaRule): number {
    switch (rule.type) {
      case 'undefined':
        return CFA_UNDEFINED_ID;
      case 'register':
        return this.cfaAt(rule.register, rule.offset);
      case 'expression':
        return this.cfaExpression(rule.expression, 0, rule.expression.length);
    }
  }

  idOfRegister(rule: RegisterRule): number {
    switch (rule.type) {
      case 'unset':
        return REGISTER_UNSET_ID;
      case 'undefined':
        return REGISTER_UNDEFINED_ID;
      case 'same':
        return REGISTER_SAME_ID;
      case 'offset':
        return this.savedAt(rule.offset);
      case 'valOffset':
        return this.valOffset(rule.offset);
      case 'register':
        return this.inRegister(rule.register);
      case 'expression':
      case 'valExpression':
        return this.expression(rule.type, rule.expression, 0, rule.expression.length);
    }
  }
}

/** Rows of one FDE the arrays start with: more than any compiler emits for one function, so they do not grow in the hot loop. */
const INITIAL_ROWS = 4096;
const INITIAL_STACK = 16;

function truncated(n: number, at: number, end: number): CfiError {
  return new CfiError('CFI_TRUNCATED', `need ${n} bytes at offset ${at}, have ${end - at}`);
}

/**
 * Runs FDE programs into rows of rule ids. Only the CFA, rbp and the
 * return-address column are tracked: they are all a walk needs. One
 * interpreter serves a whole file: its row arrays, its remember-state stack
 * and its CIEs' initial states are reused from one FDE to the next.
 */
export class CfaInterpreter {
  readonly rules = new RuleTable();
  /** The rows of the last run(): address, and the ids of the CFA, rbp and return-address rules. */
  rowCount = 0;
  rowAddress = new Float64Array(INITIAL_ROWS);
  rowCfa = new Int32Array(INITIAL_ROWS);
  rowFp = new Int32Array(INITIAL_ROWS);
  rowRa = new Int32Array(INITIAL_ROWS);

  // The state while a program runs.
  private cfa = CFA_UNDEFINED_ID;
  private fp = REGISTER_UNSET_ID;
  private ra = REGISTER_UNSET_ID;
  private raColumn = 0;
  /** What DW_CFA_restore goes back to: the CIE's rules (during the CIE's own program, "unset"). */
  private initialFp = REGISTER_UNSET_ID;
  private initialRa = REGISTER_UNSET_ID;
  private location = 0;
  /** DW_CFA_remember_state's stack: (cfa, fp, ra) per level. */
  private stack = new Int32Array(3 * INITIAL_STACK);
  /** The state after each CIE's initial instructions: (cfa, fp, ra). */
  private readonly cieStates = new Map<Cie, [number, number, number]>();
  /** The last FDE's CIE and its state (FDEs of one CIE come in long runs). */
  private lastCie: Cie | undefined;
  private lastCieState: [number, number, number] | undefined;
  // The bytes being decoded: [pos, end) of `bytes`; `start` is where the program began (for messages and set_loc).
  private bytes: Buffer = Buffer.alloc(0);
  private pos = 0;
  private end = 0;
  private start = 0;

  /**
   * Runs one FDE (its instructions are bytes [start, end) of `bytes`, the
   * first at `instructionsAddress`) into rowCount rows, in address order,
   * with no two rows at one address. Throws CfiError for an unknown or
   * truncated instruction (the FDE is then unusable as a whole: a half-run
   * program gives wrong rules).
   */
  run(cie: Cie, pcBegin: number, pcEnd: number, bytes: Buffer, start: number, end: number, instructionsAddress: number): number {
    this.rowCount = 0;
    this.raColumn = cie.returnAddressRegister;
    this.location = pcBegin;
    // A CIE is shared by thousands of FDEs: run its instructions once.
    let initial = cie === this.lastCie ? this.lastCieState : this.cieStates.get(cie);
    if (initial === undefined) {
      this.cfa = CFA_UNDEFINED_ID;
      this.fp = REGISTER_UNSET_ID;
      this.ra = REGISTER_UNSET_ID;
      this.initialFp = REGISTER_UNSET_ID;
      this.initialRa = REGISTER_UNSET_ID;
      const instructions = cie.initialInstructions;
      this.program(cie, instructions, 0, instructions.length, 0, true);
      initial = [this.cfa, this.fp, this.ra];
      this.cieStates.set(cie, initial);
    } else {
      this.cfa = initial[0];
      this.fp = initial[1];
      this.ra = initial[2];
    }
    this.lastCie = cie;
    this.lastCieState = initial;
    this.location = pcBegin;
    this.initialFp = this.fp;
    this.initialRa = this.ra;
    this.program(cie, bytes, start, end, instructionsAddress, false);
    this.emit(pcEnd);
    return this.rowCount;
  }

  /** The rows of the last run() as objects. */
  rowObjects(): CfaRow[] {
    const rows: CfaRow[] = [];
    for (let i = 0; i < this.rowCount; i++) {
      rows.push({ address: this.rowAddress[i]!, cfa: this.rules.cfa[this.rowCfa[i]!]!, fp: this.rules.register[this.rowFp[i]!]!, ra: this.rules.register[this.rowRa[i]!]! });
    }
    return rows;
  }

  private emit(until: number): void {
    if (until <= this.location) return;
    const i = this.rowCount;
    if (i === this.rowAddress.length) this.growRows();
    this.rowAddress[i] = this.location;
    this.rowCfa[i] = this.cfa;
    this.rowFp[i] = this.fp;
    this.rowRa[i] = this.ra;
    this.rowCount = i + 1;
  }

  private growRows(): void {
    const size = this.rowAddress.length * 2;
    const address = new Float64Array(size);
    address.set(this.rowAddress);
    this.rowAddress = address;
    for (const column of ['rowCfa', 'rowFp', 'rowRa'] as const) {
      const grown = new Int32Array(size);
      grown.set(this[column]);
      this[column] = grown;
    }
  }

  private set(register: number, rule: number): void {
    if (register === X86_64_RBP) this.fp = rule;
    else if (register === this.raColumn) this.ra = rule;
  }

  private restore(register: number): void {
    this.set(register, register === X86_64_RBP ? this.initialFp : this.initialRa);
  }

  private u8(): number {
    if (this.pos >= this.end) throw truncated(1, this.pos - this.start, this.end - this.start);
    return this.bytes[this.pos++]!;
  }

  private fixed(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw truncated(n, at - this.start, this.end - this.start);
    this.pos = at + n;
    return at;
  }

  // LEB128 as dwarf-cursor.ts reads it (the same arithmetic, so the same values for every input).
  private uleb(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const byte = this.u8();
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
      if (scale > 2 ** 63) throw new CfiError('CFI_MALFORMED', `ULEB128 longer than 64 bits at offset ${this.pos - this.start}`);
    }
  }

  private sleb(): number {
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
      if (scale > 2 ** 63) throw new CfiError('CFI_MALFORMED', `SLEB128 longer than 64 bits at offset ${this.pos - this.start}`);
    }
  }

  /** A DW_FORM_block (ULEB length, bytes): its [start, end) in `bytes`. */
  private block(): [number, number] {
    const length = this.uleb();
    const at = this.fixed(length);
    return [at, at + length];
  }

  /**
   * Runs a program: the instructions compilers emit for nearly every
   * function (advances, def_cfa*, offset, restore, remember/restore_state,
   * args_size; operands of one or two bytes) on a fast path over locals,
   * with rules found in RuleTable's direct tables; anything else (and any
   * longer operand) is run by general() from that instruction on. The state
   * is handed over in the fields, so general() goes on exactly where the
   * fast path stopped.
   */
  private program(cie: Cie, bytes: Buffer, start: number, end: number, bytesAddress: number, isCie: boolean): void {
    const rules = this.rules;
    const fastCfa = rules.fastCfa;
    const fastSaved = rules.fastSaved;
    const codeAlignment = cie.codeAlignment;
    const dataAlignment = cie.dataAlignment;
    const raColumn = this.raColumn;
    const initialFp = this.initialFp;
    const initialRa = this.initialRa;
    let cfa = this.cfa;
    let fp = this.fp;
    let ra = this.ra;
    let location = this.location;
    let rowCount = this.rowCount;
    let rowAddress = this.rowAddress;
    let rowCfa = this.rowCfa;
    let rowFp = this.rowFp;
    let rowRa = this.rowRa;
    let stack = this.stack;
    let depth = 0;
    let pos = start;
    while (pos < end) {
      const at = pos;
      const opcode = bytes[pos++]!;
      const high = opcode & 0xc0;
      let next = location;
      // A new CFA rule (def_cfa, def_cfa_register, def_cfa_offset): looked up below, in one place.
      let newCfaRegister = -1;
      let newCfaOffset = 0;
      if (high === 0x40) {
        next = location + (opcode & 0x3f) * codeAlignment;
      } else if (high === 0x80 || opcode === 0x0e || opcode === 0x2e || opcode === 0x0d || opcode === 0x02) {
        // One operand: a ULEB128 of one or two bytes (frames up to 16 KiB), or a u8 for advance_loc1.
        let operand = bytes[pos]!;
        if (pos >= end) {
          pos = at;
          break;
        }
        pos++;
        if (operand >= 0x80 && opcode !== 0x02) {
          const more = bytes[pos]!;
          if (pos >= end || more >= 0x80) {
            pos = at;
            break;
          }
          pos++;
          operand = (operand & 0x7f) + more * 128;
        }
        if (high === 0x80) {
          const offset = operand * dataAlignment;
          const slot = offset + FAST_SAVED_OFFSETS / 2;
          let rule = slot >= 0 && slot < FAST_SAVED_OFFSETS ? fastSaved[slot]! : -1;
          if (rule < 0) rule = rules.savedAt(offset);
          const register = opcode & 0x3f;
          if (register === X86_64_RBP) fp = rule;
          else if (register === raColumn) ra = rule;
          continue;
        }
        if (opcode === 0x02) {
          next = location + operand * codeAlignment;
        } else if (opcode === 0x0e || opcode === 0x0d) {
          const register = opcode === 0x0d ? operand : rules.cfaRegister[cfa]!;
          if (register < 0) {
            pos = at; // def_cfa_offset without a CFA register: general() throws
            break;
          }
          newCfaRegister = register;
          newCfaOffset = opcode === 0x0d ? rules.cfaOffset[cfa]! : operand;
        } else {
          continue; // GNU_args_size
        }
      } else if (opcode === 0x0c) {
        // def_cfa: register and offset, one-byte ULEB128s (clang's rbp frames)
        const register = bytes[pos]!;
        const offset = bytes[pos + 1]!;
        if (pos + 2 > end || register >= 0x80 || offset >= 0x80) {
          pos = at;
          break;
        }
        pos += 2;
        newCfaRegister = register;
        newCfaOffset = offset;
      } else if (opcode === 0x03) {
        if (pos + 2 > end) {
          pos = at;
          break;
        }
        next = location + (bytes[pos]! | (bytes[pos + 1]! << 8)) * codeAlignment;
        pos += 2;
      } else if (high === 0xc0) {
        const register = opcode & 0x3f;
        if (register === X86_64_RBP) fp = initialFp;
        else if (register === raColumn) ra = initialRa;
        continue;
      } else if (opcode === 0x00) {
        continue;
      } else if (opcode === 0x0a) {
        if (3 * depth === stack.length) {
          const grown = new Int32Array(stack.length * 2);
          grown.set(stack);
          this.stack = stack = grown;
        }
        stack[3 * depth] = cfa;
        stack[3 * depth + 1] = fp;
        stack[3 * depth + 2] = ra;
        depth++;
        continue;
      } else if (opcode === 0x0b && depth > 0) {
        depth--;
        cfa = stack[3 * depth]!;
        fp = stack[3 * depth + 1]!;
        ra = stack[3 * depth + 2]!;
        continue;
      } else {
        pos = at;
        break;
      }
      if (newCfaRegister >= 0) {
        const fast = (newCfaRegister === X86_64_RSP || newCfaRegister === X86_64_RBP) && newCfaOffset >= 0 && newCfaOffset < FAST_CFA_OFFSETS;
        let rule = fast ? fastCfa[(newCfaRegister === X86_64_RSP ? FAST_CFA_OFFSETS : 0) + newCfaOffset]! : -1;
        if (rule < 0) rule = rules.cfaAt(newCfaRegister, newCfaOffset);
        cfa = rule;
        continue;
      }
      // An advance: the row so far lasts until `next`.
      if (!isCie && next > location) {
        if (rowCount === rowAddress.length) {
          this.rowCount = rowCount;
          this.growRows();
          rowAddress = this.rowAddress;
          rowCfa = this.rowCfa;
          rowFp = this.rowFp;
          rowRa = this.rowRa;
        }
        rowAddress[rowCount] = location;
        rowCfa[rowCount] = cfa;
        rowFp[rowCount] = fp;
        rowRa[rowCount] = ra;
        rowCount++;
      }
      location = next;
    }
    this.cfa = cfa;
    this.fp = fp;
    this.ra = ra;
    this.location = location;
    this.rowCount = rowCount;
    if (pos < end) this.general(cie, bytes, start, end, bytesAddress, isCie, pos, depth);
  }

  /** Runs bytes [from, end) of a program that began at `start`, every instruction, from the state in the fields (`depth` states remembered). */
  private general(cie: Cie, bytes: Buffer, start: number, end: number, bytesAddress: number, isCie: boolean, from: number, initialDepth: number): void {
    this.bytes = bytes;
    this.pos = from;
    this.end = end;
    this.start = start;
    const rules = this.rules;
    const codeAlignment = cie.codeAlignment;
    const dataAlignment = cie.dataAlignment;
    let depth = initialDepth;
    while (this.pos < this.end) {
      const opcode = this.u8();
      const high = opcode & 0xc0;
      const low = opcode & 0x3f;
      if (high === 0x40) {
        this.advance(low * codeAlignment, isCie);
        continue;
      }
      if (high === 0x80) {
        this.set(low, rules.savedAt(this.uleb() * dataAlignment));
        continue;
      }
      if (high === 0xc0) {
        this.restore(low);
        continue;
      }
      switch (opcode) {
        case 0x00: // nop
          break;
        case 0x01: {
          // set_loc: an address in the FDE's pointer encoding (rare: a cursor over the program, as its offsets and alignment are relative to it)
          const cursor = new DwarfCursor(bytes.subarray(start, end), this.pos - start);
          const at = bytesAddress + cursor.pos;
          const target = cie.fdePointerEncoding === 0 ? cursor.u64() : cursor.encodedPointer(cie.fdePointerEncoding, { sectionAddress: at - cursor.pos });
          this.pos = start + cursor.pos;
          if (target < this.location) throw new CfiError('CFI_MALFORMED', 'DW_CFA_set_loc goes backwards');
          if (!isCie) this.emit(target);
          this.location = target;
          break;
        }
        case 0x02:
          this.advance(this.u8() * codeAlignment, isCie);
          break;
        case 0x03:
          this.advance(bytes.readUInt16LE(this.fixed(2)) * codeAlignment, isCie);
          break;
        case 0x04:
          this.advance(bytes.readUInt32LE(this.fixed(4)) * codeAlignment, isCie);
          break;
        case 0x05: {
          const register = this.uleb();
          this.set(register, rules.savedAt(this.uleb() * dataAlignment));
          break;
        }
        case 0x06:
          this.restore(this.uleb());
          break;
        case 0x07:
          this.set(this.uleb(), rules.undefinedRule());
          break;
        case 0x08:
          this.set(this.uleb(), rules.sameValue());
          break;
        case 0x09: {
          const register = this.uleb();
          this.set(register, rules.inRegister(this.uleb()));
          break;
        }
        case 0x0a: {
          if (3 * depth === this.stack.length) {
            const grown = new Int32Array(this.stack.length * 2);
            grown.set(this.stack);
            this.stack = grown;
          }
          this.stack[3 * depth] = this.cfa;
          this.stack[3 * depth + 1] = this.fp;
          this.stack[3 * depth + 2] = this.ra;
          depth++;
          break;
        }
        case 0x0b: {
          if (depth === 0) throw new CfiError('CFI_MALFORMED', 'DW_CFA_restore_state without a remembered state');
          depth--;
          // The CFA rule is restored too (DWARF 5 says so; GCC relies on it).
          this.cfa = this.stack[3 * depth]!;
          this.fp = this.stack[3 * depth + 1]!;
          this.ra = this.stack[3 * depth + 2]!;
          break;
        }
        case 0x0c: {
          const register = this.uleb();
          this.cfa = rules.cfaAt(register, this.uleb());
          break;
        }
        case 0x0d: {
          const register = this.uleb();
          // The offset stays (0 after an expression or nothing).
          this.cfa = rules.cfaAt(register, rules.cfaOffset[this.cfa]!);
          break;
        }
        case 0x0e: {
          const offset = this.uleb();
          const register = rules.cfaRegister[this.cfa]!;
          if (register < 0) throw new CfiError('CFI_MALFORMED', 'DW_CFA_def_cfa_offset without a CFA register');
          this.cfa = rules.cfaAt(register, offset);
          break;
        }
        case 0x0f: {
          const [from, to] = this.block();
          this.cfa = rules.cfaExpression(bytes, from, to);
          break;
        }
        case 0x10: {
          const register = this.uleb();
          const [from, to] = this.block();
          this.set(register, rules.expression('expression', bytes, from, to));
          break;
        }
        case 0x11: {
          const register = this.uleb();
          this.set(register, rules.savedAt(this.sleb() * dataAlignment));
          break;
        }
        case 0x12: {
          const register = this.uleb();
          this.cfa = rules.cfaAt(register, this.sleb() * dataAlignment);
          break;
        }
        case 0x13: {
          const offset = this.sleb() * dataAlignment;
          const register = rules.cfaRegister[this.cfa]!;
          if (register < 0) throw new CfiError('CFI_MALFORMED', 'DW_CFA_def_cfa_offset_sf without a CFA register');
          this.cfa = rules.cfaAt(register, offset);
          break;
        }
        case 0x14: {
          const register = this.uleb();
          this.set(register, rules.valOffset(this.uleb() * dataAlignment));
          break;
        }
        case 0x15: {
          const register = this.uleb();
          this.set(register, rules.valOffset(this.sleb() * dataAlignment));
          break;
        }
        case 0x16: {
          const register = this.uleb();
          const [from, to] = this.block();
          this.set(register, rules.expression('valExpression', bytes, from, to));
          break;
        }
        case 0x2e: // GNU_args_size: only matters to exception handling
          this.uleb();
          break;
        case 0x2f: {
          const register = this.uleb();
          this.set(register, rules.savedAt(-this.uleb() * dataAlignment));
          break;
        }
        default:
          throw new CfiError('CFI_MALFORMED', `unknown call-frame instruction 0x${opcode.toString(16)}`);
      }
    }
  }

  private advance(delta: number, isCie: boolean): void {
    const next = this.location + delta;
    if (!isCie) this.emit(next);
    this.location = next;
  }
}

/** The rows of one FDE as objects (for readers that want them: readCfi, tests); `interpreter` may be reused across FDEs. */
export function runFde(fde: Fde, interpreter = new CfaInterpreter()): CfaRow[] {
  interpreter.run(fde.cie, fde.pcBegin, fde.pcEnd, fde.instructions, 0, fde.instructions.length, fde.instructionsAddress);
  return interpreter.rowObjects();
}

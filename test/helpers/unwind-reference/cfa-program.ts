// FROZEN: src/unwind/cfa-program.ts as of commit 7accc28, the object-per-row builder that the columnar
// one replaced. test/unwind-table-identity.test.ts builds every table with both and asks
// for byte-identical cache entries; do not edit or optimise this copy.
//
// Runs the call-frame instructions of a CIE and an FDE (DWARF 5 §6.4.2) into
// rows: from each address on, how to find the CFA and where the caller's
// frame pointer and return address are. The rules stay general here (any
// register, any expression); rules.ts decides which ones the BPF walker can
// follow and counts the rest.

import { CfiError, DwarfCursor } from './dwarf-cursor.js';
import type { Fde } from './cfi-entries.js';

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

const UNSET: RegisterRule = { type: 'unset' };

/**
 * Only the CFA, rbp and the return-address column are tracked: they are all a
 * walk needs, and three fields copy for free on every DW_CFA_remember_state
 * and every FDE (a map of all sixteen registers was a third of the run time).
 */
interface State {
  cfa: CfaRule;
  fp: RegisterRule;
  ra: RegisterRule;
}

function copyState(state: State): State {
  return { cfa: state.cfa, fp: state.fp, ra: state.ra };
}

/**
 * The rows of one FDE, in address order, with no two rows at one address.
 * Throws CfiError for an unknown or truncated instruction (the FDE is then
 * unusable as a whole: a half-run program gives wrong rules).
 */
export function runFde(fde: Fde): CfaRow[] {
  const cie = fde.cie;
  const state: State = { cfa: { type: 'undefined' }, fp: UNSET, ra: UNSET };
  const raColumn = cie.returnAddressRegister;
  const set = (register: number, rule: RegisterRule): void => {
    if (register === X86_64_RBP) state.fp = rule;
    else if (register === raColumn) state.ra = rule;
  };
  // The CIE's rules, which DW_CFA_restore goes back to (set once the CIE has run; during it, "unset").
  let initialState: State = { cfa: state.cfa, fp: UNSET, ra: UNSET };
  const restore = (register: number): void => set(register, register === X86_64_RBP ? initialState.fp : initialState.ra);
  const rows: CfaRow[] = [];
  let location = fde.pcBegin;

  const emit = (until: number): void => {
    if (until <= location) return;
    rows.push({
      address: location,
      cfa: state.cfa,
      fp: state.fp,
      ra: state.ra,
    });
  };

  const run = (bytes: Buffer, bytesAddress: number, isCie: boolean): void => {
    const cursor = new DwarfCursor(bytes);
    const stack: State[] = [];
    const advance = (delta: number): void => {
      const next = location + delta * cie.codeAlignment;
      if (!isCie) emit(next);
      location = next;
    };
    while (!cursor.atEnd) {
      const opcode = cursor.u8();
      const high = opcode & 0xc0;
      const low = opcode & 0x3f;
      if (high === 0x40) {
        advance(low);
        continue;
      }
      if (high === 0x80) {
        set(low, savedAt(cursor.uleb() * cie.dataAlignment));
        continue;
      }
      if (high === 0xc0) {
        restore(low);
        continue;
      }
      switch (opcode) {
        case 0x00: // nop
          break;
        case 0x01: {
          // set_loc: an address in the FDE's pointer encoding
          const at = bytesAddress + cursor.pos;
          const target = fde.cie.fdePointerEncoding === 0 ? cursor.u64() : cursor.encodedPointer(fde.cie.fdePointerEncoding, { sectionAddress: at - cursor.pos });
          if (target < location) throw new CfiError('CFI_MALFORMED', 'DW_CFA_set_loc goes backwards');
          if (!isCie) emit(target);
          location = target;
          break;
        }
        case 0x02:
          advance(cursor.u8());
          break;
        case 0x03:
          advance(cursor.u16());
          break;
        case 0x04:
          advance(cursor.u32());
          break;
        case 0x05: {
          const register = cursor.uleb();
          set(register, savedAt(cursor.uleb() * cie.dataAlignment));
          break;
        }
        case 0x06:
          restore(cursor.uleb());
          break;
        case 0x07:
          set(cursor.uleb(), { type: 'undefined' });
          break;
        case 0x08:
          set(cursor.uleb(), { type: 'same' });
          break;
        case 0x09: {
          const register = cursor.uleb();
          set(register, { type: 'register', register: cursor.uleb() });
          break;
        }
        case 0x0a:
          stack.push(copyState(state));
          break;
        case 0x0b: {
          const saved = stack.pop();
          if (saved === undefined) throw new CfiError('CFI_MALFORMED', 'DW_CFA_restore_state without a remembered state');
          // The CFA rule is restored too (DWARF 5 says so; GCC relies on it).
          state.cfa = saved.cfa;
          state.fp = saved.fp;
          state.ra = saved.ra;
          break;
        }
        case 0x0c: {
          const register = cursor.uleb();
          state.cfa = cfaAt(register, cursor.uleb());
          break;
        }
        case 0x0d: {
          const register = cursor.uleb();
          state.cfa = cfaAt(register, state.cfa.type === 'register' ? state.cfa.offset : 0);
          break;
        }
        case 0x0e: {
          const offset = cursor.uleb();
          if (state.cfa.type !== 'register') throw new CfiError('CFI_MALFORMED', 'DW_CFA_def_cfa_offset without a CFA register');
          state.cfa = cfaAt(state.cfa.register, offset);
          break;
        }
        case 0x0f: {
          state.cfa = { type: 'expression', expression: block(cursor) };
          break;
        }
        case 0x10: {
          const register = cursor.uleb();
          set(register, { type: 'expression', expression: block(cursor) });
          break;
        }
        case 0x11: {
          const register = cursor.uleb();
          set(register, savedAt(cursor.sleb() * cie.dataAlignment));
          break;
        }
        case 0x12: {
          const register = cursor.uleb();
          state.cfa = cfaAt(register, cursor.sleb() * cie.dataAlignment);
          break;
        }
        case 0x13: {
          const offset = cursor.sleb() * cie.dataAlignment;
          if (state.cfa.type !== 'register') throw new CfiError('CFI_MALFORMED', 'DW_CFA_def_cfa_offset_sf without a CFA register');
          state.cfa = cfaAt(state.cfa.register, offset);
          break;
        }
        case 0x14: {
          const register = cursor.uleb();
          set(register, { type: 'valOffset', offset: cursor.uleb() * cie.dataAlignment });
          break;
        }
        case 0x15: {
          const register = cursor.uleb();
          set(register, { type: 'valOffset', offset: cursor.sleb() * cie.dataAlignment });
          break;
        }
        case 0x16: {
          const register = cursor.uleb();
          set(register, { type: 'valExpression', expression: block(cursor) });
          break;
        }
        case 0x2e: // GNU_args_size: only matters to exception handling
          cursor.uleb();
          break;
        case 0x2f: {
          const register = cursor.uleb();
          set(register, savedAt(-cursor.uleb() * cie.dataAlignment));
          break;
        }
        default:
          throw new CfiError('CFI_MALFORMED', `unknown call-frame instruction 0x${opcode.toString(16)}`);
      }
    }
  };

  // A CIE is shared by thousands of FDEs: run its instructions once.
  const initial = cieStates.get(cie);
  if (initial === undefined) {
    run(cie.initialInstructions, 0, true);
    cieStates.set(cie, copyState(state));
  } else {
    state.cfa = initial.cfa;
    state.fp = initial.fp;
    state.ra = initial.ra;
  }
  location = fde.pcBegin;
  initialState = copyState(state);
  run(fde.instructions, fde.instructionsAddress, false);
  emit(fde.pcEnd);
  return rows;
}

// Rules are interned: the same few (rsp + 8, saved at CFA - 16, ...) recur in
// every FDE, so rows share objects (less garbage for a 400k-row binary) and
// rules.ts can classify each distinct one once.
const cfaRules = new Map<number, CfaRule>();
const savedAtRules = new Map<number, RegisterRule>();

function cfaAt(register: number, offset: number): CfaRule {
  if (Math.abs(offset) >= 2 ** 31 || register > 0xffff) return { type: 'register', register, offset };
  const key = register * 2 ** 32 + (offset + 2 ** 31);
  let rule = cfaRules.get(key);
  if (rule === undefined) {
    rule = { type: 'register', register, offset };
    if (cfaRules.size < 1 << 16) cfaRules.set(key, rule);
  }
  return rule;
}

function savedAt(offset: number): RegisterRule {
  let rule = savedAtRules.get(offset);
  if (rule === undefined) {
    rule = { type: 'offset', offset };
    if (savedAtRules.size < 1 << 16) savedAtRules.set(offset, rule);
  }
  return rule;
}

const cieStates = new WeakMap<Fde['cie'], State>();


function block(cursor: DwarfCursor): Buffer {
  const length = cursor.uleb();
  const start = cursor.pos;
  cursor.skip(length);
  return cursor.bytes.subarray(start, start + length);
}

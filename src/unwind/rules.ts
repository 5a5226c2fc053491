// Turns the general DWARF rows of cfa-program.ts into the few rule kinds the
// BPF walker follows, and names every rule it cannot follow so it is counted,
// never silently wrong. The kinds and their numbers are shared with
// bpf/profile.h (enum fp_cfa_kind, enum fp_fp_kind): change both together.
//
// What x86-64 code emits, and how each is followed:
// - CFA = rsp + n or rbp + n: nearly every row.
// - The PLT expression (CFA = rsp + 8, plus 8 more once past the push in a lazy
//   PLT entry): glibc's and binutils' PLT FDEs. Followed as its own kind.
// - CFA = *(rsp + n) or *(rbp + n): GCC's stack realignment (main with AVX,
//   DRAP) and OpenSSL's assembly.
// - Signal trampolines (CIE augmentation 'S', glibc's __restore_rt): the
//   interrupted registers are in the ucontext at rsp; followed as a kind.
// - An undefined return address: the outermost frame (_start, clone3).

import { X86_64_RBP, X86_64_RSP, type CfaRow, type RegisterRule } from './cfa-program.js';

/** enum fp_cfa_kind in bpf/profile.h. */
export const CfaKind = {
  /** No rule can be followed here (gap between FDEs, or an unsupported rule). */
  invalid: 0,
  sp: 1,
  fp: 2,
  /** CFA = rsp + 8 (+ 8 when (rip & 15) >= threshold), threshold in `offset`. */
  plt: 3,
  /** CFA = *(rsp + offset). */
  derefSp: 4,
  /** CFA = *(rbp + offset). */
  derefFp: 5,
  /** rsp points at a ucontext: take rip, rsp, rbp from it. */
  signal: 6,
  /** The return address is undefined: the stack ends here, complete. */
  end: 7,
} as const;
export type CfaKindValue = (typeof CfaKind)[keyof typeof CfaKind];

/** enum fp_fp_kind in bpf/profile.h: where the caller's rbp is. */
export const FpKind = {
  /** rbp is not touched by this frame: the caller's is the current one. */
  unchanged: 0,
  /** Saved at CFA + offset. */
  atCfa: 1,
  /** Saved at rbp + offset (GCC's realigned frames). */
  atFp: 2,
  /** Not recoverable: the caller's rbp is unknown (0). */
  unknown: 3,
} as const;
export type FpKindValue = (typeof FpKind)[keyof typeof FpKind];

export interface UnwindRule {
  cfa: CfaKindValue;
  cfaOffset: number;
  fp: FpKindValue;
  fpOffset: number;
}

/** No information here (between FDEs): the walker tries the frame-pointer rule. */
export const INVALID_RULE: UnwindRule = { cfa: CfaKind.invalid, cfaOffset: 0, fp: FpKind.unchanged, fpOffset: 0 };
/** A rule the walker cannot follow: the walk stops there, counted as unsupported. */
export const UNSUPPORTED_RULE: UnwindRule = { cfa: CfaKind.invalid, cfaOffset: 1, fp: FpKind.unchanged, fpOffset: 0 };

export function sameRule(a: UnwindRule, b: UnwindRule): boolean {
  return a.cfa === b.cfa && a.cfaOffset === b.cfaOffset && a.fp === b.fp && a.fpOffset === b.fpOffset;
}

export function ruleKey(rule: UnwindRule): string {
  return `${rule.cfa}:${rule.cfaOffset}:${rule.fp}:${rule.fpOffset}`;
}

// DWARF expression opcodes we recognise.
const DW_OP_deref = 0x06;
const DW_OP_and = 0x1a;
const DW_OP_plus = 0x22;
const DW_OP_shl = 0x24;
const DW_OP_ge = 0x2a;
const DW_OP_lit0 = 0x30;
const DW_OP_breg0 = 0x70;
const RIP = 16;

/** One breg<n> <sleb> at `at`, or undefined. */
function readBreg(expression: Buffer, at: number): { register: number; offset: number; next: number } | undefined {
  const opcode = expression[at];
  if (opcode === undefined || opcode < DW_OP_breg0 || opcode > DW_OP_breg0 + 31) return undefined;
  let offset = 0;
  let scale = 1;
  let pos = at + 1;
  for (;;) {
    const byte = expression[pos++];
    if (byte === undefined) return undefined;
    offset += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) {
      if ((byte & 0x40) !== 0) offset -= scale;
      break;
    }
    if (scale > 2 ** 35) return undefined;
  }
  return { register: opcode - DW_OP_breg0, offset, next: pos };
}

/** The lazy-binding PLT's CFA: breg7 8; breg16 0; lit15; and; lit<k>; ge; lit3; shl; plus. Returns k. */
function pltThreshold(expression: Buffer): number | undefined {
  const sp = readBreg(expression, 0);
  if (sp === undefined || sp.register !== X86_64_RSP || sp.offset !== 8) return undefined;
  const ip = readBreg(expression, sp.next);
  if (ip === undefined || ip.register !== RIP || ip.offset !== 0) return undefined;
  const rest = expression.subarray(ip.next);
  if (rest.length !== 7) return undefined;
  const threshold = rest[2]! - DW_OP_lit0;
  const shape = [DW_OP_lit0 + 15, DW_OP_and, -1, DW_OP_ge, DW_OP_lit0 + 3, DW_OP_shl, DW_OP_plus];
  for (let i = 0; i < shape.length; i++) if (shape[i] !== -1 && rest[i] !== shape[i]) return undefined;
  return threshold >= 0 && threshold <= 15 ? threshold : undefined;
}

function registerName(register: number): string {
  const names = ['rax', 'rdx', 'rcx', 'rbx', 'rsi', 'rdi', 'rbp', 'rsp'];
  return names[register] ?? (register === RIP ? 'rip' : `r${register}`);
}

/**
 * The rule the walker follows for one row, or UNSUPPORTED_RULE with the reason it
 * cannot (e.g. "cfa: register rax", "ra: expression"), for the caller to count.
 */
export function classifyRow(row: CfaRow, isSignalFrame: boolean): { rule: UnwindRule; unsupported?: string } {
  if (isSignalFrame) return { rule: { cfa: CfaKind.signal, cfaOffset: 0, fp: FpKind.unchanged, fpOffset: 0 } };
  if (row.ra.type === 'undefined') return { rule: { cfa: CfaKind.end, cfaOffset: 0, fp: FpKind.unchanged, fpOffset: 0 } };
  if (row.ra.type !== 'offset' || row.ra.offset !== -8) return { rule: UNSUPPORTED_RULE, unsupported: `ra: ${describeRule(row.ra)}` };

  let cfa: CfaKindValue;
  let cfaOffset: number;
  if (row.cfa.type === 'undefined') return { rule: UNSUPPORTED_RULE, unsupported: 'cfa: undefined' };
  if (row.cfa.type === 'register') {
    if (row.cfa.register === X86_64_RSP) cfa = CfaKind.sp;
    else if (row.cfa.register === X86_64_RBP) cfa = CfaKind.fp;
    else return { rule: UNSUPPORTED_RULE, unsupported: `cfa: register ${registerName(row.cfa.register)}` };
    cfaOffset = row.cfa.offset;
  } else {
    const threshold = pltThreshold(row.cfa.expression);
    const breg = readBreg(row.cfa.expression, 0);
    if (threshold !== undefined) {
      cfa = CfaKind.plt;
      cfaOffset = threshold;
    } else if (
      breg !== undefined &&
      (breg.register === X86_64_RSP || breg.register === X86_64_RBP) &&
      breg.next === row.cfa.expression.length - 1 &&
      row.cfa.expression[breg.next] === DW_OP_deref
    ) {
      cfa = breg.register === X86_64_RSP ? CfaKind.derefSp : CfaKind.derefFp;
      cfaOffset = breg.offset;
    } else {
      return { rule: UNSUPPORTED_RULE, unsupported: 'cfa: expression' };
    }
  }
  if (Math.abs(cfaOffset) >= 2 ** 31) return { rule: UNSUPPORTED_RULE, unsupported: 'cfa: offset beyond 32 bits' };

  let fp: FpKindValue = FpKind.unchanged;
  let fpOffset = 0;
  let unsupported: string | undefined;
  switch (row.fp.type) {
    case 'unset':
    case 'same':
      break;
    case 'offset':
      fp = FpKind.atCfa;
      fpOffset = row.fp.offset;
      break;
    case 'expression': {
      const at = readBreg(row.fp.expression, 0);
      if (at !== undefined && at.register === X86_64_RBP && at.next === row.fp.expression.length) {
        fp = FpKind.atFp;
        fpOffset = at.offset;
      } else {
        fp = FpKind.unknown;
        unsupported = 'fp: expression';
      }
      break;
    }
    case 'undefined':
      fp = FpKind.unknown;
      break;
    default:
      // The caller's rbp is lost, but the walk goes on: only a caller whose CFA is rbp-based needs it.
      fp = FpKind.unknown;
      unsupported = `fp: ${describeRule(row.fp)}`;
  }
  if (Math.abs(fpOffset) >= 2 ** 15) return { rule: UNSUPPORTED_RULE, unsupported: 'fp: offset beyond 16 bits' };
  return unsupported === undefined ? { rule: { cfa, cfaOffset, fp, fpOffset } } : { rule: { cfa, cfaOffset, fp, fpOffset }, unsupported };
}

function describeRule(rule: RegisterRule): string {
  switch (rule.type) {
    case 'offset':
    case 'valOffset':
      return `${rule.type} ${rule.offset}`;
    case 'register':
      return `register ${registerName(rule.register)}`;
    default:
      return rule.type;
  }
}

// FROZEN: src/unwind/row-compiler.ts as of commit 7accc28, the object-per-row builder that the columnar
// one replaced. test/unwind-table-identity.test.ts builds every table with both and asks
// for byte-identical cache entries; do not edit or optimise this copy.
//
// Compiles one file's CFI rows into the compact table the BPF walker searches.
//
// After reading how the OpenTelemetry eBPF profiler stores "stack deltas" (a
// deduplicated set of unwind rules, rows of (16-bit address, rule index),
// found through a (file, 64 KiB page) index), fleetprof's table is built the
// same way in spirit, with its own choices:
// - A row is 4 bytes: the low 16 bits of its address and a rule id. Rules are
//   deduplicated (a whole host needs a few thousand distinct ones), so rows
//   carry no offsets.
// - Rows that repeat the rule before them are dropped; so are the "no
//   information" rows between an FDE's end and the next FDE's start when the
//   gap is alignment padding (under 16 bytes), which no sample can hit.
// - Every 64 KiB page that has code gets an index entry (first row, count);
//   a page whose first row does not start at its first byte starts with a
//   copy of the rule in force there, so a lookup never leaves its page: the
//   BPF side does one hash lookup and a binary search of at most 17 steps.

import { classifyRow, INVALID_RULE, ruleKey, sameRule, type UnwindRule } from '../../../src/unwind/rules.js';
import type { CfaRow } from './cfa-program.js';
import type { Fde } from './cfi-entries.js';
import type { FdeRows } from './elf-cfi.js';

export const PAGE_BITS = 16;
const PAGE_SIZE = 1 << PAGE_BITS;
/** Gaps between FDEs shorter than this are function alignment padding. */
const PADDING_BYTES = 16;

export interface CompiledTable {
  /** Distinct rules; rows refer to them by index. */
  rules: UnwindRule[];
  /** Page number (address >> 16) of each index entry, ascending. */
  pages: Uint32Array;
  /** First row of each page, and how many rows it has. */
  pageFirstRow: Uint32Array;
  pageRowCount: Uint32Array;
  /** Low 16 bits of each row's address, and its rule index. */
  rowAddressLow: Uint16Array;
  rowRule: Uint16Array;
  stats: CompileStats;
}

export interface CompileStats {
  fdes: number;
  /** Rows the CFA programs produced. */
  inputRows: number;
  /** Rows after dropping repeats and padding gaps, before paging. */
  compactRows: number;
  /** Rows in the table (compact rows plus one carried into each page that needs it). */
  tableRows: number;
  /** Rows whose rule the walker cannot follow, by reason ("cfa: expression", ...). */
  unsupported: Map<string, number>;
}

/** Bytes the table takes in BPF maps: 4 per row, 16 per page entry (key + value). */
export function tableBytes(table: CompiledTable): number {
  return table.rowAddressLow.length * 4 + table.pages.length * 16;
}

type Classified = ReturnType<typeof classifyRow>;

/**
 * Flattens FDEs, fed one at a time in pcBegin order, into one address-ordered
 * run of rules, compacted as they come: repeats dropped, padding gaps
 * skipped. Streaming, so a big file's rows of every FDE (node: 400k row
 * objects) never exist at once: the table worker runs an FDE's program, feeds
 * it here and lets its rows go.
 */
export class RowFlattener {
  /** Start address of each compact row, and its rule (interned objects, shared). */
  readonly addresses: number[] = [];
  readonly rules: UnwindRule[] = [];
  inputRows = 0;
  fdes = 0;
  readonly unsupported = new Map<string, number>();
  // Rows share interned rule objects (cfa-program.ts): classify each distinct (cfa, fp, ra) once.
  private readonly classified = new Map<object, Map<object, Map<object, Classified>>>();

  private push(address: number, rule: UnwindRule): void {
    const last = this.addresses.length - 1;
    if (last >= 0 && this.addresses[last] === address) {
      // Overlapping FDEs (rare, from hand-written assembly): the later start wins.
      this.addresses.pop();
      this.rules.pop();
    }
    const previous = this.rules[this.rules.length - 1];
    if (previous !== undefined && sameRule(previous, rule)) return;
    this.addresses.push(address);
    this.rules.push(rule);
  }

  private classify(row: CfaRow, isSignalFrame: boolean): Classified {
    if (isSignalFrame) return classifyRow(row, true);
    let byFp = this.classified.get(row.cfa);
    if (byFp === undefined) this.classified.set(row.cfa, (byFp = new Map()));
    let byRa = byFp.get(row.fp);
    if (byRa === undefined) byFp.set(row.fp, (byRa = new Map()));
    let result = byRa.get(row.ra);
    if (result === undefined) byRa.set(row.ra, (result = classifyRow(row, false)));
    return result;
  }

  /** Adds one FDE's rows; `nextPcBegin` is where the next FDE starts (undefined: the last). */
  add(fde: Fde, rows: readonly CfaRow[], nextPcBegin: number | undefined): void {
    this.fdes++;
    for (const row of rows) {
      this.inputRows++;
      const { rule, unsupported: reason } = this.classify(row, fde.cie.isSignalFrame);
      if (reason !== undefined) this.unsupported.set(reason, (this.unsupported.get(reason) ?? 0) + 1);
      this.push(row.address, rule);
    }
    if (nextPcBegin === undefined || nextPcBegin - fde.pcEnd >= PADDING_BYTES) this.push(fde.pcEnd, INVALID_RULE);
  }

  /** The paged table of everything added. */
  compile(): CompiledTable {
    return compileFlatRows(this.addresses, this.rules, { fdes: this.fdes, inputRows: this.inputRows, unsupported: this.unsupported });
  }
}

export function compileTable(fdes: readonly FdeRows[]): CompiledTable {
  const flattener = new RowFlattener();
  for (let i = 0; i < fdes.length; i++) flattener.add(fdes[i]!.fde, fdes[i]!.rows, fdes[i + 1]?.fde.pcBegin);
  return flattener.compile();
}

function compileFlatRows(addresses: readonly number[], flatRules: readonly UnwindRule[], stats: Pick<CompileStats, 'fdes' | 'inputRows' | 'unsupported'>): CompiledTable {
  const rules: UnwindRule[] = [];
  const ruleIds = new Map<UnwindRule, number>();
  const ruleIdsByKey = new Map<string, number>();
  // Most rule objects are interned, so identity finds them; the key catches equal copies.
  const ruleId = (rule: UnwindRule): number => {
    let id = ruleIds.get(rule);
    if (id !== undefined) return id;
    const key = ruleKey(rule);
    id = ruleIdsByKey.get(key);
    if (id === undefined) {
      id = rules.length;
      if (id > 0xffff) throw new Error('more than 65536 distinct unwind rules in one file');
      rules.push(rule);
      ruleIdsByKey.set(key, id);
    }
    ruleIds.set(rule, id);
    return id;
  };
  ruleId(INVALID_RULE); // id 0 is "no information"

  const pages: number[] = [];
  const pageFirst: number[] = [];
  const pageCount: number[] = [];
  const addressLow: number[] = [];
  const rowRule: number[] = [];
  const n = addresses.length;
  let i = 0;
  while (i < n) {
    const address = addresses[i]!;
    // Pages between rows: covered by the previous row's rule, if it is one.
    const previousRule = i > 0 ? flatRules[i - 1]! : undefined;
    const page = Math.floor(address / PAGE_SIZE);
    if (previousRule !== undefined && previousRule.cfa !== INVALID_RULE.cfa) {
      for (let p = Math.floor(addresses[i - 1]! / PAGE_SIZE) + 1; p < page; p++) {
        pages.push(p);
        pageFirst.push(addressLow.length);
        pageCount.push(1);
        addressLow.push(0);
        rowRule.push(ruleId(previousRule));
      }
    }
    const first = addressLow.length;
    if (address % PAGE_SIZE !== 0 && previousRule !== undefined && previousRule.cfa !== INVALID_RULE.cfa) {
      addressLow.push(0);
      rowRule.push(ruleId(previousRule));
    }
    while (i < n && Math.floor(addresses[i]! / PAGE_SIZE) === page) {
      addressLow.push(addresses[i]! % PAGE_SIZE);
      rowRule.push(ruleId(flatRules[i]!));
      i++;
    }
    pages.push(page);
    pageFirst.push(first);
    pageCount.push(addressLow.length - first);
  }
  return {
    rules,
    pages: Uint32Array.from(pages),
    pageFirstRow: Uint32Array.from(pageFirst),
    pageRowCount: Uint32Array.from(pageCount),
    rowAddressLow: Uint16Array.from(addressLow),
    rowRule: Uint16Array.from(rowRule),
    stats: { ...stats, compactRows: n, tableRows: addressLow.length },
  };
}

/**
 * The rule for an address, looked up exactly as the BPF walker does (page
 * index, then the last row at or below the address in that page). For tests
 * and for the user-space reference walker.
 */
export function lookupRule(table: CompiledTable, address: number): UnwindRule {
  const page = Math.floor(address / PAGE_SIZE);
  let lo = 0;
  let hi = table.pages.length - 1;
  let entry = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const p = table.pages[mid]!;
    if (p === page) {
      entry = mid;
      break;
    }
    if (p < page) lo = mid + 1;
    else hi = mid - 1;
  }
  if (entry < 0) return INVALID_RULE;
  const first = table.pageFirstRow[entry]!;
  const low = address % PAGE_SIZE;
  let left = first;
  let right = first + table.pageRowCount[entry]! - 1;
  let found = -1;
  while (left <= right) {
    const mid = (left + right) >>> 1;
    if (table.rowAddressLow[mid]! <= low) {
      found = mid;
      left = mid + 1;
    } else {
      right = mid - 1;
    }
  }
  return found < 0 ? INVALID_RULE : table.rules[table.rowRule[found]!]!;
}

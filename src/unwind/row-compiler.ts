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

import { classifyRow, INVALID_RULE, ruleKey, sameRule, type UnwindRule } from './rules.js';
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

interface FlatRow {
  address: number;
  rule: UnwindRule;
}

/** Flattens the FDEs (sorted by start) into one address-ordered run of rules, compacted. */
export function flattenRows(fdes: readonly FdeRows[], unsupported: Map<string, number>): { rows: FlatRow[]; inputRows: number } {
  const rows: FlatRow[] = [];
  let inputRows = 0;
  const push = (address: number, rule: UnwindRule): void => {
    const last = rows[rows.length - 1];
    if (last !== undefined && last.address === address) {
      // Overlapping FDEs (rare, from hand-written assembly): the later start wins.
      rows.pop();
    }
    const previous = rows[rows.length - 1];
    if (previous !== undefined && sameRule(previous.rule, rule)) return;
    rows.push({ address, rule });
  };
  // Rows share interned rule objects (cfa-program.ts): classify each distinct (cfa, fp, ra) once.
  const classified = new Map<object, Map<object, Map<object, ReturnType<typeof classifyRow>>>>();
  const classify = (row: FdeRows['rows'][number], isSignalFrame: boolean): ReturnType<typeof classifyRow> => {
    if (isSignalFrame) return classifyRow(row, true);
    let byFp = classified.get(row.cfa);
    if (byFp === undefined) classified.set(row.cfa, (byFp = new Map()));
    let byRa = byFp.get(row.fp);
    if (byRa === undefined) byFp.set(row.fp, (byRa = new Map()));
    let result = byRa.get(row.ra);
    if (result === undefined) byRa.set(row.ra, (result = classifyRow(row, false)));
    return result;
  };
  for (let i = 0; i < fdes.length; i++) {
    const { fde, rows: fdeRows } = fdes[i]!;
    for (const row of fdeRows) {
      inputRows++;
      const { rule, unsupported: reason } = classify(row, fde.cie.isSignalFrame);
      if (reason !== undefined) unsupported.set(reason, (unsupported.get(reason) ?? 0) + 1);
      push(row.address, rule);
    }
    const next = fdes[i + 1];
    if (next === undefined || next.fde.pcBegin - fde.pcEnd >= PADDING_BYTES) push(fde.pcEnd, INVALID_RULE);
  }
  return { rows, inputRows };
}

export function compileTable(fdes: readonly FdeRows[]): CompiledTable {
  const unsupported = new Map<string, number>();
  const { rows, inputRows } = flattenRows(fdes, unsupported);

  const rules: UnwindRule[] = [];
  const ruleIds = new Map<string, number>();
  const ruleId = (rule: UnwindRule): number => {
    const key = ruleKey(rule);
    let id = ruleIds.get(key);
    if (id === undefined) {
      id = rules.length;
      if (id > 0xffff) throw new Error('more than 65536 distinct unwind rules in one file');
      rules.push(rule);
      ruleIds.set(key, id);
    }
    return id;
  };
  ruleId(INVALID_RULE); // id 0 is "no information"

  const pages: number[] = [];
  const pageFirst: number[] = [];
  const pageCount: number[] = [];
  const addressLow: number[] = [];
  const rowRule: number[] = [];
  let i = 0;
  while (i < rows.length) {
    const row = rows[i]!;
    // Pages between rows: covered by the previous row's rule, if it is one.
    const previous = rows[i - 1];
    let page = Math.floor(row.address / PAGE_SIZE);
    if (previous !== undefined && previous.rule.cfa !== INVALID_RULE.cfa) {
      for (let p = Math.floor(previous.address / PAGE_SIZE) + 1; p < page; p++) {
        pages.push(p);
        pageFirst.push(addressLow.length);
        pageCount.push(1);
        addressLow.push(0);
        rowRule.push(ruleId(previous.rule));
      }
    }
    page = Math.floor(row.address / PAGE_SIZE);
    const first = addressLow.length;
    if (row.address % PAGE_SIZE !== 0 && previous !== undefined && previous.rule.cfa !== INVALID_RULE.cfa) {
      addressLow.push(0);
      rowRule.push(ruleId(previous.rule));
    }
    while (i < rows.length && Math.floor(rows[i]!.address / PAGE_SIZE) === page) {
      addressLow.push(rows[i]!.address % PAGE_SIZE);
      rowRule.push(ruleId(rows[i]!.rule));
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
    stats: { fdes: fdes.length, inputRows, compactRows: rows.length, tableRows: addressLow.length, unsupported },
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

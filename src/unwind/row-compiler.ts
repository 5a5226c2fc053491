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

import { classifyRow, INVALID_RULE, ruleKey, type UnwindRule } from './rules.js';
import { RuleTable, type CfaInterpreter, type CfaRow } from './cfa-program.js';
import type { FdeRows } from './elf-cfi.js';
import { u32Vec } from '../util/typed-vec.js';

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
  readonly rowAddressLow: Uint16Array;
  readonly rowRule: Uint16Array;
  /** The same, as the maps hold a row: low 16 address bits | rule index << 16. */
  rows: Uint32Array;
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
  return table.rows.length * 4 + table.pages.length * 16;
}

type Classified = ReturnType<typeof classifyRow>;

const INITIAL_ROWS = 4096;
/** Compact rows per FDE, about (node: 3.7, libc: 6.3). */
const COMPACT_ROWS_PER_FDE = 4;
const CLASSIFIED_CACHE_SIZE = 4096;
const CLASSIFIED_CACHE_MASK = CLASSIFIED_CACHE_SIZE - 1;

/**
 * Flattens FDEs, fed one at a time in pcBegin order, into one address-ordered
 * run of rules, compacted as they come: repeats dropped, padding gaps
 * skipped. Streaming and column-wise: a big file's rows (node: 400k) never
 * exist as objects, only as the compact rows' start addresses and rule ids.
 *
 * Rows come as ids of a RuleTable (cfa-program.ts). Each distinct (CFA, rbp,
 * return address) is classified by rules.ts once; the rules it gives are
 * interned by value into "provisional" ids, so two rows have the same rule
 * exactly when their ids are equal. compile() renumbers them in the order
 * the table first uses them, as the BPF maps expect.
 */
export class RowFlattener {
  inputRows = 0;
  fdes = 0;
  /** Rows per classification (an index into classifiedRule/Reason): the unsupported ones are summed by reason at the end. */
  private classifiedRows = new Int32Array(64);
  /** Reasons in the order their first row came (the order stats.unsupported lists them in). */
  private readonly reasonOrder: string[] = [];
  /** The compact rows: start address and provisional rule id. */
  private length = 0;
  private addresses: Float64Array<ArrayBuffer>;
  private ruleIds: Int32Array<ArrayBuffer>;
  /** Provisional rule id -> rule; id 0 is INVALID_RULE. */
  private readonly provisional: UnwindRule[] = [INVALID_RULE];
  private readonly provisionalByKey = new Map<string, number>([[ruleKey(INVALID_RULE), 0]]);
  private signalRule = -1;
  /** Per CFA rule id: (rbp rule id, return-address rule id) -> classification index. */
  private readonly classifiedByCfa: (Map<number, number> | undefined)[] = [];
  private readonly classifiedRule: number[] = [];
  private readonly classifiedReason: (string | undefined)[] = [];
  private readonly cacheCfa = new Int32Array(CLASSIFIED_CACHE_SIZE).fill(-1);
  private readonly cacheFp = new Int32Array(CLASSIFIED_CACHE_SIZE);
  private readonly cacheRa = new Int32Array(CLASSIFIED_CACHE_SIZE);
  private readonly cacheClass = new Int32Array(CLASSIFIED_CACHE_SIZE);

  constructor(
    private readonly ruleTable: RuleTable,
    /** How many FDEs will be added, if known: the row arrays start at a size that rarely needs to grow. */
    expectedFdes = 0,
  ) {
    const capacity = Math.max(INITIAL_ROWS, expectedFdes * COMPACT_ROWS_PER_FDE);
    this.addresses = new Float64Array(capacity);
    this.ruleIds = new Int32Array(capacity);
  }

  private provisionalId(rule: UnwindRule): number {
    const key = ruleKey(rule);
    let id = this.provisionalByKey.get(key);
    if (id === undefined) {
      id = this.provisional.length;
      this.provisional.push(rule);
      this.provisionalByKey.set(key, id);
    }
    return id;
  }

  private push(address: number, rule: number): void {
    let n = this.length;
    // Overlapping FDEs (rare, from hand-written assembly): the later start wins.
    if (n > 0 && this.addresses[n - 1] === address) n--;
    if (n > 0 && this.ruleIds[n - 1] === rule) {
      this.length = n;
      return;
    }
    if (n === this.addresses.length) this.grow();
    this.addresses[n] = address;
    this.ruleIds[n] = rule;
    this.length = n + 1;
  }

  private grow(): void {
    const size = this.addresses.length * 2;
    const addresses = new Float64Array(size);
    addresses.set(this.addresses);
    this.addresses = addresses;
    const ruleIds = new Int32Array(size);
    ruleIds.set(this.ruleIds);
    this.ruleIds = ruleIds;
  }

  /** The classification (an index into classifiedRule/Reason) of a row's rules. */
  private classification(cfa: number, fp: number, ra: number): number {
    // Small ids make one small-integer key; larger ones (never seen in practice) are classified every time.
    const cacheable = fp < 1 << 14 && ra < 1 << 16;
    const key = fp * (1 << 16) + ra;
    let byKey = this.classifiedByCfa[cfa];
    if (cacheable && byKey !== undefined) {
      const found = byKey.get(key);
      if (found !== undefined) return found;
    }
    const rules = this.ruleTable;
    const row: CfaRow = { address: 0, cfa: rules.cfa[cfa]!, fp: rules.register[fp]!, ra: rules.register[ra]! };
    const { rule, unsupported }: Classified = classifyRow(row, false);
    // A classification is made at its first row: a reason first seen here is first seen in the rows too.
    if (unsupported !== undefined && !this.reasonOrder.includes(unsupported)) this.reasonOrder.push(unsupported);
    if (this.classifiedRule.length === this.classifiedRows.length) {
      const grown = new Int32Array(this.classifiedRows.length * 2);
      grown.set(this.classifiedRows);
      this.classifiedRows = grown;
    }
    const index = this.classifiedRule.length;
    this.classifiedRule.push(this.provisionalId(rule));
    this.classifiedReason.push(unsupported);
    if (cacheable) {
      if (byKey === undefined) this.classifiedByCfa[cfa] = byKey = new Map();
      byKey.set(key, index);
    }
    return index;
  }

  /** Adds one row (rule ids of the flattener's RuleTable). */
  row(address: number, cfa: number, fp: number, ra: number, isSignalFrame: boolean): void {
    this.inputRows++;
    let rule: number;
    if (isSignalFrame) {
      // Every row of a signal trampoline is the signal rule, with nothing to count.
      if (this.signalRule < 0) this.signalRule = this.provisionalId(classifyRow({ address, cfa: { type: 'undefined' }, fp: { type: 'unset' }, ra: { type: 'unset' } }, true).rule);
      rule = this.signalRule;
    } else {
      const c = this.classification(cfa, fp, ra);
      rule = this.classifiedRule[c]!;
      this.classifiedRows[c]!++;
    }
    this.push(address, rule);
  }

  /** Adds the rows of the interpreter's last run: row() for each, written out (node: 400k rows, most of them before the JIT has optimized anything). */
  addRows(interpreter: CfaInterpreter, isSignalFrame: boolean): void {
    const count = interpreter.rowCount;
    if (isSignalFrame) {
      for (let i = 0; i < count; i++) this.row(interpreter.rowAddress[i]!, 0, 0, 0, true);
      return;
    }
    const { rowAddress, rowCfa, rowFp, rowRa } = interpreter;
    const cacheCfa = this.cacheCfa;
    const cacheFp = this.cacheFp;
    const cacheRa = this.cacheRa;
    const cacheClass = this.cacheClass;
    const classifiedRule = this.classifiedRule;
    let n = this.length;
    let addresses = this.addresses;
    let ruleIds = this.ruleIds;
    for (let i = 0; i < count; i++) {
      const cfa = rowCfa[i]!;
      const fp = rowFp[i]!;
      const ra = rowRa[i]!;
      // A direct-mapped cache of classifications in front of the maps.
      const slot = (cfa * 1031 + fp * 61 + ra) & CLASSIFIED_CACHE_MASK;
      let c: number;
      if (cacheCfa[slot] === cfa && cacheFp[slot] === fp && cacheRa[slot] === ra) {
        c = cacheClass[slot]!;
      } else {
        c = this.classification(cfa, fp, ra);
        cacheCfa[slot] = cfa;
        cacheFp[slot] = fp;
        cacheRa[slot] = ra;
        cacheClass[slot] = c;
      }
      this.classifiedRows[c]!++;
      const rule = classifiedRule[c]!;
      const address = rowAddress[i]!;
      // push(), written out.
      if (n > 0 && addresses[n - 1] === address) n--;
      if (n > 0 && ruleIds[n - 1] === rule) continue;
      if (n === addresses.length) {
        this.length = n;
        this.grow();
        addresses = this.addresses;
        ruleIds = this.ruleIds;
      }
      addresses[n] = address;
      ruleIds[n] = rule;
      n++;
    }
    this.length = n;
    this.inputRows += count;
  }

  /** Ends an FDE (after its rows): `nextPcBegin` is where the next FDE starts (undefined: the last). */
  endFde(pcEnd: number, nextPcBegin: number | undefined): void {
    this.fdes++;
    if (nextPcBegin === undefined || nextPcBegin - pcEnd >= PADDING_BYTES) this.push(pcEnd, 0);
  }

  /** Rows whose rule the walker cannot follow, by reason, in the order the reasons first came. */
  private unsupportedRows(): Map<string, number> {
    const counts = new Map<string, number>(this.reasonOrder.map((reason) => [reason, 0]));
    this.classifiedReason.forEach((reason, c) => {
      if (reason !== undefined) counts.set(reason, counts.get(reason)! + this.classifiedRows[c]!);
    });
    return counts;
  }

  /** The paged table of everything added. */
  compile(): CompiledTable {
    const n = this.length;
    const addresses = this.addresses;
    const flatRules = this.ruleIds;
    const provisional = this.provisional;
    const invalid = Uint8Array.from(provisional, (rule) => (rule.cfa === INVALID_RULE.cfa ? 1 : 0));
    // Final ids in the order the rows first use them, "no information" first: what numbering them
    // as the table is written gives, since a row carried into a page repeats the row before it.
    const rules: UnwindRule[] = [INVALID_RULE];
    const finalId = new Int32Array(provisional.length).fill(-1);
    finalId[0] = 0;
    let lowest = Infinity;
    let highest = -Infinity;
    for (let i = 0; i < n; i++) {
      const p = flatRules[i]!;
      lowest = Math.min(lowest, addresses[i]!);
      highest = Math.max(highest, addresses[i]!);
      if (finalId[p]! >= 0) continue;
      if (rules.length > 0xffff) throw new Error('more than 65536 distinct unwind rules in one file');
      finalId[p] = rules.length;
      rules.push(provisional[p]!);
    }

    const pages = u32Vec(64);
    const pageFirst = u32Vec(64);
    const pageCount = u32Vec(64);
    // Rows as the maps hold them: low 16 address bits | rule id << 16. Besides the compact rows, at
    // most one carried row per page the addresses span, in a file whose FDEs do not overlap: sized
    // for that (growing it in the loop below made V8 throw away that loop's optimized code), but no
    // bigger than twice the rows (a corrupt FDE far from the others must not make it huge).
    const spannedPages = n === 0 ? 0 : Math.floor(highest / PAGE_SIZE) - Math.floor(lowest / PAGE_SIZE) + 1;
    let rowsOut = new Uint32Array(n + Math.min(spannedPages, n) + 16);
    let out = 0;
    let i = 0;
    while (i < n) {
      const address = addresses[i]!;
      const page = Math.floor(address / PAGE_SIZE);
      const pageStart = page * PAGE_SIZE;
      // Pages between rows are covered by the previous row's rule, if it is one; so is this page's start.
      const previousRule = i > 0 ? flatRules[i - 1]! : -1;
      const carries = previousRule >= 0 && invalid[previousRule] === 0;
      const firstPage = carries ? Math.floor(addresses[i - 1]! / PAGE_SIZE) + 1 : page;
      const room = out + Math.max(0, page - firstPage) + 1 + (n - i);
      if (room > rowsOut.length) {
        const grown = new Uint32Array(Math.max(room, rowsOut.length * 2));
        grown.set(rowsOut.subarray(0, out));
        rowsOut = grown;
      }
      const carried = carries ? (finalId[previousRule]! << 16) >>> 0 : 0;
      for (let p = firstPage; p < page; p++) {
        pages.push(p);
        pageFirst.push(out);
        pageCount.push(1);
        rowsOut[out++] = carried;
      }
      const first = out;
      if (carries && address !== pageStart) rowsOut[out++] = carried;
      const end = packPage(addresses, flatRules, finalId, i, n, pageStart, rowsOut, out);
      out += end - i;
      pages.push(page);
      pageFirst.push(first);
      pageCount.push(out - first);
      i = end;
    }
    const rows = rowsOut.slice(0, out);
    // The rows split in two, for lookups in tests and tools: made when first asked for (the table worker never does).
    let split: { low: Uint16Array; rule: Uint16Array } | undefined;
    const splitRows = (): { low: Uint16Array; rule: Uint16Array } => {
      if (split !== undefined) return split;
      split = { low: new Uint16Array(out), rule: new Uint16Array(out) };
      for (let r = 0; r < out; r++) {
        split.low[r] = rows[r]! & 0xffff;
        split.rule[r] = rows[r]! >>> 16;
      }
      return split;
    };
    return {
      rules,
      pages: pages.view().slice(),
      pageFirstRow: pageFirst.view().slice(),
      pageRowCount: pageCount.view().slice(),
      get rowAddressLow() {
        return splitRows().low;
      },
      get rowRule() {
        return splitRows().rule;
      },
      rows,
      stats: { fdes: this.fdes, inputRows: this.inputRows, unsupported: this.unsupportedRows(), compactRows: n, tableRows: out },
    };
  }
}

/**
 * Writes the rows of one page (starting at `pageStart`), from row `from` on
 * (of `n`), into `out` from `at`; returns the first row of the next page. Not just
 * `address < page end`: overlapping FDEs can put a row below the one before it.
 */
function packPage(addresses: Float64Array, flatRules: Int32Array, finalId: Int32Array, from: number, n: number, pageStart: number, out: Uint32Array, at: number): number {
  let i = from;
  for (; i < n; i++) {
    const offset = addresses[i]! - pageStart;
    if (offset < 0 || offset >= PAGE_SIZE) break;
    out[at++] = (offset | (finalId[flatRules[i]!]! << 16)) >>> 0;
  }
  return i;
}

/** The table of FDEs whose rows are objects (readCfi's), as compileCfiSteps builds it. */
export function compileTable(fdes: readonly FdeRows[]): CompiledTable {
  const rules = new RuleTable();
  const flattener = new RowFlattener(rules);
  for (let i = 0; i < fdes.length; i++) {
    const { fde, rows } = fdes[i]!;
    for (const row of rows) flattener.row(row.address, rules.idOfCfa(row.cfa), rules.idOfRegister(row.fp), rules.idOfRegister(row.ra), fde.cie.isSignalFrame);
    flattener.endFde(fde.pcEnd, fdes[i + 1]?.fde.pcBegin);
  }
  return flattener.compile();
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

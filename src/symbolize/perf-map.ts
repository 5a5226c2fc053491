// Linux perf JIT maps (/tmp/perf-PID.map): "START SIZE name" per line, hex
// without 0x, name to the end of the line. Hand-written: no npm package reads
// this format, and it is three fields per line. V8 (node --perf-basic-prof)
// appends a line for every code object it creates, including re-compilations
// of the same function at the same or overlapping addresses, so later lines
// win where ranges overlap.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { RANK_GLOBAL, SymbolTableBuilder, type SymbolTable, type TableAddress } from './symbol-table.js';

export interface PerfMapEntry {
  start: TableAddress;
  sizeBytes: bigint;
  /** Function name with V8's code-kind prefix and tier marker removed. */
  name: string;
  /** "file:line[:column]" when the writer gave one. */
  sourceFile: string | null;
}

export interface PerfMapHit {
  name: string;
  offset: bigint;
  sourceFile: string | null;
  /** Extent of the code object that matched. */
  start: TableAddress;
  end: TableAddress;
}

const LINE_RE = /^(?:0x)?([0-9a-f]+)\s+(?:0x)?([0-9a-f]+)\s+(.*?)\s*$/i;
// V8 code kinds that name a JavaScript function; others (Builtin:, BytecodeHandler:, Stub:, RegExp:) stay as they are.
const JS_PREFIX_RE = /^(?:LazyCompile|Function|JS|Script|Eval):/;
// Tier markers: ~ interpreted (Ignition), ^ baseline (Sparkplug), + Maglev, * optimized (TurboFan).
const TIER_RE = /^[~^+*]/;
// The source part starts at the first space followed by something path-like and ends in :line[:col].
const SOURCE_RE = /\s((?:\/|node:|file:|https?:|[A-Za-z]:\\|\.{1,2}\/|<).*:\d+(?::\d+)?)$/;

/** Splits a V8 perf-map name such as "JS:*hotLoop /app/x.js:3:17" into its JavaScript name and source location. */
export function splitV8Name(raw: string): { name: string; sourceFile: string | null } {
  let rest = raw;
  const isJs = JS_PREFIX_RE.test(rest);
  if (isJs) rest = rest.replace(JS_PREFIX_RE, '').replace(TIER_RE, '');
  let sourceFile: string | null = null;
  const m = SOURCE_RE.exec(' ' + rest);
  if (m !== null) {
    sourceFile = m[1]!;
    rest = (' ' + rest).slice(0, m.index).trim();
  }
  if (isJs && rest === '') rest = '(anonymous)';
  return { name: rest, sourceFile };
}

export interface ParsedPerfMap {
  entries: PerfMapEntry[];
  malformedLines: number;
}

export function parsePerfMap(text: string): ParsedPerfMap {
  const entries: PerfMapEntry[] = [];
  let malformedLines = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const m = LINE_RE.exec(line);
    if (m === null || m[3] === '') {
      malformedLines++;
      continue;
    }
    const { name, sourceFile } = splitV8Name(m[3]!);
    entries.push({ start: BigInt('0x' + m[1]!), sizeBytes: BigInt('0x' + m[2]!), name, sourceFile });
  }
  return { entries, malformedLines };
}

/** A perf map resolved to disjoint ranges, each owned by the latest entry covering it. */
export class PerfMapTable {
  private constructor(
    private readonly table: SymbolTable,
    private readonly entries: readonly PerfMapEntry[],
  ) {}

  get length(): number {
    return this.table.length;
  }

  static fromEntries(entries: readonly PerfMapEntry[]): PerfMapTable {
    const builder = new SymbolTableBuilder(entries.length);
    paintLatestWins(entries, builder);
    return new PerfMapTable(builder.build(), entries);
  }

  lookup(address: TableAddress): PerfMapHit | null {
    const index = this.table.findIndex(address);
    if (index < 0) return null;
    const entry = this.entries[this.table.payload[index]!]!;
    return { name: entry.name, offset: address - entry.start, sourceFile: entry.sourceFile, start: entry.start, end: entry.start + entry.sizeBytes };
  }
}

const TWO32 = 0x1_0000_0000;

/**
 * Adds one row per range owned by a single entry, the latest line covering
 * it. Addresses are handled as doubles (user-space code lies below 2^47, so
 * they are exact), which keeps this free of BigInt work: it runs again each
 * time a JIT's map grows. A map whose entries do not overlap (the usual case:
 * a JIT rarely reuses code space) becomes one row per entry directly; others
 * go through a sweep over all range boundaries with a max-heap (by line
 * number) of the entries covering the current point, O(n log n) even for the
 * 100k-line maps long-running Node processes produce.
 */
function paintLatestWins(entries: readonly PerfMapEntry[], builder: SymbolTableBuilder): void {
  const n = entries.length;
  const start = new Float64Array(n);
  const end = new Float64Array(n);
  const order: number[] = [];
  for (let i = 0; i < n; i++) {
    const e = entries[i]!;
    if (e.sizeBytes <= 0n) continue;
    start[i] = Number(e.start);
    end[i] = Number(e.start + e.sizeBytes);
    if (!(end[i]! < 2 ** 53)) continue; // not user-space code: cannot be a JIT frame of ours
    order.push(i);
  }
  order.sort((a, b) => start[a]! - start[b]! || a - b);
  const names = builder.addNameSource(entries.map((e) => e.name));
  const add = (from: number, to: number, winner: number): void => {
    builder.add(Math.floor(from / TWO32), from % TWO32, to - from, RANK_GLOBAL, names, winner, 0, winner);
    if (from !== start[winner]) builder.setOrigin(Math.floor(start[winner]! / TWO32), start[winner]! % TWO32);
  };
  let overlaps = false;
  for (let k = 1; k < order.length && !overlaps; k++) overlaps = start[order[k]!]! < end[order[k - 1]!]!;
  if (!overlaps) {
    for (const i of order) add(start[i]!, end[i]!, i);
    return;
  }
  const points = new Float64Array(order.length * 2);
  for (let k = 0; k < order.length; k++) {
    points[2 * k] = start[order[k]!]!;
    points[2 * k + 1] = end[order[k]!]!;
  }
  points.sort();
  const heap = new MaxHeap();
  let next = 0;
  // The row being extended: consecutive pieces owned by the same entry are one row.
  let rowFrom = 0;
  let rowTo = 0;
  let rowWinner = -1;
  for (let p = 0; p < points.length; p++) {
    const pos = points[p]!;
    if (p > 0 && points[p - 1] === pos) continue;
    while (next < order.length && start[order[next]!]! <= pos) heap.push(order[next++]!);
    while (heap.size > 0 && end[heap.peek()]! <= pos) heap.pop();
    if (heap.size === 0) continue;
    let q = p + 1;
    while (q < points.length && points[q] === pos) q++;
    if (q >= points.length) break;
    const nextPos = points[q]!;
    const winner = heap.peek();
    if (winner === rowWinner && rowTo === pos) {
      rowTo = nextPos;
      continue;
    }
    if (rowWinner >= 0) add(rowFrom, rowTo, rowWinner);
    rowFrom = pos;
    rowTo = nextPos;
    rowWinner = winner;
  }
  if (rowWinner >= 0) add(rowFrom, rowTo, rowWinner);
}

/** Max-heap of entry indices; a larger index is a later line. */
class MaxHeap {
  private readonly items: number[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): number {
    return this.items[0]!;
  }
  push(v: number): void {
    const a = this.items;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]! >= a[i]!) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }
  pop(): void {
    const a = this.items;
    const last = a.pop()!;
    if (a.length === 0) return;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && a[l]! > a[m]!) m = l;
      if (r < a.length && a[r]! > a[m]!) m = r;
      if (m === i) break;
      [a[m], a[i]] = [a[i]!, a[m]!];
      i = m;
    }
  }
}

/**
 * Follows one perf map file as its writer appends to it: reads only the new
 * bytes when the file grew, starts over when it shrank (a new process reused
 * the pid, or the file was rewritten).
 */
export class PerfMapFile {
  private entries: PerfMapEntry[] = [];
  private bytesRead = 0;
  private pendingLine = '';
  /**
   * Lines [0, baseCount) resolved in `base`, lines after that in `recent`.
   * A JIT appends all the time; rebuilding one table over every line at each
   * growth was most of `record`'s steady-state CPU with a busy Node process.
   * Later lines win, so `recent` is asked first; it is folded into `base`
   * once it holds a quarter as many lines (amortized O(n log n) overall).
   */
  private base: PerfMapTable | null = null;
  private baseCount = 0;
  private recent: PerfMapTable | null = null;
  private recentCount = 0;
  private changes = 0;
  malformedLines = 0;

  constructor(readonly path: string) {}

  /** Re-reads if the size changed. Returns false when the file cannot be read (it may not exist yet). */
  refresh(): boolean {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return false;
    }
    try {
      const size = fstatSync(fd).size;
      if (size === this.bytesRead) return true;
      if (size < this.bytesRead) {
        this.changes++;
        this.base = null;
        this.baseCount = 0;
        this.recent = null;
        this.recentCount = 0;
        this.entries = [];
        this.bytesRead = 0;
        this.pendingLine = '';
        this.malformedLines = 0;
      }
      const buf = Buffer.allocUnsafe(size - this.bytesRead);
      let done = 0;
      while (done < buf.length) {
        const n = readSync(fd, buf, done, buf.length - done, this.bytesRead + done);
        if (n === 0) break;
        done += n;
      }
      this.bytesRead += done;
      const text = this.pendingLine + buf.toString('utf8', 0, done);
      const lastNl = text.lastIndexOf('\n');
      // A line without its newline may still be being written; keep it for next time.
      this.pendingLine = lastNl < 0 ? text : text.slice(lastNl + 1);
      const parsed = parsePerfMap(lastNl < 0 ? '' : text.slice(0, lastNl));
      if (parsed.entries.length > 0) {
        for (const e of parsed.entries) this.entries.push(e);
        this.changes++;
      }
      this.malformedLines += parsed.malformedLines;
      return true;
    } catch {
      return false;
    } finally {
      closeSync(fd);
    }
  }

  get entryCount(): number {
    return this.entries.length;
  }

  /** Rough heap held: the lines as read plus a parsed entry and its table slots per line. */
  get estimatedBytes(): number {
    return this.bytesRead + this.entries.length * 160;
  }

  /** Drops everything read (memory budget); the next refresh() reads the file again from the start. */
  release(): void {
    this.entries = [];
    this.bytesRead = 0;
    this.pendingLine = '';
    this.base = null;
    this.baseCount = 0;
    this.recent = null;
    this.recentCount = 0;
    this.malformedLines = 0;
    this.changes++;
  }

  /** Changes whenever what lookups can return changes (lines appended, file started over). */
  get version(): number {
    return this.changes;
  }

  lookup(address: TableAddress): PerfMapHit | null {
    const n = this.entries.length;
    if (n === 0) return null;
    if (n !== this.baseCount + this.recentCount) {
      if ((n - this.baseCount) * 4 > this.baseCount) {
        this.base = PerfMapTable.fromEntries(this.entries);
        this.baseCount = n;
        this.recent = null;
        this.recentCount = 0;
      } else {
        this.recent = PerfMapTable.fromEntries(this.entries.slice(this.baseCount));
        this.recentCount = n - this.baseCount;
      }
    }
    return this.recent?.lookup(address) ?? this.base!.lookup(address);
  }
}

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

/** What a perf-map table needs of the lines it was built over. */
interface PerfMapLineSource {
  /** Addresses and sizes as doubles: exact below 2^53, and user-space code lies below 2^47. */
  readonly starts: Float64Array;
  readonly sizes: Float64Array;
  nameAt(line: number): { name: string; sourceFile: string | null };
}

/** Parsed entries as a line source (tests, and callers holding entries). */
class EntryLines implements PerfMapLineSource {
  readonly starts: Float64Array;
  readonly sizes: Float64Array;
  constructor(private readonly entries: readonly PerfMapEntry[]) {
    this.starts = Float64Array.from(entries, (e) => Number(e.start));
    this.sizes = Float64Array.from(entries, (e) => Number(e.sizeBytes));
  }
  nameAt(line: number): { name: string; sourceFile: string | null } {
    const e = this.entries[line]!;
    return { name: e.name, sourceFile: e.sourceFile };
  }
}

/** A perf map resolved to disjoint ranges, each owned by the latest entry covering it. */
export class PerfMapTable {
  private constructor(
    private readonly table: SymbolTable,
    private readonly lines: PerfMapLineSource,
  ) {}

  get length(): number {
    return this.table.length;
  }

  static fromEntries(entries: readonly PerfMapEntry[]): PerfMapTable {
    const lines = new EntryLines(entries);
    return PerfMapTable.fromLines(lines, 0, entries.length);
  }

  /** The table of lines [first, last) of `lines`. */
  static fromLines(lines: PerfMapLineSource, first: number, last: number): PerfMapTable {
    const builder = new SymbolTableBuilder(last - first);
    paintLatestWins(lines, first, last, builder);
    return new PerfMapTable(builder.build(), lines);
  }

  lookup(address: TableAddress): PerfMapHit | null {
    const index = this.table.findIndex(address);
    if (index < 0) return null;
    const line = this.table.payload[index]!;
    const start = BigInt(this.lines.starts[line]!);
    const { name, sourceFile } = this.lines.nameAt(line);
    return { name, offset: address - start, sourceFile, start, end: start + BigInt(this.lines.sizes[line]!) };
  }
}

const TWO32 = 0x1_0000_0000;
const NO_NAMES: readonly string[] = [];

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
function paintLatestWins(lines: PerfMapLineSource, first: number, last: number, builder: SymbolTableBuilder): void {
  // Indices below are relative to `first`; rows carry the absolute line as their payload.
  const n = last - first;
  const start = new Float64Array(n);
  const end = new Float64Array(n);
  const order: number[] = [];
  for (let i = 0; i < n; i++) {
    const sizeBytes = lines.sizes[first + i]!;
    if (!(sizeBytes > 0)) continue;
    start[i] = lines.starts[first + i]!;
    end[i] = start[i]! + sizeBytes;
    if (!(end[i]! < 2 ** 53)) continue; // not user-space code: cannot be a JIT frame of ours
    order.push(i);
  }
  order.sort((a, b) => start[a]! - start[b]! || a - b);
  // Names are looked up through the payload (PerfMapTable.lookup), not the table's name column.
  const names = builder.addNameSource(NO_NAMES);
  const add = (from: number, to: number, winner: number): void => {
    builder.add(Math.floor(from / TWO32), from % TWO32, to - from, RANK_GLOBAL, names, 0, 0, first + winner);
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
 * The lines of one perf map as read: the raw bytes, and per line its
 * address, size and where its name lies. A long-running JIT appends hundreds
 * of thousands of lines; parsed into an object with two BigInts and a few
 * strings each (the strings slices that kept the text they came from) they
 * held ~370 bytes per line. Here a line costs its own bytes plus 28, and a
 * name is decoded only when a sample lands in its code.
 * Append-only, so a table built over lines [0, n) stays valid while more
 * come; starting over makes a new object.
 */
class PerfMapLines implements PerfMapLineSource {
  // Empty until the first line: a process without a perf map holds one of these.
  starts = new Float64Array(0);
  sizes = new Float64Array(0);
  /** File offset of each line's name, and its length in bytes. */
  private nameAt0 = new Float64Array(0);
  private nameLen = new Uint32Array(0);
  /**
   * The file's bytes read so far, in contiguous chunks by file offset. Two
   * neighbours are merged while the newer is at least half the older, so
   * there are O(log n) chunks and each byte is copied O(log n) times.
   */
  private chunks: { at: number; bytes: Buffer }[] = [];
  length = 0;
  /** Bytes held by the chunks. */
  bytes = 0;

  /** Takes `bytes` (file offset `at`, whole lines only) and parses them; returns the number of malformed lines. */
  append(at: number, bytes: Buffer): number {
    this.chunks.push({ at, bytes });
    this.bytes += bytes.length;
    for (;;) {
      const n = this.chunks.length;
      if (n < 2 || this.chunks[n - 1]!.bytes.length * 2 < this.chunks[n - 2]!.bytes.length) break;
      const newer = this.chunks.pop()!;
      const older = this.chunks.pop()!;
      this.chunks.push({ at: older.at, bytes: Buffer.concat([older.bytes, newer.bytes]) });
    }
    return this.parse(at, bytes);
  }

  nameAt(line: number): { name: string; sourceFile: string | null } {
    const at = this.nameAt0[line]!;
    let c = this.chunks.length - 1;
    while (c > 0 && this.chunks[c]!.at > at) c--;
    const chunk = this.chunks[c]!;
    const from = at - chunk.at;
    return splitV8Name(chunk.bytes.toString('utf8', from, from + this.nameLen[line]!));
  }

  /**
   * The grammar of LINE_RE (parsePerfMap), over bytes: START and SIZE in hex
   * with an optional 0x, whitespace, then the name to the end of the line
   * less trailing whitespace. Blank lines are skipped; others that do not
   * fit are counted.
   */
  private parse(at: number, b: Buffer): number {
    let malformed = 0;
    let i = 0;
    while (i < b.length) {
      let eol = b.indexOf(NEWLINE, i);
      if (eol < 0) eol = b.length;
      let end = eol;
      while (end > i && isSpace(b[end - 1]!)) end--;
      if (end > i) {
        const start = parseHex(b, i, end);
        const size = start === null ? null : parseHex(b, start.next, end);
        if (start === null || size === null || size.next === end) malformed++;
        else this.push(start.value, size.value, at + size.next, end - size.next);
      }
      i = eol + 1;
    }
    return malformed;
  }

  private push(start: number, sizeBytes: number, nameAt: number, nameLength: number): void {
    if (this.length === this.starts.length) {
      const grow = <T extends Float64Array | Uint32Array>(from: T, to: T): T => {
        to.set(from);
        return to;
      };
      const capacity = Math.max(INITIAL_LINES, this.length * 2);
      this.starts = grow(this.starts, new Float64Array(capacity));
      this.sizes = grow(this.sizes, new Float64Array(capacity));
      this.nameAt0 = grow(this.nameAt0, new Float64Array(capacity));
      this.nameLen = grow(this.nameLen, new Uint32Array(capacity));
    }
    const k = this.length++;
    this.starts[k] = start;
    this.sizes[k] = sizeBytes;
    this.nameAt0[k] = nameAt;
    this.nameLen[k] = nameLength;
  }
}

const INITIAL_LINES = 256;
const NEWLINE = 0x0a;

/** \s of a RegExp, in ASCII: what LINE_RE accepts between fields. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * A hex number at b[i..] (optional 0x) followed by at least one space;
 * returns its value (a double: exact below 2^53, which is all a JIT frame
 * can be) and where the next field starts, or null.
 */
function parseHex(b: Buffer, i: number, end: number): { value: number; next: number } | null {
  if (i + 2 < end && b[i] === 0x30 && (b[i + 1]! | 0x20) === 0x78 && hexDigit(b[i + 2]!) >= 0) i += 2;
  let value = 0;
  const first = i;
  for (let d: number; i < end && (d = hexDigit(b[i]!)) >= 0; i++) value = value * 16 + d;
  if (i === first || i >= end || !isSpace(b[i]!)) return null;
  while (i < end && isSpace(b[i]!)) i++;
  return { value, next: i };
}

/**
 * Follows one perf map file as its writer appends to it: reads only the new
 * bytes when the file grew, starts over when it shrank (a new process reused
 * the pid, or the file was rewritten).
 */
export class PerfMapFile {
  private lines = new PerfMapLines();
  /** Bytes of the file parsed: up to the last newline read. */
  private bytesParsed = 0;
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
      if (size < this.bytesParsed) this.release(); // started over
      if (size === this.bytesParsed) return true;
      const buf = Buffer.allocUnsafe(size - this.bytesParsed);
      let done = 0;
      while (done < buf.length) {
        const n = readSync(fd, buf, done, buf.length - done, this.bytesParsed + done);
        if (n === 0) break;
        done += n;
      }
      // A line without its newline may still be being written: it is read again next time.
      const whole = buf.lastIndexOf(NEWLINE, done - 1) + 1;
      if (whole === 0) return true;
      const linesBefore = this.lines.length;
      // A copy of exactly the whole lines, so the read buffer's slack is not kept.
      this.malformedLines += this.lines.append(this.bytesParsed, Buffer.from(buf.subarray(0, whole)));
      this.bytesParsed += whole;
      if (this.lines.length > linesBefore) this.changes++;
      return true;
    } catch {
      return false;
    } finally {
      closeSync(fd);
    }
  }

  get entryCount(): number {
    return this.lines.length;
  }

  /** Heap held: the bytes read, 28 bytes of columns per line (grown by doubling) and the tables' rows. */
  get estimatedBytes(): number {
    return this.lines.bytes + this.lines.starts.length * 28 + (this.baseCount + this.recentCount) * 40;
  }

  /** Drops everything read (memory budget); the next refresh() reads the file again from the start. */
  release(): void {
    this.lines = new PerfMapLines();
    this.bytesParsed = 0;
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
    const n = this.lines.length;
    if (n === 0) return null;
    if (n !== this.baseCount + this.recentCount) {
      if ((n - this.baseCount) * 4 > this.baseCount) {
        this.base = PerfMapTable.fromLines(this.lines, 0, n);
        this.baseCount = n;
        this.recent = null;
        this.recentCount = 0;
      } else {
        this.recent = PerfMapTable.fromLines(this.lines, this.baseCount, n);
        this.recentCount = n - this.baseCount;
      }
    }
    return this.recent?.lookup(address) ?? this.base!.lookup(address);
  }
}

// Keeps the BPF unwind maps in step with the processes on the host:
// - a file's table is built (elf-cfi.ts, row-compiler.ts) and loaded the first
//   time a process that maps it is seen, shared by every process mapping the
//   same file (same device and inode), and removed when none maps it any more;
// - each process gets the list of its executable mappings (address range,
//   load bias, file id; file id 0 for code without a table: JIT, vdso);
// - rows go into one preallocated array whose size is the memory budget; a
//   file that does not fit is counted and logged, and its frames fall back to
//   the frame-pointer rule.
// The layouts are bpf/profile.h's fp_unwind_* and fp_process_mappings.

import { readFileSync, statSync } from 'node:fs';
import { loadAddon } from '../native/addon.js';
import { ElfError, ElfReader, FileByteSource, PT_LOAD } from '../symbolize/elf.js';
import { isExecutable, isFileBacked, parseProcMaps, type Mapping } from '../symbolize/proc-maps.js';
import type { Tgid } from '../sampler/bpf-layout.js';
import type { UnwindMaps } from '../sampler/sampler.js';
import { readCfiSteps } from './elf-cfi.js';
import { compileTable } from './row-compiler.js';
import { INVALID_RULE, ruleKey, UNSUPPORTED_RULE, type UnwindRule } from './rules.js';

export const MAX_PROCESS_MAPPINGS = 256;
const MAPPING_SIZE = 32;
export const PROCESS_MAPPINGS_SIZE = 8 + MAX_PROCESS_MAPPINGS * MAPPING_SIZE;
const ROW_SIZE = 4;
const RULE_SIZE = 8;
const PAGE_KEY_SIZE = 8;
const PAGE_VALUE_SIZE = 8;
/** Executable mappings up to this size are built in one go, before bigger ones (a few ms each). */
const SMALL_FILE_BYTES = 4 << 20;
/** Table building per event-loop turn. */
const PUMP_SLICE_MS = 20;
/** Rows written per batch syscall (bounds the temporary buffers). */
const BATCH_ROWS = 1 << 16;


export interface UnwindTableStats {
  processes: number;
  files: number;
  /** Files mapped executable whose table could not be built (no CFI, unreadable), by reason. */
  filesWithoutTable: Record<string, number>;
  /** Files that did not fit in the row budget (their frames use frame pointers). */
  filesOverBudget: number;
  rowsUsed: number;
  rowsCapacity: number;
  pagesUsed: number;
  rules: number;
  /** Bytes of the loaded tables: rows, page index, rules. */
  tableBytes: number;
  /** Bytes the unwind maps lock, as the kernel reports them (fdinfo memlock). */
  lockedMapBytes: number;
  /** Rows whose rule the walker cannot follow, by reason, over all files loaded so far. */
  unsupportedRows: Record<string, number>;
  /** Processes with more executable mappings than fit (the rest use frame pointers). */
  processesTruncated: number;
  /** Time spent building tables (parse + compile), over all files loaded so far. */
  buildMs: number;
  /** Background loads that failed (logged); the processes concerned use frame pointers. */
  loadErrors: number;
}

interface LoadedFile {
  id: number;
  key: string;
  /** pending: waiting for its table to be built; building: a slice at a time; ready: built (rowCount 0: no table); failed: unreadable. */
  state: 'pending' | 'building' | 'ready' | 'failed';
  /** Size of the mapping that first brought it: small files are built first. */
  sizeHint: number;
  /** A way to open it: a process that maps it and the mapping (tried again through other users if gone). */
  opener: { tgid: Tgid; mapping: Mapping };
  /** Where its rows start in the rows map, and how many (0: no table). */
  firstRow: number;
  rowCount: number;
  pages: Uint32Array;
  /** PT_LOAD segments, for the load bias. */
  segments: { offset: number; vaddr: number; fileSize: number }[];
  references: number;
  /** The sweep count when its last process went (undefined while mapped). */
  unusedSinceSweep?: number;
}

interface LoadedProcess {
  fileKeys: string[];
  /** Its executable mappings (at most MAX_PROCESS_MAPPINGS), as last read. */
  mappings: Mapping[];
}

/** First-fit free list over the rows array. Hand-written: ~30 lines, and nothing on npm fits a fixed BPF array. */
class RangeAllocator {
  /** Free ranges, sorted by start, never adjacent. */
  private free: { start: number; length: number }[];
  constructor(capacity: number) {
    this.free = capacity > 0 ? [{ start: 0, length: capacity }] : [];
  }
  allocate(length: number): number | undefined {
    const at = this.free.findIndex((range) => range.length >= length);
    if (at < 0) return undefined;
    const range = this.free[at]!;
    const start = range.start;
    if (range.length === length) this.free.splice(at, 1);
    else this.free[at] = { start: start + length, length: range.length - length };
    return start;
  }
  release(start: number, length: number): void {
    if (length === 0) return;
    let at = this.free.findIndex((range) => range.start > start);
    if (at < 0) at = this.free.length;
    this.free.splice(at, 0, { start, length });
    // Coalesce with the neighbours.
    const next = this.free[at + 1];
    if (next !== undefined && start + length === next.start) {
      this.free[at]!.length += next.length;
      this.free.splice(at + 1, 1);
    }
    const previous = this.free[at - 1];
    if (previous !== undefined && previous.start + previous.length === start) {
      previous.length += this.free[at]!.length;
      this.free.splice(at, 1);
    }
  }
}

export class UnwindTableManager {
  private readonly files = new Map<string, LoadedFile>();
  private readonly processes = new Map<Tgid, LoadedProcess>();
  private readonly ruleIds = new Map<string, number>();
  private readonly allocator: RangeAllocator;
  private nextFileId = 1;
  /** Sweeps so far: files unused since an earlier one are removed. */
  private sweeps = 0;
  private rowsUsed = 0;
  private pagesUsed = 0;
  private filesOverBudget = 0;
  private processesTruncated = 0;
  private buildMs = 0;
  private loadErrors = 0;
  private readonly filesWithoutTable: Record<string, number> = {};
  private readonly unsupportedRows: Record<string, number> = {};
  private readonly overBudgetLogged = new Set<string>();

  constructor(
    private readonly maps: UnwindMaps,
    private readonly options: { procRoot?: string; log?: (line: string) => void } = {},
  ) {
    this.allocator = new RangeAllocator(maps.rows.maxEntries);
    // Rule 0: no information (a gap between FDEs); rule 1: an unsupported rule (the walk stops, counted).
    this.ruleId(INVALID_RULE);
    this.ruleId(UNSUPPORTED_RULE);
  }

  private get procRoot(): string {
    return this.options.procRoot ?? '/proc';
  }

  private readonly queue = new Set<Tgid>();
  private pumping = false;
  /** The big file being built a slice per event-loop turn. */
  private job: { file: LoadedFile; steps: Generator<void> } | undefined;
  private closed = false;

  /**
   * Loads the process soon, off the ring-buffer callback. Its mappings are
   * read at once (cheap); the tables of files not seen before are built one
   * per event-loop turn, smallest first, and each process is rewritten as its
   * files become ready: a new process's own small binaries unwind quickly even
   * while a big runtime's table is still being built. Until its entry exists
   * its samples use frame pointers (counted by the BPF program).
   */
  requestLoad(tgid: Tgid): void {
    if (this.closed) return;
    this.queue.add(tgid);
    this.schedule();
  }

  private schedule(): void {
    if (this.pumping) return;
    this.pumping = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.pumping = false;
    if (this.closed) return;
    // Every queued process gets its entry first (cheap), then tables are
    // built for a slice of time, so a burst of new processes is not served
    // one after another's tables.
    this.loadQueued();
    const deadline = performance.now() + PUMP_SLICE_MS;
    let more = true;
    while (more && performance.now() < deadline) more = this.guard('building a table', () => this.buildNextFile()) === true;
    if (more) this.schedule();
  }

  /** Runs one step of the background work; a failure is counted and logged, and the work goes on. */
  private guard<T>(what: string, step: () => T): T | undefined {
    try {
      return step();
    } catch (error) {
      this.loadErrors++;
      this.options.log?.(`fleetprof: unwind tables: ${what} failed: ${(error as Error).message}`);
      return undefined;
    }
  }

  /**
   * Loads the queued processes now (their small files included). The
   * collector calls it after a drain and before symbolizing, which can hold
   * the event loop for a while on a busy host.
   */
  loadQueued(): void {
    const tgids = [...this.queue];
    this.queue.clear();
    for (const tgid of tgids) this.guard(`loading process ${tgid}`, () => this.loadProcess(tgid));
  }

  /** Reads a process's executable mappings (again, after an exec or a dlopen) and writes its entry. */
  loadProcess(tgid: Tgid): boolean {
    if (this.closed) return false;
    let text: string;
    try {
      text = readFileSync(`${this.procRoot}/${tgid}/maps`, 'utf8');
    } catch {
      this.unloadProcess(tgid);
      return false; // gone already: nothing to unwind
    }
    const executable = parseProcMaps(text).mappings.filter(isExecutable);
    if (executable.length > MAX_PROCESS_MAPPINGS) this.processesTruncated++;
    const mappings = executable.slice(0, MAX_PROCESS_MAPPINGS);
    const fileKeys: string[] = [];
    for (const mapping of mappings) {
      if (!isFileBacked(mapping)) continue;
      const key = fileKey(mapping);
      let file = this.files.get(key);
      if (file === undefined) {
        file = {
          id: this.nextFileId++,
          key,
          state: 'pending',
          sizeHint: Number(mapping.endAddress - mapping.startAddress),
          opener: { tgid, mapping },
          firstRow: 0,
          rowCount: 0,
          pages: new Uint32Array(0),
          segments: [],
          references: 0,
        };
        this.files.set(key, file);
      }
      file.references++;
      file.unusedSinceSweep = undefined;
      fileKeys.push(key);
    }
    // Release what the previous load held only after the new one holds its files (a reload keeps shared ones).
    const previous = this.processes.get(tgid);
    this.processes.set(tgid, { fileKeys, mappings });
    if (previous !== undefined) for (const key of previous.fileKeys) this.releaseFile(key);
    this.writeProcess(tgid);
    if (fileKeys.some((key) => this.files.get(key)?.state === 'pending')) this.schedule();
    return true;
  }

  /** Writes a process's mappings into its BPF entry, with the ids of the files whose tables are ready. */
  private writeProcess(tgid: Tgid): void {
    const process = this.processes.get(tgid);
    if (process === undefined) return;
    const value = Buffer.alloc(PROCESS_MAPPINGS_SIZE);
    process.mappings.forEach((mapping, i) => {
      let fileId = 0;
      let bias = 0n;
      const file = isFileBacked(mapping) ? this.files.get(fileKey(mapping)) : undefined;
      if (file !== undefined && file.state === 'ready' && file.rowCount > 0) {
        const b = loadBias(file, mapping);
        if (b !== undefined) {
          fileId = file.id;
          bias = b;
        }
      }
      const at = 8 + i * MAPPING_SIZE;
      value.writeBigUInt64LE(mapping.startAddress, at);
      value.writeBigUInt64LE(mapping.endAddress, at + 8);
      value.writeBigUInt64LE(BigInt.asUintN(64, bias), at + 16);
      value.writeUInt32LE(fileId, at + 24);
    });
    value.writeUInt32LE(process.mappings.length, 0);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(tgid);
    loadAddon().mapUpdate(this.maps.processes.fd, key, value);
  }

  /**
   * Builds the next pending table; returns whether one was pending. The file
   * most processes map goes first (libc: every process waits on it), then the
   * smallest (a new program's own binary is built in milliseconds).
   */
  private buildNextFile(): boolean {
    // Small files first (a new program's own binaries, libc: milliseconds
    // each, and its stacks are whole from then on), the most-mapped first;
    // big runtimes after them, a slice at a time.
    const rank = (file: LoadedFile): [number, number, number] => [file.sizeHint <= SMALL_FILE_BYTES ? 0 : 1, -file.references, file.sizeHint];
    const before = (a: LoadedFile, b: LoadedFile): boolean => {
      const [x, y] = [rank(a), rank(b)];
      for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! < y[i]!;
      return false;
    };
    let next: LoadedFile | undefined;
    for (const file of this.files.values()) {
      if (file.state !== 'pending' || file.references === 0) continue;
      if (next === undefined || before(file, next)) next = file;
    }
    // A big file being built yields to small ones that came in meanwhile (a new program's own binary).
    if (this.job !== undefined && (next === undefined || next.sizeHint > SMALL_FILE_BYTES)) {
      this.stepJob();
      return true;
    }
    if (next === undefined) return false;
    if (next.sizeHint <= SMALL_FILE_BYTES) {
      this.buildFile(next);
      for (const [tgid, process] of this.processes) if (process.fileKeys.includes(next.key)) this.writeProcess(tgid);
      return true;
    }
    next.state = 'building';
    this.job = { file: next, steps: this.buildSteps(next) };
    this.stepJob();
    return true;
  }

  /** Runs one slice of the background build; when it is done, rewrites the processes that map the file. */
  private stepJob(): void {
    const job = this.job!;
    if (this.files.get(job.file.key) !== job.file) {
      // Unmapped by every process while it was being built.
      job.steps.return(undefined);
      this.job = undefined;
      return;
    }
    const started = performance.now();
    let done = false;
    try {
      done = job.steps.next().done === true;
    } catch (error) {
      done = true;
      throw error;
    } finally {
      this.buildMs += performance.now() - started;
      if (done) this.job = undefined;
    }
    if (done) for (const [tgid, process] of this.processes) if (process.fileKeys.includes(job.file.key)) this.writeProcess(tgid);
  }

  /** Builds a file's table at once (small files, as a process appears). */
  private buildFile(file: LoadedFile): void {
    const started = performance.now();
    try {
      const steps = this.buildSteps(file);
      while (steps.next().done !== true) {
        // all slices now
      }
    } finally {
      this.buildMs += performance.now() - started;
    }
  }

  unloadProcess(tgid: Tgid): void {
    const process = this.processes.get(tgid);
    if (process === undefined) return;
    const key = Buffer.alloc(4);
    key.writeUInt32LE(tgid);
    loadAddon().mapDelete(this.maps.processes.fd, key);
    this.processes.delete(tgid);
    for (const fileKey of process.fileKeys) this.releaseFile(fileKey);
  }

  /** Unloads the processes that have exited; returns how many. */
  sweepExited(): number {
    let gone = 0;
    for (const tgid of [...this.processes.keys()]) {
      try {
        statSync(`${this.procRoot}/${tgid}`);
      } catch {
        this.unloadProcess(tgid);
        gone++;
      }
    }
    for (const file of [...this.files.values()]) {
      if (file.references === 0 && file.unusedSinceSweep !== undefined && file.unusedSinceSweep < this.sweeps) this.removeFile(file);
    }
    this.sweeps++;
    return gone;
  }

  isLoaded(tgid: Tgid): boolean {
    return this.processes.has(tgid);
  }

  /** Unloads everything (the maps are destroyed with the BPF object anyway; this keeps the counts true). */
  clear(): void {
    this.closed = true;
    this.queue.clear();
    this.job?.steps.return(undefined);
    this.job = undefined;
    for (const tgid of [...this.processes.keys()]) this.unloadProcess(tgid);
  }

  stats(): UnwindTableStats {
    const rules = this.ruleIds.size;
    return {
      processes: this.processes.size,
      files: [...this.files.values()].filter((file) => file.state === 'ready' && file.rowCount > 0).length,
      filesWithoutTable: { ...this.filesWithoutTable },
      filesOverBudget: this.filesOverBudget,
      rowsUsed: this.rowsUsed,
      rowsCapacity: this.maps.rows.maxEntries,
      pagesUsed: this.pagesUsed,
      rules,
      tableBytes: this.rowsUsed * ROW_SIZE + this.pagesUsed * (PAGE_KEY_SIZE + PAGE_VALUE_SIZE) + rules * RULE_SIZE,
      lockedMapBytes: [this.maps.rows, this.maps.rules, this.maps.pages, this.maps.processes].reduce((sum, map) => sum + mapMemlockBytes(map.fd), 0),
      unsupportedRows: { ...this.unsupportedRows },
      processesTruncated: this.processesTruncated,
      buildMs: Math.round(this.buildMs),
      loadErrors: this.loadErrors,
    };
  }

  private ruleId(rule: UnwindRule): number {
    const key = ruleKey(rule);
    let id = this.ruleIds.get(key);
    if (id !== undefined) return id;
    id = this.ruleIds.size;
    if (id >= this.maps.rules.maxEntries) return -1;
    const k = Buffer.alloc(4);
    k.writeUInt32LE(id);
    const v = Buffer.alloc(RULE_SIZE);
    v.writeUInt8(rule.cfa, 0);
    v.writeUInt8(rule.fp, 1);
    v.writeInt16LE(rule.fpOffset, 2);
    v.writeInt32LE(rule.cfaOffset, 4);
    loadAddon().mapUpdate(this.maps.rules.fd, k, v);
    this.ruleIds.set(key, id);
    return id;
  }

  private releaseFile(key: string): void {
    const file = this.files.get(key);
    if (file === undefined) return;
    if (--file.references > 0) return;
    // Kept until the next sweep: a program run in a loop (a shell script's
    // gzip) maps the same files again a moment later.
    file.unusedSinceSweep = this.sweeps;
  }

  /** Removes a file no process has mapped since the last sweep: its pages, then its rows. */
  private removeFile(file: LoadedFile): void {
    const key = file.key;
    this.files.delete(key);
    if (file.state !== 'ready' || file.rowCount === 0) return;
    // Pages first, so no walk reaches rows that are about to be reused.
    const pageKey = Buffer.alloc(PAGE_KEY_SIZE);
    pageKey.writeUInt32LE(file.id, 0);
    for (const page of file.pages) {
      pageKey.writeUInt32LE(page, 4);
      loadAddon().mapDelete(this.maps.pages.fd, pageKey);
    }
    this.pagesUsed -= file.pages.length;
    this.allocator.release(file.firstRow, file.rowCount);
    this.rowsUsed -= file.rowCount;
  }

  private countWithoutTable(reason: string): void {
    this.filesWithoutTable[reason] = (this.filesWithoutTable[reason] ?? 0) + 1;
  }

  /** Opens a file through a process that maps it: its root (containers), or map_files (deleted files). */
  private openFile(file: LoadedFile): FileByteSource | undefined {
    const openers = [file.opener];
    for (const [tgid, process] of this.processes) {
      if (!process.fileKeys.includes(file.key)) continue;
      const mapping = process.mappings.find((m) => isFileBacked(m) && fileKey(m) === file.key);
      if (mapping !== undefined) openers.push({ tgid, mapping });
    }
    for (const { tgid, mapping } of openers) {
      for (const path of [`${this.procRoot}/${tgid}/root${mapping.path}`, `${this.procRoot}/${tgid}/map_files/${mapping.startAddress.toString(16)}-${mapping.endAddress.toString(16)}`]) {
        try {
          return new FileByteSource(path);
        } catch {
          // try the next way in
        }
      }
    }
    return undefined;
  }

  /** Builds and loads one file's table, yielding between slices of FDEs (state becomes ready, or failed). */
  private *buildSteps(file: LoadedFile): Generator<void> {
    const source = this.openFile(file);
    if (source === undefined) {
      file.state = 'failed';
      this.countWithoutTable('unreadable');
      return;
    }
    const path = file.opener.mapping.path;
    try {
      const elf = new ElfReader(source);
      file.segments = elf.programHeaders
        .filter((p) => p.type === PT_LOAD)
        .map((p) => ({ offset: p.offset, vaddr: Number(p.vaddr), fileSize: p.fileSizeBytes }));
      const cfi = yield* readCfiSteps(source);
      file.state = 'ready';
      if (cfi.fdes.length === 0) {
        this.countWithoutTable('no CFI');
        return;
      }
      const table = compileTable(cfi.fdes);
      for (const [reason, n] of table.stats.unsupported) this.unsupportedRows[reason] = (this.unsupportedRows[reason] ?? 0) + n;
      const globalRule = table.rules.map((rule) => this.ruleId(rule));
      if (globalRule.some((id) => id < 0)) {
        this.countWithoutTable('rule map full');
        return;
      }
      const rowCount = table.rowAddressLow.length;
      const firstRow = this.allocator.allocate(rowCount);
      if (firstRow === undefined) {
        this.filesOverBudget++;
        if (!this.overBudgetLogged.has(path)) {
          this.overBudgetLogged.add(path);
          this.options.log?.(
            `fleetprof: unwind table budget full (${this.rowsUsed} of ${this.maps.rows.maxEntries} rows used): ${path} needs ${rowCount} rows and is unwound with frame pointers`,
          );
        }
        return;
      }
      this.writeRows(firstRow, table.rowAddressLow, table.rowRule, globalRule);
      this.writePages(file.id, firstRow, table.pages, table.pageFirstRow, table.pageRowCount);
      file.firstRow = firstRow;
      file.rowCount = rowCount;
      file.pages = table.pages;
      this.rowsUsed += rowCount;
      this.pagesUsed += table.pages.length;
    } catch (error) {
      file.state = 'failed';
      if (!(error instanceof ElfError)) throw error;
      this.countWithoutTable(error.code);
    } finally {
      source.close();
    }
  }


  private writeRows(firstRow: number, addressLow: Uint16Array, rule: Uint16Array, globalRule: number[]): void {
    for (let start = 0; start < addressLow.length; start += BATCH_ROWS) {
      const n = Math.min(BATCH_ROWS, addressLow.length - start);
      const keys = Buffer.alloc(n * 4);
      const values = Buffer.alloc(n * ROW_SIZE);
      for (let i = 0; i < n; i++) {
        keys.writeUInt32LE(firstRow + start + i, i * 4);
        values.writeUInt16LE(addressLow[start + i]!, i * ROW_SIZE);
        values.writeUInt16LE(globalRule[rule[start + i]!]!, i * ROW_SIZE + 2);
      }
      loadAddon().mapUpdateBatch(this.maps.rows.fd, keys, values, n);
    }
  }

  private writePages(fileId: number, firstRow: number, pages: Uint32Array, pageFirst: Uint32Array, pageCount: Uint32Array): void {
    const keys = Buffer.alloc(pages.length * PAGE_KEY_SIZE);
    const values = Buffer.alloc(pages.length * PAGE_VALUE_SIZE);
    for (let i = 0; i < pages.length; i++) {
      keys.writeUInt32LE(fileId, i * PAGE_KEY_SIZE);
      keys.writeUInt32LE(pages[i]!, i * PAGE_KEY_SIZE + 4);
      values.writeUInt32LE(firstRow + pageFirst[i]!, i * PAGE_VALUE_SIZE);
      values.writeUInt32LE(pageCount[i]!, i * PAGE_VALUE_SIZE + 4);
    }
    loadAddon().mapUpdateBatch(this.maps.pages.fd, keys, values, pages.length);
  }
}

/** Files are shared by device and inode: the same file in every process and container that maps it. */
function fileKey(mapping: Mapping): string {
  return `${mapping.dev}:${mapping.inode}`;
}

/** Runtime address minus ELF address for a mapping of `file`, from the PT_LOAD that holds its file offset. */
function loadBias(file: LoadedFile, mapping: Mapping): bigint | undefined {
  const offset = Number(mapping.fileOffset);
  const segment = file.segments.find((s) => offset >= s.offset && offset < s.offset + Math.max(s.fileSize, 1));
  if (segment === undefined) return undefined;
  return mapping.startAddress - BigInt(segment.vaddr + (offset - segment.offset));
}

/** The memory a BPF map locks, from /proc/self/fdinfo (0 if the kernel does not say). */
function mapMemlockBytes(fd: number): number {
  try {
    const match = /^memlock:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

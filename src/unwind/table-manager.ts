// Keeps the BPF unwind maps in step with the processes on the host:
// - a file's table is built the first time a walk needs it (the BPF walker
//   meets a mapping whose table is deferred and asks through the ring buffer;
//   a process's own executable is asked for at once), in the table worker
//   (table-build-pool.ts: parse and compile off the event loop), loaded here
//   into the maps, shared by every process mapping the same file (same device
//   and inode, built once), and removed when none maps it any more. Many files
//   a process maps (a runtime's bundled libraries, glibc's stubs, ld.so, the
//   agent's own) are never on a sampled stack: building them cost a cold host
//   CPU, row budget and map writes for nothing;
// - each process gets the list of its executable mappings (address range,
//   load bias, file id; file id 0 for code without a table: JIT, vdso);
// - rows go into one preallocated array whose size is the memory budget; a
//   file that does not fit is counted and logged, and its frames fall back to
//   the frame-pointer rule.
// The layouts are bpf/profile.h's fp_unwind_* and fp_process_mappings.

import { closeSync, openSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { loadAddon, type MapInfo } from '../native/addon.js';
import { isExecutable, isFileBacked, parseProcMaps, type Mapping } from '../symbolize/proc-maps.js';
import type { Tgid } from '../sampler/bpf-layout.js';
import type { UnwindMaps } from '../sampler/sampler.js';
import { TableBuildPool, type WorkerReply } from './table-build-pool.js';
import { decodeRule, type BuiltTable, type LoadSegment } from './table-builder.js';
import type { TableCacheOptions } from './table-cache.js';
import { INVALID_RULE, ruleKey, UNSUPPORTED_RULE, type UnwindRule } from './rules.js';

export const MAX_PROCESS_MAPPINGS = 256;
const MAPPING_SIZE = 32;
/** bpf/profile.h's struct fp_process_mappings: count, stale_reported, version, reserved, then the mappings. */
const PROCESS_HEADER_SIZE = 16;
export const PROCESS_MAPPINGS_SIZE = PROCESS_HEADER_SIZE + MAX_PROCESS_MAPPINGS * MAPPING_SIZE;
const ROW_SIZE = 4;
/** Rows per element of the rows map (one: see unwind_rows in bpf/profile.bpf.c). */
const ROWS_PER_ELEMENT = 1;
const RULE_SIZE = 8;
const PAGE_KEY_SIZE = 8;
/** bpf/profile.h's struct fp_unwind_page: first row, row count, then a u16 row per 2 KiB bucket. */
export const BUCKET_BITS = 11;
export const BUCKETS = 1 << (16 - BUCKET_BITS);
const PAGE_VALUE_SIZE = 8 + 2 * BUCKETS;
/** bpf/profile.h's enum fp_table_pending. */
const TABLE_BUILDING = 1;
const TABLE_DEFERRED = 2;
/** Rows written per batch syscall (bounds the temporary buffers), where the rows map cannot be mapped. */
const BATCH_ROWS = 1 << 16;
/** Bytes per element of an mmapable array map: values are rounded up to 8. */
const ROW_ELEMENT_BYTES = 8;


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
  /** Time spent building tables (parse + compile, in the table worker), over all files loaded so far. */
  buildMs: number;
  /** Files whose table is being built. */
  filesBuilding: number;
  /** Files mapped executable whose table no walk has needed yet (built when one does). */
  filesDeferred: number;
  /** Tables asked for by walks that met their file (FP_PROCESS_TABLE_WANTED events acted on). */
  tablesWanted: number;
  /** Whether rows are copied into the rows map's memory (false: one kernel update per row, a kernel without mmapable maps). */
  rowsWrittenInPlace: boolean;
  /** Background loads that failed (logged); the processes concerned use frame pointers. */
  loadErrors: number;
  /** The persistent table cache (table-cache.ts): tables read from it, built because it had none, entries found corrupt (rebuilt), writes that failed. */
  cache: { enabled: boolean; hits: number; misses: number; corrupt: number; writeErrors: number };
}

interface LoadedFile {
  id: number;
  key: string;
  /** deferred: no walk has needed it yet; building: asked of the table worker; ready: loaded (rowCount 0: no table); failed: unreadable. */
  state: 'deferred' | 'building' | 'ready' | 'failed';
  /** Size of the mapping that first brought it: the worker builds small files first. */
  sizeHint: number;
  /** A way to open it: a process that maps it and the mapping (tried again through other users if gone). */
  opener: { tgid: Tgid; mapping: Mapping };
  /** Where its rows start in the rows map, and how many (0: no table). */
  firstRow: number;
  rowCount: number;
  pages: Uint32Array;
  /** PT_LOAD segments, for the load bias. */
  segments: LoadSegment[];
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
  private readonly rowsCapacity: number;
  /** Of the last process entry written (0 is never used: an empty cache slot). */
  private version = 0;
  /** Sweeps so far: files unused since an earlier one are removed. */
  private sweeps = 0;
  private rowsUsed = 0;
  private pagesUsed = 0;
  private filesOverBudget = 0;
  private processesTruncated = 0;
  private buildMs = 0;
  private loadErrors = 0;
  private tablesWanted = 0;
  private readonly filesWithoutTable: Record<string, number> = {};
  private readonly unsupportedRows: Record<string, number> = {};
  private readonly overBudgetLogged = new Set<string>();
  private readonly cacheCounts = { hits: 0, misses: 0, corrupt: 0, writeErrors: 0 };

  constructor(
    private readonly maps: UnwindMaps,
    private readonly options: { procRoot?: string; log?: (line: string) => void; cache?: TableCacheOptions } = {},
  ) {
    this.pool = new TableBuildPool((message) => {
      this.loadErrors++;
      this.options.log?.(`fleetprof: unwind tables: ${message}`);
    }, options.cache);
    this.allocator = new RangeAllocator(maps.rows.maxEntries);
    this.rowsInPlace = canWriteInPlace(maps.rows);
    this.rowsCapacity = maps.rows.maxEntries * ROWS_PER_ELEMENT;
    // Rule 0: no information (a gap between FDEs); rule 1: an unsupported rule (the walk stops, counted).
    this.ruleId(INVALID_RULE);
    this.ruleId(UNSUPPORTED_RULE);
  }

  private get procRoot(): string {
    return this.options.procRoot ?? '/proc';
  }

  private readonly queue = new Set<Tgid>();
  private scheduled = false;
  private closed = false;
  /** Files opened for builds in flight. */
  private readonly openFds = new Set<number>();
  private readonly pool: TableBuildPool;
  /** Whether rows are copied into the rows map's memory (mapWrite); else batch updates. */
  private readonly rowsInPlace: boolean;

  /**
   * Loads the process soon, off the ring-buffer callback. Its mappings are
   * read and its entry written on the next event-loop turn (cheap); the
   * tables of files not seen before are built by the table worker, and the
   * process's entry is rewritten as each becomes ready. Until its entry
   * exists its samples keep only their leaf (counted by the BPF program).
   */
  requestLoad(tgid: Tgid): void {
    if (this.closed) return;
    this.queue.add(tgid);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.loadQueued();
    });
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
   * Loads the queued processes now, and the tables the worker has finished.
   * The collector calls it after a drain and before symbolizing, which can
   * hold the event loop for a while on a busy host.
   */
  loadQueued(): void {
    const tgids = [...this.queue];
    this.queue.clear();
    for (const tgid of tgids) this.guard(`loading process ${tgid}`, () => this.loadProcess(tgid));
    this.pool.deliverFinished();
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
    const exe = this.executablePath(tgid);
    if (executable.length > MAX_PROCESS_MAPPINGS) this.processesTruncated++;
    const mappings = executable.slice(0, MAX_PROCESS_MAPPINGS);
    const fileKeys: string[] = [];
    const newFiles: LoadedFile[] = [];
    for (const mapping of mappings) {
      if (!isFileBacked(mapping)) continue;
      const key = fileKey(mapping);
      let file = this.files.get(key);
      if (file === undefined) {
        file = {
          id: this.nextFileId++,
          key,
          // The program's own binary is on nearly every stack it has (main, _start): asked for at once;
          // the rest when a walk reaches them.
          state: mapping.path === exe ? 'building' : 'deferred',
          sizeHint: Number(mapping.endAddress - mapping.startAddress),
          opener: { tgid, mapping },
          firstRow: 0,
          rowCount: 0,
          pages: new Uint32Array(0),
          segments: [],
          references: 0,
        };
        this.files.set(key, file);
        if (file.state === 'building') newFiles.push(file);
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
    for (const file of newFiles) this.startBuild(file);
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
      const pending = file?.state === 'building' ? TABLE_BUILDING : file?.state === 'deferred' ? TABLE_DEFERRED : 0;
      if (file !== undefined && file.state === 'ready' && file.rowCount > 0) {
        const b = loadBias(file, mapping);
        if (b !== undefined) {
          fileId = file.id;
          bias = b;
        }
      }
      const at = PROCESS_HEADER_SIZE + i * MAPPING_SIZE;
      value.writeBigUInt64LE(mapping.startAddress, at);
      value.writeBigUInt64LE(mapping.endAddress, at + 8);
      value.writeBigUInt64LE(BigInt.asUintN(64, bias), at + 16);
      value.writeUInt32LE(fileId, at + 24);
      value.writeUInt32LE(pending, at + 28);
    });
    value.writeUInt32LE(process.mappings.length, 0);
    // A new version for every write: the BPF rule cache keyed by it forgets what this entry said before.
    this.version = this.version >= 0xffffffff ? 1 : this.version + 1;
    value.writeUInt32LE(this.version, 8);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(tgid);
    loadAddon().mapUpdate(this.maps.processes.fd, key, value);
  }

  /**
   * A walk in this process met the mapping starting at `mappingStart`, whose
   * table is deferred: build it now. Called from the ring buffer, while the
   * process runs, so its file can still be opened through it. The walker has
   * marked the mapping as building in the entry; other processes mapping the
   * file may ask again meanwhile, which changes nothing.
   */
  requestTable(tgid: Tgid, mappingStart: bigint): void {
    if (this.closed) return;
    const mapping = this.processes.get(tgid)?.mappings.find((m) => m.startAddress === mappingStart);
    if (mapping === undefined || !isFileBacked(mapping)) return; // re-read since: the new entry asks again
    const file = this.files.get(fileKey(mapping));
    if (file?.state !== 'deferred') return;
    this.tablesWanted++;
    file.state = 'building';
    file.opener = { tgid, mapping };
    this.guard(`building the table of ${mapping.path}`, () => this.startBuild(file));
  }

  /** The path of the process's executable as its maps name it (undefined if gone). */
  private executablePath(tgid: Tgid): string | undefined {
    try {
      return readlinkSync(`${this.procRoot}/${tgid}/exe`).replace(/ \(deleted\)$/, '');
    } catch {
      return undefined;
    }
  }

  /** Asks the worker for a file's table; loads it when it comes back (if the file is still mapped). */
  private startBuild(file: LoadedFile): void {
    // Opened here, while the process that maps it surely lives (a short-lived
    // one may be gone by the time the worker gets to it); the worker reads it
    // through /proc/self/fd, and the fd is closed when the reply comes.
    let fd: number | undefined;
    for (const path of this.openPaths(file)) {
      try {
        fd = openSync(path, 'r');
        break;
      } catch {
        // try the next way in
      }
    }
    if (fd !== undefined) this.openFds.add(fd);
    this.pool.build(fd === undefined ? [] : [`/proc/self/fd/${fd}`], file.sizeHint, (reply) => {
      if (fd !== undefined) {
        this.openFds.delete(fd);
        closeSync(fd);
      }
      if (this.closed || this.files.get(file.key) !== file) return; // unmapped by every process meanwhile
      this.guard(`loading the table of ${file.opener.mapping.path}`, () => this.finishBuild(file, reply));
      for (const [tgid, process] of this.processes) if (process.fileKeys.includes(file.key)) this.writeProcess(tgid);
    });
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
    this.pool.close();
    for (const fd of this.openFds) closeSync(fd);
    this.openFds.clear();
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
      rowsCapacity: this.rowsCapacity,
      pagesUsed: this.pagesUsed,
      rules,
      tableBytes: this.rowsUsed * ROW_SIZE + this.pagesUsed * (PAGE_KEY_SIZE + PAGE_VALUE_SIZE) + rules * RULE_SIZE,
      lockedMapBytes: [this.maps.rows, this.maps.rules, this.maps.pages, this.maps.processes].reduce((sum, map) => sum + mapMemlockBytes(map.fd), 0),
      unsupportedRows: { ...this.unsupportedRows },
      processesTruncated: this.processesTruncated,
      buildMs: Math.round(this.buildMs),
      filesBuilding: [...this.files.values()].filter((file) => file.state === 'building').length,
      filesDeferred: [...this.files.values()].filter((file) => file.state === 'deferred').length,
      tablesWanted: this.tablesWanted,
      rowsWrittenInPlace: this.rowsInPlace,
      loadErrors: this.loadErrors,
      cache: { enabled: this.options.cache !== undefined, ...this.cacheCounts },
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
    this.allocator.release(file.firstRow / ROWS_PER_ELEMENT, elementsFor(file.rowCount));
    this.rowsUsed -= file.rowCount;
  }

  private countWithoutTable(reason: string): void {
    this.filesWithoutTable[reason] = (this.filesWithoutTable[reason] ?? 0) + 1;
  }

  /** Ways to open a file through the processes that map it: their root (containers), or map_files (deleted files). */
  private openPaths(file: LoadedFile): string[] {
    const openers = [file.opener];
    for (const [tgid, process] of this.processes) {
      if (openers.length >= 4) break;
      if (tgid === file.opener.tgid || !process.fileKeys.includes(file.key)) continue;
      const mapping = process.mappings.find((m) => isFileBacked(m) && fileKey(m) === file.key);
      if (mapping !== undefined) openers.push({ tgid, mapping });
    }
    return openers.flatMap(({ tgid, mapping }) => [
      `${this.procRoot}/${tgid}/root${mapping.path}`,
      `${this.procRoot}/${tgid}/map_files/${mapping.startAddress.toString(16)}-${mapping.endAddress.toString(16)}`,
    ]);
  }

  /** Loads a table the worker built (state becomes ready, or failed). */
  private finishBuild(file: LoadedFile, reply: WorkerReply): void {
    if (reply.type === 'failed') {
      file.state = 'failed';
      throw new Error(reply.message);
    }
    const result = reply.result;
    this.buildMs += result.buildMs;
    if (reply.cache === 'hit') this.cacheCounts.hits++;
    else if (reply.cache === 'miss') this.cacheCounts.misses++;
    else if (reply.cache === 'corrupt') this.cacheCounts.corrupt++;
    else if (reply.cache === 'write failed') {
      this.cacheCounts.misses++;
      this.cacheCounts.writeErrors++;
    }
    file.segments = result.segments;
    if (result.kind === 'noTable') {
      // A file without CFI is ready (its frames use frame pointers); unreadable or not ELF is failed.
      file.state = result.reason === 'no CFI' ? 'ready' : 'failed';
      this.countWithoutTable(result.reason);
      return;
    }
    file.state = 'ready';
    this.loadTable(file, result);
  }

  private loadTable(file: LoadedFile, table: BuiltTable): void {
    const path = file.opener.mapping.path;
    for (const [reason, n] of table.unsupported) this.unsupportedRows[reason] = (this.unsupportedRows[reason] ?? 0) + n;
    const ruleCount = table.rules.length / 4;
    const globalRule = new Uint32Array(ruleCount);
    for (let i = 0; i < ruleCount; i++) {
      const id = this.ruleId(decodeRule(table.rules, i));
      if (id < 0) {
        this.countWithoutTable('rule map full');
        return;
      }
      globalRule[i] = id;
    }
    const rowCount = table.rows.length;
    const firstElement = this.allocator.allocate(elementsFor(rowCount));
    const firstRow = firstElement === undefined ? undefined : firstElement * ROWS_PER_ELEMENT;
    if (firstRow === undefined) {
      this.filesOverBudget++;
      if (!this.overBudgetLogged.has(path)) {
        this.overBudgetLogged.add(path);
        this.options.log?.(
          `fleetprof: unwind table budget full (${this.rowsUsed} of ${this.rowsCapacity} rows used): ${path} needs ${rowCount} rows and is unwound with frame pointers`,
        );
      }
      return;
    }
    // The worker's rows name its own rule indices: put the host-wide ids in their place.
    const rows = table.rows;
    for (let i = 0; i < rowCount; i++) rows[i] = ((rows[i]! & 0xffff) | (globalRule[rows[i]! >>> 16]! << 16)) >>> 0;
    this.writeRows(firstRow, rows);
    this.writePages(file.id, firstRow, rows, table.pages, table.pageFirstRow, table.pageRowCount);
    file.firstRow = firstRow;
    file.rowCount = rowCount;
    file.pages = table.pages;
    this.rowsUsed += rowCount;
    this.pagesUsed += table.pages.length;
  }

  /** Rows as the BPF map holds them (address_low | rule << 16, little-endian): in place, else a batch per syscall. */
  private writeRows(firstRow: number, rows: Uint32Array): void {
    if (this.rowsInPlace) {
      // As the map lays them out: a row, then 4 bytes of padding. No walk reads them before writePages points at them.
      const stride = ROW_ELEMENT_BYTES / ROW_SIZE;
      const elements = new Uint32Array(rows.length * stride);
      for (let i = 0; i < rows.length; i++) elements[i * stride] = rows[i]!;
      loadAddon().mapWrite(this.maps.rows.fd, firstRow * ROW_ELEMENT_BYTES, Buffer.from(elements.buffer));
      return;
    }
    // An odd count gets a padding row (never searched: it is past the file's last page).
    let padded = rows;
    if (rows.length % ROWS_PER_ELEMENT !== 0) {
      padded = new Uint32Array(rows.length + 1);
      padded.set(rows);
    }
    const firstElement = firstRow / ROWS_PER_ELEMENT;
    const elements = padded.length / ROWS_PER_ELEMENT;
    const batch = BATCH_ROWS / ROWS_PER_ELEMENT;
    for (let start = 0; start < elements; start += batch) {
      const n = Math.min(batch, elements - start);
      const keys = new Uint32Array(n);
      for (let i = 0; i < n; i++) keys[i] = firstElement + start + i;
      const values = Buffer.from(padded.buffer, padded.byteOffset + start * ROWS_PER_ELEMENT * ROW_SIZE, n * ROWS_PER_ELEMENT * ROW_SIZE);
      loadAddon().mapUpdateBatch(this.maps.rows.fd, Buffer.from(keys.buffer), values, n);
    }
  }

  private writePages(fileId: number, firstRow: number, rows: Uint32Array, pages: Uint32Array, pageFirst: Uint32Array, pageCount: Uint32Array): void {
    const keys = Buffer.alloc(pages.length * PAGE_KEY_SIZE);
    const values = Buffer.alloc(pages.length * PAGE_VALUE_SIZE);
    for (let i = 0; i < pages.length; i++) {
      keys.writeUInt32LE(fileId, i * PAGE_KEY_SIZE);
      keys.writeUInt32LE(pages[i]!, i * PAGE_KEY_SIZE + 4);
      values.writeUInt32LE(firstRow + pageFirst[i]!, i * PAGE_VALUE_SIZE);
      values.writeUInt32LE(pageCount[i]!, i * PAGE_VALUE_SIZE + 4);
      pageBuckets(rows, pageFirst[i]!, pageCount[i]!).forEach((row, bucket) => values.writeUInt16LE(row, i * PAGE_VALUE_SIZE + 8 + 2 * bucket));
    }
    loadAddon().mapUpdateBatch(this.maps.pages.fd, keys, values, pages.length);
  }
}

/**
 * Per 2 KiB bucket of a page: its row (relative to the page's first) in force
 * at the bucket's first byte, i.e. the last row at or below it (0 if none).
 * The BPF walker searches only between a bucket's entry and the next one's.
 */
export function pageBuckets(rows: Uint32Array, first: number, count: number): Uint16Array {
  const buckets = new Uint16Array(BUCKETS);
  let row = 0;
  for (let bucket = 0; bucket < BUCKETS; bucket++) {
    const start = bucket << BUCKET_BITS;
    while (row + 1 < count && (rows[first + row + 1]! & 0xffff) <= start) row++;
    buckets[bucket] = row;
  }
  return buckets;
}

function elementsFor(rowCount: number): number {
  return Math.ceil(rowCount / ROWS_PER_ELEMENT);
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

/**
 * Whether the rows map takes in-place writes (mapWrite): a table's rows in one
 * copy instead of one kernel update per row (~450k rows on a cold host, ~50 ms
 * of the event loop's time). Not where the map cannot be mapped (a kernel
 * before 5.5, an object built without BPF_F_MMAPABLE): then batch updates.
 * Probed by writing row 0, which no table holds yet.
 */
function canWriteInPlace(rows: MapInfo): boolean {
  try {
    loadAddon().mapWrite(rows.fd, 0, Buffer.alloc(ROW_ELEMENT_BYTES));
    return true;
  } catch {
    return false;
  }
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

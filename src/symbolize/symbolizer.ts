// The symbolizer: raw user and kernel addresses from the sampler in,
// pprof-ready frames out. Per process it keeps a snapshot (mappings, parsed
// binaries, perf map) taken while the process was alive, so samples drained
// after the process exited still resolve.

import { readFileSync, statSync } from 'node:fs';
import type { FrameKind } from '../profile/api-types.js';
import { JIT_MAPPING_FILE, KERNEL_MAPPING_FILE } from '../profile/frame-kind.js';
import { BinaryCache, type LoadResult, type PendingBinary } from './binary-cache.js';
import type { BinaryInfo } from './binary.js';
import { demangle } from './demangle.js';
import { buildIdFromNotes, ElfError, parseNotes, toElfAddress } from './elf.js';
import { KernelSymbols } from './kallsyms.js';
import { PerfMapFile } from './perf-map.js';
import { findMapping, isExecutable, isFileBacked, parseProcMaps, type Mapping } from './proc-maps.js';
import { readOwnVdso, VDSO_PATH } from './vdso.js';

export type Address = bigint; // instruction address as the kernel reported it
export type Pid = number;

export interface ResolvedFrame {
  address: Address; // as given
  functionName: string | null; // demangled; null if unresolvable
  kind: FrameKind;
  /** Path of the binary as the process saw it; '[kernel.kallsyms]' or '[kernel.kallsyms]/<module>' for kernel, '[jit]' for perf-map frames, '' if no mapping. */
  mappingFile: string;
  buildId: string | null;
  mappingStart: Address;
  mappingEnd: Address;
  mappingFileOffset: Address;
  /** Address in the ELF's own vaddr space (after load bias), what addr2line/pprof need. */
  fileAddress: Address | null;
  /** e.g. JS file:line from perf maps */
  sourceFile?: string;
}

export interface SymbolizerOptions {
  /** default '/proc' */
  procRoot?: string;
  /** Distinct binaries kept parsed; default 1000. */
  cacheMaxBinaries?: number;
  /** Estimated bytes of parsed symbol tables kept; default 1 GiB (the agent sets it from its memory budget). */
  cacheMaxBytes?: number;
  /** Estimated bytes of perf-map lines kept; past it, trimToBudget() drops the least recently observed processes' maps. */
  perfMapMaxBytes?: number;
  /** Extra directories standing for "/" when looking for debug files (after the process's root and the host's). */
  extraDebugRoots?: string[];
  /** Where /sys/kernel/notes (the running kernel's build ID) lives; default '/sys'. */
  sysRoot?: string;
  /** A kernel address that resolves to nothing re-reads kallsyms at most this often; default 60 s. */
  kallsymsRefreshIntervalMs?: number;
  /** Resolved frames the per-process frame caches keep, all processes together; past it the least recently observed processes' are dropped (counted). */
  maxCachedFrames?: number;
}

export interface SymbolizerStats {
  processesObserved: number;
  processesVanished: number;
  processesTracked: number;
  binariesParsed: number;
  binaryCacheHits: number;
  binaryCacheMisses: number;
  binaryParseErrors: number;
  binaryCacheEvictions: number;
  cachedBinaries: number;
  unreadableBinaries: number;
  resolvedFrames: number;
  unresolvedFrames: number;
  jitFrames: number;
  kernelFrames: number;
  malformedMapsLines: number;
  mapsRefreshes: number;
  kernelSymbols: number;
  /** kallsyms showed only zero addresses (kptr_restrict): kernel frames cannot be named. */
  kernelAddressesHidden: boolean;
  /** Estimated bytes of parsed symbol tables in the binary cache. */
  binaryCacheBytes: number;
  /** Perf-map readers held (one per file) and the bytes they hold. */
  perfMapReaders: number;
  perfMapBytes: number;
  /** Perf maps dropped to stay within perfMapMaxBytes (read again if needed). */
  perfMapEvictions: number;
  /** Resolved frames held by the per-process frame caches, and how many were dropped to stay within maxCachedFrames. */
  cachedFrames: number;
  frameCacheEvictions: number;
  /**
   * Perf map files ignored because they are older than the process observed:
   * left in /tmp by an earlier process that had the same pid.
   */
  stalePerfMaps: number;
}

/**
 * A binary opened when its process was observed but parsed only when one of
 * its addresses needs a name: most mapped libraries are never sampled. Shared
 * by every process that maps the same file, and closed when none is left.
 */
interface OpenBinary {
  /** Its key in Symbolizer.openBinaries. */
  readonly fileKey: string;
  pending: PendingBinary | null;
  result: LoadResult | null;
  users: number;
  binaryPath: string;
  debugRoots: string[];
}

type BinaryRef = { ok: true; binary: BinaryInfo } | { ok: false } | { open: OpenBinary };

interface ProcessSnapshot {
  pid: Pid;
  /** The pid inside the process's own pid namespace: perf maps are named by it. */
  nsPid: Pid;
  mappings: Mapping[];
  /** By mappingKey(). */
  binaries: Map<string, BinaryRef>;
  perfMaps: PerfMapFile[];
  perfMapsReadAtMs: number;
  mapsReadAtMs: number;
  alive: boolean;
  /**
   * Resolved native frames by address (a leaf under its address negated: it
   * is looked up at the address itself, a return address at the byte
   * before). A new stack mostly repeats callers of stacks seen before, and
   * resolving a frame (mapping search, binary key, symbol search, a new
   * frame object) was most of what a new stack cost. Cleared when the
   * mappings are re-read.
   */
  frames: Map<Address, ResolvedFrame>;
}

/** Frames a process's frame cache keeps at most; past this it starts over (a process's hot code is far less). */
const MAX_CACHED_FRAMES_PER_PROCESS = 1 << 14;
/** Frames all processes' caches keep together unless the agent's memory budget says otherwise (memory-budget.ts). */
const DEFAULT_MAX_CACHED_FRAMES = 1 << 18;

/**
 * A kernel address that resolves to nothing re-reads /proc/kallsyms at most
 * this often (reading it is cheap now, ~30 ms of the kernel's time; see kallsyms.ts).
 */
const KALLSYMS_REFRESH_INTERVAL_MS = 60_000;

/**
 * How stale a JIT frame kept by a caller may get: a JIT reuses the addresses
 * of code it freed for other functions, and says so only by appending to its
 * perf map.
 */
const JIT_VERSION_CHECK_INTERVAL_MS = 1000;

/**
 * Binaries held open, unparsed, at most: past this, new ones are parsed when
 * their process is observed (as all were before), to stay far from the fd limit.
 */
const MAX_OPEN_BINARIES = 256;

/** A miss in a snapshot's mappings re-reads /proc/PID/maps (dlopen, new JIT regions) at most this often. */
const MAPS_REFRESH_INTERVAL_MS = 1000;
/**
 * A perf map last written this long before its process started belongs to an
 * earlier process with the same pid. The slack covers /proc/stat's whole-second
 * boot time and the file system's timestamp granularity.
 */
const STALE_PERF_MAP_SLACK_MS = 2000;
/**
 * USER_HZ: the unit of /proc/PID/stat's times. 100 on every Linux architecture
 * fleetprof builds for (x86-64, arm64); Node has no sysconf to ask.
 */
const USER_HZ = 100;

function mappingKey(m: Mapping): string {
  return `${m.dev}:${m.inode}:${m.path}`;
}

export class Symbolizer {
  private readonly procRoot: string;
  private readonly sysRoot: string;
  private readonly extraDebugRoots: string[];
  private readonly cache: BinaryCache;
  private readonly processes = new Map<Pid, ProcessSnapshot>();
  /** Unparsed binaries by file identity, so each is held open once. */
  private readonly openBinaries = new Map<string, OpenBinary>();
  private kernel: KernelSymbols | null = null;
  private kernelReadAtMs = 0;
  private readonly kallsymsRefreshIntervalMs: number;
  private kernelBuildId: string | null = null;
  private vdso: BinaryInfo | null | undefined;
  /** Boot time (Unix ms) from /proc/stat, read once: process start times are relative to it. */
  private bootTimeMs: number | null = null;
  private readonly counters = {
    processesObserved: 0,
    processesVanished: 0,
    unreadableBinaries: 0,
    resolvedFrames: 0,
    unresolvedFrames: 0,
    jitFrames: 0,
    kernelFrames: 0,
    malformedMapsLines: 0,
    mapsRefreshes: 0,
    perfMapEvictions: 0,
    stalePerfMaps: 0,
    frameCacheEvictions: 0,
  };
  private readonly perfMapMaxBytes: number;
  private readonly maxCachedFrames: number;
  /** Entries of every snapshot's frame cache together. */
  private cachedFrames = 0;

  constructor(opts: SymbolizerOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.sysRoot = opts.sysRoot ?? '/sys';
    this.extraDebugRoots = opts.extraDebugRoots ?? [];
    this.kallsymsRefreshIntervalMs = opts.kallsymsRefreshIntervalMs ?? KALLSYMS_REFRESH_INTERVAL_MS;
    this.cache = new BinaryCache({ maxEntries: opts.cacheMaxBinaries ?? 1000, maxBytes: opts.cacheMaxBytes });
    this.perfMapMaxBytes = opts.perfMapMaxBytes ?? Number.POSITIVE_INFINITY;
    this.maxCachedFrames = Math.max(1, opts.maxCachedFrames ?? DEFAULT_MAX_CACHED_FRAMES);
  }

  /**
   * Keeps perf-map lines within perfMapMaxBytes: drops what the least
   * recently observed processes' maps hold (counted); a later lookup in them
   * reads the file again. Returns the evictions made.
   */
  trimToBudget(): number {
    let bytes = 0;
    for (const snap of this.processes.values()) for (const pm of snap.perfMaps) bytes += pm.estimatedBytes;
    let evicted = 0;
    // Map order is insertion order: re-observed processes move to the end.
    for (const snap of this.processes.values()) {
      if (bytes <= this.perfMapMaxBytes) break;
      for (const pm of snap.perfMaps) {
        if (pm.entryCount === 0) continue;
        bytes -= pm.estimatedBytes;
        pm.release();
        evicted++;
      }
    }
    this.counters.perfMapEvictions += evicted;
    return evicted;
  }

  /**
   * Snapshot what we need of a process NOW (maps, its root, namespace pid, and
   * parse/cache the ELF files of its executable mappings) so frames still
   * resolve after it exits. Call when a process is first seen or after it
   * execs. Safe if the process is already gone (returns false, counted).
   */
  observeProcess(pid: Pid): boolean {
    const maps = this.readMaps(pid);
    if (maps === null) {
      this.counters.processesVanished++;
      const old = this.processes.get(pid);
      if (old !== undefined) old.alive = false;
      return false;
    }
    this.counters.processesObserved++;
    const nsPid = readNsPid(`${this.procRoot}/${pid}/status`) ?? pid;
    const now = Date.now();
    const snap: ProcessSnapshot = { pid, nsPid, mappings: maps, binaries: new Map(), perfMaps: this.perfMapFiles(pid, nsPid), perfMapsReadAtMs: now, mapsReadAtMs: now, alive: true, frames: new Map() };
    const previous = this.processes.get(pid);
    this.processes.delete(pid); // re-inserted last: most recently observed
    this.processes.set(pid, snap);
    this.loadBinaries(snap);
    // After the new snapshot took its references: files both map stay open.
    if (previous !== undefined) {
      this.dropFrames(previous, false);
      this.dropBinaryRefs(previous);
    }
    for (const pm of snap.perfMaps) pm.refresh();
    return true;
  }

  /**
   * A number that changes when the process's JIT maps do, so that a caller
   * may keep JIT frames it resolved while it stays the same; -1 when the
   * process has none. Looks at the files at most once per JIT_VERSION_CHECK_INTERVAL_MS.
   */
  jitVersion(pid: Pid): number {
    const snap = this.processes.get(pid);
    if (snap === undefined || snap.perfMaps.length === 0) return -1;
    const now = Date.now();
    if (now - snap.perfMapsReadAtMs >= JIT_VERSION_CHECK_INTERVAL_MS) {
      snap.perfMapsReadAtMs = now;
      for (const pm of snap.perfMaps) pm.refresh();
    }
    let version = 0;
    for (const pm of snap.perfMaps) version += pm.version;
    return version;
  }

  /** Forget a process snapshot (on exit handled by caller's policy). */
  forgetProcess(pid: Pid): void {
    const snap = this.processes.get(pid);
    if (snap === undefined) return;
    this.processes.delete(pid);
    this.dropFrames(snap, false);
    this.dropBinaryRefs(snap);
  }

  /** Empties a snapshot's frame cache; `evicted`: to stay within a bound (counted), not because the frames went stale. */
  private dropFrames(snap: ProcessSnapshot, evicted: boolean): void {
    const n = snap.frames.size;
    if (n === 0) return;
    this.cachedFrames -= n;
    if (evicted) this.counters.frameCacheEvictions += n;
    snap.frames.clear();
  }

  /** Caches a resolved frame of `snap`, within the per-process and the overall bound. */
  private cacheFrame(snap: ProcessSnapshot, key: Address, frame: ResolvedFrame): void {
    if (snap.frames.size >= MAX_CACHED_FRAMES_PER_PROCESS) this.dropFrames(snap, true);
    if (this.cachedFrames >= this.maxCachedFrames) {
      // Map order is insertion order: re-observed processes move to the end, so the least recently observed go first.
      for (const other of this.processes.values()) {
        if (this.cachedFrames < this.maxCachedFrames) break;
        this.dropFrames(other, true);
      }
    }
    snap.frames.set(key, frame);
    this.cachedFrames++;
  }

  private dropBinaryRefs(snap: ProcessSnapshot): void {
    for (const ref of snap.binaries.values()) {
      if (!('open' in ref)) continue;
      const open = ref.open;
      if (--open.users > 0 || open.pending === null) continue;
      this.cache.release(open.pending);
      open.pending = null;
      this.forgetOpenBinary(open);
    }
  }

  private forgetOpenBinary(open: OpenBinary): void {
    // A later one for the same file may hold the key by now.
    if (this.openBinaries.get(open.fileKey) === open) this.openBinaries.delete(open.fileKey);
  }

  /** `addresses` leaf first; all but the first are return addresses. */
  symbolizeUser(pid: Pid, addresses: Address[]): ResolvedFrame[] {
    let snap = this.processes.get(pid);
    if (snap === undefined && this.observeProcess(pid)) snap = this.processes.get(pid);
    const out: ResolvedFrame[] = [];
    let perfMapsRefreshed = false;
    for (let i = 0; i < addresses.length; i++) {
      const address = addresses[i]!;
      let frame: ResolvedFrame;
      if (snap === undefined) {
        frame = unknownFrame(address);
      } else {
        const key = i > 0 ? address : -address;
        const cached = snap.frames.get(key);
        if (cached !== undefined) {
          frame = cached;
        } else {
          frame = this.resolveUser(snap, address, lookupAddress(address, i), () => {
            if (perfMapsRefreshed) return;
            perfMapsRefreshed = true;
            for (const pm of snap!.perfMaps) pm.refresh();
          });
          // Only named native code is kept: a JIT reuses addresses, and an unnamed frame is tried again later.
          if (frame.kind === 'native' && frame.functionName !== null) {
            this.cacheFrame(snap, key, frame);
          }
        }
      }
      if (frame.functionName === null) this.counters.unresolvedFrames++;
      else this.counters.resolvedFrames++;
      if (frame.kind === 'jit') this.counters.jitFrames++;
      out.push(frame);
    }
    return out;
  }

  /** `addresses` leaf first, as bpf_get_stackid gives them. */
  symbolizeKernel(addresses: Address[]): ResolvedFrame[] {
    let ks = this.kernelSymbols();
    const out: ResolvedFrame[] = [];
    for (let i = 0; i < addresses.length; i++) {
      const address = addresses[i]!;
      let hit = kernelLookup(ks, lookupAddress(address, i));
      if (hit === null && Date.now() - this.kernelReadAtMs >= this.kallsymsRefreshIntervalMs) {
        // Modules and BPF programs come and go: a miss may be code newer than our last read.
        ks = this.refreshKernelSymbols();
        hit = kernelLookup(ks, lookupAddress(address, i));
      }
      const module = hit?.module ?? null;
      const range = ks.rangeOf(module);
      out.push({
        address,
        functionName: hit?.name ?? null,
        kind: 'kernel',
        mappingFile: module === null ? KERNEL_MAPPING_FILE : `${KERNEL_MAPPING_FILE}/${module}`,
        buildId: module === null ? this.kernelBuildId : null,
        mappingStart: range.start,
        mappingEnd: range.end,
        mappingFileOffset: 0n,
        // Without the vmlinux at hand (and with KASLR) the runtime address is the best we have.
        fileAddress: address,
      });
      this.counters.kernelFrames++;
      if (hit === null) this.counters.unresolvedFrames++;
      else this.counters.resolvedFrames++;
    }
    return out;
  }

  /** Re-reads /proc/kallsyms and /proc/modules (modules and BPF programs come and go). */
  refreshKernelSymbols(): KernelSymbols {
    let text: Buffer;
    let modules: string | undefined;
    try {
      // Kept as bytes: the table decodes the few names lookups hit straight from them.
      text = readFileSync(`${this.procRoot}/kallsyms`);
    } catch {
      text = Buffer.alloc(0);
    }
    try {
      modules = readFileSync(`${this.procRoot}/modules`, 'utf8');
    } catch {
      modules = undefined;
    }
    this.kernel = KernelSymbols.parse(text, modules);
    this.kernelReadAtMs = Date.now();
    try {
      this.kernelBuildId = buildIdFromNotes(parseNotes(readFileSync(`${this.sysRoot}/kernel/notes`)));
    } catch {
      this.kernelBuildId = null;
    }
    return this.kernel;
  }

  stats(): SymbolizerStats {
    const c = this.cache.stats();
    return {
      ...this.counters,
      processesTracked: this.processes.size,
      cachedFrames: this.cachedFrames,
      binariesParsed: c.parsed,
      binaryCacheHits: c.hits,
      binaryCacheMisses: c.misses,
      binaryParseErrors: c.parseErrors,
      binaryCacheEvictions: c.evictions,
      cachedBinaries: c.entries,
      kernelSymbols: this.kernel?.symbolCount ?? 0,
      kernelAddressesHidden: this.kernel?.addressesHidden ?? false,
      binaryCacheBytes: c.estimatedBytes,
      perfMapReaders: [...this.processes.values()].reduce((n, snap) => n + snap.perfMaps.length, 0),
      perfMapBytes: [...this.processes.values()].reduce((n, snap) => n + snap.perfMaps.reduce((m, pm) => m + pm.estimatedBytes, 0), 0),
    };
  }

  private kernelSymbols(): KernelSymbols {
    return this.kernel ?? this.refreshKernelSymbols();
  }

  private readMaps(pid: Pid): Mapping[] | null {
    let text: string;
    try {
      text = readFileSync(`${this.procRoot}/${pid}/maps`, 'utf8');
    } catch {
      return null;
    }
    const parsed = parseProcMaps(text);
    this.counters.malformedMapsLines += parsed.malformedLines;
    return parsed.mappings;
  }

  /** Picks up mappings created since the snapshot (dlopen). Rate-limited; a gone process stays as last seen. */
  private refreshMaps(snap: ProcessSnapshot): boolean {
    if (!snap.alive || Date.now() - snap.mapsReadAtMs < MAPS_REFRESH_INTERVAL_MS) return false;
    snap.mapsReadAtMs = Date.now();
    const maps = this.readMaps(snap.pid);
    if (maps === null) {
      snap.alive = false;
      return false;
    }
    this.counters.mapsRefreshes++;
    snap.mappings = maps;
    this.dropFrames(snap, false);
    this.loadBinaries(snap);
    return true;
  }

  private loadBinaries(snap: ProcessSnapshot): void {
    for (const m of snap.mappings) {
      if (!isExecutable(m) || !isFileBacked(m)) continue;
      const key = mappingKey(m);
      if (snap.binaries.has(key)) continue;
      const ref = this.loadBinary(snap.pid, m);
      if ('ok' in ref && !ref.ok) this.counters.unreadableBinaries++;
      snap.binaries.set(key, ref);
    }
  }

  /**
   * Opens the file through the process's root (so container paths resolve),
   * unless it was deleted or replaced since it was mapped: then through
   * map_files, which opens the very inode that is mapped. Parsing waits
   * until an address needs it (see parsedBinary).
   */
  private loadBinary(pid: Pid, m: Mapping): BinaryRef {
    const root = `${this.procRoot}/${pid}/root`;
    const viaRoot = root + m.path;
    const viaMapFiles = `${this.procRoot}/${pid}/map_files/${m.startAddress.toString(16)}-${m.endAddress.toString(16)}`;
    let sameInode = false;
    if (!m.isDeleted) {
      try {
        sameInode = statSync(viaRoot, { bigint: true }).ino === m.inode;
      } catch {
        sameInode = false;
      }
    }
    const candidates = m.isDeleted ? [viaMapFiles] : sameInode ? [viaRoot, viaMapFiles] : [viaMapFiles, viaRoot];
    const debugRoots = [root, '/', ...this.extraDebugRoots];
    for (const hostPath of candidates) {
      const r = this.cache.open(hostPath);
      if ('pending' in r) return this.holdOpen(r.pending, m.path, debugRoots);
      if (r.ok) return { ok: true, binary: r.binary };
      // Content errors will not get better through another path to the same file.
      if (r.error.code !== 'ELF_IO') return { ok: false };
    }
    return { ok: false };
  }

  private holdOpen(pending: PendingBinary, binaryPath: string, debugRoots: string[]): BinaryRef {
    const known = pending.fileKey === null ? undefined : this.openBinaries.get(pending.fileKey);
    if (known !== undefined) {
      // Already held open for another process (or parsed through it): one fd is enough.
      this.cache.release(pending);
      known.users++;
      return { open: known };
    }
    if (pending.fileKey === null || this.openBinaries.size >= MAX_OPEN_BINARIES) {
      const r = this.cache.parse(pending, { binaryPath, debugRoots });
      return r.ok ? { ok: true, binary: r.binary } : { ok: false };
    }
    const open: OpenBinary = { fileKey: pending.fileKey, pending, result: null, users: 1, binaryPath, debugRoots };
    this.openBinaries.set(pending.fileKey, open);
    return { open };
  }

  /** The parsed binary behind a reference, parsing it now if it was only opened. */
  private parsedBinary(ref: BinaryRef): BinaryInfo | null {
    if ('open' in ref) {
      const open = ref.open;
      if (open.result === null) {
        open.result = open.pending === null ? { ok: false, error: new ElfError('ELF_IO', 'closed before use', open.binaryPath) } : this.cache.parse(open.pending, open);
        open.pending = null;
        if (!open.result.ok) this.counters.unreadableBinaries++;
        // Parsed: the cache holds it now, so later processes find it there.
        this.forgetOpenBinary(open);
      }
      return open.result.ok ? open.result.binary : null;
    }
    return ref.ok ? ref.binary : null;
  }

  /** One reader per perf-map file (each keeps every line it read). */
  private perfMapFiles(pid: Pid, nsPid: Pid): PerfMapFile[] {
    const path = this.perfMapPath(pid, nsPid);
    // Nothing writes perf maps away: /tmp keeps one for every JIT process that
    // ever ran, and pids are reused (pid_max is often 32768). Attaching such a
    // file to the new process would name its frames after another program's
    // JIT code, and reading it for every short-lived process that inherits the
    // pid costs memory and CPU. A file last written before the process
    // started cannot be its own.
    // The file first: most processes have none, and then their start time need not be read.
    let writtenMs: number;
    try {
      writtenMs = statSync(path).mtimeMs;
    } catch {
      return [new PerfMapFile(path)]; // Not there (yet): the process may still create it.
    }
    const startedMs = this.processStartMs(pid);
    if (startedMs !== null && writtenMs < startedMs - STALE_PERF_MAP_SLACK_MS) {
      this.counters.stalePerfMaps++;
      return [];
    }
    return [new PerfMapFile(path)];
  }

  private perfMapPath(pid: Pid, nsPid: Pid): string {
    const name = `/tmp/perf-${nsPid}.map`;
    // /proc/PID/root disappears with the process, but the perf map stays in
    // /tmp. If the process's /tmp is ours, the host path is the same file and
    // keeps working after exit: read it there, and only there.
    try {
      const theirs = statSync(`${this.procRoot}/${pid}/root/tmp`, { bigint: true });
      const ours = statSync('/tmp', { bigint: true });
      if (theirs.dev === ours.dev && theirs.ino === ours.ino) return name;
    } catch {
      // Its root cannot be compared with ours (gone, or no /tmp): read it through /proc if at all.
    }
    return `${this.procRoot}/${pid}/root${name}`;
  }

  /** When the process started (Unix ms), from its start time in /proc/PID/stat and the boot time; null if unreadable. */
  private processStartMs(pid: Pid): number | null {
    try {
      if (this.bootTimeMs === null) {
        const m = /^btime (\d+)$/m.exec(readFileSync(`${this.procRoot}/stat`, 'utf8'));
        if (m === null) return null;
        this.bootTimeMs = Number(m[1]) * 1000;
      }
      const stat = readFileSync(`${this.procRoot}/${pid}/stat`, 'utf8');
      // Fields after the command (which may hold spaces and parentheses); starttime is field 22.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const startTicks = Number(fields[19]);
      return Number.isFinite(startTicks) ? this.bootTimeMs + (startTicks * 1000) / USER_HZ : null;
    } catch {
      return null;
    }
  }

  private resolveUser(snap: ProcessSnapshot, address: Address, lookup: Address, refreshPerfMaps: () => void): ResolvedFrame {
    let m = findMapping(snap.mappings, lookup);
    if (m === undefined && this.refreshMaps(snap)) m = findMapping(snap.mappings, lookup);
    if (m !== undefined && isFileBacked(m)) return this.nativeFrame(snap, m, address, lookup);
    if (m !== undefined && m.path === VDSO_PATH) return this.vdsoFrame(m, address, lookup);
    const jit = this.jitFrame(snap, m, address, lookup, refreshPerfMaps);
    if (jit !== null) return jit;
    if (m === undefined) return unknownFrame(address);
    return { ...frameOfMapping(m, address, null, null, null), kind: 'unknown' };
  }

  private nativeFrame(snap: ProcessSnapshot, m: Mapping, address: Address, lookup: Address): ResolvedFrame {
    const ref = snap.binaries.get(mappingKey(m));
    const bin = ref === undefined ? null : this.parsedBinary(ref);
    if (bin === null) return frameOfMapping(m, address, null, null, null);
    const fileLookup = toElfAddress(bin.loadSegments, m.startAddress, m.fileOffset, lookup);
    if (fileLookup === null) return frameOfMapping(m, address, bin.buildId, null, null);
    const hit = bin.symbols.lookup(fileLookup);
    const fileAddress = fileLookup + (address - lookup);
    return frameOfMapping(m, address, bin.buildId, fileAddress, hit === null ? null : demangle(hit.name));
  }

  private vdsoFrame(m: Mapping, address: Address, lookup: Address): ResolvedFrame {
    if (this.vdso === undefined) this.vdso = readOwnVdso();
    const bin = this.vdso;
    if (bin === null) return frameOfMapping(m, address, null, null, null);
    const fileLookup = toElfAddress(bin.loadSegments, m.startAddress, m.fileOffset, lookup);
    const hit = fileLookup === null ? null : bin.symbols.lookup(fileLookup);
    const fileAddress = fileLookup === null ? null : fileLookup + (address - lookup);
    return frameOfMapping(m, address, bin.buildId, fileAddress, hit?.name ?? null);
  }

  private jitFrame(snap: ProcessSnapshot, m: Mapping | undefined, address: Address, lookup: Address, refresh: () => void): ResolvedFrame | null {
    if (snap.perfMaps.length === 0) return null;
    let hit = lookupPerfMaps(snap.perfMaps, lookup);
    if (hit === null) {
      // Node appends as it compiles: a miss may be code newer than our last read.
      refresh();
      hit = lookupPerfMaps(snap.perfMaps, lookup);
    }
    if (hit === null) return null;
    const frame: ResolvedFrame = {
      address,
      functionName: hit.name,
      kind: 'jit',
      mappingFile: JIT_MAPPING_FILE,
      buildId: null,
      mappingStart: m?.startAddress ?? hit.start,
      mappingEnd: m?.endAddress ?? hit.end,
      mappingFileOffset: 0n,
      fileAddress: null,
    };
    if (hit.sourceFile !== null) frame.sourceFile = hit.sourceFile;
    return frame;
  }
}

/**
 * The core kernel's last text symbol is a marker (_etext, _einittext), not
 * code running on to the top of memory: past it lies a module or BPF program
 * loaded after kallsyms was read, which must miss (and be looked up again)
 * rather than take that marker's name, as the kernel's own is_ksym_addr() bounds it.
 */
function kernelLookup(ks: KernelSymbols, address: Address): ReturnType<KernelSymbols['lookup']> {
  const hit = ks.lookup(address);
  return hit !== null && hit.module === null && address >= ks.coreEnd ? null : hit;
}

function lookupPerfMaps(files: PerfMapFile[], address: Address): ReturnType<PerfMapFile['lookup']> {
  for (const f of files) {
    const hit = f.lookup(address);
    if (hit !== null) return hit;
  }
  return null;
}

/**
 * All but the leaf are return addresses: the instruction after a call. When
 * the call is a function's last instruction (noreturn callees), the return
 * address is already in the next function, so look up the byte before it.
 */
function lookupAddress(address: Address, indexLeafFirst: number): Address {
  return indexLeafFirst > 0 && address > 0n ? address - 1n : address;
}

function frameOfMapping(m: Mapping, address: Address, buildId: string | null, fileAddress: Address | null, functionName: string | null): ResolvedFrame {
  const kind: FrameKind = isFileBacked(m) || m.path === VDSO_PATH ? 'native' : 'unknown';
  return {
    address,
    functionName,
    kind,
    mappingFile: m.path,
    buildId,
    mappingStart: m.startAddress,
    mappingEnd: m.endAddress,
    mappingFileOffset: m.fileOffset,
    fileAddress,
  };
}

function unknownFrame(address: Address): ResolvedFrame {
  return { address, functionName: null, kind: 'unknown', mappingFile: '', buildId: null, mappingStart: 0n, mappingEnd: 0n, mappingFileOffset: 0n, fileAddress: null };
}

/** Last value of "NSpid:" in /proc/PID/status: the pid as the process itself sees it. */
export function readNsPid(statusPath: string): Pid | null {
  let text: string;
  try {
    text = readFileSync(statusPath, 'utf8');
  } catch {
    return null;
  }
  const m = /^NSpid:\s*(.*)$/m.exec(text);
  if (m === null) return null;
  const last = m[1]!.trim().split(/\s+/).pop();
  const n = Number(last);
  return Number.isInteger(n) && n > 0 ? n : null;
}

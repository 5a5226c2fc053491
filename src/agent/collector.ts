import { existsSync, readFileSync } from 'node:fs';
import type { ProfileFrame, SampleLabels } from '../profile/builder.js';
import { Sampler, type RawSample, type SamplerOptions, type UnwindMapSizes } from '../sampler/sampler.js';
import { UnwindTableManager, type UnwindTableStats } from '../unwind/table-manager.js';
import type { KernelStats, StackHash, Tgid } from '../sampler/bpf-layout.js';
import { Symbolizer } from '../symbolize/symbolizer.js';
import type { CacheLimits } from './memory-budget.js';
import type { TableCacheOptions } from '../unwind/table-cache.js';

/** One aggregated sample, symbolized: what the profile builder and shipper consume. */
export interface ResolvedSample {
  /** Leaf first: kernel frames, then user frames. */
  frames: ProfileFrame[];
  count: number;
  labels: SampleLabels;
}

export interface CollectResult {
  samples: ResolvedSample[];
  kernelStats: KernelStats;
}

export interface CollectorOptions extends Omit<SamplerOptions, 'onNewProcess' | 'onMappingsStale' | 'onTableWanted' | 'unwindTables'> {
  procRoot?: string;
  /** Bounds on the caches (see memory-budget.ts); unbounded when unset. */
  limits?: Partial<CacheLimits>;
  /** How user stacks are walked: 'fp' (frame pointers, the kernel's walker) or 'dwarf' (.eh_frame tables). Default 'fp'. */
  unwind?: UnwindMode;
  /** With unwind 'dwarf': bytes of table rows the BPF maps may lock (the budget). */
  unwindTableBudgetBytes?: number;
  /** With unwind 'dwarf': where built tables are kept between runs (undefined: not kept). */
  unwindTableCache?: TableCacheOptions;
  log?: (line: string) => void;
  /** Called when the kernel first samples a process (or after it execs), after the collector's own snapshot. */
  onNewProcess?: (tgid: Tgid) => void;
}

export type UnwindMode = 'fp' | 'dwarf';

/** Default row budget: 16 MiB, four million rows (node's table is ~280k, libc's ~23k). */
export const DEFAULT_UNWIND_TABLE_BUDGET_BYTES = 16 << 20;

function unwindMapSizes(budgetBytes: number): UnwindMapSizes {
  // Rows: an array map locks 8 bytes per 4-byte row (values are rounded up to 8). Pages: a whole host's code is a few thousand 64 KiB pages (node: ~700).
  return { rows: Math.max(512, Math.floor(budgetBytes / 8)), rules: 65536, pages: 65536, processes: 16384 };
}

/** Entries dropped to stay within the limits, by cache. */
export interface CollectorEvictions {
  processes: number;
  stacks: number;
}

// Processes kept in the name table after they were last sampled, in drains.
// Their symbol snapshots go too: the symbolizer must not grow without bound
// on a host that starts thousands of short-lived processes.
const PROCESS_IDLE_DRAINS = 30;
// Symbolized stacks kept after they were last sampled, in drains. A hot stack
// recurs every drain; resolving it once instead of every drain was most of the
// steady-state CPU of `record` (each frame is a mapping search, a symbol
// search and a new frame object, then a new pprof location key).
const STACK_IDLE_DRAINS = 10;

interface CachedStack {
  frames: ProfileFrame[];
  lastUsedDrain: number;
  /** For stacks with JIT frames: the process's JIT maps' version they were resolved against. */
  jitVersion?: number;
}

/**
 * Symbolized stacks by hash, kept across drains while they recur. A stack
 * with an unresolved frame is kept for the current drain only, so a later
 * drain tries it again (a perf map grows, a library is dlopened); one with
 * JIT frames only while the perf map stays the version it was read from (a
 * JIT reuses code addresses).
 */
class StackCache {
  private readonly kept = new Map<StackHash, CachedStack>();
  private readonly thisDrain = new Map<StackHash, ProfileFrame[]>();

  /**
   * The stack's frames if kept (for a JIT stack: while `jitVersion(tgid)`,
   * the current version of the process's JIT maps, is the one it was resolved
   * against), else undefined: resolve it and store() it. No closure per
   * sample: this runs for every sample of every drain.
   */
  lookup(hash: StackHash, drain: number, jitVersion: (tgid: Tgid) => number, tgid: Tgid): ProfileFrame[] | undefined {
    const cached = this.kept.get(hash);
    if (cached !== undefined && (cached.jitVersion === undefined || cached.jitVersion === jitVersion(tgid))) {
      cached.lastUsedDrain = drain;
      return cached.frames;
    }
    return this.thisDrain.get(hash);
  }

  /** Keeps frames just resolved; `versionBefore`/`versionAfter`: the JIT maps' version before and after resolving them. */
  store(hash: StackHash, drain: number, frames: ProfileFrame[], versionBefore: number, versionAfter: number): void {
    const hasJit = frames.some((frame) => frame.kind === 'jit');
    // A JIT stack is kept only if its perf map did not change while it was
    // resolved (a miss re-reads it): then every frame was read from one version.
    if (frames.every((frame) => frame.functionName !== null) && (!hasJit || versionAfter === versionBefore)) {
      const entry: CachedStack = { frames, lastUsedDrain: drain };
      if (hasJit) entry.jitVersion = versionBefore;
      this.kept.set(hash, entry);
    } else {
      this.thisDrain.set(hash, frames);
    }
  }

  /** Ends a drain: forgets the stacks kept for it only and those unused since `oldestDrain`. Returns whether any are left. */
  endDrain(oldestDrain: number): boolean {
    this.thisDrain.clear();
    for (const [hash, cached] of this.kept) if (cached.lastUsedDrain < oldestDrain) this.kept.delete(hash);
    return this.kept.size > 0;
  }

  get size(): number {
    return this.kept.size;
  }
}

const NO_JIT = (): number => -1;
/** Longest stretch symbolization holds the event loop during a drain (see resolve()). */
const RESOLVE_SLICE_MS = 20;

/**
 * Joins the sampler and the symbolizer: takes raw kernel samples, resolves
 * their addresses while the processes' snapshots are at hand, and hands out
 * symbolized samples. Both `record` and the agent sit on top of it.
 */
export class Collector {
  readonly symbolizer: Symbolizer;
  private readonly sampler: Sampler;
  private readonly procRoot: string;
  private readonly processNames = new Map<Tgid, string>();
  private readonly lastSeenDrain = new Map<Tgid, number>();
  private readonly kernelStacks = new StackCache();
  /** User stacks by process: the same hash means other code in another process. */
  private readonly userStacks = new Map<Tgid, StackCache>();
  /** Kernel + user frames by user stack, then kernel stack (see joined()); entries go with the stacks. */
  private readonly joinedStacks = new WeakMap<ProfileFrame[], WeakMap<ProfileFrame[], ProfileFrame[]>>();
  private drainCount = 0;
  /** Tracked processes found gone from /proc, by the drain that found them gone. */
  private readonly goneSinceDrain = new Map<Tgid, number>();
  private readonly maxProcesses: number;
  private readonly maxStacks: number;
  readonly evictions: CollectorEvictions = { processes: 0, stacks: 0 };
  /** Processes forgotten because they exited (not evictions: nothing of them can be asked for again). */
  exitedProcessesForgotten = 0;
  /** Loads unwind tables as processes appear (unwind 'dwarf' only). */
  private readonly unwindTables: UnwindTableManager | undefined;
  private readonly onProcess: ((tgid: Tgid) => void) | undefined;
  private readonly jitVersionOf = (tgid: Tgid): number => this.symbolizer.jitVersion(tgid);

  private constructor(options: CollectorOptions) {
    this.onProcess = options.onNewProcess;
    this.procRoot = options.procRoot ?? '/proc';
    const limits = options.limits ?? {};
    this.maxProcesses = limits.maxProcesses ?? Number.POSITIVE_INFINITY;
    this.maxStacks = limits.maxStacks ?? Number.POSITIVE_INFINITY;
    this.symbolizer = new Symbolizer({ procRoot: this.procRoot, cacheMaxBytes: limits.binaryCacheBytes, perfMapMaxBytes: limits.perfMapBytes, maxCachedFrames: limits.maxCachedFrames });
    const dwarf = options.unwind === 'dwarf';
    this.sampler = Sampler.start({
      ...options,
      onNewProcess: (tgid, comm) => this.onNewProcess(tgid, comm),
      ...(dwarf && {
        unwindTables: unwindMapSizes(options.unwindTableBudgetBytes ?? DEFAULT_UNWIND_TABLE_BUDGET_BYTES),
        onMappingsStale: (tgid: Tgid) => this.unwindTables?.requestLoad(tgid),
        onTableWanted: (tgid: Tgid, mappingStart: bigint) => this.unwindTables?.requestTable(tgid, mappingStart),
      }),
    });
    const maps = this.sampler.unwindMaps();
    this.unwindTables = maps === undefined ? undefined : new UnwindTableManager(maps, { procRoot: this.procRoot, log: options.log ?? ((line) => console.error(line)), cache: options.unwindTableCache });
  }

  /** The unwind tables' memory and counters; undefined when stacks are walked with frame pointers. */
  unwindStats(): UnwindTableStats | undefined {
    return this.finalUnwindStats ?? this.unwindTables?.stats();
  }
  private finalUnwindStats: UnwindTableStats | undefined;

  static start(options: CollectorOptions): Collector {
    return new Collector(options);
  }

  get processesSeen(): number {
    return this.processNames.size;
  }

  /** Whether anything of this process is still held (name, stacks, symbol snapshot). */
  tracks(tgid: Tgid): boolean {
    return this.processNames.has(tgid) || this.lastSeenDrain.has(tgid);
  }

  enableRunTimeStats(): void {
    this.sampler.enableRunTimeStats();
  }

  programRunTime(): { runTimeNs: number; runCount: number } {
    return this.sampler.programRunTime();
  }

  async collect(): Promise<CollectResult> {
    const drained = await this.sampler.drain();
    // Processes announced during the drain get their tables before the
    // symbolization below holds the event loop; those that exited are freed.
    this.unwindTables?.loadQueued();
    this.unwindTables?.sweepExited();
    return this.resolve(drained.samples, drained.stats, RESOLVE_SLICE_MS);
  }

  async stop(): Promise<CollectResult> {
    // What was loaded at the end, for the summary; then the maps go with the BPF object.
    this.finalUnwindStats = this.unwindTables?.stats();
    this.unwindTables?.clear();
    const drained = await this.sampler.stop();
    return this.resolve(drained.samples, drained.stats);
  }

  private onNewProcess(tgid: Tgid, comm: string): void {
    // Called from the ring buffer the moment the kernel first samples the
    // process (or after an exec): take what we need before it can exit.
    this.processNames.set(tgid, readProcessName(this.procRoot, tgid) ?? comm);
    // Aged from now even if none of its samples ever arrive (all dropped in
    // the kernel): otherwise it would never be forgotten.
    this.lastSeenDrain.set(tgid, this.drainCount);
    this.goneSinceDrain.delete(tgid); // a reused pid: alive again
    // After an exec the same tgid maps other code: its old stacks mean nothing now.
    this.userStacks.delete(tgid);
    this.symbolizer.observeProcess(tgid);
    this.unwindTables?.requestLoad(tgid);
    this.onProcess?.(tgid);
  }

  /**
   * Symbolizes a drain's samples. With `sliceMs`, it yields to the event loop
   * after every slice that long: on a host the agent has not seen yet the
   * first drains take seconds, and meanwhile the ring buffer's new processes
   * (their /proc snapshot, their unwind tables) must not wait for the end.
   */
  private async resolve(rawSamples: RawSample[], kernelStats: KernelStats, sliceMs?: number): Promise<CollectResult> {
    const drain = ++this.drainCount;
    const samples: ResolvedSample[] = [];
    let sliceStartMs = performance.now();
    for (const raw of rawSamples) {
      if (sliceMs !== undefined && performance.now() - sliceStartMs >= sliceMs) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStartMs = performance.now();
      }
      this.lastSeenDrain.set(raw.tgid, drain);
      let kernel: ProfileFrame[] = [];
      if (raw.kernelStackHash !== 0n) {
        const cached = this.kernelStacks.lookup(raw.kernelStackHash, drain, NO_JIT, raw.tgid);
        if (cached !== undefined) {
          kernel = cached;
        } else if (raw.kernelStack.length > 0) {
          kernel = this.symbolizer.symbolizeKernel(raw.kernelStack);
          this.kernelStacks.store(raw.kernelStackHash, drain, kernel, -1, -1);
        }
      }
      let user: ProfileFrame[] = [];
      if (raw.userStackHash !== 0n) {
        let stacks = this.userStacks.get(raw.tgid);
        if (stacks === undefined) this.userStacks.set(raw.tgid, (stacks = new StackCache()));
        const cached = stacks.lookup(raw.userStackHash, drain, this.jitVersionOf, raw.tgid);
        if (cached !== undefined) {
          user = cached;
        } else if (raw.userStack.length > 0) {
          const versionBefore = this.symbolizer.jitVersion(raw.tgid);
          user = this.symbolizer.symbolizeUser(raw.tgid, raw.userStack);
          stacks.store(raw.userStackHash, drain, user, versionBefore, this.symbolizer.jitVersion(raw.tgid));
        }
      }
      if (!this.processNames.has(raw.tgid)) this.processNames.set(raw.tgid, raw.tid === raw.tgid ? raw.comm : (readProcessName(this.procRoot, raw.tgid) ?? raw.comm));
      samples.push({
        frames: kernel.length === 0 ? user : user.length === 0 ? kernel : this.joined(kernel, user),
        count: raw.count,
        labels: { pid: raw.tgid, tid: raw.tid, comm: raw.comm, processName: this.processNames.get(raw.tgid) ?? raw.comm },
      });
    }
    this.forgetIdleProcesses();
    this.forgetIdleStacks();
    this.symbolizer.trimToBudget();
    return { samples, kernelStats };
  }

  /**
   * Kernel frames then user frames, one array per pair of (kept) stacks:
   * the profile builder works out a frame array's locations once, so the
   * same pair must come back as the same array, drain after drain.
   */
  private joined(kernel: ProfileFrame[], user: ProfileFrame[]): ProfileFrame[] {
    let byKernel = this.joinedStacks.get(user);
    if (byKernel === undefined) this.joinedStacks.set(user, (byKernel = new WeakMap()));
    let frames = byKernel.get(kernel);
    if (frames === undefined) byKernel.set(kernel, (frames = [...kernel, ...user]));
    return frames;
  }

  private forgetIdleProcesses(): void {
    for (const [tgid, drain] of this.lastSeenDrain) {
      if (this.drainCount - drain >= PROCESS_IDLE_DRAINS) {
        this.forgetProcess(tgid);
        continue;
      }
      // An exited process is forgotten one drain after it was found gone:
      // its last samples were taken before it exited, so the drain after
      // the one that saw it gone has read them all. On a host that starts
      // ten short-lived processes a second, keeping each for the idle
      // period held over a thousand maps snapshots and stack caches.
      const goneSince = this.goneSinceDrain.get(tgid);
      if (goneSince === undefined) {
        if (!existsSync(`${this.procRoot}/${tgid}`)) this.goneSinceDrain.set(tgid, this.drainCount);
      } else if (this.drainCount > goneSince) {
        this.forgetProcess(tgid);
        this.exitedProcessesForgotten++;
      }
    }
    // Over the limit: the least recently sampled go first, counted.
    if (this.lastSeenDrain.size > this.maxProcesses) {
      const byAge = [...this.lastSeenDrain].sort((a, b) => a[1] - b[1]);
      for (const [tgid] of byAge.slice(0, this.lastSeenDrain.size - this.maxProcesses)) {
        this.forgetProcess(tgid);
        this.evictions.processes++;
      }
    }
  }

  private forgetProcess(tgid: Tgid): void {
    this.lastSeenDrain.delete(tgid);
    this.goneSinceDrain.delete(tgid);
    this.processNames.delete(tgid);
    this.userStacks.delete(tgid);
    this.symbolizer.forgetProcess(tgid);
  }

  private stackCount(): number {
    let n = this.kernelStacks.size;
    for (const stacks of this.userStacks.values()) n += stacks.size;
    return n;
  }

  private forgetIdleStacks(): void {
    const oldest = this.drainCount - STACK_IDLE_DRAINS;
    this.kernelStacks.endDrain(oldest);
    for (const [tgid, stacks] of this.userStacks) if (!stacks.endDrain(oldest)) this.userStacks.delete(tgid);
    // Over the limit: keep only the stacks sampled in this drain (they are
    // the likeliest to recur); the rest are resolved again if they come back.
    const before = this.stackCount();
    if (before <= this.maxStacks) return;
    this.kernelStacks.endDrain(this.drainCount);
    for (const [tgid, stacks] of this.userStacks) if (!stacks.endDrain(this.drainCount)) this.userStacks.delete(tgid);
    this.evictions.stacks += before - this.stackCount();
  }
}

function readProcessName(procRoot: string, tgid: Tgid): string | undefined {
  try {
    return readFileSync(`${procRoot}/${tgid}/comm`, 'utf8').trimEnd();
  } catch {
    return undefined; // already gone: the kernel's comm will do
  }
}

import { readFileSync } from 'node:fs';
import type { ProfileFrame, SampleLabels } from '../profile/builder.js';
import { Sampler, type RawSample, type SamplerOptions } from '../sampler/sampler.js';
import type { KernelStats, StackHash, Tgid } from '../sampler/bpf-layout.js';
import { Symbolizer } from '../symbolize/symbolizer.js';

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

export interface CollectorOptions extends Omit<SamplerOptions, 'onNewProcess'> {
  procRoot?: string;
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
  /** Kernel stacks by their hash: the kernel's symbols do not change under them. */
  private readonly kernelStacks = new Map<StackHash, CachedStack>();
  /** User stacks by process, then hash; only stacks that resolved in full (see cacheable()). */
  private readonly userStacks = new Map<Tgid, Map<StackHash, CachedStack>>();
  private drainCount = 0;

  private constructor(options: CollectorOptions) {
    this.procRoot = options.procRoot ?? '/proc';
    this.symbolizer = new Symbolizer({ procRoot: this.procRoot });
    this.sampler = Sampler.start({ ...options, onNewProcess: (tgid, comm) => this.onNewProcess(tgid, comm) });
  }

  static start(options: CollectorOptions): Collector {
    return new Collector(options);
  }

  get processesSeen(): number {
    return this.processNames.size;
  }

  enableRunTimeStats(): void {
    this.sampler.enableRunTimeStats();
  }

  programRunTime(): { runTimeNs: number; runCount: number } {
    return this.sampler.programRunTime();
  }

  async collect(): Promise<CollectResult> {
    const drained = await this.sampler.drain();
    return this.resolve(drained.samples, drained.stats);
  }

  async stop(): Promise<CollectResult> {
    const drained = await this.sampler.stop();
    return this.resolve(drained.samples, drained.stats);
  }

  private onNewProcess(tgid: Tgid, comm: string): void {
    // Called from the ring buffer the moment the kernel first samples the
    // process (or after an exec): take what we need before it can exit.
    this.processNames.set(tgid, readProcessName(this.procRoot, tgid) ?? comm);
    // After an exec the same tgid maps other code: its old stacks mean nothing now.
    this.userStacks.delete(tgid);
    this.symbolizer.observeProcess(tgid);
  }

  private resolve(rawSamples: RawSample[], kernelStats: KernelStats): CollectResult {
    const drain = ++this.drainCount;
    // Stacks that did not resolve in full are cached for this drain only, so
    // that a later drain tries them again (a perf map grows, a library is dlopened).
    const partialUserStacks = new Map<string, ProfileFrame[]>();
    const partialKernelStacks = new Map<StackHash, ProfileFrame[]>();
    const samples: ResolvedSample[] = [];
    for (const raw of rawSamples) {
      this.lastSeenDrain.set(raw.tgid, drain);
      let kernel: ProfileFrame[] = [];
      if (raw.kernelStack.length > 0) {
        const cached = this.kernelStacks.get(raw.kernelStackHash);
        if (cached !== undefined) {
          cached.lastUsedDrain = drain;
          kernel = cached.frames;
        } else {
          kernel = partialKernelStacks.get(raw.kernelStackHash) ?? this.symbolizer.symbolizeKernel(raw.kernelStack);
          if (kernel.every(resolvedForGood)) this.kernelStacks.set(raw.kernelStackHash, { frames: kernel, lastUsedDrain: drain });
          else partialKernelStacks.set(raw.kernelStackHash, kernel);
        }
      }
      let user: ProfileFrame[] = [];
      if (raw.userStack.length > 0) user = this.userFrames(raw, drain, partialUserStacks);
      if (!this.processNames.has(raw.tgid)) this.processNames.set(raw.tgid, raw.tid === raw.tgid ? raw.comm : (readProcessName(this.procRoot, raw.tgid) ?? raw.comm));
      samples.push({
        frames: kernel.length === 0 ? user : user.length === 0 ? kernel : [...kernel, ...user],
        count: raw.count,
        labels: { pid: raw.tgid, tid: raw.tid, comm: raw.comm, processName: this.processNames.get(raw.tgid) ?? raw.comm },
      });
    }
    this.forgetIdleProcesses();
    this.forgetIdleStacks();
    return { samples, kernelStats };
  }

  private userFrames(raw: RawSample, drain: number, partialUserStacks: Map<string, ProfileFrame[]>): ProfileFrame[] {
    let stacks = this.userStacks.get(raw.tgid);
    const cached = stacks?.get(raw.userStackHash);
    if (cached !== undefined && (cached.jitVersion === undefined || cached.jitVersion === this.symbolizer.jitVersion(raw.tgid))) {
      cached.lastUsedDrain = drain;
      return cached.frames;
    }
    const partialKey = `${raw.tgid}:${raw.userStackHash}`;
    const partial = partialUserStacks.get(partialKey);
    if (partial !== undefined) return partial;
    const jitBefore = this.symbolizer.jitVersion(raw.tgid);
    const frames = this.symbolizer.symbolizeUser(raw.tgid, raw.userStack);
    const hasJit = frames.some((frame) => frame.kind === 'jit');
    // A JIT stack is kept only if its perf map did not change while it was
    // resolved (a miss re-reads it): then every frame was read from one version.
    if (frames.every(resolvedForGood) && (!hasJit || this.symbolizer.jitVersion(raw.tgid) === jitBefore)) {
      if (stacks === undefined) this.userStacks.set(raw.tgid, (stacks = new Map()));
      const entry: CachedStack = { frames, lastUsedDrain: drain };
      if (hasJit) entry.jitVersion = jitBefore;
      stacks.set(raw.userStackHash, entry);
    } else {
      partialUserStacks.set(partialKey, frames);
    }
    return frames;
  }

  private forgetIdleProcesses(): void {
    for (const [tgid, drain] of this.lastSeenDrain) {
      if (this.drainCount - drain < PROCESS_IDLE_DRAINS) continue;
      this.lastSeenDrain.delete(tgid);
      this.processNames.delete(tgid);
      this.userStacks.delete(tgid);
      this.symbolizer.forgetProcess(tgid);
    }
  }

  private forgetIdleStacks(): void {
    const oldest = this.drainCount - STACK_IDLE_DRAINS;
    for (const [hash, cached] of this.kernelStacks) if (cached.lastUsedDrain < oldest) this.kernelStacks.delete(hash);
    for (const [tgid, stacks] of this.userStacks) {
      for (const [hash, cached] of stacks) if (cached.lastUsedDrain < oldest) stacks.delete(hash);
      if (stacks.size === 0) this.userStacks.delete(tgid);
    }
  }
}

/**
 * A frame worth keeping: a named one. Unresolved frames are tried again next
 * drain (their perf map or mapping may appear); JIT frames are kept only
 * while their perf map stays the same (a JIT reuses code addresses).
 */
function resolvedForGood(frame: ProfileFrame): boolean {
  return frame.functionName !== null;
}

function readProcessName(procRoot: string, tgid: Tgid): string | undefined {
  try {
    return readFileSync(`${procRoot}/${tgid}/comm`, 'utf8').trimEnd();
  } catch {
    return undefined; // already gone: the kernel's comm will do
  }
}

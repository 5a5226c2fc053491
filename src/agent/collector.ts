import { readFileSync } from 'node:fs';
import type { ProfileFrame, SampleLabels } from '../profile/builder.js';
import { Sampler, type RawSample, type SamplerOptions } from '../sampler/sampler.js';
import type { KernelStats, Tgid } from '../sampler/bpf-layout.js';
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
    this.symbolizer.observeProcess(tgid);
  }

  private resolve(rawSamples: RawSample[], kernelStats: KernelStats): CollectResult {
    this.drainCount++;
    const userFrames = new Map<string, ProfileFrame[]>();
    const kernelFrames = new Map<bigint, ProfileFrame[]>();
    const samples: ResolvedSample[] = [];
    for (const raw of rawSamples) {
      this.lastSeenDrain.set(raw.tgid, this.drainCount);
      let kernel: ProfileFrame[] = [];
      if (raw.kernelStack.length > 0) {
        kernel = kernelFrames.get(raw.kernelStackHash) ?? this.symbolizer.symbolizeKernel(raw.kernelStack);
        kernelFrames.set(raw.kernelStackHash, kernel);
      }
      let user: ProfileFrame[] = [];
      if (raw.userStack.length > 0) {
        const key = `${raw.tgid}:${raw.userStackHash}`;
        user = userFrames.get(key) ?? this.symbolizer.symbolizeUser(raw.tgid, raw.userStack);
        userFrames.set(key, user);
      }
      if (!this.processNames.has(raw.tgid)) this.processNames.set(raw.tgid, raw.tid === raw.tgid ? raw.comm : (readProcessName(this.procRoot, raw.tgid) ?? raw.comm));
      samples.push({
        frames: kernel.length === 0 ? user : user.length === 0 ? kernel : [...kernel, ...user],
        count: raw.count,
        labels: { pid: raw.tgid, tid: raw.tid, comm: raw.comm, processName: this.processNames.get(raw.tgid) ?? raw.comm },
      });
    }
    this.forgetIdleProcesses();
    return { samples, kernelStats };
  }

  private forgetIdleProcesses(): void {
    for (const [tgid, drain] of this.lastSeenDrain) {
      if (this.drainCount - drain < PROCESS_IDLE_DRAINS) continue;
      this.lastSeenDrain.delete(tgid);
      this.processNames.delete(tgid);
      this.symbolizer.forgetProcess(tgid);
    }
  }
}

function readProcessName(procRoot: string, tgid: Tgid): string | undefined {
  try {
    return readFileSync(`${procRoot}/${tgid}/comm`, 'utf8').trimEnd();
  } catch {
    return undefined; // already gone: the kernel's comm will do
  }
}

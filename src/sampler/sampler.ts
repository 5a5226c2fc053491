import { setTimeout as sleep } from 'node:timers/promises';
import { BpfObject, bpfObjectPath, loadAddon, type MapInfo } from '../native/addon.js';
import { onlineCpus } from './cpus.js';
import { StackStore, stackAddresses, type StackRef } from './stack-store.js';
import {
  BPF_STAT_NAMES,
  decodeProcessEvent,
  decodeComm,
  encodeConfig,
  SAMPLE_KEY_SIZE,
  mapStats,
  sumStats,
  sumPerCpuCounter,
  type KernelStats,
  type SampleKey,
  type StackHash,
  type Tgid,
} from './bpf-layout.js';

export interface SamplerOptions {
  frequencyHz: number;
  /** Sample only this process and its descendants; undefined: the whole system. */
  filterTgid?: Tgid;
  /** Unique stacks the stack map holds (an LRU: past this, the least recently used is evicted). */
  stackMapEntries?: number;
  /** Unique (process, thread, stacks) keys each generation can count. */
  countMapEntries?: number;
  /** Called as soon as the kernel first samples a process (or after it execs). */
  onNewProcess?: (tgid: Tgid, comm: string) => void;
  /** Walk user stacks with unwind tables (src/unwind) instead of frame pointers; the maps' sizes. */
  unwindTables?: UnwindMapSizes;
  /** With unwindTables: a process ran code outside the mappings loaded for it (dlopen, new JIT code). */
  onMappingsStale?: (tgid: Tgid) => void;
  /** With unwindTables: a walk met a mapping (by its start address) whose table is deferred: build it now. */
  onTableWanted?: (tgid: Tgid, mappingStart: bigint) => void;
  /** Called after load, before the program is attached: fill maps that must hold before the first sample (the cgroup filter). */
  onLoaded?: (mapInfo: (name: string) => MapInfo) => void;
}

/** The unwind maps, as src/unwind/table-manager.ts writes them. */
export interface UnwindMaps {
  rows: MapInfo;
  rules: MapInfo;
  pages: MapInfo;
  processes: MapInfo;
}

/** Entries of the unwind maps (bpf/profile.bpf.c); rows are the memory budget (4 bytes each, preallocated). */
export interface UnwindMapSizes {
  rows: number;
  rules: number;
  pages: number;
  processes: number;
}

export interface RawSample extends SampleKey {
  count: number;
  /** Leaf first; empty when the sample has no stack of that kind (its hash is 0 then). Decoded on first use. */
  readonly userStack: bigint[];
  readonly kernelStack: bigint[];
}

/** A drained count-map entry; its stacks are decoded on first use (see StackStore). */
class DrainedSample implements RawSample {
  constructor(
    readonly tgid: Tgid,
    readonly tid: number,
    readonly userStackHash: StackHash,
    readonly kernelStackHash: StackHash,
    readonly comm: string,
    public count: number,
    private readonly user: StackRef,
    private readonly kernel: StackRef,
  ) {}

  get userStack(): bigint[] {
    return stackAddresses(this.user);
  }

  get kernelStack(): bigint[] {
    return stackAddresses(this.kernel);
  }
}

export interface DrainResult {
  samples: RawSample[];
  /** Counters since the previous drain. */
  stats: KernelStats;
}

// Longer than any run of the BPF program (microseconds), so that after the
// generation flips no CPU is still writing into the one being drained.
const GENERATION_GRACE_MS = 5;

/**
 * The kernel half of fleetprof, seen from TypeScript: loads the BPF program,
 * attaches it to a cpu-clock event on every online CPU and drains the
 * aggregated stacks. Knows nothing of symbols or pprof.
 */
export class Sampler {
  private readonly object: BpfObject;
  private readonly configMap: MapInfo;
  private readonly statsMap: MapInfo;
  /** A per-CPU map's value, as the kernel returns it: one slot per possible CPU. */
  private readonly statsValueSize: number;
  private readonly stacks: StackStore;
  private readonly countMaps: [MapInfo, MapInfo];
  private readonly filterTgid: Tgid;
  private generation = 0;
  private previousStats: KernelStats;
  private stopped = false;
  private bpfStatsFd: number | undefined;
  private readonly unwindTables: boolean;

  private constructor(object: BpfObject, filterTgid: Tgid, unwindTables: boolean, stackEntries: number) {
    this.object = object;
    this.filterTgid = filterTgid;
    this.unwindTables = unwindTables;
    this.configMap = object.mapInfo('fp_config_map');
    this.statsMap = object.mapInfo('stats');
    this.statsValueSize = this.statsMap.valueSize * loadAddon().possibleCpuCount();
    this.stacks = new StackStore(object.mapInfo('stacks'), stackEntries);
    this.countMaps = [object.mapInfo('counts_0'), object.mapInfo('counts_1')];
    this.previousStats = this.readStats();
  }

  static start(options: SamplerOptions): Sampler {
    // Two generations' worth of 16384 stacks: what the two flipping stack maps held before they became one
    // LRU map, so a stack is evicted before user space reads it only at rates far above today's.
    const stackEntries = options.stackMapEntries ?? 32768;
    const countEntries = options.countMapEntries ?? 16384;
    const unwind = options.unwindTables;
    const object = new BpfObject(bpfObjectPath(unwind !== undefined), {
      stacks: stackEntries,
      counts_0: countEntries,
      counts_1: countEntries,
      // Without tables the unwind maps stay at one entry each (they lock almost nothing).
      ...(unwind
        ? {
            unwind_rows: unwind.rows,
            unwind_rules: unwind.rules,
            unwind_pages: unwind.pages,
            process_mappings: unwind.processes,
          }
        : {}),
    });
    try {
      const sampler = new Sampler(object, options.filterTgid ?? 0, unwind !== undefined, stackEntries);
      sampler.writeConfig();
      if (options.onNewProcess || options.onMappingsStale || options.onTableWanted) {
        const { onNewProcess, onMappingsStale, onTableWanted } = options;
        object.startRingBuffer('process_events', (records) => {
          for (const record of records) {
            const event = decodeProcessEvent(record);
            if (event.kind === 'mappingsStale') onMappingsStale?.(event.tgid);
            else if (event.kind === 'tableWanted') onTableWanted?.(event.tgid, event.address);
            else onNewProcess?.(event.tgid, event.comm);
          }
        });
      }
      options.onLoaded?.((name) => object.mapInfo(name));
      object.attachProgram('process_exec');
      for (const cpu of onlineCpus()) object.attachPerfEvent('sample_stack', cpu, options.frequencyHz);
      return sampler;
    } catch (error) {
      object.destroy();
      throw error;
    }
  }

  /** The unwind maps, for src/unwind/table-manager.ts (undefined without unwindTables). */
  unwindMaps(): UnwindMaps | undefined {
    if (!this.unwindTables) return undefined;
    return {
      rows: this.object.mapInfo('unwind_rows'),
      rules: this.object.mapInfo('unwind_rules'),
      pages: this.object.mapInfo('unwind_pages'),
      processes: this.object.mapInfo('process_mappings'),
    };
  }

  /** Makes the kernel count the BPF program's own run time (for benchmarks). */
  enableRunTimeStats(): void {
    this.bpfStatsFd ??= loadAddon().enableBpfStats();
  }

  /** Stacks read from the BPF stack map so far: each once while user space keeps it (tests). */
  get stackReads(): number {
    return this.stacks.reads;
  }

  programRunTime(): { runTimeNs: number; runCount: number } {
    return this.object.programStats('sample_stack');
  }

  /** Takes everything counted since the last drain; samples keep flowing meanwhile. */
  async drain(): Promise<DrainResult> {
    if (this.stopped) throw new Error('sampler stopped');
    const drained = this.generation & 1;
    this.generation++;
    this.writeConfig();
    await sleep(GENERATION_GRACE_MS);
    // Deliver pending process announcements before the samples that caused them.
    this.object.consumeRingBuffers();
    return this.drainGeneration(drained);
  }

  /** Detaches, then returns what was counted but not yet drained (both generations). */
  async stop(): Promise<DrainResult> {
    if (this.stopped) throw new Error('sampler stopped');
    this.stopped = true;
    this.object.detach();
    await sleep(GENERATION_GRACE_MS);
    try {
      const older = this.drainGeneration(this.generation + 1);
      const newer = this.drainGeneration(this.generation);
      return { samples: [...older.samples, ...newer.samples], stats: sumStats(older.stats, newer.stats) };
    } finally {
      this.object.destroy();
      if (this.bpfStatsFd !== undefined) loadAddon().closeFd(this.bpfStatsFd);
    }
  }

  private writeConfig(): void {
    loadAddon().mapUpdate(this.configMap.fd, Buffer.alloc(4), encodeConfig(this.generation, this.filterTgid, this.unwindTables));
  }

  private drainGeneration(index: number): DrainResult {
    const { mapDrain } = loadAddon();
    const countMap = this.countMaps[index & 1]!;
    const counts = mapDrain(countMap.fd, countMap.keySize, countMap.valueSize);
    const samples: RawSample[] = new Array<RawSample>(counts.count);
    const keys = counts.keys;
    let stackEvicted = 0;
    this.stacks.beginDrain();
    for (let i = 0; i < counts.count; i++) {
      const at = i * SAMPLE_KEY_SIZE;
      const count = Number(counts.values.readBigUInt64LE(i * countMap.valueSize));
      const userHash = keys.readBigUInt64LE(at + 8);
      const kernelHash = keys.readBigUInt64LE(at + 16);
      const user = this.stacks.get(userHash);
      const kernel = this.stacks.get(kernelHash);
      // A stack evicted before it was read: the sample is kept without it, and counted.
      if (user.lost || kernel.lost) stackEvicted += count;
      samples[i] = new DrainedSample(
        keys.readUInt32LE(at),
        keys.readUInt32LE(at + 4),
        user.lost ? 0n : userHash,
        kernel.lost ? 0n : kernelHash,
        decodeComm(keys, at + 24),
        count,
        user.ref,
        kernel.ref,
      );
    }
    this.stacks.endDrain();
    const now = this.readStats();
    const stats = mapStats((name) => (name === 'stackEvicted' ? stackEvicted : now[name] - this.previousStats[name]));
    this.previousStats = now;
    return { samples, stats };
  }

  private readStats(): KernelStats {
    const { mapLookup } = loadAddon();
    const key = Buffer.alloc(4);
    return mapStats((name) => {
      const index = (BPF_STAT_NAMES as readonly string[]).indexOf(name);
      if (index === -1) return 0; // kept in user space (stackEvicted)
      key.writeUInt32LE(index);
      const value = mapLookup(this.statsMap.fd, key, this.statsValueSize);
      return value ? sumPerCpuCounter(value) : 0;
    });
  }
}


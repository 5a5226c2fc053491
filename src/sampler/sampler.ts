import { setTimeout as sleep } from 'node:timers/promises';
import { BpfObject, bpfObjectPath, loadAddon, type MapInfo } from '../native/addon.js';
import { onlineCpus } from './cpus.js';
import {
  decodeProcessEvent,
  decodeComm,
  decodeStack,
  encodeConfig,
  SAMPLE_KEY_SIZE,
  STAT_NAMES,
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
  /** Unique stacks each generation's stack map can hold. */
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
  /** Leaf first; empty when the sample has no stack of that kind. Decoded on first use (see DrainedStacks). */
  readonly userStack: bigint[];
  readonly kernelStack: bigint[];
}

const NO_ADDRESSES: bigint[] = [];

/**
 * One drain's stack map, by hash. A stack is decoded into addresses only when
 * asked for: the collector keeps symbolized stacks across drains, so most
 * stacks of a drain are never decoded (127 BigInts each, every drain, was
 * most of the drain's garbage at 999 Hz).
 */
class DrainedStacks {
  private readonly indexOf = new Map<StackHash, number>();
  private readonly decoded: (bigint[] | undefined)[];

  constructor(
    private readonly values: Buffer,
    private readonly valueSize: number,
    keys: Buffer,
    count: number,
  ) {
    this.decoded = new Array<bigint[] | undefined>(count);
    for (let i = 0; i < count; i++) this.indexOf.set(keys.readBigUInt64LE(i * 8), i);
  }

  addresses(hash: StackHash): bigint[] {
    if (hash === 0n) return NO_ADDRESSES;
    const index = this.indexOf.get(hash);
    if (index === undefined) return NO_ADDRESSES;
    return (this.decoded[index] ??= decodeStack(this.values, index * this.valueSize, this.valueSize));
  }
}

/** A drained count-map entry; its stacks are decoded from the drain's stack map on first use. */
class DrainedSample implements RawSample {
  constructor(
    readonly tgid: Tgid,
    readonly tid: number,
    readonly userStackHash: StackHash,
    readonly kernelStackHash: StackHash,
    readonly comm: string,
    public count: number,
    private readonly stacks: DrainedStacks,
  ) {}

  get userStack(): bigint[] {
    return this.stacks.addresses(this.userStackHash);
  }

  get kernelStack(): bigint[] {
    return this.stacks.addresses(this.kernelStackHash);
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
  private readonly stackMaps: [MapInfo, MapInfo];
  private readonly countMaps: [MapInfo, MapInfo];
  private readonly filterTgid: Tgid;
  private generation = 0;
  private previousStats: KernelStats;
  private stopped = false;
  private bpfStatsFd: number | undefined;
  private readonly unwindTables: boolean;

  private constructor(object: BpfObject, filterTgid: Tgid, unwindTables: boolean) {
    this.object = object;
    this.filterTgid = filterTgid;
    this.unwindTables = unwindTables;
    this.configMap = object.mapInfo('fp_config_map');
    this.statsMap = object.mapInfo('stats');
    this.statsValueSize = this.statsMap.valueSize * loadAddon().possibleCpuCount();
    this.stackMaps = [object.mapInfo('stacks_0'), object.mapInfo('stacks_1')];
    this.countMaps = [object.mapInfo('counts_0'), object.mapInfo('counts_1')];
    this.previousStats = this.readStats();
  }

  static start(options: SamplerOptions): Sampler {
    const stackEntries = options.stackMapEntries ?? 16384;
    const countEntries = options.countMapEntries ?? 16384;
    const unwind = options.unwindTables;
    const object = new BpfObject(bpfObjectPath(unwind !== undefined), {
      stacks_0: stackEntries,
      stacks_1: stackEntries,
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
      const sampler = new Sampler(object, options.filterTgid ?? 0, unwind !== undefined);
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
    const stackMap = this.stackMaps[index & 1]!;
    const countMap = this.countMaps[index & 1]!;
    const counts = mapDrain(countMap.fd, countMap.keySize, countMap.valueSize);
    const stackEntries = mapDrain(stackMap.fd, stackMap.keySize, stackMap.valueSize);
    const stacks = new DrainedStacks(stackEntries.values, stackMap.valueSize, stackEntries.keys, stackEntries.count);
    const samples: RawSample[] = new Array<RawSample>(counts.count);
    const keys = counts.keys;
    for (let i = 0; i < counts.count; i++) {
      const at = i * SAMPLE_KEY_SIZE;
      samples[i] = new DrainedSample(
        keys.readUInt32LE(at),
        keys.readUInt32LE(at + 4),
        keys.readBigUInt64LE(at + 8),
        keys.readBigUInt64LE(at + 16),
        decodeComm(keys, at + 24),
        Number(counts.values.readBigUInt64LE(i * countMap.valueSize)),
        stacks,
      );
    }
    const now = this.readStats();
    const stats = mapStats((name) => now[name] - this.previousStats[name]);
    this.previousStats = now;
    return { samples, stats };
  }

  private readStats(): KernelStats {
    const { mapLookup } = loadAddon();
    const key = Buffer.alloc(4);
    return mapStats((name) => {
      key.writeUInt32LE(STAT_NAMES.indexOf(name));
      const value = mapLookup(this.statsMap.fd, key, this.statsValueSize);
      return value ? sumPerCpuCounter(value) : 0;
    });
  }
}


// The user-space half of bpf/cgroup_filter.h: writes the mode and the set of
// cgroup ids, and reads how many samples the kernel dropped for them.
import { loadAddon, type MapInfo } from '../native/addon.js';
import { sumPerCpuCounter } from '../sampler/bpf-layout.js';

/** enum fp_cgroup_filter_mode. */
export const CgroupFilterMode = { off: 0, allow: 1, deny: 2 } as const;
export type CgroupFilterModeName = keyof typeof CgroupFilterMode;

/** A cgroup id: the inode number of its directory in the unified hierarchy (what bpf_get_current_cgroup_id returns). */
export type CgroupId = bigint;

export class KernelCgroupFilter {
  private readonly configMap: MapInfo;
  private readonly setMap: MapInfo;
  private readonly droppedMap: MapInfo;
  private readonly droppedValueSize: number;
  /** Ids whose map value is 1 now. */
  private readonly listed = new Set<CgroupId>();
  /** Entries ever written (a removed id stays as a 0: the addon cannot delete). */
  private entriesWritten = 0;
  private mode: CgroupFilterModeName = 'off';

  constructor(mapInfo: (name: string) => MapInfo) {
    this.configMap = mapInfo('cgroup_filter_config');
    this.setMap = mapInfo('cgroup_filter');
    this.droppedMap = mapInfo('cgroup_filter_dropped');
    this.droppedValueSize = this.droppedMap.valueSize * loadAddon().possibleCpuCount();
  }

  get capacity(): number {
    return this.setMap.maxEntries;
  }

  setMode(mode: CgroupFilterModeName): void {
    const value = Buffer.alloc(4);
    value.writeUInt32LE(CgroupFilterMode[mode]);
    loadAddon().mapUpdate(this.configMap.fd, Buffer.alloc(4), value);
    this.mode = mode;
  }

  get currentMode(): CgroupFilterModeName {
    return this.mode;
  }

  /**
   * Makes the kernel's set exactly `ids`: new ids are written as 1, ids that
   * left as 0. Returns how many ids did not fit (the map is full): in allow
   * mode those cgroups are not sampled, in deny mode they are, and the caller
   * counts them.
   */
  sync(ids: ReadonlySet<CgroupId>): { added: number; removed: number; overflow: number } {
    const { mapUpdate } = loadAddon();
    const key = Buffer.alloc(8);
    const one = Buffer.from([1]);
    const zero = Buffer.from([0]);
    let added = 0;
    let removed = 0;
    let overflow = 0;
    for (const id of this.listed) {
      if (ids.has(id)) continue;
      key.writeBigUInt64LE(id);
      mapUpdate(this.setMap.fd, key, zero);
      this.listed.delete(id);
      removed++;
    }
    const pending = [...ids].filter((id) => !this.listed.has(id));
    // Zeros of cgroups long gone fill the map over a node's life: when the new
    // ids do not fit, rewrite it with the live ids only. For that instant the
    // set is partial (allow mode drops, deny mode lets through: user space
    // filters those again), so it is done only when needed.
    if (this.entriesWritten + pending.length > this.capacity && this.entriesWritten > this.listed.size) this.compact();
    for (const id of pending) {
      key.writeBigUInt64LE(id);
      try {
        mapUpdate(this.setMap.fd, key, one);
      } catch {
        overflow++; // E2BIG: the map is full
        continue;
      }
      this.listed.add(id);
      this.entriesWritten++;
      added++;
    }
    return { added, removed, overflow };
  }

  private compact(): void {
    const { mapDrain, mapUpdate } = loadAddon();
    mapDrain(this.setMap.fd, this.setMap.keySize, this.setMap.valueSize);
    const key = Buffer.alloc(8);
    const one = Buffer.from([1]);
    for (const id of this.listed) {
      key.writeBigUInt64LE(id);
      mapUpdate(this.setMap.fd, key, one);
    }
    this.entriesWritten = this.listed.size;
  }

  /** Samples the kernel dropped for this filter since the program was loaded. */
  droppedSamples(): number {
    const value = loadAddon().mapLookup(this.droppedMap.fd, Buffer.alloc(4), this.droppedValueSize);
    return value ? sumPerCpuCounter(value) : 0;
  }
}

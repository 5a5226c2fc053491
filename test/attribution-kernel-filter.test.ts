// The user-space side of the kernel cgroup filter against the real BPF map:
// ids leave as zeros (the addon cannot delete), a full map is compacted to
// the live ids before new ones are refused, and what still does not fit is
// counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelCgroupFilter } from '../src/attribution/kernel-filter.js';
import { BpfObject, bpfObjectPath, loadAddon, type MapInfo } from '../src/native/addon.js';

let object: BpfObject;
let setMap: MapInfo;

beforeAll(() => {
  object = new BpfObject(bpfObjectPath(), { cgroup_filter: 4 });
  setMap = object.mapInfo('cgroup_filter');
});

afterAll(() => object?.destroy());

function valueOf(id: bigint): number | null {
  const key = Buffer.alloc(8);
  key.writeBigUInt64LE(id);
  const value = loadAddon().mapLookup(setMap.fd, key, 1);
  return value === null ? null : value[0]!;
}

describe('KernelCgroupFilter', () => {
  it('writes ids as 1, removed ids as 0, compacts a full map and counts what does not fit', () => {
    const filter = new KernelCgroupFilter((name) => object.mapInfo(name));
    expect(filter.capacity).toBe(4);
    expect(filter.sync(new Set([1n, 2n, 3n]))).toEqual({ added: 3, removed: 0, overflow: 0 });
    expect([valueOf(1n), valueOf(2n), valueOf(3n)]).toEqual([1, 1, 1]);
    expect(filter.sync(new Set([2n, 3n]))).toEqual({ added: 0, removed: 1, overflow: 0 });
    expect(valueOf(1n)).toBe(0); // in the map, but not in the set
    // 3 entries written + 2 new > 4: compacted to the live ids (2, 3) first.
    expect(filter.sync(new Set([2n, 3n, 4n, 5n]))).toEqual({ added: 2, removed: 0, overflow: 0 });
    expect(valueOf(1n)).toBeNull();
    expect([valueOf(2n), valueOf(3n), valueOf(4n), valueOf(5n)]).toEqual([1, 1, 1, 1]);
    // Five live ids in a map of four: one is refused, and counted.
    expect(filter.sync(new Set([2n, 3n, 4n, 5n, 6n]))).toEqual({ added: 0, removed: 0, overflow: 1 });
  });

  it('sets the mode the program reads, and reads its dropped counter', () => {
    const filter = new KernelCgroupFilter((name) => object.mapInfo(name));
    filter.setMode('deny');
    const config = object.mapInfo('cgroup_filter_config');
    expect(loadAddon().mapLookup(config.fd, Buffer.alloc(4), 4)!.readUInt32LE(0)).toBe(2);
    filter.setMode('allow');
    expect(loadAddon().mapLookup(config.fd, Buffer.alloc(4), 4)!.readUInt32LE(0)).toBe(1);
    expect(filter.droppedSamples()).toBe(0); // not attached: nothing sampled
  });
});
